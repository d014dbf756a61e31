// Package mta runs real, private Postfix and Sendmail instances for
// end-to-end tests of a milter, and speaks SMTP to them from chosen
// loopback source addresses.
//
// Each instance gets its own directory, port, queue, log and mailboxes;
// nothing of the machine's own mail setup is used or changed. Instances
// need root (both MTAs start as root and drop privileges themselves) and
// Linux: each runs in a private mount namespace whose /dev/log is a socket
// the harness reads (see namespace.go), Sendmail also in a private UTS
// namespace with its own host name and hosts file. Instances share
// nothing, so tests that use them may run in parallel.
//
// The MTAs do no DNS: Postfix has peername lookups off and outbound mail
// deferred, Sendmail resolves from files only. Only the milter under test
// looks anything up.
package mta

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/checktest"
)

// Names lists the MTAs this package can start, for tests that run the same
// scenario against each: for _, n := range mta.Names() { mta.Start(t, n, o) }.
func Names() []string { return []string{"postfix", "sendmail"} }

// Options configure one MTA instance. The zero value is usable except for
// MilterAddr.
type Options struct {
	// MilterAddr is where the MTA finds the milter, in any of the milter
	// world's spellings: "inet:PORT@HOST", "inet:HOST:PORT", "unix:/path",
	// "local:/path" or a bare absolute path. Empty means no milter at all.
	MilterAddr string
	// DefaultAction is what the MTA does when the milter is unreachable or
	// fails: "tempfail" (default), "accept" or "reject". Postfix:
	// milter_default_action; Sendmail: F=T, no F, F=R.
	DefaultAction string
	// Domain is the mail domain the MTA accepts as final destination from
	// any client; default "example.test".
	Domain string
	// Hostname is the MTA's own name (greeting, Received, macro j);
	// default "mx." + Domain.
	Hostname string
	// Macros are requested from the MTA in addition to its defaults.
	Macros Macros
	// Hosts are hosts(5) lines, "IP name...", the MTA resolves client
	// names from (files only, never DNS; see hosts.go). Sendmail looks
	// clients up anyway; Postfix only with PostfixMain
	// smtpd_peername_lookup=yes.
	Hosts []string

	// PostfixMain adds or overrides main.cf parameters.
	PostfixMain map[string]string
	// PostfixSMTPD adds "-o name=value" overrides to the smtpd service.
	PostfixSMTPD map[string]string

	// SendmailFilterFlags overrides the F= of INPUT_MAIL_FILTER, which
	// otherwise follows DefaultAction.
	SendmailFilterFlags string
	// SendmailFilterTimeouts overrides T= of INPUT_MAIL_FILTER; default
	// "C:10s;S:10s;R:20s;E:30s".
	SendmailFilterTimeouts string
	// SendmailMC holds extra lines for the .mc file, placed after the
	// harness's own definitions and before the MAILER lines.
	SendmailMC []string

	// StartTimeout bounds start-up; default 30s (generous: a loaded CI
	// machine, not a slow MTA, is what it guards against).
	StartTimeout time.Duration
}

// Macros name milter macros per stage, without the MTA-specific list
// separators: "{client_addr}", "i".
type Macros struct {
	Connect, Helo, Mail, Rcpt, Data, EOH, EOM []string
}

// Server is one running MTA instance. It is stopped by the test's cleanup.
type Server interface {
	// Name is "postfix" or "sendmail".
	Name() string
	// SMTPAddr is the SMTP listener, "127.0.0.1:PORT".
	SMTPAddr() string
	// Domain is the mail domain delivered locally.
	Domain() string
	// Hostname is the MTA's own host name.
	Hostname() string
	// Mailbox waits until at least n messages were delivered to
	// user@Domain() and returns all of them in delivery order; the test
	// fails if that does not happen within timeout.
	Mailbox(t testing.TB, user string, n int, timeout time.Duration) []Message
	// Log is the MTA's log so far.
	Log() string
	// Dir is the instance's private directory (config, queue, mail).
	Dir() string
	// Stop stops the MTA and all its processes; later calls return the
	// first call's result. The test's cleanup calls it too.
	Stop() error
}

// Start starts the MTA called name (one of Names()).
func Start(t testing.TB, name string, o Options) Server {
	t.Helper()
	switch name {
	case "postfix":
		return StartPostfix(t, o)
	case "sendmail":
		return StartSendmail(t, o)
	}
	t.Fatalf("mta: unknown MTA %q (want one of %v)", name, Names())
	return nil
}

// unavailable skips the test, or fails it when VOUCH_E2E=1 says the
// end-to-end suites are required (CI), so a broken CI setup cannot pass
// by skipping everything.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("VOUCH_E2E") == "1" {
		t.Fatalf("%s (VOUCH_E2E=1 requires it)", msg)
	}
	t.Skipf("%s (VOUCH_E2E=1 makes this a failure)", msg)
}

func requireRoot(t testing.TB, name string) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "%s: a private instance needs root", name)
	}
}

func (o *Options) withDefaults() (Options, error) {
	c := *o
	if c.Domain == "" {
		c.Domain = "example.test"
	}
	if c.Hostname == "" {
		c.Hostname = "mx." + c.Domain
	}
	if c.DefaultAction == "" {
		c.DefaultAction = "tempfail"
	}
	switch c.DefaultAction {
	case "tempfail", "accept", "reject":
	default:
		return c, fmt.Errorf("DefaultAction %q: want tempfail, accept or reject", c.DefaultAction)
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 30 * time.Second
	}
	// These strings land in config files whose syntax we write by hand;
	// refuse anything that could break out of a line or a token.
	for _, s := range []string{c.Domain, c.Hostname} {
		if !validHostname(s) {
			return c, fmt.Errorf("host name %q: want letters, digits, '-' and '.'", s)
		}
	}
	return c, nil
}

func validHostname(s string) bool {
	if s == "" || len(s) > 253 || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
		default:
			return false
		}
	}
	return true
}

// instanceDir makes a private directory the MTAs' unprivileged users can
// traverse (t.TempDir's parent is 0700, so it is not used).
func instanceDir(t testing.TB, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vouch-"+name+"-")
	if err != nil {
		t.Fatalf("mta: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("mta: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// freePort asks the kernel for an unused loopback port. Another process
// may take it before the MTA binds it; start-up retries on that.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// listening reports whether process pid holds a socket listening on
// 127.0.0.1:port. It reads /proc instead of connecting, because a probe
// connection would reach the milter under test as an SMTP session of its
// own; and it checks the socket's owner, because after a port clash the
// listener may be someone else's.
func listening(pid, port int) (bool, error) {
	inodes, err := listenInodes(port)
	if err != nil || len(inodes) == 0 {
		return false, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		// Gone already: not listening.
		return false, nil
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && slices.Contains(inodes, link) {
			return true, nil
		}
	}
	return false, nil
}

// listenInodes returns "socket:[INODE]" for each socket listening on
// 127.0.0.1:port.
func listenInodes(port int) ([]string, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The address is printed as a host-order integer: 0100007F on
	// little-endian machines, 7F000001 on big-endian ones.
	le, be := fmt.Sprintf("0100007F:%04X", port), fmt.Sprintf("7F000001:%04X", port)
	var inodes []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid
		// timeout inode ...; st 0A is LISTEN.
		fields := strings.Fields(sc.Text())
		if len(fields) > 9 && (fields[1] == le || fields[1] == be) && fields[3] == "0A" {
			inodes = append(inodes, "socket:["+fields[9]+"]")
		}
	}
	return inodes, sc.Err()
}

// groupAlive reports whether any process of process group pgid is still
// running (zombies do not count: they hold no ports or files, and the
// orphans among them are init's to reap).
func groupAlive(pgid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain anything.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

// process is a started MTA process group with its output captured.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when Wait returned
	err    error         // Wait's result, valid after exited
}

func startProcess(cmd *exec.Cmd, out *checktest.LogBuffer) (*process, error) {
	cmd.Stdout = out
	cmd.Stderr = out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// If the test binary dies without running cleanups (a -timeout panic),
	// the MTA goes with it instead of lingering on the port.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// waitListening waits until port listens, the process exits, or timeout.
// It returns errAddrInUse as soon as the output says the port was taken.
func (p *process) waitListening(port int, timeout time.Duration, inUse func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := listening(p.cmd.Process.Pid, port)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if inUse() {
			return errAddrInUse
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before listening on port %d: %v", port, p.err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on port %d after %v", port, timeout)
		}
	}
}

// stop sends SIGTERM to the process and its process group (the one it
// leads), waits up to grace for it to exit, then SIGKILLs whatever is left
// of the group. The process itself is signalled too in case it has not
// yet become a group leader.
func (p *process) stop(grace time.Duration) error {
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	var err error
	select {
	case <-p.exited:
	case <-time.After(grace):
		err = fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.cmd.Path, grace)
	}
	// Children may outlive the leader briefly (an smtpd finishing a
	// session); nothing of the instance may survive the test, so kill
	// and wait until the kernel has actually ended them all.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	<-p.exited
	const reap = 10 * time.Second // SIGKILL is not instant, but it is quick
	for deadline := time.Now().Add(reap); groupAlive(pid); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.Join(err, fmt.Errorf("processes of group %d survived SIGKILL for %v", pid, reap))
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	return err
}

// logTail returns the last n lines of s, for failure messages.
func logTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d earlier lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// errAddrInUse tells start-up to retry with another port.
var errAddrInUse = errors.New("address in use")

// retryPorts runs start with fresh ports until it succeeds or fails for a
// reason other than a port taken between freePort and the MTA's bind.
func retryPorts(start func(port int) error) error {
	var err error
	for range 3 {
		var port int
		port, err = freePort()
		if err != nil {
			return err
		}
		if err = start(port); !errors.Is(err, errAddrInUse) {
			return err
		}
	}
	return err
}

func itoa(i int) string { return strconv.Itoa(i) }

// instance is what every private MTA has: its options, directory, port,
// log and process, and the Server methods that need nothing else.
type instance struct {
	name string
	o    Options
	dir  string
	port int
	proc *process
	log  *checktest.LogBuffer
	sys  *syslogSink

	stopOnce sync.Once
	stopErr  error
}

func newInstance(t testing.TB, name string, o Options) instance {
	return instance{name: name, o: o, dir: instanceDir(t, name), log: &checktest.LogBuffer{}}
}

func (s *instance) Name() string     { return s.name }
func (s *instance) SMTPAddr() string { return "127.0.0.1:" + itoa(s.port) }
func (s *instance) Domain() string   { return s.o.Domain }
func (s *instance) Hostname() string { return s.o.Hostname }
func (s *instance) Dir() string      { return s.dir }

func (s *instance) Mailbox(t testing.TB, user string, n int, timeout time.Duration) []Message {
	t.Helper()
	return waitMaildir(t, s, filepath.Join(s.dir, "mail"), user, n, timeout)
}

// Log is what the MTA sent to syslog, plus its own output.
func (s *instance) Log() string { return s.log.String() }

// Stop stops the process group the MTA leads, and the syslog socket.
func (s *instance) Stop() error {
	s.stopOnce.Do(func() {
		if s.proc != nil {
			s.stopErr = s.proc.stop(10 * time.Second)
		}
		if s.sys != nil {
			s.sys.Close()
		}
	})
	return s.stopErr
}

// launch prepares the instance, starts it on a free port (another one if
// the port is taken), and stops it at the test's cleanup. A mount
// namespace refused (no CAP_SYS_ADMIN) makes the MTA unavailable.
func (s *instance) launch(t testing.TB, prepare, start func() error) {
	t.Helper()
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("%s: stop: %v", s.name, err)
		}
		if t.Failed() {
			t.Logf("%s log (%s):\n%s", s.name, s.dir, logTail(s.Log(), 60))
		}
	})
	started := time.Now()
	err := prepare()
	if err == nil {
		err = retryPorts(func(port int) error {
			s.port = port
			return start()
		})
	}
	if errors.Is(err, syscall.EPERM) {
		unavailable(t, "%s: cannot run in a private mount namespace (needs CAP_SYS_ADMIN): %v", s.name, err)
	}
	if err != nil {
		t.Fatalf("%s: %v\nlog:\n%s", s.name, err, logTail(s.Log(), 40))
	}
	t.Logf("%s: %s listening on %s (started in %v)", s.name, s.dir, s.SMTPAddr(), time.Since(started).Round(time.Millisecond))
}
