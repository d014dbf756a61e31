// Package spf checks a client against the SPF policy (RFC 7208) of the
// envelope sender's domain (the MAIL FROM identity) or of its HELO name
// (the HELO identity). It wraps blitiri.com.ar/go/spf and adds what a
// milter needs around it: the identity rules of RFC 7208 §2.3/§2.4/§4.3,
// the term that decided, and a short human reason for the error results.
package spf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	blitiri "blitiri.com.ar/go/spf"

	"github.com/vouch-mail/vouch/checks/dns"
)

// Identity is the SPF identity that was checked (RFC 7208 §2.3, §2.4).
type Identity string

const (
	MailFrom Identity = "mailfrom"
	Helo     Identity = "helo"
)

// Verdict is an SPF result (RFC 7208 §2.6). The values are the RFC's words,
// fit for headers and metric labels.
type Verdict string

const (
	Pass      Verdict = "pass"
	Fail      Verdict = "fail"
	SoftFail  Verdict = "softfail"
	Neutral   Verdict = "neutral"
	None      Verdict = "none"
	TempError Verdict = "temperror"
	PermError Verdict = "permerror"
)

// Result is the outcome of one check.
type Result struct {
	Identity Identity
	// Sender is the address checked: the MAIL FROM address (with
	// "postmaster" for an empty local-part, RFC 7208 §4.3), or
	// postmaster@<helo> for the HELO identity. Empty when the identity was
	// not a domain and nothing was evaluated.
	Sender string
	// Domain is the domain whose policy was evaluated; empty when nothing
	// was evaluated.
	Domain  string
	Verdict Verdict
	// Mechanism is the term that decided a pass, fail, softfail or neutral,
	// as written in the record with its qualifier ("ip4:192.0.2.0/24",
	// "-all", "~include:_spf.example.net"), or "default" when no term
	// matched. After a redirect it is the term of the record redirected to.
	// The text comes from DNS: it is untrusted.
	Mechanism string
	// Problem says briefly why the result is none, temperror or permerror
	// ("no SPF record", "too many DNS lookups", "DNS timeout looking up TXT
	// example.com"). It may quote names from DNS or the client: untrusted.
	Problem string
	// Err is set for temperror and permerror.
	Err error
}

// Options adjust the RFC 7208 §4.6.4 processing limits; the yaml keys are
// those of checks.spf in the configuration file.
type Options struct {
	// LookupLimit caps the terms that cause DNS lookups; 0 means the RFC's 10.
	LookupLimit uint `yaml:"lookup_limit"`
	// VoidLookupLimit caps lookups answering NXDOMAIN or no records; 0 means
	// the RFC's 2.
	VoidLookupLimit uint `yaml:"void_lookup_limit"`
}

// RFC 7208 §4.6.4 defaults.
const (
	DefaultLookupLimit     = 10
	DefaultVoidLookupLimit = 2
)

// CheckMailFrom evaluates the MAIL FROM identity of sender for a client at
// ip that said HELO helo (used only by the %{h} macro). sender is the
// address as given in MAIL FROM, with or without angle brackets; it must
// not be the null sender, whose check is CheckHelo's.
//
// A sender without a domain, or whose domain is not a well-formed
// multi-label domain name, is None with no DNS (RFC 7208 §4.3).
func CheckMailFrom(ctx context.Context, r dns.Lookuper, ip net.IP, helo, sender string, opts Options) Result {
	res := Result{Identity: MailFrom}
	addr := strings.TrimSuffix(strings.TrimPrefix(sender, "<"), ">")
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		res.Verdict, res.Problem = None, "sender address has no domain"
		return res
	}
	local, domain := addr[:at], addr[at+1:]
	if !validDomain(domain) {
		res.Verdict, res.Problem = None, "sender domain is not a domain name"
		return res
	}
	if local == "" {
		local = "postmaster" // RFC 7208 §4.3
	}
	domain = strings.TrimSuffix(domain, ".")
	res.Sender = local + "@" + domain
	res.Domain = domain
	// The library splits the sender at its first '@'; a quoted local-part
	// may hold one too. Encode those so it evaluates the real domain: only
	// the %{l} and %{s} macros see the difference.
	libSender := strings.ReplaceAll(local, "@", "%40") + "@" + domain
	return check(ctx, r, ip, helo, libSender, opts, res)
}

// CheckHelo evaluates the HELO identity: the policy of the HELO name, for
// the sender postmaster@<helo> (RFC 7208 §2.3). It is also the check for
// the null sender (§2.4). A HELO that is not a fully qualified domain name
// (an address literal, a bare word, garbage) is None with Problem "HELO is
// not a domain name", and costs no DNS.
func CheckHelo(ctx context.Context, r dns.Lookuper, ip net.IP, helo string, opts Options) Result {
	res := Result{Identity: Helo}
	if !validDomain(helo) {
		res.Verdict, res.Problem = None, "HELO is not a domain name"
		return res
	}
	res.Domain = strings.TrimSuffix(helo, ".")
	res.Sender = "postmaster@" + res.Domain
	return check(ctx, r, ip, helo, res.Sender, opts, res)
}

func check(ctx context.Context, r dns.Lookuper, ip net.IP, helo, sender string, opts Options, res Result) Result {
	limit, void := opts.LookupLimit, opts.VoidLookupLimit
	if limit == 0 {
		limit = DefaultLookupLimit
	}
	if void == 0 {
		void = DefaultVoidLookupLimit
	}
	rec := &recorder{r: r}
	var tr tracer
	verdict, err := blitiri.CheckHostWithSender(ip, helo, sender,
		blitiri.WithResolver(rec),
		blitiri.WithContext(ctx),
		blitiri.OverrideLookupLimit(limit),
		blitiri.OverrideVoidLookupLimit(void),
		blitiri.WithTraceFunc(tr.trace),
	)
	res.Verdict = Verdict(verdict)
	switch res.Verdict {
	case Pass, Fail, SoftFail, Neutral:
		res.Mechanism = tr.mechanism(res.Verdict)
	case None:
		res.Problem = "no SPF record"
	case TempError:
		res.Problem = rec.problem("DNS error")
		if ctx.Err() != nil && res.Problem == "" {
			res.Problem = "check deadline exceeded"
		}
		if res.Problem == "" {
			res.Problem = "temporary error"
		}
		res.Err = fmt.Errorf("spf: %s for %s: %w", res.Domain, ip, err)
	case PermError:
		res.Problem = permProblem(err, rec)
		res.Err = fmt.Errorf("spf: %s for %s: %w", res.Domain, ip, err)
	default:
		// Not a result RFC 7208 knows: treat as the library's error.
		res.Verdict, res.Problem = PermError, "unexpected result "+string(verdict)
		res.Err = fmt.Errorf("spf: %s for %s: unexpected result %q: %w", res.Domain, ip, verdict, err)
	}
	return res
}

// permProblem names the cause of a permerror for a human.
func permProblem(err error, rec *recorder) string {
	switch {
	case errors.Is(err, blitiri.ErrLookupLimitReached):
		return "too many DNS lookups"
	case errors.Is(err, blitiri.ErrVoidLookupLimitReached):
		return "too many void DNS lookups"
	case errors.Is(err, blitiri.ErrMultipleRecords):
		return "more than one SPF record"
	case errors.Is(err, blitiri.ErrTooManyMXRecords):
		return "more than 10 MX records"
	case errors.Is(err, blitiri.ErrUnknownField):
		return "unknown term in SPF record"
	case errors.Is(err, blitiri.ErrInvalidIP):
		return "invalid IP address in SPF record"
	case errors.Is(err, blitiri.ErrInvalidMask):
		return "invalid CIDR length in SPF record"
	case errors.Is(err, blitiri.ErrInvalidMacro):
		return "invalid macro in SPF record"
	case errors.Is(err, blitiri.ErrInvalidDomain):
		return "invalid domain or redirect in SPF record"
	case errors.Is(err, blitiri.ErrNoResult):
		// An include or redirect whose target has no SPF record.
		return "include or redirect target has no SPF record"
	case errors.Is(err, blitiri.ErrInvalidIPAddress):
		return "invalid client IP address"
	}
	if p := rec.problem("DNS error"); p != "" {
		return p
	}
	return "SPF record not understood"
}

// tracer turns the library's trace into the term that decided. The trace
// is the only place the library names the term; its format is pinned by
// the module version and the tests here check it.
type tracer struct {
	events []decision
}

type decision struct {
	kind   string // "term", "redirect", "default"
	term   string // as written, without the qualifier
	result blitiri.Result
}

func (t *tracer) trace(f string, a ...any) {
	switch f {
	case "all: %v":
		if res, ok := arg[blitiri.Result](a, 0); ok {
			t.events = append(t.events, decision{"term", "all", res})
		}
	case "%q %v, %v":
		term, ok1 := arg[string](a, 0)
		res, ok2 := arg[blitiri.Result](a, 1)
		if ok1 && ok2 {
			t.events = append(t.events, decision{"term", term, res})
		}
	case "%q: %v, %v":
		term, ok1 := arg[string](a, 0)
		res, ok2 := arg[blitiri.Result](a, 1)
		if ok1 && ok2 {
			t.events = append(t.events, decision{"redirect", term, res})
		}
	case "fallback to neutral":
		t.events = append(t.events, decision{"default", "", blitiri.Neutral})
	}
}

func arg[T any](a []any, i int) (T, bool) {
	var zero T
	if i >= len(a) {
		return zero, false
	}
	v, ok := a[i].(T)
	return v, ok
}

// mechanism returns the term of the outermost record evaluated that gave
// v. A record's last decision is traced after those of the records it
// includes, so the last event is the outermost; a redirect is traced after
// the decision of its target, which is the term we report.
func (t *tracer) mechanism(v Verdict) string {
	ev := t.events
	for len(ev) > 0 && ev[len(ev)-1].kind == "redirect" {
		ev = ev[:len(ev)-1]
	}
	if len(ev) == 0 {
		return ""
	}
	last := ev[len(ev)-1]
	if Verdict(last.result) != v {
		return "" // the trace does not explain the result: say nothing
	}
	if last.kind == "default" {
		return "default"
	}
	return qualifier(v) + last.term
}

// qualifier writes the qualifier of a term that gave v; "+" is the
// default and left out.
func qualifier(v Verdict) string {
	switch v {
	case Fail:
		return "-"
	case SoftFail:
		return "~"
	case Neutral:
		return "?"
	}
	return ""
}
