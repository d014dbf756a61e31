package audit

import "testing"

func TestQuote(t *testing.T) {
	tests := []struct{ in, token, line string }{
		{"mail.example.com", "mail.example.com", "mail.example.com"},
		{"", `""`, ""},
		{"two words", `"two words"`, "two words"},
		{`say "hi"`, `"say \"hi\""`, `say "hi"`},
		{`back\slash`, `"back\\slash"`, `back\slash`},
		{"evil\r\nX-Fake: 1", `"evil\r\nX-Fake: 1"`, `"evil\r\nX-Fake: 1"`},
		{"\x1b[2Jclear", `"\x1b[2Jclear"`, `"\x1b[2Jclear"`},
		{"m\xe4il", `"m\xe4il"`, `"m\xe4il"`},
		{"mäil", `"m\u00e4il"`, `"m\u00e4il"`},
	}
	for _, tc := range tests {
		if got := Quote(tc.in); got != tc.token {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.token)
		}
		if got := QuoteLine(tc.in); got != tc.line {
			t.Errorf("QuoteLine(%q) = %s, want %s", tc.in, got, tc.line)
		}
	}
}
