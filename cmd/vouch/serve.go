package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/metrics"
	"github.com/vouch-mail/vouch/milter/socket"
	"github.com/vouch-mail/vouch/milter/textsafe"
)

func serveCommand(args []string, stderr io.Writer) int {
	flags, err := parseServeFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(stderr, "vouch:", err)
		return exitUsage
	}
	cfg, err := flags.load()
	if err != nil {
		fmt.Fprintln(stderr, "vouch: configuration not loaded:")
		fmt.Fprintln(stderr, err)
		return exitError
	}
	level := new(slog.LevelVar)
	logger, err := cfg.Log.NewLogger(os.Stderr, level)
	if err != nil {
		fmt.Fprintln(stderr, "vouch:", err)
		return exitError
	}
	// A flood of bad connections must not flood the log: each warning
	// at most logBurst times a second, with the count held back.
	logger = slog.New(milter.RateLimit(logger.Handler(), logBurst, time.Second))
	for _, w := range cfg.Warnings {
		logger.Warn("configuration warning", "warning", w.Error())
	}
	if limit, ok := softMemoryLimit(os.Getenv("GOMEMLIMIT"), "/sys/fs/cgroup"); ok {
		debug.SetMemoryLimit(limit)
		logger.Info("memory limit set from the cgroup's", "soft_limit_bytes", limit)
	}
	d, err := newDaemon(cfg, flags, logger, prometheus.NewRegistry())
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitError
	}
	d.level = level

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			d.reload()
		}
	}()
	if err := d.run(ctx); err != nil {
		logger.Error("stopped with an error", "err", err)
		return exitError
	}
	return exitOK
}

// daemon is a running vouch: a milter server, its metrics listener and
// the configuration they were built from.
type daemon struct {
	log      *slog.Logger
	flags    *flagOverrides
	reg      *prometheus.Registry
	metrics  *metrics.Metrics
	server   *milter.Server
	milterLn net.Listener
	httpLn   net.Listener
	http     *http.Server
	ready    atomic.Bool
	// level is the running logger's level: a reload sets it.
	level *slog.LevelVar

	// started is the configuration the listeners were opened with; cfg
	// is the one in force.
	started  *config.Config
	cfg      atomic.Pointer[config.Config]
	resolver *dns.Resolver
	// blocked counts reads of the configuration still running past
	// reloadTimeout (a FIFO, a hung NFS mount): each holds a thread.
	blocked       atomic.Int32
	reloadTimeout time.Duration
}

// logBurst is how many lines of one warning a second reach the log.
const logBurst = 10

// reloadTimeout bounds the read of the configuration file at a reload: a
// real file is read in microseconds. A read still blocked is abandoned,
// the reload fails, and the next SIGHUP starts a new one, up to
// maxBlockedReloads abandoned at once.
const (
	reloadTimeout     = 5 * time.Second
	maxBlockedReloads = 4
)

// The metrics server's bounds: a scrape is one small request, answered in
// milliseconds; Prometheus keeps its connection alive between scrapes
// (every 15 s to 1 min), and a closed one costs it a reconnect.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 10 * time.Second
	httpWriteTimeout      = 30 * time.Second
	httpIdleTimeout       = 15 * time.Second
	httpMaxHeaderBytes    = 16 << 10
)

func newDaemon(cfg *config.Config, flags *flagOverrides, logger *slog.Logger, reg *prometheus.Registry) (*daemon, error) {
	d := &daemon{log: logger, flags: flags, reg: reg, reloadTimeout: reloadTimeout}
	d.metrics = metrics.New(reg, versionString())
	// go-milter reports protocol errors through the standard logger.
	log.SetFlags(0)
	log.SetOutput(milter.LibraryLog(logger, d.metrics))

	res, err := dns.New(cfg.DNS, d.metrics.DNSObserver())
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	d.resolver = res
	if d.server, err = milter.NewServer(cfg, res, milter.Options{Logger: logger, Metrics: d.metrics}); err != nil {
		return nil, err
	}
	if d.milterLn, err = socket.Listen(cfg.Milter.Listen, socket.Options{Mode: cfg.Milter.SocketMode, Group: cfg.Milter.SocketGroup}); err != nil {
		return nil, err
	}
	if cfg.Metrics.Listen != "" {
		if d.httpLn, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			d.milterLn.Close()
			return nil, fmt.Errorf("metrics listen %s: %w", cfg.Metrics.Listen, err)
		}
	}
	d.started = cfg
	d.cfg.Store(cfg)
	d.metrics.Reloaded(true, cfg.Policy.Preset, string(cfg.Policy.DecideAt))
	return d, nil
}

// run serves until ctx ends, then shuts down gracefully.
func (d *daemon) run(ctx context.Context) error {
	cfg := d.cfg.Load()
	errc := make(chan error, 2)
	go func() { errc <- d.server.Serve(d.milterLn) }()
	if d.httpLn != nil {
		d.http = &http.Server{Handler: d.handler(),
			ReadHeaderTimeout: httpReadHeaderTimeout, ReadTimeout: httpReadTimeout,
			WriteTimeout: httpWriteTimeout, IdleTimeout: httpIdleTimeout, MaxHeaderBytes: httpMaxHeaderBytes,
			// Its own log: the standard logger is go-milter's.
			ErrorLog: log.New(httpErrorLog{d.log.With("component", "metrics-http"), d.metrics}, "", 0)}
		go func() { errc <- d.http.Serve(d.httpLn) }()
	}
	d.ready.Store(true)
	notifyReady(d.log)
	d.log.Info("vouch started", "version", versionString(), "milter", d.milterLn.Addr().String(),
		"metrics", cfg.Metrics.Listen, "dns", strings.Join(d.resolver.Servers(), " "), "preset", cfg.Policy.Preset, "decide_at", string(cfg.Policy.DecideAt),
		"config", orDefaults(d.flags.configFile))

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("listener failed: %w", err)
	}
	d.ready.Store(false)
	notifyStopping(d.log)
	timeout := d.cfg.Load().Milter.ShutdownTimeout
	d.log.Info("shutting down: no new milter connections; waiting for open ones",
		"open", d.server.Active(), "shutdown_timeout", timeout)
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if serr := d.server.Shutdown(sctx); serr != nil {
		d.log.Warn("shutdown timeout reached; closed the remaining milter connections (the MTA applies its default action)", "err", serr)
	}
	if d.http != nil {
		hctx, hcancel := context.WithTimeout(context.Background(), time.Second)
		d.http.Shutdown(hctx)
		hcancel()
	}
	d.log.Info("vouch stopped")
	return err
}

func orDefaults(path string) string {
	if path == "" {
		return "(embedded defaults)"
	}
	return path
}

// reload rereads the configuration. A bad file changes nothing; a good
// one applies to SMTP sessions that start afterwards. The file is read
// with config.Load's size cap and within reloadTimeout.
func (d *daemon) reload() {
	defer notifyReloading(d.log)()
	fail := func(err error) {
		d.log.Error("reload failed; keeping the running configuration", "config", orDefaults(d.flags.configFile),
			"err", strings.ReplaceAll(err.Error(), "\n", "; "))
		d.metrics.Reloaded(false, "", "")
	}
	cfg, ok, err := d.loadWithin()
	if !ok {
		return
	}
	if err != nil {
		fail(err)
		return
	}
	old := d.cfg.Load()
	res := d.resolver
	if !reflect.DeepEqual(old.DNS, cfg.DNS) {
		if res, err = dns.New(cfg.DNS, d.metrics.DNSObserver()); err != nil {
			fail(err)
			return
		}
	}
	if err := d.server.Update(cfg, res); err != nil {
		fail(err)
		return
	}
	for _, w := range cfg.Warnings {
		d.log.Warn("configuration warning", "warning", w.Error())
	}
	// Compared with what the listeners and the log handler run with,
	// not with the last file read: putting the old value back is quiet.
	for _, key := range config.Changed(d.started, cfg) {
		if config.RestartOnly(key) {
			d.log.Warn("setting changed; it applies only after a restart", "key", key)
		}
	}
	d.resolver = res
	if d.level != nil {
		d.level.Set(cfg.Log.Level)
	}
	d.cfg.Store(cfg)
	d.metrics.Reloaded(true, cfg.Policy.Preset, string(cfg.Policy.DecideAt))
	d.log.Info("configuration reloaded", "config", orDefaults(d.flags.configFile),
		"preset", cfg.Policy.Preset, "decide_at", string(cfg.Policy.DecideAt))
}

// loadWithin loads the configuration as flags say, within
// d.reloadTimeout; ok is false when it did not (the reload was reported
// as timed out or refused).
func (d *daemon) loadWithin() (cfg *config.Config, ok bool, err error) {
	if n := d.blocked.Load(); n > 0 {
		if n >= maxBlockedReloads {
			d.log.Error("reload refused: earlier reads of the configuration are still blocked; keeping the running configuration",
				"config", orDefaults(d.flags.configFile), "blocked", n)
			d.metrics.Reloaded(false, "", "")
			return nil, false, nil
		}
		d.log.Warn("an earlier read of the configuration is still blocked; reading it again",
			"config", orDefaults(d.flags.configFile), "blocked", n)
	}
	type result struct {
		cfg *config.Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		cfg, err := d.flags.load()
		done <- result{cfg, err}
	}()
	timer := time.NewTimer(d.reloadTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.cfg, true, r.err
	case <-timer.C:
	}
	d.metrics.ReloadsBlocked.Set(float64(d.blocked.Add(1)))
	go func() {
		<-done // the abandoned read; its result is stale
		d.metrics.ReloadsBlocked.Set(float64(d.blocked.Add(-1)))
	}()
	d.log.Error("reload timed out reading the configuration; keeping the running configuration",
		"config", orDefaults(d.flags.configFile), "timeout", d.reloadTimeout)
	d.metrics.ReloadTimedOut()
	return nil, false, nil
}

// httpErrorLog takes the metrics server's error lines (bad requests, TLS
// on the plain port, accept failures): logged apart from go-milter's,
// with the rate limit of every warning, and counted.
type httpErrorLog struct {
	log     *slog.Logger
	metrics *metrics.Metrics
}

func (h httpErrorLog) Write(p []byte) (int, error) {
	h.metrics.HTTPErrors.Inc()
	h.log.Warn("metrics server error", "err", textsafe.Log(strings.TrimRight(string(p), "\n")))
	return len(p), nil
}

// softMemoryLimit is the Go runtime's soft memory limit for a daemon in a
// memory cgroup (a container, a systemd MemoryMax): 80% of the cgroup's
// limit, so that the collector works harder before the kernel kills.
// Without it the heap may grow to twice the live memory (GOGC), and a
// burst of sessions holding packets can cross the limit (docs/hardening.md,
// memory). ok is false when GOMEMLIMIT is set (the operator's choice
// stands) or no limit applies.
func softMemoryLimit(gomemlimit, cgroupRoot string) (int64, bool) {
	if gomemlimit != "" {
		return 0, false
	}
	for _, f := range []string{"memory.max", "memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(filepath.Join(cgroupRoot, f))
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		// "max", or cgroup v1's "no limit" (a page-rounded maximum).
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0, false
		}
		return n * 8 / 10, true
	}
	return 0, false
}

func (d *daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !d.ready.Load() {
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
