package debian

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/deploy/e2e/mta"
)

// The installed package's paths: what docs/deployment.md tells a Debian
// user, and what this test runs.
const (
	binPath     = "/usr/sbin/vouch"
	confPath    = "/etc/vouch/vouch.yaml"
	sockDir     = "/var/spool/postfix/vouch"
	sockPath    = sockDir + "/vouch.sock"
	snippetPath = "/usr/share/doc/vouch/postfix/main.cf.snippet"
	queueDir    = "/var/spool/postfix"
)

// The test's DNS, served by dnstest and reached by vouch only through
// unbound. Each client is its own loopback address:
//
//	127.0.2.10  mail.good.test: PTR and A agree; good.test's SPF lists it
//	127.0.2.11  no PTR record
//	127.0.2.13  mail.other.test, confirmed; good.test's SPF does not list it
//
// soft.test's SPF softfails everyone.
const zone = `
$ORIGIN test.
@            SOA ns.test. hostmaster.test. 1 3600 600 86400 60
mail.good    A   127.0.2.10
good         TXT "v=spf1 ip4:127.0.2.10 -all"
mail.good    TXT "v=spf1 a -all"
mail.other   A   127.0.2.13
other        TXT "v=spf1 a:mail.other.test -all"
mail.other   TXT "v=spf1 a -all"
mail.nospf   A   127.0.2.11
soft         TXT "v=spf1 ~all"
10.2.0.127.in-addr.arpa. PTR mail.good.test.
13.2.0.127.in-addr.arpa. PTR mail.other.test.
`

var (
	good  = net.IPv4(127, 0, 2, 10)
	noPTR = net.IPv4(127, 0, 2, 11)
	other = net.IPv4(127, 0, 2, 13)
)

// requireInstalled skips the test unless .ci/run (or you) installed the
// package and asked for it: the test runs the machine's Postfix queue
// directory and the installed vouch as user vouch.
func requireInstalled(t *testing.T) {
	t.Helper()
	if os.Getenv("VOUCH_DEB_E2E") != "1" {
		t.Skip("VOUCH_DEB_E2E=1 not set: this test needs vouch's .deb installed (deploy/debian/build.sh, dpkg -i), " +
			"postfix and unbound, root, and a stopped system Postfix; it uses /var/spool/postfix. .ci/run sets it")
	}
	if os.Geteuid() != 0 {
		t.Fatal("VOUCH_DEB_E2E=1 needs root")
	}
}

func command(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestInstalledFiles checks what dpkg -i left on the machine against the
// repository's files and the documented path.
func TestInstalledFiles(t *testing.T) {
	requireInstalled(t)
	pkgVersion := command(t, "dpkg-query", "-W", "-f=${Version}", "vouch")
	if out := command(t, binPath, "version"); !strings.HasPrefix(out, "vouch "+pkgVersion+" ") {
		t.Errorf("%s version says %q, the package is %s", binPath, out, pkgVersion)
	}
	if out := command(t, binPath, "--version"); !strings.HasPrefix(out, "vouch "+pkgVersion+" ") {
		t.Errorf("%s --version says %q", binPath, out)
	}
	if conf := command(t, "dpkg-query", "-W", "-f=${Conffiles}", "vouch"); !strings.Contains(conf, confPath+" ") {
		t.Errorf("%s is not a conffile of the package: %q", confPath, conf)
	}
	for installed, repo := range map[string]string{
		binPath:                                 "",
		confPath:                                "../systemd/vouch.yaml",
		"/usr/lib/systemd/system/vouch.service": "../systemd/vouch.service",
		"/usr/lib/sysusers.d/vouch.conf":        "../systemd/vouch.sysusers",
		"/usr/lib/tmpfiles.d/vouch.conf":        "../systemd/vouch.tmpfiles",
		snippetPath:                             "../postfix/main.cf.snippet",
		"/usr/share/doc/vouch/sendmail/sendmail.mc.snippet": "../sendmail/sendmail.mc.snippet",
	} {
		got, err := os.ReadFile(installed)
		if err != nil {
			t.Errorf("not installed: %v", err)
			continue
		}
		if repo == "" {
			continue
		}
		want, _ := os.ReadFile(repo)
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the repository's %s", installed, repo)
		}
	}
	command(t, binPath, "config", "check", confPath)

	// The man pages are where man finds them, and render cleanly.
	for _, page := range []struct{ section, name, file string }{
		{"8", "vouch", "/usr/share/man/man8/vouch.8.gz"},
		{"5", "vouch.yaml", "/usr/share/man/man5/vouch.yaml.5.gz"},
	} {
		if where := strings.TrimSpace(command(t, "man", "-w", page.section, page.name)); where != page.file {
			t.Errorf("man -w %s %s: %q, want %s", page.section, page.name, where, page.file)
		}
		cmd := exec.Command("man", "--warnings", page.section, page.name)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("man %s %s: %v\n%s", page.section, page.name, err, stderr.String())
		}
	}

	// What postinst made without systemd: user, group, directory,
	// postfix's membership.
	u, err := user.Lookup("vouch")
	if err != nil {
		t.Fatalf("no vouch user: %v", err)
	}
	if pw := command(t, "getent", "passwd", "vouch"); !strings.HasSuffix(strings.TrimSpace(pw), ":/nonexistent:/usr/sbin/nologin") {
		t.Errorf("vouch user %q: want home /nonexistent, shell /usr/sbin/nologin", pw)
	}
	g, err := user.LookupGroup("vouch")
	if err != nil || g.Gid != u.Gid {
		t.Errorf("group vouch %v (%v) is not the vouch user's group %s", g, err, u.Gid)
	}
	if groups := strings.Fields(command(t, "id", "-nG", "postfix")); !contains(groups, "vouch") {
		t.Errorf("postfix is in groups %v, not in vouch", groups)
	}
	checkOwner(t, sockDir, os.ModeDir|0o750, u.Uid, g.Gid)

	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := exec.Command(sa, "verify", "--man=no", "--generators=no", "/usr/lib/systemd/system/vouch.service").CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func checkOwner(t *testing.T, path string, mode os.FileMode, uid, gid string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&(os.ModeType|os.ModePerm) != mode || strconv.Itoa(int(st.Uid)) != uid || strconv.Itoa(int(st.Gid)) != gid {
		t.Errorf("%s: mode %v owner %d:%d, want %v %s:%s", path, fi.Mode(), st.Uid, st.Gid, mode, uid, gid)
	}
}

// TestInstalledWithPostfix is the documented Debian set-up end to end:
// the installed vouch, as user vouch, on the packaged socket inside
// Postfix's chroot, resolving through unbound; Postfix with Debian's own
// master.cf (smtpd chrooted) and the packaged main.cf snippet; SMTP
// clients on their own loopback addresses.
func TestInstalledWithPostfix(t *testing.T) {
	requireInstalled(t)
	for _, bin := range []string{"/usr/sbin/postfix", "/usr/sbin/unbound", "/usr/bin/setpriv"} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s not installed (.ci/run installs postfix, unbound, util-linux)", bin)
		}
	}
	if out, err := exec.Command("/usr/sbin/postfix", "status").CombinedOutput(); err == nil {
		t.Fatalf("the system Postfix is running (%s); this test runs its own on %s: postfix stop", bytes.TrimSpace(out), queueDir)
	}
	work := workDir(t)

	// DNS: dnstest is authoritative for the test's names; unbound
	// recurses to it; vouch asks unbound only.
	auth := dnstest.New(t, zone)
	resolver := startUnbound(t, work, auth.Addr)

	// vouch's configuration: the installed file with three lines
	// changed: the resolver (docs/dns.md: a local unbound), the trusted
	// networks (the test's clients are on loopback, which the file
	// trusts), and a rule that quarantines SPF softfail, to show the
	// documented release from Postfix's hold queue.
	conf := derivedConfig(t, work, map[string]string{
		"  servers: []": fmt.Sprintf("  servers: [%q]", resolver),
		`  trusted_networks: ["127.0.0.0/8", "::1/128"]`: `  trusted_networks: ["127.0.0.1/32"]`,
		"  preset: standard":                             "  preset: standard\n  rules: {spf: {softfail: quarantine}}",
	})
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	v := startVouch(t, work, conf, metrics)

	// The socket as the documentation describes it.
	u, _ := user.Lookup("vouch")
	checkOwner(t, sockPath, os.ModeSocket|0o660, u.Uid, u.Gid)
	if out, err := exec.Command(binPath, "healthcheck", "-metrics.listen", metrics).CombinedOutput(); err != nil {
		t.Errorf("vouch healthcheck: %v\n%s", err, out)
	}

	pf := startPostfix(t, work)

	t.Run("pass", func(t *testing.T) {
		c := smtp(t, pf, good, "mail.good.test")
		reply(t, "MAIL", c.MailFrom("alice@good.test"), 250, "")
		reply(t, "RCPT", c.RcptTo("alice@example.test"), 250, "")
		reply(t, "DATA", c.Data(mta.SimpleMessage("alice@good.test", "alice@example.test", "via the package", "hello\n")), 250, "")
		msg := pf.mailbox(t, "alice", 1)[0]
		ar := msg.Get("Authentication-Results")
		for _, want := range []string{"mx.example.test;", "iprev=pass", "spf=pass smtp.mailfrom=alice@good.test"} {
			if !strings.Contains(ar, want) {
				t.Errorf("Authentication-Results %q lacks %q", ar, want)
			}
		}
		if rs := msg.Get("Received-SPF"); !strings.HasPrefix(rs, "pass ") {
			t.Errorf("Received-SPF %q, want pass", rs)
		}
	})
	t.Run("spf fail", func(t *testing.T) {
		c := smtp(t, pf, other, "mail.other.test")
		reply(t, "MAIL", c.MailFrom("mallory@good.test"), 250, "")
		reply(t, "RCPT", c.RcptTo("alice@example.test"), 550, "550 5.7.23 SPF: 127.0.2.13 is not allowed to send mail from good.test")
	})
	t.Run("no PTR", func(t *testing.T) {
		c := smtp(t, pf, noPTR, "mail.nospf.test")
		reply(t, "MAIL", c.MailFrom("bob@nospf.test"), 250, "")
		reply(t, "RCPT", c.RcptTo("alice@example.test"), 450, "450 4.7.25 Client address 127.0.2.11 has no reverse DNS (PTR) record")
	})
	t.Run("quarantine and release", func(t *testing.T) {
		c := smtp(t, pf, good, "mail.good.test")
		reply(t, "MAIL", c.MailFrom("carol@soft.test"), 250, "")
		reply(t, "RCPT", c.RcptTo("alice@example.test"), 250, "")
		reply(t, "DATA", c.Data(mta.SimpleMessage("carol@soft.test", "alice@example.test", "held", "hello\n")), 250, "")
		// docs/deployment.md: postqueue -p marks held mail with "!".
		id := pf.held(t)
		if n := len(pf.delivered(t, "alice")); n != 1 {
			t.Fatalf("%d messages delivered before the release, want only the first test's", n)
		}
		command(t, "/usr/sbin/postsuper", "-c", pf.dir, "-H", id)
		command(t, "/usr/sbin/postqueue", "-c", pf.dir, "-i", id)
		// Maildir names do not sort by arrival: find it by subject.
		var released *mta.Message
		for _, m := range pf.mailbox(t, "alice", 2) {
			if m.Get("Subject") == "held" {
				released = &m
			}
		}
		if released == nil {
			t.Fatal("the released message is not in the mailbox")
		}
		if ar := released.Get("Authentication-Results"); !strings.Contains(ar, "spf=softfail smtp.mailfrom=carol@soft.test") {
			t.Errorf("released message: Authentication-Results %q", ar)
		}
	})
	// Sendmail on the same socket, as docs/deployment.md offers: it
	// connects as root, so it needs no group.
	t.Run("sendmail", func(t *testing.T) {
		sm := mta.Start(t, "sendmail", mta.Options{MilterAddr: "local:" + sockPath})
		c := mta.Dial(t, sm.SMTPAddr(), other)
		reply(t, "greeting", c.Greeting(), 220, "")
		reply(t, "EHLO", c.Ehlo("mail.other.test"), 250, "")
		reply(t, "MAIL", c.MailFrom("mallory@good.test"), 250, "")
		reply(t, "RCPT", c.RcptTo("alice@"+sm.Domain()), 550,
			"550 5.7.23 <alice@"+sm.Domain()+">... SPF: 127.0.2.13 is not allowed to send mail from good.test")
	})
	if log := pf.log(); strings.Contains(log, "Milter service") {
		t.Errorf("Postfix had trouble with the milter:\n%s", log)
	}

	// vouch stops: STOPPING=1, and Postfix's milter_default_action
	// (tempfail, from the snippet) answers.
	v.stop(t)
	if out, err := exec.Command(binPath, "healthcheck", "-metrics.listen", metrics).CombinedOutput(); err == nil {
		t.Errorf("vouch healthcheck succeeded with vouch stopped:\n%s", out)
	}
	c := smtp(t, pf, good, "mail.good.test")
	reply(t, "MAIL with vouch stopped", c.MailFrom("alice@good.test"), 451, "451 4.7.1 Service unavailable - try again later")
}

// TestInstalledSocketGroup: a milter.socket_group vouch is not a member
// of cannot work under the package's user: vouch refuses to start, as
// docs/configuration.md says.
func TestInstalledSocketGroup(t *testing.T) {
	requireInstalled(t)
	work := workDir(t)
	conf := filepath.Join(work, "group.yaml")
	os.WriteFile(conf, []byte("milter:\n  socket_group: postfix\nmetrics:\n  listen: \"\"\n"), 0o644)
	command(t, binPath, "config", "check", conf)
	sock := filepath.Join(sockDir, "group-test.sock")
	cmd := asVouch(binPath, "serve", "-config", conf, "-milter.listen", "unix:"+sock)
	out, err := cmd.CombinedOutput()
	os.Remove(sock)
	if err == nil || !strings.Contains(string(out), "operation not permitted") {
		t.Errorf("vouch with socket_group: postfix: %v\n%s\nwant exit 1 with chown's operation not permitted", err, out)
	}
}

// workDir is a directory the unprivileged users (vouch, nobody) can
// traverse; t.TempDir's parent is 0700.
func workDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vouch-deb-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
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

// derivedConfig copies the installed configuration with whole lines
// replaced, each of which must be there exactly once.
func derivedConfig(t *testing.T, dir string, replace map[string]string) string {
	t.Helper()
	data, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for old, repl := range replace {
		n := 0
		for i, l := range lines {
			if l == old {
				lines[i] = repl
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s: line %q found %d times, want once", confPath, old, n)
		}
	}
	p := filepath.Join(dir, "vouch.yaml")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	command(t, binPath, "config", "check", p)
	return p
}

// asVouch runs the installed binary as user vouch with its groups, no
// capabilities and no new privileges: what the unit's User=, Group= and
// hardening give it, without systemd.
func asVouch(args ...string) *exec.Cmd {
	return exec.Command("/usr/bin/setpriv", append([]string{"--reuid=vouch", "--regid=vouch", "--init-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"}, args...)...)
}

type vouchProc struct {
	cmd      *exec.Cmd
	log      *checktest.LogBuffer
	notify   *net.UnixConn
	exited   chan error
	stopOnce sync.Once
}

// startVouch starts the installed vouch as the unit would, and waits for
// its READY=1 on a notification socket of the test's, as systemd would.
func startVouch(t *testing.T, work, conf, metrics string) *vouchProc {
	t.Helper()
	notifyPath := filepath.Join(work, "notify.sock")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(notifyPath, 0o666) // vouch sends as user vouch
	v := &vouchProc{log: &checktest.LogBuffer{}, notify: nc, exited: make(chan error, 1)}
	v.cmd = asVouch(binPath, "serve", "-config", conf, "-metrics.listen", metrics)
	v.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET=" + notifyPath}
	v.cmd.Stdout, v.cmd.Stderr = v.log, v.log
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { v.exited <- v.cmd.Wait() }()
	t.Cleanup(func() {
		v.stop(t)
		nc.Close()
		if t.Failed() {
			t.Logf("vouch log:\n%s", v.log.String())
		}
	})
	if state := v.nextNotify(t); state != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", state)
	}
	return v
}

func (v *vouchProc) nextNotify(t *testing.T) string {
	t.Helper()
	buf := make([]byte, 4096)
	v.notify.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := v.notify.Read(buf)
	if err != nil {
		t.Fatalf("no notification from vouch: %v\n%s", err, v.log.String())
	}
	return string(buf[:n])
}

// stop sends SIGTERM, expects STOPPING=1 and waits for the exit.
func (v *vouchProc) stop(t *testing.T) {
	v.stopOnce.Do(func() {
		select {
		case err := <-v.exited:
			t.Errorf("vouch exited early: %v", err)
			return
		default:
		}
		v.cmd.Process.Signal(syscall.SIGTERM)
		if state := v.nextNotify(t); state != "STOPPING=1" {
			t.Errorf("on SIGTERM: %q, want STOPPING=1", state)
		}
		select {
		case err := <-v.exited:
			if err != nil {
				t.Errorf("vouch exited with %v", err)
			}
		case <-time.After(45 * time.Second):
			v.cmd.Process.Kill()
			t.Error("vouch did not exit within 45s of SIGTERM")
		}
		if _, err := os.Stat(sockPath); err == nil {
			t.Errorf("%s left behind after vouch stopped", sockPath)
		}
	})
}

// startUnbound runs Debian's unbound as a private recursive resolver on
// a free loopback port, sending the test's zones to dnstest.
func startUnbound(t *testing.T, work, authAddr string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(authAddr)
	listen := freePort(t)
	conf := filepath.Join(work, "unbound.conf")
	text := fmt.Sprintf(`server:
	interface: 127.0.0.1
	port: %d
	do-ip6: no
	do-daemonize: no
	chroot: ""
	username: ""
	directory: %q
	pidfile: ""
	use-syslog: no
	logfile: ""
	verbosity: 1
	access-control: 127.0.0.0/8 allow
	do-not-query-localhost: no
	module-config: "iterator"
	qname-minimisation: no
	# RFC 6761 names unbound answers itself by default.
	local-zone: "test." nodefault
	local-zone: "127.in-addr.arpa." nodefault
	domain-insecure: "test."
	domain-insecure: "127.in-addr.arpa."
remote-control:
	control-enable: no
stub-zone:
	name: "test."
	stub-addr: %s@%s
stub-zone:
	name: "127.in-addr.arpa."
	stub-addr: %s@%s
`, listen, work, host, port, host, port)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("/usr/sbin/unbound-checkconf", conf).CombinedOutput(); err != nil {
		t.Fatalf("unbound-checkconf: %v\n%s", err, out)
	}
	log := &checktest.LogBuffer{}
	cmd := exec.Command("/usr/sbin/unbound", "-d", "-c", conf)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("unbound log:\n%s", log.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", listen)
	// Ready when it resolves a test name through dnstest.
	m := new(mdns.Msg)
	m.SetQuestion("mail.good.test.", mdns.TypeA)
	m.RecursionDesired = true
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, _, err := (&mdns.Client{Timeout: time.Second}).Exchange(m, addr)
		if err == nil && r.Rcode == mdns.RcodeSuccess && len(r.Answer) == 1 {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("unbound on %s does not resolve mail.good.test: %v %v\n%s", addr, r, err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type postfix struct {
	dir, addr string
	mail      string
}

// startPostfix runs Postfix on the machine's queue directory with a
// private configuration directory: Debian's own master.cf (smtpd
// chrooted, on a free loopback port instead of port 25) and a main.cf of
// test settings plus the package's snippet, verbatim. It delivers
// example.test to maildirs of the test's with virtual(8).
func startPostfix(t *testing.T, work string) *postfix {
	t.Helper()
	pf := &postfix{dir: filepath.Join(work, "postfix"), mail: filepath.Join(work, "mail")}
	os.Mkdir(pf.dir, 0o755)
	os.Mkdir(pf.mail, 0o755)
	os.Chown(pf.mail, 65534, 65534)

	port := freePort(t)
	pf.addr = fmt.Sprintf("127.0.0.1:%d", port)
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	smtpd := regexp.MustCompile(`(?m)^smtp(\s+inet\s+\S+\s+\S+\s+)(\S+)(\s+\S+\s+\S+\s+smtpd)$`)
	m := smtpd.FindSubmatch(master)
	if m == nil {
		t.Fatal("/etc/postfix/master.cf has no 'smtp inet ... smtpd' line")
	}
	if string(m[2]) != "y" {
		t.Fatalf("Debian's master.cf runs smtpd with chroot %q; this test is about the chrooted smtpd", m[2])
	}
	master = smtpd.ReplaceAll(master, []byte(pf.addr+"${1}${2}${3}"))

	snippet, err := os.ReadFile(snippetPath)
	if err != nil {
		t.Fatal(err)
	}
	mainCF := fmt.Sprintf(`# vouch deb e2e (deploy/debian): test settings, then the package's snippet
compatibility_level = 3.6
myhostname = mx.example.test
mydomain = example.test
myorigin = $myhostname
mydestination =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
disable_dns_lookups = yes
smtp_host_lookup = native
defer_transports = smtp relay
biff = no
maillog_file = %s
maillog_file_prefixes = %s
virtual_mailbox_domains = example.test
virtual_mailbox_base = %s
virtual_mailbox_maps = inline:{ alice@example.test=alice/ }
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534

`, filepath.Join(work, "maillog"), work, pf.mail)
	os.WriteFile(filepath.Join(pf.dir, "main.cf"), append([]byte(mainCF), snippet...), 0o644)
	os.WriteFile(filepath.Join(pf.dir, "master.cf"), master, 0o644)
	// Postfix waits for config files modified "now" to settle.
	past := time.Now().Add(-time.Minute)
	for _, f := range []string{"main.cf", "master.cf"} {
		os.Chtimes(filepath.Join(pf.dir, f), past, past)
	}
	if chroot := strings.TrimSpace(command(t, "/usr/sbin/postconf", "-c", pf.dir, "-F", pf.addr+"/inet/chroot")); chroot != pf.addr+"/inet/chroot = y" {
		t.Fatalf("smtpd not chrooted: %s", chroot)
	}
	if milters := strings.TrimSpace(command(t, "/usr/sbin/postconf", "-c", pf.dir, "-h", "smtpd_milters")); milters != "unix:vouch/vouch.sock" {
		t.Fatalf("smtpd_milters = %s, want the snippet's unix:vouch/vouch.sock", milters)
	}

	command(t, "/usr/sbin/postfix", "-c", pf.dir, "start")
	t.Cleanup(func() {
		exec.Command("/usr/sbin/postfix", "-c", pf.dir, "stop").Run()
		// Nothing the test sent should stay in the machine's queue.
		exec.Command("/usr/sbin/postsuper", "-c", pf.dir, "-d", "ALL").Run()
		if t.Failed() {
			t.Logf("postfix log:\n%s", pf.log())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", pf.addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix does not listen on %s: %v\n%s", pf.addr, err, pf.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return pf
}

func (pf *postfix) log() string {
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(pf.dir), "maillog"))
	return string(b)
}

// held waits for one message on hold in postqueue -p (a "!" after the
// queue id) and returns its id.
func (pf *postfix) held(t *testing.T) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^([0-9A-F]+)!\s`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := command(t, "/usr/sbin/postqueue", "-c", pf.dir, "-p")
		if m := re.FindStringSubmatch(out); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no held message in postqueue -p:\n%s\n%s", out, pf.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// delivered lists user's maildir now.
func (pf *postfix) delivered(t *testing.T, user string) []os.DirEntry {
	entries, _ := os.ReadDir(filepath.Join(pf.mail, user, "new"))
	return entries
}

// mailbox waits for n messages in user's maildir (in no particular order).
func (pf *postfix) mailbox(t *testing.T, user string, n int) []mta.Message {
	t.Helper()
	dir := filepath.Join(pf.mail, user, "new")
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _ := os.ReadDir(dir)
		if len(entries) >= n {
			var msgs []mta.Message
			for _, e := range entries {
				raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, mta.ParseMessage(raw))
			}
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages in %s after 30s, want %d\n%s", len(entries), dir, n, pf.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func smtp(t *testing.T, pf *postfix, from net.IP, helo string) *mta.Client {
	t.Helper()
	c := mta.Dial(t, pf.addr, from)
	reply(t, "greeting", c.Greeting(), 220, "")
	reply(t, "EHLO", c.Ehlo(helo), 250, "")
	return c
}

// reply checks a reply's code and, when want is not empty, its whole text.
func reply(t *testing.T, what string, r mta.Reply, code int, want string) {
	t.Helper()
	if r.Code != code || want != "" && r.String() != want {
		t.Fatalf("%s: %q, want %d %s", what, r.String(), code, want)
	}
}
