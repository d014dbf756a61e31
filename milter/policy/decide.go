package policy

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vouch-mail/vouch/checks/envelope"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter/textsafe"
)

// Policy is the compiled policy of one configuration: the table, the
// checks whose refusals are only logged, and the allowlists.
type Policy struct {
	Table  Table
	DryRun map[Check]bool
	// AllowSenderDomains: mail from these domains is accepted unless its
	// SPF fails.
	AllowSenderDomains Domains
	// AllowClientNames: clients with one of these forward-confirmed names
	// are accepted whatever any check says.
	AllowClientNames Domains
	// AllowHeloNames: clients whose HELO is one of these names, verified
	// (the confirmed rDNS name, or its A/AAAA holds the client), are
	// accepted.
	AllowHeloNames Domains
	// AllowSPFDomains: clients that pass the SPF record of one of these
	// domains are accepted; the caller checks them (Input.SPFPassDomain).
	AllowSPFDomains Domains
	// Domains are the tables for listed sender domains, most specific
	// first; other senders get Table.
	Domains []DomainTable
}

// DomainTable is the table for mail from one sender domain, or from a
// domain and those below it (".example.com").
type DomainTable struct {
	Domain string
	Table  Table
}

// SortDomainTables orders ts most specific first: longer entries first,
// and an exact domain before the suffix of the same name.
func SortDomainTables(ts []DomainTable) []DomainTable {
	sort.Slice(ts, func(i, j int) bool {
		a, b := strings.TrimPrefix(ts[i].Domain, "."), strings.TrimPrefix(ts[j].Domain, ".")
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return ts[i].Domain > ts[j].Domain // "x" sorts after ".x": exact first
	})
	return ts
}

// tableFor is the table that decides for mail from senderDomain.
func (p *Policy) tableFor(senderDomain string) (Table, string) {
	if name := domainKey(senderDomain); name != "" {
		for _, dt := range p.Domains {
			if entryMatches(dt.Domain, name) {
				return dt.Table, dt.Domain
			}
		}
	}
	return p.Table, ""
}

// Finding is one check's result.
type Finding struct {
	Check  Check
	Result Result
}

// Vars are the raw values a reply text may name. They are sanitised here,
// so callers pass what the client sent.
type Vars struct {
	IP, HELO, Sender, Domain string
}

// Input is the evidence of one decision.
type Input struct {
	Findings []Finding
	// ClientNames are the client's forward-confirmed names (iprev pass).
	ClientNames []string
	// SenderDomain is the MAIL FROM domain, "" for the null sender or
	// before MAIL.
	SenderDomain string
	// HeloName is the HELO name when the HELO check verified it (match
	// or resolves), else "".
	HeloName string
	// SPFPassDomain is the first of AllowSPFDomains whose SPF record the
	// client passes, "" if none (or none was checked).
	SPFPassDomain string
	Vars          Vars
}

// Allowance names the allowlist that turned a refusal into accept; it is
// a metric label value (vouch_exemptions_total{reason}).
type Allowance string

const (
	AllowedClientName   Allowance = "allowed_client_name"
	AllowedSenderDomain Allowance = "allowed_sender_domain"
	AllowedHeloName     Allowance = "allowed_helo_name"
	AllowedSPFDomain    Allowance = "allowed_spf_domain"
)

// Decision is what the policy says about one transaction.
type Decision struct {
	// Action is what the MTA is told; Would is what the table asked for.
	// They differ only when a check in dry-run would have refused, or an
	// allowlist accepted.
	Action, Would Action
	// Code, Status and Text make the reply for tempfail and reject; Text
	// is safe to send (printable ASCII, '%' doubled, bounded). For a
	// dry-run or allowlisted decision they are the reply that would have
	// been sent.
	Code   int
	Status string
	Text   string
	// Triggered lists the checks whose rules gave the Would action.
	Triggered []Check
	// Allowed is the allowlist that accepted the mail, and AllowedBy the
	// entry (and the name it matched), "" when none did.
	Allowed   Allowance
	AllowedBy string
	// DomainRules is the policy.domains entry whose table decided, ""
	// for the main table.
	DomainRules string
}

// DryRun reports whether a dry-run check changed the outcome.
func (d Decision) DryRun() bool { return d.Would != d.Action && d.Allowed == "" }

// Refuses reports whether the MTA is told to refuse (a 4xx or 5xx reply).
func (d Decision) Refuses() bool { return d.Action >= TempFail }

// Reply is the SMTP reply as the client would read it: the MTAs send the
// "%%" of a milter reply as "%". "" when nothing would be refused.
func (d Decision) Reply() string {
	if d.Code == 0 {
		return ""
	}
	return strconv.Itoa(d.Code) + " " + d.Status + " " + strings.ReplaceAll(d.Text, "%%", "%")
}

// maxVar bounds one client value inside a reply text.
const maxVar = 120

// Decide applies the table and the allowlists to the evidence. The most
// severe action wins; two or more rejecting checks answer with the
// Multiple rule (5.7.26).
func (p *Policy) Decide(in Input) Decision {
	tbl, entry := p.tableFor(in.SenderDomain)
	would := p.outcome(tbl, in.Findings, false)
	eff := p.outcome(tbl, in.Findings, true)
	d := Decision{Action: eff.action, Would: would.action, DomainRules: entry}
	out := eff
	if d.Would != d.Action && eff.action < TempFail {
		// Nothing is sent; report what the dry-run checks would have answered.
		out = would
	}
	d.Triggered = out.checks
	if out.action == TempFail || out.action == Reject {
		d.Code, d.Status = out.rule.Code, out.rule.Status
		d.Text = render(out.rule.Text, in.Vars, out.checks)
	}
	if d.Action != Accept {
		d.Allowed, d.AllowedBy = p.allowed(in)
		if d.Allowed != "" {
			d.Action = Accept
		}
	}
	return d
}

// allowed names the allowlist that accepts the mail whatever the table
// says, if any.
func (p *Policy) allowed(in Input) (Allowance, string) {
	for _, n := range in.ClientNames {
		if p.AllowClientNames.Match(n) {
			return AllowedClientName, "client name " + n + " is in policy.allow_client_names"
		}
	}
	if p.AllowHeloNames.Match(in.HeloName) {
		return AllowedHeloName, "HELO " + in.HeloName + " is in policy.allow_helo_names and names the client"
	}
	if in.SPFPassDomain != "" {
		return AllowedSPFDomain, "the client passes the SPF record of " + in.SPFPassDomain + " (policy.allow_spf_domains)"
	}
	if p.AllowSenderDomains.Match(in.SenderDomain) && !spfFailed(in.Findings) {
		// A sender domain is trivially forged; only SPF can say the mail
		// is not from it, so an SPF fail still counts.
		return AllowedSenderDomain, "sender domain " + in.SenderDomain + " is in policy.allow_sender_domains (unless SPF fails)"
	}
	return "", ""
}

func spfFailed(fs []Finding) bool {
	for _, f := range fs {
		if f.Check == SPF && f.Result == Result(spf.Fail) {
			return true
		}
	}
	return false
}

type outcome struct {
	action Action
	rule   Rule
	checks []Check // the checks whose rules give action
}

func (p *Policy) outcome(tbl Table, findings []Finding, skipDryRun bool) outcome {
	var o outcome
	for _, f := range findings {
		rule, ok := tbl[f.Check][f.Result]
		if !ok || rule.Action == Accept || (skipDryRun && p.DryRun[f.Check]) {
			continue
		}
		switch {
		case rule.Action > o.action:
			o = outcome{action: rule.Action, rule: rule, checks: []Check{f.Check}}
		case rule.Action == o.action:
			o.checks = append(o.checks, f.Check)
		}
	}
	if o.action == Reject && len(o.checks) >= 2 {
		o.rule = Multiple
	}
	return o
}

// render fills the template and makes the whole text reply-safe.
func render(tmpl string, v Vars, checks []Check) string {
	r := strings.NewReplacer(
		"{ip}", textsafe.Printable(v.IP, maxVar),
		"{helo}", textsafe.Printable(v.HELO, maxVar),
		"{sender}", textsafe.Printable(envelope.Display(v.Sender), maxVar),
		"{domain}", textsafe.Printable(v.Domain, maxVar),
		"{checks}", join(checks),
	)
	return textsafe.Reply(r.Replace(tmpl), textsafe.MaxReply)
}

// Domains is an allowlist of domain names: "example.com" matches that
// name, ".example.com" that name and every name below it. Entries are
// lower-case without a trailing dot.
type Domains []string

// Match reports whether an entry matches name.
func (ds Domains) Match(name string) bool {
	name = domainKey(name)
	return name != "" && slices.ContainsFunc(ds, func(e string) bool { return entryMatches(e, name) })
}

// domainKey is name as entries are written: lower-case, no trailing dot.
func domainKey(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// entryMatches matches one entry against a domainKey.
func entryMatches(e, name string) bool {
	if suffix, ok := strings.CutPrefix(e, "."); ok {
		return name == suffix || strings.HasSuffix(name, e)
	}
	return name == e
}
