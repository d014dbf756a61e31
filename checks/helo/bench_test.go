package helo

import (
	"context"
	"net"
	"testing"

	"github.com/vouch-mail/vouch/checks/iprev"
)

// BenchmarkCheck measures the two common outcomes with a warm resolver
// cache: a HELO equal to the confirmed rDNS name (no DNS at all) and one
// that only resolves to the client (one cached A/AAAA lookup).
func BenchmarkCheck(b *testing.B) {
	srv := startZone(b)
	r := newResolver(b, srv)
	ip := net.ParseIP("192.0.2.1")
	ctx := context.Background()
	rev := iprev.Check(ctx, r, ip, iprev.Options{})
	for _, bc := range []struct {
		helo string
		want Verdict
	}{
		{"MAIL.example.com.", Match},
		{"mx2.example.com", Resolves},
	} {
		b.Run(string(bc.want), func(b *testing.B) {
			if got := Check(ctx, r, bc.helo, ip, rev); got.Verdict != bc.want {
				b.Fatalf("warm-up: %q, %v", got.Verdict, got.Err)
			}
			queries := srv.TotalQueries()
			b.ReportAllocs()
			for b.Loop() {
				if got := Check(ctx, r, bc.helo, ip, rev); got.Verdict != bc.want {
					b.Fatalf("%q, %v", got.Verdict, got.Err)
				}
			}
			if n := srv.TotalQueries() - queries; n != 0 {
				b.Fatalf("%d queries with a warm cache, want 0", n)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if k, _, _ := Parse("MX1.Mail.Example.COM."); k != FQDN {
			b.Fatal(k)
		}
	}
}
