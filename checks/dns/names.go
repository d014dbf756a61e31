package dns

import (
	"strings"
)

// canonical checks a caller-supplied domain name (untrusted: it may come
// from HELO, MAIL FROM or an SPF macro expansion) and returns its
// cache-key form: the name in miekg/dns presentation format, ASCII letters
// lower-cased, no trailing dot. Names it refuses do not exist as far as
// callers are concerned.
//
// A DNS label may hold any octet (RFC 2181 §11), and SPF queries names
// built from a sender's local-part or a HELO literal (RFC 7208 §7.3), so
// every octet is accepted. Each label of name is its octets as they go on
// the wire: a '.' always separates labels, and nothing in name is read as
// an escape. The key escapes exactly as miekg/dns writes a name it
// unpacks (a backslash before . space ' @ ; ( ) " \, \DDD for bytes
// outside printable ASCII), so the key is a name miekg packs back to the
// same octets and a server's echo of the question compares equal to it.
// Bounds are on the wire octets: labels of 1-63, at most 253 in all.
func canonical(name string) (string, bool) {
	n := strings.TrimSuffix(name, ".")
	if !validName(n) {
		return "", false
	}
	if plain(n) {
		// The usual case, kept free of allocation on the warm path:
		// ToLower returns n itself when it is already lower-case.
		return strings.ToLower(n), true
	}
	var b strings.Builder
	b.Grow(len(n) + 8)
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + ('a' - 'A'))
		case c == '.':
			b.WriteByte('.')
		case special(c):
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			b.WriteByte('\\')
			b.WriteByte('0' + c/100)
			b.WriteByte('0' + c/10%10)
			b.WriteByte('0' + c%10)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// special lists the bytes miekg/dns escapes with a backslash in a label.
func special(c byte) bool {
	switch c {
	case '.', ' ', '\'', '@', ';', '(', ')', '"', '\\':
		return true
	}
	return false
}

// plain reports whether n needs no escaping: letters, digits, '-', '_',
// '/' and '.', the characters of host names and RFC 2317 reverse
// delegations.
func plain(n string) bool {
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '/', c == '.':
		default:
			return false
		}
	}
	return true
}

// validName reports whether n (without trailing dot) can be carried by
// the DNS: 1-253 octets, labels of 1-63 octets, any octet in a label.
func validName(n string) bool {
	if n == "" || len(n) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(n); i++ {
		if n[i] == '.' {
			if label == 0 {
				return false
			}
			label = 0
			continue
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0
}

// validHost reports whether n (without trailing dot) is a syntactically
// acceptable host name: 1-253 octets, labels of 1-63 octets from the
// letters, digits, '-', '_' and '/'.
func validHost(n string) bool {
	return plain(n) && validName(n)
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
