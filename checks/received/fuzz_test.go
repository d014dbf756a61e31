package received

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzParse: any field parses or fails without panicking, within its
// bounds; a parsed hop always has a valid client address; the same field
// with its folding removed reads the same.
func FuzzParse(f *testing.F) {
	for _, r := range readRecords(f) {
		f.Add(r.field)
	}
	f.Fuzz(func(t *testing.T, field string) {
		h, err := Parse(field)
		if err != nil {
			return
		}
		if len(field) > MaxFieldLen {
			t.Fatalf("a %d-octet field parsed", len(field))
		}
		if !h.IP.IsValid() || h.IP.Zone() != "" || h.IP.Is4In6() {
			t.Fatalf("client address %v", h.IP)
		}
		if h.By == "" {
			t.Fatal("no By")
		}
		if strings.ContainsAny(h.ReverseName, " ()[];") {
			t.Fatalf("reverse name %q", h.ReverseName)
		}
		h2, err := Parse(strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(field))
		if err != nil || describe(h2) != describe(h) {
			t.Fatalf("unfolded: %s, %v; folded: %s", describe(h2), err, describe(h))
		}
		o, err := FindOrigin([]string{field, field}, func(a netip.Addr) bool { return a != h.IP })
		if h.Complete && (err != nil || o.Index != 0) {
			t.Fatalf("FindOrigin of a complete field: %+v, %v", o, err)
		}
	})
}
