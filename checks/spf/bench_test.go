package spf

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/dnstest"
)

// BenchmarkEvaluationWarm is the cost of one SPF evaluation whose answers
// are all in the resolver's cache, over the differential corpus (published
// records with their includes and redirects, and the hand-made cases),
// one case after another. Besides ns/op (the mean) it reports the median
// and the 99th percentile of single evaluations.
//
//	go test -run XXX -bench EvaluationWarm -benchtime 20000x ./checks/spf/
func BenchmarkEvaluationWarm(b *testing.B) {
	srv := dnstest.New(b, corpusZone+mxCostZone)
	r := newResolver(b, srv.Addr, 2*time.Second)
	ctx := context.Background()
	type input struct {
		ip           net.IP
		helo, sender string
	}
	var inputs []input
	for _, tc := range corpus() {
		helo := tc.helo
		if helo == "" {
			helo = "mail.example.org"
		}
		in := input{net.ParseIP(tc.ip), helo, tc.sender}
		CheckMailFrom(ctx, r, in.ip, in.helo, in.sender, Options{}) // warm the cache
		inputs = append(inputs, in)
	}
	durations := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		in := inputs[i%len(inputs)]
		i++
		start := time.Now()
		CheckMailFrom(ctx, r, in.ip, in.helo, in.sender, Options{})
		durations = append(durations, time.Since(start))
	}
	slices.Sort(durations)
	if n := len(durations); n > 0 {
		b.ReportMetric(float64(durations[n/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(durations[n*99/100].Nanoseconds()), "p99-ns")
	}
}
