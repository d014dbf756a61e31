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
// interval: a flood of bad connections cannot flood the log. The first
// line of a message let through after some were held back carries
// suppressed=N, the count held back since the last one. Loggers derived
// from the returned handler (With, WithGroup) share its counts.
func RateLimit(h slog.Handler, burst int, interval time.Duration) slog.Handler {
	return &rateLimited{h: h, s: &rateState{burst: burst, interval: interval, now: time.Now, keys: map[string]*rateWindow{}}}
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
	keys     map[string]*rateWindow
}

type rateWindow struct {
	start      time.Time
	n          int // lines in this window
	suppressed int // held back since the last line let through
}

// maxRateKeys bounds the messages tracked; vouch's are constants, a few
// dozen.
const maxRateKeys = 1024

func (r *rateLimited) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r *rateLimited) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level < slog.LevelWarn {
		return r.h.Handle(ctx, rec)
	}
	held, ok := r.s.admit(rec.Message)
	if !ok {
		return nil
	}
	if held > 0 {
		rec = rec.Clone()
		rec.AddAttrs(slog.Int("suppressed", held))
	}
	return r.h.Handle(ctx, rec)
}

// admit reports whether a line with msg may be written now, and how many
// were held back before it.
func (s *rateState) admit(msg string) (held int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	w := s.keys[msg]
	if w == nil {
		if len(s.keys) >= maxRateKeys {
			clear(s.keys)
		}
		w = &rateWindow{start: now}
		s.keys[msg] = w
	}
	if now.Sub(w.start) >= s.interval {
		w.start, w.n = now, 0
	}
	w.n++
	if w.n > s.burst {
		w.suppressed++
		return 0, false
	}
	held, w.suppressed = w.suppressed, 0
	return held, true
}

func (r *rateLimited) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &rateLimited{h: r.h.WithAttrs(attrs), s: r.s}
}

func (r *rateLimited) WithGroup(name string) slog.Handler {
	return &rateLimited{h: r.h.WithGroup(name), s: r.s}
}
