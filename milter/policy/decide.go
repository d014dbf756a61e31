package policy

import (
	"strings"

	"github.com/vouch-mail/vouch/milter/textsafe"
)

// Policy is a table plus the checks whose refusals are only logged.
type Policy struct {
	Table  Table
	DryRun map[Check]bool
}

// Finding is one check's result.
type Finding struct {
	Check  Check
	Result string
}

// Vars are the raw values a reply text may name. They are sanitised here,
// so callers pass what the client sent.
type Vars struct {
	IP, HELO, Sender, Domain string
}

// Decision is what the policy says about one transaction.
type Decision struct {
	// Action is what the MTA is told; Would is what the table asked for.
	// They differ only when a check in dry-run would have refused.
	Action, Would Action
	// Code, Status and Text make the reply for tempfail and reject; Text
	// is safe to send (printable ASCII, '%' doubled, bounded).
	Code   int
	Status string
	Text   string
	// Triggered lists the checks whose rules gave the Would action.
	Triggered []Check
}

// DryRun reports whether a dry-run check changed the outcome.
func (d Decision) DryRun() bool { return d.Would != d.Action }

// maxVar bounds one client value inside a reply text.
const maxVar = 120

// Decide applies the table to the findings. The most severe action wins;
// two or more rejecting checks answer with the Multiple rule (5.7.26).
func (p *Policy) Decide(findings []Finding, v Vars) Decision {
	would := p.outcome(findings, false)
	eff := p.outcome(findings, true)
	d := Decision{Action: eff.action, Would: would.action}
	out := eff
	if d.DryRun() && eff.action < TempFail {
		// Nothing is sent; report what the dry-run checks would have answered.
		out = would
	}
	d.Triggered = out.checks
	if out.action == TempFail || out.action == Reject {
		d.Code, d.Status = out.rule.Code, out.rule.Status
		d.Text = render(out.rule.Text, v, out.checks)
	}
	return d
}

type outcome struct {
	action Action
	rule   Rule
	checks []Check // the checks whose rules give action
}

func (p *Policy) outcome(findings []Finding, skipDryRun bool) outcome {
	var o outcome
	for _, f := range findings {
		rule, ok := p.Table[f.Check][f.Result]
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
	names := make([]string, len(checks))
	for i, c := range checks {
		names[i] = string(c)
	}
	r := strings.NewReplacer(
		"{ip}", textsafe.Printable(v.IP, maxVar),
		"{helo}", textsafe.Printable(v.HELO, maxVar),
		"{sender}", textsafe.Printable(orNull(v.Sender), maxVar),
		"{domain}", textsafe.Printable(v.Domain, maxVar),
		"{checks}", strings.Join(names, ", "),
	)
	return textsafe.Reply(r.Replace(tmpl), textsafe.MaxReply)
}

func orNull(sender string) string {
	if sender == "" {
		return "<>"
	}
	return sender
}
