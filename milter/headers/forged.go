package headers

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// ClaimsAuthServID reports whether an incoming Authentication-Results
// value claims to come from authservID, compared without regard to case
// (RFC 8601 §2.5) or a trailing dot. RFC 8601 §5 has the receiver delete
// such fields when they arrive from outside.
//
// The value is read with authres.Parse, and also by its first token after
// any comments, so that a forged field which does not parse (a version
// other than 1, a comment where the parser does not expect one, garbage
// after our name) is still caught.
func ClaimsAuthServID(value, authservID string) bool {
	if authservID == "" {
		return false
	}
	if id, _, err := authres.Parse(value); err == nil && sameID(id, authservID) {
		return true
	}
	return sameID(leadingID(value), authservID)
}

func sameID(a, b string) bool {
	a = strings.TrimSuffix(unquote(a), ".")
	b = strings.TrimSuffix(b, ".")
	return a != "" && strings.EqualFold(a, b)
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// leadingID returns the authserv-id position of an A-R value: after
// folding whitespace and comments, a quoted-string's content or the
// longest run of token characters.
func leadingID(v string) string {
	i := skipCFWS(v, 0)
	if i < len(v) && v[i] == '"' {
		var b strings.Builder
		for i++; i < len(v) && v[i] != '"'; i++ {
			if v[i] == '\\' && i+1 < len(v) {
				i++
			}
			b.WriteByte(v[i])
		}
		return b.String()
	}
	start := i
	for i < len(v) && tokenChar(v[i]) {
		i++
	}
	return v[start:i]
}

// skipCFWS skips whitespace (including line breaks) and nested comments.
func skipCFWS(v string, i int) int {
	depth := 0
	for ; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '\\' && depth > 0:
			i++ // a quoted-pair: skip what it quotes
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		case depth > 0:
		default:
			return i
		}
	}
	return len(v) // also when a quoted-pair ended the value
}
