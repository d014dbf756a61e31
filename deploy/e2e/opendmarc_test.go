package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/deploy/e2e/mta"
)

// OpenDMARC after vouch in one Postfix (and one Sendmail): OpenDMARC does
// no SPF of its own and believes vouch's Authentication-Results
// (TrustedAuthservIDs), so its DMARC verdict rests on vouch's spf=. Both
// resolve from the same dnstest zone, which publishes p=reject for
// good.test.
const dmarcZone = `
$ORIGIN test.
@            SOA ns.test. hostmaster.test. 1 3600 600 86400 60
mail.good    A   127.0.2.10
good         TXT "v=spf1 ip4:127.0.2.10 -all"
_dmarc.good  TXT "v=DMARC1; p=reject"
mail.good    TXT "v=spf1 a -all"
mail.other   A   127.0.2.13
other        TXT "v=spf1 a:mail.other.test -all"
mail.other   TXT "v=spf1 a -all"
soft         TXT "v=spf1 ip4:127.0.2.10 ~all"
_dmarc.soft  TXT "v=DMARC1; p=reject"
10.2.0.127.in-addr.arpa. PTR mail.good.test.
13.2.0.127.in-addr.arpa. PTR mail.other.test.
`

// stack starts vouch, OpenDMARC and the MTA name with both milters,
// vouch first.
func stack(t *testing.T, name string, od mta.OpenDMARCOptions) (mta.Server, *mta.OpenDMARC) {
	t.Helper()
	v := startVouchZone(t, dmarcZone)
	var vport int
	if _, err := fmt.Sscanf(v.addr, "inet:%d@127.0.0.1", &vport); err != nil {
		t.Fatal(err)
	}
	o := mta.Options{MilterAddr: v.addr}
	od.DNS = v.dns.Addr
	d := mta.StartOpenDMARC(t, od)
	var oport int
	if _, err := fmt.Sscanf(d.MilterAddr(), "inet:%d@127.0.0.1", &oport); err != nil {
		t.Fatal(err)
	}
	switch name {
	case "postfix":
		o.PostfixMain = map[string]string{
			"smtpd_milters": fmt.Sprintf("inet:127.0.0.1:%d, inet:127.0.0.1:%d", vport, oport),
		}
	case "sendmail":
		o.SendmailMC = []string{fmt.Sprintf("INPUT_MAIL_FILTER(`opendmarc', `S=inet:%d@127.0.0.1, F=T, T=C:10s;S:10s;R:20s;E:30s')dnl", oport)}
	}
	return mta.Start(t, name, o), d
}

// dmarcResult returns OpenDMARC's Authentication-Results value and
// vouch's (by authserv-id), each "" when absent.
func dmarcResult(msg mta.Message) (opendmarc, vouch string) {
	for _, f := range msg.Fields {
		if !strings.EqualFold(f.Name, "Authentication-Results") {
			continue
		}
		switch {
		case strings.HasPrefix(f.Value, "opendmarc.test;"):
			opendmarc = f.Value
		case strings.HasPrefix(f.Value, "mx.example.test;"):
			vouch = f.Value
		}
	}
	return opendmarc, vouch
}

func TestOpenDMARCAfterVouch(t *testing.T) {
	for _, name := range mta.Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// vouch's authserv-id is the MTA's j macro, its host name.
			m, od := stack(t, name, mta.OpenDMARCOptions{TrustedAuthservIDs: []string{"mx.example.test"}})
			dom := m.Domain()
			for _, tc := range []struct {
				name       string
				client     string // from which client
				helo, from string // HELO and MAIL FROM
				header     string // From: header address
				extra      string // header fields the client adds
				vouchSPF   string // what vouch's A-R must say
				dmarc      string // what OpenDMARC's must be
			}{
				// SPF passes for good.test, the From: domain: aligned.
				{"aligned", "good", "mail.good.test", "alice@good.test", "alice@good.test", "",
					"spf=pass smtp.mailfrom=alice@good.test", "opendmarc.test; dmarc=pass (p=reject dis=none) header.from=good.test"},
				// SPF passes, but for other.test: the From: good.test is
				// not aligned, and good.test says p=reject.
				{"forged from", "other", "mail.other.test", "bob@other.test", "ceo@good.test", "",
					"spf=pass smtp.mailfrom=bob@other.test", "opendmarc.test; dmarc=fail (p=reject dis=none) header.from=good.test"},
				// The same with a forged field in vouch's name: vouch
				// removes it before OpenDMARC can believe it.
				{"forged results removed", "other", "mail.other.test", "bob@other.test", "ceo@good.test",
					"Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=ceo@good.test\n",
					"spf=pass smtp.mailfrom=bob@other.test", "opendmarc.test; dmarc=fail (p=reject dis=none) header.from=good.test"},
				// softfail is accepted and recorded (standard policy);
				// a Received-SPF of the client's own saying pass must
				// not make OpenDMARC's verdict.
				{"forged received-spf", "other", "mail.other.test", "ceo@soft.test", "ceo@soft.test",
					"Received-SPF: pass (upstream.test: ok) client-ip=127.0.2.13; envelope-from=\"ceo@soft.test\"; helo=mail.other.test; identity=mailfrom;\n",
					"spf=softfail smtp.mailfrom=ceo@soft.test", "opendmarc.test; dmarc=fail (p=reject dis=none) header.from=soft.test"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					ip := good
					if tc.client == "other" {
						ip = other
					}
					user := strings.ReplaceAll(tc.name, " ", "-")
					s := dial(t, m, ip, tc.helo)
					s.accepted("MAIL", s.c.MailFrom(tc.from))
					s.accepted("RCPT", s.c.RcptTo(user+"@"+dom))
					s.data(append([]byte(tc.extra), mta.SimpleMessage(tc.header, user+"@"+dom, tc.name, "dmarc")...))
					s.c.Quit()
					msg := m.Mailbox(t, user, 1, time.Minute)[0]
					got, ours := dmarcResult(msg)
					if !strings.Contains(ours, tc.vouchSPF) {
						t.Errorf("vouch: %q, want %q in it", ours, tc.vouchSPF)
					}
					if got != tc.dmarc {
						t.Errorf("OpenDMARC: %q, want %q\nopendmarc log:\n%s", got, tc.dmarc, od.Log())
					}
				})
			}
		})
	}
}

// TestOpenDMARCReadsHeloComment: OpenDMARC takes the spf= result of a
// trusted Authentication-Results field whose iprev result carries the
// HELO verdict as vouch writes it (docs/headers.md), folded or not, as it
// takes the same field without the comment. The client is 127.0.0.1,
// which vouch trusts (it checks nothing and adds no field), so the
// client's field from "upstream.test" is the only SPF result OpenDMARC
// sees.
//
// OpenDMARC 1.4.2 uses an spf= result only when smtp.mailfrom is a bare
// domain: it compares the text from the '@' on ("@good.test") with the
// envelope domain (opendmarc.c, envfrom_match), so smtp.mailfrom=
// alice@good.test, vouch's form, is never matched. The last case pins
// that down: behind vouch, OpenDMARC's SPF input is vouch's Received-SPF.
func TestOpenDMARCReadsHeloComment(t *testing.T) {
	for _, name := range mta.Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m, od := stack(t, name, mta.OpenDMARCOptions{
				TrustedAuthservIDs: []string{"upstream.test"},
				IgnoreHosts:        []string{"192.0.2.1"}, // not 127.0.0.1
			})
			dom := m.Domain()
			for _, tc := range []struct{ name, ar, dmarc string }{
				{"without comment", "upstream.test;\n\tiprev=pass policy.iprev=127.0.2.10;\n\tspf=pass smtp.mailfrom=good.test", "pass"},
				{"with HELO comment", "upstream.test;\n\tiprev=pass (HELO mail.good.test: match) policy.iprev=127.0.2.10;\n\tspf=pass smtp.mailfrom=good.test", "pass"},
				{"with HELO comment folded", "upstream.test;\n\tiprev=pass (HELO\n\tmail.good.test:\n\tmatch) policy.iprev=127.0.2.10;\n\tspf=pass smtp.mailfrom=good.test", "pass"},
				{"smtp.mailfrom with local part is not matched", "upstream.test;\n\tiprev=pass policy.iprev=127.0.2.10;\n\tspf=pass smtp.mailfrom=alice@good.test", "fail"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					user := strings.ReplaceAll(tc.name, " ", "-")
					user = strings.ReplaceAll(user, ".", "-")
					s := dial(t, m, net.IPv4(127, 0, 0, 1), "localhost")
					s.accepted("MAIL", s.c.MailFrom("alice@good.test"))
					s.accepted("RCPT", s.c.RcptTo(user+"@"+dom))
					s.data(append([]byte("Authentication-Results: "+tc.ar+"\n"), mta.SimpleMessage("ceo@good.test", user+"@"+dom, tc.name, "dmarc")...))
					s.c.Quit()
					msg := m.Mailbox(t, user, 1, time.Minute)[0]
					got, ours := dmarcResult(msg)
					if ours != "" {
						t.Fatalf("vouch wrote %q for a trusted client", ours)
					}
					if want := "opendmarc.test; dmarc=" + tc.dmarc + " (p=reject dis=none) header.from=good.test"; got != want {
						t.Errorf("OpenDMARC: %q, want %q\nopendmarc log:\n%s", got, want, od.Log())
					}
				})
			}
		})
	}
}
