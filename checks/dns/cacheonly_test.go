package dns

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
)

// Under CacheOnly the resolver answers what it has cached exactly as it
// would otherwise, asks nobody for what it has not, and reports cache hits
// only when the run is kept.
func TestCacheOnly(t *testing.T) {
	r, srv, _, obs := setup(t, nil)
	ctx := ctxT(t)
	lookups := []struct {
		name string
		do   func(r Lookuper, c ctxType) (any, error)
	}{
		{"TXT", func(r Lookuper, c ctxType) (any, error) { return r.LookupTXT(c, "spf.example.com") }},
		{"IPAddr", func(r Lookuper, c ctxType) (any, error) { return r.LookupIPAddr(c, "mail.example.com") }},
		{"Addr", func(r Lookuper, c ctxType) (any, error) { return r.LookupAddr(c, "192.0.2.25") }},
		{"MX", func(r Lookuper, c ctxType) (any, error) {
			mx, err := r.LookupMX(c, "example.com")
			var hosts []string
			for _, m := range mx {
				hosts = append(hosts, m.Host)
			}
			return hosts, err
		}},
		{"NXDOMAIN", func(r Lookuper, c ctxType) (any, error) { return r.LookupTXT(c, "nope.example.com") }},
	}
	for _, l := range lookups {
		t.Run(l.name, func(t *testing.T) {
			want, wantErr := l.do(r, ctx) // fills the cache
			queries := srv.TotalQueries()
			obs.mu.Lock()
			hits, misses := obs.hits, obs.misses
			obs.mu.Unlock()

			run := r.CacheOnly()
			got, err := l.do(run, ctx)
			if run.Missed() {
				t.Fatal("a cached answer counted as a miss")
			}
			if !equalAnswers(got, want) || errText(err) != errText(wantErr) {
				t.Errorf("cache-only: %v, %v; otherwise %v, %v", got, err, want, wantErr)
			}
			if n := srv.TotalQueries() - queries; n != 0 {
				t.Errorf("%d upstream queries", n)
			}
			obs.mu.Lock()
			if obs.hits != hits || obs.misses != misses {
				t.Errorf("hits %d->%d, misses %d->%d before Keep; want unchanged", hits, obs.hits, misses, obs.misses)
			}
			obs.mu.Unlock()
			run.Keep()
			obs.mu.Lock()
			defer obs.mu.Unlock()
			if obs.hits <= hits || obs.misses != misses {
				t.Errorf("after Keep: hits %d->%d, misses %d->%d; want more hits, same misses", hits, obs.hits, misses, obs.misses)
			}
		})
	}
}

func TestCacheOnlyMiss(t *testing.T) {
	r, srv, _, obs := setup(t, nil)
	ctx := ctxT(t)
	run := r.CacheOnly()
	_, err := run.LookupIPAddr(ctx, "mail.example.com")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.Temporary() || de.IsNotFound {
		t.Errorf("uncached lookup: %v, want a temporary error", err)
	}
	if !run.Missed() {
		t.Error("the run did not record the miss")
	}
	if n := srv.TotalQueries(); n != 0 {
		t.Errorf("%d upstream queries under CacheOnly", n)
	}
	obs.mu.Lock()
	if obs.misses != 0 || obs.hits != 0 {
		t.Errorf("hits %d, misses %d reported for a cache-only run", obs.hits, obs.misses)
	}
	obs.mu.Unlock()
	// The miss was not cached: the same lookup with the network works.
	if addrs, err := r.LookupIPAddr(ctx, "mail.example.com"); err != nil || len(addrs) != 2 {
		t.Errorf("after a cache-only miss: %v, %v", addrs, err)
	}
	if n := srv.TotalQueries(); n != 2 {
		t.Errorf("%d upstream queries, want 2 (A and AAAA)", n)
	}
}

type ctxType = context.Context

func equalAnswers(a, b any) bool {
	switch x := a.(type) {
	case []string:
		y, _ := b.([]string)
		return slices.Equal(x, y)
	case []net.IPAddr:
		y, _ := b.([]net.IPAddr)
		return slices.EqualFunc(x, y, func(p, q net.IPAddr) bool { return p.IP.Equal(q.IP) && p.Zone == q.Zone })
	}
	return a == nil && b == nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
