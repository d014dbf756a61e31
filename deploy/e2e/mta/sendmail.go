package mta

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// DefaultSendmailRoot is where .ci/sendmail-root unpacks Sendmail unless
// VOUCH_SENDMAIL_ROOT says otherwise.
const DefaultSendmailRoot = "/opt/vouch-sendmail"

// sendmailServer is a private Sendmail built from the unpacked Debian
// packages: its own .cf (made with m4 from an .mc written here), queue,
// aliases, service switch, hosts file and maildirs. It runs in its own UTS
// and mount namespaces so that its host name resolves (else it sleeps
// trying to qualify it) and its syslog(3) lands on a socket of ours,
// without changing the machine's /etc/hosts or /dev.
type sendmailServer struct {
	instance
	root string
}

func sendmailRoot() string {
	if r := os.Getenv("VOUCH_SENDMAIL_ROOT"); r != "" {
		return r
	}
	return DefaultSendmailRoot
}

// StartSendmail starts a private Sendmail from VOUCH_SENDMAIL_ROOT
// (default /opt/vouch-sendmail, filled by .ci/sendmail-root) listening on a
// free 127.0.0.1 port, with o.MilterAddr as INPUT_MAIL_FILTER. It accepts
// mail for o.Domain from any client and delivers it to maildirs read by
// Mailbox. Skipped when the root or m4 is missing or the test is not root
// (failed under VOUCH_E2E=1). Stopped at cleanup.
func StartSendmail(t testing.TB, o Options) Server {
	t.Helper()
	root := sendmailRoot()
	if _, err := os.Stat(filepath.Join(root, "usr/libexec/sendmail/sendmail")); err != nil {
		unavailable(t, "sendmail not unpacked in %s: run .ci/sendmail-root as root (VOUCH_SENDMAIL_ROOT picks the directory)", root)
	}
	for _, tool := range []string{"m4", "mount", "hostname"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, "sendmail: %s not installed", tool)
		}
	}
	requireRoot(t, "sendmail")
	opts, err := o.withDefaults()
	if err != nil {
		t.Fatalf("sendmail: %v", err)
	}
	s := &sendmailServer{instance: newInstance(t, "sendmail", opts), root: root}
	// The shell execs sendmail, which leads the process group of its SMTP
	// and delivery children.
	s.launch(t, s.prepare, s.start)
	return s
}

// prepare writes everything that does not depend on the port and starts
// the syslog socket.
func (s *sendmailServer) prepare() error {
	if !safePath(s.dir) || !safePath(s.root) {
		return fmt.Errorf("paths %q, %q: spaces, quotes and m4/shell specials are not supported", s.dir, s.root)
	}
	for _, d := range []string{"queue", "mail"} {
		if err := os.Mkdir(filepath.Join(s.dir, d), 0o700); err != nil {
			return err
		}
	}
	// The maildirs are read by the test and written by the local mailer,
	// both as root; 0755 keeps them listable for a human debugging.
	if err := os.Chmod(filepath.Join(s.dir, "mail"), 0o755); err != nil {
		return err
	}
	nss, err := privateNSSwitch()
	if err != nil {
		return err
	}
	hosts, err := s.o.hostsLines()
	if err != nil {
		return err
	}
	help, _ := os.ReadFile(filepath.Join(s.root, "etc/mail/helpfile"))
	files := []struct {
		name string
		text string
		mode os.FileMode
	}{
		{"deliver", deliverScript(filepath.Join(s.dir, "mail")), 0o755},
		{"aliases", "postmaster: root\nMAILER-DAEMON: postmaster\n", 0o644},
		{"local-host-names", s.o.Domain + "\n" + s.o.Hostname + "\n", 0o644},
		// Sendmail's own lookups: files only, never DNS.
		{"service.switch", "hosts files\naliases files\n", 0o644},
		{"hosts", fmt.Sprintf("127.0.0.1\t%s %s localhost\n", s.o.Hostname, strings.SplitN(s.o.Hostname, ".", 2)[0]) + hosts, 0o644},
		// libc's lookups (the client's PTR at connect): files only too,
		// so no test ever waits on, or leaks queries to, real DNS.
		{"nsswitch.conf", nss, 0o644},
		{"helpfile", string(help), 0o644},
		{"sendmail.st", "", 0o600},
		{"trusted-users", "", 0o644},
		{"relay-domains", "", 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(s.dir, f.name), []byte(f.text), f.mode); err != nil {
			return err
		}
	}
	sys, err := startSyslog(s.dir, s.log)
	if err != nil {
		return err
	}
	s.sys = sys
	return nil
}

// privateNSSwitch is the machine's nsswitch.conf with hosts from files only.
func privateNSSwitch() (string, error) {
	b, err := os.ReadFile("/etc/nsswitch.conf")
	if err != nil && !os.IsNotExist(err) {
		return "", err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "hosts:") && l != "" {
			out = append(out, l)
		}
	}
	out = append(out, "hosts: files")
	return strings.Join(out, "\n") + "\n", nil
}

func validMacro(m string) bool {
	if m == "" {
		return false
	}
	for _, r := range m {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '{', r == '}':
		default:
			return false
		}
	}
	return true
}

// mc writes the .mc for port. Defaults first, the test's SendmailMC last
// (before the mailers) so it can override anything.
func (s *sendmailServer) mc() (string, error) {
	cf := filepath.Join(s.root, "usr/share/sendmail/cf")
	d := s.dir
	flags := s.o.SendmailFilterFlags
	if flags == "" {
		flags = map[string]string{"tempfail": "T", "reject": "R", "accept": ""}[s.o.DefaultAction]
	}
	timeouts := s.o.SendmailFilterTimeouts
	if timeouts == "" {
		timeouts = "C:10s;S:10s;R:20s;E:30s"
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("divert(-1)")
	w("# written by the vouch e2e harness (deploy/e2e/mta)")
	w("define(`_CF_DIR_', `%s/')", cf)
	w("divert(0)dnl")
	w("include(`%s/m4/cf.m4')dnl", cf)
	w("VERSIONID(`vouch e2e harness')dnl")
	// Every default path under MAIL_SETTINGS_DIR becomes private too.
	w("define(`MAIL_SETTINGS_DIR', `%s/')dnl", d)
	w("OSTYPE(`linux')dnl")
	w("define(`confDOMAIN_NAME', `%s')dnl", s.o.Hostname)
	w("define(`QUEUE_DIR', `%s/queue')dnl", d)
	w("define(`confPID_FILE', `%s/sendmail.pid')dnl", d)
	w("define(`STATUS_FILE', `%s/sendmail.st')dnl", d)
	w("define(`ALIAS_FILE', `%s/aliases')dnl", d)
	// The test domain and our host name are local (class w).
	w("define(`confCW_FILE', `%s/local-host-names')dnl", d)
	w("FEATURE(`use_cw_file')dnl")
	w("define(`confCT_FILE', `%s/trusted-users')dnl", d)
	w("define(`confCR_FILE', `%s/relay-domains')dnl", d)
	w("define(`confSERVICE_SWITCH_FILE', `%s/service.switch')dnl", d)
	w("define(`confHOSTS_FILE', `%s/hosts')dnl", d)
	w("define(`confHELP_FILE', `%s/helpfile')dnl", d)
	w("define(`confDEAD_LETTER_DROP', `%s/dead.letter')dnl", d)
	// The instance lives under /tmp, which is world-writable: let the
	// alias database and the class files live there anyway.
	w("define(`confDONT_BLAME_SENDMAIL', `MapInUnsafeDirPath, ClassFileInUnsafeDirPath, HelpFileInUnsafeDirPath')dnl")
	w("define(`confBIND_OPTS', `-DNSRCH -DEFNAMES')dnl")
	// Probing interfaces reverse-resolves each address: slow, useless here.
	w("define(`confDONT_PROBE_INTERFACES', `True')dnl")
	w("define(`confTO_IDENT', `0s')dnl")
	// A busy CI machine must not make sendmail queue or refuse mail.
	w("define(`confQUEUE_LA', `1000')dnl")
	w("define(`confREFUSE_LA', `1000')dnl")
	w("define(`confDELAY_LA', `0')dnl")
	w("define(`confLOG_LEVEL', `13')dnl")
	w("define(`confDEF_USER_ID', `mail:mail')dnl")
	macros := []struct {
		opt   string
		extra []string
	}{
		{"confMILTER_MACROS_CONNECT", append([]string{"{client_addr}", "{client_port}", "{client_name}", "{client_ptr}", "{client_resolve}"}, s.o.Macros.Connect...)},
		{"confMILTER_MACROS_HELO", s.o.Macros.Helo},
		{"confMILTER_MACROS_ENVFROM", s.o.Macros.Mail},
		{"confMILTER_MACROS_ENVRCPT", s.o.Macros.Rcpt},
		{"confMILTER_MACROS_DATA", s.o.Macros.Data},
		{"confMILTER_MACROS_EOH", s.o.Macros.EOH},
		{"confMILTER_MACROS_EOM", s.o.Macros.EOM},
	}
	for _, m := range macros {
		if len(m.extra) == 0 {
			continue
		}
		for _, x := range m.extra {
			if !validMacro(x) {
				return "", fmt.Errorf("milter macro %q", x)
			}
		}
		// Extend cfhead.m4's default list where there is one.
		w("define(`%[1]s', ifdef(`%[1]s', `defn(`%[1]s')`, '')`%[2]s')dnl", m.opt, strings.Join(m.extra, ", "))
	}
	// The local mailer is our deliver script, run as root (S) for any
	// local part, with no passwd entry required (no w), one recipient
	// per call (no m).
	w("define(`LOCAL_MAILER_PATH', `%s/deliver')dnl", d)
	w("define(`LOCAL_MAILER_ARGS', `deliver $u')dnl")
	w("define(`LOCAL_MAILER_FLAGS', `SPn9')dnl")
	w("MODIFY_MAILER_FLAGS(`LOCAL', `-w')dnl")
	w("FEATURE(`accept_unresolvable_domains')dnl")
	w("FEATURE(`no_default_msa')dnl")
	w("DAEMON_OPTIONS(`Port=%d, Addr=127.0.0.1, Name=MTA')dnl", s.port)
	if s.o.MilterAddr != "" {
		a, err := parseMilterAddr(s.o.MilterAddr)
		if err != nil {
			return "", err
		}
		if strings.ContainsAny(flags+timeouts, ",'`\n") {
			return "", fmt.Errorf("filter flags %q / timeouts %q", flags, timeouts)
		}
		spec := "S=" + a.sendmail()
		if flags != "" {
			spec += ", F=" + flags
		}
		spec += ", T=" + timeouts
		w("INPUT_MAIL_FILTER(`vouch', `%s')dnl", spec)
	}
	for _, l := range s.o.SendmailMC {
		w("%s", l)
	}
	w("MAILER(`local')dnl")
	w("MAILER(`smtp')dnl")
	return b.String(), nil
}

// start builds the .cf for s.port and runs sendmail -bD in fresh UTS and
// mount namespaces.
func (s *sendmailServer) start() error {
	mc, err := s.mc()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.dir, "sendmail.mc"), []byte(mc), 0o644); err != nil {
		return err
	}
	var cf, m4err bytes.Buffer
	m4 := exec.Command("m4", filepath.Join(s.dir, "sendmail.mc"))
	m4.Stdout, m4.Stderr = &cf, &m4err
	// cf.m4 reports configuration errors on stderr and still exits 0.
	if err := m4.Run(); err != nil || strings.Contains(m4err.String(), "ERROR") {
		return fmt.Errorf("m4 sendmail.mc: %v\n%s", err, m4err.String())
	}
	if err := os.WriteFile(filepath.Join(s.dir, "sendmail.cf"), cf.Bytes(), 0o644); err != nil {
		return err
	}

	// Inside the namespaces: our host name, our hosts and nsswitch files,
	// our /dev. Then build the alias database and run the daemon in the
	// foreground.
	cmd := nsCommand(s.dir, true, `hostname "$1"
mount --bind "$d/hosts" /etc/hosts
mount --bind "$d/nsswitch.conf" /etc/nsswitch.conf
`+devPrologue+`"$2" -C "$d/sendmail.cf" -bi
exec "$2" -C "$d/sendmail.cf" -bD
`, s.o.Hostname, filepath.Join(s.root, "usr/libexec/sendmail/sendmail"))
	// sendmail leads a process group of its SMTP and delivery children.
	cmd.SysProcAttr.Setpgid = true
	mark := len(s.log.String())
	p, err := startProcess(cmd, s.log)
	if err != nil {
		return fmt.Errorf("starting sendmail in new namespaces: %w", err)
	}
	s.proc = p
	inUse := func() bool {
		l := s.log.String()[mark:]
		return strings.Contains(l, "Address already in use")
	}
	if err := p.waitListening(s.port, s.o.StartTimeout, inUse); err != nil {
		// A failed start gets no grace: sendmail, for one, sleeps
		// between bind retries before it looks at SIGTERM.
		_ = p.stop(0)
		s.proc = nil
		if errors.Is(err, errAddrInUse) || inUse() {
			return errAddrInUse
		}
		return fmt.Errorf("sendmail: %w", err)
	}
	return nil
}
