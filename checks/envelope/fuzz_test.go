package envelope

import (
	"strings"
	"testing"
)

// FuzzSender: the helpers never panic and agree with each other: a domain
// holds no '@' or quote and no trailing dot, and the local part and
// domain are taken from the address; an SRS result names the address's
// own domain as the forwarder.
func FuzzSender(f *testing.F) {
	for _, s := range []string{
		"", "<>", "alice@example.com", "<alice@example.com.>", `"a@b"@example.com`,
		"<@relay.example:alice@example.com>", "SRS0=HHH=TT=orig.example=alice@fwd.example",
		"SRS1=XXX=first.example==HHH=TT=orig.example=alice@second.example", `"a\"@b`, "srs0+a=bc=d.e=f@g",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		local, domain, ok := Split(addr)
		if ok && (domain == "" || strings.HasSuffix(domain, ".") || strings.Contains(domain, "@")) {
			t.Fatalf("Split(%q): domain %q", addr, domain)
		}
		if ok && !strings.Contains(addr, local+"@"+domain) {
			t.Fatalf("Split(%q) = %q, %q: not parts of the address", addr, local, domain)
		}
		if Domain(addr) != domain {
			t.Fatalf("Domain and Split disagree on %q", addr)
		}
		if IsNull(addr) && (ok || Display(addr) != NullSender) {
			t.Fatalf("null sender %q: Split ok %v, Display %q", addr, ok, Display(addr))
		}
		if s, ok := ParseSRS(addr); ok {
			if s.Forwarder != domain || s.OrigDomain == "" || s.OrigLocal == "" {
				t.Fatalf("ParseSRS(%q) = %+v", addr, s)
			}
		}
	})
}
