// Package sendmail holds the sendmail.mc lines that hook vouch into
// Sendmail; the tests check them against vouch's defaults and build a
// sendmail.cf from them with Sendmail's own m4 files.
package sendmail

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/socket"
)

func snippet(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("sendmail.mc.snippet")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// filterSpec returns the equates of the INPUT_MAIL_FILTER line: S, F, T.
func filterSpec(t *testing.T, mc string) map[string]string {
	t.Helper()
	m := regexp.MustCompile("(?m)^INPUT_MAIL_FILTER\\(`vouch', `([^']*)'\\)dnl$").FindStringSubmatch(mc)
	if m == nil {
		t.Fatal("no INPUT_MAIL_FILTER(`vouch', ...) line")
	}
	out := map[string]string{}
	for _, eq := range strings.Split(m[1], ", ") {
		k, v, ok := strings.Cut(eq, "=")
		if !ok {
			t.Fatalf("bad equate %q", eq)
		}
		out[k] = v
	}
	return out
}

func TestFilterLine(t *testing.T) {
	spec := filterSpec(t, snippet(t))
	def := config.Default()

	// S= is vouch's default socket, in Sendmail's spelling.
	want := def.Milter.Listen
	got, err := socket.Parse(spec["S"])
	if err != nil || got.Address != want.Address {
		t.Errorf("S=%s (%v) is not vouch's default %s", spec["S"], err, def.Milter.Listen)
	}
	if spec["F"] != "T" {
		t.Errorf("F=%s, want T: a failing vouch must tempfail, not pass mail unchecked", spec["F"])
	}
	timeouts := map[string]time.Duration{}
	for _, part := range strings.Split(spec["T"], ";") {
		k, v, _ := strings.Cut(part, ":")
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("T=%s: %v", spec["T"], err)
		}
		timeouts[k] = d
	}
	for _, k := range []string{"C", "S", "R", "E"} {
		if timeouts[k] == 0 {
			t.Errorf("T= does not set %s", k)
		}
	}
	if longest := def.Checks.Deadline + time.Second; timeouts["R"] <= longest {
		t.Errorf("T=R:%v does not exceed vouch's longest answer, checks.deadline+1s = %v", timeouts["R"], longest)
	}
}

// TestSendmailCF builds a sendmail.cf containing the snippet with
// Sendmail's cf.m4 and checks the options it yields. Needs m4 and
// Sendmail's cf files: under VOUCH_SENDMAIL_ROOT (where .ci/sendmail-root
// unpacks them; /opt/vouch-sendmail by default), else an installed
// Sendmail's. Skipped without them, unless VOUCH_E2E=1 and
// VOUCH_SENDMAIL_ROOT is set.
func TestSendmailCF(t *testing.T) {
	root := os.Getenv("VOUCH_SENDMAIL_ROOT")
	required := os.Getenv("VOUCH_E2E") == "1" && root != ""
	skip := func(msg string) {
		t.Helper()
		if required {
			t.Fatal(msg + " (VOUCH_E2E=1, VOUCH_SENDMAIL_ROOT set)")
		}
		t.Skip(msg + "; skipping")
	}
	m4, err := exec.LookPath("m4")
	if err != nil {
		skip("m4 not installed")
	}
	// .ci/sendmail-root's default root, then an installed Sendmail.
	candidates := []string{"/opt/vouch-sendmail/usr/share/sendmail/cf", "/usr/share/sendmail/cf"}
	if root != "" {
		candidates = []string{filepath.Join(root, "usr/share/sendmail/cf")}
	}
	var cf string
	for _, dir := range candidates {
		if _, err := os.Stat(filepath.Join(dir, "m4", "cf.m4")); err == nil {
			cf = dir
			break
		}
	}
	if cf == "" {
		skip("Sendmail's cf.m4 not found in " + strings.Join(candidates, " or "))
	}
	abs, err := filepath.Abs("sendmail.mc.snippet")
	if err != nil {
		t.Fatal(err)
	}
	mc := strings.Join([]string{
		"divert(-1)",
		"define(`_CF_DIR_', `" + cf + "/')",
		"divert(0)dnl",
		"include(`" + cf + "/m4/cf.m4')dnl",
		"OSTYPE(`linux')dnl",
		"include(`" + abs + "')dnl",
		"MAILER(`local')dnl",
		"MAILER(`smtp')dnl",
		"",
	}, "\n")
	mcPath := filepath.Join(t.TempDir(), "sendmail.mc")
	os.WriteFile(mcPath, []byte(mc), 0o644)
	var out, errOut bytes.Buffer
	cmd := exec.Command(m4, mcPath)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	// cf.m4 reports configuration errors on stderr and still exits 0.
	if err := cmd.Run(); err != nil || errOut.Len() > 0 {
		t.Fatalf("m4: %v\n%s", err, errOut.String())
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(out.String(), "\n") {
		lines[l] = true
	}
	for _, want := range []string{
		"O InputMailFilters=vouch",
		"O Milter.macros.connect=j, _, {daemon_name}, {if_name}, {if_addr}, {client_addr}, {client_name}, {client_resolve}",
		"O Milter.macros.envfrom=i, {auth_type}, {auth_authen}, {auth_ssf}, {auth_author}, {mail_mailer}, {mail_host}, {mail_addr}",
		"Xvouch, S=inet:8895@127.0.0.1, F=T, T=C:10s;S:10s;R:20s;E:30s",
	} {
		if !lines[want] {
			t.Errorf("sendmail.cf lacks the line\n\t%s", want)
		}
	}
	// The README quotes the same lines.
	readme, _ := os.ReadFile("README.md")
	for _, l := range []string{"O Milter.macros.connect=", "Xvouch, "} {
		for want := range lines {
			if strings.HasPrefix(want, l) && !strings.Contains(string(readme), want) {
				t.Errorf("README.md does not quote %q", want)
			}
		}
	}
}
