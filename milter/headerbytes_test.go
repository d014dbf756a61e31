package milter_test

import (
	"strings"
	"testing"

	gomilter "github.com/emersion/go-milter"
)

// TestHeaderBytes: the exact fields vouch asks the MTA to insert, through
// the milter protocol, for each SPF outcome that is accepted.
func TestHeaderBytes(t *testing.T) {
	tests := []struct {
		name, ip, helo, sender string
		want                   []string
	}{
		{"pass", "127.0.0.10", "mail.good.test", "alice@good.test", []string{
			"Authentication-Results: mx.vouch.test;\n\tiprev=pass policy.iprev=127.0.0.10;\n\tspf=pass smtp.mailfrom=alice@good.test;\n\tspf=pass smtp.helo=mail.good.test",
			"Received-SPF: pass (mx.vouch.test: domain of alice@good.test designates\n\t127.0.0.10 as permitted sender) client-ip=127.0.0.10;\n\tenvelope-from=\"alice@good.test\"; helo=mail.good.test; identity=mailfrom;\n\treceiver=mx.vouch.test; mechanism=\"ip4:127.0.0.10\"",
		}},
		{"softfail", "127.0.0.10", "mail.good.test", "bob@soft.test", []string{
			"Authentication-Results: mx.vouch.test;\n\tiprev=pass policy.iprev=127.0.0.10;\n\tspf=softfail smtp.mailfrom=bob@soft.test;\n\tspf=pass smtp.helo=mail.good.test",
			"Received-SPF: softfail (mx.vouch.test: domain of transitioning bob@soft.test\n\tdoes not designate 127.0.0.10 as permitted sender) client-ip=127.0.0.10;\n\tenvelope-from=\"bob@soft.test\"; helo=mail.good.test; identity=mailfrom;\n\treceiver=mx.vouch.test; mechanism=~all",
		}},
		{"none", "127.0.0.10", "mail.good.test", "carol@nospf.test", []string{
			"Authentication-Results: mx.vouch.test;\n\tiprev=pass policy.iprev=127.0.0.10;\n\tspf=none reason=\"no SPF record\" smtp.mailfrom=carol@nospf.test;\n\tspf=pass smtp.helo=mail.good.test",
			"Received-SPF: none (mx.vouch.test: domain of carol@nospf.test does not\n\tdesignate permitted sender hosts) client-ip=127.0.0.10;\n\tenvelope-from=\"carol@nospf.test\"; helo=mail.good.test; identity=mailfrom;\n\treceiver=mx.vouch.test; problem=\"no SPF record\"",
		}},
		{"null sender", "127.0.0.10", "mail.good.test", "", []string{
			"Authentication-Results: mx.vouch.test;\n\tiprev=pass policy.iprev=127.0.0.10;\n\tspf=pass smtp.helo=mail.good.test",
			"Received-SPF: pass (mx.vouch.test: domain of postmaster@mail.good.test\n\tdesignates 127.0.0.10 as permitted sender) client-ip=127.0.0.10;\n\tenvelope-from=\"postmaster@mail.good.test\"; helo=mail.good.test;\n\tidentity=helo; receiver=mx.vouch.test; mechanism=a",
		}},
		{"ipv6 client", "::10", "mail6.good.test", "alice@good.test", []string{
			"Authentication-Results: mx.vouch.test;\n\tiprev=pass policy.iprev=\"::10\";\n\tspf=pass smtp.mailfrom=alice@good.test;\n\tspf=none reason=\"no SPF record\" smtp.helo=mail6.good.test",
			"Received-SPF: pass (mx.vouch.test: domain of alice@good.test designates ::10\n\tas permitted sender) client-ip=\"::10\"; envelope-from=\"alice@good.test\";\n\thelo=mail6.good.test; identity=mailfrom; receiver=mx.vouch.test;\n\tmechanism=\"ip6:::10\"",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.connect(tc.ip)
			m.helo(tc.helo, "continue")
			m.mail(tc.sender, "continue")
			m.rcpt("user@vouch.test", "continue")
			got := inserted(m.data())
			if strings.Join(got, "\n--\n") != strings.Join(tc.want, "\n--\n") {
				t.Errorf("fields:\n%s\nwant:\n%s", strings.Join(got, "\n--\n"), strings.Join(tc.want, "\n--\n"))
			}
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
