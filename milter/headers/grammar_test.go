package headers

import (
	"fmt"
	"strings"
)

// A strict reader of the two grammars, for the tests: it accepts what RFC
// 8601 §2.2 (Authentication-Results) and RFC 7208 §9.1 (Received-SPF)
// allow, less the comments and CFWS variants vouch never writes, and
// returns what it read so tests can compare it with what went in.

// unfold undoes header folding: a line break followed by whitespace is
// whitespace (RFC 5322 §2.2.3).
func unfold(v string) (string, error) {
	v = strings.ReplaceAll(v, "\r\n", "\n")
	for i := 0; i < len(v); i++ {
		if v[i] == '\n' && (i+1 == len(v) || (v[i+1] != ' ' && v[i+1] != '\t')) {
			return "", fmt.Errorf("line break at %d not followed by whitespace", i)
		}
	}
	return strings.ReplaceAll(v, "\n", ""), nil
}

type scanner struct {
	s string
	i int
}

func (p *scanner) ws() bool {
	start := p.i
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
	return p.i > start
}

func (p *scanner) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *scanner) errf(format string, a ...any) error {
	return fmt.Errorf("at %d (%q): %s", p.i, p.s[min(p.i, len(p.s)):], fmt.Sprintf(format, a...))
}

func (p *scanner) token() string {
	start := p.i
	for p.i < len(p.s) && tokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// quoted reads an RFC 5322 quoted-string (no folding inside) and returns
// its content.
func (p *scanner) quoted() (string, error) {
	if !p.eat('"') {
		return "", p.errf("want '\"'")
	}
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\' && p.i+1 < len(p.s):
			b.WriteByte(p.s[p.i+1])
			p.i += 2
		case c == ' ' || c == '\t' || (c > ' ' && c < 0x7f && c != '\\'):
			b.WriteByte(c)
			p.i++
		default:
			return "", p.errf("byte %#x in quoted-string", c)
		}
	}
	return "", p.errf("unterminated quoted-string")
}

// value is RFC 2045 value: token / quoted-string.
func (p *scanner) value() (string, error) {
	if p.i < len(p.s) && p.s[p.i] == '"' {
		return p.quoted()
	}
	if t := p.token(); t != "" {
		return t, nil
	}
	return "", p.errf("want a token or quoted-string")
}

func isKeyword(s string) bool {
	letDig := func(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' }
	if s == "" || !letDig(s[0]) || !letDig(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !letDig(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

// grammarDomainName is RFC 6376's domain-name: sub-domain 1*("."
// sub-domain), written apart from the package's isDomainName on purpose.
func grammarDomainName(s string) bool {
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if !isKeyword(l) {
			return false
		}
	}
	return true
}

type arResult struct {
	method, result string
	props          map[string]string // "reason" and "ptype.property"
	comments       []string          // content of each comment between the result and the properties
}

// parseAR reads an Authentication-Results value.
func parseAR(v string) (id string, results []arResult, err error) {
	u, err := unfold(v)
	if err != nil {
		return "", nil, err
	}
	p := &scanner{s: u}
	p.ws()
	if id, err = p.value(); err != nil {
		return "", nil, fmt.Errorf("authserv-id: %w", err)
	}
	p.ws()
	if !p.eat(';') {
		return "", nil, p.errf("want ';' after authserv-id")
	}
	p.ws()
	if strings.HasPrefix(p.s[p.i:], "none") && strings.TrimSpace(p.s[p.i+4:]) == "" {
		return id, nil, nil
	}
	for {
		var r arResult
		r.props = map[string]string{}
		r.method = p.token()
		if !isKeyword(r.method) {
			return "", nil, p.errf("method %q", r.method)
		}
		if !p.eat('=') {
			return "", nil, p.errf("want '=' after method")
		}
		r.result = p.token()
		if !isKeyword(r.result) {
			return "", nil, p.errf("result %q", r.result)
		}
		for p.ws() {
			if p.i == len(p.s) || p.s[p.i] == ';' {
				break
			}
			if p.s[p.i] == '(' {
				// CFWS after the result (RFC 8601 §2.2 methodspec/
				// reasonspec/propspec are joined by CFWS); vouch writes
				// comments only before the first property.
				if len(r.props) > 0 {
					return "", nil, p.errf("comment after a property")
				}
				c, err := p.comment()
				if err != nil {
					return "", nil, err
				}
				r.comments = append(r.comments, c)
				continue
			}
			name := p.token() // "reason", or "ptype.property" (a token may hold '.')
			if !p.eat('=') {
				return "", nil, p.errf("want '=' after %q", name)
			}
			var val string
			switch {
			case name == "reason":
				val, err = p.value()
			case strings.Count(name, ".") == 1 && isKeyword(strings.Split(name, ".")[0]):
				val, err = p.pvalue()
			default:
				err = p.errf("property %q", name)
			}
			if err != nil {
				return "", nil, err
			}
			if _, dup := r.props[name]; dup {
				return "", nil, p.errf("%s twice", name)
			}
			r.props[name] = val
		}
		results = append(results, r)
		if p.i == len(p.s) {
			return id, results, nil
		}
		if !p.eat(';') {
			return "", nil, p.errf("want ';' between results")
		}
		p.ws()
	}
}

// comment reads an RFC 5322 comment with folding whitespace inside but
// without nesting or quoted-pairs (vouch writes neither) and returns its
// content.
func (p *scanner) comment() (string, error) {
	if !p.eat('(') {
		return "", p.errf("want '('")
	}
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != ')' {
		c := p.s[p.i]
		if c == '(' || c == '\\' || (c < ' ' && c != '\t') || c >= 0x7f {
			return "", p.errf("byte %#x in comment", c)
		}
		p.i++
	}
	if !p.eat(')') {
		return "", p.errf("unterminated comment")
	}
	return p.s[start : p.i-1], nil
}

// pvalue is RFC 8601's: value / [ [ local-part ] "@" ] domain-name.
func (p *scanner) pvalue() (string, error) {
	if p.i < len(p.s) && p.s[p.i] == '"' {
		return p.quoted()
	}
	start := p.i
	for p.i < len(p.s) && p.s[p.i] > ' ' && p.s[p.i] < 0x7f && p.s[p.i] != ';' {
		p.i++
	}
	v := p.s[start:p.i]
	if isToken(v) {
		return v, nil
	}
	at := strings.LastIndexByte(v, '@')
	if at >= 0 && (at == 0 || isDotAtom(v[:at])) && grammarDomainName(v[at+1:]) {
		return v, nil
	}
	return "", fmt.Errorf("pvalue %q is neither a token nor [local-part]@domain-name", v)
}

// parseReceivedSPF reads a Received-SPF value.
func parseReceivedSPF(v string) (result, comment string, pairs map[string]string, err error) {
	u, err := unfold(v)
	if err != nil {
		return "", "", nil, err
	}
	p := &scanner{s: u}
	result = p.token()
	switch result {
	case "pass", "fail", "softfail", "policy", "neutral", "none", "temperror", "permerror":
	default:
		return "", "", nil, p.errf("result %q", result)
	}
	if !p.ws() {
		return "", "", nil, p.errf("want whitespace after the result")
	}
	if p.eat('(') {
		start := p.i
		for p.i < len(p.s) && p.s[p.i] != ')' {
			c := p.s[p.i]
			if c == '(' || c == '\\' || (c < ' ' && c != '\t') || c >= 0x7f {
				return "", "", nil, p.errf("byte %#x in comment", c)
			}
			p.i++
		}
		comment = p.s[start:p.i]
		if !p.eat(')') {
			return "", "", nil, p.errf("unterminated comment")
		}
		if p.i < len(p.s) && !p.ws() {
			return "", "", nil, p.errf("want whitespace after the comment")
		}
	}
	pairs = map[string]string{}
	for p.i < len(p.s) {
		key := p.token()
		if key == "" || strings.ContainsAny(key, ".") {
			return "", "", nil, p.errf("key %q", key)
		}
		if !p.eat('=') {
			return "", "", nil, p.errf("want '=' after %q", key)
		}
		var val string
		if p.i < len(p.s) && p.s[p.i] == '"' {
			if val, err = p.quoted(); err != nil {
				return "", "", nil, err
			}
		} else {
			start := p.i
			for p.i < len(p.s) && p.s[p.i] != ';' && p.s[p.i] != ' ' && p.s[p.i] != '\t' {
				p.i++
			}
			val = p.s[start:p.i]
			if !isDotAtom(val) {
				return "", "", nil, fmt.Errorf("%s=%q is neither a dot-atom nor a quoted-string", key, val)
			}
		}
		if _, dup := pairs[key]; dup {
			return "", "", nil, p.errf("%s twice", key)
		}
		pairs[key] = val
		p.ws()
		if p.i == len(p.s) {
			break
		}
		if !p.eat(';') {
			return "", "", nil, p.errf("want ';' between pairs")
		}
		p.ws()
	}
	return result, comment, pairs, nil
}
