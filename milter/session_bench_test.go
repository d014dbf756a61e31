package milter

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/metrics"
)

const benchZone = `
$ORIGIN test.
@          SOA ns.test. hostmaster.test. 1 3600 600 86400 3600
mail.good  A    192.0.2.10
mail.good  TXT  "v=spf1 a -all"
good       TXT  "v=spf1 include:_spf.good.test -all"
_spf.good  TXT  "v=spf1 a:mail.good.test -all"
10.2.0.192.in-addr.arpa. PTR mail.good.test.
`

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkSessionDirect drives one session's callbacks, as go-milter
// would call them, with no connection: vouch's own cost per session with a
// warm cache (checks, futures, policy, logs, metrics and the two header
// fields), without the protocol's. The header fields are built as at end
// of message but not written: go-milter's Modifier cannot be built outside
// go-milter.
func BenchmarkSessionDirect(b *testing.B) {
	d := dnstest.New(b, benchZone)
	m := metrics.New(prometheus.NewRegistry(), "bench")
	cfg := checktest.Config(d.Addr, 5*time.Second)
	cfg.Attempts = 2
	res := checktest.ResolverFor(b, cfg, m.DNSObserver())
	c := config.Default()
	c.Policy.TrustedNetworks = nil
	srv, err := NewServer(c, res, Options{
		Logger:  slog.New(slog.NewTextHandler(discardWriter{}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Metrics: m,
	})
	if err != nil {
		b.Fatal(err)
	}
	ip := net.ParseIP("192.0.2.10").To4()
	mod := func(kv ...string) *gomilter.Modifier {
		macros := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			macros[kv[i]] = kv[i+1]
		}
		return &gomilter.Modifier{Macros: macros}
	}
	connM := mod("j", "mx.vouch.test", "{daemon_name}", "smtpd", "_", "unknown [192.0.2.10]")
	mailM := mod("i", "QID1", "{mail_addr}", "alice@good.test")
	rcptM := mod("i", "QID1", "{rcpt_addr}", "user@vouch.test")
	hdrM := mod()
	one := func() (int, error) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		id := srv.nextID.Add(1)
		c := &conn{srv: srv, gen: srv.gen.Load(), ctx: ctx, log: srv.log.With("conn", id)}
		sess := session{c}
		steps := []func() (gomilter.Response, error){
			func() (gomilter.Response, error) { return sess.Connect("[192.0.2.10]", "tcp4", 40000, ip, connM) },
			func() (gomilter.Response, error) { return sess.Helo("mail.good.test", hdrM) },
			func() (gomilter.Response, error) { return sess.MailFrom("alice@good.test", mailM) },
			func() (gomilter.Response, error) { return sess.RcptTo("user@vouch.test", rcptM) },
			func() (gomilter.Response, error) { return sess.Header("From", "Alice <alice@good.test>", hdrM) },
			func() (gomilter.Response, error) { return sess.Header("Subject", "Quarterly report", hdrM) },
			func() (gomilter.Response, error) { return sess.Headers(nil, hdrM) },
		}
		for _, step := range steps {
			r, err := step()
			if err != nil {
				return 0, err
			}
			if r != respContinue {
				b.Fatalf("answer %+v, want continue", r.Response())
			}
		}
		n := len(c.fields(c.tx.outcome))
		return n, sess.Abort(hdrM)
	}
	if n, err := one(); err != nil || n != 2 {
		b.Fatalf("warm-up: %d fields, %v", n, err)
	}
	queries := d.TotalQueries()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := one(); err != nil {
			b.Fatal(err)
		}
	}
	if q := d.TotalQueries() - queries; q != 0 {
		b.Fatalf("%d upstream DNS queries with a warm cache", q)
	}
}
