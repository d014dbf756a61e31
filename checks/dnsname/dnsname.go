// Package dnsname is the one place that says whether a string is a host
// name, in the variants the protocols vouch reads ask for. It does
// syntax only: no DNS, no allocation.
package dnsname

// MaxName is the longest name, in octets, without the trailing dot
// (RFC 1035 §2.3.4: 255 on the wire).
const MaxName = 253

// Rules choose the variant. The zero value is the loosest: labels of
// letters, digits and hyphens, 1-63 octets each, 1-253 octets in all.
type Rules struct {
	// Underscore allows '_' in labels, as service names (_spf) and many
	// real PTR records hold.
	Underscore bool
	// LDH requires each label to begin and end with a letter or digit
	// (RFC 1123 §2.1, RFC 5321's sub-domain, RFC 6376's domain-name).
	LDH bool
	// MultiLabel requires two or more labels.
	MultiLabel bool
	// NotNumeric requires a top label that is not all digits, so that an
	// IPv4 address does not pass.
	NotNumeric bool
	// TrailingDot allows one trailing dot (an absolute name).
	TrailingDot bool
}

// Common variants.
var (
	// HELO is a HELO/EHLO domain (RFC 5321 §4.1.2 Domain).
	HELO = Rules{LDH: true, MultiLabel: true, NotNumeric: true, TrailingDot: true}
	// Header is a domain in a header field (RFC 6376 domain-name, as
	// RFC 8601 uses it).
	Header = Rules{LDH: true, MultiLabel: true}
	// Identity is an SPF identity's domain (RFC 7208 §4.3): a multi-label
	// name, '_' allowed.
	Identity = Rules{Underscore: true, MultiLabel: true, NotNumeric: true, TrailingDot: true}
	// Host is a host name as PTR records and MTAs write them.
	Host = Rules{Underscore: true}
)

// Valid reports whether name follows r.
func Valid(name string, r Rules) bool {
	if r.TrailingDot && len(name) > 0 && name[len(name)-1] == '.' {
		name = name[:len(name)-1]
	}
	if len(name) == 0 || len(name) > MaxName {
		return false
	}
	labels, start := 0, 0
	allDigits := true
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			c := name[i]
			switch {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
				allDigits = false
			case '0' <= c && c <= '9':
			case c == '-':
				allDigits = false
			case c == '_' && r.Underscore:
				allDigits = false
			default:
				return false
			}
			continue
		}
		label := name[start:i]
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		if r.LDH && (label[0] == '-' || label[len(label)-1] == '-' || label[0] == '_' || label[len(label)-1] == '_') {
			return false
		}
		labels++
		if i < len(name) {
			allDigits = true // only the top label's digits matter
		}
		start = i + 1
	}
	if r.MultiLabel && labels < 2 || r.NotNumeric && allDigits {
		return false
	}
	return true
}
