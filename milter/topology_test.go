package milter_test

import (
	"net/netip"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter/answer"
	"github.com/vouch-mail/vouch/milter/policy"
)

// relayed is a Received field as Postfix on the backup MX writes it for
// the client it received the message from.
func relayed(helo, rdns, ip string) string {
	return "from " + helo + " (" + rdns + " [" + ip + "])\r\n\tby backup.vouch.test (Postfix) with ESMTP id 4Xy1Z2abcd;\r\n\tTue, 01 Dec 2026 22:00:00 +0000 (UTC)"
}

// headersThen sends the header fields and end of headers, returning
// vouch's answer to end of headers (which the MTA gives to DATA).
func (m *mta) headersThen(fields ...string) string {
	m.t.Helper()
	for i := 0; i+1 < len(fields); i += 2 {
		m.expect("header", m.must(m.s.HeaderField(fields[i], fields[i+1])), "continue")
	}
	return answer.Text(m.must(m.s.HeaderEnd()))
}

func trustRelay(s *setup) {
	s.cfg.Policy.TrustedRelays = []netip.Prefix{netip.MustParsePrefix("127.0.0.50/32")}
}

func TestTrustedRelay(t *testing.T) {
	t.Run("forged sender behind the relay is refused after DATA", func(t *testing.T) {
		e := newEnv(t, trustRelay)
		m := e.connect("127.0.0.50")
		m.helo("backup.vouch.test", "continue")
		m.mail("mallory@good.test", "continue")
		m.rcpt("user@vouch.test", "continue")
		got := m.headersThen("Received", relayed("mail.other.test", "mail.other.test", "127.0.0.13"), "Subject", "hi")
		if want := "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test"; got != want {
			t.Fatalf("end of headers: %q, want %q", got, want)
		}
		log := e.logs.String()
		if !strings.Contains(log, "stage=eoh action=reject") || !strings.Contains(log, "relay=127.0.0.50 origin_ip=127.0.0.13") {
			t.Errorf("decision line does not name the relay and the original client:\n%s", log)
		}
		if n := testutil.ToFloat64(e.metrics.Decisions.WithLabelValues("eoh", "reject", "false")); n != 1 {
			t.Errorf("eoh reject counted %v", n)
		}
	})
	t.Run("legitimate sender is judged by the original client", func(t *testing.T) {
		e := newEnv(t, trustRelay)
		m := e.connect("127.0.0.50")
		m.helo("backup.vouch.test", "continue")
		m.mail("alice@good.test", "continue")
		m.rcpt("user@vouch.test", "continue")
		if got := m.headersThen("Received", relayed("mail.good.test", "mail.good.test", "127.0.0.10")); got != "continue" {
			t.Fatalf("end of headers: %q", got)
		}
		mods, act, err := m.s.End()
		if err != nil {
			t.Fatal(err)
		}
		m.expect("end of message", act, "continue")
		hasHeader(t, inserted(mods), "Authentication-Results", "iprev=pass (HELO mail.good.test: match) policy.iprev=127.0.0.10;", "spf=pass smtp.mailfrom=alice@good.test")
		hasHeader(t, inserted(mods), "Received-SPF", "client-ip=127.0.0.10;", "helo=mail.good.test")
		// The original client was looked up, the relay not.
		if n := e.dns.Queries(dnstest.ReverseName("127.0.0.10"), mdns.TypePTR); n != 1 {
			t.Errorf("the original client's PTR was queried %d times, want 1", n)
		}
		if n := e.dns.Queries(dnstest.ReverseName("127.0.0.50"), mdns.TypePTR); n != 0 {
			t.Errorf("the relay's PTR was queried %d times", n)
		}
	})
	t.Run("an unreadable Received field never rejects", func(t *testing.T) {
		for _, tc := range []struct {
			action policy.Action
			want   string
		}{
			{policy.Accept, "continue"},
			{policy.TempFail, "451 4.7.0 Cannot tell the original client of this relayed message"},
		} {
			e := newEnv(t, trustRelay, func(s *setup) { s.cfg.Policy.RelayUnparsed = tc.action })
			m := e.connect("127.0.0.50")
			m.helo("backup.vouch.test", "continue")
			m.mail("mallory@good.test", "continue")
			m.rcpt("user@vouch.test", "continue")
			if got := m.headersThen("Received", "from somewhere we cannot read"); got != tc.want {
				t.Errorf("relay_unparsed %s: %q, want %q", tc.action, got, tc.want)
			}
			if !strings.Contains(e.logs.String(), "names no original client") {
				t.Errorf("no warning logged:\n%s", e.logs.String())
			}
		}
	})
	t.Run("an exempt recipient takes the whole message", func(t *testing.T) {
		e := newEnv(t, trustRelay)
		m := e.connect("127.0.0.50")
		m.helo("backup.vouch.test", "continue")
		m.mail("mallory@good.test", "continue")
		m.rcpt("user@vouch.test", "continue")
		m.rcpt("postmaster@vouch.test", "continue")
		if got := m.headersThen("Received", relayed("mail.other.test", "mail.other.test", "127.0.0.13")); got != "continue" {
			t.Fatalf("end of headers: %q", got)
		}
		if n := testutil.ToFloat64(e.metrics.ExemptRecipients); n != 1 {
			t.Errorf("exempt recipients %v", n)
		}
	})
	t.Run("a client straight to the primary is judged as before", func(t *testing.T) {
		e := newEnv(t, trustRelay)
		m := e.connect("127.0.0.13")
		m.helo("mail.other.test", "continue")
		m.mail("mallory@good.test", "continue")
		m.rcpt("user@vouch.test", "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test")
	})
}

func TestForwarderAllowances(t *testing.T) {
	const spfFail = "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test"
	t.Run("allow_spf_domains", func(t *testing.T) {
		e := newEnv(t, func(s *setup) { s.cfg.Policy.AllowSPFDomains = policy.Domains{"other.test"} })
		m := e.connect("127.0.0.13") // forwards good.test's mail; other.test's SPF lists it
		m.helo("mail.other.test", "continue")
		m.mail("alice@good.test", "continue")
		m.rcpt("user@vouch.test", "continue")
		if !strings.Contains(e.logs.String(), "allowed=allowed_spf_domain") {
			t.Errorf("log lacks the allowance:\n%s", e.logs.String())
		}
		// A client that passes no listed domain's SPF is still refused.
		m2 := e.connect("127.0.0.12")
		m2.helo("liar.test", "continue")
		m2.mail("alice@good.test", "continue")
		m2.rcpt("user@vouch.test", "550 5.7.23 SPF: 127.0.0.12 is not allowed to send mail from good.test")
	})
	t.Run("allow_helo_names needs a verified HELO", func(t *testing.T) {
		e := newEnv(t, func(s *setup) { s.cfg.Policy.AllowHeloNames = policy.Domains{".other.test", "liar.test"} })
		m := e.connect("127.0.0.13")
		m.helo("mail.other.test", "continue") // its confirmed rDNS name
		m.mail("alice@good.test", "continue")
		m.rcpt("user@vouch.test", "continue")
		// liar.test is listed, but its A is elsewhere: not the client.
		m2 := e.connect("127.0.0.12")
		m2.helo("liar.test", "continue")
		m2.mail("alice@good.test", "continue")
		m2.rcpt("user@vouch.test", "550 5.7.23 SPF: 127.0.0.12 is not allowed to send mail from good.test")
	})
	t.Run("allow_recipients", func(t *testing.T) {
		e := newEnv(t, func(s *setup) { s.cfg.Policy.AllowRecipients = []string{"forwarded@vouch.test"} })
		m := e.connect("127.0.0.13")
		m.helo("mail.other.test", "continue")
		m.mail("alice@good.test", "continue")
		m.rcpt("forwarded@vouch.test", "continue")
		m.rcpt("user@vouch.test", spfFail)
		if n := testutil.ToFloat64(e.metrics.Exemptions.WithLabelValues("allowed_recipient")); n != 1 {
			t.Errorf("allowed recipients counted %v", n)
		}
	})
	t.Run("SRS senders name the forwarder", func(t *testing.T) {
		e := newEnv(t)
		m := e.connect("127.0.0.13")
		m.helo("mail.other.test", "continue")
		m.mail("SRS0=HHH=TT=example.org=alice@other.test", "continue")
		m.rcpt("user@vouch.test", "continue")
		if log := e.logs.String(); !strings.Contains(log, "srs_forwarder=other.test srs_original_domain=example.org") {
			t.Errorf("decision line lacks the forwarder:\n%s", log)
		}
	})
}

func TestDomainRules(t *testing.T) {
	e := newEnv(t, func(s *setup) {
		s.cfg.Policy.Domains = map[string]policy.Table{
			".soft.test": {policy.SPF: {"softfail": policy.DefaultRule(policy.SPF, "softfail", policy.Reject)}},
		}
	})
	m := e.connect("127.0.0.10")
	m.helo("mail.good.test", "continue")
	m.mail("bob@soft.test", "continue")
	m.rcpt("user@vouch.test", "550 5.7.23 SPF: 127.0.0.10 is probably not allowed to send mail from soft.test (softfail)")
	if !strings.Contains(e.logs.String(), "domain_rules=.soft.test") {
		t.Errorf("decision line lacks the domain rules:\n%s", e.logs.String())
	}
	// Other senders keep the preset: softfail is accepted.
	m.abort()
	m.mail("carol@nospf.test", "continue")
	m.rcpt("user@vouch.test", "continue")
}
