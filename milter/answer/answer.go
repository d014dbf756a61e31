// Package answer renders what a milter answered, as an MTA reads it, for
// the tests and the load tool that drive vouch over the protocol with
// go-milter's client: one spelling everywhere.
package answer

import (
	"fmt"
	"strconv"
	"strings"

	gomilter "github.com/emersion/go-milter"
)

// Text is "continue", "accept", "tempfail", "reject", "discard", or for
// a reply code the reply as the MTA sends it on: "550 5.7.23 text".
func Text(a *gomilter.Action) string {
	switch a.Code {
	case gomilter.ActContinue:
		return "continue"
	case gomilter.ActAccept:
		return "accept"
	case gomilter.ActTempFail:
		return "tempfail"
	case gomilter.ActReject:
		return "reject"
	case gomilter.ActDiscard:
		return "discard"
	case gomilter.ActReplyCode:
		return strings.TrimSpace(strconv.Itoa(a.SMTPCode) + " " + a.SMTPText)
	}
	return fmt.Sprintf("action %q", rune(a.Code))
}

// Code is Text without a reply's text: "550 5.7.23" (the enhanced status
// only when there is one), for counting answers by kind.
func Code(a *gomilter.Action) string {
	if a.Code != gomilter.ActReplyCode {
		return Text(a)
	}
	v := strconv.Itoa(a.SMTPCode)
	if status, _, _ := strings.Cut(a.SMTPText, " "); isStatus(status) {
		v += " " + status
	}
	return v
}

// isStatus reports whether s looks like an RFC 3463 enhanced status code.
func isStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || parts[0] < "2" || parts[0] > "5" {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}
