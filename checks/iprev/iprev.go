// Package iprev checks forward-confirmed reverse DNS (FCrDNS) of an SMTP
// client: the PTR names of its IP address, each looked up forward, and
// whether any of them resolves back to that IP. This is the "iprev" method
// of RFC 8601 §3; its result is what the HELO check compares against.
package iprev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/dnsname"
)

// Verdict is the outcome of an iprev check. Its values are bounded and
// usable as metric labels.
type Verdict string

// Verdicts. NoPTR and Unconfirmed are told apart because postmasters treat
// them differently: a missing PTR is often a provider's oversight, a PTR
// that does not resolve back is a stronger sign of a host that is not a
// mail server.
const (
	Pass        Verdict = "pass"
	NoPTR       Verdict = "no-ptr"      // no PTR record (iprev=permerror in headers, RFC 8601 §2.7.3)
	Unconfirmed Verdict = "unconfirmed" // PTR names exist, none resolves back (iprev=fail)
	TempError   Verdict = "temperror"
	PermError   Verdict = "permerror"
)

// Verdicts lists every result; the policy table and the metric label
// values are built from it.
var Verdicts = []Verdict{Pass, NoPTR, Unconfirmed, TempError, PermError}

// DefaultMaxPTR is how many PTR names are followed when Options.MaxPTR is
// zero. It is the limit RFC 7208 §4.6.4 sets for the same walk in SPF's
// "ptr" mechanism; legitimate mail servers have one or two.
const DefaultMaxPTR = 10

// Result is what Check found, with the evidence behind it.
type Result struct {
	Verdict Verdict
	// IP is the client IP as checked: an IPv4-mapped IPv6 address is
	// checked (and reported) as IPv4.
	IP net.IP
	// PTRNames are the PTR names seen, lower-case, no trailing dot, in
	// answer order, duplicates removed, at most MaxPTR.
	PTRNames []string
	// Confirmed are the PTR names whose A/AAAA records hold IP, in
	// PTRNames order.
	Confirmed []string
	// Forward holds each looked-up PTR name's forward answers (nil when
	// the name had none or its lookup failed), for `vouch check`.
	Forward map[string][]net.IP
	// Err is the DNS error behind TempError or PermError, else nil.
	Err error
}

// AuthResult is the RFC 8601 §2.7.3 iprev result for
// Authentication-Results: "pass", "fail", "temperror" or "permerror". It is
// "" for a zero Result, which must not be reported.
//
// NoPTR is "permerror", not "fail": RFC 8601 §2.7.3 defines permerror as
// "no PTR data are published for the connecting IP address" (NXDOMAIN or
// NODATA) and keeps fail for PTR names whose forward lookups do not lead
// back. The policy still acts on the Verdict, which keeps the two apart.
func (r Result) AuthResult() string {
	switch r.Verdict {
	case Pass:
		return "pass"
	case Unconfirmed:
		return "fail"
	case TempError:
		return "temperror"
	case NoPTR, PermError:
		return "permerror"
	}
	return ""
}

// Options tune Check; the yaml keys are those of checks.iprev in the
// configuration file.
type Options struct {
	// MaxPTR bounds how many PTR names are looked up forward; names past
	// it are ignored, as RFC 7208 §4.6.4 does. 0 means DefaultMaxPTR.
	MaxPTR int `yaml:"max_ptr"`
}

// DefaultOptions are the options of the embedded configuration.
func DefaultOptions() Options { return Options{MaxPTR: DefaultMaxPTR} }

// Check looks up the PTR names of ip and confirms each by looking up its
// A and AAAA records, all names concurrently. The verdict is Pass when
// any name resolves back to ip, even if other lookups failed. Otherwise a
// temporary failure anywhere gives TempError (the answer could not be
// established and a retry may find it), then a permanent one PermError,
// then Unconfirmed. ctx bounds the whole check; when it expires the
// lookups still running count as temporary failures.
//
// All forward lookups are waited for, not just the first confirming one:
// the HELO check matches against every confirmed name.
func Check(ctx context.Context, r dns.Lookuper, ip net.IP, opts Options) Result {
	res := Result{IP: canonicalIP(ip)}
	if res.IP == nil {
		res.Verdict = PermError
		res.Err = fmt.Errorf("iprev: invalid client IP %v", []byte(ip))
		return res
	}
	if err := ctx.Err(); err != nil {
		res.Verdict = TempError
		res.Err = fmt.Errorf("iprev: %w", err)
		return res
	}
	maxPTR := opts.MaxPTR
	if maxPTR <= 0 {
		maxPTR = DefaultMaxPTR
	}

	raw, ptrErr := r.LookupAddr(ctx, res.IP.String())
	var dropped int
	res.PTRNames, dropped = normaliseNames(raw, maxPTR)
	if len(res.PTRNames) == 0 {
		switch class := classify(ctx, ptrErr); {
		case class == errNone && dropped > 0:
			// Only names no host can have (RFC 8601 §2.7.3's "malformed
			// record"): the resolver let them through, we do not.
			res.Verdict = PermError
			res.Err = fmt.Errorf("iprev: PTR lookup for %s: %d names that are not host names", res.IP, dropped)
		case class == errNone, class == errNotFound:
			res.Verdict = NoPTR
		case class == errTemporary:
			res.Verdict = TempError
			res.Err = fmt.Errorf("iprev: PTR lookup for %s: %w", res.IP, ptrErr)
		default:
			res.Verdict = PermError
			res.Err = fmt.Errorf("iprev: PTR lookup for %s: %w", res.IP, ptrErr)
		}
		return res
	}

	answers := make([]answer, len(res.PTRNames))
	if len(answers) == 1 {
		answers[0] = forward(ctx, r, res.PTRNames[0], res.IP) // the usual case: no goroutine
	} else {
		var wg sync.WaitGroup
		for i, name := range res.PTRNames {
			wg.Go(func() { answers[i] = forward(ctx, r, name, res.IP) })
		}
		wg.Wait()
	}

	res.Forward = make(map[string][]net.IP, len(answers))
	var tempErr, permErr error
	if ptrErr != nil {
		// Names came back alongside an error (a resolver that drops
		// malformed records does this): the names are usable, the error
		// still counts if nothing confirms.
		switch classify(ctx, ptrErr) {
		case errTemporary:
			tempErr = fmt.Errorf("iprev: PTR lookup for %s: %w", res.IP, ptrErr)
		case errPermanent:
			permErr = fmt.Errorf("iprev: PTR lookup for %s: %w", res.IP, ptrErr)
		}
	}
	for i, a := range answers {
		name := res.PTRNames[i]
		res.Forward[name] = a.addrs
		if a.confirmed {
			res.Confirmed = append(res.Confirmed, name)
			continue
		}
		if familyAnswered(a.addrs, res.IP) {
			// The lookup of the client's address family succeeded; an
			// error can only be the other family's, which cannot hold
			// the client address.
			continue
		}
		switch classify(ctx, a.err) {
		case errTemporary:
			if tempErr == nil {
				tempErr = fmt.Errorf("iprev: forward lookup of %s: %w", name, a.err)
			}
		case errPermanent:
			if permErr == nil {
				permErr = fmt.Errorf("iprev: forward lookup of %s: %w", name, a.err)
			}
		}
	}

	switch {
	case len(res.Confirmed) > 0:
		res.Verdict = Pass
	case tempErr != nil:
		res.Verdict, res.Err = TempError, tempErr
	case permErr != nil:
		res.Verdict, res.Err = PermError, permErr
	default:
		res.Verdict = Unconfirmed
	}
	return res
}

// FromMTA builds a Pass from the client host name the MTA already verified
// (the milter connect hostname), sparing the DNS lookups. Postfix sends a
// name there only when its own forward confirmation succeeded, else
// "[ip]"; "unknown" is treated the same way. ok is false when hostname
// carries no verified name (or is not a plausible host name), and the
// caller should run Check.
//
// Sendmail sends the PTR name even when its forward lookup failed (it then
// sets {client_resolve} to FORGED): only call FromMTA for Sendmail when
// {client_resolve} is OK.
func FromMTA(ip net.IP, hostname string) (Result, bool) {
	cip := canonicalIP(ip)
	name := normaliseName(hostname)
	if cip == nil || name == "" || name == "unknown" || !plausibleHostname(name) {
		return Result{}, false
	}
	return Result{
		Verdict:   Pass,
		IP:        cip,
		PTRNames:  []string{name},
		Confirmed: []string{name},
	}, true
}

// familyAnswered reports whether addrs holds an address of ip's family. A
// resolver that answers A and AAAA together returns the addresses of one
// family alongside the other's temporary error: when that one is ip's own
// family, the error does not stand between ip and a verdict.
func familyAnswered(addrs []net.IP, ip net.IP) bool {
	v4 := ip.To4() != nil
	for _, a := range addrs {
		if (a.To4() != nil) == v4 {
			return true
		}
	}
	return false
}

// canonicalIP returns ip in its 4-byte form when it is IPv4 or
// IPv4-mapped IPv6, so that the PTR lookup goes to in-addr.arpa and
// comparisons and output agree; nil when ip is not an IP address.
func canonicalIP(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	if len(ip) == net.IPv6len {
		return ip
	}
	return nil
}

// normaliseNames lower-cases, strips the trailing dot, drops duplicates
// and names that are not host names (counting those), and keeps at most
// max names. PTR names are only as trustworthy as whoever runs the reverse
// zone, and they end up in headers and logs.
func normaliseNames(raw []string, max int) (names []string, dropped int) {
	seen := make(map[string]bool, len(raw))
	for _, n := range raw {
		n = normaliseName(n)
		if !plausibleHostname(n) {
			dropped++
			continue
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		names = append(names, n)
		if len(names) == max {
			break
		}
	}
	return names, dropped
}

func normaliseName(n string) string {
	return strings.ToLower(strings.TrimSuffix(n, "."))
}

// plausibleHostname accepts what a host name in a PTR record or from an
// MTA can look like: dot-separated labels of letters, digits, '-' and '_'
// (which real PTR names do hold, and Postfix accepts), at most 253 octets.
// It keeps "[ip]" and anything with spaces, CR/LF, '%' or 8-bit bytes out.
func plausibleHostname(n string) bool { return dnsname.Valid(n, dnsname.Host) }

type errClass int

const (
	errNone errClass = iota
	errNotFound
	errTemporary
	errPermanent
)

// answer is what the forward lookup of one PTR name found.
type answer struct {
	addrs     []net.IP
	confirmed bool
	err       error
}

// forward looks up name's addresses and whether ip is among them.
func forward(ctx context.Context, r dns.Lookuper, name string, ip net.IP) answer {
	addrs, err := r.LookupIPAddr(ctx, name)
	a := answer{err: err}
	for _, ad := range addrs {
		fip := canonicalIP(ad.IP)
		if fip == nil {
			continue
		}
		a.addrs = append(a.addrs, fip)
		if fip.Equal(ip) {
			a.confirmed = true
		}
	}
	return a
}

// classify sorts a lookup error the way RFC 8601 §3 needs it. A not-found
// answer stands whenever it arrived; otherwise an expired or cancelled ctx
// makes the failure temporary whatever the resolver wrapped it in: the
// answer was not seen, not absent.
func classify(ctx context.Context, err error) errClass {
	if err == nil {
		return errNone
	}
	var de *net.DNSError
	isDNS := errors.As(err, &de)
	switch {
	case isDNS && de.IsNotFound:
		return errNotFound
	case isDNS && (de.IsTemporary || de.IsTimeout):
		return errTemporary
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), ctx.Err() != nil:
		return errTemporary
	}
	var ne net.Error
	if !isDNS && errors.As(err, &ne) && ne.Timeout() {
		return errTemporary
	}
	return errPermanent
}
