// Package spf checks a client against the SPF policy (RFC 7208) of the
// envelope sender's domain (the MAIL FROM identity) or of its HELO name
// (the HELO identity). blitiri.com.ar/go/spf evaluates; around it this
// package adds a strict parser of records (record.go) that every record
// read goes through, a resolver layer that corrects the library where it
// differs from RFC 7208 (recorder.go), the identity rules of RFC 7208
// §2.3/§2.4/§4.3, the term that decided (explain.go), and a short human
// reason for the error results.
package spf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	blitiri "blitiri.com.ar/go/spf"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/envelope"
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
	// Syntax is set when the result is permerror because a record breaks
	// the RFC 7208 grammar; Problem then says the same in words.
	Syntax *RecordError
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
	local, domain, ok := envelope.Split(sender)
	switch {
	case !ok && !strings.Contains(sender, "@"):
		res.Verdict, res.Problem = None, "sender address has no domain"
		return res
	case !ok || !validDomain(domain):
		res.Verdict, res.Problem = None, "sender domain is not a domain name"
		return res
	}
	if local == "" {
		local = "postmaster" // RFC 7208 §4.3
	}
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
	if v4 := ip.To4(); v4 != nil {
		ip = v4 // an IPv4-mapped client is IPv4 (RFC 7208 §5)
	}
	rec := newRecorder(r, ip, helo, sender)
	verdict, err := blitiri.CheckHostWithSender(ip, helo, sender,
		blitiri.WithResolver(rec),
		blitiri.WithContext(ctx),
		blitiri.OverrideLookupLimit(limit),
		blitiri.OverrideVoidLookupLimit(void),
	)
	res.Verdict = Verdict(verdict)
	switch res.Verdict {
	case Pass, Fail, SoftFail, Neutral:
		res.Mechanism = rec.explain(res.Domain, res.Verdict)
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
		if se := rec.syntax; se != nil && errors.Is(err, blitiri.ErrUnknownField) {
			res.Syntax = &RecordError{Domain: se.domain, Term: se.err.Term, Reason: se.err.Reason}
			res.Problem = res.Syntax.Error()
			if strings.EqualFold(se.domain, res.Domain) {
				res.Problem = "syntax error: " + se.err.Error() // the domain is said already
			}
			res.Err = fmt.Errorf("spf: %s for %s: %w", res.Domain, ip, se.err)
			break
		}
		res.Problem = permProblem(err, rec)
		res.Err = fmt.Errorf("spf: %s for %s: %w", res.Domain, ip, err)
	default:
		// Not a result RFC 7208 knows: treat as the library's error.
		res.Verdict, res.Problem = PermError, "unexpected result "+string(verdict)
		res.Err = fmt.Errorf("spf: %s for %s: unexpected result %q: %w", res.Domain, ip, verdict, err)
	}
	return res
}

// RecordError is the syntax error that made a check permerror: the domain
// whose record breaks the RFC 7208 grammar (the identity's own, or one
// reached by include or redirect), the term and the reason. Domain and
// Term come from DNS: untrusted.
type RecordError struct {
	Domain string
	Term   string
	Reason string
}

func (e *RecordError) Error() string {
	if e.Term == "" {
		return fmt.Sprintf("syntax error in the SPF record of %s: %s", e.Domain, e.Reason)
	}
	return fmt.Sprintf("syntax error in the SPF record of %s: term %s: %s", e.Domain, quoteTerm(e.Term), e.Reason)
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

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
