package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/helo"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/policy"
)

// Exit statuses of vouch check, beyond exitOK (accepted), exitError (could
// not run) and exitUsage. They follow what the SMTP client is told.
const (
	exitTempFail = 3 // a 4xx reply: the client retries later
	exitReject   = 4 // a 5xx reply: the client gives up
)

const checkHelp = `Usage: vouch check --ip IP --helo NAME --from ADDR [flags]

Explains the decision vouch would take for one SMTP transaction, running
the daemon's own checks and policy, without an MTA: each check's result
and evidence, the action, the SMTP reply, the headers that would be added.
--from '' or --from '<>' is the null sender.

Exit status:
  0  accepted (also quarantined, dry-run and exempt: the client gets 250)
  1  could not run (configuration or resolver error)
  2  usage error
  3  tempfail: the client would get a 4xx reply
  4  reject: the client would get a 5xx reply

Flags (-flag and --flag are the same):
`

// checkOptions are vouch check's flags.
type checkOptions struct {
	ip, helo, from, rcpt string
	configFile, dns      string
	mtaName, auth        string
	json                 bool
}

func parseCheckFlags(args []string, stderr io.Writer) (*checkOptions, error) {
	fs := flag.NewFlagSet("vouch check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o checkOptions
	fs.StringVar(&o.ip, "ip", "", "client `IP` address (required)")
	fs.StringVar(&o.helo, "helo", "", "HELO/EHLO `name` the client sent (required)")
	fs.StringVar(&o.from, "from", "", "envelope sender `address` (required; '' or '<>' is the null sender)")
	fs.StringVar(&o.rcpt, "rcpt", "", "envelope recipient `address` (exempt recipients such as postmaster@ are accepted whatever the verdict)")
	fs.StringVar(&o.configFile, "config", "", "configuration `file` (YAML); without it, the embedded defaults")
	fs.StringVar(&o.dns, "dns", "", "ask the DNS server at `HOST:PORT` instead of dns.servers / resolv.conf")
	fs.StringVar(&o.mtaName, "mta-name", "", "the MTA's host `name` (Postfix myhostname, the j macro); default: this host's name")
	fs.StringVar(&o.auth, "auth", "", "SMTP AUTH `user` the client logged in as (default: none)")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of text")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), checkHelp)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := requireFlags(fs, "ip", "helo", "from"); err != nil {
		return nil, err
	}
	switch {
	case net.ParseIP(o.ip) == nil:
		return nil, fmt.Errorf("--ip %q is not an IP address", o.ip)
	}
	// go-milter hands the daemon addresses without their angle brackets.
	o.from = strings.Trim(o.from, "<>")
	o.rcpt = strings.Trim(o.rcpt, "<>")
	if o.mtaName == "" {
		o.mtaName = localHostname()
	}
	return &o, nil
}

func localHostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// loadConfig reads the file (or the embedded defaults) and points the
// resolver at dnsServer when one is given.
func loadConfig(file, dnsServer string) (*config.Config, *dns.Resolver, error) {
	cfg, err := loadFile(file)
	if err != nil {
		return nil, nil, err
	}
	if dnsServer != "" {
		cfg.DNS.Servers = []string{dnsServer}
		if err := cfg.Validate("command line"); err != nil {
			return nil, nil, err
		}
	}
	res, err := dns.New(cfg.DNS, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("resolver: %w", err)
	}
	return cfg, res, nil
}

func checkCommand(args []string, stdout, stderr io.Writer) int {
	o, err := parseCheckFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "vouch check:", err)
		fmt.Fprintln(stderr, "Run 'vouch check -h' for help.")
		return exitUsage
	}
	cfg, res, err := loadConfig(o.configFile, o.dns)
	if err != nil {
		fmt.Fprintln(stderr, "vouch check: configuration not loaded:")
		fmt.Fprintln(stderr, err)
		return exitError
	}
	req := milter.Request{
		IP: net.ParseIP(o.ip), HELO: o.helo, Sender: o.from, Rcpt: o.rcpt,
		MTAName: o.mtaName, AuthUser: o.auth,
	}
	ctx := context.Background()
	e, err := milter.Explain(ctx, cfg, res, req, nil)
	if err != nil {
		fmt.Fprintln(stderr, "vouch check:", err)
		return exitError
	}
	rep := newCheckReport(ctx, cfg, res, req, e)
	if err := printReport(rep, o.json, stdout); err != nil {
		fmt.Fprintln(stderr, "vouch check:", err)
		return exitError
	}
	return rep.ExitStatus
}

// checkReport is everything vouch check says; its JSON field names are
// documented in docs/tools.md and stable.
type checkReport struct {
	Client          checkClient   `json:"client"`
	Exempt          string        `json:"exempt"`
	Iprev           *iprevReport  `json:"iprev"`
	Helo            *heloReport   `json:"helo"`
	SPF             *spfReport    `json:"spf"`
	SPFHelo         *spfReport    `json:"spf_helo"`
	Allowed         []string      `json:"allowed"`
	Policy          policyReport  `json:"policy"`
	Decision        decisionInfo  `json:"decision"`
	ExemptRecipient bool          `json:"exempt_recipient"`
	Reply           string        `json:"reply"`
	Headers         []headerField `json:"headers"`
	ExitStatus      int           `json:"exit_status"`
}

type checkClient struct {
	IP      string `json:"ip"`
	HELO    string `json:"helo"`
	From    string `json:"from"`
	Rcpt    string `json:"rcpt"`
	MTAName string `json:"mta_name"`
	Auth    string `json:"auth"`
}

type iprevReport struct {
	Result string      `json:"result"`
	PTR    []ptrReport `json:"ptr"`
	Error  string      `json:"error,omitempty"`
}

type ptrReport struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	Confirmed bool     `json:"confirmed"`
}

type heloReport struct {
	Result    string   `json:"result"`
	Name      string   `json:"name"`
	Literal   string   `json:"literal,omitempty"`
	Addresses []string `json:"addresses"`
	Error     string   `json:"error,omitempty"`
}

type spfReport struct {
	Identity  string           `json:"identity"`
	Sender    string           `json:"sender"`
	Domain    string           `json:"domain"`
	Result    string           `json:"result"`
	Mechanism string           `json:"mechanism,omitempty"`
	Problem   string           `json:"problem,omitempty"`
	Records   []spf.ChainEntry `json:"records"`
}

type policyReport struct {
	Preset   string   `json:"preset"`
	DecideAt string   `json:"decide_at"`
	DryRun   []string `json:"dry_run"`
}

type decisionInfo struct {
	Stage      string   `json:"stage"`
	Action     string   `json:"action"`
	Would      string   `json:"would"`
	DryRun     bool     `json:"dry_run"`
	Triggered  []string `json:"triggered"`
	WouldReply string   `json:"would_reply,omitempty"`
}

type headerField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func newCheckReport(ctx context.Context, cfg *config.Config, r dns.Lookuper, req milter.Request, e milter.Explanation) checkReport {
	rep := checkReport{
		Client: checkClient{IP: req.IP.String(), HELO: req.HELO, From: req.Sender, Rcpt: req.Rcpt,
			MTAName: req.MTAName, Auth: req.AuthUser},
		Exempt:          string(e.Exempt),
		Allowed:         []string{},
		Policy:          policyReport{Preset: cfg.Policy.Preset, DecideAt: string(cfg.Policy.DecideAt), DryRun: []string{}},
		ExemptRecipient: e.ExemptRecipient,
		Reply:           e.Reply,
		Headers:         []headerField{},
	}
	for _, c := range cfg.Policy.DryRun {
		rep.Policy.DryRun = append(rep.Policy.DryRun, string(c))
	}
	res := e.Results
	if res.Iprev != nil {
		rep.Iprev = newIprevReport(*res.Iprev)
	}
	if h := res.Helo; h != nil {
		rep.Helo = &heloReport{Result: string(h.Verdict), Name: h.Name, Addresses: ipStrings(h.Addrs)}
		if h.Literal != nil {
			rep.Helo.Literal = h.Literal.String()
		}
		if h.Err != nil {
			rep.Helo.Error = h.Err.Error()
		}
	}
	// The record chain is fetched again, for display only, through the
	// same (caching) resolver the checks used.
	cctx, cancel := context.WithTimeout(ctx, cfg.Checks.Deadline)
	defer cancel()
	if res.SPF != nil {
		rep.SPF = newSPFReport(cctx, r, *res.SPF)
	}
	if res.SPFHelo != nil {
		rep.SPFHelo = newSPFReport(cctx, r, *res.SPFHelo)
	}
	d := e.Decision
	if d.AllowedBy != "" {
		rep.Allowed = append(rep.Allowed, d.AllowedBy)
	}
	rep.Decision = decisionInfo{Stage: string(e.Stage), Action: d.Action.String(), Would: d.Would.String(),
		DryRun: d.DryRun(), Triggered: []string{}}
	if d.Allowed == "" {
		for _, c := range d.Triggered {
			rep.Decision.Triggered = append(rep.Decision.Triggered, string(c))
		}
	}
	if d.DryRun() {
		rep.Decision.WouldReply = d.Reply()
	}
	for _, f := range e.Headers {
		rep.Headers = append(rep.Headers, headerField{f.Name, f.Value})
	}
	rep.ExitStatus = replyExitStatus(e.Reply)
	return rep
}

// replyExitStatus maps what the client is told to vouch check's status.
func replyExitStatus(reply string) int {
	switch {
	case reply == "":
		return exitOK
	case reply[0] == '4':
		return exitTempFail
	}
	return exitReject
}

func newIprevReport(r iprev.Result) *iprevReport {
	rep := &iprevReport{Result: string(r.Verdict), PTR: []ptrReport{}}
	confirmed := map[string]bool{}
	for _, n := range r.Confirmed {
		confirmed[n] = true
	}
	for _, n := range r.PTRNames {
		rep.PTR = append(rep.PTR, ptrReport{Name: n, Addresses: ipStrings(r.Forward[n]), Confirmed: confirmed[n]})
	}
	if r.Err != nil {
		rep.Error = r.Err.Error()
	}
	return rep
}

func newSPFReport(ctx context.Context, r dns.Lookuper, res spf.Result) *spfReport {
	rep := &spfReport{Identity: string(res.Identity), Sender: res.Sender, Domain: res.Domain,
		Result: string(res.Verdict), Mechanism: res.Mechanism, Problem: res.Problem, Records: []spf.ChainEntry{}}
	if res.Domain != "" {
		rep.Records = spf.Chain(ctx, r, res.Domain)
	}
	return rep
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

// quoteRecord shows a TXT record: always quoted, like a zone file.
func quoteRecord(s string) string { return strconv.QuoteToASCII(s) }

// checkWriter writes the text report: a label column, a result column,
// then the evidence; continuation lines are indented under the evidence.
type checkWriter struct{ w io.Writer }

const indent = "                     " // label (8) + result (11) + two spaces

func (c checkWriter) line(label, result, text string) {
	fmt.Fprintf(c.w, "%-8s %-11s %s\n", label, result, text)
}

func (c checkWriter) more(text string) { fmt.Fprintf(c.w, "%s%s\n", indent, text) }

func (c checkWriter) plain(label, text string) { fmt.Fprintf(c.w, "%-8s %s\n", label, text) }

func (r checkReport) writeText(w io.Writer) {
	c := checkWriter{w}
	from := r.Client.From
	if from == "" {
		from = "<>"
	}
	client := fmt.Sprintf("%s  helo %s  from %s", r.Client.IP, show(r.Client.HELO), show(from))
	if r.Client.Rcpt != "" {
		client += "  rcpt " + show(r.Client.Rcpt)
	}
	if r.Client.Auth != "" {
		client += "  auth " + show(r.Client.Auth)
	}
	c.plain("client", client)
	switch r.Exempt {
	case "":
	case string(milter.ExemptTrusted):
		c.plain("exempt", r.Client.IP+" is in policy.trusted_networks: no checks, no headers")
	case string(milter.ExemptAuthenticated):
		c.plain("exempt", "the client authenticated (policy.skip_authenticated): no checks, no headers")
	default:
		c.plain("exempt", r.Exempt+": no checks")
	}
	if r.Exempt == "" {
		r.writeIprev(c)
		r.writeHelo(c)
		switch {
		case r.SPF != nil:
			writeSPF(c, "spf", r.SPF)
		case r.Reply != "" && (r.Decision.Stage == string(policy.StageConnect) || r.Decision.Stage == string(policy.StageHelo)):
			c.line("spf", "-", "not checked: refused before MAIL FROM")
		default:
			c.line("spf", "-", "not checked (checks.spf.enabled is off)")
		}
		if r.SPFHelo != nil {
			writeSPF(c, "spf_helo", r.SPFHelo)
		} else if r.Client.From != "" && r.SPF != nil {
			c.line("spf_helo", "-", "not checked (checks.spf.check_helo is off)")
		}
	}
	for _, a := range r.Allowed {
		c.plain("allowed", a)
	}
	pol := r.Policy.Preset + ", decided at " + r.Policy.DecideAt
	if len(r.Policy.DryRun) > 0 {
		pol += ", dry run: " + strings.Join(r.Policy.DryRun, ", ")
	}
	c.plain("policy", pol)
	r.writeAction(c)
	r.writeHeaders(w)
}

func (r checkReport) writeIprev(c checkWriter) {
	ip := r.Iprev
	if ip == nil {
		c.line("iprev", "-", "not checked (checks.iprev.enabled is off)")
		return
	}
	if len(ip.PTR) == 0 {
		text := r.Client.IP + " has no PTR record"
		if ip.Result != string(iprev.NoPTR) {
			text = r.Client.IP + ": " + ip.Error
		}
		c.line("iprev", ip.Result, text)
		return
	}
	for i, p := range ip.PTR {
		fwd := strings.Join(p.Addresses, ", ")
		if fwd == "" {
			fwd = "(no address)"
		}
		text := fmt.Sprintf("%s -> %s -> %s", r.Client.IP, show(p.Name), fwd)
		if p.Confirmed {
			text += " (confirmed)"
		} else {
			text += " (does not lead back)"
		}
		if i == 0 {
			c.line("iprev", ip.Result, text)
		} else {
			c.more(text)
		}
	}
	if ip.Error != "" {
		c.more(ip.Error)
	}
}

func (r checkReport) confirmedNames() []string {
	var names []string
	if r.Iprev != nil {
		for _, p := range r.Iprev.PTR {
			if p.Confirmed {
				names = append(names, p.Name)
			}
		}
	}
	return names
}

func (r checkReport) writeHelo(c checkWriter) {
	h := r.Helo
	if h == nil {
		c.line("helo", "-", "not checked (checks.helo.enabled is off)")
		return
	}
	rdns := "no confirmed rDNS name"
	if names := r.confirmedNames(); len(names) > 0 {
		rdns = "rDNS name " + strings.Join(names, ", ")
	}
	addrs := strings.Join(h.Addresses, ", ")
	if addrs == "" {
		addrs = "no address"
	}
	var text string
	switch h.Result {
	case string(helo.Match):
		text = show(h.Name) + " is the confirmed rDNS name"
	case string(helo.Resolves):
		if names := r.confirmedNames(); len(names) > 0 {
			text = fmt.Sprintf("%s -> %s, but it is not the rDNS name %s", show(h.Name), addrs, strings.Join(names, ", "))
		} else {
			text = fmt.Sprintf("%s -> %s, but the client has no confirmed rDNS name", show(h.Name), addrs)
		}
	case string(helo.Literal):
		text = show(r.Client.HELO) + " is the client address"
	case string(helo.LiteralMismatch):
		text = show(r.Client.HELO) + " is not the client address " + r.Client.IP
	case string(helo.Invalid):
		text = show(r.Client.HELO) + " is not a host name or address literal"
	case string(helo.Mismatch):
		text = fmt.Sprintf("%s -> %s; %s", show(h.Name), addrs, rdns)
	default:
		text = show(r.Client.HELO)
	}
	c.line("helo", h.Result, text)
	if h.Error != "" {
		c.more(h.Error)
	}
}

func writeSPF(c checkWriter, label string, s *spfReport) {
	id := s.Identity
	if s.Sender != "" {
		id += " " + show(s.Sender)
	}
	var text string
	switch {
	case s.Domain == "":
		text = s.Problem
	case s.Mechanism == "default":
		text = show(s.Domain) + ": no term matched, neutral by default"
	case s.Mechanism != "":
		text = show(s.Domain) + ": " + show(s.Mechanism) + " matched"
	case s.Problem != "":
		text = show(s.Domain) + ": " + s.Problem
	default:
		text = show(s.Domain)
	}
	c.line(label, s.Result, text+" ("+id+")")
	for _, rec := range s.Records {
		head := strings.Repeat("  ", rec.Depth)
		if rec.Via != "" {
			head += rec.Via + " "
		}
		head += show(rec.Domain)
		if len(rec.Records) == 0 {
			c.more(head + ": " + rec.Error)
			continue
		}
		for _, txt := range rec.Records {
			c.more(head + " " + quoteRecord(txt))
		}
		if rec.Error != "" {
			c.more(head + ": " + rec.Error)
		}
	}
}

var stageCommands = map[string]string{
	string(policy.StageConnect): "the connection", string(policy.StageHelo): "HELO",
	string(policy.StageMail): "MAIL FROM", string(policy.StageRcpt): "RCPT TO", string(policy.StageEOM): "end of data",
}

func (r checkReport) writeAction(c checkWriter) {
	d := r.Decision
	action := d.Action
	if len(d.Triggered) > 0 && !d.DryRun {
		action += " (" + strings.Join(d.Triggered, ", ") + ")"
	}
	switch {
	case d.DryRun:
		action += fmt.Sprintf(" (dry run: would %s because of %s)", d.Would, strings.Join(d.Triggered, ", "))
	case r.ExemptRecipient:
		action += ", but " + show(r.Client.Rcpt) + " is an exempt recipient: accepted"
	case d.Action == policy.Quarantine.String():
		action += ": accepted into the MTA's hold queue"
	}
	c.plain("action", action)
	switch {
	case r.Reply != "":
		c.plain("reply", r.Reply+"  (to "+stageCommands[d.Stage]+")")
	case d.WouldReply != "":
		c.plain("reply", "none: accepted (dry run; would be "+d.WouldReply+")")
	default:
		c.plain("reply", "none: accepted")
	}
}

func (r checkReport) writeHeaders(w io.Writer) {
	switch {
	case len(r.Headers) > 0:
		fmt.Fprintln(w, "headers  added at the top of the message:")
		for _, h := range r.Headers {
			fmt.Fprintf(w, "%s: %s\n", h.Name, h.Value)
		}
	case r.Reply != "":
		fmt.Fprintln(w, "headers  none: the message is refused")
	case r.Exempt != "":
		fmt.Fprintln(w, "headers  none: exempt messages are not checked")
	default:
		fmt.Fprintln(w, "headers  none (headers.authentication_results and headers.received_spf are off)")
	}
}
