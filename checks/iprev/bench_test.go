package iprev

import (
	"context"
	"net"
	"testing"
)

// BenchmarkCheckWarm measures a check answered from the resolver's cache,
// the common case for a client that connects repeatedly: two PTR names,
// each with its A and AAAA lookups.
func BenchmarkCheckWarm(b *testing.B) {
	srv := startZone(b)
	r := newResolver(b, srv)
	ip := net.ParseIP("192.0.2.3")
	ctx := context.Background()
	if got := Check(ctx, r, ip, Options{}); got.Verdict != Pass {
		b.Fatalf("warm-up: %q, %v", got.Verdict, got.Err)
	}
	queries := srv.TotalQueries()
	b.ReportAllocs()
	for b.Loop() {
		if got := Check(ctx, r, ip, Options{}); got.Verdict != Pass {
			b.Fatalf("%q, %v", got.Verdict, got.Err)
		}
	}
	if n := srv.TotalQueries() - queries; n != 0 {
		b.Fatalf("%d queries with a warm cache, want 0", n)
	}
}
