package dnsname

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name                         string
		helo, header, identity, host bool
	}{
		{"mail.example.com", true, true, true, true},
		{"mail.example.com.", true, false, true, false},
		{"MAIL.Example.COM", true, true, true, true},
		{"localhost", false, false, false, true},
		{"_spf.example.com", false, false, true, true},
		{"a_b.example.com", false, false, true, true},
		{"-a.example.com", false, false, true, true},
		{"a-.example.com", false, false, true, true},
		{"xn--bcher-kva.example", true, true, true, true},
		{"192.0.2.1", false, true, false, true},
		{"host.123", false, true, false, true},
		{"123.example", true, true, true, true},
		{"a..b", false, false, false, false},
		{".a.b", false, false, false, false},
		{"", false, false, false, false},
		{".", false, false, false, false},
		{"a b.example", false, false, false, false},
		{"a%b.example", false, false, false, false},
		{"caf\xc3\xa9.example", false, false, false, false},
		{"[192.0.2.1]", false, false, false, false},
		{long + ".com", true, true, true, true},
		{long + "a.com", false, false, false, false},
		{strings.Repeat("a.", 126) + "a", true, true, true, true},      // 253 octets
		{strings.Repeat("a.", 126) + "ab", false, false, false, false}, // 254
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []struct {
				rules Rules
				label string
				want  bool
			}{{HELO, "HELO", tc.helo}, {Header, "Header", tc.header}, {Identity, "Identity", tc.identity}, {Host, "Host", tc.host}} {
				if got := Valid(tc.name, v.rules); got != v.want {
					t.Errorf("Valid(%q, %s) = %v, want %v", tc.name, v.label, got, v.want)
				}
			}
		})
	}
}

func FuzzValid(f *testing.F) {
	for _, s := range []string{"mail.example.com", "a..b", "_spf.x.y", "192.0.2.1", "-a.b", "x.", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, r := range []Rules{HELO, Header, Identity, Host, {}} {
			if !Valid(s, r) {
				continue
			}
			n := strings.TrimSuffix(s, ".")
			if len(n) > MaxName || strings.Contains(n, "..") || strings.ContainsAny(n, " \t\r\n%@[]") {
				t.Fatalf("Valid(%q, %+v) accepted a name with bad syntax", s, r)
			}
			if r.MultiLabel && !strings.Contains(n, ".") {
				t.Fatalf("Valid(%q, %+v) accepted a single label as a domain", s, r)
			}
		}
	})
}
