// Package envelope holds the helpers for SMTP envelope sender addresses
// (the MAIL FROM reverse-path, RFC 5321 §4.1.2): the null sender, the
// domain of an address, and recognition of SRS-rewritten senders. One
// place for each, so the milter, the checks and the CLI read a sender the
// same way.
//
// Everything here is string work on untrusted input: no DNS, no
// allocation beyond the results, and no output that is safe to log or
// put in a header as it is (callers sanitise).
package envelope

import "strings"

// NullSender is how the null reverse-path is shown in logs and reports.
const NullSender = "<>"

// IsNull reports whether sender, as MAIL FROM gave it (with or without
// angle brackets), is the null reverse-path used by bounces and other
// notifications (RFC 5321 §4.5.5).
func IsNull(sender string) bool {
	s := strings.TrimSpace(sender)
	return s == "" || s == "<>"
}

// Display returns sender for a log line or report: NullSender for the
// null sender, else the address without angle brackets.
func Display(sender string) string {
	if IsNull(sender) {
		return NullSender
	}
	return stripPath(sender)
}

// Split returns the local part and domain of an address given with or
// without angle brackets (and without a source route, RFC 5321 §4.1.2
// A-d-l, which is dropped). The domain is what follows the '@' that ends
// the local part, so a quoted local part may hold '@' ("a@b"@example.com);
// trailing dots are removed. ok is false for the null sender, an address
// without '@' (or whose quoted local part never closes), and an empty
// domain or one holding '@'.
func Split(addr string) (local, domain string, ok bool) {
	s := stripPath(addr)
	if s == "" {
		return "", "", false
	}
	at := -1
	if s[0] == '"' {
		end := closingQuote(s)
		if end < 0 || end+1 >= len(s) || s[end+1] != '@' {
			return "", "", false
		}
		at = end + 1
	} else {
		at = strings.LastIndexByte(s, '@')
	}
	if at < 0 {
		return "", "", false
	}
	local, domain = s[:at], strings.TrimRight(s[at+1:], ".")
	if domain == "" || strings.IndexByte(domain, '@') >= 0 {
		return "", "", false
	}
	return local, domain, true
}

// Domain returns the domain of an address (see Split), "" when it has
// none: the null sender, a bare local part, an empty domain. Case is
// kept; compare domains case-insensitively.
func Domain(addr string) string {
	_, d, _ := Split(addr)
	return d
}

// stripPath removes surrounding white space, angle brackets and a
// source route ("@relay1,@relay2:").
func stripPath(addr string) string {
	s := strings.TrimSpace(addr)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = s[1 : len(s)-1]
	}
	if strings.HasPrefix(s, "@") {
		if c := strings.IndexByte(s, ':'); c >= 0 {
			s = s[c+1:]
		}
	}
	return s
}

// closingQuote returns the index of the '"' that closes the quoted string
// opening s, honouring backslash quoted-pairs; -1 if it never closes.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}
