package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/vouch-mail/vouch/milter/answer"
	"github.com/vouch-mail/vouch/milter/socket"
)

// IdleReport is what holding connections open costs the server.
type IdleReport struct {
	Target      string `json:"target"`
	PID         int    `json:"pid"`
	Connections int    `json:"connections"`
	OpenErrors  int    `json:"open_errors"`
	// RSS of the server process, KiB: after the warm-up, with every
	// connection open, and after they were all closed.
	RSSBeforeKiB int64 `json:"rss_before_kib"`
	RSSOpenKiB   int64 `json:"rss_open_kib"`
	RSSAfterKiB  int64 `json:"rss_after_kib"`
	// PerConnectionKiB is (open - before) / connections.
	PerConnectionKiB float64 `json:"per_connection_kib"`
}

func idleCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	spec := fs.String("target", "", "milter `address` of a server already running (give -pid to measure it)")
	pid := fs.Int("pid", 0, "process id whose RSS to measure, for -target")
	zone := fs.String("zone", "", "start \"vouch-bench serve -zone FILE\" as a child process and measure it")
	noop := fs.Bool("noop", false, "start \"vouch-bench serve -noop\" as a child process and measure it")
	workload := fs.String("workload", "", "`file` of sessions whose client IP and HELO the connections use (required)")
	n := fs.Int("n", 10000, "connections to open")
	c := fs.Int("c", 32, "connections opened at a time")
	warmup := fs.Int("warmup", -1, "whole sessions sent first, to warm caches (-1: one pass over the workload)")
	settle := fs.Duration("settle", 3*time.Second, "wait before each RSS reading")
	hold := fs.Duration("hold", 0, "keep the connections open this long after measuring")
	jsonOut := fs.Bool("json", false, "print JSON")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *workload == "" || *n < 1 || *c < 1 {
		return usageErr(stderr, "idle", errors.New("-workload FILE is required; -n and -c at least 1"))
	}
	sessions, err := LoadWorkload(*workload)
	if err != nil {
		return usageErr(stderr, "idle", err)
	}

	var addr socket.Address
	switch {
	case *spec != "" && *zone == "" && !*noop:
		if addr, err = socket.Parse(*spec); err != nil {
			return usageErr(stderr, "idle", err)
		}
	case *spec == "" && (*zone != "") != *noop:
		child := []string{"-noop"}
		if *zone != "" {
			// Past max_connections vouch answers without checks: raise it.
			child = []string{"-zone", *zone, "-max-connections", strconv.Itoa(*n + 1000)}
		}
		s, err := spawnServe(child)
		if err != nil {
			return fail(stderr, "idle", err)
		}
		defer s.Close()
		addr, *pid = s.addr, s.pid
	default:
		return usageErr(stderr, "idle", errors.New("give -target ADDR [-pid PID], -zone FILE or -noop"))
	}

	l := Load{Sessions: sessions, Concurrency: *c, Timeout: 30 * time.Second}
	lf := loadFlags{warmup: *warmup}
	if err := lf.warm(ctx, addr, l, stderr); err != nil {
		return fail(stderr, "idle", err)
	}
	r := IdleReport{Target: milterSpec(addr), PID: *pid, Connections: *n}
	rss := func() int64 {
		if *pid == 0 {
			return 0
		}
		sleep(ctx, *settle)
		v, err := readRSS(*pid)
		if err != nil {
			fmt.Fprintf(stderr, "vouch-bench idle: %v\n", err)
		}
		return v
	}
	r.RSSBeforeKiB = rss()
	conns, errs := openIdle(ctx, addr, sessions, *n, *c, stderr)
	r.OpenErrors = errs
	r.RSSOpenKiB = rss()
	if len(conns) > 0 {
		r.PerConnectionKiB = float64(r.RSSOpenKiB-r.RSSBeforeKiB) / float64(len(conns))
	}
	r.Connections = len(conns)
	if *hold > 0 {
		fmt.Fprintf(stderr, "vouch-bench idle: holding %d connections for %v\n", len(conns), *hold)
		sleep(ctx, *hold)
	}
	closeAll(conns, *c)
	r.RSSAfterKiB = rss()

	if *jsonOut {
		writeJSON(stdout, r)
	} else {
		fmt.Fprintf(stdout, "target          %s (pid %d)\n", r.Target, r.PID)
		fmt.Fprintf(stdout, "connections     %d open, %d failed to open\n", r.Connections, r.OpenErrors)
		fmt.Fprintf(stdout, "rss KiB         before %d, open %d, after closing %d\n", r.RSSBeforeKiB, r.RSSOpenKiB, r.RSSAfterKiB)
		fmt.Fprintf(stdout, "per connection  %.1f KiB\n", r.PerConnectionKiB)
	}
	if r.OpenErrors > 0 {
		return exitError
	}
	return exitOK
}

// openIdle opens n connections, each negotiated and past CONNECT and HELO,
// as an SMTP client that said EHLO and then paused would leave them.
func openIdle(ctx context.Context, a socket.Address, sessions []Session, n, c int, stderr io.Writer) ([]*gomilter.ClientSession, int) {
	client := gomilter.NewClientWithOptions(a.Network, a.Address, gomilter.ClientOptions{
		Dialer:      &net.Dialer{Timeout: 30 * time.Second},
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	out := make([]*gomilter.ClientSession, n)
	var next, errs atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				cs, err := openOne(client, sessions[i%len(sessions)], i)
				if err != nil {
					errs.Add(1)
					once.Do(func() { fmt.Fprintf(stderr, "vouch-bench idle: connection %d: %v\n", i, err) })
					continue
				}
				out[i] = cs
			}
		}()
	}
	wg.Wait()
	var open []*gomilter.ClientSession
	for _, cs := range out {
		if cs != nil {
			open = append(open, cs)
		}
	}
	return open, int(errs.Load())
}

func openOne(client *gomilter.Client, s Session, i int) (*gomilter.ClientSession, error) {
	cs, err := client.Session()
	if err != nil {
		return nil, err
	}
	ip := s.IP.String()
	err = cs.Macros(gomilter.CodeConn, "j", mtaName, "{daemon_name}", "smtpd", "_", "unknown ["+ip+"]")
	var act *gomilter.Action
	if err == nil {
		act, err = cs.Conn("["+ip+"]", clientFamily(s.IP), uint16(40000+i%20000), ip)
	}
	if err == nil && act.Code == gomilter.ActContinue {
		act, err = cs.Helo(s.HELO)
	}
	if err == nil && act.Code != gomilter.ActContinue {
		err = fmt.Errorf("answered %s", answer.Code(act))
	}
	if err != nil {
		cs.Close()
		return nil, err
	}
	return cs, nil
}

func closeAll(conns []*gomilter.ClientSession, c int) {
	var wg sync.WaitGroup
	ch := make(chan *gomilter.ClientSession)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for cs := range ch {
				cs.Close()
			}
		}()
	}
	for _, cs := range conns {
		ch <- cs
	}
	close(ch)
	wg.Wait()
}

// spawned is a server this program runs as a child process ("serve").
type spawned struct {
	cmd  *exec.Cmd
	addr socket.Address
	pid  int
}

func (s *spawned) Address() socket.Address { return s.addr }

func (s *spawned) Close() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	return s.cmd.Wait()
}

// spawnServe starts "vouch-bench serve args..." and reads the address and
// pid from the first line it prints ("listening ADDR pid PID"). The child's
// errors go to this program's standard error.
func spawnServe(args []string) (*spawned, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args = append([]string{"serve"}, args...)
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	s := &spawned{cmd: cmd}
	var spec string
	if err == nil {
		_, err = fmt.Sscanf(line, "listening %s pid %d", &spec, &s.pid)
	}
	if err == nil {
		s.addr, err = socket.Parse(spec)
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("starting %s: %q: %w", strings.Join(args, " "), line, err)
	}
	go io.Copy(io.Discard, out)
	return s, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// processCPU returns the CPU time (user and system, all threads) process
// pid has used.
func processCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, errors.New("no process")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count fields
	// from after it. utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// readRSS returns VmRSS of process pid, in KiB.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rss: %q: %w", line, err)
			}
			return kb, nil
		}
	}
	return 0, fmt.Errorf("rss: no VmRSS in /proc/%d/status", pid)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
