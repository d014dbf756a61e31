package metrics

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The metrics server's error lines are its own: logged with its
// component and counted, never as a milter protocol error.
func TestHTTPErrorLog(t *testing.T) {
	var out bytes.Buffer
	m := New(prometheus.NewRegistry(), "test")
	srv := NewHTTPServer(prometheus.NewRegistry(), m, slog.New(slog.NewTextHandler(&out, nil)).With("component", "metrics-http"), func() bool { return true })
	srv.ErrorLog.Print("http: Accept error: accept tcp: too many open files; retrying in 5ms")
	if got := testutil.ToFloat64(m.HTTPErrors); got != 1 {
		t.Errorf("counted %v", got)
	}
	if got := testutil.ToFloat64(m.MilterErrors.WithLabelValues("protocol")); got != 0 {
		t.Errorf("counted as a milter protocol error")
	}
	if !strings.Contains(out.String(), `msg="metrics server error" component=metrics-http err="http: Accept error`) {
		t.Errorf("logged %q", out.String())
	}
	if srv.IdleTimeout != HTTPIdleTimeout || srv.ReadTimeout == 0 || srv.WriteTimeout == 0 || srv.ReadHeaderTimeout == 0 {
		t.Errorf("timeouts %+v", srv)
	}
}

func TestReadyz(t *testing.T) {
	ready := false
	h := NewHTTPServer(prometheus.NewRegistry(), New(prometheus.NewRegistry(), "t"), slog.New(slog.DiscardHandler), func() bool { return ready }).Handler
	for _, tc := range []struct {
		ready bool
		code  int
	}{{false, 503}, {true, 200}} {
		ready = tc.ready
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != tc.code {
			t.Errorf("ready %v: /readyz %d, want %d", tc.ready, rec.Code, tc.code)
		}
	}
}
