package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter/socket"
)

// The hostile command attacks a real vouch daemon (the binary given with
// -vouch, run as a child process with a configuration of its own, against
// an in-process DNS server) the way issue 14 describes, and reports what
// it cost the daemon: RSS, descriptors, goroutines, DNS queries, log
// volume, and for the trickle attack the throughput legitimate sessions
// kept. The same command measures any build, so "before" and "after" are
// one tool's figures (docs/hardening.md).

// HostileReport is one attack's figures. Fields a mode does not measure
// are zero.
type HostileReport struct {
	Mode        string `json:"mode"`
	Daemon      string `json:"daemon"`
	Connections int    `json:"connections"`
	// RSS of the daemon, KiB: before the attack, at its peak (sampled),
	// with the attack's connections open, and after they closed.
	RSSIdleKiB  int64 `json:"rss_idle_kib"`
	RSSPeakKiB  int64 `json:"rss_peak_kib"`
	RSSOpenKiB  int64 `json:"rss_open_kib"`
	RSSAfterKiB int64 `json:"rss_after_kib"`
	// PeakFDs and PeakGoroutines are the daemon's, sampled every 100 ms.
	PeakFDs        int `json:"peak_fds"`
	PeakGoroutines int `json:"peak_goroutines"`
	// ClosedByServer counts attack connections the daemon had closed when
	// they were checked (claims: after -settle; trickle: during the run).
	ClosedByServer int `json:"closed_by_server"`
	// Trickle: how long a trickling connection lived until the daemon
	// closed it, and the sessions/s of the legitimate load without and
	// with the attack (sessions whose messages got a checked verdict).
	TrickleLifeP50      float64        `json:"trickle_life_p50_s,omitempty"`
	TrickleLifeMax      float64        `json:"trickle_life_max_s,omitempty"`
	BaselinePerSec      float64        `json:"baseline_sessions_per_sec,omitempty"`
	UnderAttackPerSec   float64        `json:"under_attack_sessions_per_sec,omitempty"`
	Ratio               float64        `json:"ratio,omitempty"`
	BaselineVerdicts    map[string]int `json:"baseline_verdicts,omitempty"`
	UnderAttackVerdicts map[string]int `json:"under_attack_verdicts,omitempty"`
	// HELO flood: the upstream DNS queries, and the answers to the last
	// HELO, MAIL and RCPT.
	DNSQueries int      `json:"dns_queries"`
	Replies    []string `json:"final_replies,omitempty"`
	Seconds    float64  `json:"seconds"`
	// Metrics keep-alive: connections still open after -wait.
	StillOpen int `json:"still_open"`
	// LogLines and LogBytes the daemon wrote during the attack;
	// WarnLines of them at warn or error.
	LogLines  int `json:"log_lines"`
	LogBytes  int `json:"log_bytes"`
	WarnLines int `json:"warn_lines"`
}

func hostileCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hostile", flag.ContinueOnError)
	bin := fs.String("vouch", "", "the vouch daemon `binary` to attack (required)")
	mode := fs.String("mode", "", "claims, trickle, helo-flood or metrics-idle (required)")
	zone := fs.String("zone", "", "zone `file` for the in-process DNS server (required)")
	workload := fs.String("workload", "", "`file` of legitimate sessions (trickle)")
	n := fs.Int("n", 3000, "attack connections (claims, trickle, metrics-idle) or HELOs (helo-flood)")
	maxConns := fs.Int("max-connections", 2000, "the daemon's milter.max_connections")
	length := fs.Uint("length", 1<<20-1, "claims: the packet length claimed")
	send := fs.Int("send", -1, "claims: octets of the packet sent (-1: all but the last)")
	negotiate := fs.Bool("negotiate", false, "claims: negotiate before the large packet; trickle: negotiate and send CONNECT at once, then trickle a HELO")
	interval := fs.Duration("interval", time.Second, "trickle: one octet every this long")
	d := fs.Duration("d", 10*time.Second, "trickle: each load run's length")
	c := fs.Int("c", 32, "trickle: concurrent legitimate sessions")
	settle := fs.Duration("settle", 3*time.Second, "wait before the readings with the attack open")
	after := fs.Duration("after", 20*time.Second, "wait after the attack before the last RSS reading")
	dnsDelay := fs.Duration("dns-delay", 3*time.Second, "helo-flood: the DNS server's delay for the flood's names")
	wait := fs.Duration("wait", 25*time.Second, "metrics-idle: how long the connections idle")
	extra := fs.String("config", "", "YAML `lines` added to the daemon's configuration")
	jsonOut := fs.Bool("json", false, "print JSON")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *bin == "" || *zone == "" || *n < 1 {
		return usageErr(stderr, "hostile", errors.New("-vouch BINARY and -zone FILE are required; -n at least 1"))
	}
	if !slices.Contains([]string{"claims", "trickle", "helo-flood", "metrics-idle"}, *mode) {
		return usageErr(stderr, "hostile", fmt.Errorf("unknown -mode %q: want claims, trickle, helo-flood or metrics-idle", *mode))
	}
	text, err := readZone(*zone)
	if err != nil {
		return usageErr(stderr, "hostile", err)
	}
	var sessions []Session
	if *mode == "trickle" {
		if sessions, err = LoadWorkload(*workload); err != nil {
			return usageErr(stderr, "hostile", err)
		}
	}
	dd, err := startDaemon(*bin, text, *maxConns, *extra)
	if err != nil {
		return fail(stderr, "hostile", err)
	}
	defer dd.Close()
	r := HostileReport{Mode: *mode, Daemon: *bin, Connections: *n}
	r.RSSIdleKiB, _ = readRSS(dd.pid)
	mon := dd.monitor()
	lines0, bytes0, warn0 := dd.logSize()
	start := time.Now()
	switch *mode {
	case "claims":
		sent := *send
		if sent < 0 {
			sent = int(*length) - 1
		}
		err = claims(ctx, dd, &r, *n, uint32(*length), sent, *negotiate, *settle, *after)
	case "trickle":
		err = trickle(ctx, dd, &r, sessions, *n, *c, *interval, *d, *settle, *negotiate)
	case "helo-flood":
		err = heloFlood(ctx, dd, &r, *n, *dnsDelay)
	case "metrics-idle":
		err = metricsIdle(ctx, dd, &r, *n, *wait)
	default:
		return usageErr(stderr, "hostile", fmt.Errorf("unknown -mode %q", *mode))
	}
	r.Seconds = time.Since(start).Seconds()
	mon.stop(&r)
	lines1, bytes1, warn1 := dd.logSize()
	r.LogLines, r.LogBytes, r.WarnLines = lines1-lines0, bytes1-bytes0, warn1-warn0
	if err != nil {
		return fail(stderr, "hostile", err)
	}
	if *jsonOut {
		writeJSON(stdout, r)
	} else {
		writeHostileText(stdout, r)
	}
	return exitOK
}

func writeHostileText(w io.Writer, r HostileReport) {
	fmt.Fprintf(w, "mode            %s (%d)\n", r.Mode, r.Connections)
	fmt.Fprintf(w, "daemon          %s\n", r.Daemon)
	fmt.Fprintf(w, "rss             idle %.1f MiB, peak %.1f MiB, open %.1f MiB, after %.1f MiB\n",
		mib(r.RSSIdleKiB), mib(r.RSSPeakKiB), mib(r.RSSOpenKiB), mib(r.RSSAfterKiB))
	fmt.Fprintf(w, "peak            %d descriptors, %d goroutines\n", r.PeakFDs, r.PeakGoroutines)
	fmt.Fprintf(w, "closed          %d by the daemon\n", r.ClosedByServer)
	if r.Mode == "trickle" {
		fmt.Fprintf(w, "trickle life    p50 %.1f s, max %.1f s\n", r.TrickleLifeP50, r.TrickleLifeMax)
		fmt.Fprintf(w, "sessions/s      %.0f without, %.0f under attack (%.2f)\n", r.BaselinePerSec, r.UnderAttackPerSec, r.Ratio)
		fmt.Fprintf(w, "verdicts        without %s; under attack %s\n", verdictText(r.BaselineVerdicts), verdictText(r.UnderAttackVerdicts))
	}
	if r.Mode == "helo-flood" {
		fmt.Fprintf(w, "dns queries     %d\n", r.DNSQueries)
		fmt.Fprintf(w, "final replies   %s\n", strings.Join(r.Replies, " | "))
	}
	if r.Mode == "metrics-idle" {
		fmt.Fprintf(w, "still open      %d\n", r.StillOpen)
	}
	fmt.Fprintf(w, "log             %d lines (%d warn or error), %d bytes\n", r.LogLines, r.WarnLines, r.LogBytes)
	fmt.Fprintf(w, "seconds         %.1f\n", r.Seconds)
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// daemonUnderTest is a vouch daemon run as a child process, resolving
// through an in-process DNS server.
type daemonUnderTest struct {
	cmd     *exec.Cmd
	pid     int
	addr    socket.Address
	metrics string // http://HOST:PORT
	dns     *dnstest.Server
	dir     string
	logPath string
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func startDaemon(bin, zoneText string, maxConns int, extra string) (*daemonUnderTest, error) {
	d, err := dnstest.Start(zoneText)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vouch-hostile")
	if err != nil {
		d.Close()
		return nil, err
	}
	dd := &daemonUnderTest{dns: d, dir: dir, logPath: filepath.Join(dir, "vouch.log")}
	mp, err1 := freePort()
	hp, err2 := freePort()
	if err := errors.Join(err1, err2); err != nil {
		dd.Close()
		return nil, err
	}
	dd.addr = socket.Address{Network: "tcp4", Address: fmt.Sprintf("127.0.0.1:%d", mp)}
	dd.metrics = fmt.Sprintf("http://127.0.0.1:%d", hp)
	cfg := fmt.Sprintf("milter:\n  listen: inet:%d@127.0.0.1\n  max_connections: %d\nmetrics:\n  listen: 127.0.0.1:%d\ndns:\n  servers: [%q]\n%s\n",
		mp, maxConns, hp, d.Addr, extra)
	cfgPath := filepath.Join(dir, "vouch.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		dd.Close()
		return nil, err
	}
	logf, err := os.Create(dd.logPath)
	if err != nil {
		dd.Close()
		return nil, err
	}
	defer logf.Close()
	dd.cmd = exec.Command(bin, "serve", "-config", cfgPath)
	dd.cmd.Stderr, dd.cmd.Stdout = logf, logf
	if err := dd.cmd.Start(); err != nil {
		dd.Close()
		return nil, err
	}
	dd.pid = dd.cmd.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", dd.addr.Address)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			dd.Close()
			return nil, fmt.Errorf("daemon did not listen on %s: %w", dd.addr.Address, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return dd, nil
}

func (dd *daemonUnderTest) Close() {
	if dd.cmd != nil && dd.cmd.Process != nil {
		dd.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { dd.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			dd.cmd.Process.Kill()
			<-done
		}
	}
	dd.dns.Close()
	os.RemoveAll(dd.dir)
}

func (dd *daemonUnderTest) logSize() (lines, size, warn int) {
	b, _ := os.ReadFile(dd.logPath)
	text := string(b)
	return strings.Count(text, "\n"), len(b), strings.Count(text, "level=WARN") + strings.Count(text, "level=ERROR")
}

func (dd *daemonUnderTest) fds() int {
	e, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", dd.pid))
	return len(e)
}

// goroutines reads go_goroutines from the daemon's /metrics.
func (dd *daemonUnderTest) goroutines() int {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(dd.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int(f)
		}
	}
	return -1
}

type monitor struct {
	stopc           chan struct{}
	done            chan struct{}
	rss             int64
	fds, goroutines int
}

// monitor samples the daemon's RSS, descriptors and goroutines every
// 100 ms until stop.
func (dd *daemonUnderTest) monitor() *monitor {
	m := &monitor{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := readRSS(dd.pid); err == nil {
				m.rss = max(m.rss, v)
			}
			m.fds = max(m.fds, dd.fds())
			m.goroutines = max(m.goroutines, dd.goroutines())
			select {
			case <-m.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *monitor) stop(r *HostileReport) {
	close(m.stopc)
	<-m.done
	r.RSSPeakKiB, r.PeakFDs, r.PeakGoroutines = m.rss, m.fds, m.goroutines
}

// rawPacket is a milter packet: length, command, data.
func rawPacket(cmd byte, data []byte) []byte {
	p := binary.BigEndian.AppendUint32(nil, uint32(len(data)+1))
	return append(append(p, cmd), data...)
}

// negotiation is what Postfix sends first: version 6, every action, the
// protocol steps it can skip.
var negotiation = rawPacket('O', []byte{0, 0, 0, 2, 0, 0, 0x01, 0xff, 0, 0x1f, 0xff, 0xff}) // version 2: every command answered

func readRawPacket(c net.Conn) (byte, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > 1<<20 {
		return 0, nil, fmt.Errorf("reply length %d", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c, p); err != nil {
		return 0, nil, err
	}
	return p[0], p[1:], nil
}

// closedByPeer reports whether the daemon closed c (EOF or reset on a
// read that finds nothing else).
func closedByPeer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	var b [512]byte
	for {
		_, err := c.Read(b[:])
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// claims opens n connections that each send a packet header claiming
// length octets, then sent octets of it, and hold it there.
func claims(ctx context.Context, dd *daemonUnderTest, r *HostileReport, n int, length uint32, sent int, negotiate bool, settle, after time.Duration) error {
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	body := make([]byte, 64<<10)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := net.Dial("tcp", dd.addr.Address)
				if err != nil {
					continue
				}
				conns[i] = c
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if negotiate {
					if _, err := c.Write(negotiation); err != nil {
						continue
					}
					if _, _, err := readRawPacket(c); err != nil {
						continue
					}
				}
				hdr := binary.BigEndian.AppendUint32(nil, length)
				if _, err := c.Write(append(hdr, 'B')); err != nil {
					continue
				}
				for left := sent - 1; left > 0; {
					k, err := c.Write(body[:min(left, len(body))])
					left -= k
					if err != nil {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	sleep(ctx, settle)
	r.RSSOpenKiB, _ = readRSS(dd.pid)
	for _, c := range conns {
		if c != nil && closedByPeer(c) {
			r.ClosedByServer++
		}
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	sleep(ctx, after)
	r.RSSAfterKiB, _ = readRSS(dd.pid)
	return ctx.Err()
}

// trickle measures the legitimate load's sessions/s, then again while n
// connections each trickle a valid session one octet per interval,
// reconnecting whenever the daemon closes them.
func trickle(ctx context.Context, dd *daemonUnderTest, r *HostileReport, sessions []Session, n, c int, interval, d, settle time.Duration, negotiate bool) error {
	l := Load{Sessions: sessions, Concurrency: c, Duration: d, Timeout: 30 * time.Second}
	warm := l
	warm.Count, warm.Duration = len(sessions), 0
	Run(ctx, dd.addr, warm)
	base := Run(ctx, dd.addr, l)
	r.BaselinePerSec, r.BaselineVerdicts = checkedPerSec(base), base.verdicts

	connect := rawPacket('C', []byte("[192.0.2.1]\x004\x9c\x40192.0.2.1\x00"))
	stream := append(append([]byte(nil), negotiation...), connect...)
	if negotiate {
		// The session starts as an MTA's would; only then it trickles.
		stream = rawPacket('H', []byte(strings.Repeat("slow", 16)+".example\x00"))
	}
	actx, stop := context.WithCancel(ctx)
	var mu sync.Mutex
	var lives []time.Duration
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for actx.Err() == nil {
				conn, err := net.Dial("tcp", dd.addr.Address)
				if err != nil {
					sleep(actx, 100*time.Millisecond)
					continue
				}
				start := time.Now()
				if negotiate {
					conn.SetDeadline(time.Now().Add(30 * time.Second))
					_, err1 := conn.Write(negotiation)
					_, _, err2 := readRawPacket(conn)
					_, err3 := conn.Write(connect)
					_, _, err4 := readRawPacket(conn)
					conn.SetDeadline(time.Time{})
					if errors.Join(err1, err2, err3, err4) != nil {
						conn.Close()
						continue
					}
				}
				closed := make(chan struct{})
				go func() {
					io.Copy(io.Discard, conn)
					close(closed)
				}()
				t := time.NewTicker(interval)
			trickling:
				for i := 0; ; i++ {
					if _, err := conn.Write(stream[i%len(stream) : i%len(stream)+1]); err != nil {
						break
					}
					select {
					case <-closed:
						break trickling
					case <-actx.Done():
						break trickling
					case <-t.C:
					}
				}
				t.Stop()
				if actx.Err() == nil {
					mu.Lock()
					lives = append(lives, time.Since(start))
					mu.Unlock()
				}
				conn.Close()
			}
		}()
	}
	sleep(ctx, settle)
	under := Run(ctx, dd.addr, l)
	r.UnderAttackPerSec, r.UnderAttackVerdicts = checkedPerSec(under), under.verdicts
	r.RSSOpenKiB, _ = readRSS(dd.pid)
	stop()
	wg.Wait()
	if r.BaselinePerSec > 0 {
		r.Ratio = r.UnderAttackPerSec / r.BaselinePerSec
	}
	mu.Lock()
	slices.Sort(lives)
	r.ClosedByServer = len(lives)
	if len(lives) > 0 {
		r.TrickleLifeP50 = lives[len(lives)/2].Seconds()
		r.TrickleLifeMax = lives[len(lives)-1].Seconds()
	}
	mu.Unlock()
	return ctx.Err()
}

// checkedPerSec is the sessions a second whose messages were checked:
// not answered tempfail at connect (the overload answer).
func checkedPerSec(s *sample) float64 {
	if s.elapsed <= 0 {
		return 0
	}
	checked := 0
	for v, k := range s.verdicts {
		if v != "tempfail" {
			checked += k
		}
	}
	return float64(checked) / s.elapsed.Seconds()
}

// heloFlood sends, on one connection, n HELOs with new names whose DNS
// answers take dnsDelay, then a last HELO, MAIL and RCPT of a passing
// session, and counts the DNS queries that cost.
func heloFlood(ctx context.Context, dd *daemonUnderTest, r *HostileReport, n int, dnsDelay time.Duration) error {
	for i := range n {
		dd.dns.SetFault(fmt.Sprintf("h%d.flood.test", i), dnstest.Fault{Delay: dnsDelay})
	}
	q0 := dd.dns.TotalQueries()
	c, err := net.Dial("tcp", dd.addr.Address)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	ask := func(p []byte) (string, error) {
		if _, err := c.Write(p); err != nil {
			return "", err
		}
		code, data, err := readRawPacket(c)
		if err != nil {
			return "", err
		}
		if code == 'y' {
			return strings.TrimRight(string(data), "\x00"), nil
		}
		return string(rune(code)), nil
	}
	if _, err := ask(negotiation); err != nil {
		return fmt.Errorf("negotiation: %w", err)
	}
	c.Write(rawPacket('D', []byte("Cj\x00mx.vouch.test\x00")))
	if _, err := ask(rawPacket('C', []byte("[192.0.2.1]\x004\x9c\x40192.0.2.1\x00"))); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	for i := range n {
		if _, err := ask(rawPacket('H', []byte(fmt.Sprintf("h%d.flood.test\x00", i)))); err != nil {
			return fmt.Errorf("HELO %d: %w", i, err)
		}
	}
	for _, p := range [][]byte{
		rawPacket('H', []byte("mx1.shop01.test\x00")),
		rawPacket('M', []byte("<user1@shop01.test>\x00")),
		rawPacket('R', []byte("<rcpt1@vouch.test>\x00")),
	} {
		v, err := ask(p)
		if err != nil {
			return err
		}
		r.Replies = append(r.Replies, v)
	}
	// Let the flood's lookups end: the queries they cost are counted.
	sleep(ctx, 2*dnsDelay+8*time.Second)
	r.DNSQueries = dd.dns.TotalQueries() - q0
	r.RSSOpenKiB, _ = readRSS(dd.pid)
	return ctx.Err()
}

// metricsIdle opens n keep-alive connections to the metrics server, makes
// one request on each, and counts those still open after wait.
func metricsIdle(ctx context.Context, dd *daemonUnderTest, r *HostileReport, n int, wait time.Duration) error {
	host := strings.TrimPrefix(dd.metrics, "http://")
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", host)
		if err != nil {
			continue
		}
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", host)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		conns = append(conns, c)
	}
	sleep(ctx, wait)
	for _, c := range conns {
		if closedByPeer(c) {
			r.ClosedByServer++
		} else {
			r.StillOpen++
		}
		c.Close()
	}
	return ctx.Err()
}
