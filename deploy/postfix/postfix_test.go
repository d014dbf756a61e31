// Package postfix holds the main.cf lines that hook vouch into Postfix;
// the tests check them with postconf and against vouch's defaults.
package postfix

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/milter/config"
)

// params reads main.cf syntax: name = value, continuation lines start
// with white space, # starts a comment line.
func params(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	last := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#"):
		case line[0] == ' ' || line[0] == '\t':
			if last == "" {
				t.Fatalf("continuation line without a parameter: %q", line)
			}
			out[last] += " " + strings.TrimSpace(line)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not name = value: %q", path, line)
			}
			last = strings.TrimSpace(k)
			out[last] = strings.TrimSpace(v)
		}
	}
	return out
}

func TestSnippet(t *testing.T) {
	p := params(t, "main.cf.snippet")
	def := config.Default()

	for _, c := range []struct{ name, want string }{
		{"smtpd_milters", "unix:vouch/vouch.sock"},
		{"non_smtpd_milters", ""},
		{"milter_default_action", "tempfail"},
		{"milter_protocol", "6"},
	} {
		if got, ok := p[c.name]; !ok || got != c.want {
			t.Errorf("%s = %q (set: %v), want %q", c.name, got, ok, c.want)
		}
	}

	// The command timeout must outlast vouch's longest answer: the
	// decision waits for checks.deadline, plus a second of guard.
	cmd := duration(t, p["milter_command_timeout"])
	if longest := def.Checks.Deadline + time.Second; cmd <= longest {
		t.Errorf("milter_command_timeout %v does not exceed vouch's longest answer %v", cmd, longest)
	}
	// vouch refuses a deadline of 30s or more because of Postfix's 30s.
	if cmd < 30*time.Second {
		t.Errorf("milter_command_timeout %v is below Postfix's default 30s, which vouch's limits assume", cmd)
	}
	for _, name := range []string{"milter_connect_timeout", "milter_content_timeout"} {
		if d := duration(t, p[name]); d < 5*time.Second {
			t.Errorf("%s %v: too short for a loaded host", name, d)
		}
	}

	// smtpd_milters is relative to the queue directory; it must name the
	// socket the packaged configuration listens on and tmpfiles prepares.
	sock := "/var/spool/postfix/" + strings.TrimPrefix(p["smtpd_milters"], "unix:")
	tmpfiles, err := os.ReadFile("../systemd/vouch.tmpfiles")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(tmpfiles), "d "+filepath.Dir(sock)+" ") {
		t.Errorf("../systemd/vouch.tmpfiles does not create %s", filepath.Dir(sock))
	}
	cfg, err := config.Load("../systemd/vouch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Milter.Listen.String() != "unix:"+sock {
		t.Errorf("../systemd/vouch.yaml (/etc/vouch/vouch.yaml) listens on %s, not on %s", cfg.Milter.Listen, sock)
	}
}

// duration reads a Postfix time value: a number with an optional unit
// (s, m, h, d, w; seconds by default).
func duration(t *testing.T, v string) time.Duration {
	t.Helper()
	if v == "" {
		t.Fatal("time parameter not set")
	}
	unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}
	mult := time.Second
	if u, ok := unit[v[len(v)-1]]; ok {
		mult, v = u, v[:len(v)-1]
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			t.Fatalf("bad Postfix time %q", v)
		}
		n = 10*n + int(c-'0')
	}
	return time.Duration(n) * mult
}

// TestPostconf has Postfix itself read the snippet: a misspelt parameter
// is "unused", a bad value an error. Needs postconf (Debian package
// postfix); skipped without it unless VOUCH_E2E=1.
func TestPostconf(t *testing.T) {
	postconf, err := exec.LookPath("postconf")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/postconf"); serr == nil {
			postconf = "/usr/sbin/postconf"
		} else if os.Getenv("VOUCH_E2E") == "1" {
			t.Fatal("postconf not found and VOUCH_E2E=1 (.ci/run installs postfix)")
		} else {
			t.Skip("postconf not found (Debian package postfix); skipping")
		}
	}
	dir := t.TempDir()
	snippet, err := os.ReadFile("main.cf.snippet")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "main.cf"), snippet, 0o644)
	// postconf reports unused parameters only with a master.cf present.
	os.WriteFile(filepath.Join(dir, "master.cf"), nil, 0o644)
	out, err := exec.Command(postconf, "-c", dir, "-n").CombinedOutput()
	if err != nil || strings.Contains(string(out), "warning") || strings.Contains(string(out), "fatal") {
		t.Fatalf("postconf -n: %v\n%s", err, out)
	}
	want := params(t, "main.cf.snippet")
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, " = ")
		got[k] = v
	}
	for k, v := range want {
		if k == "non_smtpd_milters" && v == "" {
			continue // postconf -n omits a value equal to the default
		}
		if got[k] != v {
			t.Errorf("postconf reads %s = %q, the snippet says %q", k, got[k], v)
		}
	}
	// Time values Postfix accepts: postconf -h prints them back.
	names := []string{"milter_connect_timeout", "milter_command_timeout", "milter_content_timeout"}
	out, err = exec.Command(postconf, append([]string{"-c", dir, "-h"}, names...)...).CombinedOutput()
	values := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil || len(values) != len(names) {
		t.Fatalf("postconf -h: %v\n%s", err, out)
	}
	for i, name := range names {
		if values[i] != want[name] {
			t.Errorf("postconf -h %s: %q, want %q", name, values[i], want[name])
		}
	}
}
