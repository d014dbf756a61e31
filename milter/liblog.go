package milter

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/vouch-mail/vouch/milter/metrics"
	"github.com/vouch-mail/vouch/milter/textsafe"
)

// LibraryLog is an io.Writer for the standard logger, through which
// go-milter reports what goes wrong on a connection. The wire hands
// go-milter only whole, well-formed packets of commands it knows, ends a
// failed connection as a plain EOF, and takes every write into its own
// buffer, so go-milter's read, parse, unknown-command and write errors do
// not occur: the wire logs each, with the connection's logger. What is
// left is a panic inside go-milter itself (a panic in vouch's callbacks is
// recovered by the session's guard) or an error a callback returned; the
// lines carry no connection, as go-milter does not say which it was.
func LibraryLog(l *slog.Logger, m *metrics.Metrics) io.Writer {
	return libraryLog{l, m}
}

type libraryLog struct {
	l *slog.Logger
	m *metrics.Metrics
}

// libraryPanicPrefix starts go-milter's line for a panic it recovered
// (session.go, HandleMilterCommands); TestLibraryLogLines pins it.
const libraryPanicPrefix = "panic handling command: "

func (w libraryLog) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	kind := "protocol"
	if strings.HasPrefix(line, libraryPanicPrefix) {
		kind = "panic"
	}
	if w.m != nil {
		w.m.MilterErrors.WithLabelValues(kind).Inc()
	}
	// The first line is enough: go-milter appends a stack to panics.
	first, _, _ := strings.Cut(line, "\n")
	w.l.Warn("milter connection error", "component", "go-milter", "err", textsafe.Log(first))
	return len(p), nil
}

// RateLimit returns a handler that passes every record below Warn to h,
// and at most burst warnings and errors with the same message per
// interval: a flood of bad connections cannot flood the log. What was held
// back in an interval is reported at its end, once: the last line held
// back, with suppressed=N, the count. Loggers derived from the returned
// handler (With, WithGroup) share its counts.
func RateLimit(h slog.Handler, burst int, interval time.Duration) slog.Handler {
	return &rateLimited{h: h, s: &rateState{burst: burst, interval: interval, now: time.Now,
		after: func(d time.Duration, f func()) { time.AfterFunc(d, f) }, keys: map[string]*rateWindow{}}}
}

type rateLimited struct {
	h slog.Handler
	s *rateState
}

type rateState struct {
	mu       sync.Mutex
	burst    int
	interval time.Duration
	now      func() time.Time
	after    func(time.Duration, func()) // time.AfterFunc; tests replace it
	keys     map[string]*rateWindow
}

type rateWindow struct {
	start time.Time
	n     int // lines in this window
	// suppressed counts the lines held back in this window; last is the
	// latest of them, with the handler that would have written it.
	suppressed int
	last       slog.Record
	lastH      slog.Handler
}

// maxRateKeys bounds the messages tracked; vouch's are constants, a few
// dozen.
const maxRateKeys = 1024

func (r *rateLimited) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r *rateLimited) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level < slog.LevelWarn || r.s.admit(r.h, rec) {
		return r.h.Handle(ctx, rec)
	}
	return nil
}

// admit reports whether rec may be written now; if not, it is counted,
// and the first held back in a window schedules the window's report.
func (s *rateState) admit(h slog.Handler, rec slog.Record) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	w := s.keys[rec.Message]
	if w == nil {
		if len(s.keys) >= maxRateKeys {
			clear(s.keys)
		}
		w = &rateWindow{start: now}
		s.keys[rec.Message] = w
	}
	if now.Sub(w.start) >= s.interval && w.suppressed == 0 {
		w.start, w.n = now, 0
	}
	w.n++
	if w.n <= s.burst && w.suppressed == 0 {
		return true
	}
	if w.suppressed == 0 {
		msg := rec.Message
		s.after(s.interval-now.Sub(w.start), func() { s.report(msg) })
	}
	w.suppressed++
	w.last, w.lastH = rec.Clone(), h
	return false
}

// report writes the window's last line held back, with the count, and
// starts a new window.
func (s *rateState) report(msg string) {
	s.mu.Lock()
	w := s.keys[msg]
	if w == nil || w.suppressed == 0 {
		s.mu.Unlock()
		return
	}
	rec, h, n := w.last, w.lastH, w.suppressed
	w.suppressed, w.last, w.lastH = 0, slog.Record{}, nil
	w.start, w.n = s.now(), 0
	s.mu.Unlock()
	rec.AddAttrs(slog.Int("suppressed", n))
	h.Handle(context.Background(), rec)
}

func (r *rateLimited) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &rateLimited{h: r.h.WithAttrs(attrs), s: r.s}
}

func (r *rateLimited) WithGroup(name string) slog.Handler {
	return &rateLimited{h: r.h.WithGroup(name), s: r.s}
}
