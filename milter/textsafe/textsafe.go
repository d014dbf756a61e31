// Package textsafe makes client-supplied strings (HELO names, envelope
// addresses, anything the SMTP client chose) safe to put in an SMTP reply,
// a log line or a header comment. Nothing a client sends reaches those
// places without passing through here.
package textsafe

import "strings"

// MaxReply is the longest reply text we hand the MTA: RFC 5321 §4.5.3.1.5
// allows 512 octets for a reply line including the code and CRLF.
const MaxReply = 512 - len("550 5.7.26 ") - len("\r\n")

// Printable replaces every byte that is not printable ASCII (0x20-0x7E)
// with '?' and cuts the result to max bytes (max <= 0: no limit). CR and
// LF become '?', so the result can never end a line.
func Printable(s string, max int) string {
	if max > 0 && len(s) > max {
		s = s[:max]
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

// Reply makes s safe as (part of) a milter reply text: printable ASCII
// only, no CR/LF, every '%' doubled (Postfix drops a lone '%', Sendmail
// discards the whole reply), at most max bytes after doubling, never
// ending in half of a "%%" pair.
func Reply(s string, max int) string {
	s = Printable(s, 0)
	if strings.IndexByte(s, '%') >= 0 {
		s = strings.ReplaceAll(s, "%", "%%")
	}
	if max > 0 && len(s) > max {
		s = s[:max]
		// Cutting may leave an odd run of '%' at the end: a lone '%'.
		n := 0
		for i := len(s) - 1; i >= 0 && s[i] == '%'; i-- {
			n++
		}
		if n%2 == 1 {
			s = s[:len(s)-1]
		}
	}
	return s
}

// MaxLog bounds a client string in a log line: enough to recognise it,
// not enough to flood the log.
const MaxLog = 256

// Log makes s safe for a log value: printable ASCII is kept; '%', control
// bytes (CR, LF, ESC, ...) and 8-bit bytes become %XX, as in a URL, so
// they can neither forge a line nor colour a terminal, and the escaping
// needs no backslash (which log handlers would escape again). The input
// is cut to MaxLog bytes, with "..." marking the cut.
func Log(s string) string {
	cut := false
	if len(s) > MaxLog {
		s, cut = s[:MaxLog], true
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e || s[i] == '%' {
			clean = false
			break
		}
	}
	if clean && !cut {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		} else {
			b.WriteByte(c)
		}
	}
	if cut {
		b.WriteString("...")
	}
	return b.String()
}
