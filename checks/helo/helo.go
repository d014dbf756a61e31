// Package helo checks the name an SMTP client gives in HELO/EHLO: its
// syntax (RFC 5321 §4.1.1.1, §4.1.3), and whether it names the client,
// either as one of the client's forward-confirmed reverse DNS names (the
// postmaster's rule: the HELO name is the name in the PTR record) or, as a
// weaker sign, a name whose A/AAAA records hold the client IP.
package helo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/dnsname"
	"github.com/vouch-mail/vouch/checks/iprev"
)

// Verdict is the outcome of a HELO check. Its values are bounded and usable
// as metric labels.
type Verdict string

// Verdicts.
const (
	Match           Verdict = "match"            // equals a forward-confirmed rDNS name (case-insensitive, trailing dot ignored)
	Resolves        Verdict = "resolves"         // not a confirmed name, but its A/AAAA holds the client IP
	Literal         Verdict = "literal"          // address literal equal to the client IP
	Mismatch        Verdict = "mismatch"         // a valid name that does not name the client
	Invalid         Verdict = "invalid"          // neither a valid FQDN nor a valid address literal
	LiteralMismatch Verdict = "literal-mismatch" // address literal of another IP
	TempError       Verdict = "temperror"        // DNS failed before the answer was known
)

// Verdicts lists every result; the policy table and the metric label
// values are built from it.
var Verdicts = []Verdict{Match, Resolves, Literal, Mismatch, Invalid, LiteralMismatch, TempError}

// Kind is what Parse recognised a HELO argument as.
type Kind int

// Kinds. The zero value is Bad, so an unset Kind never passes for valid.
const (
	Bad            Kind = iota // neither of the below
	FQDN                       // a syntactically valid fully qualified domain name
	AddressLiteral             // "[192.0.2.1]" or "[IPv6:2001:db8::1]"
)

func (k Kind) String() string {
	switch k {
	case FQDN:
		return "fqdn"
	case AddressLiteral:
		return "address-literal"
	}
	return "bad"
}

// maxName is the longest name in presentation form without the trailing
// dot: 255 octets on the wire (RFC 1035 §2.3.4) less the length octets.
const maxName = 253

// Parse is the HELO syntax check. It accepts:
//
//   - an FQDN: at least two dot-separated labels of letters, digits and
//     hyphens (LDH, so A-labels such as xn--bcher-kva work), each 1–63
//     octets and neither starting nor ending with a hyphen, at most 253
//     octets without the one optional trailing dot, the top label not all
//     digits (so a bare "192.0.2.1" is not a name). name is lower-case
//     without the trailing dot.
//   - an address literal (RFC 5321 §4.1.3): "[192.0.2.1]" (each part 1–3
//     digits, up to 255) or "[IPv6:2001:db8::1]" (the tag in any case).
//     literal is the address, 4-byte for IPv4.
//
// Anything else, including underscores, spaces, CR/LF, '%', 8-bit bytes and
// RFC 5321's general (tagged) address literals, is Bad.
func Parse(helo string) (kind Kind, name string, literal net.IP) {
	if len(helo) >= 2 && helo[0] == '[' && helo[len(helo)-1] == ']' {
		if ip := parseLiteral(helo[1 : len(helo)-1]); ip != nil {
			return AddressLiteral, "", ip
		}
		return Bad, "", nil
	}
	if n, ok := parseFQDN(helo); ok {
		return FQDN, n, nil
	}
	return Bad, "", nil
}

func parseFQDN(s string) (string, bool) {
	if !dnsname.Valid(s, dnsname.HELO) {
		return "", false
	}
	return strings.ToLower(strings.TrimSuffix(s, ".")), true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseLiteral parses the inside of an address literal. IPv4 follows RFC
// 5321's Snum grammar by hand because net/netip rejects the leading zeros
// it allows ("[192.000.002.001]").
func parseLiteral(s string) net.IP {
	if len(s) >= 5 && strings.EqualFold(s[:5], "IPv6:") {
		a, err := netip.ParseAddr(s[5:])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return nil
		}
		b := a.As16()
		return net.IP(b[:])
	}
	var ip [4]byte
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return nil
	}
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 || !isDigits(p) {
			return nil
		}
		v := 0
		for j := 0; j < len(p); j++ {
			v = v*10 + int(p[j]-'0')
		}
		if v > 255 {
			return nil
		}
		ip[i] = byte(v)
	}
	return net.IP(ip[:])
}

// Result is what Check found, with the evidence behind it.
type Result struct {
	Verdict Verdict
	// Name is the normalised HELO name (lower-case, no trailing dot); ""
	// when invalid or an address literal. The raw HELO is never stored:
	// it is untrusted and the caller has it.
	Name string
	// Literal is the address of an address literal.
	Literal net.IP
	// Addrs are the HELO name's A/AAAA answers, when they were looked up.
	Addrs []net.IP
	// Err is the DNS error behind TempError, or behind a Mismatch that a
	// permanent lookup failure caused; else nil.
	Err error
}

// Check checks heloName for the client at ip, given that client's iprev
// result:
//
//   - not a valid FQDN or address literal: Invalid, without DNS;
//   - an address literal: Literal when it is ip (IPv4-mapped IPv6 on
//     either side counts as IPv4), else LiteralMismatch;
//   - equal to one of rev.Confirmed: Match, without DNS;
//   - else its A/AAAA records are looked up: holding ip gives Resolves; a
//     temporary failure gives TempError; no such name, other addresses
//     only, or a permanent failure give Mismatch.
//
// When rev is TempError and the name does not resolve to ip, the verdict is
// TempError, not Mismatch: the confirmed names it should have been
// compared with were never seen, and the HELO may well have matched one of
// them. A PermError rev has no confirmed names and a retry will not change
// that, so the HELO is judged on its own (Mismatch).
func Check(ctx context.Context, r dns.Lookuper, heloName string, ip net.IP, rev iprev.Result) Result {
	kind, name, lit := Parse(heloName)
	switch kind {
	case Bad:
		return Result{Verdict: Invalid}
	case AddressLiteral:
		res := Result{Verdict: LiteralMismatch, Literal: lit}
		if ip != nil && lit.Equal(ip) {
			res.Verdict = Literal
		}
		return res
	}

	res := Result{Name: name}
	for _, c := range rev.Confirmed {
		if strings.EqualFold(strings.TrimSuffix(c, "."), name) {
			res.Verdict = Match
			return res
		}
	}

	if err := ctx.Err(); err != nil {
		res.Verdict = TempError
		res.Err = fmt.Errorf("helo: lookup of %s: %w", name, err)
		return res
	}
	addrs, err := r.LookupIPAddr(ctx, name)
	for _, a := range addrs {
		fip := a.IP
		if v4 := fip.To4(); v4 != nil {
			fip = v4
		}
		res.Addrs = append(res.Addrs, fip)
		if ip != nil && fip.Equal(ip) {
			res.Verdict = Resolves
		}
	}
	if res.Verdict == Resolves {
		return res
	}
	if err != nil && !familyAnswered(res.Addrs, ip) {
		// (When the client's own family answered, the error is the other
		// family's, which cannot hold ip: the answer is known.)
		if temporary(ctx, err) {
			res.Verdict = TempError
			res.Err = fmt.Errorf("helo: lookup of %s: %w", name, err)
			return res
		}
		if !notFound(err) {
			res.Err = fmt.Errorf("helo: lookup of %s: %w", name, err)
		}
	}
	if rev.Verdict == iprev.TempError {
		res.Verdict = TempError
		res.Err = ErrNoConfirmedNames
		if rev.Err != nil {
			res.Err = fmt.Errorf("%w: %w", ErrNoConfirmedNames, rev.Err)
		}
		return res
	}
	res.Verdict = Mismatch
	return res
}

// ErrNoConfirmedNames is wrapped in Result.Err when the verdict is
// TempError because the iprev check failed temporarily, not because the
// HELO name's own lookup did.
var ErrNoConfirmedNames = errors.New("helo: the iprev check failed temporarily, no confirmed names to compare with")

// familyAnswered reports whether addrs holds an address of ip's family.
func familyAnswered(addrs []net.IP, ip net.IP) bool {
	if ip == nil {
		return false
	}
	v4 := ip.To4() != nil
	for _, a := range addrs {
		if (a.To4() != nil) == v4 {
			return true
		}
	}
	return false
}

func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// temporary reports whether err means the answer was not seen (as opposed
// to seen and negative or broken): a temporary DNS error, a timeout, or an
// expired ctx.
func temporary(ctx context.Context, err error) bool {
	var de *net.DNSError
	if errors.As(err, &de) {
		if de.IsNotFound {
			return false
		}
		if de.IsTemporary || de.IsTimeout {
			return true
		}
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || ctx.Err() != nil
}
