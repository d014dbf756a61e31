// Package config reads vouch's YAML configuration: embedded defaults for
// every key, strict decoding (an unknown key is an error with its file and
// line), and validation before anything is used.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter/headers"
	"github.com/vouch-mail/vouch/milter/policy"
	"github.com/vouch-mail/vouch/milter/socket"
)

// Config is the whole file. Every field has a default (see Default); the
// YAML keys are the documented names.
type Config struct {
	Milter  Milter  `yaml:"milter"`
	Metrics Metrics `yaml:"metrics"`
	Log     Log     `yaml:"log"`
	DNS     DNS     `yaml:"dns"`
	Checks  Checks  `yaml:"checks"`
	Policy  Policy  `yaml:"policy"`
	Headers Headers `yaml:"headers"`
}

type Milter struct {
	Listen          string        `yaml:"listen"`
	SocketMode      string        `yaml:"socket_mode"`
	SocketGroup     string        `yaml:"socket_group"`
	MaxConnections  int           `yaml:"max_connections"`
	OverloadAction  string        `yaml:"overload_action"`
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

type Metrics struct {
	Listen string `yaml:"listen"`
}

type Log struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
}

type DNS struct {
	Servers        []string      `yaml:"servers"`
	Timeout        time.Duration `yaml:"timeout"`
	Attempts       int           `yaml:"attempts"`
	CacheSize      int           `yaml:"cache_size"`
	MinTTL         time.Duration `yaml:"min_ttl"`
	MaxTTL         time.Duration `yaml:"max_ttl"`
	NegativeMaxTTL time.Duration `yaml:"negative_max_ttl"`
	MaxCNAMEChain  int           `yaml:"max_cname_chain"`
}

type Checks struct {
	Deadline time.Duration `yaml:"deadline"`
	Iprev    IprevCheck    `yaml:"iprev"`
	Helo     HeloCheck     `yaml:"helo"`
	SPF      SPFCheck      `yaml:"spf"`
}

type IprevCheck struct {
	Enabled          bool `yaml:"enabled"`
	MaxPTR           int  `yaml:"max_ptr"`
	TrustMTAHostname bool `yaml:"trust_mta_hostname"`
}

type HeloCheck struct {
	Enabled bool `yaml:"enabled"`
}

type SPFCheck struct {
	Enabled         bool `yaml:"enabled"`
	CheckHelo       bool `yaml:"check_helo"`
	LookupLimit     int  `yaml:"lookup_limit"`
	VoidLookupLimit int  `yaml:"void_lookup_limit"`
}

type Policy struct {
	Preset             string                         `yaml:"preset"`
	DecideAt           string                         `yaml:"decide_at"`
	DryRun             []string                       `yaml:"dry_run"`
	Rules              map[string]map[string]RuleSpec `yaml:"rules"`
	TrustedNetworks    []string                       `yaml:"trusted_networks"`
	SkipAuthenticated  bool                           `yaml:"skip_authenticated"`
	ExemptRecipients   []string                       `yaml:"exempt_recipients"`
	AllowSenderDomains []string                       `yaml:"allow_sender_domains"`
	AllowClientNames   []string                       `yaml:"allow_client_names"`
}

// RuleSpec overrides one cell of the policy table. In YAML it is either an
// action name ("reject") or a mapping with action, code, status and text;
// what is left out comes from the preset's reply for that action.
type RuleSpec struct {
	Action string `yaml:"action"`
	Code   int    `yaml:"code"`
	Status string `yaml:"status"`
	Text   string `yaml:"text"`
}

// UnmarshalYAML accepts the short form `fail: reject`. Node.Decode is not
// strict, so unknown keys are refused here.
func (r *RuleSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		r.Action = n.Value
		return nil
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i < len(n.Content); i += 2 {
			switch k := n.Content[i]; k.Value {
			case "action", "code", "status", "text":
			default:
				return fmt.Errorf("line %d: field %s is not a known key in a policy rule (want action, code, status, text)", k.Line, k.Value)
			}
		}
	}
	type plain RuleSpec // without this method: no recursion
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*r = RuleSpec(p)
	return nil
}

type Headers struct {
	AuthServID            string `yaml:"authserv_id"`
	AuthenticationResults bool   `yaml:"authentication_results"`
	ReceivedSPF           bool   `yaml:"received_spf"`
	RemoveForged          bool   `yaml:"remove_forged"`
}

// Default is the embedded configuration vouch runs on without a file.
func Default() *Config {
	d := dns.DefaultConfig()
	c := &Config{
		Milter: Milter{
			Listen:          "inet:8895@127.0.0.1",
			SocketMode:      "0660",
			MaxConnections:  2000,
			OverloadAction:  "tempfail",
			IdleTimeout:     10 * time.Minute,
			ShutdownTimeout: 30 * time.Second,
		},
		Metrics: Metrics{Listen: "127.0.0.1:9895"},
		Log:     Log{Format: "text", Level: "info"},
		DNS: DNS{
			Servers:        []string{},
			Timeout:        d.Timeout,
			Attempts:       d.Attempts,
			CacheSize:      d.CacheSize,
			MinTTL:         d.MinTTL,
			MaxTTL:         d.MaxTTL,
			NegativeMaxTTL: d.NegativeMaxTTL,
			MaxCNAMEChain:  d.MaxCNAMEChain,
		},
		Policy: Policy{
			Preset:             "standard",
			DecideAt:           "rcpt",
			DryRun:             []string{},
			Rules:              map[string]map[string]RuleSpec{},
			TrustedNetworks:    []string{"127.0.0.0/8", "::1/128"},
			SkipAuthenticated:  true,
			ExemptRecipients:   []string{"postmaster", "abuse"},
			AllowSenderDomains: []string{},
			AllowClientNames:   []string{},
		},
		Headers: Headers{AuthenticationResults: true, ReceivedSPF: true, RemoveForged: true},
	}
	c.Checks.Deadline = 8 * time.Second
	c.Checks.Iprev.Enabled = true
	c.Checks.Iprev.MaxPTR = 10
	c.Checks.Helo.Enabled = true
	c.Checks.SPF.Enabled = true
	c.Checks.SPF.CheckHelo = true
	c.Checks.SPF.LookupLimit = spf.DefaultLookupLimit
	c.Checks.SPF.VoidLookupLimit = spf.DefaultVoidLookupLimit
	return c
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

// Errors is every problem found in a file.
type Errors []Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Load reads, decodes and validates a file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data (named name in errors) over the defaults, strictly,
// and validates the result.
func Parse(name string, data []byte) (*Config, error) {
	c := Default()
	if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			return nil, decodeErrors(name, err)
		}
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // decoded once already: positions only
	if errs := c.validate(); len(errs) > 0 {
		for i := range errs {
			errs[i].File = name
			errs[i].Line = lineOf(&root, errs[i].Key)
		}
		return nil, errs
	}
	return c, nil
}

// decodeErrors turns yaml's "line N: ..." messages into Errors.
func decodeErrors(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var es Errors
		for _, m := range te.Errors {
			es = append(es, lineError(name, m))
		}
		return es
	}
	return Errors{lineError(name, strings.TrimPrefix(err.Error(), "yaml: "))}
}

func lineError(name, msg string) Error {
	e := Error{File: name, Msg: msg}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil {
				e.Line, e.Msg = line, after
			}
		}
	}
	if m := notFound.FindStringSubmatch(e.Msg); m != nil {
		e.Msg = "field " + m[1] + " is not a known key in " + sections[m[2]]
	}
	return e
}

var notFound = regexp.MustCompile(`^field (\S+) not found in type config\.(\w+)$`)

// sections names the Go types by their place in the file.
var sections = map[string]string{
	"Config": "the top level (want milter, metrics, log, dns, checks, policy, headers)",
	"Milter": "milter", "Metrics": "metrics", "Log": "log", "DNS": "dns", "Checks": "checks",
	"IprevCheck": "checks.iprev", "HeloCheck": "checks.helo", "SPFCheck": "checks.spf",
	"Policy": "policy", "Headers": "headers", "plain": "a policy rule",
}

// lineOf finds the line of a dotted key in the document, or of its
// nearest parent that is there.
func lineOf(root *yaml.Node, key string) int {
	if root == nil || len(root.Content) == 0 || key == "" {
		return 0
	}
	n := root.Content[0]
	line := 0
	for _, part := range strings.Split(key, ".") {
		if n.Kind == yaml.SequenceNode {
			i, err := strconv.Atoi(part)
			if err != nil || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
			continue
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line, n, found = n.Content[i].Line, n.Content[i+1], true
				break
			}
		}
		if !found {
			return line
		}
	}
	return line
}

// Validate checks a Config built in code (flags applied, say); name stands
// for the file in errors.
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

func (c *Config) validate() Errors {
	var errs Errors
	add := func(key, format string, a ...any) {
		errs = append(errs, Error{Key: key, Msg: fmt.Sprintf(format, a...)})
	}

	if _, err := socket.Parse(c.Milter.Listen); err != nil {
		add("milter.listen", "%v", err)
	}
	if _, err := parseMode(c.Milter.SocketMode); err != nil {
		add("milter.socket_mode", "%v", err)
	}
	if c.Milter.MaxConnections < 0 {
		add("milter.max_connections", "must be 0 (no cap) or more, not %d", c.Milter.MaxConnections)
	}
	if c.Milter.OverloadAction != "tempfail" && c.Milter.OverloadAction != "accept" {
		add("milter.overload_action", "must be tempfail or accept, not %q", c.Milter.OverloadAction)
	}
	if c.Milter.IdleTimeout < 0 {
		add("milter.idle_timeout", "must not be negative")
	}
	if c.Milter.ShutdownTimeout < 0 {
		add("milter.shutdown_timeout", "must not be negative")
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			add("metrics.listen", "want HOST:PORT or empty to disable: %v", err)
		}
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		add("log.format", "must be text or json, not %q", c.Log.Format)
	}
	if _, err := ParseLevel(c.Log.Level); err != nil {
		add("log.level", "%v", err)
	}

	for i, s := range c.DNS.Servers {
		host, port, err := net.SplitHostPort(s)
		if err != nil || net.ParseIP(host) == nil || port == "" {
			add(fmt.Sprintf("dns.servers.%d", i), "want IP:PORT or [IPv6]:PORT, not %q", s)
		}
	}
	for key, d := range map[string]time.Duration{"dns.timeout": c.DNS.Timeout, "checks.deadline": c.Checks.Deadline} {
		if d <= 0 {
			add(key, "must be positive")
		}
	}
	for key, d := range map[string]time.Duration{"dns.min_ttl": c.DNS.MinTTL, "dns.max_ttl": c.DNS.MaxTTL, "dns.negative_max_ttl": c.DNS.NegativeMaxTTL} {
		if d < 0 {
			add(key, "must not be negative")
		}
	}
	if c.DNS.MaxTTL > 0 && c.DNS.MinTTL > c.DNS.MaxTTL {
		add("dns.min_ttl", "%s is above max_ttl %s", c.DNS.MinTTL, c.DNS.MaxTTL)
	}
	if c.DNS.Attempts < 1 {
		add("dns.attempts", "must be at least 1")
	}
	if c.DNS.MaxCNAMEChain < 1 {
		add("dns.max_cname_chain", "must be at least 1")
	}
	if c.Checks.Deadline > 0 && c.Checks.Deadline >= 30*time.Second {
		add("checks.deadline", "%s reaches Postfix's milter_command_timeout (30s): the MTA would give up first", c.Checks.Deadline)
	}
	if c.Checks.Iprev.MaxPTR < 1 {
		add("checks.iprev.max_ptr", "must be at least 1")
	}
	if c.Checks.SPF.LookupLimit < 1 {
		add("checks.spf.lookup_limit", "must be at least 1 (RFC 7208 says 10)")
	}
	if c.Checks.SPF.VoidLookupLimit < 1 {
		add("checks.spf.void_lookup_limit", "must be at least 1 (RFC 7208 says 2)")
	}

	if _, err := policy.Preset(c.Policy.Preset); err != nil {
		add("policy.preset", "%v", err)
	}
	switch c.Policy.DecideAt {
	case "rcpt", "mail", "helo":
	default:
		add("policy.decide_at", "must be rcpt, mail or helo, not %q", c.Policy.DecideAt)
	}
	for i, d := range c.Policy.DryRun {
		if _, ok := policy.Results[policy.Check(d)]; !ok && d != "all" {
			add(fmt.Sprintf("policy.dry_run.%d", i), "unknown check %q (want iprev, helo, spf, spf_helo or all)", d)
		}
	}
	for _, check := range sortedKeys(c.Policy.Rules) {
		results, ok := policy.Results[policy.Check(check)]
		if !ok {
			add("policy.rules."+check, "unknown check %q (want iprev, helo, spf or spf_helo)", check)
			continue
		}
		for _, result := range sortedKeys(c.Policy.Rules[check]) {
			key := "policy.rules." + check + "." + result
			if !contains(results, result) {
				add(key, "unknown result %q for %s (want one of %s)", result, check, strings.Join(results, ", "))
				continue
			}
			if _, err := c.Policy.Rules[check][result].rule(policy.Check(check), result); err != nil {
				add(key, "%v", err)
			}
		}
	}
	for i, n := range c.Policy.TrustedNetworks {
		if _, err := parsePrefix(n); err != nil {
			add(fmt.Sprintf("policy.trusted_networks.%d", i), "%v", err)
		}
	}
	for i, r := range c.Policy.ExemptRecipients {
		if r == "" || strings.ContainsAny(r, " <>") || strings.Count(r, "@") > 1 {
			add(fmt.Sprintf("policy.exempt_recipients.%d", i), "want a local part (postmaster) or an address (abuse@example.com), not %q", r)
		}
	}
	for key, list := range map[string][]string{"policy.allow_sender_domains": c.Policy.AllowSenderDomains, "policy.allow_client_names": c.Policy.AllowClientNames} {
		for i, d := range list {
			name := strings.TrimPrefix(d, ".")
			if name == "" || strings.ContainsAny(name, " @*/") || !strings.Contains(name, ".") && !strings.HasPrefix(d, ".") {
				add(fmt.Sprintf("%s.%d", key, i), "want a domain (example.com) or a suffix (.example.com), not %q", d)
			}
		}
	}
	if id := c.Headers.AuthServID; id != "" && !headers.ValidAuthServID(id) {
		add("headers.authserv_id", "must be a host name or RFC 2045 token, not %q", id)
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Key < errs[j].Key })
	return errs
}

// rule builds the policy rule, filling what the spec leaves out from the
// preset's reply for that action.
func (r RuleSpec) rule(check policy.Check, result string) (policy.Rule, error) {
	action, err := policy.ParseAction(r.Action)
	if err != nil {
		return policy.Rule{}, err
	}
	rule := policy.DefaultRule(check, result, action)
	if action == policy.Accept || action == policy.Quarantine {
		if r.Code != 0 || r.Status != "" || r.Text != "" {
			return rule, fmt.Errorf("%s sends no reply: code, status and text do not apply", action)
		}
		return rule, nil
	}
	if r.Code != 0 {
		rule.Code = r.Code
		if r.Status == "" {
			// Keep the class in step with the code.
			rule.Status = strconv.Itoa(r.Code/100) + rule.Status[1:]
		}
	}
	if r.Status != "" {
		rule.Status = r.Status
	}
	if r.Text != "" {
		rule.Text = r.Text
	}
	if err := (policy.Table{check: {result: rule}}).Validate(); err != nil {
		_, msg, _ := strings.Cut(err.Error(), result+": ")
		return rule, errors.New(msg)
	}
	return rule, nil
}

func parseMode(s string) (os.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("want an octal file mode such as \"0660\", not %q", s)
	}
	return os.FileMode(m), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("want a CIDR network (192.0.2.0/24, 2001:db8::/32) or an address, not %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
