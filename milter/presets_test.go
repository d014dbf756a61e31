package milter_test

import (
	"strings"
	"testing"

	"github.com/vouch-mail/vouch/checks/dnstest"
)

// TestIprevHeloPresets drives each iprev and HELO result through the milter
// protocol under each preset and checks the reply at RCPT, word for word,
// and that the decision line records both results. The sender's domain has
// no SPF record, so SPF decides nothing here.
func TestIprevHeloPresets(t *testing.T) {
	const extra = `
h11.nospf.test. A 127.0.0.11
h12.nospf.test. A 127.0.0.12
h14.nospf.test. A 127.0.0.14
14.0.0.127.in-addr.arpa. PTR mail14.nospf.test.
`
	tests := []struct {
		name, ip, helo       string
		iprev, heloResult    string
		lenient, std, strict string
	}{
		{"no ptr", "127.0.0.11", "h11.nospf.test", "no-ptr", "resolves",
			"continue",
			"450 4.7.25 Client address 127.0.0.11 has no reverse DNS (PTR) record",
			"550 5.7.25 Client address 127.0.0.11 has no reverse DNS (PTR) record"},
		{"unconfirmed", "127.0.0.12", "h12.nospf.test", "unconfirmed", "resolves",
			"continue", "continue",
			"550 5.7.25 Reverse DNS of 127.0.0.12 does not resolve back to 127.0.0.12"},
		{"helo mismatch", "127.0.0.13", "mail.nospf.test", "pass", "mismatch",
			"continue", "continue",
			"550 5.7.25 HELO name mail.nospf.test does not match the reverse DNS of 127.0.0.13"},
		{"helo invalid", "127.0.0.13", "not_a_name", "pass", "invalid",
			"continue", "continue",
			"550 5.7.25 HELO name not_a_name is not a valid host name or address literal"},
		{"helo literal mismatch", "127.0.0.13", "[127.0.0.99]", "pass", "literal-mismatch",
			"continue", "continue",
			"550 5.7.25 HELO address literal [127.0.0.99] is not the client address 127.0.0.13"},
		{"helo literal", "127.0.0.13", "[127.0.0.13]", "pass", "literal",
			"continue", "continue", "continue"},
		{"helo match", "127.0.0.13", "MAIL.OTHER.TEST.", "pass", "match",
			"continue", "continue", "continue"},
		{"iprev temperror", "127.0.0.14", "h14.nospf.test", "temperror", "resolves",
			"continue",
			"451 4.7.25 Temporary DNS failure verifying reverse DNS of 127.0.0.14",
			"451 4.7.25 Temporary DNS failure verifying reverse DNS of 127.0.0.14"},
	}
	for _, tc := range tests {
		for _, p := range []struct{ preset, want string }{{"lenient", tc.lenient}, {"standard", tc.std}, {"strict", tc.strict}} {
			t.Run(tc.name+"/"+p.preset, func(t *testing.T) {
				e := newEnv(t, preset(p.preset))
				if err := e.dns.AddZone(extra); err != nil {
					t.Fatal(err)
				}
				e.dns.SetFault(dnstest.ReverseName("127.0.0.14"), dnstest.Fault{Drop: true})
				m := e.connect(tc.ip)
				m.helo(tc.helo, "continue")
				m.mail("x@nospf.test", "continue")
				m.rcpt("user@vouch.test", p.want)
				if want := "iprev=" + tc.iprev; !strings.Contains(e.logs.String(), want) || !strings.Contains(e.logs.String(), "helo_result="+tc.heloResult) {
					t.Errorf("decision line lacks %s helo_result=%s:\n%s", want, tc.heloResult, e.logs.String())
				}
			})
		}
	}
}
