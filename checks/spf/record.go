package spf

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Record is an SPF record parsed by the RFC 7208 section 4.6.1/§12 grammar. The
// text comes from DNS: it is untrusted, and every field holds only bytes
// the grammar allows (printable ASCII).
type Record struct {
	Text string
	// Terms are the mechanisms and modifiers in record order.
	Terms []Term
	// Redirect and Exp point into Terms; nil when absent.
	Redirect *Term
	Exp      *Term
}

// Term is one mechanism or modifier of a record.
type Term struct {
	// Text is the term as written.
	Text string
	// Name is the mechanism or modifier name, lower-case: "all",
	// "include", "a", "mx", "ptr", "ip4", "ip6", "exists", "redirect",
	// "exp", or an unknown modifier's name.
	Name     string
	Modifier bool
	// Qualifier is one of + - ~ ? for a mechanism ('+' when none was
	// written), 0 for a modifier.
	Qualifier byte
	// Domain is the domain-spec (unexpanded macro-string) of include, a,
	// mx, ptr, exists, redirect and exp; "" when the term has none. For an
	// unknown modifier it is the value.
	Domain string
	// Prefix is the network of ip4 and ip6.
	Prefix netip.Prefix
	// CIDR4 and CIDR6 are the dual-cidr-length of a and mx, -1 when
	// absent.
	CIDR4, CIDR6 int
}

// body is the term without its qualifier.
func (t *Term) body() string {
	if !t.Modifier && t.Text != "" && strings.IndexByte("+-~?", t.Text[0]) >= 0 {
		return t.Text[1:]
	}
	return t.Text
}

// SyntaxError says which term of a record breaks the RFC 7208 grammar, and
// how. Term is untrusted DNS text; Error shows it with quoteTerm.
type SyntaxError struct {
	Term   string
	Reason string
}

func (e *SyntaxError) Error() string {
	if e.Term == "" {
		return e.Reason
	}
	return "term " + quoteTerm(e.Term) + ": " + e.Reason
}

// quoteTerm shows a term from DNS in single quotes, each byte outside
// printable ASCII as '?': fit for a log line, a reply or a header's
// quoted-string, which escape or refuse '"' and '\\'.
func quoteTerm(t string) string {
	b := make([]byte, 0, len(t)+2)
	b = append(b, '\'')
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		b = append(b, c)
	}
	return string(append(b, '\''))
}

// ParseRecord parses an SPF record (a TXT string for which IsRecord is
// true) strictly: every term, including those after the first that would
// match and the modifiers a evaluator ignores, must follow the grammar
// (RFC 7208 section 4.6: the whole record is checked before evaluation). The
// error is a *SyntaxError.
func ParseRecord(txt string) (*Record, error) {
	if !IsRecord(txt) {
		return nil, &SyntaxError{Reason: "not an SPF record (no v=spf1)"}
	}
	// 7-bit printable ASCII and SP only (RFC 7208 section 3.1, §4.6.1: terms are
	// separated by SP, macro-literal is %x21-7E).
	for i := 0; i < len(txt); i++ {
		if c := txt[i]; c < 0x20 || c > 0x7e {
			reason := "control character"
			if c > 0x7e {
				reason = "byte outside 7-bit ASCII"
			}
			return nil, &SyntaxError{Term: termAround(txt, i), Reason: reason + " in the record"}
		}
	}
	rec := &Record{Text: txt}
	rec.Terms = make([]Term, 0, strings.Count(txt, " "))
	for rest := txt[6:]; rest != ""; {
		f := rest
		if i := strings.IndexByte(rest, ' '); i >= 0 {
			f, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		if f == "" {
			continue
		}
		// Parsed in place: a Term is large, and copying it costs.
		rec.Terms = append(rec.Terms, Term{})
		if err := parseTerm(&rec.Terms[len(rec.Terms)-1], f); err != nil {
			return nil, err
		}
	}
	for i := range rec.Terms {
		t := &rec.Terms[i]
		switch {
		case t.Modifier && t.Name == "redirect":
			if rec.Redirect != nil {
				return nil, &SyntaxError{Term: t.Text, Reason: "redirect appears twice (RFC 7208 section 6)"}
			}
			rec.Redirect = t
		case t.Modifier && t.Name == "exp":
			if rec.Exp != nil {
				return nil, &SyntaxError{Term: t.Text, Reason: "exp appears twice (RFC 7208 section 6)"}
			}
			rec.Exp = t
		}
	}
	return rec, nil
}

// termAround returns the term of txt holding byte i.
func termAround(txt string, i int) string {
	start := strings.LastIndexByte(txt[:i], ' ') + 1
	end := strings.IndexByte(txt[i:], ' ')
	if end < 0 {
		return txt[start:]
	}
	return txt[start : i+end]
}

// modifierName returns the length of a modifier's name when f starts with
// name "=" (RFC 7208 section 4.6.1: name = ALPHA *( ALPHA / DIGIT / "-" / "_" /
// "." )), else 0. The "=" before any ":" or "/" is what tells a modifier
// from a mechanism.
func modifierName(f string) int {
	if f == "" || !isAlpha(f[0]) {
		return 0
	}
	for i := 1; i < len(f); i++ {
		c := f[i]
		switch {
		case c == '=':
			return i
		case isAlpha(c), isDigit(c), c == '-', c == '_', c == '.':
		default:
			return 0
		}
	}
	return 0
}

func parseTerm(t *Term, f string) error {
	*t = Term{Text: f, CIDR4: -1, CIDR6: -1}
	bad := func(format string, a ...any) error {
		return &SyntaxError{Term: f, Reason: fmt.Sprintf(format, a...)}
	}
	if n := modifierName(f); n > 0 {
		t.Modifier = true
		t.Name = strings.ToLower(f[:n])
		t.Domain = f[n+1:]
		switch t.Name {
		case "redirect", "exp":
			if err := checkDomainSpec(t.Domain); err != "" {
				return bad("%s", err)
			}
		default:
			// unknown-modifier = name "=" macro-string; c, r and t are
			// macro letters of the grammar, so they are accepted here.
			if err := checkMacroString(t.Domain, true); err != "" {
				return bad("%s", err)
			}
		}
		return nil
	}
	t.Qualifier = '+'
	rest := f
	if strings.IndexByte("+-~?", rest[0]) >= 0 {
		t.Qualifier, rest = rest[0], rest[1:]
	}
	end := strings.IndexAny(rest, ":/")
	if end < 0 {
		end = len(rest)
	}
	t.Name = strings.ToLower(rest[:end])
	rest = rest[end:]
	switch t.Name {
	case "all":
		if rest != "" {
			return bad("all takes no argument")
		}
	case "include", "exists":
		spec, ok := strings.CutPrefix(rest, ":")
		if !ok {
			return bad("%s needs ':' and a domain", t.Name)
		}
		if err := checkDomainSpec(spec); err != "" {
			return bad("%s", err)
		}
		t.Domain = spec
	case "ptr":
		if rest != "" {
			spec, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return bad("ptr takes no CIDR length")
			}
			if err := checkDomainSpec(spec); err != "" {
				return bad("%s", err)
			}
			t.Domain = spec
		}
	case "a", "mx":
		spec, cidr := splitDualCIDR(rest)
		if spec != "" {
			s, ok := strings.CutPrefix(spec, ":")
			if !ok {
				return bad("unexpected %s after %s", quoteTerm(spec), t.Name)
			}
			if err := checkDomainSpec(s); err != "" {
				return bad("%s", err)
			}
			t.Domain = s
		}
		if cidr != "" {
			c4, c6, err := parseDualCIDR(cidr)
			if err != "" {
				return bad("%s", err)
			}
			t.CIDR4, t.CIDR6 = c4, c6
		}
	case "ip4", "ip6":
		s, ok := strings.CutPrefix(rest, ":")
		if !ok {
			return bad("%s needs ':' and an address", t.Name)
		}
		addr, length, hasLen := strings.Cut(s, "/")
		ip, err := netip.ParseAddr(addr)
		if err != nil || ip.Zone() != "" {
			return bad("not an IP address")
		}
		bits := 32
		if t.Name == "ip4" && !ip.Is4() {
			return bad("ip4 needs an IPv4 address (RFC 7208 section 5.6)")
		}
		if t.Name == "ip6" {
			if ip.Is4() {
				return bad("ip6 needs an IPv6 address (RFC 7208 section 5.6)")
			}
			bits = 128
		}
		n := bits
		if hasLen {
			v, ok := cidrLength(length, bits)
			if !ok {
				return bad("invalid CIDR length /%s", length)
			}
			n = v
		}
		p, err := ip.Prefix(n)
		if err != nil {
			return bad("invalid CIDR length /%s", length)
		}
		t.Prefix = p
	case "":
		return bad("empty mechanism")
	default:
		return bad("unknown mechanism")
	}
	return nil
}

// splitDualCIDR splits the dual-cidr-length off the end of what follows
// "a" or "mx": "/24", "//64", "/24//64". A domain-spec may itself hold
// '/' (macro-literal), so only a suffix of that exact shape is a length.
func splitDualCIDR(s string) (spec, cidr string) {
	i := len(s)
	digitsBack := func(j int) int {
		for j > 0 && isDigit(s[j-1]) {
			j--
		}
		return j
	}
	// "//" digits at the end?
	if j := digitsBack(i); j < i && j >= 2 && s[j-1] == '/' && s[j-2] == '/' {
		i = j - 2
	}
	// "/" digits before that (or at the end)?
	if j := digitsBack(i); j < i && j >= 1 && s[j-1] == '/' && (j < 2 || s[j-2] != '/') {
		i = j - 1
	}
	return s[:i], s[i:]
}

// parseDualCIDR reads "/n", "//m" or "/n//m".
func parseDualCIDR(s string) (c4, c6 int, err string) {
	c4, c6 = -1, -1
	v6 := ""
	if i := strings.Index(s, "//"); i >= 0 {
		s, v6 = s[:i], s[i+2:]
		v, ok := cidrLength(v6, 128)
		if !ok {
			return 0, 0, "invalid IPv6 CIDR length //" + v6
		}
		c6 = v
	}
	if s != "" {
		v, ok := cidrLength(s[1:], 32)
		if !ok {
			return 0, 0, "invalid IPv4 CIDR length " + s
		}
		c4 = v
	}
	return c4, c6, ""
}

// cidrLength parses a CIDR length: digits without a leading zero
// (RFC 7208 section 5.6: "0" / %x31-39 0*1DIGIT), at most max.
func cidrLength(s string, max int) (int, bool) {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
	}
	v, _ := strconv.Atoi(s)
	return v, v <= max
}

// checkDomainSpec checks a domain-spec (RFC 7208 section 7.1): a macro-string of
// visible characters and valid macros, ending in a macro-expand or in "."
// toplabel [ "." ]. It returns "" or the reason.
func checkDomainSpec(s string) string {
	if s == "" {
		return "empty domain"
	}
	tail, err := scanMacroString(s, false)
	if err != "" {
		return err
	}
	lit := s[tail:]
	if lit == "" || (lit == "." && tail > 0) {
		// Ends in a macro-expand. The grammar has no "." after one, but
		// it only makes the name absolute, as it may after a toplabel:
		// refusing it would make permerror (a reject) of a record that
		// means what it says.
		return ""
	}
	lit = strings.TrimSuffix(lit, ".")
	dot := strings.LastIndexByte(lit, '.')
	if dot < 0 {
		return "domain has no '.' before its top label (RFC 7208 section 7.1)"
	}
	if top := lit[dot+1:]; !validTopLabel(top) {
		return "invalid top label " + quoteTerm(top) + " (RFC 7208 section 7.1)"
	}
	return ""
}

// validTopLabel: toplabel = ( *alphanum ALPHA *alphanum ) /
// ( 1*alphanum "-" *( alphanum / "-" ) alphanum ).
func validTopLabel(l string) bool {
	if l == "" || !isAlnum(l[0]) || !isAlnum(l[len(l)-1]) {
		return false
	}
	alpha, hyphen := false, false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case isAlpha(c):
			alpha = true
		case isDigit(c):
		case c == '-':
			hyphen = true
		default:
			return false
		}
	}
	return alpha || hyphen
}

// checkMacroString checks macro syntax (RFC 7208 section 7.1).
func checkMacroString(s string, expLetters bool) string {
	_, err := scanMacroString(s, expLetters)
	return err
}

// scanMacroString checks the macros of s and returns where its trailing
// run of literal text starts (len(s) when s ends in a macro-expand).
// expLetters allows c, r and t, the letters of explanation text (and of
// the grammar's macro-string in unknown modifiers).
func scanMacroString(s string, expLetters bool) (tail int, err string) {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+1 >= len(s) {
			return 0, "'%' at the end (RFC 7208 section 7.1)"
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			tail = i + 1
			continue
		case '{':
		default:
			return 0, "invalid macro " + quoteTerm(s[i:i+2]) + " (RFC 7208 section 7.1)"
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return 0, "unterminated macro (RFC 7208 section 7.1)"
		}
		if _, err := parseMacro(s[i+2:i+end], expLetters); err != "" {
			return 0, "invalid macro " + quoteTerm(s[i:i+end+1]) + ": " + err + " (RFC 7208 section 7.1)"
		}
		i += end
		tail = i + 1
	}
	return tail, ""
}

// macro is a parsed %{...}.
type macro struct {
	letter  byte // lower-case
	upper   bool // URL-escape the expansion
	digits  int  // 0: all parts
	reverse bool
	delims  string // "" means "."
}

// parseMacro parses the inside of %{...}: macro-letter transformers
// *delimiter.
func parseMacro(s string, expLetters bool) (macro, string) {
	var m macro
	if s == "" {
		return m, "no macro letter"
	}
	c := s[0]
	m.upper = 'A' <= c && c <= 'Z'
	m.letter = c | 0x20
	switch m.letter {
	case 's', 'l', 'o', 'd', 'i', 'p', 'h', 'v':
	case 'c', 'r', 't':
		if !expLetters {
			return m, "letter allowed only in explanation text"
		}
	default:
		return m, "unknown macro letter"
	}
	i := 1
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i > 1 {
		v, err := strconv.Atoi(s[1:i])
		if err != nil || v == 0 {
			return m, "the digit transformer must be a nonzero number"
		}
		m.digits = v
	}
	if i < len(s) && (s[i] == 'r' || s[i] == 'R') {
		m.reverse = true
		i++
	}
	for j := i; j < len(s); j++ {
		if strings.IndexByte(".-+,/_=", s[j]) < 0 {
			return m, "invalid delimiter " + quoteTerm(s[j:j+1])
		}
	}
	m.delims = s[i:]
	return m, ""
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlnum(c byte) bool { return isAlpha(c) || isDigit(c) }
