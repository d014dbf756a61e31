package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

func TestReadyzURL(t *testing.T) {
	for _, c := range []struct{ listen, want string }{
		{"127.0.0.1:9895", "http://127.0.0.1:9895/readyz"},
		{"0.0.0.0:9895", "http://127.0.0.1:9895/readyz"}, // the container image's -metrics.listen
		{":9895", "http://127.0.0.1:9895/readyz"},
		{"[::]:9895", "http://[::1]:9895/readyz"},
		{"[::1]:9000", "http://[::1]:9000/readyz"},
		{"192.0.2.7:9895", "http://192.0.2.7:9895/readyz"},
	} {
		t.Run(c.listen, func(t *testing.T) {
			got, err := readyzURL(c.listen)
			if err != nil || got != c.want {
				t.Errorf("readyzURL(%q) = %q, %v; want %q", c.listen, got, err, c.want)
			}
		})
	}
	if _, err := readyzURL(""); err == nil || !strings.Contains(err.Error(), "no health endpoint") {
		t.Errorf("empty metrics.listen: %v", err)
	}
}

// TestHealthcheck runs "vouch healthcheck" against a running vouch, found
// through its configuration file, through the flag, and gone.
func TestHealthcheck(t *testing.T) {
	port := freePort(t)
	metrics := fmt.Sprintf("0.0.0.0:%d", port) // as in the container image
	cfg := filepath.Join(t.TempDir(), "vouch.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("milter:\n  listen: inet:%d@127.0.0.1\nmetrics:\n  listen: %s\n", freePort(t), metrics)), 0o644)
	c := startChild(t, "-config", cfg)

	for name, args := range map[string][]string{
		"config": {"healthcheck", "-config", cfg},
		"flag":   {"healthcheck", "-metrics.listen", fmt.Sprintf("127.0.0.1:%d", port)},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(args, &out, &errOut); code != exitOK || out.String() != fmt.Sprintf("http://127.0.0.1:%d/readyz: ready\n", port) {
				t.Errorf("exit %d, out %q, err %q", code, out.String(), errOut.String())
			}
		})
	}

	c.signal(syscall.SIGTERM)
	c.waitLog("vouch stopped")
	var errOut bytes.Buffer
	if code := run([]string{"healthcheck", "-config", cfg}, io.Discard, &errOut); code != exitError ||
		!strings.Contains(errOut.String(), "not reachable") {
		t.Errorf("vouch stopped: exit %d, stderr %q, want 1 and 'not reachable'", code, errOut.String())
	}

	// No metrics listener: nothing to ask, and it says so.
	os.WriteFile(cfg, []byte("metrics:\n  listen: \"\"\n"), 0o644)
	errOut.Reset()
	if code := run([]string{"healthcheck", "-config", cfg}, io.Discard, &errOut); code != exitError ||
		!strings.Contains(errOut.String(), "no health endpoint") {
		t.Errorf("metrics disabled: exit %d, stderr %q", code, errOut.String())
	}
	if code := run([]string{"healthcheck", "extra"}, io.Discard, io.Discard); code != exitUsage {
		t.Errorf("stray argument: exit %d, want %d", code, exitUsage)
	}
}

// TestHelpAndVersion: "vouch --help" and "vouch help" list every command
// the dispatcher knows, one line each; --version is version; both exit 0.
func TestHelpAndVersion(t *testing.T) {
	var help bytes.Buffer
	if code := run([]string{"help"}, &help, io.Discard); code != exitOK {
		t.Fatalf("vouch help: exit %d", code)
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}} {
		var out bytes.Buffer
		if code := run(args, &out, io.Discard); code != exitOK || out.String() != help.String() {
			t.Errorf("vouch %s: exit %d, output differs from vouch help:\n%s", args[0], code, out.String())
		}
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	// Every case of the dispatcher's switch is a command.
	for _, m := range regexp.MustCompile(`(?m)^\tcase ("[a-z]+"(?:, "[a-z]+")*):$`).FindAllSubmatch(src, -1) {
		for _, q := range strings.Split(string(m[1]), ", ") {
			name := strings.Trim(q, `"`)
			if !regexp.MustCompile(`(?m)^  vouch (\[)?` + name + `\b`).MatchString(help.String()) {
				t.Errorf("vouch help does not list %q:\n%s", name, help.String())
			}
		}
	}
	var v1, v2 bytes.Buffer
	c1, c2 := run([]string{"version"}, &v1, io.Discard), run([]string{"--version"}, &v2, io.Discard)
	if c1 != exitOK || c2 != exitOK || v1.String() != v2.String() || !strings.HasPrefix(v1.String(), "vouch ") {
		t.Errorf("version: exit %d %q; --version: exit %d %q", c1, v1.String(), c2, v2.String())
	}
}
