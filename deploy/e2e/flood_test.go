package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/deploy/e2e/mta"
)

// TestEhloAndMailFloodThroughPostfix: a remote SMTP client that sends
// EHLO after EHLO with new names, then MAIL FROM/RSET with new domains,
// all slow to resolve, makes vouch send no more DNS queries than the names
// finally in force need plus a small bound (issue 14: 370 before), and
// the message that follows is still checked right.
func TestEhloAndMailFloodThroughPostfix(t *testing.T) {
	const ehlos, mails = 60, 35 // under smtpd_junk_command_limit (100), which counts EHLO and RSET
	v := startVouch(t)
	m := mta.Start(t, "postfix", mta.Options{MilterAddr: v.addr})
	for i := range ehlos {
		v.dns.SetFault(fmt.Sprintf("h%d.flood.test", i), dnstest.Fault{Delay: 2 * time.Second})
	}
	for i := range mails {
		v.dns.SetFault(fmt.Sprintf("d%d.flood.test", i), dnstest.Fault{Delay: 2 * time.Second})
	}
	q0 := v.dns.TotalQueries()
	s := dial(t, m, good, "h0.flood.test")
	for i := 1; i < ehlos; i++ {
		if r := s.c.Ehlo(fmt.Sprintf("h%d.flood.test", i)); r.Code != 250 {
			t.Fatalf("EHLO %d: %s", i, r)
		}
	}
	if r := s.c.Ehlo("mail.good.test"); r.Code != 250 {
		t.Fatalf("EHLO: %s", r)
	}
	for i := range mails {
		s.accepted("MAIL", s.c.MailFrom(fmt.Sprintf("a@d%d.flood.test", i)))
		s.accepted("RSET", s.c.Rset())
	}
	dom := m.Domain()
	s.accepted("MAIL", s.c.MailFrom("alice@good.test"))
	s.accepted("RCPT", s.c.RcptTo("flood@"+dom))
	s.data(mta.SimpleMessage("alice@good.test", "flood@"+dom, "after a flood", "hello"))
	s.c.Quit()
	msg := m.Mailbox(t, "flood", 1, time.Minute)[0]
	id := m.Hostname()
	if got, want := msg.Get("Authentication-Results"), id+";\tiprev=pass (HELO mail.good.test: match) policy.iprev=127.0.2.10;\tspf=pass smtp.mailfrom=alice@good.test;\tspf=pass smtp.helo=mail.good.test"; got != want {
		t.Errorf("Authentication-Results %q, want %q", got, want)
	}
	// The flood's lookups end within the resolver's budget (2 × 1 s × 2).
	time.Sleep(5 * time.Second)
	// The names in force: PTR, the PTR name's A and AAAA, the HELO's
	// A, AAAA and TXT, good.test's TXT. The bound: the checks one
	// connection may have in flight (8), up to 3 lookups each, each
	// tried twice (the resolver's attempts; the flood's answers come
	// after its 1 s timeout).
	const inForce, bound = 7, 8 * 3 * 2
	if q := v.dns.TotalQueries() - q0; q > inForce+bound {
		t.Errorf("%d DNS queries for %d EHLOs and %d MAIL/RSET, want at most %d", q, ehlos, mails, inForce+bound)
	} else {
		t.Logf("%d DNS queries for %d EHLOs and %d MAIL/RSET", q, ehlos, mails)
	}
}
