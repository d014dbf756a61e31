package audit

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	tests := []struct {
		name, in string
		code     int
		text     []string
		err      string
	}{
		{"one line", "220 mx.example.com ESMTP\r\n", 220, []string{"mx.example.com ESMTP"}, ""},
		{"multi-line", "250-mx.example.com\r\n250-PIPELINING\r\n250 STARTTLS\r\n", 250, []string{"mx.example.com", "PIPELINING", "STARTTLS"}, ""},
		{"bare code", "250\r\n", 250, []string{""}, ""},
		{"bare LF", "221 bye\n", 221, []string{"bye"}, ""},
		{"CR inside kept", "250 a\rb\r\n", 250, []string{"a\rb"}, ""},
		{"8-bit kept", "250 \xff\x1b[2J\r\n", 250, []string{"\xff\x1b[2J"}, ""},
		{"codes differ", "250-a\r\n251 b\r\n", 0, nil, "reply lines with different codes 250 and 251"},
		{"not a code", "hello\r\n", 0, nil, `malformed reply line "hello"`},
		{"code out of range", "199 x\r\n", 0, nil, `malformed reply line "199 x"`},
		{"bad separator", "250_x\r\n", 0, nil, `malformed reply line "250_x"`},
		{"short", "25\r\n", 0, nil, `malformed reply line "25"`},
		{"cut off", "250-a\r\n250-b", 0, nil, "unexpected EOF"},
		{"empty", "", 0, nil, "unexpected EOF"},
		{"line too long", "250 " + strings.Repeat("x", maxReplyLine+1) + "\r\n", 0, nil, "reply line longer than 2048 octets"},
		{"too many lines", strings.Repeat("250-x\r\n", maxReplyLines+1), 0, nil, "reply longer than 100 lines"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := readReply(bufio.NewReaderSize(strings.NewReader(tc.in), 16))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || rep.Code != tc.code || fmt.Sprintf("%q", rep.Text) != fmt.Sprintf("%q", tc.text) {
				t.Fatalf("got %d %q %v, want %d %q", rep.Code, rep.Text, err, tc.code, tc.text)
			}
		})
	}
	// Replies follow one another on the connection.
	r := bufio.NewReader(strings.NewReader("220 hi\r\n250-a\r\n250 b\r\n"))
	if a, _ := readReply(r); a.Code != 220 {
		t.Errorf("first reply %+v", a)
	}
	if b, _ := readReply(r); b.Code != 250 || len(b.Text) != 2 || fmt.Sprint(b.lines()) != "[250-a 250 b]" {
		t.Errorf("second reply %+v, lines %q", b, b.lines())
	}
}

// FuzzReadReply: a server's replies are untrusted.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"220 mx.example.com ESMTP Postfix\r\n",
		"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 CHUNKING\r\n",
		"252 2.0.0 postmaster\r\n",
		"502 5.5.1 VRFY command is disabled\n",
		"250-a\r\n251 b\r\n",
		"250\r\n",
		"2500 x\r\n",
		"250 \x00\xff\x1b[2J\r\r\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rep, err := readReply(bufio.NewReaderSize(strings.NewReader(in), 16))
		if err != nil {
			return
		}
		if rep.Code < 200 || rep.Code > 599 || len(rep.Text) == 0 || len(rep.Text) > maxReplyLines {
			t.Fatalf("accepted %q as %+v", in, rep)
		}
		for i, l := range rep.Text {
			if len(l) > maxReplyLine || strings.Contains(l, "\n") {
				t.Fatalf("line %d of %q: %q", i, in, l)
			}
		}
		// What the text report prints of it is one safe line each, and a
		// name taken from it one safe token.
		for _, l := range rep.lines() {
			for _, s := range []string{QuoteLine(l), Quote(firstWord(l))} {
				for j := 0; j < len(s); j++ {
					if s[j] < ' ' || s[j] > '~' {
						t.Fatalf("quoted %q as %q", l, s)
					}
				}
			}
		}
	})
}
