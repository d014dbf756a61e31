package config

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"log/syslog"
	"sync"
)

// syslogSocket is the local syslog daemon's socket.
var syslogSocket = "/dev/log"

// syslogHandler formats each record with the text or JSON handler and
// sends it as one syslog message, facility mail, its priority from the
// record's level.
type syslogHandler struct {
	w     *syslog.Writer
	inner slog.Handler
	mu    *sync.Mutex
	buf   *bytes.Buffer // what inner wrote for the record being handled
}

func newSyslogHandler(socket string, newHandler func(io.Writer) slog.Handler) (*syslogHandler, error) {
	w, err := syslog.Dial("unixgram", socket, syslog.LOG_MAIL|syslog.LOG_INFO, "vouch")
	if err != nil {
		return nil, err
	}
	buf := &bytes.Buffer{}
	return &syslogHandler{w: w, inner: newHandler(buf), mu: &sync.Mutex{}, buf: buf}, nil
}

func (h *syslogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	msg := string(bytes.TrimRight(h.buf.Bytes(), "\n"))
	switch {
	case r.Level >= slog.LevelError:
		return h.w.Err(msg)
	case r.Level >= slog.LevelWarn:
		return h.w.Warning(msg)
	case r.Level >= slog.LevelInfo:
		return h.w.Info(msg)
	}
	return h.w.Debug(msg)
}

func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(as)
	return &c
}

func (h *syslogHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}
