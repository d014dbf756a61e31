package milter

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/helo"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
)

// checkName names a check run; it is the check label of
// vouch_check_results_total and vouch_check_duration_seconds.
type checkName string

const (
	checkIprev       checkName = "iprev"
	checkHelo        checkName = "helo"
	checkSPFMailFrom checkName = "spf_mailfrom"
	checkSPFHelo     checkName = "spf_helo"
)

// checkNames lists every check run, for the metrics tests.
var checkNames = []checkName{checkIprev, checkHelo, checkSPFMailFrom, checkSPFHelo}

func iprevVerdict(r iprev.Result) string { return string(r.Verdict) }
func heloVerdict(r helo.Result) string   { return string(r.Verdict) }
func spfVerdict(r spf.Result) string     { return string(r.Verdict) }

func iprevFailed(err error) iprev.Result { return iprev.Result{Verdict: iprev.TempError, Err: err} }
func heloFailed(err error) helo.Result   { return helo.Result{Verdict: helo.TempError, Err: err} }
func spfFailed(id spf.Identity) func(error) spf.Result {
	return func(err error) spf.Result {
		return spf.Result{Identity: id, Verdict: spf.TempError, Problem: "internal error", Err: err}
	}
}

// startCheck runs fn in the background under the check deadline and counts
// its result and duration. A panic in a check becomes failed(err): a
// temperror, so the mail is retried rather than lost or the daemon killed.
// When the resolver's cache holds every answer fn needs and the futures
// fn waits for (deps) are done, fn runs at once instead (cachedCheck).
func startCheck[T any](c *conn, name checkName, fn func(context.Context, dns.Lookuper) T, verdict func(T) string, failed func(error) T, deps ...dependency) *future[T] {
	if v, d, ok := cachedCheck(c, fn, deps); ok {
		c.count(name, verdict(v), d)
		return resolved(v)
	}
	log, r, deadline := c.log, c.gen.resolver, c.gen.cfg.Checks.Deadline // a later CONNECT replaces c.log
	return startFuture(func() (v T) {
		ctx, cancel := context.WithTimeout(c.ctx, deadline)
		defer cancel()
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				log.Error("internal error in check; counting it as temperror", "check", string(name),
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				c.srv.metrics.MilterErrors.WithLabelValues("panic").Inc()
				v = failed(fmt.Errorf("internal error: %v", p))
			}
			// A check cut short because the MTA hung up has no result
			// worth counting: as a temperror it would raise DNS alerts.
			if c.ctx.Err() == nil {
				c.count(name, verdict(v), time.Since(start))
			}
		}()
		return fn(ctx, r)
	})
}

// cachedCheck runs fn in the caller's goroutine over a cache-only view of
// the resolver. With a warm cache, the common case, a check then costs no
// goroutine, no timer and none of the stack growth a new goroutine pays
// for an SPF evaluation (commit b749a10); its result is the same, since
// the background run would read the same cache. ok is false, and the
// result is thrown away, when a lookup missed the cache, when a
// dependency is not done yet (fn would wait for it), when fn panicked
// (the background run reports that), or when the resolver has no cache.
func cachedCheck[T any](c *conn, fn func(context.Context, dns.Lookuper) T, deps []dependency) (v T, d time.Duration, ok bool) {
	for _, dep := range deps {
		if !dep.ready() {
			return v, 0, false
		}
	}
	view := c.gen.resolver.CacheOnly()
	if view == nil {
		return v, 0, false
	}
	start := time.Now()
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	v = fn(c.ctx, view)
	if view.Missed() {
		return v, 0, false
	}
	view.Keep()
	return v, time.Since(start), true
}

func (c *conn) count(check checkName, result string, d time.Duration) {
	c.srv.metrics.CheckResults.WithLabelValues(string(check), result).Inc()
	c.srv.metrics.CheckDuration.WithLabelValues(string(check)).Observe(d.Seconds())
}

// future is a check running in the background; the SMTP dialogue goes on
// while DNS answers come in.
type future[T any] struct {
	done chan struct{}
	val  T
}

func startFuture[T any](fn func() T) *future[T] {
	f := &future[T]{done: make(chan struct{})}
	go func() {
		f.val = fn()
		close(f.done)
	}()
	return f
}

// resolved is a future whose value is already known.
func resolved[T any](v T) *future[T] {
	f := &future[T]{done: make(chan struct{}), val: v}
	close(f.done)
	return f
}

// wait returns the value, or ok=false when ctx ends first.
func (f *future[T]) wait(ctx context.Context) (v T, ok bool) {
	select {
	case <-f.done:
		return f.val, true
	default:
	}
	select {
	case <-f.done:
		return f.val, true
	case <-ctx.Done():
		return v, false
	}
}

// dependency is a future a check waits for.
type dependency interface{ ready() bool }

// ready reports whether wait would return at once. A nil future is
// ready: there is nothing to wait for.
func (f *future[T]) ready() bool {
	if f == nil {
		return true
	}
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}
