// Package explain is what vouch check says about one decision: a report
// built from milter.Explain's outcome, with each check's evidence, as JSON
// (its field names are documented in docs/tools.md and stable) or as text
// for people.
package explain

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/vouch-mail/vouch/checks/audit"
	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/helo"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/policy"
)

// Report is everything vouch check says; its JSON field names are
// documented in docs/tools.md and stable.
type Report struct {
	Client          Client         `json:"client"`
	Exempt          string         `json:"exempt"`
	Iprev           *IprevReport   `json:"iprev"`
	Helo            *HeloReport    `json:"helo"`
	SPF             *SPFReport     `json:"spf"`
	SPFHelo         *SPFReport     `json:"spf_helo"`
	Allowed         []string       `json:"allowed"`
	Policy          PolicyReport   `json:"policy"`
	Decision        DecisionReport `json:"decision"`
	ExemptRecipient bool           `json:"exempt_recipient"`
	Reply           string         `json:"reply"`
	Headers         []HeaderField  `json:"headers"`
	ExitStatus      int            `json:"exit_status"`
}

type Client struct {
	IP      string `json:"ip"`
	HELO    string `json:"helo"`
	From    string `json:"from"`
	Rcpt    string `json:"rcpt"`
	MTAName string `json:"mta_name"`
	Auth    string `json:"auth"`
}

type IprevReport struct {
	Result string      `json:"result"`
	PTR    []PTRReport `json:"ptr"`
	Error  string      `json:"error,omitempty"`
}

type PTRReport struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	Confirmed bool     `json:"confirmed"`
}

type HeloReport struct {
	Result    string   `json:"result"`
	Name      string   `json:"name"`
	Literal   string   `json:"literal,omitempty"`
	Addresses []string `json:"addresses"`
	Error     string   `json:"error,omitempty"`
}

type SPFReport struct {
	Identity  string           `json:"identity"`
	Sender    string           `json:"sender"`
	Domain    string           `json:"domain"`
	Result    string           `json:"result"`
	Mechanism string           `json:"mechanism,omitempty"`
	Problem   string           `json:"problem,omitempty"`
	Records   []spf.ChainEntry `json:"records"`
}

type PolicyReport struct {
	Preset   string   `json:"preset"`
	DecideAt string   `json:"decide_at"`
	DryRun   []string `json:"dry_run"`
}

type DecisionReport struct {
	Stage      string   `json:"stage"`
	Action     string   `json:"action"`
	Would      string   `json:"would"`
	DryRun     bool     `json:"dry_run"`
	Triggered  []string `json:"triggered"`
	WouldReply string   `json:"would_reply,omitempty"`
}

type HeaderField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func NewReport(ctx context.Context, cfg *config.Config, r dns.Lookuper, req milter.Request, e milter.Explanation) Report {
	rep := Report{
		Client: Client{IP: req.IP.String(), HELO: req.HELO, From: req.Sender, Rcpt: req.Rcpt,
			MTAName: req.MTAName, Auth: req.AuthUser},
		Exempt:          string(e.Exempt),
		Allowed:         []string{},
		Policy:          PolicyReport{Preset: cfg.Policy.Preset, DecideAt: string(cfg.Policy.DecideAt), DryRun: []string{}},
		ExemptRecipient: e.ExemptRecipient,
		Reply:           e.Reply,
		Headers:         []HeaderField{},
	}
	for _, c := range cfg.Policy.DryRun {
		rep.Policy.DryRun = append(rep.Policy.DryRun, string(c))
	}
	res := e.Results
	if res.Iprev != nil {
		rep.Iprev = newIprevReport(*res.Iprev)
	}
	if h := res.Helo; h != nil {
		rep.Helo = &HeloReport{Result: string(h.Verdict), Name: h.Name, Addresses: ipStrings(h.Addrs)}
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
	rep.Decision = DecisionReport{Stage: string(e.Stage), Action: d.Action.String(), Would: d.Would.String(),
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
		rep.Headers = append(rep.Headers, HeaderField{f.Name, f.Value})
	}
	rep.ExitStatus = replyExitStatus(e.Reply)
	return rep
}

// Exit statuses of vouch check. They follow what the SMTP client is told.
const (
	ExitAccept   = 0 // accepted (also quarantined, dry-run and exempt: the client gets 250)
	ExitTempFail = 3 // a 4xx reply: the client retries later
	ExitReject   = 4 // a 5xx reply: the client gives up
)

// replyExitStatus maps what the client is told to vouch check's status.
func replyExitStatus(reply string) int {
	switch {
	case reply == "":
		return ExitAccept
	case reply[0] == '4':
		return ExitTempFail
	}
	return ExitReject
}

func newIprevReport(r iprev.Result) *IprevReport {
	rep := &IprevReport{Result: string(r.Verdict), PTR: []PTRReport{}}
	confirmed := map[string]bool{}
	for _, n := range r.Confirmed {
		confirmed[n] = true
	}
	for _, n := range r.PTRNames {
		rep.PTR = append(rep.PTR, PTRReport{Name: n, Addresses: ipStrings(r.Forward[n]), Confirmed: confirmed[n]})
	}
	if r.Err != nil {
		rep.Error = r.Err.Error()
	}
	return rep
}

func newSPFReport(ctx context.Context, r dns.Lookuper, res spf.Result) *SPFReport {
	rep := &SPFReport{Identity: string(res.Identity), Sender: res.Sender, Domain: res.Domain,
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

// writer writes the text report: a label column, a result column,
// then the evidence; continuation lines are indented under the evidence.
type writer struct{ w io.Writer }

const indent = "                     " // label (8) + result (11) + two spaces

func (c writer) line(label, result, text string) {
	fmt.Fprintf(c.w, "%-8s %-11s %s\n", label, result, text)
}

func (c writer) more(text string) { fmt.Fprintf(c.w, "%s%s\n", indent, text) }

func (c writer) plain(label, text string) { fmt.Fprintf(c.w, "%-8s %s\n", label, text) }

func (r Report) WriteText(w io.Writer) {
	c := writer{w}
	from := r.Client.From
	if from == "" {
		from = "<>"
	}
	client := fmt.Sprintf("%s  helo %s  from %s", r.Client.IP, audit.Quote(r.Client.HELO), audit.Quote(from))
	if r.Client.Rcpt != "" {
		client += "  rcpt " + audit.Quote(r.Client.Rcpt)
	}
	if r.Client.Auth != "" {
		client += "  auth " + audit.Quote(r.Client.Auth)
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

func (r Report) writeIprev(c writer) {
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
		text := fmt.Sprintf("%s -> %s -> %s", r.Client.IP, audit.Quote(p.Name), fwd)
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

func (r Report) confirmedNames() []string {
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

func (r Report) writeHelo(c writer) {
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
		text = audit.Quote(h.Name) + " is the confirmed rDNS name"
	case string(helo.Resolves):
		if names := r.confirmedNames(); len(names) > 0 {
			text = fmt.Sprintf("%s -> %s, but it is not the rDNS name %s", audit.Quote(h.Name), addrs, strings.Join(names, ", "))
		} else {
			text = fmt.Sprintf("%s -> %s, but the client has no confirmed rDNS name", audit.Quote(h.Name), addrs)
		}
	case string(helo.Literal):
		text = audit.Quote(r.Client.HELO) + " is the client address"
	case string(helo.LiteralMismatch):
		text = audit.Quote(r.Client.HELO) + " is not the client address " + r.Client.IP
	case string(helo.Invalid):
		text = audit.Quote(r.Client.HELO) + " is not a host name or address literal"
	case string(helo.Mismatch):
		text = fmt.Sprintf("%s -> %s; %s", audit.Quote(h.Name), addrs, rdns)
	default:
		text = audit.Quote(r.Client.HELO)
	}
	c.line("helo", h.Result, text)
	if h.Error != "" {
		c.more(h.Error)
	}
}

func writeSPF(c writer, label string, s *SPFReport) {
	id := s.Identity
	if s.Sender != "" {
		id += " " + audit.Quote(s.Sender)
	}
	var text string
	switch {
	case s.Domain == "":
		text = s.Problem
	case s.Mechanism == "default":
		text = audit.Quote(s.Domain) + ": no term matched, neutral by default"
	case s.Mechanism != "":
		text = audit.Quote(s.Domain) + ": " + audit.Quote(s.Mechanism) + " matched"
	case s.Problem != "":
		text = audit.Quote(s.Domain) + ": " + s.Problem
	default:
		text = audit.Quote(s.Domain)
	}
	c.line(label, s.Result, text+" ("+id+")")
	for _, rec := range s.Records {
		head := strings.Repeat("  ", rec.Depth)
		if rec.Via != "" {
			head += rec.Via + " "
		}
		head += audit.Quote(rec.Domain)
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

func (r Report) writeAction(c writer) {
	d := r.Decision
	action := d.Action
	if len(d.Triggered) > 0 && !d.DryRun {
		action += " (" + strings.Join(d.Triggered, ", ") + ")"
	}
	switch {
	case d.DryRun:
		action += fmt.Sprintf(" (dry run: would %s because of %s)", d.Would, strings.Join(d.Triggered, ", "))
	case r.ExemptRecipient:
		action += ", but " + audit.Quote(r.Client.Rcpt) + " is an exempt recipient: accepted"
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

func (r Report) writeHeaders(w io.Writer) {
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
