package milter

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/metrics"
)

func cachedCheckConn(t *testing.T) (*conn, *dnstest.Server, *metrics.Metrics) {
	t.Helper()
	d := dnstest.New(t, benchZone)
	m := metrics.New(prometheus.NewRegistry(), "test")
	cfg := checktest.Config(d.Addr, 5*time.Second)
	cfg.Attempts = 2
	res := checktest.ResolverFor(t, cfg, m.DNSObserver())
	c := config.Default()
	c.Policy.TrustedNetworks = nil
	srv, err := NewServer(c, res, Options{Logger: slog.New(slog.DiscardHandler), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &conn{srv: srv, gen: srv.gen.Load(), ctx: ctx, log: srv.log}, d, m
}

// A check whose answers are all cached is done when startCheck returns,
// with the result the background run gives; one that needs the network,
// or waits for a future not yet done, runs in the background.
func TestCachedCheckRunsAtOnce(t *testing.T) {
	c, d, m := cachedCheckConn(t)
	ip := net.ParseIP("192.0.2.10").To4()
	check := func(ctx context.Context, r dns.Lookuper) spf.Result {
		return spf.CheckMailFrom(ctx, r, ip, "mail.good.test", "alice@good.test", c.gen.cfg.Checks.SPF.Options)
	}
	// Cold: every name is delayed, so the check cannot be done yet.
	for _, n := range []string{"good.test", "_spf.good.test", "mail.good.test"} {
		d.SetFault(n, dnstest.Fault{Delay: 200 * time.Millisecond})
	}
	cold := startCheck(c, checkSPFMailFrom, check, spfVerdict, spfFailed(spf.MailFrom))
	if cold.ready() {
		t.Fatal("a check needing the network was done at once")
	}
	coldResult, ok := cold.wait(context.Background())
	if !ok || coldResult.Verdict != spf.Pass {
		t.Fatalf("cold: %+v", coldResult)
	}
	queries := d.TotalQueries()
	hits := testutil.ToFloat64(m.DNSCacheRequests.WithLabelValues("hit"))

	warm := startCheck(c, checkSPFMailFrom, check, spfVerdict, spfFailed(spf.MailFrom))
	if !warm.ready() {
		t.Fatal("a check answered from the cache was not done at once")
	}
	warmResult, _ := warm.wait(context.Background())
	if warmResult.Verdict != coldResult.Verdict || warmResult.Mechanism != coldResult.Mechanism ||
		warmResult.Domain != coldResult.Domain || warmResult.Problem != coldResult.Problem {
		t.Errorf("warm %+v, cold %+v", warmResult, coldResult)
	}
	if n := d.TotalQueries() - queries; n != 0 {
		t.Errorf("%d upstream queries for a cached check", n)
	}
	if h := testutil.ToFloat64(m.DNSCacheRequests.WithLabelValues("hit")) - hits; h < 3 {
		t.Errorf("%v cache hits counted for the cached check, want its lookups (3 or more)", h)
	}
	if n := testutil.ToFloat64(m.CheckResults.WithLabelValues("spf_mailfrom", "pass")); n != 2 {
		t.Errorf("spf_mailfrom pass counted %v times, want 2", n)
	}

	// A dependency not done yet: the check goes to the background even
	// with a warm cache, and waits there.
	pending := &future[iprev.Result]{done: make(chan struct{})}
	pending.started.Store(true)
	// It waits for the dependency, as the HELO check waits for iprev:
	// else it could be done before ready is asked.
	waits := func(ctx context.Context, r dns.Lookuper) spf.Result {
		pending.wait(ctx)
		return check(ctx, r)
	}
	waiting := startCheck(c, checkSPFMailFrom, waits, spfVerdict, spfFailed(spf.MailFrom), pending)
	if waiting.ready() {
		t.Fatal("a check with a pending dependency was run at once")
	}
	close(pending.done)
	if r, ok := waiting.wait(context.Background()); !ok || r.Verdict != spf.Pass {
		t.Errorf("after the dependency: %+v", r)
	}
}

// A check that panics is not run at once: the background run turns the
// panic into a temperror and counts it, as for any check.
func TestCachedCheckPanicGoesToBackground(t *testing.T) {
	c, _, m := cachedCheckConn(t)
	f := startCheck(c, checkIprev, func(context.Context, dns.Lookuper) iprev.Result { panic("boom") }, iprevVerdict, iprevFailed)
	r, ok := f.wait(context.Background())
	if !ok || r.Verdict != iprev.TempError {
		t.Fatalf("got %+v", r)
	}
	if n := testutil.ToFloat64(m.MilterErrors.WithLabelValues("panic")); n != 1 {
		t.Errorf("panics counted %v, want 1", n)
	}
}
