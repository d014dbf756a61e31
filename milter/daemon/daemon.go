// Package daemon is a running vouch: the milter server and its
// listeners, the metrics endpoint, reloads and a graceful stop, with
// systemd told of each (sd_notify). cmd/vouch parses the flags and
// signals and hands them here.
package daemon

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/metrics"
	"github.com/vouch-mail/vouch/milter/socket"
)

// Daemon is a running vouch: a milter server, its metrics listener and
// the configuration they were built from.
type Daemon struct {
	log *slog.Logger
	// load reads the configuration (file and flags) at a reload;
	// source names it in logs.
	load     func() (*config.Config, error)
	source   string
	version  string
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

// reloadTimeout bounds the read of the configuration file at a reload: a
// real file is read in microseconds. A read still blocked is abandoned,
// the reload fails, and the next SIGHUP starts a new one, up to
// maxBlockedReloads abandoned at once.
const (
	reloadTimeout     = 5 * time.Second
	maxBlockedReloads = 4
)

// New opens the listeners and builds the server for cfg. load rereads
// the configuration at each reload (source names it in logs); level, if
// not nil, is the running logger's level, which a reload sets.
func New(cfg *config.Config, load func() (*config.Config, error), source, version string, logger *slog.Logger, level *slog.LevelVar, reg *prometheus.Registry) (*Daemon, error) {
	d := &Daemon{log: logger, load: load, source: source, version: version, level: level, reg: reg, reloadTimeout: reloadTimeout}
	d.metrics = metrics.New(reg, version)
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

// Run serves until ctx ends, then shuts down gracefully.
func (d *Daemon) Run(ctx context.Context) error {
	cfg := d.cfg.Load()
	errc := make(chan error, 2)
	go func() { errc <- d.server.Serve(d.milterLn) }()
	if d.httpLn != nil {
		d.http = metrics.NewHTTPServer(d.reg, d.metrics, d.log.With("component", "metrics-http"), d.ready.Load)
		go func() { errc <- d.http.Serve(d.httpLn) }()
	}
	d.ready.Store(true)
	notifyReady(d.log)
	d.log.Info("vouch started", "version", d.version, "milter", d.milterLn.Addr().String(),
		"metrics", cfg.Metrics.Listen, "dns", strings.Join(d.resolver.Servers(), " "), "preset", cfg.Policy.Preset, "decide_at", string(cfg.Policy.DecideAt),
		"config", d.source)

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

// reload rereads the configuration. A bad file changes nothing; a good
// one applies to SMTP sessions that start afterwards. The file is read
// with config.Load's size cap and within reloadTimeout.
func (d *Daemon) Reload() {
	defer notifyReloading(d.log)()
	fail := func(err error) {
		d.log.Error("reload failed; keeping the running configuration", "config", d.source,
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
	d.log.Info("configuration reloaded", "config", d.source,
		"preset", cfg.Policy.Preset, "decide_at", string(cfg.Policy.DecideAt))
}

// loadWithin loads the configuration as flags say, within
// d.reloadTimeout; ok is false when it did not (the reload was reported
// as timed out or refused).
func (d *Daemon) loadWithin() (cfg *config.Config, ok bool, err error) {
	if n := d.blocked.Load(); n > 0 {
		if n >= maxBlockedReloads {
			d.log.Error("reload refused: earlier reads of the configuration are still blocked; keeping the running configuration",
				"config", d.source, "blocked", n)
			d.metrics.Reloaded(false, "", "")
			return nil, false, nil
		}
		d.log.Warn("an earlier read of the configuration is still blocked; reading it again",
			"config", d.source, "blocked", n)
	}
	type result struct {
		cfg *config.Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		cfg, err := d.load()
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
		"config", d.source, "timeout", d.reloadTimeout)
	d.metrics.ReloadTimedOut()
	return nil, false, nil
}

// SoftMemoryLimit is the Go runtime's soft memory limit for a daemon in a
// memory cgroup (a container, a systemd MemoryMax): 80% of the cgroup's
// limit, so that the collector works harder before the kernel kills.
// Without it the heap may grow to twice the live memory (GOGC), and a
// burst of sessions holding packets can cross the limit (docs/hardening.md,
// memory). ok is false when GOMEMLIMIT is set (the operator's choice
// stands) or no limit applies.
func SoftMemoryLimit(gomemlimit, cgroupRoot string) (int64, bool) {
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
