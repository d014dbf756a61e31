package milter_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/metrics"
)

// These benchmarks put a whole SMTP session through a real loopback milter
// connection, against vouch and against go-milter's own no-op milter on the
// same machine in the same run: the difference is vouch's cost, the rest is
// the protocol's (and the client's). cmd/vouch-bench measures the same
// under concurrent load.

// benchVouch serves vouch on loopback TCP over a dnstest server holding
// zone, loopback not trusted, logs formatted at info level and dropped.
func benchVouch(tb testing.TB, change ...func(*config.Config)) (addr string, d *dnstest.Server, reg *prometheus.Registry) {
	tb.Helper()
	d = dnstest.New(tb, zone)
	reg = prometheus.NewRegistry()
	m := metrics.New(reg, "bench")
	rc := checktest.Config(d.Addr, 5*time.Second)
	rc.Attempts = 2
	res := checktest.ResolverFor(tb, rc, m.DNSObserver())
	cfg := config.Default()
	cfg.Policy.TrustedNetworks = nil
	for _, ch := range change {
		ch(cfg)
	}
	srv, err := milter.NewServer(cfg, res, milter.Options{
		Logger:  slog.New(slog.NewTextHandler(discard{}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Metrics: m,
	})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
	})
	return ln.Addr().String(), d, reg
}

// cpuTime is the CPU time (user and system) this process has used. On a
// shared machine CPU per session is steadier than wall time per session,
// which other jobs stretch.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ioCalls counts this process's read and write system calls so far
// (/proc/self/io syscr and syscw), -1 when unknown.
func ioCalls() (reads, writes int) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1, -1
	}
	reads, writes = -1, -1
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			reads, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			writes, _ = strconv.Atoi(v)
		}
	}
	return reads, writes
}

// costs reports, per op, CPU time and read and write system calls (the
// client's, the server's and the in-process DNS server's, if it is asked).
func costs(b *testing.B) func() {
	cpu := cpuTime()
	r, w := ioCalls()
	return func() {
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		if r2, w2 := ioCalls(); r >= 0 && r2 >= 0 {
			b.ReportMetric(float64(r2-r)/float64(b.N), "reads/op")
			b.ReportMetric(float64(w2-w)/float64(b.N), "writes/op")
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// benchNoop serves go-milter's no-op milter with vouch's negotiation.
func benchNoop(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &gomilter.Server{
		NewMilter: func() gomilter.Milter { return gomilter.NoOpMilter{} },
		Actions:   gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine | gomilter.OptSetSymList,
		Protocol:  gomilter.OptNoBody,
	}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// benchSession is one SMTP session as Postfix drives it: connect, HELO,
// then per message MAIL, RCPT, eight header fields, end of message and
// Abort; then Quit.
type benchSession struct {
	ip, helo, from, rcpt string
}

var benchHeaders = [][2]string{
	{"Received", "from mail.good.test (mail.good.test [127.0.0.10]) by mx.vouch.test (Postfix) with ESMTPS id 4Q1xYz0abc; Mon, 3 Jun 2024 10:00:00 +0000"},
	{"From", "Alice <alice@good.test>"},
	{"To", "user@vouch.test"},
	{"Subject", "Quarterly report"},
	{"Date", "Mon, 3 Jun 2024 10:00:00 +0000"},
	{"Message-ID", "<20240603100000.1234@good.test>"},
	{"MIME-Version", "1.0"},
	{"Content-Type", "text/plain; charset=utf-8"},
}

func (s benchSession) run(client *gomilter.Client, n int) (gomilter.ActionCode, int, error) {
	return s.runMessages(client, n, 1)
}

// runMessages sends messages transactions in one session; it returns the
// answer that ended the last one (the reply at end of message, or a
// refusal before) and the number of fields inserted into it.
func (s benchSession) runMessages(client *gomilter.Client, n, messages int) (gomilter.ActionCode, int, error) {
	cs, err := client.Session()
	if err != nil {
		return 0, 0, err
	}
	defer cs.Close()
	if err := cs.Macros(gomilter.CodeConn, "j", "mx.vouch.test", "{daemon_name}", "smtpd", "_", "unknown ["+s.ip+"]"); err != nil {
		return 0, 0, err
	}
	for _, step := range []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return cs.Conn("["+s.ip+"]", family(s.ip), 40000, s.ip) },
		func() (*gomilter.Action, error) { return cs.Helo(s.helo) },
	} {
		act, err := step()
		if err != nil {
			return 0, 0, err
		}
		if act.Code != gomilter.ActContinue {
			return act.Code, 0, nil
		}
	}
	var code gomilter.ActionCode
	var fields int
	for m := range messages {
		if code, fields, err = s.transaction(cs, "Q"+strconv.Itoa(n)+"M"+strconv.Itoa(m)); err != nil {
			return 0, 0, err
		}
		if err := cs.Abort(); err != nil {
			return 0, 0, err
		}
	}
	return code, fields, nil
}

func (s benchSession) transaction(cs *gomilter.ClientSession, qid string) (gomilter.ActionCode, int, error) {
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) {
			if err := cs.Macros(gomilter.CodeMail, "i", qid, "{auth_type}", "", "{auth_authen}", "", "{mail_addr}", s.from); err != nil {
				return nil, err
			}
			return cs.Mail(s.from, nil)
		},
		func() (*gomilter.Action, error) {
			if err := cs.Macros(gomilter.CodeRcpt, "i", qid, "{rcpt_addr}", s.rcpt); err != nil {
				return nil, err
			}
			return cs.Rcpt(s.rcpt, nil)
		},
	}
	for _, h := range benchHeaders {
		steps = append(steps, func() (*gomilter.Action, error) { return cs.HeaderField(h[0], h[1]) })
	}
	steps = append(steps, cs.HeaderEnd)
	for _, step := range steps {
		act, err := step()
		if err != nil {
			return 0, 0, err
		}
		if act.Code != gomilter.ActContinue {
			return act.Code, 0, nil
		}
	}
	if err := cs.Macros(gomilter.CodeEOB, "i", qid); err != nil {
		return 0, 0, err
	}
	mods, act, err := cs.End()
	if err != nil {
		return 0, 0, err
	}
	return act.Code, len(mods), nil
}

func family(ip string) gomilter.ProtoFamily {
	if strings.Contains(ip, ":") {
		return gomilter.FamilyInet6
	}
	return gomilter.FamilyInet
}

var goodSession = benchSession{ip: "127.0.0.10", helo: "mail.good.test", from: "alice@good.test", rcpt: "user@vouch.test"}

func benchClient(addr string) *gomilter.Client {
	return gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
}

// BenchmarkSessionLoopback: one whole session per op over loopback TCP,
// warm cache, against vouch ("vouch") and go-milter's no-op milter
// ("noop"); "parallel" keeps 32 sessions in flight, as vouch-bench's
// headline run does. "vouch-checks-off" is vouch with every check and
// header off: its connection handling, policy, logs and metrics alone.
func BenchmarkSessionLoopback(b *testing.B) {
	vouchAddr, d, _ := benchVouch(b)
	bareAddr, _, _ := benchVouch(b, func(c *config.Config) {
		c.Checks.Iprev.Enabled, c.Checks.Helo.Enabled, c.Checks.SPF.Enabled = false, false, false
		c.Headers.AuthenticationResults, c.Headers.ReceivedSPF = false, false
	})
	targets := []struct {
		name   string
		addr   string
		want   gomilter.ActionCode
		fields int
	}{
		{"noop", benchNoop(b), gomilter.ActAccept, 0},
		{"vouch-checks-off", bareAddr, gomilter.ActContinue, 0},
		{"vouch", vouchAddr, gomilter.ActContinue, 2},
	}
	for _, t := range targets {
		client := benchClient(t.addr)
		check := func(code gomilter.ActionCode, fields int, err error) bool {
			if err != nil {
				b.Error(err)
				return false
			}
			if code != t.want || fields != t.fields {
				b.Errorf("%s: answer %c with %d fields, want %c with %d", t.name, code, fields, t.want, t.fields)
				return false
			}
			return true
		}
		if !check(goodSession.run(client, 0)) { // warms the cache
			b.FailNow()
		}
		queries := d.TotalQueries()
		b.Run(t.name, func(b *testing.B) {
			b.ReportAllocs()
			done := costs(b)
			n := 0
			for b.Loop() {
				n++
				if !check(goodSession.run(client, n)) {
					return
				}
			}
			done()
		})
		b.Run(t.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
			done := costs(b)
			b.RunParallel(func(pb *testing.PB) {
				n := 0
				for pb.Next() {
					n++
					if !check(goodSession.run(client, n)) {
						return
					}
				}
			})
			done()
		})
		if q := d.TotalQueries() - queries; q != 0 {
			b.Errorf("%s: %d upstream DNS queries with a warm cache", t.name, q)
		}
	}
}
