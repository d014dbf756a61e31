package milter

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/helo"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter/policy"
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
//
// The check runs under its stage's context (stageContext): the CONNECT,
// HELO or MAIL that replaces the stage cancels it, and its result is then
// neither used nor counted. At most maxChecksInFlight checks of one
// connection run at a time (checkState); past that, the check waits to
// start until a place frees or the decision needs it.
func startCheck[T any](c *conn, name checkName, fn func(context.Context, dns.Lookuper) T, verdict func(T) string, failed func(error) T, deps ...dependency) *future[T] {
	if v, d, ok := cachedCheck(c, fn, deps); ok {
		c.count(name, verdict(v), d)
		return resolved(v)
	}
	log, r, deadline := c.log, c.gen.resolver, c.gen.cfg.Checks.Deadline // a later CONNECT replaces c.log
	stage := c.stageContext(name)
	f := newFuture(&c.checks, func() (v T) {
		ctx, cancel := context.WithTimeout(stage, deadline)
		defer cancel()
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				log.Error("internal error in check; counting it as temperror", "check", string(name),
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				c.srv.metrics.MilterErrors.WithLabelValues("panic").Inc()
				v = failed(fmt.Errorf("internal error: %v", p))
			}
			// A check cut short because its stage was replaced or the
			// MTA hung up has no result worth counting: as a temperror
			// it would raise DNS alerts.
			if stage.Err() == nil {
				c.count(name, verdict(v), time.Since(start))
			}
			c.checks.done(c.ctx, stage, start.Add(deadline))
		}()
		return fn(ctx, r)
	})
	c.checks.submit(stage, f)
	return f
}

// maxChecksInFlight bounds the checks one connection runs at a time. A
// session needs four (iprev, HELO, SPF of HELO and of MAIL FROM) and a
// few more when a second EHLO (after STARTTLS) or the next message
// replaces some; a client sending HELO after HELO with new names gets no
// more than this many checks' worth of DNS queries in flight.
const maxChecksInFlight = 8

// checkState is a connection's checks: the context of each stage's and
// the places they hold.
type checkState struct {
	connect, helo, mail stageCtx

	mu       sync.Mutex
	inFlight int
	// pending are checks waiting for a place, oldest first.
	pending []pendingCheck
}

// stageCtx is a stage's context, made when its first background check
// starts: a session whose checks the cache answers makes none.
type stageCtx struct {
	begun  bool
	ctx    context.Context
	cancel context.CancelFunc
}

func (s *stageCtx) end() {
	if s.cancel != nil {
		s.cancel()
	}
	*s = stageCtx{}
}

type pendingCheck struct {
	ctx context.Context
	l   launcher
}

type launcher interface{ launch(reserved bool) }

// beginStage cancels the checks the stage started before, and those of
// the stages after it (a new CONNECT ends the HELO and the transaction, a
// new HELO the transaction).
func (c *conn) beginStage(stage policy.Stage) {
	s := &c.checks
	var st *stageCtx
	switch stage {
	case policy.StageConnect:
		s.mail.end()
		s.helo.end()
		st = &s.connect
	case policy.StageHelo:
		s.mail.end()
		st = &s.helo
	case policy.StageMail:
		st = &s.mail
	default:
		return
	}
	st.end()
	st.begun = true
}

// endTransaction cancels the checks MAIL FROM started (Abort, RSET).
func (c *conn) endTransaction() { c.checks.mail.end() }

// stageContext is the context of the stage that runs the check, or of the
// nearest earlier one that began (a test, vouch check, or HELO before
// CONNECT); a stage's context is under the earlier stage's.
func (c *conn) stageContext(name checkName) context.Context {
	s := &c.checks
	chain := [3]*stageCtx{&s.mail, &s.helo, &s.connect}
	from := 2
	switch name {
	case checkSPFMailFrom:
		from = 0
	case checkHelo, checkSPFHelo:
		from = 1
	}
	for i := from; i < len(chain); i++ {
		if chain[i].begun {
			return c.stageCtxOf(chain[i:])
		}
	}
	return c.ctx
}

// stageCtxOf makes, if need be, the context of chain[0], under the next
// stage in chain that began.
func (c *conn) stageCtxOf(chain []*stageCtx) context.Context {
	st := chain[0]
	if st.ctx == nil {
		parent := c.ctx
		for i := 1; i < len(chain); i++ {
			if chain[i].begun {
				parent = c.stageCtxOf(chain[i:])
				break
			}
		}
		st.ctx, st.cancel = context.WithCancel(parent)
	}
	return st.ctx
}

// submit starts f now if the connection has a place for it, else queues
// it. Queued checks whose stage was replaced meanwhile are dropped: they
// never run.
func (s *checkState) submit(ctx context.Context, f launcher) {
	s.mu.Lock()
	live := s.pending[:0]
	for _, p := range s.pending {
		if p.ctx.Err() == nil {
			live = append(live, p)
		}
	}
	clear(s.pending[len(live):])
	s.pending = live
	if s.inFlight < maxChecksInFlight {
		s.inFlight++
		s.mu.Unlock()
		f.launch(true)
		return
	}
	s.pending = append(s.pending, pendingCheck{ctx, f})
	s.mu.Unlock()
}

// done gives back a check's place. A check whose stage was replaced
// returned early, but the resolver's flights it started go on, detached,
// for up to the resolver's budget: its place is held until its own
// deadline, so that a flood of replacing commands cannot start lookups
// faster than they end.
func (s *checkState) done(conn, stage context.Context, deadline time.Time) {
	if stage.Err() != nil && conn.Err() == nil {
		if wait := time.Until(deadline); wait > 0 {
			time.AfterFunc(wait, s.release)
			return
		}
	}
	s.release()
}

func (s *checkState) release() {
	s.mu.Lock()
	s.inFlight--
	var next launcher
	for len(s.pending) > 0 && next == nil {
		p := s.pending[0]
		s.pending[0] = pendingCheck{}
		s.pending = s.pending[1:]
		if p.ctx.Err() == nil {
			next = p.l
			s.inFlight++
		}
	}
	s.mu.Unlock()
	if next != nil {
		next.launch(true)
	}
}

// launchPending starts every queued check still wanted, places or not:
// the decision waits for them.
func (s *checkState) launchPending() {
	s.mu.Lock()
	var wanted []launcher
	for _, p := range s.pending {
		if p.ctx.Err() == nil {
			wanted = append(wanted, p.l)
		}
	}
	s.pending = nil
	s.mu.Unlock()
	for _, l := range wanted {
		l.launch(false)
	}
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
// while DNS answers come in. A future may wait for a place to start
// (checkState); waiting for its value starts it.
type future[T any] struct {
	done    chan struct{}
	val     T
	run     func() T
	checks  *checkState
	started atomic.Bool
}

func newFuture[T any](s *checkState, fn func() T) *future[T] {
	return &future[T]{done: make(chan struct{}), run: fn, checks: s}
}

// launch starts the future once; reserved says the caller took its place
// in checkState.inFlight, which is given back if it had started already.
func (f *future[T]) launch(reserved bool) {
	if !f.started.CompareAndSwap(false, true) {
		if reserved {
			f.checks.release()
		}
		return
	}
	if !reserved {
		f.checks.mu.Lock()
		f.checks.inFlight++
		f.checks.mu.Unlock()
	}
	go func() {
		f.val = f.run()
		close(f.done)
	}()
}

// resolved is a future whose value is already known.
func resolved[T any](v T) *future[T] {
	f := &future[T]{done: make(chan struct{}), val: v}
	f.started.Store(true)
	close(f.done)
	return f
}

// wait returns the value, or ok=false when ctx ends first. A check still
// waiting for a place starts now, with every other the connection queued.
func (f *future[T]) wait(ctx context.Context) (v T, ok bool) {
	select {
	case <-f.done:
		return f.val, true
	default:
	}
	if !f.started.Load() {
		f.checks.launchPending()
		f.launch(false)
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
