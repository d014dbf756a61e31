package metrics

import (
	"fmt"
	stdlog "log"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vouch-mail/vouch/milter/textsafe"
)

// The metrics server's bounds: a scrape is one small request, answered in
// milliseconds; Prometheus keeps its connection alive between scrapes
// (every 15 s to 1 min), and a closed one costs it a reconnect.
const (
	HTTPReadHeaderTimeout = 5 * time.Second
	HTTPReadTimeout       = 10 * time.Second
	HTTPWriteTimeout      = 30 * time.Second
	HTTPIdleTimeout       = 15 * time.Second
	HTTPMaxHeaderBytes    = 16 << 10
)

// NewHTTPServer serves /metrics from reg, /healthz, and /readyz as ready
// says, within the bounds above. Its error lines (bad requests, TLS on the
// plain port, accept failures) go to log, apart from go-milter's, and are
// counted in m.HTTPErrors.
func NewHTTPServer(reg *prometheus.Registry, m *Metrics, log *slog.Logger, ready func() bool) *http.Server {
	return &http.Server{Handler: handler(reg, ready),
		ReadHeaderTimeout: HTTPReadHeaderTimeout, ReadTimeout: HTTPReadTimeout,
		WriteTimeout: HTTPWriteTimeout, IdleTimeout: HTTPIdleTimeout, MaxHeaderBytes: HTTPMaxHeaderBytes,
		// Its own log: the standard logger is go-milter's.
		ErrorLog: stdlog.New(httpErrorLog{log, m}, "", 0)}
}

// httpErrorLog takes the metrics server's error lines: logged, with the
// rate limit of every warning, and counted.
type httpErrorLog struct {
	log     *slog.Logger
	metrics *Metrics
}

func (h httpErrorLog) Write(p []byte) (int, error) {
	h.metrics.HTTPErrors.Inc()
	h.log.Warn("metrics server error", "err", textsafe.Log(strings.TrimRight(string(p), "\n")))
	return len(p), nil
}

func handler(reg *prometheus.Registry, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "vouch milter: /metrics /healthz /readyz\n")
	})
	return mux
}
