package milter_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter/answer"
	"github.com/vouch-mail/vouch/milter/policy"
)

func preset(name string) envOption {
	return func(s *setup) { s.cfg.Policy.Preset = name }
}

func hasHeader(t *testing.T, fields []string, name string, parts ...string) {
	t.Helper()
	for _, f := range fields {
		if !strings.HasPrefix(f, name+": ") {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(f, p) {
				t.Errorf("%s lacks %q:\n%s", name, p, f)
			}
		}
		return
	}
	t.Errorf("no %s field among %q", name, fields)
}

func TestStandardPreset(t *testing.T) {
	tests := []struct {
		name             string
		ip, helo, sender string
		rcpt             string // reply at RCPT
		headers          []string
	}{
		{"fcrdns and spf pass", "127.0.0.10", "mail.good.test", "alice@good.test", "continue",
			[]string{"iprev=pass", "policy.iprev=127.0.0.10", "spf=pass", "smtp.mailfrom=alice@good.test", "smtp.helo=mail.good.test"}},
		{"ipv6 client", "::10", "mail6.good.test", "alice@good.test", "continue",
			[]string{"iprev=pass", `policy.iprev="::10"`, "spf=pass"}},
		{"no ptr tempfails", "127.0.0.11", "mail.nospf.test", "alice@nospf.test",
			"450 4.7.25 Client address 127.0.0.11 has no reverse DNS (PTR) record", nil},
		{"unconfirmed ptr is recorded, not refused", "127.0.0.12", "liar.test", "bob@nospf.test", "continue",
			[]string{"iprev=fail", "spf=none"}},
		{"helo mismatch is recorded, not refused", "127.0.0.13", "mail.good.test", "carol@other.test", "continue",
			[]string{"iprev=pass", "spf=pass smtp.mailfrom=carol@other.test"}},
		{"spf fail rejects", "127.0.0.13", "mail.other.test", "mallory@good.test",
			"550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test", nil},
		{"null sender: the HELO identity decides", "127.0.0.10", "mail.good.test", "", "continue",
			[]string{"spf=pass", "smtp.helo=mail.good.test"}},
		{"null sender with a forged HELO", "127.0.0.13", "mail.good.test", "",
			"550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from mail.good.test", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.connect(tc.ip)
			m.helo(tc.helo, "continue")
			m.mail(tc.sender, "continue")
			m.rcpt("user@vouch.test", tc.rcpt)
			if tc.rcpt != "continue" {
				return
			}
			fields := inserted(m.data("Subject", "hi"))
			hasHeader(t, fields, "Authentication-Results", append([]string{"mx.vouch.test;"}, tc.headers...)...)
		})
	}
}

func TestSeveralMessagesKeepConnectionState(t *testing.T) {
	e := newEnv(t)
	m := e.connect("127.0.0.13")
	m.helo("mail.other.test", "continue")

	// 1: forged sender, rejected at RCPT.
	m.mail("mallory@good.test", "continue")
	m.rcpt("user@vouch.test", "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test")
	m.abort()

	// 2: a real sender on the same connection: the IP, HELO and iprev
	// result are still known, the SPF result is this sender's.
	m.mail("carol@other.test", "continue")
	m.rcpt("user@vouch.test", "continue")
	fields := inserted(m.data("Subject", "two"))
	hasHeader(t, fields, "Authentication-Results", "iprev=pass", "spf=pass smtp.mailfrom=carol@other.test", "smtp.helo=mail.other.test")
	for _, f := range fields {
		if strings.Contains(f, "good.test") {
			t.Errorf("message 2 carries message 1's sender: %s", f)
		}
	}
	m.abort()

	// 3: a bounce after an accepted message.
	m.mail("", "continue")
	m.rcpt("user@vouch.test", "continue")
	hasHeader(t, inserted(m.data()), "Received-SPF", "pass", "identity=helo")
	m.abort()

	if got := testutil.ToFloat64(e.metrics.Decisions.WithLabelValues("rcpt", "reject", "false")); got != 1 {
		t.Errorf("reject decisions %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.metrics.Decisions.WithLabelValues("rcpt", "accept", "false")); got != 2 {
		t.Errorf("accept decisions %v, want 2", got)
	}
	// iprev ran once for the whole connection.
	if got := testutil.ToFloat64(e.metrics.CheckResults.WithLabelValues("iprev", "pass")); got != 1 {
		t.Errorf("iprev checks %v, want 1 per connection", got)
	}
}

func TestExemptRecipientInSameTransaction(t *testing.T) {
	e := newEnv(t)
	m := e.connect("127.0.0.13")
	m.helo("mail.other.test", "continue")
	m.mail("mallory@good.test", "continue")
	m.rcpt("user@vouch.test", "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test")
	m.rcpt("Postmaster@vouch.test", "continue")
	m.rcpt("abuse@vouch.test", "continue")
	m.rcpt("other@vouch.test", "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test")
	// The postmaster still sees what vouch found.
	hasHeader(t, inserted(m.data()), "Authentication-Results", "spf=fail")
	if got := testutil.ToFloat64(e.metrics.ExemptRecipients); got != 2 {
		t.Errorf("exempt recipients %v, want 2", got)
	}
}

func TestTrustedAndAuthenticatedSkipChecks(t *testing.T) {
	trusted := func(s *setup) {
		s.cfg.Policy.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.13/32"), netip.MustParsePrefix("2001:db8::/32")}
	}
	t.Run("trusted network", func(t *testing.T) {
		e := newEnv(t, trusted)
		m := e.connect("127.0.0.13")
		m.helo("mail.good.test", "continue")
		m.mail("mallory@good.test", "continue")
		m.rcpt("user@vouch.test", "continue")
		if f := inserted(m.data()); len(f) != 0 {
			t.Errorf("trusted client's mail got headers %q", f)
		}
		if n := e.dns.TotalQueries(); n != 0 {
			t.Errorf("a trusted client cost %d DNS queries: %v", n, e.dns.QueryLog())
		}
	})
	t.Run("trusted ipv6 network", func(t *testing.T) {
		e := newEnv(t, trusted)
		m := e.connect("2001:db8::25")
		m.helo("whatever", "continue")
		m.mail("mallory@good.test", "continue")
		m.rcpt("user@vouch.test", "continue")
	})
	t.Run("authenticated", func(t *testing.T) {
		e := newEnv(t)
		m := e.connect("127.0.0.11") // no PTR: would tempfail
		m.helo("laptop", "continue")
		m.mail("alice@good.test", "continue", "{auth_authen}", "alice", "{auth_type}", "PLAIN")
		m.rcpt("user@vouch.test", "continue") // SPF would fail too
		if f := inserted(m.data()); len(f) != 0 {
			t.Errorf("authenticated client's mail got headers %q", f)
		}
		m.abort()
		// Authentication is per message: the next one without it is checked.
		m.mail("alice@nospf.test", "continue")
		m.rcpt("user@vouch.test", "450 4.7.25 Client address 127.0.0.11 has no reverse DNS (PTR) record")
	})
}

func TestClientStringsNeverReachReplyOrLogRaw(t *testing.T) {
	e := newEnv(t, preset("strict"))
	m := e.connect("127.0.0.13")
	evil := "evil\r\n250 2.0.0 Ok 100% \xff\x1b[31m" + strings.Repeat("x", 1000)
	m.helo(evil, "continue")
	m.mail("a%b\r\nX-Injected: 1@other.test", "continue")
	act := m.must(m.s.Rcpt("<user@vouch.test>", nil))
	if act.Code != gomilter.ActReplyCode || act.SMTPCode != 550 {
		t.Fatalf("got %q, want a 550 for HELO %q", answer.Text(act), evil)
	}
	text := act.SMTPText
	for i := 0; i < len(text); i++ {
		if c := text[i]; c < 0x20 || c > 0x7e {
			t.Fatalf("reply has byte %#x: %q", c, text)
		}
	}
	if strings.Contains(strings.ReplaceAll(text, "%%", ""), "%") {
		t.Errorf("lone %% in reply %q", text)
	}
	if len(text) > 512 {
		t.Errorf("reply is %d bytes", len(text))
	}
	logs := e.logs.String()
	for _, raw := range []string{"\r", "\n250", "\xff", "\x1b", "\nX-Injected"} {
		if strings.Contains(logs, raw) {
			t.Errorf("log contains raw %q", raw)
		}
	}
	if !strings.Contains(logs, `helo="evil%0D%0A250 2.0.0 Ok 100%25 %FF%1B[31mxxx`) {
		t.Errorf("log does not show the escaped HELO:\n%s", logs)
	}
}

func TestMalformedPacketClosesOnlyItsConnection(t *testing.T) {
	e := newEnv(t)
	good := e.connect("127.0.0.10")
	good.helo("mail.good.test", "continue")

	tests := []struct {
		name   string
		packet []byte
	}{
		{"unknown command", packet('Z', []byte("junk"))},
		{"truncated connect", packet('C', []byte("host"))},
		{"oversized length", []byte{0xff, 0xff, 0xff, 0xff, 'C'}},
		{"zero length", []byte{0, 0, 0, 0}},
		{"empty macro", packet('D', nil)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", e.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(packet('O', make([]byte, 12))); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(tc.packet); err != nil {
				t.Fatal(err)
			}
			// Negotiation reply first, then the server hangs up (a reset
			// when it leaves unread bytes behind), never a hang.
			_, err = io.ReadAll(c)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("connection not closed: %v", err)
			}
		})
	}
	// The well-behaved connection carries on.
	good.mail("alice@good.test", "continue")
	good.rcpt("user@vouch.test", "continue")
	hasHeader(t, inserted(good.data()), "Authentication-Results", "iprev=pass")
	if got := testutil.ToFloat64(e.metrics.SessionsTotal); got != float64(1+len(tests)) {
		t.Errorf("sessions %v", got)
	}
}

func packet(code byte, data []byte) []byte {
	p := make([]byte, 5, 5+len(data))
	binary.BigEndian.PutUint32(p, uint32(1+len(data)))
	p[4] = code
	return append(p, data...)
}

func TestUnixSocket(t *testing.T) {
	e := newEnvOn(t, "unix")
	m := e.connect("127.0.0.10")
	m.helo("mail.good.test", "continue")
	m.mail("alice@good.test", "continue")
	m.rcpt("user@vouch.test", "continue")
	hasHeader(t, inserted(m.data()), "Authentication-Results", "iprev=pass", "spf=pass")
}

func TestDecisionStages(t *testing.T) {
	at := func(stage policy.Stage) envOption {
		return func(s *setup) { s.cfg.Policy.DecideAt = stage }
	}
	t.Run("helo", func(t *testing.T) {
		e := newEnv(t, preset("strict"), at(policy.StageHelo))
		m := e.connect("127.0.0.13")
		// HELO mismatch, and mail.good.test's SPF does not list the client.
		want := "550 5.7.26 Multiple authentication checks failed: helo, spf_helo"
		m.helo("mail.good.test", want)
		// Clients that carry on are refused again at MAIL.
		m.mail("carol@other.test", want)
	})
	t.Run("mail", func(t *testing.T) {
		e := newEnv(t, at(policy.StageMail))
		m := e.connect("127.0.0.13")
		m.helo("mail.other.test", "continue")
		m.mail("mallory@good.test", "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test")
		m.abort()
		m.mail("carol@other.test", "continue")
		m.rcpt("user@vouch.test", "continue")
	})
	// Each transaction is decided, logged and counted once: an accepted
	// HELO is decided at MAIL only; a refusal at HELO is the decision.
	t.Run("helo decides once", func(t *testing.T) {
		e := newEnv(t, at(policy.StageHelo))
		m := e.connect("127.0.0.10")
		m.helo("mail.good.test", "continue")
		m.mail("alice@good.test", "continue")
		m.rcpt("user@vouch.test", "continue")
		m.data()
		decisions := func() map[string]float64 {
			got := map[string]float64{}
			for _, st := range policy.Stages {
				for _, a := range policy.Actions {
					if n := testutil.ToFloat64(e.metrics.Decisions.WithLabelValues(string(st), a.String(), "false")); n != 0 {
						got[string(st)+" "+a.String()] = n
					}
				}
			}
			return got
		}
		if got := decisions(); len(got) != 1 || got["mail accept"] != 1 {
			t.Errorf("decisions %v, want one: mail accept", got)
		}
		if n := strings.Count(e.logs.String(), "msg=decision"); n != 1 {
			t.Errorf("%d decision lines, want 1:\n%s", n, e.logs.String())
		}

		e2 := newEnv(t, preset("strict"), at(policy.StageHelo))
		m2 := e2.connect("127.0.0.13")
		m2.helo("mail.good.test", "550 5.7.26 Multiple authentication checks failed: helo, spf_helo")
		m2.mail("carol@other.test", "550 5.7.26 Multiple authentication checks failed: helo, spf_helo")
		if n := testutil.ToFloat64(e2.metrics.Decisions.WithLabelValues("helo", "reject", "false")); n != 1 {
			t.Errorf("helo reject counted %v times, want 1", n)
		}
		if n := testutil.ToFloat64(e2.metrics.Decisions.WithLabelValues("mail", "reject", "false")); n != 0 {
			t.Errorf("mail reject counted %v times, want 0", n)
		}
	})
}

func TestDryRun(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.cfg.Policy.DryRun = []policy.Check{policy.SPF} })
	m := e.connect("127.0.0.13")
	m.helo("mail.other.test", "continue")
	m.mail("mallory@good.test", "continue")
	m.rcpt("user@vouch.test", "continue")
	hasHeader(t, inserted(m.data()), "Authentication-Results", "spf=fail")
	if got := testutil.ToFloat64(e.metrics.Decisions.WithLabelValues("rcpt", "accept", "true")); got != 1 {
		t.Errorf("dry-run decisions %v, want 1", got)
	}
	if !strings.Contains(e.logs.String(), "dry_run_would=reject") {
		t.Errorf("log does not say what dry-run would have done:\n%s", e.logs.String())
	}
}

func TestQuarantine(t *testing.T) {
	e := newEnv(t, preset("strict"))
	m := e.connect("127.0.0.10")
	m.helo("mail.good.test", "continue")
	m.mail("x@soft.test", "continue")
	m.rcpt("user@vouch.test", "continue")
	mods := m.data()
	found := false
	for _, a := range mods {
		if a.Code == gomilter.ActQuarantine {
			found = true
			if !strings.Contains(a.Reason, "spf=softfail") {
				t.Errorf("quarantine reason %q", a.Reason)
			}
		}
	}
	if !found {
		t.Errorf("softfail under strict was not quarantined: %+v", mods)
	}
}

func TestForgedAuthenticationResultsRemoved(t *testing.T) {
	e := newEnv(t)
	m := e.connect("127.0.0.10")
	m.helo("mail.good.test", "continue")
	m.mail("alice@good.test", "continue")
	m.rcpt("user@vouch.test", "continue")
	mods := m.data(
		"Authentication-Results", "other.example; spf=pass smtp.mailfrom=good.test",
		"Authentication-Results", "MX.VOUCH.TEST; spf=pass smtp.mailfrom=paypal.com",
		"Subject", "forged",
		"Authentication-Results", "mx.vouch.test; iprev=pass",
	)
	var removed []uint32
	for _, a := range mods {
		if a.Code == gomilter.ActChangeHeader {
			if a.HeaderName != "Authentication-Results" || a.HeaderValue != "" {
				t.Errorf("unexpected change %+v", a)
			}
			removed = append(removed, a.HeaderIndex)
		}
	}
	if len(removed) != 2 || removed[0] != 3 || removed[1] != 2 {
		t.Errorf("removed Authentication-Results indices %v, want [3 2] (ours, highest first)", removed)
	}
	if got := testutil.ToFloat64(e.metrics.ForgedRemoved); got != 2 {
		t.Errorf("forged removed %v", got)
	}
}

// panicResolver is a fake, named as such: a check that panics cannot be
// produced with real DNS.
type panicResolver struct{}

func (panicResolver) LookupAddr(context.Context, string) ([]string, error) { panic("fault injected") }
func (panicResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	panic("fault injected")
}
func (panicResolver) LookupTXT(context.Context, string) ([]string, error) { panic("fault injected") }
func (panicResolver) LookupMX(context.Context, string) ([]*net.MX, error) { panic("fault injected") }
func (panicResolver) CacheOnly() *dns.CacheView                           { return nil }

func TestPanickingCheckTempfails(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.resolver = panicResolver{} })
	m := e.connect("127.0.0.10")
	m.helo("mail.good.test", "continue")
	m.mail("alice@good.test", "continue")
	m.rcpt("user@vouch.test", "451 4.7.25 Temporary DNS failure verifying reverse DNS of 127.0.0.10")
	if !strings.Contains(e.logs.String(), "internal error in check") {
		t.Errorf("panic not logged")
	}
	// The daemon is alive and serves the next connection.
	m2 := e.connect("127.0.0.10")
	m2.helo("mail.good.test", "continue")
}

func TestOverload(t *testing.T) {
	for _, action := range []string{"tempfail", "accept"} {
		t.Run(action, func(t *testing.T) {
			e := newEnv(t, func(s *setup) {
				s.cfg.Milter.MaxConnections = 1
				s.cfg.Milter.OverloadAction, _ = policy.ParseAction(action)
			})
			first := e.connect("127.0.0.10")
			second := e.connect("")
			act := second.must(second.s.Conn("[127.0.0.11]", gomilter.FamilyInet, 1, "127.0.0.11"))
			if got := answer.Text(act); got != action {
				t.Errorf("connection past the cap got %q, want %q", got, action)
			}
			if got := testutil.ToFloat64(e.metrics.SessionsRefused.WithLabelValues("overload")); got != 1 {
				t.Errorf("refused %v", got)
			}
			first.helo("mail.good.test", "continue")
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.cfg.Milter.IdleTimeout = 200 * time.Millisecond })
	m := e.connect("127.0.0.10")
	time.Sleep(400 * time.Millisecond)
	if _, err := m.s.Helo("mail.good.test"); err == nil {
		t.Fatal("idle connection still open")
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(e.metrics.MilterErrors.WithLabelValues("timeout")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("idle timeout not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShutdownDrainsOpenSessions(t *testing.T) {
	e := newEnv(t)
	m := e.connect("127.0.0.10")
	m.helo("mail.good.test", "continue")

	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(context.Background()) }()
	// New connections are no longer accepted...
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", e.addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections after Shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// ...but the open session finishes its message.
	m.mail("alice@good.test", "continue")
	m.rcpt("user@vouch.test", "continue")
	hasHeader(t, inserted(m.data()), "Authentication-Results", "iprev=pass")
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a session open", err)
	default:
	}
	m.s.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the last session closed")
	}
}

func TestShutdownTimeoutClosesSessions(t *testing.T) {
	e := newEnv(t)
	m := e.connect("127.0.0.10")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	if _, err := m.s.Helo("mail.good.test"); err == nil {
		t.Fatal("session still open after the shutdown timeout")
	}
}

func TestDecisionLogLine(t *testing.T) {
	e := newEnv(t)
	m := e.connect("127.0.0.13")
	m.helo("mail.other.test", "continue")
	m.mail("mallory@good.test", "continue", "i", "4XyZ")
	m.rcpt("user@vouch.test", "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test")
	var line string
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, "msg=decision") {
			line = l
		}
	}
	for _, want := range []string{"client_ip=127.0.0.13", "stage=rcpt", "action=reject", "queue_id=4XyZ",
		"sender=mallory@good.test", "helo=mail.other.test", "iprev=pass", "helo_result=match", "spf=fail",
		`reply="550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test"`, "duration="} {
		if !strings.Contains(line, want) {
			t.Errorf("decision line lacks %s:\n%s", want, line)
		}
	}
}

// A check cut short because the MTA hung up is not a result: counted as
// temperror it would raise DNS alerts for every scanner that disconnects.
func TestAbandonedChecksAreNotCounted(t *testing.T) {
	e := newEnv(t)
	e.dns.SetFault(dnstest.ReverseName("127.0.0.10"), dnstest.Fault{Delay: 300 * time.Millisecond})
	m := e.connect("127.0.0.10")
	m.s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(e.metrics.SessionsActive) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("session did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // past the delayed answer
	if n := testutil.CollectAndCount(e.metrics.CheckResults); n != 0 {
		t.Errorf("%d check results counted for a session that hung up before they came", n)
	}
}

// Every check_results series vouch writes has a result label from the
// checks' own vocabularies.
func TestCheckResultLabelsFromVocabulary(t *testing.T) {
	e := newEnv(t)
	for _, ip := range []string{"127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13"} {
		m := e.connect(ip)
		m.helo("mail.good.test", "continue")
		m.mail("x@good.test", "continue")
		m.s.Rcpt("<user@vouch.test>", nil)
		m.abort()
	}
	known := map[string]bool{}
	for _, rs := range policy.Results {
		for _, r := range rs {
			known[string(r)] = true
		}
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, mf := range mfs {
		if mf.GetName() != "vouch_check_results_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					seen++
					if !known[l.GetValue()] {
						t.Errorf("result label %q is not a check's verdict", l.GetValue())
					}
				}
			}
		}
	}
	if seen < 4 {
		t.Errorf("%d check result series, want several", seen)
	}
}
