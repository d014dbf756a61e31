package dns

import (
	"strings"
)

// canonical checks a caller-supplied domain name (untrusted: it may come
// from HELO or MAIL FROM) and returns its cache-key form: lower-case, no
// trailing dot. Like net.Resolver, it accepts only letters, digits, '-' and
// '_' in labels (plus '/', found in RFC 2317 reverse delegations), so that
// nothing in the name can be read as zone-file escapes by miekg/dns or
// smuggle control bytes into logs. Names it refuses do not exist as far as
// callers are concerned.
func canonical(name string) (string, bool) {
	n := strings.TrimSuffix(name, ".")
	if !validHost(n) {
		return "", false
	}
	// ToLower returns n itself, without allocating, when it is already
	// lower-case: the usual case on the warm path.
	return strings.ToLower(n), true
}

// validHost reports whether n (without trailing dot) is a syntactically
// acceptable host name: 1-253 octets, labels of 1-63 octets from the
// letters, digits, '-', '_' and '/'.
func validHost(n string) bool {
	if n == "" || len(n) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '/':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0
}

// validTarget reports whether a name taken from an answer (a PTR or MX
// target, in miekg's presentation form with trailing dot) is one callers can
// use. Names with escaped bytes are refused, as net.Resolver does.
func validTarget(fqdn string) bool {
	n, ok := strings.CutSuffix(fqdn, ".")
	return ok && validHost(n)
}

// unescapeTXT undoes miekg/dns's presentation escaping of a TXT
// character-string (\" \\ and \DDD), giving back the octets on the wire,
// which is what net.Resolver returns and what SPF parses.
func unescapeTXT(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if v <= 255 {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i+1])
		i++
	}
	return b.String()
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
