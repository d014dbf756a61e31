package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/milter/socket"
)

// TestMain lets the test binary stand in for vouch-bench when a test
// makes it start a server child process ("serve ...").
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// bench runs the command line and returns its exit code and output.
func bench(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
	return v
}

func sameCounts(t *testing.T, got, want map[string]int) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("verdicts %v, want %v", got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("verdicts %v, want %v", got, want)
			return
		}
	}
}

// The mixed workload's nine sessions have known outcomes under the
// standard preset; two passes of two messages each must count each
// verdict exactly four times over.
func TestRunCountsVerdictsAgainstVouch(t *testing.T) {
	code, out, errOut := bench(t, "run", "-zone", "testdata/zone.txt", "-workload", "testdata/mixed.txt",
		"-n", "18", "-m", "2", "-c", "4", "-json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	r := decode[Report](t, out)
	if r.Sessions != 18 || r.Transactions != 36 || r.ProtocolErrors != 0 {
		t.Errorf("sessions %d, transactions %d, errors %d; want 18, 36, 0", r.Sessions, r.Transactions, r.ProtocolErrors)
	}
	sameCounts(t, r.Verdicts, map[string]int{
		"continue":   24, // pass x3, null sender, unconfirmed PTR, exempt recipient
		"550 5.7.23": 8,  // SPF fail x2
		"450 4.7.25": 4,  // no PTR
	})
	// Every transaction reached RCPT (vouch decides there).
	if r.Rcpt.N != 36 || r.Session.N != 18 {
		t.Errorf("latency samples: %d rcpt, %d sessions; want 36, 18", r.Rcpt.N, r.Session.N)
	}
	// The warm-up pass filled the cache: the run itself asked nothing.
	if r.DNSQueries != 0 {
		t.Errorf("%d DNS queries after the warm-up, want 0", r.DNSQueries)
	}
}

func TestRunWithoutWarmupCountsDNSQueries(t *testing.T) {
	code, out, errOut := bench(t, "run", "-zone", "testdata/zone.txt", "-workload", "testdata/mixed.txt",
		"-n", "9", "-c", "1", "-warmup", "0", "-json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	r := decode[Report](t, out)
	if r.DNSQueries <= 0 || r.DNSQueriesPerSession != float64(r.DNSQueries)/9 {
		t.Errorf("cold cache: %d queries, %.3f per session", r.DNSQueries, r.DNSQueriesPerSession)
	}
}

func TestRunBaseline(t *testing.T) {
	code, out, errOut := bench(t, "-baseline", "-workload", "testdata/mixed.txt", "-n", "20", "-c", "3", "-json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	r := decode[Report](t, out)
	sameCounts(t, r.Verdicts, map[string]int{"accept": 20})
	if r.Sessions != 20 || r.ProtocolErrors != 0 || r.DNSQueries != -1 {
		t.Errorf("sessions %d, errors %d, dns %d; want 20, 0, -1", r.Sessions, r.ProtocolErrors, r.DNSQueries)
	}
}

// -rate starts sessions on a schedule: 20 sessions at 200/s cannot end
// before the last is due, 95 ms after the first.
func TestRunAtFixedRate(t *testing.T) {
	code, out, errOut := bench(t, "-baseline", "-workload", "testdata/mixed.txt", "-n", "20", "-rate", "200", "-json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	r := decode[Report](t, out)
	if r.Sessions != 20 || r.Rate != 200 {
		t.Errorf("sessions %d at rate %v, want 20 at 200", r.Sessions, r.Rate)
	}
	if r.Seconds < 0.095 {
		t.Errorf("20 sessions at 200/s took %.3fs, less than the schedule allows", r.Seconds)
	}
}

func TestRunTextReport(t *testing.T) {
	code, out, errOut := bench(t, "run", "-zone", "testdata/zone.txt", "-workload", "testdata/mixed.txt", "-n", "9", "-c", "2")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"sessions      9 (", `verdicts      "continue": 6, "550 5.7.23": 2, "450 4.7.25": 1`,
		"0 protocol errors", "dns queries   0 (0.0000/session)", "rcpt ms       p50 "} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// A target that is not a milter: every session is a protocol error, the
// report says so and the exit status is 1.
func TestRunCountsProtocolErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("220 not a milter\r\n"))
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	code, out, _ := bench(t, "run", "-target", "inet:"+strconv.Itoa(port)+"@127.0.0.1", "-workload", "testdata/mixed.txt",
		"-n", "5", "-warmup", "0", "-json")
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	r := decode[Report](t, out)
	if r.ProtocolErrors != 5 || r.Sessions != 0 || len(r.ErrorSamples) == 0 {
		t.Errorf("errors %d, sessions %d, samples %v; want 5, 0, some", r.ProtocolErrors, r.Sessions, r.ErrorSamples)
	}
}

func TestCompare(t *testing.T) {
	code, out, errOut := bench(t, "compare", "-zone", "testdata/zone.txt", "-workload", "testdata/workload.txt",
		"-d", "150ms", "-rounds", "2", "-c", "4", "-json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	c := decode[Comparison](t, out)
	if len(c.Rounds) != 2 || !c.Rounds[0].BaselineFirst || c.Rounds[1].BaselineFirst {
		t.Fatalf("rounds %+v: want two, baseline first then vouch first", c.Rounds)
	}
	if c.Baseline.Sessions == 0 || c.Vouch.Sessions == 0 {
		t.Fatalf("no sessions: baseline %d, vouch %d", c.Baseline.Sessions, c.Vouch.Sessions)
	}
	sameCounts(t, c.Baseline.Verdicts, map[string]int{"accept": c.Baseline.Sessions})
	sameCounts(t, c.Vouch.Verdicts, map[string]int{"continue": c.Vouch.Sessions})
	if c.Vouch.Sessions != c.Rounds[0].Vouch.Sessions+c.Rounds[1].Vouch.Sessions {
		t.Errorf("pooled vouch sessions %d, rounds %d + %d", c.Vouch.Sessions, c.Rounds[0].Vouch.Sessions, c.Rounds[1].Vouch.Sessions)
	}
	want := c.Vouch.SessionsPerSec / c.Baseline.SessionsPerSec
	if c.ThroughputRatio != want || c.RatioMin > c.RatioMax {
		t.Errorf("ratio %v (rounds %v-%v), want %v", c.ThroughputRatio, c.RatioMin, c.RatioMax, want)
	}
	if c.P99DiffMs != c.Vouch.Session.P99-c.Baseline.Session.P99 {
		t.Errorf("p99 difference %v, want %v", c.P99DiffMs, c.Vouch.Session.P99-c.Baseline.Session.P99)
	}
	if c.Vouch.DNSQueries != 0 {
		t.Errorf("%d DNS queries with a warm cache", c.Vouch.DNSQueries)
	}
}

// With -spawn the baseline and vouch run in child processes, whose CPU
// time is reported, and which are gone afterwards.
func TestCompareSpawned(t *testing.T) {
	code, out, errOut := bench(t, "compare", "-spawn", "-zone", "testdata/zone.txt", "-workload", "testdata/workload.txt",
		"-d", "300ms", "-rounds", "1", "-c", "4", "-json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	c := decode[Comparison](t, out)
	if c.Baseline.Sessions == 0 || c.Vouch.Sessions == 0 {
		t.Fatalf("no sessions: baseline %d, vouch %d", c.Baseline.Sessions, c.Vouch.Sessions)
	}
	sameCounts(t, c.Baseline.Verdicts, map[string]int{"accept": c.Baseline.Sessions})
	sameCounts(t, c.Vouch.Verdicts, map[string]int{"continue": c.Vouch.Sessions})
	for _, r := range []Report{c.Baseline, c.Vouch} {
		if !strings.Contains(r.Target, "pid ") || r.ServerCPUPerSession < 0 || r.DNSQueries != -1 {
			t.Errorf("%s: server cpu %v, dns %d", r.Target, r.ServerCPUPerSession, r.DNSQueries)
		}
	}
	if c.CPURatio != 0 {
		t.Errorf("cpu ratio %v for servers in other processes, want 0 (not comparable)", c.CPURatio)
	}
}

func TestIdleSpawnsAndMeasuresVouch(t *testing.T) {
	code, out, errOut := bench(t, "idle", "-zone", "testdata/zone.txt", "-workload", "testdata/workload.txt",
		"-n", "20", "-c", "4", "-warmup", "10", "-settle", "0", "-json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	r := decode[IdleReport](t, out)
	if r.Connections != 20 || r.OpenErrors != 0 || r.PID <= 0 || r.PID == os.Getpid() || r.RSSOpenKiB <= 0 {
		t.Errorf("got %+v", r)
	}
}

func TestProcessCPU(t *testing.T) {
	start, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Work until the clock ticks over (it counts in 10 ms steps).
	x := 0
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
		for i := range 1_000_000 {
			x ^= i
		}
		if d, _ := processCPU(os.Getpid()); d > start {
			break
		}
	}
	if d, _ := processCPU(os.Getpid()); d <= start {
		t.Errorf("CPU time did not grow from %v (%d)", start, x)
	}
	if _, err := processCPU(0); err == nil {
		t.Error("pid 0: no error")
	}
}

// idle holds connections that vouch accepted: past max_connections vouch
// answers tempfail at connect, and those are counted as failures.
func TestIdleOpensConnectionsVouchAccepts(t *testing.T) {
	zone, err := readZone("testdata/zone.txt")
	if err != nil {
		t.Fatal(err)
	}
	v, err := startVouch(zone, loopback, vouchOptions{MaxConnections: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	code, out, errOut := bench(t, "idle", "-target", milterSpec(v.Address()), "-pid", strconv.Itoa(os.Getpid()),
		"-workload", "testdata/workload.txt", "-n", "8", "-c", "1", "-warmup", "0", "-settle", "0", "-json")
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	r := decode[IdleReport](t, out)
	if r.Connections != 5 || r.OpenErrors != 3 {
		t.Errorf("%d open, %d failed; want 5, 3", r.Connections, r.OpenErrors)
	}
	if r.RSSBeforeKiB <= 0 || r.RSSOpenKiB <= 0 {
		t.Errorf("RSS not read: %+v", r)
	}
	if !strings.Contains(errOut, "answered tempfail") {
		t.Errorf("stderr does not say why:\n%s", errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"two targets", []string{"run", "-baseline", "-zone", "testdata/zone.txt", "-workload", "testdata/mixed.txt"}, "exactly one of"},
		{"no target", []string{"run", "-workload", "testdata/mixed.txt"}, "exactly one of"},
		{"no workload", []string{"run", "-baseline"}, "-workload FILE is required"},
		{"bad address", []string{"run", "-target", "tcp:nowhere", "-workload", "testdata/mixed.txt"}, "unknown type"},
		{"bad workload", []string{"run", "-baseline", "-workload", "testdata/zone.txt"}, "testdata/zone.txt:1: want 4 fields"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"serve needs one", []string{"serve"}, "give -noop or -zone FILE"},
		{"negative rate", []string{"run", "-baseline", "-workload", "testdata/mixed.txt", "-rate", "-1"}, "-rate not negative"},
		{"spawn needs no target", []string{"compare", "-spawn", "-target", "inet:1@127.0.0.1", "-workload", "testdata/mixed.txt"}, "-spawn starts vouch from -zone"},
		{"run spawn target", []string{"run", "-spawn", "-target", "inet:1@127.0.0.1", "-workload", "testdata/mixed.txt"}, "-spawn starts the baseline or vouch"},
		{"rounds", []string{"compare", "-rounds", "0", "-zone", "testdata/zone.txt", "-workload", "testdata/mixed.txt"}, "-rounds 0"},
		{"hostile needs a daemon", []string{"hostile", "-mode", "claims", "-zone", "testdata/zone.txt"}, "-vouch BINARY and -zone FILE are required"},
		{"hostile mode", []string{"hostile", "-vouch", "/bin/false", "-mode", "ddos", "-zone", "testdata/zone.txt"}, `unknown -mode "ddos"`},
		{"hostile trickle needs a workload", []string{"hostile", "-vouch", "/bin/false", "-mode", "trickle", "-zone", "testdata/zone.txt"}, "workload"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := bench(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errOut)
			}
		})
	}
}

func TestLatencyPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := latency(d)
	want := Latency{N: 100, P50: 50, P90: 90, P99: 99, Max: 100}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := latency([]time.Duration{7 * time.Millisecond}); got != (Latency{N: 1, P50: 7, P90: 7, P99: 7, Max: 7}) {
		t.Errorf("one sample: %+v", got)
	}
	if got := latency(nil); got != (Latency{}) {
		t.Errorf("no samples: %+v", got)
	}
}

func TestMilterSpec(t *testing.T) {
	for _, spec := range []string{"inet:8895@127.0.0.1", "inet6:8895@[::1]", "unix:/run/vouch/milter.sock"} {
		t.Run(spec, func(t *testing.T) {
			a, err := socket.Parse(spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := milterSpec(a); got != spec {
				t.Errorf("got %q", got)
			}
		})
	}
}
