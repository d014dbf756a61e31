package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter/metrics"
)

// A reload whose read of the file blocks (a FIFO here; a hung NFS mount
// alike) times out, says so in the log and the metrics, and does not stop
// later reloads.
func TestReloadThatBlocksTimesOut(t *testing.T) {
	dns := dnstest.New(t, zone)
	cfg := filepath.Join(t.TempDir(), "vouch.yaml")
	writeConfig(t, cfg, dns.Addr, "standard")
	port, mport := freePort(t), freePort(t)
	c := startChild(t, "-config", cfg, "-milter.listen", fmt.Sprintf("inet:%d@127.0.0.1", port),
		"-metrics.listen", fmt.Sprintf("127.0.0.1:%d", mport))
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)

	os.Remove(cfg)
	if err := syscall.Mkfifo(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	c.signal(syscall.SIGHUP)
	c.waitLog("reload timed out reading the configuration")
	body := scrape(t, url)
	for _, want := range []string{
		"vouch_config_last_reload_successful 0",
		`vouch_config_reloads_total{result="timeout"} 1`,
		"vouch_config_reloads_blocked 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("after the blocked reload, metrics lack %q", want)
		}
	}
	// A SIGHUP while that read is blocked says so, and reads again.
	c.signal(syscall.SIGHUP)
	c.waitLog("an earlier read of the configuration is still blocked")
	c.waitLog("reload timed out reading the configuration")
	// The next SIGHUP, the file replaced by a good one, reloads. (The
	// signal may also wake a blocked open, which Go retries on the path:
	// it then reads the new file too.)
	os.Remove(cfg)
	writeConfig(t, cfg, dns.Addr, "strict")
	c.signal(syscall.SIGHUP)
	c.waitLog("configuration reloaded")
	body = scrape(t, url)
	for _, want := range []string{
		`vouch_config_reloads_total{result="timeout"} 2`,
		"vouch_config_last_reload_successful 1",
		`vouch_config_reloads_total{result="success"} 2`,
		`vouch_config_info{decide_at="rcpt",preset="strict"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("after the good reload, metrics lack %q", want)
		}
	}
}

// The metrics server closes idle keep-alive connections, bounds reads and
// writes, and logs and counts its errors apart from go-milter's.
func TestMetricsServerBounds(t *testing.T) {
	port, mport := freePort(t), freePort(t)
	c := startChild(t, "-milter.listen", fmt.Sprintf("inet:%d@127.0.0.1", port),
		"-metrics.listen", fmt.Sprintf("127.0.0.1:%d", mport))
	addr := fmt.Sprintf("127.0.0.1:%d", mport)

	// A request's headers that never end: cut at the header timeout.
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	// A keep-alive connection left idle after one request.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	start := time.Now()
	idle.SetReadDeadline(time.Now().Add(httpIdleTimeout + 10*time.Second))
	if _, err := br.ReadByte(); err == nil || time.Since(start) > httpIdleTimeout+5*time.Second {
		t.Errorf("idle keep-alive connection still open after %v (%v)", time.Since(start), err)
	}
	// By now, past the header timeout, the slow one is closed too (after
	// a 408, with some Go versions).
	slow.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.ReadAll(slow); err != nil {
		t.Errorf("connection whose headers never ended still open after %v: %v", time.Since(start), err)
	}
	if strings.Contains(c.logText(), "milter connection error") {
		t.Errorf("HTTP errors logged as go-milter's:\n%s", c.logText())
	}
}

func TestHTTPErrorLog(t *testing.T) {
	var out bytes.Buffer
	m := metrics.New(prometheus.NewRegistry(), "test")
	h := httpErrorLog{slog.New(slog.NewTextHandler(&out, nil)).With("component", "metrics-http"), m}
	h.Write([]byte("http: Accept error: accept tcp: too many open files; retrying in 5ms\n"))
	if got := testutil.ToFloat64(m.HTTPErrors); got != 1 {
		t.Errorf("counted %v", got)
	}
	if got := testutil.ToFloat64(m.MilterErrors.WithLabelValues("protocol")); got != 0 {
		t.Errorf("counted as a milter protocol error")
	}
	if !strings.Contains(out.String(), `msg="metrics server error" component=metrics-http err="http: Accept error`) {
		t.Errorf("logged %q", out.String())
	}
}

func TestSoftMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name, gomemlimit, file, content string
		want                            int64
		ok                              bool
	}{
		{"cgroup v2 limit", "", "memory.max", "268435456\n", 214748364, true},
		{"cgroup v2 no limit", "", "memory.max", "max\n", 0, false},
		{"cgroup v1 limit", "", "memory/memory.limit_in_bytes", "268435456\n", 214748364, true},
		{"cgroup v1 no limit", "", "memory/memory.limit_in_bytes", "9223372036854771712\n", 0, false},
		{"GOMEMLIMIT set", "300MiB", "memory.max", "268435456\n", 0, false},
		{"no cgroup files", "", "", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.file != "" {
				os.MkdirAll(filepath.Dir(filepath.Join(root, tc.file)), 0o755)
				os.WriteFile(filepath.Join(root, tc.file), []byte(tc.content), 0o644)
			}
			got, ok := softMemoryLimit(tc.gomemlimit, root)
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %d %v, want %d %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
