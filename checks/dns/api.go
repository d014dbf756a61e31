// Package dns is the resolver the checks use: a miekg/dns client with a
// TTL cache, RFC 2308 negative caching and coalescing of identical lookups.
// Its errors are *net.DNSError with IsNotFound and IsTemporary set
// truthfully, which is what blitiri.com.ar/go/spf reads to tell temperror
// from permerror.
package dns

import (
	"context"
	"net"
	"time"
)

// Lookuper is the set of lookups the checks make; it is the interface
// blitiri.com.ar/go/spf names DNSResolver. *Resolver implements it.
type Lookuper interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
}

// Observer hears what the resolver does, so that milter/cmd can turn it into
// metrics without this package importing Prometheus. Implementations must be
// safe for concurrent use and fast.
type Observer interface {
	// Query is called once per upstream query (not per cache hit).
	// qtype is "A", "AAAA", "PTR", "TXT", "MX", ...; outcome is one of the
	// Outcome* constants.
	Query(qtype, outcome string, d time.Duration)
	// Cache is called once per lookup answered from (hit) or missing (miss)
	// the cache.
	Cache(hit bool)
	// CacheEntries reports the number of entries after a change.
	CacheEntries(n int)
	// InFlight reports a change (+1 / -1) in upstream queries under way.
	InFlight(delta int)
}

// Outcomes of an upstream query, as reported to Observer.Query. A bounded
// set, usable as a metric label.
const (
	OutcomeSuccess  = "success"
	OutcomeNXDomain = "nxdomain"
	OutcomeNoData   = "nodata"
	OutcomeServFail = "servfail"
	OutcomeRefused  = "refused"
	OutcomeTimeout  = "timeout"
	OutcomeError    = "error"
)

// NopObserver ignores everything.
type NopObserver struct{}

func (NopObserver) Query(string, string, time.Duration) {}
func (NopObserver) Cache(bool)                          {}
func (NopObserver) CacheEntries(int)                    {}
func (NopObserver) InFlight(int)                        {}
