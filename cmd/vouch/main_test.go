package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter/answer"
)

// TestMain lets the test binary stand in for the vouch binary: the daemon
// tests run it as a child process and send it real signals.
func TestMain(m *testing.M) {
	if os.Getenv("VOUCH_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"version"}, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "vouch ") {
		t.Fatalf("exit %d, output %q", code, out.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var errOut bytes.Buffer
	if code := run([]string{"frobnicate"}, io.Discard, &errOut); code != exitUsage || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("policy:\n  preset: strict\n"), 0o644)
	os.WriteFile(bad, []byte("policy:\n  preset: strict\n  decide_at: data\nmilter:\n  lisen: x\n"), 0o644)

	var out, errOut bytes.Buffer
	if code := run([]string{"config", "check", good}, &out, &errOut); code != 0 || out.String() != good+": OK\n" {
		t.Errorf("good file: exit %d, out %q, err %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code := run([]string{"config", "check", bad}, &out, &errOut)
	// Every error of the file, in file order, each with file, line and key.
	if want := bad + `:3: policy.decide_at: must be rcpt, mail or helo, not "data"` + "\n" +
		bad + ":5: milter.lisen: unknown key (want listen, socket_mode, socket_group, max_connections, overload_action, idle_timeout, packet_timeout, shutdown_timeout)\n"; code != exitError || errOut.String() != want {
		t.Errorf("bad file: exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	os.WriteFile(bad, []byte("policy:\n  preset: strict\n  decide_at: data\n"), 0o644)
	run([]string{"config", "check", bad}, &out, &errOut)
	if want := bad + `:3: policy.decide_at: must be rcpt, mail or helo, not "data"` + "\n"; errOut.String() != want {
		t.Errorf("stderr %q, want %q", errOut.String(), want)
	}
}

// daemon is a vouch child process.
type child struct {
	t       *testing.T
	cmd     *exec.Cmd
	milter  string
	metrics string
	mu      sync.Mutex
	log     bytes.Buffer
	lines   chan string
	exited  chan error
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startChild runs vouch serve with args and waits until it is serving.
func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	c := &child{t: t, lines: make(chan string, 1000), exited: make(chan error, 1)}
	c.cmd = exec.Command(os.Args[0], append([]string{"serve"}, args...)...)
	c.cmd.Env = append(os.Environ(), "VOUCH_TEST_MAIN=1")
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			c.mu.Lock()
			c.log.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			select {
			case c.lines <- sc.Text():
			default:
			}
		}
		c.exited <- c.cmd.Wait()
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("vouch log:\n%s", c.logText())
		}
	})
	c.waitLog("vouch started")
	return c
}

func (c *child) logText() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.String()
}

// waitLog waits for a log line containing s.
func (c *child) waitLog(s string) string {
	c.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l := <-c.lines:
			if strings.Contains(l, s) {
				return l
			}
		case err := <-c.exited:
			c.exited <- err
			c.t.Fatalf("vouch exited (%v) before logging %q", err, s)
		case <-timeout:
			c.t.Fatalf("no log line with %q", s)
		}
	}
}

func (c *child) signal(s syscall.Signal) {
	c.t.Helper()
	if err := c.cmd.Process.Signal(s); err != nil {
		c.t.Fatal(err)
	}
}

func session(t *testing.T, addr string) *gomilter.ClientSession {
	t.Helper()
	cl := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		ReadTimeout: 15 * time.Second, WriteTimeout: 15 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := cl.Session()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func expect(t *testing.T, what string, a *gomilter.Action, err error, want string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got := answer.Text(a); got != want {
		t.Fatalf("%s: got %q, want %q", what, answer.Text(a), want)
	}
}

// TestEmbeddedDefaults is the README's first command: vouch with no
// configuration listens on inet:8895@127.0.0.1 and negotiates.
func TestEmbeddedDefaults(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8895", "127.0.0.1:9895"} {
		if ln, err := net.Listen("tcp", addr); err != nil {
			t.Skipf("%s is in use on this machine (is a vouch running?): %v", addr, err)
		} else {
			ln.Close()
		}
	}
	startChild(t)
	s := session(t, "127.0.0.1:8895")
	defer s.Close()
	// Loopback is trusted by default: no DNS needed.
	a, err := s.Conn("localhost", gomilter.FamilyInet, 1234, "127.0.0.1")
	expect(t, "connect", a, err, "continue")
	resp, err := http.Get("http://127.0.0.1:9895/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
}

const zone = `
$ORIGIN test.
@          SOA ns.test. hostmaster.test. 1 3600 600 86400 60
mail.good  A   127.0.0.10
good       TXT "v=spf1 ip4:127.0.0.10 -all"
mail.other A   127.0.0.13
other      TXT "v=spf1 a:mail.other.test -all"
10.0.0.127.in-addr.arpa. PTR mail.good.test.
13.0.0.127.in-addr.arpa. PTR mail.other.test.
`

func writeConfig(t *testing.T, path, dnsAddr, preset string) {
	t.Helper()
	data := fmt.Sprintf("dns:\n  servers: [%q]\npolicy:\n  preset: %s\n  trusted_networks: []\n", dnsAddr, preset)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func openSession(t *testing.T, addr, ip, helo string) *gomilter.ClientSession {
	t.Helper()
	s := session(t, addr)
	t.Cleanup(func() { s.Close() })
	s.Macros(gomilter.CodeConn, "j", "mx.vouch.test")
	a, err := s.Conn("["+ip+"]", gomilter.FamilyInet, 1234, ip)
	expect(t, "connect", a, err, "continue")
	a, err = s.Helo(helo)
	expect(t, "helo", a, err, "continue")
	return s
}

func TestReload(t *testing.T) {
	dns := dnstest.New(t, zone)
	cfg := filepath.Join(t.TempDir(), "vouch.yaml")
	writeConfig(t, cfg, dns.Addr, "standard")
	port, mport := freePort(t), freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := startChild(t, "-config", cfg, "-milter.listen", fmt.Sprintf("inet:%d@127.0.0.1", port),
		"-metrics.listen", fmt.Sprintf("127.0.0.1:%d", mport))

	// A HELO that does not match: accepted under standard...
	before := openSession(t, addr, "127.0.0.10", "mail.other.test")

	writeConfig(t, cfg, dns.Addr, "strict")
	c.signal(syscall.SIGHUP)
	c.waitLog("configuration reloaded")

	// ...refused under strict, for sessions that start after the reload,
	strictReply := "550 5.7.25 HELO name mail.other.test does not match the reverse DNS of 127.0.0.10"
	after := openSession(t, addr, "127.0.0.10", "mail.other.test")
	a, err := after.Mail("<alice@good.test>", nil)
	expect(t, "mail", a, err, "continue")
	a, err = after.Rcpt("<user@vouch.test>", nil)
	expect(t, "rcpt after reload", a, err, strictReply)
	// ...while the session open during the reload keeps its settings.
	a, err = before.Mail("<alice@good.test>", nil)
	expect(t, "mail", a, err, "continue")
	a, err = before.Rcpt("<user@vouch.test>", nil)
	expect(t, "rcpt in the session open during reload", a, err, "continue")

	// A bad file is refused; the running (strict) configuration stays.
	os.WriteFile(cfg, []byte("policy:\n  preset: paranoid\n"), 0o644)
	c.signal(syscall.SIGHUP)
	line := c.waitLog("reload failed")
	if !strings.Contains(line, "vouch.yaml:2: policy.preset") {
		t.Errorf("reload error does not name file and line: %s", line)
	}
	third := openSession(t, addr, "127.0.0.10", "mail.other.test")
	third.Mail("<alice@good.test>", nil)
	a, err = third.Rcpt("<user@vouch.test>", nil)
	expect(t, "rcpt after a failed reload", a, err, strictReply)

	body := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	for _, want := range []string{
		"vouch_config_last_reload_successful 0",
		`vouch_config_reloads_total{result="failure"} 1`,
		`vouch_config_reloads_total{result="success"} 2`,
		`vouch_config_info{decide_at="rcpt",preset="strict"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestSIGTERMLetsOpenSessionsFinish(t *testing.T) {
	dns := dnstest.New(t, zone)
	cfg := filepath.Join(t.TempDir(), "vouch.yaml")
	writeConfig(t, cfg, dns.Addr, "standard")
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := startChild(t, "-config", cfg, "-milter.listen", fmt.Sprintf("inet:%d@127.0.0.1", port), "-metrics.listen", "")

	s := openSession(t, addr, "127.0.0.10", "mail.good.test")
	c.signal(syscall.SIGTERM)
	c.waitLog("shutting down")
	// The listener closes right after that line; connections made before
	// it closed are closed again at once, so they do not hold up the exit.
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting milter connections after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	a, err := s.Mail("<alice@good.test>", nil)
	expect(t, "mail during shutdown", a, err, "continue")
	a, err = s.Rcpt("<user@vouch.test>", nil)
	expect(t, "rcpt during shutdown", a, err, "continue")
	mods, a, err := s.End()
	expect(t, "end of message during shutdown", a, err, "continue")
	if len(mods) == 0 {
		t.Error("no headers added to the message finished during shutdown")
	}
	s.Close()
	select {
	case err := <-c.exited:
		if err != nil {
			t.Fatalf("vouch exited with %v, want status 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("vouch did not exit after its last session closed")
	}
	if !strings.Contains(c.logText(), "vouch stopped") {
		t.Error("no 'vouch stopped' log line")
	}
}

func TestBadConfigRefusedAtStart(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "vouch.yaml")
	os.WriteFile(cfg, []byte("policy:\n  preset: paranoid\n"), 0o644)
	var errOut bytes.Buffer
	if code := run([]string{"serve", "-config", cfg}, io.Discard, &errOut); code != exitError ||
		!strings.Contains(errOut.String(), cfg+`:2: policy.preset: unknown preset "paranoid"`) {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"serve", "-log.format", "xml"}, io.Discard, &errOut); code != exitError ||
		!strings.Contains(errOut.String(), `command line: log.format: must be text or json, not "xml"`) {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

// TestReloadWarnsPerKeyAgainstWhatRuns: a reload names each changed key
// that needs a restart, compared with what the daemon runs, so putting
// the old value back is quiet; log.level applies at once.
func TestReloadWarnsPerKeyAgainstWhatRuns(t *testing.T) {
	dns := dnstest.New(t, zone)
	cfg := filepath.Join(t.TempDir(), "vouch.yaml")
	base := fmt.Sprintf("dns:\n  servers: [%q]\npolicy:\n  trusted_networks: []\n", dns.Addr)
	write := func(extra string) {
		if err := os.WriteFile(cfg, []byte(base+extra), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("milter:\n  max_connections: 100\n")
	port := freePort(t)
	c := startChild(t, "-config", cfg, "-milter.listen", fmt.Sprintf("inet:%d@127.0.0.1", port), "-metrics.listen", "")

	write("milter:\n  max_connections: 50\n  idle_timeout: 1m\nlog:\n  level: debug\n")
	c.signal(syscall.SIGHUP)
	c.waitLog("configuration reloaded")
	log := c.logText()
	for _, key := range []string{"key=milter.max_connections", "key=milter.idle_timeout"} {
		if !strings.Contains(log, `setting changed; it applies only after a restart" `+key) {
			t.Errorf("no restart warning naming %s:\n%s", key, log)
		}
	}
	if strings.Contains(log, "key=log.level") {
		t.Error("log.level was said to need a restart")
	}
	// Debug lines now appear: a session's close is logged at debug.
	s := openSession(t, fmt.Sprintf("127.0.0.1:%d", port), "127.0.0.10", "mail.good.test")
	s.Close()
	c.waitLog("milter connection closed")

	// The running values back: no warning this time.
	before := strings.Count(c.logText(), "applies only after a restart")
	write("milter:\n  max_connections: 100\n")
	c.signal(syscall.SIGHUP)
	c.waitLog("configuration reloaded")
	if after := strings.Count(c.logText(), "applies only after a restart"); after != before {
		t.Errorf("putting the running values back warned again:\n%s", c.logText())
	}
}
