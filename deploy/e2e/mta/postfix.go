package mta

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

const postfixBin = "/usr/sbin/postfix"

// postfixServer is a private Postfix: its own config_directory,
// queue_directory, data_directory, syslog socket and maildirs, with
// master(8) as a direct child of the test.
type postfixServer struct {
	instance
	defs map[string]string // postconf -d values the config builds on
}

// StartPostfix starts a private Postfix whose smtpd listens on a free
// 127.0.0.1 port and calls o.MilterAddr. It accepts mail for o.Domain from
// any client and delivers it to maildirs read by Mailbox. The test is
// skipped when Postfix is not installed or the test is not root (failed
// under VOUCH_E2E=1). Stopped at cleanup.
func StartPostfix(t testing.TB, o Options) Server {
	t.Helper()
	if _, err := os.Stat(postfixBin); err != nil {
		unavailable(t, "postfix not installed: apt-get install postfix")
	}
	if _, err := exec.LookPath("mount"); err != nil {
		unavailable(t, "postfix: mount not installed")
	}
	requireRoot(t, "postfix")
	opts, err := o.withDefaults()
	if err != nil {
		t.Fatalf("postfix: %v", err)
	}
	s := &postfixServer{instance: newInstance(t, "postfix", opts)}
	// master(8) makes itself a session and process group leader, and its
	// SIGTERM handler takes the children down.
	s.launch(t, s.prepare, s.start)
	return s
}

// postconfDefaults reads compiled-in defaults of the installed Postfix, so
// macro lists are extended rather than replaced and paths follow the
// package's layout.
func postconfDefaults(names ...string) (map[string]string, error) {
	out, err := exec.Command("/usr/sbin/postconf", append([]string{"-d"}, names...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("postconf -d: %w", err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, " = "); ok {
			m[k] = v
		}
	}
	for _, n := range names {
		if _, ok := m[n]; !ok {
			return nil, fmt.Errorf("postconf -d: no %s", n)
		}
	}
	return m, nil
}

// prepare makes everything that does not depend on the port: directories,
// the queue tree, the delivery script and the syslog socket.
func (s *postfixServer) prepare() error {
	if !safePath(s.dir) {
		return fmt.Errorf("instance directory %q: spaces, quotes and shell specials are not supported", s.dir)
	}
	defs, err := postconfDefaults("daemon_directory", "mail_owner", "setgid_group",
		"milter_connect_macros", "milter_helo_macros", "milter_mail_macros", "milter_rcpt_macros",
		"milter_data_macros", "milter_end_of_header_macros", "milter_end_of_data_macros")
	if err != nil {
		return err
	}
	s.defs = defs
	owner, err := user.Lookup(defs["mail_owner"])
	if err != nil {
		return fmt.Errorf("mail_owner %s (created by the postfix package): %w", defs["mail_owner"], err)
	}
	// pipe(8) refuses to run the delivery script as root or mail_owner.
	nobody, err := user.Lookup("nobody")
	if err != nil {
		return err
	}
	dirs := []struct {
		path  string
		owner *user.User // nil: root
		mode  os.FileMode
	}{
		{filepath.Join(s.dir, "etc"), nil, 0o755},
		{filepath.Join(s.dir, "queue"), nil, 0o755},
		{filepath.Join(s.dir, "data"), owner, 0o700},
		{filepath.Join(s.dir, "mail"), nobody, 0o755},
	}
	for _, d := range dirs {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			return err
		}
		if d.owner != nil {
			if err := chownName(d.path, d.owner); err != nil {
				return err
			}
		}
	}
	if err := s.makeQueue(owner, defs["setgid_group"]); err != nil {
		return err
	}
	sys, err := startSyslog(s.dir, s.log)
	if err != nil {
		return err
	}
	s.sys = sys
	return nil
}

// start writes the configuration for s.port and runs master(8) in a
// mount namespace with the instance's /dev.
func (s *postfixServer) start() error {
	main, err := s.mainCF()
	if err != nil {
		return err
	}
	master, err := s.masterCF()
	if err != nil {
		return err
	}
	etc := filepath.Join(s.dir, "etc")
	files := []struct {
		name, text string
		mode       os.FileMode
	}{
		{"main.cf", main, 0o644},
		{"master.cf", master, 0o644},
		// Any sane local part of the domain is a mailbox (smtpd rejects
		// the rest as unknown users).
		{"mailboxes", fmt.Sprintf("/^[a-z0-9_+-][a-z0-9._+-]*@%s$/ OK\n", regexp.QuoteMeta(strings.ToLower(s.o.Domain))), 0o644},
		{"deliver", deliverScript(filepath.Join(s.dir, "mail")), 0o755},
	}
	// Postfix re-reads a config file until its mtime is in the past
	// (a file modified "now" may still be being written): backdate them,
	// or every start sleeps a second or two.
	past := time.Now().Add(-time.Minute)
	for _, f := range files {
		p := filepath.Join(etc, f.name)
		if err := os.WriteFile(p, []byte(f.text), f.mode); err != nil {
			return err
		}
		if err := os.Chtimes(p, past, past); err != nil {
			return err
		}
	}

	hostsPrologue, err := postfixHostsPrologue(s.dir, s.o)
	if err != nil {
		return err
	}
	// -s keeps master in the foreground with its output on ours. master
	// calls setsid(2) itself, so it must not be made a group leader here.
	cmd := nsCommand(s.dir, false, hostsPrologue+devPrologue+`exec "$@"`,
		filepath.Join(s.defs["daemon_directory"], "master"), "-c", etc, "-s")
	mark := len(s.log.String())
	p, err := startProcess(cmd, s.log)
	if err != nil {
		return fmt.Errorf("starting master in a new mount namespace: %w", err)
	}
	s.proc = p
	inUse := func() bool { return strings.Contains(s.log.String()[mark:], "Address already in use") }
	if err := p.waitListening(s.port, s.o.StartTimeout, inUse); err != nil {
		// A failed start gets no grace: sendmail, for one, sleeps
		// between bind retries before it looks at SIGTERM.
		_ = p.stop(0)
		s.proc = nil
		if errors.Is(err, errAddrInUse) || inUse() {
			return errAddrInUse
		}
		return fmt.Errorf("master: %w", err)
	}
	return nil
}

// makeQueue creates the queue directory tree with the owners and modes
// post-install(1) would give it (from the postfix-files manifest). Done
// here rather than by post-install, a shell script of some hundred forks
// that takes seconds on a busy machine.
func (s *postfixServer) makeQueue(owner *user.User, setgidGroup string) error {
	grp, err := user.LookupGroup(setgidGroup)
	if err != nil {
		return fmt.Errorf("setgid_group %s (created by the postfix package): %w", setgidGroup, err)
	}
	uid, gid, err := ids(owner.Uid, grp.Gid)
	if err != nil {
		return err
	}
	q := filepath.Join(s.dir, "queue")
	dirs := []struct {
		name     string
		uid, gid int
		mode     os.FileMode
	}{
		{"pid", 0, 0, 0o755},
		{"maildrop", uid, gid, 0o730},
		{"public", uid, gid, 0o710},
	}
	for _, n := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"} {
		dirs = append(dirs, struct {
			name     string
			uid, gid int
			mode     os.FileMode
		}{n, uid, 0, 0o700})
	}
	for _, d := range dirs {
		p := filepath.Join(q, d.name)
		if err := os.Mkdir(p, d.mode); err != nil && !os.IsExist(err) {
			return err
		}
		if err := os.Chown(p, d.uid, d.gid); err != nil {
			return err
		}
		// Mkdir's mode is filtered by the umask; set it exactly.
		if err := os.Chmod(p, d.mode); err != nil {
			return err
		}
	}
	return nil
}

func ids(uidText, gidText string) (int, int, error) {
	var uid, gid int
	if _, err := fmt.Sscan(uidText, &uid); err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscan(gidText, &gid); err != nil {
		return 0, 0, err
	}
	return uid, gid, nil
}

func chownName(path string, u *user.User) error {
	uid, gid, err := ids(u.Uid, u.Gid)
	if err != nil {
		return err
	}
	return os.Chown(path, uid, gid)
}

func (s *postfixServer) mainCF() (string, error) {
	p := map[string]string{
		"compatibility_level": "3.6",
		"queue_directory":     filepath.Join(s.dir, "queue"),
		"data_directory":      filepath.Join(s.dir, "data"),
		"myhostname":          s.o.Hostname,
		"mydomain":            s.o.Domain,
		"myorigin":            "$myhostname",
		// No local(8) domains, no aliases.
		"mydestination":  "",
		"alias_maps":     "",
		"alias_database": "",
		// 127.0.0.1 is the only trusted client; a test client dialing
		// from any other 127.x address is an outsider (relay rules
		// apply), as a sending MTA on the Internet would be.
		"mynetworks":               "127.0.0.1/32",
		"inet_interfaces":          "loopback-only",
		"inet_protocols":           "ipv4",
		"smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
		// No DNS from Postfix itself: the tests are hermetic and the
		// milter does its own lookups. With peername lookup off the
		// client is "unknown" and milters get "[ip]" as host name.
		"smtpd_peername_lookup": "no",
		"disable_dns_lookups":   "yes",
		"smtp_host_lookup":      "native",
		"lmtp_host_lookup":      "native",
		// syslog(3) goes to the instance's /dev/log (namespace.go).
		"syslog_name":         "postfix",
		"biff":                "no",
		"append_dot_mydomain": "no",
		// The test domain is a virtual mailbox domain delivered by
		// pipe(8) through the same script Sendmail uses (virtual(8)
		// refuses per-user paths computed by a regexp).
		"virtual_mailbox_domains":             s.o.Domain,
		"virtual_mailbox_maps":                "regexp:" + filepath.Join(s.dir, "etc", "mailboxes"),
		"virtual_transport":                   "deliver",
		"deliver_destination_recipient_limit": "1",
		// Nothing leaves the instance: mail for other domains (bounces
		// to test senders) stays queued instead of being looked up.
		// Unlike an error transport this keeps {mail_mailer} "smtp".
		"defer_transports":      "smtp relay",
		"milter_default_action": s.o.DefaultAction,
	}
	if s.o.MilterAddr != "" {
		a, err := parseMilterAddr(s.o.MilterAddr)
		if err != nil {
			return "", err
		}
		p["smtpd_milters"] = a.postfix()
	}
	for name, extra := range map[string][]string{
		"milter_connect_macros":       s.o.Macros.Connect,
		"milter_helo_macros":          s.o.Macros.Helo,
		"milter_mail_macros":          s.o.Macros.Mail,
		"milter_rcpt_macros":          s.o.Macros.Rcpt,
		"milter_data_macros":          s.o.Macros.Data,
		"milter_end_of_header_macros": s.o.Macros.EOH,
		"milter_end_of_data_macros":   s.o.Macros.EOM,
	} {
		if len(extra) > 0 {
			p[name] = strings.TrimSpace(s.defs[name] + " " + strings.Join(extra, " "))
		}
	}
	for k, v := range s.o.PostfixMain {
		p[k] = v
	}
	return renderMainCF(p)
}

// renderMainCF writes parameters one per line, sorted for stable files.
func renderMainCF(p map[string]string) (string, error) {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# written by the vouch e2e harness (deploy/e2e/mta)\n")
	for _, k := range keys {
		v := p[k]
		if !postfixParamName(k) || strings.ContainsAny(v, "\r\n") {
			return "", fmt.Errorf("main.cf: bad parameter %q = %q", k, v)
		}
		fmt.Fprintf(&b, "%s = %s\n", k, v)
	}
	return b.String(), nil
}

func postfixParamName(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

// masterCF is a master.cf without chroot (paths are per instance) and with
// the one smtpd on the instance's port.
func (s *postfixServer) masterCF() (string, error) {
	var b strings.Builder
	b.WriteString("# written by the vouch e2e harness (deploy/e2e/mta)\n")
	fmt.Fprintf(&b, "127.0.0.1:%d inet n - n - - smtpd\n", s.port)
	keys := make([]string, 0, len(s.o.PostfixSMTPD))
	for k := range s.o.PostfixSMTPD {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := s.o.PostfixSMTPD[k]
		if !postfixParamName(k) || strings.ContainsAny(v, "\r\n{}") {
			return "", fmt.Errorf("master.cf: bad smtpd option %q = %q", k, v)
		}
		// The { } form lets values contain spaces (Postfix 3.0+).
		fmt.Fprintf(&b, "  -o { %s = %s }\n", k, v)
	}
	b.WriteString(`pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
`)
	// R: Return-Path, as Sendmail's local mailer adds; u: lower-case
	// ${user}, as Sendmail does.
	fmt.Fprintf(&b, "deliver   unix  -       n       n       -       -       pipe\n  flags=Ru user=nobody argv=%s ${user}\n",
		filepath.Join(s.dir, "etc", "deliver"))
	return b.String(), nil
}
