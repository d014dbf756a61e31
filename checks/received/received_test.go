package received

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// record is one entry of testdata/received.txt.
type record struct {
	title, want, field string
	line               int
}

// readRecords reads testdata/received.txt (format described at its top).
func readRecords(t testing.TB) []record {
	t.Helper()
	b, err := os.ReadFile("testdata/received.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []record
	for n, block := range strings.Split(string(b), "\n\n") {
		var r record
		var field []string
		for _, l := range strings.Split(strings.Trim(block, "\n"), "\n") {
			switch {
			case strings.HasPrefix(l, "#"):
				if r.title == "" {
					r.title = strings.TrimSpace(strings.TrimPrefix(l, "#"))
				}
			case strings.HasPrefix(l, "want: "):
				r.want = strings.TrimPrefix(l, "want: ")
			case strings.HasPrefix(l, "Received:"):
				field = append(field, strings.TrimPrefix(l, "Received:"))
			case (strings.HasPrefix(l, "\t") || strings.HasPrefix(l, " ")) && field != nil:
				field = append(field, l)
			default:
				t.Fatalf("testdata block %d: stray line %q", n, l)
			}
		}
		if field == nil {
			continue // the file's introduction
		}
		if r.want == "" {
			t.Fatalf("testdata block %d (%s): no want line", n, r.title)
		}
		// Folded as the milter hands it over: LF and the continuation.
		r.field = strings.Join(field, "\n")
		r.line = n
		out = append(out, r)
	}
	return out
}

func describe(h Hop) string {
	return fmt.Sprintf("helo=%s rdns=%s forged=%v ip=%v port=%d by=%s via=%s with=%s id=%s for=%s date=%s complete=%v",
		h.Helo, h.ReverseName, h.Forged, h.IP, h.Port, h.By, h.Via, h.With, h.ID, h.For,
		h.Date.UTC().Format(time.RFC3339), h.Complete)
}

var sentinels = map[string]error{
	"ErrTooLong": ErrTooLong, "ErrNoFrom": ErrNoFrom, "ErrNoClient": ErrNoClient,
	"ErrAmbiguous": ErrAmbiguous, "ErrSyntax": ErrSyntax,
}

func TestParseTestdata(t *testing.T) {
	recs := readRecords(t)
	if len(recs) < 30 {
		t.Fatalf("%d records in testdata, want the whole set", len(recs))
	}
	for _, r := range recs {
		t.Run(r.title, func(t *testing.T) {
			h, err := Parse(r.field)
			if name, ok := strings.CutPrefix(r.want, "error "); ok {
				want, known := sentinels[name]
				if !known {
					t.Fatalf("unknown sentinel %q", name)
				}
				if !errors.Is(err, want) {
					t.Fatalf("Parse = %s, %v; want %s", describe(h), err, name)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := describe(h); got != r.want {
				t.Errorf("Parse:\n got %s\nwant %s", got, r.want)
			}
			// Unfolded (as some callers hold it) and with CRLF line ends,
			// the field reads the same.
			for _, v := range []string{strings.ReplaceAll(r.field, "\n", ""), strings.ReplaceAll(r.field, "\n", "\r\n")} {
				if h2, err := Parse(v); err != nil || describe(h2) != describe(h) {
					t.Errorf("Parse(%q) = %s, %v; want the same", v, describe(h2), err)
				}
			}
		})
	}
}

func TestParseBounds(t *testing.T) {
	ok := "from a.example ([192.0.2.1]) by b.example; Tue, 1 Dec 2026 21:40:43 +0000"
	tests := []struct {
		name  string
		field string
		want  error
	}{
		{"at the limit", ok + " " + "(" + strings.Repeat("x", MaxFieldLen-len(ok)-3) + ")", nil},
		{"over the limit", ok + " " + "(" + strings.Repeat("x", MaxFieldLen-len(ok)-2) + ")", ErrTooLong},
		{"too many items", "from a.example ([192.0.2.1]) by b.example" + strings.Repeat(" x y", maxItems/2) + "; Tue, 1 Dec 2026 21:40:43 +0000", ErrSyntax},
		{"deep comments", "from a.example ([192.0.2.1]) " + strings.Repeat("(", 1000) + strings.Repeat(")", 1000) + " by b.example; Tue, 1 Dec 2026 21:40:43 +0000", nil},
		{"empty", "", ErrNoFrom},
		{"from alone", "from", ErrNoFrom},
		{"from by", "from by b.example", ErrNoFrom},
		{"unterminated quote", `from a.example ([192.0.2.1]) by b.example for <"a@b>; Tue, 1 Dec 2026 21:40:43 +0000`, ErrSyntax},
		{"unterminated literal", `from [192.0.2.1 by b.example`, ErrSyntax},
		{"port too big", "from a.example ([192.0.2.1]:65536) by b.example", ErrNoClient},
		{"three words", "from a.example (a b [192.0.2.1]) by b.example", ErrNoClient},
		{"bad name", "from a.example (a/b [192.0.2.1]) by b.example", ErrNoClient},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.field)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Parse: %v, want %v", err, tc.want)
			}
		})
	}
}

// hop writes a Received field as Postfix does.
func hop(helo, ip, by string) string {
	return fmt.Sprintf(" from %s (unknown [%s])\n\tby %s (Postfix) with ESMTP id 4XyZ\n\tfor <a@example.test>; Tue,  1 Dec 2026 21:40:43 +0000 (UTC)", helo, ip, by)
}

func TestFindOrigin(t *testing.T) {
	relays := map[netip.Addr]bool{
		netip.MustParseAddr("10.0.0.1"): true,
		netip.MustParseAddr("10.0.0.2"): true,
	}
	trusted := func(a netip.Addr) bool { return relays[a] }
	// top is our MTA's field (its client is the relay 10.0.0.1); below it
	// the relays' fields.
	ours := hop("relay1.example", "10.0.0.1", "mx.example")
	relay1 := hop("relay2.example", "10.0.0.2", "relay1.example")
	relay2 := hop("mail.sender.example", "192.0.2.10", "relay2.example")
	outside := hop("forged.example", "10.0.0.1", "mail.sender.example") // written by nobody we trust
	many := make([]string, MaxHops+1)
	for i := range many {
		many[i] = ours
	}
	tests := []struct {
		name     string
		fields   []string
		index    int
		ip, helo string
		err      error
	}{
		{"one relay", []string{ours, relay2}, 1, "192.0.2.10", "mail.sender.example", nil},
		{"two relays", []string{ours, relay1, relay2}, 2, "192.0.2.10", "mail.sender.example", nil},
		{"milter view (no field of ours)", []string{relay1, relay2}, 1, "192.0.2.10", "mail.sender.example", nil},
		{"never past an untrusted hop", []string{ours, relay1, relay2, outside}, 2, "192.0.2.10", "mail.sender.example", nil},
		{"first field untrusted", []string{relay2, ours}, 0, "192.0.2.10", "mail.sender.example", nil},
		{"no fields", nil, 0, "", "", ErrNoFields},
		{"all trusted", []string{ours, relay1}, 0, "", "", ErrAllTrusted},
		{"unparsable on the way", []string{ours, "by x; Tue, 1 Dec 2026 21:40:43 +0000", relay2}, 0, "", "", ErrNoFrom},
		{"incomplete on the way", []string{ours, "from a ([192.0.2.10]) by relay1.example", relay2}, 0, "", "", ErrSyntax},
		{"too many hops", many, 0, "", "", ErrTooMany},
		{"exactly MaxHops trusted then the origin", append(append([]string{}, many[:MaxHops-1]...), relay2), MaxHops - 1, "192.0.2.10", "mail.sender.example", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := FindOrigin(tc.fields, trusted)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("FindOrigin = %+v, %v; want %v", o, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("FindOrigin: %v", err)
			}
			if o.Index != tc.index || o.IP.String() != tc.ip || o.Helo != tc.helo {
				t.Errorf("FindOrigin = field %d, %v, %q; want field %d, %s, %q", o.Index, o.IP, o.Helo, tc.index, tc.ip, tc.helo)
			}
		})
	}
}

// TestFindOriginExamined: the walk stops at the origin and parses
// nothing below it (a broken field further down does not matter).
func TestFindOriginExamined(t *testing.T) {
	var asked []netip.Addr
	trusted := func(a netip.Addr) bool { asked = append(asked, a); return a == netip.MustParseAddr("10.0.0.1") }
	fields := []string{hop("r", "10.0.0.1", "mx"), hop("o", "192.0.2.1", "r"), "garbage ((("}
	o, err := FindOrigin(fields, trusted)
	if err != nil || o.Index != 1 {
		t.Fatalf("FindOrigin = %+v, %v; want field 1", o, err)
	}
	if len(asked) != 2 {
		t.Errorf("trusted asked %d times (%v), want 2", len(asked), asked)
	}
}
