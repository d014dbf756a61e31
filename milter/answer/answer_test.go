package answer

import (
	"testing"

	gomilter "github.com/emersion/go-milter"
)

func TestText(t *testing.T) {
	tests := []struct {
		a          gomilter.Action
		text, code string
	}{
		{gomilter.Action{Code: gomilter.ActContinue}, "continue", "continue"},
		{gomilter.Action{Code: gomilter.ActTempFail}, "tempfail", "tempfail"},
		{gomilter.Action{Code: gomilter.ActReplyCode, SMTPCode: 550, SMTPText: "5.7.23 SPF: no"}, "550 5.7.23 SPF: no", "550 5.7.23"},
		{gomilter.Action{Code: gomilter.ActReplyCode, SMTPCode: 451, SMTPText: "try later"}, "451 try later", "451"},
		{gomilter.Action{Code: gomilter.ActAccept}, "accept", "accept"},
		{gomilter.Action{Code: gomilter.ActReject}, "reject", "reject"},
		{gomilter.Action{Code: gomilter.ActDiscard}, "discard", "discard"},
		{gomilter.Action{Code: gomilter.ActReplyCode, SMTPCode: 451, SMTPText: "4.3.0 Temporary local error"}, "451 4.3.0 Temporary local error", "451 4.3.0"},
		{gomilter.Action{Code: gomilter.ActReplyCode, SMTPCode: 550, SMTPText: "5.x.1 odd"}, "550 5.x.1 odd", "550"},
	}
	for _, tc := range tests {
		if got := Text(&tc.a); got != tc.text {
			t.Errorf("Text = %q, want %q", got, tc.text)
		}
		if got := Code(&tc.a); got != tc.code {
			t.Errorf("Code = %q, want %q", got, tc.code)
		}
	}
}
