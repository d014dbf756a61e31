// Command mangen renders vouch's manual pages from their Markdown sources
// in docs/man with go-md2man. vouch.yaml(5) takes its key reference from
// the tables of docs/configuration.md, so the two never disagree:
//
//	go run ./deploy/debian/mangen -version 0.1.0 -date 2026-12-01 -out DIR
//
// writes DIR/vouch.8 and DIR/vouch.yaml.5. deploy/debian/build.sh runs it.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
)

// keysMarker is the line of a page's source replaced by the key reference.
const keysMarker = "<!-- keys from docs/configuration.md -->"

// pages are the sources under docs/man and the pages they become.
var pages = []struct{ src, out string }{
	{"vouch.8.md", "vouch.8"},
	{"vouch.yaml.5.md", "vouch.yaml.5"},
}

func main() {
	root := flag.String("root", ".", "repository `directory`")
	out := flag.String("out", "", "output `directory`")
	version := flag.String("version", "devel", "vouch `version` for the page footers")
	date := flag.String("date", "", "`date` (YYYY-MM-DD) for the page footers")
	flag.Parse()
	if *out == "" || *date == "" {
		fmt.Fprintln(os.Stderr, "usage: mangen -out DIR -date YYYY-MM-DD [-version V] [-root DIR]")
		os.Exit(2)
	}
	if err := render(*root, *out, *version, *date); err != nil {
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
}

func render(root, out, version, date string) error {
	conf, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		return err
	}
	keys, err := keyReference(conf)
	if err != nil {
		return fmt.Errorf("docs/configuration.md: %w", err)
	}
	for _, p := range pages {
		src, err := os.ReadFile(filepath.Join(root, "docs", "man", p.src))
		if err != nil {
			return err
		}
		md, err := Page(src, keys, version, date)
		if err != nil {
			return fmt.Errorf("%s: %w", p.src, err)
		}
		if err := os.WriteFile(filepath.Join(out, p.out), md2man.Render(md), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Page fills in a source: @VERSION@ and @DATE@, and the key reference at
// keysMarker.
func Page(src, keys []byte, version, date string) ([]byte, error) {
	s := strings.NewReplacer("@VERSION@", version, "@DATE@", date).Replace(string(src))
	if strings.Contains(s, keysMarker) {
		s = strings.Replace(s, keysMarker, string(keys), 1)
	}
	return []byte(s), nil
}

var (
	link     = regexp.MustCompile(`\[([^\]]+)\]\([^)]+\)`)
	tableRow = regexp.MustCompile(`^\|(.*)\|$`)
)

// keyReference turns each "| key | default | meaning |" table of
// configuration.md, under its "## section" heading, into a definition
// list: the key, its default, what it means. Links become their text (the
// pages they point to are not beside a man page).
func keyReference(conf []byte) ([]byte, error) {
	var b bytes.Buffer
	section, inTable, n := "", false, 0
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			section, inTable = strings.TrimPrefix(line, "## "), false
		case line == "| key | default | meaning |":
			inTable = true
			fmt.Fprintf(&b, "### %s\n\n", section)
		case inTable && strings.HasPrefix(line, "|---"):
		case inTable && tableRow.MatchString(line):
			cells := strings.Split(tableRow.FindStringSubmatch(line)[1], " | ")
			if len(cells) != 3 {
				return nil, fmt.Errorf("row %q: %d cells, want key, default, meaning", line, len(cells))
			}
			key, def, meaning := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1]), strings.TrimSpace(cells[2])
			fmt.Fprintf(&b, "**%s** (default %s)\n:   %s\n\n", strings.Trim(key, "`"), def, link.ReplaceAllString(meaning, "$1"))
			n++
		default:
			inTable = false
		}
	}
	if n == 0 {
		return nil, errors.New(`no "| key | default | meaning |" tables`)
	}
	return b.Bytes(), sc.Err()
}
