package audit

import "strconv"

// Quote makes a client-, server- or DNS-supplied string safe and
// unambiguous on a terminal: kept as is when it is a plain printable ASCII
// token, quoted Go style otherwise (control bytes, CR/LF, 8-bit bytes and
// spaces become visible escapes, so nothing can rewrite the screen or fake
// a line). vouch check and vouch audit print such strings through it.
func Quote(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == '"' || s[i] == '\\' {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

// QuoteLine shows a line of our own text mixed with server or DNS text (a
// finding, a reply line): as is when it is printable ASCII, spaces
// included, quoted Go style otherwise.
func QuoteLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}
