// Package e2e runs vouch behind a real Postfix and a real Sendmail (from
// Debian's packages, started privately by deploy/e2e/mta) and checks what
// an SMTP client sees and what lands in the mailbox.
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/deploy/e2e/mta"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/metrics"
)

// The clients, each its own loopback address with its own DNS story:
//
//	127.0.2.10  mail.good.test: PTR and A agree; good.test's SPF lists it
//	127.0.2.11  no PTR record at all
//	127.0.2.13  mail.other.test, confirmed; other.test's SPF lists it,
//	            good.test's does not
const zone = `
$ORIGIN test.
@            SOA ns.test. hostmaster.test. 1 3600 600 86400 60
mail.good    A   127.0.2.10
good         TXT "v=spf1 ip4:127.0.2.10 -all"
mail.good    TXT "v=spf1 a -all"
mail.other   A   127.0.2.13
other        TXT "v=spf1 a:mail.other.test -all"
mail.other   TXT "v=spf1 a -all"
mail.nospf   A   127.0.2.11
10.2.0.127.in-addr.arpa. PTR mail.good.test.
13.2.0.127.in-addr.arpa. PTR mail.other.test.
`

var (
	good   = net.IPv4(127, 0, 2, 10)
	noPTR  = net.IPv4(127, 0, 2, 11)
	other  = net.IPv4(127, 0, 2, 13)
	forged = "mallory@good.test" // good.test's SPF does not list 127.0.2.13
)

// vouch is an in-process vouch on a loopback port, its DNS a dnstest
// server. Its trusted networks do not cover the test clients.
type vouch struct {
	dns    *dnstest.Server
	srv    *milter.Server
	addr   string // inet:PORT@127.0.0.1
	logs   *checktest.LogBuffer
	served chan error
}

func startVouch(t *testing.T) *vouch {
	t.Helper()
	return startVouchZone(t, zone)
}

// startVouchZone is startVouch with DNS serving zoneText, the
// configuration changed by each of change.
func startVouchZone(t *testing.T, zoneText string, change ...func(*config.Config)) *vouch {
	t.Helper()
	d := dnstest.New(t, zoneText)
	rc := checktest.Config(d.Addr, time.Second)
	rc.Attempts = 2
	res := checktest.ResolverFor(t, rc, nil)
	cfg := config.Default()
	cfg.Policy.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	for _, ch := range change {
		ch(cfg)
	}
	v := &vouch{dns: d, logs: &checktest.LogBuffer{}, served: make(chan error, 1)}
	srv, err := milter.NewServer(cfg, res, milter.Options{
		Logger:  slog.New(slog.NewTextHandler(v.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: metrics.New(prometheus.NewRegistry(), "e2e"),
	})
	if err != nil {
		t.Fatal(err)
	}
	v.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	v.addr = fmt.Sprintf("inet:%d@127.0.0.1", ln.Addr().(*net.TCPAddr).Port)
	go func() { v.served <- v.srv.Serve(ln) }()
	t.Cleanup(func() {
		v.stop(t)
		if t.Failed() {
			t.Logf("vouch log:\n%s", v.logs.String())
		}
	})
	return v
}

func (v *vouch) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v.srv.Shutdown(ctx)
}

// session is one SMTP client connection.
type session struct {
	t   *testing.T
	mta mta.Server
	c   *mta.Client
}

func dial(t *testing.T, s mta.Server, from net.IP, helo string) *session {
	t.Helper()
	c := mta.Dial(t, s.SMTPAddr(), from)
	if r := c.Greeting(); r.Code != 220 {
		t.Fatalf("greeting %s", r)
	}
	if r := c.Ehlo(helo); r.Code != 250 {
		t.Fatalf("EHLO %s: %s", helo, r)
	}
	return &session{t: t, mta: s, c: c}
}

// expect compares a reply with want, "CODE TEXT". Sendmail puts
// "<rcpt>... " before the text of some replies (550, 450; not 451), which
// want leaves out.
func (s *session) expect(what string, r mta.Reply, want string) {
	s.t.Helper()
	got := r.String()
	if s.mta.Name() == "sendmail" {
		if i := strings.Index(got, ">... "); i >= 0 {
			got = got[:4] + strings.SplitN(got[4:], " ", 2)[0] + " " + got[i+len(">... "):]
		}
	}
	if got != want {
		s.t.Fatalf("%s: got %q, want %q", what, r.String(), want)
	}
}

func (s *session) mail(from, want string) {
	s.t.Helper()
	s.expect("MAIL FROM:<"+from+">", s.c.MailFrom(from), want)
}

func (s *session) rcpt(to, want string) {
	s.t.Helper()
	s.expect("RCPT TO:<"+to+">", s.c.RcptTo(to), want)
}

func (s *session) data(msg []byte) {
	s.t.Helper()
	if r := s.c.Data(msg); r.Code != 250 {
		s.t.Fatalf("DATA: %s", r)
	}
}

// Replies as the MTAs pass them on (Sendmail's "<rcpt>... " is taken out
// by expect).
const (
	spfFail       = "550 5.7.23 SPF: 127.0.2.13 is not allowed to send mail from good.test"
	noPTRTempfail = "450 4.7.25 Client address 127.0.2.11 has no reverse DNS (PTR) record"
)

// accepted asserts a 250 and returns nothing else: the text is the MTA's.
func (s *session) accepted(what string, r mta.Reply) {
	s.t.Helper()
	if r.Code != 250 {
		s.t.Fatalf("%s: got %q, want 250", what, r.String())
	}
}

// top returns the raw header fields above the MTA's own Received field:
// what vouch inserted (Return-Path, written at delivery, left out).
func top(t *testing.T, msg mta.Message) []string {
	t.Helper()
	var out []string
	for _, f := range msg.Fields {
		switch {
		case strings.EqualFold(f.Name, "Return-Path"):
			continue
		case strings.EqualFold(f.Name, "Received"):
			return out
		}
		out = append(out, f.Raw)
	}
	t.Fatalf("no Received field in\n%s", msg.Raw)
	return nil
}

func sameFields(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("fields above Received:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestVouchBehindRealMTAs runs each scenario through Postfix and Sendmail
// with vouch as their milter, asserting the replies the SMTP client gets
// and the header fields of delivered mail, byte for byte.
func TestVouchBehindRealMTAs(t *testing.T) {
	for _, name := range mta.Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v := startVouch(t)
			m := mta.Start(t, name, mta.Options{MilterAddr: v.addr})
			dom := m.Domain()
			id := m.Hostname() // the MTA's j macro is the authserv-id

			t.Run("fcrdns and spf pass", func(t *testing.T) {
				s := dial(t, m, good, "mail.good.test")
				s.accepted("MAIL", s.c.MailFrom("alice@good.test"))
				s.accepted("RCPT", s.c.RcptTo("pass@"+dom))
				s.data(mta.SimpleMessage("alice@good.test", "pass@"+dom, "pass", "hello"))
				s.c.Quit()
				msg := m.Mailbox(t, "pass", 1, time.Minute)[0]
				// The log line of the accepted message carries the MTA's
				// queue id, as its own Received field does.
				_, after, _ := strings.Cut(msg.Get("Received"), " id ")
				qid := strings.Fields(after + " ")[0]
				if qid == "" || !strings.Contains(v.logs.String(), `msg="message accepted" conn=`) || !strings.Contains(v.logs.String(), "queue_id="+qid) {
					t.Errorf("no accepted-message log line with queue id %q", qid)
				}
				sameFields(t, top(t, msg),
					"Authentication-Results: "+id+";\n\tiprev=pass (HELO mail.good.test: match) policy.iprev=127.0.2.10;\n\tspf=pass smtp.mailfrom=alice@good.test;\n\tspf=pass smtp.helo=mail.good.test",
					"Received-SPF: pass ("+id+": domain of alice@good.test designates\n\t127.0.2.10 as permitted sender) client-ip=127.0.2.10;\n\tenvelope-from=\"alice@good.test\"; helo=mail.good.test; identity=mailfrom;\n\treceiver="+id+"; mechanism=\"ip4:127.0.2.10\"")
			})

			t.Run("no PTR is tempfailed at RCPT", func(t *testing.T) {
				s := dial(t, m, noPTR, "mail.nospf.test")
				s.accepted("MAIL", s.c.MailFrom("bob@nospf.test"))
				s.rcpt("noptr@"+dom, noPTRTempfail)
				s.c.Quit()
			})

			t.Run("HELO mismatch is accepted and recorded", func(t *testing.T) {
				s := dial(t, m, other, "mail.good.test") // 127.0.2.13 is mail.other.test
				s.accepted("MAIL", s.c.MailFrom("carol@other.test"))
				s.accepted("RCPT", s.c.RcptTo("mismatch@"+dom))
				s.data(mta.SimpleMessage("carol@other.test", "mismatch@"+dom, "mismatch", "hello"))
				s.c.Quit()
				got := top(t, m.Mailbox(t, "mismatch", 1, time.Minute)[0])
				// mail.good.test's own SPF does not list 127.0.2.13.
				if len(got) == 0 || !strings.Contains(got[0], "spf=pass smtp.mailfrom=carol@other.test") || !strings.Contains(got[0], "spf=fail smtp.helo=mail.good.test") {
					t.Errorf("Authentication-Results: %q", got)
				}
				if !strings.Contains(v.logs.String(), "helo=mail.good.test iprev=pass rdns=mail.other.test helo_result=mismatch") {
					t.Errorf("decision log does not record the HELO mismatch")
				}
			})

			t.Run("SPF fail is rejected at RCPT", func(t *testing.T) {
				s := dial(t, m, other, "mail.other.test")
				s.accepted("MAIL", s.c.MailFrom(forged))
				s.rcpt("victim@"+dom, spfFail)
				s.c.Quit()
			})

			t.Run("null sender bounce", func(t *testing.T) {
				s := dial(t, m, good, "mail.good.test")
				s.accepted("MAIL", s.c.MailFrom(""))
				s.accepted("RCPT", s.c.RcptTo("bounce@"+dom))
				s.data(mta.SimpleMessage("MAILER-DAEMON@mail.good.test", "bounce@"+dom, "Undelivered Mail", "sorry"))
				s.c.Quit()
				sameFields(t, top(t, m.Mailbox(t, "bounce", 1, time.Minute)[0]),
					"Authentication-Results: "+id+";\n\tiprev=pass (HELO mail.good.test: match) policy.iprev=127.0.2.10;\n\tspf=pass smtp.helo=mail.good.test",
					"Received-SPF: pass ("+id+": domain of postmaster@mail.good.test\n\tdesignates 127.0.2.10 as permitted sender) client-ip=127.0.2.10;\n\tenvelope-from=\"postmaster@mail.good.test\"; helo=mail.good.test;\n\tidentity=helo; receiver="+id+"; mechanism=a")
			})

			t.Run("two messages on one connection, each with its own results", func(t *testing.T) {
				s := dial(t, m, other, "mail.other.test")
				s.accepted("MAIL 1", s.c.MailFrom("carol@other.test"))
				s.accepted("RCPT 1", s.c.RcptTo("two@"+dom))
				s.data(mta.SimpleMessage("carol@other.test", "two@"+dom, "first", "1"))
				s.accepted("MAIL 2", s.c.MailFrom("dave@other.test"))
				s.accepted("RCPT 2", s.c.RcptTo("two@"+dom))
				s.data(mta.SimpleMessage("dave@other.test", "two@"+dom, "second", "2"))
				s.c.Quit()
				// Delivery order is the MTA's business: match by sender.
				bySender := map[string]mta.Message{}
				for _, msg := range m.Mailbox(t, "two", 2, time.Minute) {
					bySender[strings.Trim(msg.Get("From"), "<>")] = msg
				}
				for i, sender := range []string{"carol@other.test", "dave@other.test"} {
					got := top(t, bySender[sender])
					want := "Authentication-Results: " + id + ";\n\tiprev=pass (HELO mail.other.test: match) policy.iprev=127.0.2.13;\n\tspf=pass smtp.mailfrom=" + sender + ";\n\tspf=pass smtp.helo=mail.other.test"
					if len(got) != 2 || got[0] != want {
						t.Errorf("message %d:\n%s\nwant first:\n%s", i+1, strings.Join(got, "\n"), want)
					}
				}
			})

			t.Run("RSET between transactions", func(t *testing.T) {
				s := dial(t, m, other, "mail.other.test")
				s.accepted("MAIL 1", s.c.MailFrom(forged))
				s.rcpt("rset@"+dom, spfFail)
				s.accepted("RSET", s.c.Rset())
				s.accepted("MAIL 2", s.c.MailFrom("carol@other.test"))
				s.accepted("RCPT 2", s.c.RcptTo("rset@"+dom))
				s.data(mta.SimpleMessage("carol@other.test", "rset@"+dom, "after rset", "ok"))
				s.c.Quit()
				got := top(t, m.Mailbox(t, "rset", 1, time.Minute)[0])
				if len(got) == 0 || !strings.Contains(got[0], "spf=pass smtp.mailfrom=carol@other.test") || strings.Contains(strings.Join(got, ""), "good.test") {
					t.Errorf("after RSET the message carries %q", got)
				}
			})

			t.Run("postmaster is exempt", func(t *testing.T) {
				s := dial(t, m, other, "mail.other.test")
				s.accepted("MAIL", s.c.MailFrom(forged))
				s.rcpt("victim@"+dom, spfFail)
				s.accepted("RCPT postmaster", s.c.RcptTo("postmaster@"+dom))
				s.data(mta.SimpleMessage(forged, "postmaster@"+dom, "to the postmaster", "hi"))
				s.c.Quit()
				// Sendmail's aliases send postmaster to root.
				box := map[string]string{"postfix": "postmaster", "sendmail": "root"}[name]
				got := top(t, m.Mailbox(t, box, 1, time.Minute)[0])
				if len(got) == 0 || !strings.Contains(got[0], "spf=fail smtp.mailfrom=mallory@good.test") {
					t.Errorf("postmaster's copy does not say what vouch found: %q", got)
				}
			})

			t.Run("forged Authentication-Results removed", func(t *testing.T) {
				s := dial(t, m, good, "mail.good.test")
				s.accepted("MAIL", s.c.MailFrom("alice@good.test"))
				s.accepted("RCPT", s.c.RcptTo("forged@"+dom))
				msg := []byte("Authentication-Results: " + strings.ToUpper(id) + "; spf=pass smtp.mailfrom=paypal.com\r\n" +
					"Authentication-Results: elsewhere.example; dkim=pass header.d=good.test\r\n" +
					"From: <alice@good.test>\r\nTo: <forged@" + dom + ">\r\nSubject: forged\r\n\r\nbody\r\n")
				s.data(msg)
				s.c.Quit()
				delivered := m.Mailbox(t, "forged", 1, time.Minute)[0]
				var ars []string
				for _, f := range delivered.Fields {
					if strings.EqualFold(f.Name, "Authentication-Results") {
						ars = append(ars, f.Value)
					}
				}
				if len(ars) != 2 || !strings.HasPrefix(strings.Join(strings.Fields(ars[0]), " "), id+"; iprev=pass") || ars[1] != "elsewhere.example; dkim=pass header.d=good.test" {
					t.Errorf("Authentication-Results fields %q: want ours and elsewhere.example's, not the forged one", ars)
				}
				if strings.Contains(string(delivered.Raw), "paypal.com") {
					t.Errorf("forged field delivered:\n%s", delivered.Raw)
				}
			})

			t.Run("vouch stopped: the MTA's default action", func(t *testing.T) {
				v.stop(t)
				s := dial(t, m, good, "mail.good.test")
				want := map[string]string{
					"postfix":  "451 4.7.1 Service unavailable - try again later",
					"sendmail": "451 4.3.2 Please try again later",
				}[name]
				s.mail("alice@good.test", want)
				s.c.Quit()
			})
		})
	}
}
