package main

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseWorkload(t *testing.T) {
	text := `# comment

192.0.2.1 mx1.example.test alice@example.test bob@vouch.test
  192.0.2.2,mx2.example.test,<>,<postmaster@vouch.test>
2001:db8::25	mx6.example.test	<carol@example.test>	dave@vouch.test
::ffff:192.0.2.3, mx3.example.test , erin@example.test , frank@vouch.test
`
	got, err := ParseWorkload("w.txt", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := []Session{
		{netip.MustParseAddr("192.0.2.1"), "mx1.example.test", "alice@example.test", "bob@vouch.test", 3},
		{netip.MustParseAddr("192.0.2.2"), "mx2.example.test", "", "postmaster@vouch.test", 4},
		{netip.MustParseAddr("2001:db8::25"), "mx6.example.test", "carol@example.test", "dave@vouch.test", 5},
		{netip.MustParseAddr("192.0.2.3"), "mx3.example.test", "erin@example.test", "frank@vouch.test", 6},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d sessions, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("session %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseWorkloadErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"too few fields", "192.0.2.1 a b c\n# fine\n192.0.2.1 a b\n", "w.txt:3: want 4 fields (client IP, HELO, sender, recipient), got 3"},
		{"too many fields", "192.0.2.1 a b c d\n", "w.txt:1: want 4 fields"},
		{"bad IP", "\n300.1.1.1 a b c\n", `w.txt:2: client IP "300.1.1.1" is not an IP address`},
		{"IP with zone", "fe80::1%eth0 a b c\n", `w.txt:1: client IP "fe80::1%eth0" is not an IP address`},
		{"hostname for IP", "mx.example.test a b c\n", `w.txt:1: client IP "mx.example.test"`},
		{"NUL", "192.0.2.1 a\x00b b c\n", "w.txt:1: NUL byte in a field"},
		{"long field", "192.0.2.1 " + strings.Repeat("a", 5000) + " b c\n", "w.txt:1: field longer than 4096 bytes"},
		{"long line", "192.0.2.1 a b c\n" + strings.Repeat("a ", 20000) + "\n", "w.txt:2: line too long"},
		{"empty recipient", "192.0.2.1 a b <>\n", "w.txt:1: empty recipient"},
		{"empty", "# nothing\n\n", "w.txt: no sessions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseWorkload("w.txt", strings.NewReader(tc.text))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %v, want it to start with %q", err, tc.want)
			}
		})
	}
}

func TestShippedWorkloads(t *testing.T) {
	for _, f := range []struct {
		path string
		n    int
	}{{"testdata/workload.txt", 200}, {"testdata/mixed.txt", 9}} {
		s, err := LoadWorkload(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != f.n {
			t.Errorf("%s: %d sessions, want %d", f.path, len(s), f.n)
		}
	}
	if _, err := LoadWorkload("testdata/none.txt"); err == nil || !strings.Contains(err.Error(), "testdata/none.txt") {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzParseWorkload: any input gives sessions a milter packet can carry,
// or an error naming the file.
func FuzzParseWorkload(f *testing.F) {
	for _, seed := range []string{
		"192.0.2.1 mx.example.test a@example.test b@vouch.test\n",
		"192.0.2.1,mx,<>,<b@vouch.test>\n# c\n\n",
		"2001:db8::1 [2001:db8::1] a@b c@d\r\n",
		"192.0.2.1 a b\n",
		"x y z w\n",
		"192.0.2.1 \xff\xfe \"%;\" c\n",
		"192.0.2.1 a\x00 b c\n",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseWorkload("f.txt", strings.NewReader(text))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.txt") {
				t.Errorf("error does not name the file: %v", err)
			}
			return
		}
		if len(s) == 0 {
			t.Fatal("no sessions and no error")
		}
		for _, x := range s {
			if !x.IP.IsValid() || x.IP.Zone() != "" || x.HELO == "" || x.Rcpt == "" || x.Line < 1 {
				t.Errorf("bad session %+v", x)
			}
			for _, field := range []string{x.HELO, x.Sender, x.Rcpt} {
				if strings.ContainsAny(field, "\x00 \t,\n") || len(field) > maxField {
					t.Errorf("field %q cannot go into a milter packet as is", field)
				}
			}
		}
	})
}
