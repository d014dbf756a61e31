package milter

import (
	"io"
	"log/slog"
	"strings"

	"github.com/vouch-mail/vouch/milter/metrics"
	"github.com/vouch-mail/vouch/milter/textsafe"
)

// LibraryLog is an io.Writer for the standard logger, through which
// go-milter reports what goes wrong on a connection (a malformed packet, an
// unknown command, a write to a vanished MTA). Each line becomes a warning
// in vouch's log and, for protocol errors, a metric.
func LibraryLog(l *slog.Logger, m *metrics.Metrics) io.Writer {
	return libraryLog{l, m}
}

type libraryLog struct {
	l *slog.Logger
	m *metrics.Metrics
}

func (w libraryLog) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	kind := "protocol"
	switch {
	case strings.Contains(line, "use of closed network connection"),
		strings.Contains(line, "i/o timeout"):
		// Our own shutdown or idle timeout closed it; counted there.
		kind = ""
	case strings.HasPrefix(line, "panic"):
		kind = "panic"
	}
	if kind != "" && w.m != nil {
		w.m.MilterErrors.WithLabelValues(kind).Inc()
	}
	// The first line is enough: go-milter appends a stack to panics.
	first, _, _ := strings.Cut(line, "\n")
	w.l.Warn("milter connection error", "component", "go-milter", "err", textsafe.Log(first))
	return len(p), nil
}
