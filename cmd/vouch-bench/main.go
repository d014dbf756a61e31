// Command vouch-bench drives a milter the way Postfix does and measures it:
// sessions per second, latency per session and per RCPT, the count of each
// verdict. It carries its own baseline, a no-op milter on the same library,
// so that vouch's figures can be given as a ratio of the protocol's own
// limit measured in the same run, and an in-process vouch over an
// in-process DNS server, so that one command reproduces the figures with no
// setup. See docs/performance.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/vouch-mail/vouch/milter/socket"
)

const (
	exitOK    = 0
	exitError = 1 // the run could not be made, or saw protocol errors
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: vouch-bench [command] [flags]

commands:
  run      (default) load one milter: -target ADDR, -baseline (an
           in-process no-op milter) or -zone FILE (an in-process vouch)
  compare  the no-op baseline and vouch (-target ADDR or -zone FILE),
           in alternating rounds; vouch's throughput as a ratio of the
           baseline's and the p99 difference
  idle     open N milter connections that sent CONNECT and HELO, hold
           them, and report the server's RSS per connection
  hostile  attack a vouch daemon binary (-vouch BIN) as issue 14 does:
           -mode claims, trickle, helo-flood or metrics-idle; report
           its RSS, descriptors, goroutines, DNS queries and log volume
  serve    serve an in-process vouch (-zone FILE) or no-op milter (-noop)
  dns      serve a zone file on an in-process DNS server
  postfix  a real Postfix driven by smtp-source: messages per second with
           vouch, go-milter's no-op and no milter, in alternating rounds

"vouch-bench COMMAND -h" lists a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	// go-milter reports connection errors through the standard logger.
	log.SetOutput(stderr)
	log.SetPrefix("go-milter: ")
	switch cmd {
	case "run":
		return runCommand(ctx, args, stdout, stderr)
	case "compare":
		return compareCommand(ctx, args, stdout, stderr)
	case "idle":
		return idleCommand(ctx, args, stdout, stderr)
	case "serve":
		return serveCommand(ctx, args, stdout, stderr)
	case "hostile":
		return hostileCommand(ctx, args, stdout, stderr)
	case "dns":
		return dnsCommand(ctx, args, stdout, stderr)
	case "postfix":
		return postfixCommand(ctx, args, stdout, stderr) // postfix.go
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "vouch-bench: unknown command %q\n%s", cmd, usage)
	return exitUsage
}

// loadFlags are the flags every load-generating command shares.
type loadFlags struct {
	workload    string
	concurrency int
	duration    time.Duration
	count       int
	messages    int
	warmup      int
	timeout     time.Duration
	json        bool
	cpuprofile  string
	rate        float64
}

func addLoadFlags(fs *flag.FlagSet) *loadFlags {
	f := &loadFlags{}
	fs.StringVar(&f.workload, "workload", "", "`file` of sessions: client IP, HELO, sender, recipient a line (required)")
	fs.IntVar(&f.concurrency, "c", 32, "concurrent SMTP sessions")
	fs.DurationVar(&f.duration, "d", 5*time.Second, "how long to run (per round in compare)")
	fs.IntVar(&f.count, "n", 0, "run this many sessions instead of for -d")
	fs.IntVar(&f.messages, "m", 1, "messages (transactions) per session")
	fs.Float64Var(&f.rate, "rate", 0, "start this many sessions a second, at most -c at once (0: as fast as the target answers)")
	fs.IntVar(&f.warmup, "warmup", -1, "sessions sent before measuring, to warm caches (-1: one pass over the workload)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "bound on each milter read and write (Postfix's milter_command_timeout)")
	fs.BoolVar(&f.json, "json", false, "print JSON")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile of the measured runs (not the warm-up) to `file`")
	return f
}

func (f *loadFlags) load() (Load, error) {
	if f.workload == "" {
		return Load{}, errors.New("-workload FILE is required")
	}
	if f.concurrency < 1 || f.messages < 1 || f.count < 0 || f.duration <= 0 && f.count == 0 || f.rate < 0 {
		return Load{}, errors.New("-c and -m must be at least 1, -rate not negative, and -d positive or -n set")
	}
	sessions, err := LoadWorkload(f.workload)
	if err != nil {
		return Load{}, err
	}
	return Load{Sessions: sessions, Concurrency: f.concurrency, Duration: f.duration,
		Count: f.count, Messages: f.messages, Timeout: f.timeout, Rate: f.rate}, nil
}

// warm sends the warm-up sessions; their figures are not reported, but
// their errors are.
func (f *loadFlags) warm(ctx context.Context, a socket.Address, l Load, stderr io.Writer) error {
	n := f.warmup
	if n < 0 {
		n = len(l.Sessions)
	}
	if n == 0 {
		return nil
	}
	w := l
	w.Count, w.Messages, w.Rate = n, 1, 0
	s := Run(ctx, a, w)
	if s.errors > 0 {
		for k, v := range s.errText {
			fmt.Fprintf(stderr, "vouch-bench: warm-up: %dx %s\n", v, k)
		}
		return fmt.Errorf("warm-up against %s: %d of %d sessions failed", milterSpec(a), s.errors, n)
	}
	return ctx.Err()
}

// profile starts the CPU profile if one was asked for; stop ends it.
func (f *loadFlags) profile() (stop func(), err error) {
	if f.cpuprofile == "" {
		return func() {}, nil
	}
	out, err := os.Create(f.cpuprofile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		out.Close()
	}, nil
}

func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vouch-bench %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage, false
	}
	return 0, true
}

func usageErr(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "vouch-bench %s: %v\n", cmd, err)
	return exitUsage
}

func fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "vouch-bench %s: %v\n", cmd, err)
	return exitError
}

// target is what a command loads: an external milter, or one this
// process serves.
type target struct {
	addr socket.Address
	name string
	srv  server     // nil for an external milter
	dns  func() int // upstream DNS queries so far; nil when unknown
	pid  int        // the server's process, when this program started it
}

func (t *target) close() {
	if t.srv != nil {
		t.srv.Close()
	}
}

func (t *target) queries() int {
	if t.dns == nil {
		return -1
	}
	return t.dns()
}

// run loads t and reports, with the figures of the load, the upstream DNS
// queries and the server process's CPU time it cost, when known.
func (t *target) run(ctx context.Context, l Load) (*sample, int) {
	q := t.queries()
	cpu, cpuErr := processCPU(t.pid)
	s := Run(ctx, t.addr, l)
	if q >= 0 {
		q = t.queries() - q
	}
	if cpu2, err := processCPU(t.pid); t.pid > 0 && cpuErr == nil && err == nil {
		s.serverCPU = cpu2 - cpu
	}
	return s, q
}

// openTarget resolves -target / -baseline / -zone into something to load;
// with spawn, the baseline or vouch runs in a child process ("serve"), as
// a milter runs apart from its MTA.
func openTarget(spec string, baseline bool, zone string, spawnServer bool, o vouchOptions) (*target, error) {
	set := 0
	for _, b := range []bool{spec != "", baseline, zone != ""} {
		if b {
			set++
		}
	}
	if set != 1 {
		return nil, errors.New("give exactly one of -target ADDR, -baseline, -zone FILE")
	}
	if spec != "" && spawnServer {
		return nil, errors.New("-spawn starts the baseline or vouch (-zone), not -target")
	}
	switch {
	case spec != "":
		a, err := socket.Parse(spec)
		if err != nil {
			return nil, err
		}
		return &target{addr: a, name: milterSpec(a)}, nil
	case baseline && spawnServer:
		s, err := spawnServe([]string{"-noop"})
		if err != nil {
			return nil, err
		}
		return &target{addr: s.addr, name: fmt.Sprintf("baseline (no-op milter, pid %d) %s", s.pid, milterSpec(s.addr)), srv: s, pid: s.pid}, nil
	case baseline:
		s, err := startNoop(loopback)
		if err != nil {
			return nil, err
		}
		return &target{addr: s.Address(), name: "baseline (in-process no-op milter) " + milterSpec(s.Address()), srv: s}, nil
	}
	text, err := readZone(zone)
	if err != nil {
		return nil, err
	}
	if spawnServer {
		args := []string{"-zone", zone}
		if o.MaxConnections > 0 {
			args = append(args, "-max-connections", strconv.Itoa(o.MaxConnections))
		}
		s, err := spawnServe(args)
		if err != nil {
			return nil, err
		}
		return &target{addr: s.addr, name: fmt.Sprintf("vouch (zone %s, pid %d) %s", zone, s.pid, milterSpec(s.addr)), srv: s, pid: s.pid}, nil
	}
	v, err := startVouch(text, loopback, o)
	if err != nil {
		return nil, err
	}
	return &target{addr: v.Address(), name: "vouch (in-process, zone " + zone + ") " + milterSpec(v.Address()),
		srv: v, dns: v.DNS.TotalQueries}, nil
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	lf := addLoadFlags(fs)
	spec := fs.String("target", "", "milter `address` to load: inet:PORT@HOST, inet6:PORT@[HOST], unix:/path")
	baseline := fs.Bool("baseline", false, "load an in-process no-op milter (the protocol's own limit)")
	zone := fs.String("zone", "", "load an in-process vouch resolving through an in-process DNS server holding this zone `file`")
	spawnServer := fs.Bool("spawn", false, "run the -baseline or -zone server in a child process")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	l, err := lf.load()
	if err != nil {
		return usageErr(stderr, "run", err)
	}
	t, err := openTarget(*spec, *baseline, *zone, *spawnServer, vouchOptions{})
	if err != nil {
		return usageErr(stderr, "run", err)
	}
	defer t.close()
	if err := lf.warm(ctx, t.addr, l, stderr); err != nil {
		return fail(stderr, "run", err)
	}
	stop, err := lf.profile()
	if err != nil {
		return fail(stderr, "run", err)
	}
	s, q := t.run(ctx, l)
	stop()
	r := report(t.name, l, s, q)
	if lf.json {
		writeJSON(stdout, r)
	} else {
		r.writeText(stdout)
	}
	if r.ProtocolErrors > 0 {
		return exitError
	}
	return exitOK
}
