package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPages renders the pages from the repository's sources and reads
// them back with man, as build.sh does: no warnings at 80 columns, every
// key of docs/configuration.md in vouch.yaml(5), every command in vouch(8).
func TestPages(t *testing.T) {
	out := t.TempDir()
	if err := render("../../..", out, "1.2.3", "2026-12-01"); err != nil {
		t.Fatal(err)
	}
	manBin, err := exec.LookPath("man")
	if err != nil {
		if os.Getenv("VOUCH_E2E") == "1" {
			t.Fatal("man not installed and VOUCH_E2E=1 (.ci/run installs man-db)")
		}
		t.Skip("man not installed (Debian package man-db); skipping")
	}
	text := map[string]string{}
	for _, p := range pages {
		cmd := exec.Command(manBin, "--warnings", "-l", filepath.Join(out, p.out))
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0", "MANPAGER=cat", "PAGER=cat")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("man --warnings -l %s: %v\n%s", p.out, err, stderr.String())
		}
		// Undo overstrike and the hyphenation of long words at line ends.
		s := regexp.MustCompile(".\b").ReplaceAllString(stdout.String(), "")
		text[p.out] = regexp.MustCompile(`‐\n\s*`).ReplaceAllString(s, "")
		if !strings.Contains(s, "vouch 1.2.3") || !strings.Contains(s, "2026-12-01") {
			t.Errorf("%s: no version and date in the footer", p.out)
		}
	}

	conf, _ := os.ReadFile("../../../docs/configuration.md")
	keys := regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\|").FindAllSubmatch(conf, -1)
	if len(keys) < 30 {
		t.Fatalf("only %d keys found in docs/configuration.md", len(keys))
	}
	for _, k := range keys {
		if !strings.Contains(text["vouch.yaml.5"], string(k[1])+" (default") {
			t.Errorf("vouch.yaml(5) lacks the key %s", k[1])
		}
	}
	// Justified text: any run of spaces between words.
	for _, cmd := range []string{`\[serve\]`, "config +check", "check", "audit", "healthcheck", "version", "help"} {
		if !regexp.MustCompile(`vouch +` + cmd).MatchString(text["vouch.8"]) {
			t.Errorf("vouch(8) does not show 'vouch %s'", cmd)
		}
	}
}
