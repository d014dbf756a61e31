package spf

import (
	"net"
	"net/url"
	"strings"
)

// macroEnv holds what the macros of RFC 7208 §7.3 expand to for one
// check. The expansion follows blitiri.com.ar/go/spf's own, byte for byte,
// because its results are the names the library asked the resolver for,
// under which the answers are remembered (see explain.go).
type macroEnv struct {
	sender string // as handed to the library
	helo   string
	ip     net.IP
	// p returns the %{p} value for the record of domain.
	p func(domain string) string
}

// expand expands a domain-spec or macro-string that ParseRecord accepted,
// for the record of domain.
func (e *macroEnv) expand(s, domain string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case '%':
			b.WriteByte('%')
		case '_':
			b.WriteByte(' ')
		case '-':
			b.WriteString("%20")
		case '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return b.String() // cannot happen after ParseRecord
			}
			m, _ := parseMacro(s[i+1:i+end], true)
			b.WriteString(e.value(m, domain))
			i += end
		}
	}
	return b.String()
}

// value is one macro's expansion with its transformers applied.
func (e *macroEnv) value(m macro, domain string) string {
	local, sdomain, _ := strings.Cut(e.sender, "@")
	var str string
	switch m.letter {
	case 's':
		str = e.sender
	case 'l':
		str = local
	case 'o':
		str = sdomain
	case 'd':
		str = domain
	case 'i':
		str = ipToMacroStr(e.ip)
	case 'p':
		str = "unknown"
		if e.p != nil {
			str = e.p(domain)
		}
	case 'v':
		str = "ip6"
		if e.ip.To4() != nil {
			str = "in-addr"
		}
	case 'h':
		str = e.helo
	}
	return transform(str, m)
}

// transform applies a macro's transformers (RFC 7208 §7.3): split on the
// delimiters, reverse, keep the rightmost parts, join with ".", and
// URL-escape for an upper-case letter (as the library does, with
// url.QueryEscape).
func transform(str string, m macro) string {
	delims := m.delims
	if delims == "" {
		delims = "."
	}
	parts := strings.FieldsFunc(str, func(r rune) bool { return strings.ContainsRune(delims, r) })
	if m.reverse {
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
	}
	if m.digits > 0 && m.digits < len(parts) {
		parts = parts[len(parts)-m.digits:]
	}
	str = strings.Join(parts, ".")
	if m.upper {
		str = url.QueryEscape(str)
	}
	return str
}

// ipToMacroStr is %{i}: dotted quad, or 32 dotted nibbles for IPv6.
func ipToMacroStr(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 63)
	for _, x := range ip.To16() {
		b = append(b, hex[x>>4], '.', hex[x&0xf], '.')
	}
	if len(b) > 0 {
		b = b[:len(b)-1]
	}
	return string(b)
}

// truncateName shortens a name built by macro expansion to 253 octets by
// removing labels from the left (RFC 7208 §7.3). A trailing dot is kept
// out of the count.
func truncateName(name string) string {
	n := strings.TrimSuffix(name, ".")
	for len(n) > 253 {
		i := strings.IndexByte(n, '.')
		if i < 0 {
			return n // one label over 253: the resolver refuses it
		}
		n = n[i+1:]
	}
	if len(n) == len(name) {
		return name
	}
	return n
}
