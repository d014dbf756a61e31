package debian

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDeploymentDoc holds docs/deployment.md to what the package installs
// and what installed_test.go runs: the same paths, the same commands.
func TestDeploymentDoc(t *testing.T) {
	doc, err := os.ReadFile("../../docs/deployment.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	readme, _ := os.ReadFile("../../README.md")

	// How vouch is started without systemd: the test's own command line.
	start := strings.TrimPrefix(strings.Join(asVouch(binPath, "serve", "-config", confPath).Args, " "), "/usr/bin/")
	if flat := strings.ReplaceAll(text, " \\\n    ", " "); !strings.Contains(flat, start) {
		t.Errorf("docs/deployment.md does not show how the test starts vouch:\n\t%s", start)
	}
	for _, want := range []string{
		"deploy/debian/build.sh dist", "dpkg -i dist/vouch_*.deb", // install
		snippetPath, "smtpd_milters = unix:vouch/vouch.sock", "postfix reload", // hook-up
		sockPath, "0750 vouch:vouch", `socket_mode: "0660"`, "usermod -a -G vouch postfix",
		"Before=postfix@-.service postfix.service", "Type=notify",
		"postqueue -p", "postsuper -H QUEUEID", "postqueue -i QUEUEID", // quarantine
		"`inet:8895` alone listens on every address",
		"go install github.com/vouch-mail/vouch/cmd/vouch@latest",
		"VOUCH_DEB_E2E=1",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("docs/deployment.md lacks %q", want)
		}
	}
	for _, want := range []string{"go install github.com/vouch-mail/vouch/cmd/vouch@latest", "dpkg -i dist/vouch_*.deb"} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README.md lacks %q", want)
		}
	}

	// Every file the package installs outside /usr/share is named.
	data, _ := os.ReadFile("nfpm.yaml")
	var pkg struct{ Contents []struct{ Dst string } }
	if err := yaml.Unmarshal(data, &pkg); err != nil {
		t.Fatal(err)
	}
	for _, c := range pkg.Contents {
		if strings.HasPrefix(c.Dst, "/usr/share/man/") || c.Dst == "/usr/share/doc/vouch/README.md" ||
			c.Dst == "/usr/share/doc/vouch/deployment.md" || strings.HasSuffix(c.Dst, "/README.md") {
			continue
		}
		if !strings.Contains(text, c.Dst) {
			t.Errorf("docs/deployment.md does not say the package installs %s", c.Dst)
		}
	}
}
