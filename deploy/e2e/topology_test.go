package e2e

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/deploy/e2e/mta"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/policy"
)

// backupMX is the backup MX's address as the primary sees it: its
// smtp client binds to it when relaying.
var backupMX = netip.MustParseAddr("127.0.0.50")

// TestBackupMXRelaysToPrimary: two real Postfix instances. The backup MX
// (no milter) accepts mail for the primary's domain and relays it to the
// primary, which runs vouch with the backup as a trusted relay. vouch
// judges each relayed message by the original client the backup named in
// its Received field, at end of headers; mail sent straight to the
// primary is judged as before.
func TestBackupMXRelaysToPrimary(t *testing.T) {
	t.Parallel()
	v := startVouchZone(t, zone, func(c *config.Config) {
		c.Policy.TrustedRelays = []netip.Prefix{netip.PrefixFrom(backupMX, 32)}
	})
	primary := mta.StartPostfix(t, mta.Options{MilterAddr: v.addr, Domain: "vouch.test", Hostname: "mx1.vouch.test"})
	_, port, _ := net.SplitHostPort(primary.SMTPAddr())
	backup := mta.StartPostfix(t, mta.Options{Domain: "backup.test", Hostname: "mx2.vouch.test", PostfixMain: map[string]string{
		"relay_domains":     "vouch.test",
		"transport_maps":    "inline:{vouch.test=smtp:[127.0.0.1]:" + port + "}",
		"smtp_bind_address": backupMX.String(),
		"smtp_helo_name":    "mx2.vouch.test",
		// The harness defers smtp so that nothing leaves an instance;
		// the backup's smtp client is the relay under test.
		"defer_transports": "relay",
		// Retry soon: a tempfail from the primary is not what is tested.
		"minimal_backoff_time": "1s", "queue_run_delay": "1s",
	}})
	id := primary.Hostname()

	t.Run("forged sender refused after DATA, original client in the log", func(t *testing.T) {
		s := dial(t, backup, other, "mail.other.test")
		s.mail(forged, "250 2.1.0 Ok")
		s.rcpt("user@vouch.test", "250 2.1.5 Ok")
		s.data(mta.SimpleMessage(forged, "user@vouch.test", "relayed forgery", "hello"))
		s.c.Quit()
		// The backup accepted it; the primary refuses it when the
		// backup passes it on, with vouch's reply.
		waitFor(t, "the backup to be refused with 550 5.7.23", func() bool {
			return strings.Contains(backup.Log(), "said: 550 5.7.23 SPF: 127.0.2.13 is not allowed to send mail from good.test")
		})
		if log := v.logs.String(); !strings.Contains(log, "stage=eoh action=reject") || !strings.Contains(log, "relay=127.0.0.50 origin_ip=127.0.2.13") {
			t.Errorf("vouch's decision line does not name the original client:\n%s", log)
		}
	})
	t.Run("legitimate sender delivered with the original client's results", func(t *testing.T) {
		s := dial(t, backup, good, "mail.good.test")
		s.mail("alice@good.test", "250 2.1.0 Ok")
		s.rcpt("friend@vouch.test", "250 2.1.5 Ok")
		s.data(mta.SimpleMessage("alice@good.test", "friend@vouch.test", "relayed", "hello"))
		s.c.Quit()
		msg := primary.Mailbox(t, "friend", 1, time.Minute)[0]
		got := top(t, msg)
		want := "Authentication-Results: " + id + ";\n\tiprev=pass (HELO mail.good.test: match) policy.iprev=127.0.2.10;\n\tspf=pass smtp.mailfrom=alice@good.test;\n\tspf=pass smtp.helo=mail.good.test"
		if len(got) != 2 || got[0] != want || !strings.Contains(got[1], "client-ip=127.0.2.10;") {
			t.Errorf("fields above Received:\n%s\nwant first:\n%s", strings.Join(got, "\n"), want)
		}
	})
	t.Run("mail straight to the primary is judged as before", func(t *testing.T) {
		s := dial(t, primary, other, "mail.other.test")
		s.mail(forged, "250 2.1.0 Ok")
		s.rcpt("user@vouch.test", spfFail)
	})
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestForwardersAndDomainRules: the forwarder allowances and a
// per-sender-domain rule, through a real Postfix.
func TestForwardersAndDomainRules(t *testing.T) {
	t.Parallel()
	v := startVouchZone(t, zone, func(c *config.Config) {
		c.Policy.AllowSPFDomains = policy.Domains{"other.test"}
		c.Policy.Domains = map[string]policy.Table{
			"nospf.test": {policy.SPF: {"none": policy.DefaultRule(policy.SPF, "none", policy.Reject)}},
		}
	})
	p := mta.StartPostfix(t, mta.Options{MilterAddr: v.addr, Domain: "vouch.test"})

	t.Run("a forwarder that passes its own SPF record", func(t *testing.T) {
		// 127.0.2.13 forwards good.test's mail: good.test's SPF fails it,
		// other.test's (policy.allow_spf_domains) lists it.
		s := dial(t, p, other, "mail.other.test")
		s.mail("alice@good.test", "250 2.1.0 Ok")
		s.rcpt("user@vouch.test", "250 2.1.5 Ok")
		if !strings.Contains(v.logs.String(), "allowed=allowed_spf_domain") {
			t.Errorf("decision line lacks the allowance:\n%s", v.logs.String())
		}
	})
	t.Run("a recipient whose mail comes through forwarders", func(t *testing.T) {
		v2 := startVouchZone(t, zone, func(c *config.Config) { c.Policy.AllowRecipients = []string{"forwarded"} })
		p2 := mta.StartPostfix(t, mta.Options{MilterAddr: v2.addr, Domain: "vouch.test"})
		s := dial(t, p2, other, "mail.other.test")
		s.mail(forged, "250 2.1.0 Ok")
		s.rcpt("forwarded@vouch.test", "250 2.1.5 Ok")
		s.rcpt("user@vouch.test", spfFail)
	})
	t.Run("a stricter table for one sender domain", func(t *testing.T) {
		s := dial(t, p, good, "mail.good.test")
		s.mail("carol@nospf.test", "250 2.1.0 Ok")
		s.rcpt("user@vouch.test", "550 5.7.23 SPF: nospf.test publishes no SPF record")
		s.c.Rset()
		s.mail("alice@good.test", "250 2.1.0 Ok")
		s.rcpt("user@vouch.test", "250 2.1.5 Ok")
	})
}
