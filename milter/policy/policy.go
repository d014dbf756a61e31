// Package policy turns check results into an action and an SMTP reply: a
// table (check, result) -> rule, three presets, per-check dry-run, and the
// rule that the most severe action wins.
package policy

import (
	"fmt"
	"sort"
	"strings"

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

// Results lists the results each check can give, in the words of the
// checks and RFCs; they are also metric label values.
var Results = map[Check][]string{
	Iprev:   {"pass", "no-ptr", "unconfirmed", "temperror", "permerror"},
	Helo:    {"match", "resolves", "literal", "mismatch", "invalid", "literal-mismatch", "temperror"},
	SPF:     {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"},
	SPFHelo: {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"},
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
	// {result} are replaced by sanitised values.
	Text string
}

// Table maps each check and result to a rule. A missing cell means accept.
type Table map[Check]map[string]Rule

// Clone returns a deep copy.
func (t Table) Clone() Table {
	c := make(Table, len(t))
	for check, rules := range t {
		c[check] = make(map[string]Rule, len(rules))
		for r, rule := range rules {
			c[check][r] = rule
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
		results := make([]string, 0, len(t[check]))
		for r := range t[check] {
			results = append(results, r)
		}
		sort.Strings(results)
		for _, result := range results {
			if !contains(known, result) {
				errs = append(errs, fmt.Sprintf("%s: unknown result %q (want one of %s)", check, result, strings.Join(known, ", ")))
				continue
			}
			if err := t[check][result].validate(); err != nil {
				errs = append(errs, fmt.Sprintf("%s %s: %v", check, result, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (r Rule) validate() error {
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
	if len(parts) != 3 || parts[0] != fmt.Sprint(class) {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
