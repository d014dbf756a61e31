// Package config is vouch's one configuration type. A file is YAML,
// decoded strictly over the embedded defaults (an unknown key, a wrong
// type, a bad value: each is an error with its file, line and key, and all
// of a file's errors are reported at once) straight into the types the
// code uses (socket.Address, time.Duration, netip.Prefix, policy rules),
// then validated. Defaults are stated once, in Default, from the
// packages that own each setting.
package config

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter/policy"
	"github.com/vouch-mail/vouch/milter/socket"
)

// Config is the whole file. The YAML keys are the documented names
// (docs/configuration.md).
type Config struct {
	Milter  Milter     `yaml:"milter"`
	Metrics Metrics    `yaml:"metrics"`
	Log     Log        `yaml:"log"`
	DNS     dns.Config `yaml:"dns"`
	Checks  Checks     `yaml:"checks"`
	Policy  Policy     `yaml:"policy"`
	Headers Headers    `yaml:"headers"`

	// Warnings are problems that do not stop the file from loading (a
	// network with host bits set), with file and line.
	Warnings Errors `yaml:"-"`
}

// Milter is the MTA-facing listener; a reload does not change it.
type Milter struct {
	Listen         socket.Address `yaml:"listen"`
	SocketMode     os.FileMode    `yaml:"socket_mode"`
	SocketGroup    string         `yaml:"socket_group"`
	MaxConnections int            `yaml:"max_connections"`
	// OverloadAction is Accept or TempFail.
	OverloadAction policy.Action `yaml:"overload_action"`
	IdleTimeout    time.Duration `yaml:"idle_timeout"`
	// PacketTimeout bounds the time one milter packet may take to
	// arrive, from its first octet: trickling cannot stretch it.
	PacketTimeout   time.Duration `yaml:"packet_timeout"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

type Metrics struct {
	// Listen is HOST:PORT, or "" for no metrics listener.
	Listen string `yaml:"listen"`
}

type Log struct {
	Format string     `yaml:"format"` // text or json
	Level  slog.Level `yaml:"level"`
	// Output is stderr (the journal, under systemd) or syslog: the local
	// syslog daemon (/dev/log), facility mail, tag vouch, so that the
	// lines land beside the MTA's (Debian: /var/log/mail.log).
	Output string `yaml:"output"`
}

type Checks struct {
	// Deadline bounds each check from its start; it must stay below the
	// MTA's milter timeouts (Sendmail's default is 10 s).
	Deadline time.Duration `yaml:"deadline"`
	Iprev    IprevCheck    `yaml:"iprev"`
	Helo     HeloCheck     `yaml:"helo"`
	SPF      SPFCheck      `yaml:"spf"`
}

type IprevCheck struct {
	Enabled       bool `yaml:"enabled"`
	iprev.Options `yaml:",inline"`
	// TrustMTAHostname takes the MTA's verified name for the client
	// instead of looking it up again.
	TrustMTAHostname bool `yaml:"trust_mta_hostname"`
}

type HeloCheck struct {
	Enabled bool `yaml:"enabled"`
}

type SPFCheck struct {
	Enabled     bool `yaml:"enabled"`
	CheckHelo   bool `yaml:"check_helo"`
	spf.Options `yaml:",inline"`
}

type Policy struct {
	Preset   string       `yaml:"preset"`
	DecideAt policy.Stage `yaml:"decide_at"`
	// DryRun names checks, or "all".
	DryRun []policy.Check `yaml:"dry_run"`
	// Rules override cells of the preset's table.
	Rules              policy.Table   `yaml:"rules"`
	TrustedNetworks    []netip.Prefix `yaml:"trusted_networks"`
	SkipAuthenticated  bool           `yaml:"skip_authenticated"`
	ExemptRecipients   []string       `yaml:"exempt_recipients"`
	AllowSenderDomains policy.Domains `yaml:"allow_sender_domains"`
	AllowClientNames   policy.Domains `yaml:"allow_client_names"`
	// AllowSPFDomains: mail is accepted when the client passes the SPF
	// record of one of these domains (a forwarding service's).
	AllowSPFDomains policy.Domains `yaml:"allow_spf_domains"`
	// AllowHeloNames: mail is accepted from a client whose HELO is one of
	// these names, but only when the name is its confirmed rDNS name or
	// its A/AAAA holds the client's address.
	AllowHeloNames policy.Domains `yaml:"allow_helo_names"`
	// AllowRecipients are accepted whatever the verdict, as exempt
	// recipients are: mail forwarded to them breaks SPF.
	AllowRecipients []string `yaml:"allow_recipients"`
	// TrustedRelays are your own relays (backup MX, inbound gateways):
	// vouch does not judge them but the client named in the Received
	// field they wrote, at end of headers.
	TrustedRelays []netip.Prefix `yaml:"trusted_relays"`
	// RelayUnparsed is the answer for a trusted relay's message whose
	// Received fields do not name the original client: Accept (record
	// that it was not checked) or TempFail.
	RelayUnparsed policy.Action `yaml:"relay_unparsed"`
	// Domains override cells of the table for mail from these sender
	// domains ("example.com", or ".example.com" for it and below).
	Domains map[string]policy.Table `yaml:"domains"`
}

// DryRunAll in policy.dry_run stands for every check.
const DryRunAll policy.Check = "all"

type Headers struct {
	// AuthServID names this host in Authentication-Results; "" takes the
	// MTA's j macro.
	AuthServID            string `yaml:"authserv_id"`
	AuthenticationResults bool   `yaml:"authentication_results"`
	ReceivedSPF           bool   `yaml:"received_spf"`
	RemoveForged          bool   `yaml:"remove_forged"`
}

// Default is the embedded configuration vouch runs on without a file.
func Default() *Config {
	return &Config{
		Milter: Milter{
			Listen:          socket.Address{Network: "tcp4", Address: "127.0.0.1:8895"},
			SocketMode:      0o660,
			MaxConnections:  2000,
			OverloadAction:  policy.TempFail,
			IdleTimeout:     10 * time.Minute,
			PacketTimeout:   10 * time.Second,
			ShutdownTimeout: 30 * time.Second,
		},
		Metrics: Metrics{Listen: "127.0.0.1:9895"},
		Log:     Log{Format: "text", Level: slog.LevelInfo, Output: "stderr"},
		DNS:     dns.DefaultConfig(),
		Checks: Checks{
			Deadline: 8 * time.Second,
			Iprev:    IprevCheck{Enabled: true, Options: iprev.DefaultOptions()},
			Helo:     HeloCheck{Enabled: true},
			SPF:      SPFCheck{Enabled: true, CheckHelo: true, Options: spf.DefaultOptions()},
		},
		Policy: Policy{
			Preset:             "standard",
			DecideAt:           policy.StageRcpt,
			DryRun:             []policy.Check{},
			Rules:              policy.Table{},
			TrustedNetworks:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
			SkipAuthenticated:  true,
			ExemptRecipients:   []string{"postmaster", "abuse"},
			AllowSenderDomains: policy.Domains{},
			AllowClientNames:   policy.Domains{},
			AllowSPFDomains:    policy.Domains{},
			AllowHeloNames:     policy.Domains{},
			AllowRecipients:    []string{},
			TrustedRelays:      []netip.Prefix{},
			RelayUnparsed:      policy.Accept,
			Domains:            map[string]policy.Table{},
		},
		Headers: Headers{AuthenticationResults: true, ReceivedSPF: true, RemoveForged: true},
	}
}

// Error is one problem in a file, with where it is.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted path, e.g. policy.rules.spf.fail
	Msg  string
}

func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file, in file order.
type Errors []Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// MaxFileSize bounds a configuration file: a real one is a few KiB; this
// refuses /dev/zero or a wrong path at once instead of reading it whole.
const MaxFileSize = 1 << 20

// Load reads, decodes and validates a file.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		// A FIFO or device could block a reload for ever.
		return nil, fmt.Errorf("config: %s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config: %s is larger than %d bytes", path, MaxFileSize)
	}
	return Parse(path, data)
}

// Parse decodes data (named name in errors) over the defaults, strictly,
// and validates the result.
func Parse(name string, data []byte) (*Config, error) {
	c := Default()
	d := newDecoder(name)
	d.decode(data, c)
	// Validation runs even after decoding errors: a key that failed to
	// decode kept its default, which validates, so every error found is
	// the file's own, and all of them are reported at once.
	for _, e := range c.validate() {
		d.errorAt(e.Key, e.Msg)
	}
	if len(d.errs) > 0 {
		return nil, d.errs.sorted()
	}
	c.Warnings = d.warnings.sorted()
	return c, nil
}

// Validate checks a Config built or changed in code (flags applied, say);
// name stands for the file in errors.
func (c *Config) Validate(name string) error {
	errs := c.validate()
	if len(errs) == 0 {
		return nil
	}
	for i := range errs {
		errs[i].File = name
	}
	return errs
}

// Compile builds the policy the decision step applies: the preset's table
// with the rules over it, the dry-run checks and the allowlists.
func (p *Policy) Compile() (*policy.Policy, error) {
	tbl, err := policy.Preset(p.Preset)
	if err != nil {
		return nil, err
	}
	for check, cells := range p.Rules {
		for result, rule := range cells {
			tbl.Set(check, result, rule)
		}
	}
	if err := tbl.Validate(); err != nil {
		return nil, err
	}
	var domains []policy.DomainTable
	for entry, cells := range p.Domains {
		t := tbl.Clone()
		for check, rules := range cells {
			for result, rule := range rules {
				t.Set(check, result, rule)
			}
		}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("domains.%s: %w", entry, err)
		}
		domains = append(domains, policy.DomainTable{Domain: entry, Table: t})
	}
	dry := map[policy.Check]bool{}
	for _, c := range p.DryRun {
		if c == DryRunAll {
			for _, all := range policy.Checks {
				dry[all] = true
			}
			continue
		}
		dry[c] = true
	}
	return &policy.Policy{Table: tbl, DryRun: dry, Domains: policy.SortDomainTables(domains),
		AllowSenderDomains: p.AllowSenderDomains, AllowClientNames: p.AllowClientNames,
		AllowHeloNames: p.AllowHeloNames, AllowSPFDomains: p.AllowSPFDomains}, nil
}

// Trusted reports whether ip is in policy.trusted_networks.
func (p *Policy) Trusted(ip netip.Addr) bool { return anyContains(p.TrustedNetworks, ip) }

// ExemptRecipient reports whether rcpt (an address, maybe in <>) is in
// policy.exempt_recipients: a local part at any domain, or the address.
func (p *Policy) ExemptRecipient(rcpt string) bool { return recipientListed(rcpt, p.ExemptRecipients) }

// AllowedRecipient reports whether rcpt is in policy.allow_recipients.
func (p *Policy) AllowedRecipient(rcpt string) bool { return recipientListed(rcpt, p.AllowRecipients) }

// TrustedRelay reports whether ip is in policy.trusted_relays.
func (p *Policy) TrustedRelay(ip netip.Addr) bool { return anyContains(p.TrustedRelays, ip) }

func anyContains(nets []netip.Prefix, ip netip.Addr) bool {
	return slices.ContainsFunc(nets, func(n netip.Prefix) bool { return n.Contains(ip) })
}

// recipientListed matches a recipient against local parts (any domain)
// and whole addresses, case-insensitively.
func recipientListed(rcpt string, list []string) bool {
	addr := strings.ToLower(strings.Trim(rcpt, "<> "))
	local, _, _ := strings.Cut(addr, "@")
	for _, e := range list {
		if e = strings.ToLower(e); e == addr || e == local {
			return true
		}
	}
	return false
}

// NewLogger builds the logger the log section asks for, writing to w
// (output stderr) or to syslog. A non-nil level lets a reload change the
// level of the running logger.
func (l Log) NewLogger(w io.Writer, level *slog.LevelVar) (*slog.Logger, error) {
	var lv slog.Leveler = l.Level
	if level != nil {
		level.Set(l.Level)
		lv = level
	}
	opts := &slog.HandlerOptions{Level: lv}
	newHandler := func(w io.Writer) slog.Handler {
		if l.Format == "json" {
			return slog.NewJSONHandler(w, opts)
		}
		return slog.NewTextHandler(w, opts)
	}
	if l.Output != "syslog" {
		return slog.New(newHandler(w)), nil
	}
	h, err := newSyslogHandler(syslogSocket, newHandler)
	if err != nil {
		return nil, fmt.Errorf("log.output syslog: %w", err)
	}
	return slog.New(h), nil
}
