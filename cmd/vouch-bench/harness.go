package main

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
)

// harnessTB lets the postfix command start Postfix with the end-to-end
// tests' harness (deploy/e2e/mta), which takes a testing.TB. It
// implements the methods that harness calls; the embedded TB is nil, so
// any other would panic, which the harness's tests would show first.
type harnessTB struct {
	testing.TB
	log      io.Writer
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// harnessFatal is what Fatal panics with: the command recovers it where
// it starts Postfix.
type harnessFatal struct{}

func (h *harnessTB) Helper()      {}
func (h *harnessTB) Name() string { return "vouch-bench-postfix" }

func (h *harnessTB) Cleanup(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, f)
}

func (h *harnessTB) Logf(string, ...any) {}

func (h *harnessTB) Errorf(format string, args ...any) {
	h.mu.Lock()
	h.failed = true
	h.mu.Unlock()
	fmt.Fprintf(h.log, "vouch-bench postfix: "+format+"\n", args...)
}

func (h *harnessTB) Fatalf(format string, args ...any) {
	h.Errorf(format, args...)
	panic(harnessFatal{})
}

func (h *harnessTB) Fatal(args ...any) { h.Fatalf("%s", fmt.Sprint(args...)) }

func (h *harnessTB) Skipf(format string, args ...any) { h.Fatalf(format, args...) }

func (h *harnessTB) Failed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed
}

// close runs the cleanups, last first, as testing does.
func (h *harnessTB) close() {
	h.mu.Lock()
	c := h.cleanups
	h.cleanups = nil
	h.mu.Unlock()
	for _, f := range slices.Backward(c) {
		f()
	}
}
