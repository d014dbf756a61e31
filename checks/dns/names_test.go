package dns

import (
	"strings"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/dnstest"
)

// Names outside host-name characters are queried as their own octets
// (RFC 2181 §11): SPF builds them from local-parts, HELO literals and
// macro escapes (RFC 7208 §7.3), and a zone may hold them.
func TestLookupAnyOctetName(t *testing.T) {
	tests := []struct {
		name, owner string // owner in zone-file escaping
	}{
		{"bounces+x=gmail.com.users.example.com", `bounces+x=gmail.com.users.example.com.`},
		{"user@example.com.users.example.com", `user\@example.com.users.example.com.`},
		{"[192.0.2.10].helo.example.com", `[192.0.2.10].helo.example.com.`},
		{"macro%percent  space%20url-space.example.com", `macro%percent\ \ space%20url-space.example.com.`},
		{`back\slash.example.com`, `back\\slash.example.com.`},
		{"semi;colon(paren)\"quote\".example.com", `semi\;colon\(paren\)\"quote\".example.com.`},
		{"caf\xc3\xa9.example.com", `caf\195\169.example.com.`},
		{"Upper.EXAMPLE.com", `upper.example.com.`},
		{"tab\there.example.com", `tab\009here.example.com.`},
	}
	var zone strings.Builder
	for _, tc := range tests {
		zone.WriteString(tc.owner + " IN TXT \"found\"\n")
	}
	srv := dnstest.New(t, "$TTL 300\nexample.com. SOA ns hostmaster 1 3600 600 86400 300\n"+zone.String())
	r, err := New(withAttempts(withTimeout(testConfig(srv.Addr), 500*time.Millisecond), 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.LookupTXT(ctxT(t), tc.name)
			if err != nil || len(got) != 1 || got[0] != "found" {
				t.Fatalf("LookupTXT(%q) = %q, %v; want [found]", tc.name, got, err)
			}
		})
	}
}

func TestCanonicalBounds(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{strings.Repeat("a", 63) + ".com", true},
		{strings.Repeat("a", 64) + ".com", false},
		{strings.Repeat("\xff", 63) + ".com", true},   // 63 octets, 252 in escaped form
		{strings.Repeat("abcdefgh.", 28) + "a", true}, // 253
		{strings.Repeat("abcdefgh.", 28) + "ab", false},
		{"a..b", false},
		{".a", false},
		{"", false},
		{".", false},
	}
	for _, tc := range tests {
		if _, ok := canonical(tc.name); ok != tc.ok {
			t.Errorf("canonical(%q) ok=%v, want %v", tc.name, ok, tc.ok)
		}
	}
}
