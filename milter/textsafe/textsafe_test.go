package textsafe

import (
	"strings"
	"testing"
)

func TestReply(t *testing.T) {
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"plain", "mail.example.com", 0, "mail.example.com"},
		{"percent doubled", "100% sure", 0, "100%% sure"},
		{"CR LF replaced", "evil\r\n250 ok", 0, "evil??250 ok"},
		{"8-bit replaced", "caf\xc3\xa9", 0, "caf??"},
		{"NUL replaced", "a\x00b", 0, "a?b"},
		{"cut", "abcdef", 4, "abcd"},
		{"cut never leaves a lone percent", "abc%", 4, "abc"},
		{"cut keeps a whole pair", "ab%", 4, "ab%%"},
		{"cut after pairs", "a%%", 4, "a%%"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Reply(tc.in, tc.max); got != tc.want {
				t.Errorf("Reply(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
		})
	}
}

func TestLog(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "user@example.com", "user@example.com"},
		{"line injection", "x\r\nlevel=ERROR msg=forged", "x%0D%0Alevel=ERROR msg=forged"},
		{"percent", "100%", "100%25"},
		{"backslash kept", `a\b`, `a\b`},
		{"ansi escape", "\x1b[31mred", "%1B[31mred"},
		{"8-bit", "caf\xc3\xa9", "caf%C3%A9"},
		{"long", strings.Repeat("a", MaxLog+10), strings.Repeat("a", MaxLog) + "..."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Log(tc.in); got != tc.want {
				t.Errorf("Log(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzReply: whatever the client sends, the reply text is printable ASCII,
// within bounds, and every '%' is part of a "%%" pair.
func FuzzReply(f *testing.F) {
	for _, s := range []string{"", "%", "%%%", "a\r\nb", "\xff\xfe", strings.Repeat("%", 600)} {
		f.Add(s, 10)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 4096 {
			max = 0
		}
		out := Reply(s, max)
		if max > 0 && len(out) > max {
			t.Fatalf("len %d > max %d", len(out), max)
		}
		for i := 0; i < len(out); i++ {
			if out[i] < 0x20 || out[i] > 0x7e {
				t.Fatalf("byte %#x at %d in %q", out[i], i, out)
			}
		}
		if strings.Contains(strings.ReplaceAll(out, "%%", ""), "%") {
			t.Fatalf("lone %% in %q", out)
		}
	})
}

func FuzzLog(f *testing.F) {
	for _, s := range []string{"", "\n", "%41", "\x1b", strings.Repeat("\xff", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Log(s)
		for i := 0; i < len(out); i++ {
			if out[i] < 0x20 || out[i] > 0x7e {
				t.Fatalf("byte %#x at %d in %q", out[i], i, out)
			}
		}
		if len(out) > 3*MaxLog+3 {
			t.Fatalf("len %d", len(out))
		}
	})
}
