package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// Comparison is vouch against the no-op baseline in one invocation.
type Comparison struct {
	Rounds   []Round `json:"rounds"`
	Baseline Report  `json:"baseline"` // all rounds pooled
	Vouch    Report  `json:"vouch"`
	// ThroughputRatio is vouch's sessions/s over the baseline's, pooled
	// over the rounds; RatioMin and RatioMax are the rounds' extremes.
	ThroughputRatio float64 `json:"throughput_ratio"`
	RatioMin        float64 `json:"ratio_min"`
	RatioMax        float64 `json:"ratio_max"`
	// P99DiffMs is vouch's session p99 minus the baseline's (pooled);
	// RcptP99DiffMs the same for the RCPT answer.
	P99DiffMs     float64 `json:"p99_diff_ms"`
	RcptP99DiffMs float64 `json:"rcpt_p99_diff_ms"`
	// CPURatio is the baseline's CPU per session over vouch's (both
	// in-process: client and server together): the throughput ratio a
	// machine with nothing else to do would show, less sensitive to other
	// jobs than the sessions per second. 0 for an external vouch.
	CPURatio float64 `json:"cpu_ratio"`
	// ServerCPURatio is the baseline server's CPU per session over
	// vouch's, both in child processes (-spawn); 0 otherwise.
	ServerCPURatio float64 `json:"server_cpu_ratio"`
}

// Round is one baseline run and one vouch run, back to back.
type Round struct {
	BaselineFirst bool    `json:"baseline_first"`
	Baseline      Report  `json:"baseline"`
	Vouch         Report  `json:"vouch"`
	Ratio         float64 `json:"ratio"`
}

func compareCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	lf := addLoadFlags(fs)
	spec := fs.String("target", "", "vouch's milter `address` (default: an in-process vouch over -zone)")
	zone := fs.String("zone", "", "zone `file` for the in-process vouch's in-process DNS server")
	rounds := fs.Int("rounds", 3, "rounds; each runs the baseline and vouch for -d, in alternating order")
	spawnServer := fs.Bool("spawn", false, "run the baseline and vouch (-zone) each in a child process, apart from the load, as a milter runs apart from its MTA")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	l, err := lf.load()
	if err != nil {
		return usageErr(stderr, "compare", err)
	}
	if *rounds < 1 {
		return usageErr(stderr, "compare", fmt.Errorf("-rounds %d: want at least 1", *rounds))
	}
	if *spec != "" && *spawnServer {
		return usageErr(stderr, "compare", errors.New("-spawn starts vouch from -zone, not -target"))
	}
	base, err := openTarget("", true, "", *spawnServer, vouchOptions{})
	if err != nil {
		return fail(stderr, "compare", err)
	}
	defer base.close()
	v, err := openTarget(*spec, false, *zone, *spawnServer, vouchOptions{})
	if err != nil {
		return usageErr(stderr, "compare", err)
	}
	defer v.close()
	for _, t := range []*target{base, v} {
		if err := lf.warm(ctx, t.addr, l, stderr); err != nil {
			return fail(stderr, "compare", err)
		}
	}

	stop, err := lf.profile()
	if err != nil {
		return fail(stderr, "compare", err)
	}
	c := compare(ctx, base, v, l, *rounds, stderr)
	stop()
	if lf.json {
		writeJSON(stdout, c)
	} else {
		c.writeText(stdout)
	}
	if c.Baseline.ProtocolErrors+c.Vouch.ProtocolErrors > 0 {
		return exitError
	}
	return exitOK
}

// compare alternates the order of the two runs from round to round, so
// that a drift of the machine's speed (another job starting, thermal
// limits) weighs on both alike.
func compare(ctx context.Context, base, v *target, l Load, rounds int, progress io.Writer) Comparison {
	var c Comparison
	allBase, allVouch := newSample(), newSample()
	vouchQueries := 0
	for i := range rounds {
		r := Round{BaselineFirst: i%2 == 0}
		var sb, sv *sample
		runVouch := func() {
			var q int
			sv, q = v.run(ctx, l)
			vouchQueries += q
			r.Vouch = report(v.name, l, sv, q)
		}
		runBase := func() {
			sb, _ = base.run(ctx, l)
			r.Baseline = report(base.name, l, sb, -1)
		}
		if r.BaselineFirst {
			runBase()
			runVouch()
		} else {
			runVouch()
			runBase()
		}
		if r.Baseline.SessionsPerSec > 0 {
			r.Ratio = r.Vouch.SessionsPerSec / r.Baseline.SessionsPerSec
		}
		fmt.Fprintf(progress, "round %d/%d: baseline %.0f/s, vouch %.0f/s, ratio %.3f\n",
			i+1, rounds, r.Baseline.SessionsPerSec, r.Vouch.SessionsPerSec, r.Ratio)
		c.Rounds = append(c.Rounds, r)
		allBase.merge(sb)
		allBase.elapsed += sb.elapsed
		allBase.cpu += sb.cpu
		allBase.serverCPU += sb.serverCPU
		allVouch.merge(sv)
		allVouch.elapsed += sv.elapsed
		allVouch.cpu += sv.cpu
		allVouch.serverCPU += sv.serverCPU
		if ctx.Err() != nil {
			break
		}
	}
	if v.dns == nil {
		vouchQueries = -1
	}
	c.Baseline = report(base.name, l, allBase, -1)
	c.Vouch = report(v.name, l, allVouch, vouchQueries)
	if c.Baseline.SessionsPerSec > 0 {
		c.ThroughputRatio = c.Vouch.SessionsPerSec / c.Baseline.SessionsPerSec
	}
	for i, r := range c.Rounds {
		if i == 0 || r.Ratio < c.RatioMin {
			c.RatioMin = r.Ratio
		}
		if i == 0 || r.Ratio > c.RatioMax {
			c.RatioMax = r.Ratio
		}
	}
	if v.srv != nil && v.pid == 0 && c.Vouch.CPUPerSession > 0 {
		c.CPURatio = c.Baseline.CPUPerSession / c.Vouch.CPUPerSession
	}
	if c.Baseline.ServerCPUPerSession > 0 && c.Vouch.ServerCPUPerSession > 0 {
		c.ServerCPURatio = c.Baseline.ServerCPUPerSession / c.Vouch.ServerCPUPerSession
	}
	c.P99DiffMs = c.Vouch.Session.P99 - c.Baseline.Session.P99
	c.RcptP99DiffMs = c.Vouch.Rcpt.P99 - c.Baseline.Rcpt.P99
	return c
}

// The targets: vouch keeps at least 0.8 of the baseline's
// throughput, and its session p99 stays within 2 ms of the baseline's.
const (
	targetRatio   = 0.8
	targetP99Diff = 2 * time.Millisecond
)

func (c Comparison) writeText(w io.Writer) {
	fmt.Fprintln(w, "== baseline, all rounds")
	c.Baseline.writeText(w)
	fmt.Fprintln(w, "== vouch, all rounds")
	c.Vouch.writeText(w)
	fmt.Fprintln(w, "== comparison")
	for i, r := range c.Rounds {
		order := "vouch first"
		if r.BaselineFirst {
			order = "baseline first"
		}
		fmt.Fprintf(w, "round %d (%s): baseline %.1f/s p99 %.3f ms, vouch %.1f/s p99 %.3f ms, ratio %.3f\n",
			i+1, order, r.Baseline.SessionsPerSec, r.Baseline.Session.P99, r.Vouch.SessionsPerSec, r.Vouch.Session.P99, r.Ratio)
	}
	fmt.Fprintf(w, "throughput ratio vouch/baseline  %.3f (rounds %.3f-%.3f)  target >= %.2f: %s\n",
		c.ThroughputRatio, c.RatioMin, c.RatioMax, targetRatio, met(c.ThroughputRatio >= targetRatio))
	if c.CPURatio > 0 {
		fmt.Fprintf(w, "cpu per session baseline/vouch   %.3f (%.1f us / %.1f us, client and server)\n",
			c.CPURatio, c.Baseline.CPUPerSession, c.Vouch.CPUPerSession)
	}
	if c.ServerCPURatio > 0 {
		fmt.Fprintf(w, "server cpu per session b/v       %.3f (%.1f us / %.1f us, server processes alone)\n",
			c.ServerCPURatio, c.Baseline.ServerCPUPerSession, c.Vouch.ServerCPUPerSession)
	}
	fmt.Fprintf(w, "session p99 difference           %+.3f ms  target <= %v: %s\n",
		c.P99DiffMs, targetP99Diff, met(c.P99DiffMs <= ms(targetP99Diff)))
	fmt.Fprintf(w, "rcpt p99 difference              %+.3f ms\n", c.RcptP99DiffMs)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
