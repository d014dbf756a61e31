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
	"reflect"
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
	logger := cfg.Logger(os.Stderr)
	d, err := newDaemon(cfg, flags, logger, prometheus.NewRegistry())
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitError
	}

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

	cfg      atomic.Pointer[config.Config]
	resolver *dns.Resolver
}

func newDaemon(cfg *config.Config, flags *flagOverrides, logger *slog.Logger, reg *prometheus.Registry) (*daemon, error) {
	d := &daemon{log: logger, flags: flags, reg: reg}
	d.metrics = metrics.New(reg, versionString())
	// go-milter reports protocol errors through the standard logger.
	log.SetFlags(0)
	log.SetOutput(milter.LibraryLog(logger, d.metrics))

	res, err := dns.New(cfg.ResolverConfig(), d.metrics.DNSObserver())
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	d.resolver = res
	settings, err := cfg.Settings(res)
	if err != nil {
		return nil, err
	}
	opts := cfg.ServerOptions()
	opts.Logger, opts.Metrics = logger, d.metrics
	d.server = milter.NewServer(settings, opts)

	if d.milterLn, err = milter.Listen(cfg.ListenAddress(), cfg.ListenOptions()); err != nil {
		return nil, err
	}
	if cfg.Metrics.Listen != "" {
		if d.httpLn, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			d.milterLn.Close()
			return nil, fmt.Errorf("metrics listen %s: %w", cfg.Metrics.Listen, err)
		}
	}
	d.cfg.Store(cfg)
	d.metrics.Reloaded(true, cfg.Policy.Preset, cfg.Policy.DecideAt)
	return d, nil
}

// run serves until ctx ends, then shuts down gracefully.
func (d *daemon) run(ctx context.Context) error {
	cfg := d.cfg.Load()
	errc := make(chan error, 2)
	go func() { errc <- d.server.Serve(d.milterLn) }()
	if d.httpLn != nil {
		d.http = &http.Server{Handler: d.handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- d.http.Serve(d.httpLn) }()
	}
	d.ready.Store(true)
	notifyReady(d.log)
	d.log.Info("vouch started", "version", versionString(), "milter", d.milterLn.Addr().String(),
		"metrics", cfg.Metrics.Listen, "preset", cfg.Policy.Preset, "decide_at", cfg.Policy.DecideAt,
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
// one applies to SMTP sessions that start afterwards.
func (d *daemon) reload() {
	defer notifyReloading(d.log)()
	cfg, err := d.flags.load()
	if err != nil {
		d.log.Error("reload failed; keeping the running configuration", "config", orDefaults(d.flags.configFile),
			"err", strings.ReplaceAll(err.Error(), "\n", "; "))
		d.metrics.Reloaded(false, "", "")
		return
	}
	old := d.cfg.Load()
	res := d.resolver
	if !reflect.DeepEqual(old.DNS, cfg.DNS) {
		nr, err := dns.New(cfg.ResolverConfig(), d.metrics.DNSObserver())
		if err != nil {
			d.log.Error("reload failed; keeping the running configuration", "err", err)
			d.metrics.Reloaded(false, "", "")
			return
		}
		res = nr
	}
	settings, err := cfg.Settings(res)
	if err != nil {
		d.log.Error("reload failed; keeping the running configuration", "err", err)
		d.metrics.Reloaded(false, "", "")
		return
	}
	for _, ch := range restartOnly(old, cfg) {
		d.log.Warn("setting changed; it applies only after a restart", "key", ch)
	}
	d.resolver = res
	d.server.Update(settings)
	d.cfg.Store(cfg)
	d.metrics.Reloaded(true, cfg.Policy.Preset, cfg.Policy.DecideAt)
	d.log.Info("configuration reloaded", "config", orDefaults(d.flags.configFile),
		"preset", cfg.Policy.Preset, "decide_at", cfg.Policy.DecideAt)
}

// restartOnly lists changed keys that a reload cannot apply.
func restartOnly(old, cfg *config.Config) []string {
	var keys []string
	if !reflect.DeepEqual(old.Milter, cfg.Milter) {
		// shutdown_timeout is read at shutdown, so it does apply.
		o, n := old.Milter, cfg.Milter
		o.ShutdownTimeout, n.ShutdownTimeout = 0, 0
		if o != n {
			keys = append(keys, "milter")
		}
	}
	if old.Metrics != cfg.Metrics {
		keys = append(keys, "metrics.listen")
	}
	if old.Log != cfg.Log {
		keys = append(keys, "log")
	}
	return keys
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
