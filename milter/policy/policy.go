// Package policy turns check results into an action and an SMTP reply: a
// table (check, result) -> rule, three presets, per-check dry-run,
// allowlists, and the rule that the most severe action wins. It is the one
// decision step's logic; milter gathers the evidence and calls Decide.
package policy

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vouch-mail/vouch/checks/helo"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter/textsafe"
)

// Action is what the MTA is told to do. Higher is more severe.
type Action int

const (
	Accept     Action = iota // let the mail through, record the result
	Quarantine               // accept into the MTA's hold queue (SMFIR_QUARANTINE)
	TempFail                 // 4xx: the client retries later
	Reject                   // 5xx: the client gives up and bounces
)

// Actions lists every action, least severe first.
var Actions = []Action{Accept, Quarantine, TempFail, Reject}

var actionNames = [...]string{"accept", "quarantine", "tempfail", "reject"}

func (a Action) String() string {
	if a < 0 || int(a) >= len(actionNames) {
		return fmt.Sprintf("action(%d)", int(a))
	}
	return actionNames[a]
}

// ParseAction reads an action name as written in the config.
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames {
		if s == n {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("unknown action %q (want one of %s)", s, strings.Join(actionNames[:], ", "))
}

// Stage is a point of the SMTP dialogue where a decision can be answered.
type Stage string

const (
	StageConnect Stage = "connect"
	StageHelo    Stage = "helo"
	StageMail    Stage = "mail"
	StageRcpt    Stage = "rcpt"
	// StageEOH is the end of the header: mail from a trusted relay is
	// decided there, and the MTA answers the DATA command with it.
	StageEOH Stage = "eoh"
	StageEOM Stage = "eom"
)

// Stages lists the stages in dialogue order; they are metric label values.
var Stages = []Stage{StageConnect, StageHelo, StageMail, StageRcpt, StageEOH, StageEOM}

// DecideStages are the stages policy.decide_at may name.
var DecideStages = []Stage{StageRcpt, StageMail, StageHelo}

// Check names a line of the table. SPF is the identity that decides: MAIL
// FROM, or HELO for the null sender (RFC 7208 §2.4). SPFHelo is the HELO
// identity of a message with a non-null sender.
type Check string

const (
	Iprev   Check = "iprev"
	Helo    Check = "helo"
	SPF     Check = "spf"
	SPFHelo Check = "spf_helo"
)

// Checks lists the checks in the order findings are reported.
var Checks = []Check{Iprev, Helo, SPF, SPFHelo}

// Result is a check's result in the words of the checks and RFCs (a
// Verdict of checks/iprev, checks/helo or checks/spf).
type Result string

// Results lists the results each check can give, taken from the checks'
// own vocabularies; they are also metric label values.
var Results = map[Check][]Result{
	Iprev:   results(iprev.Verdicts),
	Helo:    results(helo.Verdicts),
	SPF:     results(spf.Verdicts),
	SPFHelo: results(spf.Verdicts),
}

func results[V ~string](vs []V) []Result {
	out := make([]Result, len(vs))
	for i, v := range vs {
		out[i] = Result(v)
	}
	return out
}

// Rule is one cell of the table.
type Rule struct {
	Action Action
	// Code and Status are the SMTP reply code and RFC 3463 enhanced status
	// for tempfail and reject; their classes must agree (Postfix treats a
	// mismatch as a configuration error).
	Code   int
	Status string
	// Text is the reply text; {ip}, {helo}, {sender}, {domain} and
	// {checks} are replaced by sanitised values.
	Text string
}

// Table maps each check and result to a rule. A missing cell means accept.
type Table map[Check]map[Result]Rule

// Set puts rule in the cell (check, result).
func (t Table) Set(check Check, result Result, rule Rule) {
	if t[check] == nil {
		t[check] = map[Result]Rule{}
	}
	t[check][result] = rule
}

// Clone returns a deep copy.
func (t Table) Clone() Table {
	c := make(Table, len(t))
	for check, cells := range t {
		for result, rule := range cells {
			c.Set(check, result, rule)
		}
	}
	return c
}

// Validate reports every problem with the table, naming check and result.
func (t Table) Validate() error {
	var errs []string
	checks := make([]string, 0, len(t))
	for c := range t {
		checks = append(checks, string(c))
	}
	sort.Strings(checks)
	for _, cs := range checks {
		check := Check(cs)
		known, ok := Results[check]
		if !ok {
			errs = append(errs, fmt.Sprintf("unknown check %q (want one of iprev, helo, spf, spf_helo)", cs))
			continue
		}
		rs := make([]string, 0, len(t[check]))
		for r := range t[check] {
			rs = append(rs, string(r))
		}
		sort.Strings(rs)
		for _, r := range rs {
			result := Result(r)
			if !slices.Contains(known, result) {
				errs = append(errs, fmt.Sprintf("%s: unknown result %q (want one of %s)", check, r, join(known)))
				continue
			}
			if err := t[check][result].Validate(); err != nil {
				errs = append(errs, fmt.Sprintf("%s %s: %v", check, r, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func join[T ~string](list []T) string {
	s := make([]string, len(list))
	for i, x := range list {
		s[i] = string(x)
	}
	return strings.Join(s, ", ")
}

// Validate checks one rule: the reply's code and enhanced status agree
// with the action, and the text is safe to send.
func (r Rule) Validate() error {
	if r.Action < Accept || r.Action > Reject {
		return fmt.Errorf("invalid action %d", r.Action)
	}
	if r.Action != TempFail && r.Action != Reject {
		return nil
	}
	want := 5
	if r.Action == TempFail {
		want = 4
	}
	if r.Code/100 != want || r.Code%100 > 99 {
		return fmt.Errorf("%s needs a %dxx reply code, not %d", r.Action, want, r.Code)
	}
	if !validStatus(r.Status, want) {
		return fmt.Errorf("enhanced status %q must be %d.X.Y to match %d (RFC 3463)", r.Status, want, r.Code)
	}
	if r.Text == "" {
		return fmt.Errorf("%s needs a reply text", r.Action)
	}
	if textsafe.Printable(r.Text, 0) != r.Text {
		return fmt.Errorf("reply text must be printable ASCII without line breaks")
	}
	if len(r.Text) > textsafe.MaxReply/2 {
		return fmt.Errorf("reply text longer than %d bytes", textsafe.MaxReply/2)
	}
	return nil
}

// validStatus checks class.subject.detail (RFC 3463 §2): class as given,
// subject 1-3 digits, detail 1-3 digits.
func validStatus(s string, class int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(class) {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}
