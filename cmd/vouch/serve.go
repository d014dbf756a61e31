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
	"github.com/vouch-mail/vouch/milter/socket"
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
	for _, w := range cfg.Warnings {
		logger.Warn("configuration warning", "warning", w.Error())
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
}

func newDaemon(cfg *config.Config, flags *flagOverrides, logger *slog.Logger, reg *prometheus.Registry) (*daemon, error) {
	d := &daemon{log: logger, flags: flags, reg: reg}
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
		d.http = &http.Server{Handler: d.handler(), ReadHeaderTimeout: 10 * time.Second}
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
// one applies to SMTP sessions that start afterwards.
func (d *daemon) reload() {
	defer notifyReloading(d.log)()
	fail := func(err error) {
		d.log.Error("reload failed; keeping the running configuration", "config", orDefaults(d.flags.configFile),
			"err", strings.ReplaceAll(err.Error(), "\n", "; "))
		d.metrics.Reloaded(false, "", "")
	}
	cfg, err := d.flags.load()
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
