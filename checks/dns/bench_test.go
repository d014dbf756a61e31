package dns

import (
	"context"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/dnstest"
)

// BenchmarkCachedLookup measures the warm-cache path the checks take for
// nearly every session: one lookup answered from the cache, returning a
// copy. No upstream query happens inside the timed loop.
func BenchmarkCachedLookup(b *testing.B) {
	srv := dnstest.New(b, zone)
	r, err := New(withTimeout(testConfig(srv.Addr), 5*time.Second), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	lookups := []struct {
		name string
		do   func() error
	}{
		{"IPAddr", func() error { _, err := r.LookupIPAddr(ctx, "mail.example.com"); return err }},
		{"TXT", func() error { _, err := r.LookupTXT(ctx, "spf.example.com"); return err }},
		{"Addr", func() error { _, err := r.LookupAddr(ctx, "192.0.2.25"); return err }},
		{"MX", func() error { _, err := r.LookupMX(ctx, "example.com"); return err }},
		{"NXDOMAIN", func() error { r.LookupTXT(ctx, "nope.example.com"); return nil }},
	}
	for _, l := range lookups {
		if err := l.do(); err != nil {
			b.Fatal(err)
		}
		before := srv.TotalQueries()
		b.Run(l.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := l.do(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(l.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := l.do(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		if n := srv.TotalQueries() - before; n != 0 {
			b.Fatalf("%s: %d upstream queries during the benchmark", l.name, n)
		}
	}
}

// BenchmarkUncachedLookup measures one upstream round trip over loopback
// UDP to dnstest, cache disabled: the resolver's own cost on a miss.
func BenchmarkUncachedLookup(b *testing.B) {
	srv := dnstest.New(b, zone)
	r, err := New(noCache(withTimeout(testConfig(srv.Addr), 5*time.Second)), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.LookupTXT(ctx, "spf.example.com"); err != nil {
			b.Fatal(err)
		}
	}
}
