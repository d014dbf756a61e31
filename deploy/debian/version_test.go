// Package debian builds vouch's Debian package (build.sh, nfpm.yaml,
// maintainer scripts) and tests it: the version logic here, the installed
// package end to end in installed_test.go (VOUCH_DEB_E2E=1, set by .ci/run
// after dpkg -i).
package debian

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// gitRepo is a scratch repository holding a copy of version.sh.
type gitRepo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T) *gitRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	r := &gitRepo{t: t, dir: t.TempDir()}
	script, err := os.ReadFile("version.sh")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(r.dir, "version.sh"), script, 0o755)
	r.git("init", "-q")
	r.git("add", "version.sh")
	r.commit("2026-12-01T10:00:00Z")
	return r
}

func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.test", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *gitRepo) commit(date string) {
	r.t.Helper()
	os.WriteFile(filepath.Join(r.dir, "f"), []byte(date), 0o644)
	r.git("add", "f")
	cmd := exec.Command("git", "commit", "-q", "-m", date)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.test", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("git commit: %v\n%s", err, out)
	}
}

func (r *gitRepo) version() string {
	r.t.Helper()
	out, err := exec.Command(filepath.Join(r.dir, "version.sh")).CombinedOutput()
	if err != nil {
		r.t.Fatalf("version.sh: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestVersion: the version build.sh gives the package and the binary,
// for an untagged repository (this one, until the first release), a
// tagged commit, commits after a tag and a dirty tree; and Debian sorts
// them in that order.
func TestVersion(t *testing.T) {
	r := newRepo(t)
	hash := func() string { return r.git("rev-parse", "--short=7", "HEAD") }

	untagged := r.version()
	if want := "0.0.0~git20261201." + hash(); untagged != want {
		t.Errorf("no tag: %q, want %q", untagged, want)
	}
	r.git("tag", "-a", "v0.1.0", "-m", "v0.1.0")
	tagged := r.version()
	if tagged != "0.1.0" {
		t.Errorf("on tag v0.1.0: %q, want 0.1.0", tagged)
	}
	r.commit("2026-12-02T10:00:00Z")
	r.commit("2026-12-03T10:00:00Z")
	after := r.version()
	if want := "0.1.0+git2." + hash(); after != want {
		t.Errorf("2 commits after v0.1.0: %q, want %q", after, want)
	}
	os.WriteFile(filepath.Join(r.dir, "f"), []byte("changed"), 0o644)
	dirty := r.version()
	if dirty != after+"+dirty" {
		t.Errorf("uncommitted change: %q, want %q", dirty, after+"+dirty")
	}

	valid := regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`) // Debian upstream version, no revision
	for _, v := range []string{untagged, tagged, after, dirty} {
		if !valid.MatchString(v) {
			t.Errorf("%q is not a Debian version without revision", v)
		}
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Log("dpkg not installed; ordering not checked")
		return
	}
	for _, pair := range [][2]string{{untagged, tagged}, {tagged, after}, {after, dirty}} {
		if err := exec.Command("dpkg", "--compare-versions", pair[0], "lt", pair[1]).Run(); err != nil {
			t.Errorf("dpkg does not sort %s before %s", pair[0], pair[1])
		}
	}
}

// TestPackageDefinition: every file nfpm.yaml packs exists (or is built
// by build.sh), lands where the unit and the docs expect it, and the
// configuration is a conffile.
func TestPackageDefinition(t *testing.T) {
	data, err := os.ReadFile("nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Contents []struct {
			Src, Dst, Type string
		}
		Scripts map[string]string
	}
	if err := yaml.Unmarshal(data, &pkg); err != nil {
		t.Fatal(err)
	}
	dsts := map[string]string{}
	for _, c := range pkg.Contents {
		dsts[c.Dst] = c.Type
		if strings.HasPrefix(c.Src, "${VOUCH_STAGE}/") {
			continue // built by build.sh
		}
		if _, err := os.Stat(filepath.Join("../..", c.Src)); err != nil {
			t.Errorf("nfpm.yaml packs %s: %v", c.Src, err)
		}
	}
	for _, want := range []string{"/usr/sbin/vouch", "/usr/lib/systemd/system/vouch.service", "/usr/lib/sysusers.d/vouch.conf",
		"/usr/lib/tmpfiles.d/vouch.conf", "/etc/vouch/vouch.yaml", "/usr/share/man/man8/vouch.8.gz",
		"/usr/share/man/man5/vouch.yaml.5.gz", "/usr/share/doc/vouch/postfix/main.cf.snippet",
		"/usr/share/doc/vouch/sendmail/sendmail.mc.snippet"} {
		if _, ok := dsts[want]; !ok {
			t.Errorf("the package has no %s", want)
		}
	}
	if typ := dsts["/etc/vouch/vouch.yaml"]; !strings.HasPrefix(typ, "config") {
		t.Errorf("/etc/vouch/vouch.yaml has type %q, want a conffile", typ)
	}
	for name, script := range pkg.Scripts {
		if out, err := exec.Command("sh", "-n", filepath.Join("../..", script)).CombinedOutput(); err != nil {
			t.Errorf("%s %s: %v\n%s", name, script, err, out)
		}
	}
}
