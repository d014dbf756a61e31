package milter_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/answer"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/metrics"
	"github.com/vouch-mail/vouch/milter/policy"
)

var (
	soakFlag     = flag.Bool("soak", false, "run the soak test (also: VOUCH_SOAK=1)")
	soakSessions = flag.Int("soak.sessions", 1000, "concurrent SMTP sessions in the soak test")
	soakDuration = flag.Duration("soak.duration", 60*time.Second, "how long the soak test runs")
)

// soakScenario is one kind of SMTP session of the soak, with the answers
// vouch must give it under the standard preset.
type soakScenario struct {
	ip, helo, sender string
	rcpt             string // the RCPT reply
	header           string // in Authentication-Results, when accepted
}

var soakScenarios = []soakScenario{
	{"127.0.0.10", "mail.good.test", "alice@good.test", "continue", "spf=pass smtp.mailfrom=alice@good.test"},
	{"::10", "mail6.good.test", "alice@good.test", "continue", "iprev=pass"},
	{"127.0.0.12", "liar.test", "bob@nospf.test", "continue", "iprev=fail"},
	{"127.0.0.13", "mail.other.test", "mallory@good.test", "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test", ""},
	{"127.0.0.11", "mail.nospf.test", "a@nospf.test", "450 4.7.25 Client address 127.0.0.11 has no reverse DNS (PTR) record", ""},
	{"127.0.0.10", "mail.good.test", "", "continue", "smtp.helo=mail.good.test"},
}

// resources is what a leak would show in.
type resources struct {
	goroutines, fds int
	heapInuse, rss  uint64
}

func measure() resources {
	runtime.GC()
	runtime.GC() // the second collects what the first's finalizers freed
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return resources{runtime.NumGoroutine(), countFDs(), ms.HeapInuse, rss()}
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// rss is the resident set size from /proc/self/status, in bytes.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// TestSoak keeps -soak.sessions SMTP sessions (1,000) going against one
// vouch server for -soak.duration (60 s), each session one to three
// messages from one of the scenarios, every answer checked. Then, once
// the clients are gone: zero protocol errors, and goroutines, file
// descriptors and heap back to their idle level. Opt-in: go test -run
// Soak -soak ./milter (or VOUCH_SOAK=1).
func TestSoak(t *testing.T) {
	if !*soakFlag && os.Getenv("VOUCH_SOAK") != "1" {
		t.Skip("soak test: run with -soak or VOUCH_SOAK=1")
	}
	dnsSrv := dnstest.New(t, zone)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, "soak")
	rc := dns.DefaultConfig()
	rc.Servers = []string{dnsSrv.Addr}
	res := checktest.ResolverFor(t, rc, m.DNSObserver())
	cfg := config.Default()
	cfg.Policy.TrustedNetworks = nil
	// The daemon's defaults, but for the cap, which must not be what
	// limits a soak of this size.
	cfg.Milter.MaxConnections = 2 * *soakSessions
	srv, err := milter.NewServer(cfg, res, milter.Options{
		Logger:  slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	addr := ln.Addr().String()

	// Warm up: one session of each scenario, so the idle level includes
	// what is built once (DNS cache entries, metric series).
	for i := range soakScenarios {
		if err := soakSession(addr, i, 1, nil); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	idle := measure()

	var (
		sessions, messages, errs atomic.Int64
		errMu                    sync.Mutex
		firstErrs                []string
		latMu                    sync.Mutex
		lat                      []time.Duration
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *soakSessions; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := w; ; i++ {
				select {
				case <-stop:
					latMu.Lock()
					lat = append(lat, mine...)
					latMu.Unlock()
					return
				default:
				}
				n := 1 + i%3
				if err := soakSession(addr, i%len(soakScenarios), n, &mine); err != nil {
					errs.Add(1)
					errMu.Lock()
					if len(firstErrs) < 10 {
						firstErrs = append(firstErrs, err.Error())
					}
					errMu.Unlock()
				}
				sessions.Add(1)
				messages.Add(int64(n))
			}
		}()
	}

	// Sample the peak while the load runs.
	var peak resources
	tick := time.NewTicker(time.Second)
	end := time.After(*soakDuration)
	var active []int
sampling:
	for {
		select {
		case <-tick.C:
			peak.goroutines = max(peak.goroutines, runtime.NumGoroutine())
			peak.fds = max(peak.fds, countFDs())
			peak.rss = max(peak.rss, rss())
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak.heapInuse = max(peak.heapInuse, ms.HeapInuse)
			active = append(active, srv.Active())
		case <-end:
			break sampling
		}
	}
	tick.Stop()
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	// The server side ends each session when its client hangs up; lookups
	// still in flight end within the resolver's budget.
	var after resources
	settleBy := time.Now().Add(30 * time.Second)
	for {
		after = measure()
		if srv.Active() == 0 && after.goroutines <= idle.goroutines && after.fds <= idle.fds {
			break
		}
		if time.Now().After(settleBy) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	t.Logf("soak: %d concurrent sessions for %v: %d sessions, %d messages (%.0f sessions/s, %.0f messages/s), %d errors",
		*soakSessions, elapsed.Round(time.Millisecond), sessions.Load(), messages.Load(),
		float64(sessions.Load())/elapsed.Seconds(), float64(messages.Load())/elapsed.Seconds(), errs.Load())
	t.Logf("soak: RCPT answered in p50 %v, p99 %v, p99.9 %v, max %v (client side, loopback, 2 processes' worth of work on this machine)",
		pct(0.5), pct(0.99), pct(0.999), pct(1))
	t.Logf("soak: milter connections open, sampled each second: min %d max %d", slices.Min(active), slices.Max(active))
	t.Logf("soak: goroutines idle %d, peak %d, after %d", idle.goroutines, peak.goroutines, after.goroutines)
	t.Logf("soak: file descriptors idle %d, peak %d, after %d", idle.fds, peak.fds, after.fds)
	t.Logf("soak: heap in use idle %s, peak %s, after %s", mib(idle.heapInuse), mib(peak.heapInuse), mib(after.heapInuse))
	t.Logf("soak: RSS idle %s, peak %s, after %s (after debug.FreeOSMemory)", mib(idle.rss), mib(peak.rss), mib(after.rss))
	for _, kind := range []string{"protocol", "panic", "timeout"} {
		if n := testutil.ToFloat64(m.MilterErrors.WithLabelValues(kind)); n != 0 {
			t.Errorf("%v milter errors of kind %s", n, kind)
		}
	}
	if n := testutil.ToFloat64(m.SessionsRefused.WithLabelValues("overload")); n != 0 {
		t.Errorf("%v sessions refused for overload", n)
	}

	if errs.Load() != 0 {
		t.Errorf("%d sessions failed; first: %s", errs.Load(), strings.Join(firstErrs, "\n"))
	}
	if srv.Active() != 0 {
		t.Errorf("%d milter connections still open", srv.Active())
	}
	// Exact for goroutines and descriptors: each is one session's or one
	// lookup's, and all of them have ended.
	if after.goroutines > idle.goroutines {
		t.Errorf("goroutines: %d after, %d idle", after.goroutines, idle.goroutines)
	}
	if after.fds > idle.fds {
		t.Errorf("file descriptors: %d after, %d idle", after.fds, idle.fds)
	}
	// The heap keeps what is bounded and built on demand: DNS cache
	// entries (a handful of names here), metric series, the runtime's
	// own structures sized for the peak (e.g. the goroutine free list).
	// 8 MiB is far below what one leaked object per session or message
	// would add over this many sessions.
	if after.heapInuse > idle.heapInuse+8<<20 {
		t.Errorf("heap in use: %s after, %s idle", mib(after.heapInuse), mib(idle.heapInuse))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	<-served
}

// soakSession runs one SMTP session of scenario sc with n messages and
// checks every answer. It appends the RCPT latencies to lat.
func soakSession(addr string, sc, n int, lat *[]time.Duration) error {
	x := soakScenarios[sc]
	cl := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := cl.Session()
	if err != nil {
		return fmt.Errorf("negotiate: %w", err)
	}
	defer s.Close()
	expect := func(stage string, a *gomilter.Action, err error, want string) error {
		if err != nil {
			return fmt.Errorf("%s %s: %w", x.ip, stage, err)
		}
		if got := answer.Text(a); got != want {
			return fmt.Errorf("%s %s: got %q, want %q", x.ip, stage, got, want)
		}
		return nil
	}
	if err := s.Macros(gomilter.CodeConn, "j", "mx.vouch.test", "{daemon_name}", "smtpd", "_", "["+x.ip+"]"); err != nil {
		return err
	}
	fam := gomilter.FamilyInet
	if strings.Contains(x.ip, ":") {
		fam = gomilter.FamilyInet6
	}
	a, err := s.Conn("["+x.ip+"]", fam, 40000, x.ip)
	if err := expect("connect", a, err, "continue"); err != nil {
		return err
	}
	a, err = s.Helo(x.helo)
	if err := expect("helo", a, err, "continue"); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := s.Macros(gomilter.CodeMail, "i", "Q"+strconv.Itoa(i)); err != nil {
			return err
		}
		a, err = s.Mail("<"+x.sender+">", nil)
		if err := expect("mail", a, err, "continue"); err != nil {
			return err
		}
		t0 := time.Now()
		a, err = s.Rcpt("<user@vouch.test>", nil)
		if lat != nil {
			*lat = append(*lat, time.Since(t0))
		}
		if err := expect("rcpt", a, err, x.rcpt); err != nil {
			return err
		}
		if x.rcpt == "continue" {
			if a, err := s.HeaderField("Subject", "soak"); err != nil || a.Code != gomilter.ActContinue {
				return fmt.Errorf("%s header: %v %v", x.ip, a, err)
			}
			mods, a, err := s.End()
			if err := expect("end of message", a, err, "continue"); err != nil {
				return err
			}
			ar := ""
			for _, m := range mods {
				if m.Code == gomilter.ActInsertHeader && m.HeaderName == "Authentication-Results" {
					ar = m.HeaderValue
				}
			}
			if !strings.Contains(ar, x.header) {
				return fmt.Errorf("%s: Authentication-Results %q lacks %q", x.ip, ar, x.header)
			}
		}
		if err := s.Abort(); err != nil {
			return fmt.Errorf("%s abort: %w", x.ip, err)
		}
	}
	return nil
}

// TestOverloadSessionsUnderTheCapKeepFullFunction: past MaxConnections,
// connections are counted and answered at connect without a single DNS
// query, while those under the cap carry on with every check and header;
// when connections close, new ones get full service again.
func TestOverloadSessionsUnderTheCapKeepFullFunction(t *testing.T) {
	e := newEnv(t, func(s *setup) {
		s.cfg.Milter.MaxConnections = 3
		s.cfg.Milter.OverloadAction = policy.TempFail
	})
	under := []*mta{e.connect("127.0.0.10"), e.connect("127.0.0.13"), e.connect("::10")}
	var over []*mta
	for i := 0; i < 4; i++ {
		m := e.connect("")
		act := m.must(m.s.Conn("[127.0.0.11]", gomilter.FamilyInet, 1, "127.0.0.11"))
		if got := answer.Text(act); got != "tempfail" {
			t.Fatalf("connection %d past the cap: got %q, want tempfail", i+1, got)
		}
		over = append(over, m)
	}
	if got := testutil.ToFloat64(e.metrics.SessionsRefused.WithLabelValues("overload")); got != 4 {
		t.Errorf("refused for overload: %v, want 4", got)
	}
	if got := testutil.ToFloat64(e.metrics.SessionsActive); got != 7 {
		t.Errorf("active sessions gauge %v, want 7 (the refused are open until the MTA hangs up)", got)
	}

	// The sessions under the cap: every check, every answer, the headers.
	under[0].helo("mail.good.test", "continue")
	under[0].mail("alice@good.test", "continue")
	under[0].rcpt("user@vouch.test", "continue")
	hasHeader(t, inserted(under[0].data("Subject", "1")), "Authentication-Results", "iprev=pass", "spf=pass")
	under[1].helo("mail.other.test", "continue")
	under[1].mail("mallory@good.test", "continue")
	under[1].rcpt("user@vouch.test", "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test")
	under[2].helo("mail6.good.test", "continue")
	under[2].mail("alice@good.test", "continue")
	under[2].rcpt("user@vouch.test", "continue")
	hasHeader(t, inserted(under[2].data()), "Authentication-Results", "iprev=pass", `policy.iprev="::10"`)

	// An MTA that goes on talking on a refused connection gets no checks.
	over[0].helo("mail.nospf.test", "continue")
	over[0].mail("a@nospf.test", "continue")
	over[0].rcpt("user@vouch.test", "continue")
	if n := e.dns.Queries(dnstest.ReverseName("127.0.0.11"), mdns.TypePTR) + e.dns.Queries("nospf.test", mdns.TypeTXT); n != 0 {
		t.Errorf("refused connections cost %d DNS queries", n)
	}

	// Hang-ups free the cap: the next connection is served in full.
	for _, m := range append(over, under[0]) {
		m.s.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.srv.Active() > 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still counted open", e.srv.Active())
		}
		time.Sleep(5 * time.Millisecond)
	}
	m := e.connect("127.0.0.11")
	m.helo("mail.nospf.test", "continue")
	m.mail("a@nospf.test", "continue")
	m.rcpt("user@vouch.test", "450 4.7.25 Client address 127.0.0.11 has no reverse DNS (PTR) record")
	if got := testutil.ToFloat64(e.metrics.SessionsRefused.WithLabelValues("overload")); got != 4 {
		t.Errorf("refused for overload: %v, want still 4", got)
	}
}
