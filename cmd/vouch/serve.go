package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/daemon"
)

// logBurst is how many lines of one warning a second reach the log.
const logBurst = 10

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
	if limit, ok := daemon.SoftMemoryLimit(os.Getenv("GOMEMLIMIT"), "/sys/fs/cgroup"); ok {
		debug.SetMemoryLimit(limit)
		logger.Info("memory limit set from the cgroup's", "soft_limit_bytes", limit)
	}
	d, err := daemon.New(cfg, flags.load, orDefaults(flags.configFile), versionString(), logger, level, prometheus.NewRegistry())
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
			d.Reload()
		}
	}()
	if err := d.Run(ctx); err != nil {
		logger.Error("stopped with an error", "err", err)
		return exitError
	}
	return exitOK
}

func orDefaults(path string) string {
	if path == "" {
		return "(embedded defaults)"
	}
	return path
}
