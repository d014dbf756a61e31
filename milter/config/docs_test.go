package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// keys lists every dotted YAML key of t.
func keys(prefix string, t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			out = append(out, keys(prefix, f.Type)...)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		out = append(out, key)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			out = append(out, keys(key+".", f.Type)...)
		}
	}
	return out
}

// TestEveryKeyDocumented fails when a key is missing from
// docs/configuration.md, either from its tables (`key`) or from the
// annotated defaults.
func TestEveryKeyDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys("", reflect.TypeOf(Config{})) {
		if !strings.Contains(string(doc), "`"+k+"`") && !isSection(k) {
			t.Errorf("key %s is not documented in docs/configuration.md", k)
		}
	}
}

func isSection(k string) bool {
	switch k {
	case "milter", "metrics", "log", "dns", "checks", "policy", "headers", "checks.iprev", "checks.helo", "checks.spf":
		return true
	}
	return false
}

// TestDocumentedDefaults: the "whole file, with its defaults" block of
// docs/configuration.md is a valid file and says exactly what Default does.
func TestDocumentedDefaults(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## The whole file, with its defaults")
	if !ok {
		t.Fatal("no defaults section")
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("no yaml block in the defaults section")
	}
	c, err := Parse("docs/configuration.md", []byte(block))
	if err != nil {
		t.Fatalf("the documented defaults do not load: %v", err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("documented defaults differ from the embedded ones:\n%+v\n%+v", c, Default())
	}
}

// TestDocumentedErrors: the example file of docs/configuration.md gives
// exactly the errors the page shows.
func TestDocumentedErrors(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(doc), "every problem of the file is reported at once. For this file:")
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	file, rest, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("no example file")
	}
	_, rest, _ = strings.Cut(rest, "$ vouch config check vouch.yaml\n")
	want, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("no example output")
	}
	_, err = Parse("vouch.yaml", []byte(file))
	if err == nil {
		t.Fatal("the example file loads")
	}
	if got := err.Error() + "\n"; got != want {
		t.Errorf("the page shows\n%s\nvouch says\n%s", want, got)
	}
}
