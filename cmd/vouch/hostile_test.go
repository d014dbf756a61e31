package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
	idle.SetReadDeadline(time.Now().Add(metrics.HTTPIdleTimeout + 10*time.Second))
	if _, err := br.ReadByte(); err == nil || time.Since(start) > metrics.HTTPIdleTimeout+5*time.Second {
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
