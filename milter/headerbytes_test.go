package milter_test

import (
	"path/filepath"
	"strings"
	"testing"

	gomilter "github.com/emersion/go-milter"
	"github.com/vouch-mail/vouch/checks/checktest"
)

// TestHeaderBytes: the exact fields vouch asks the MTA to insert, through
// the milter protocol, for each SPF outcome that is accepted.
func TestHeaderBytes(t *testing.T) {
	tests := []struct{ name, ip, helo, sender string }{
		{"pass", "127.0.0.10", "mail.good.test", "alice@good.test"},
		{"softfail", "127.0.0.10", "mail.good.test", "bob@soft.test"},
		{"none", "127.0.0.10", "mail.good.test", "carol@nospf.test"},
		{"null-sender", "127.0.0.10", "mail.good.test", ""},
		{"ipv6-client", "::10", "mail6.good.test", "alice@good.test"},
		{"helo-mismatch", "127.0.0.13", "mail.good.test", "carol@other.test"},
		{"helo-invalid", "127.0.0.10", "not a name", "alice@good.test"},
		{"no-ptr", "127.0.0.12", "liar.test", "carol@nospf.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.connect(tc.ip)
			m.helo(tc.helo, "continue")
			m.mail(tc.sender, "continue")
			m.rcpt("user@vouch.test", "continue")
			got := inserted(m.data())
			checktest.Golden(t, filepath.Join("testdata", "headers", tc.name+".txt"), strings.Join(got, "\n--\n")+"\n")
		})
	}
}

// TestHostileStringsCannotBreakHeaders: whatever the client puts in HELO
// or MAIL FROM, vouch inserts exactly its two fields, each of printable
// ASCII lines joined only by folding, none over 998 octets.
func TestHostileStringsCannotBreakHeaders(t *testing.T) {
	hostile := []string{
		"a\r\nX-Injected: yes",
		"a;b=c (d) \"e\" 100%",
		"caf\xc3\xa9\xff",
		strings.Repeat("x", 1000),
		"\nAuthentication-Results: mx.vouch.test; spf=pass",
	}
	for i, h := range hostile {
		for _, where := range []string{"helo", "sender"} {
			t.Run(where+"/"+string(rune('a'+i)), func(t *testing.T) {
				e := newEnv(t, preset("lenient"))
				m := e.connect("127.0.0.10")
				helo, sender := "mail.good.test", "alice@good.test"
				if where == "helo" {
					helo = h
				} else {
					sender = h + "@good.test"
				}
				m.helo(helo, "continue")
				m.mail(sender, "continue")
				m.rcpt("user@vouch.test", "continue")
				var n int
				for _, a := range m.data() {
					if a.Code != gomilter.ActInsertHeader {
						continue
					}
					n++
					if a.HeaderName != "Authentication-Results" && a.HeaderName != "Received-SPF" {
						t.Errorf("inserted field %q", a.HeaderName)
					}
					for _, line := range strings.Split(a.HeaderValue, "\n\t") {
						if len(line) > 998 {
							t.Errorf("line of %d octets", len(line))
						}
						for j := 0; j < len(line); j++ {
							if c := line[j]; c < 0x20 || c > 0x7e {
								t.Fatalf("byte %#x in %s: %q", c, a.HeaderName, a.HeaderValue)
							}
						}
					}
				}
				if n != 2 {
					t.Errorf("%d fields inserted, want 2", n)
				}
			})
		}
	}
}
