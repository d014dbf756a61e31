package envelope

import (
	"strings"

	"github.com/vouch-mail/vouch/checks/dnsname"
)

// SRS is what a Sender Rewriting Scheme address says (the scheme of
// Shevek's Mail::SRS, used by postsrsd, pfix-srsd, Exim and others). A
// forwarder that rewrites the sender of a message it forwards makes the
// SPF check of MAIL FROM a check of the forwarder's domain, not the
// original sender's: the address names both.
type SRS struct {
	// Forwarder is the domain of the address: the forwarder that
	// rewrote it last and whose SPF record the check evaluated.
	Forwarder string
	// OrigDomain and OrigLocal are the original sender's address parts.
	OrigDomain, OrigLocal string
	// FirstForwarder is, for SRS1 (a rewritten address rewritten again),
	// the domain of the forwarder that made the SRS0 address; "" for SRS0.
	FirstForwarder string
	// Hash and Timestamp are the SRS0 hash and two-character timestamp,
	// as written. They are not verified: only the forwarder's secret can.
	Hash, Timestamp string
}

// ParseSRS recognises an SRS0 or SRS1 sender:
//
//	SRS0=HHH=TT=orig-domain=orig-local@forwarder
//	SRS1=HHH=first-forwarder==HHH=TT=orig-domain=orig-local@forwarder
//
// The tag is case-insensitive and the separator after it may be '=', '+'
// or '-' (as after the "==" of SRS1); the other separators are '='. It
// does not unwrap or verify anything (no hash check, no time check):
// the result is for logging, and for a policy that wants to name the
// forwarder. ok is false for anything else.
func ParseSRS(addr string) (SRS, bool) {
	local, domain, ok := Split(addr)
	if !ok || len(local) < 5 || local[0] == '"' {
		return SRS{}, false
	}
	tag, rest := strings.ToUpper(local[:4]), local[5:]
	if !isSep(local[4]) {
		return SRS{}, false
	}
	var s SRS
	switch tag {
	case "SRS0":
	case "SRS1":
		// HHH=first-forwarder=<sep>SRS0-part-without-its-tag
		parts := strings.SplitN(rest, "=", 3)
		if len(parts) != 3 || parts[0] == "" || !isDomainish(parts[1]) || parts[2] == "" || !isSep(parts[2][0]) {
			return SRS{}, false
		}
		s.FirstForwarder, rest = parts[1], parts[2][1:]
	default:
		return SRS{}, false
	}
	// HHH=TT=orig-domain=orig-local; the local part may hold '='.
	parts := strings.SplitN(rest, "=", 4)
	if len(parts) != 4 || parts[0] == "" || len(parts[1]) != 2 || !isDomainish(parts[2]) || parts[3] == "" {
		return SRS{}, false
	}
	s.Hash, s.Timestamp, s.OrigDomain, s.OrigLocal = parts[0], parts[1], parts[2], parts[3]
	s.Forwarder = domain
	return s, true
}

func isSep(c byte) bool { return c == '=' || c == '+' || c == '-' }

// isDomainish accepts a domain as SRS writes it: labels of letters,
// digits, '-' and '_' joined by single dots.
func isDomainish(s string) bool { return dnsname.Valid(s, dnsname.Host) }
