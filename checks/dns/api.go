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

// Config is the resolver's settings. The zero value of a field means its
// default (see DefaultConfig). docs/dns.md explains each for postmasters.
type Config struct {
	// Servers are "ip:port" addresses ("[ipv6]:port"; a bare IP means port
	// 53). Each query goes first to the server that last answered, then to
	// the next ones in order. Empty: the nameservers of /etc/resolv.conf
	// (New fails if it is missing or lists none).
	Servers []string
	// Timeout bounds one query attempt to one server (and, separately, its
	// retry over TCP when the UDP answer was truncated).
	Timeout time.Duration
	// Attempts is how many times each query is tried in total, each time
	// at the next server, before it is a temporary failure.
	Attempts int
	// CacheSize bounds the cache in entries (LRU). Negative disables it.
	CacheSize int
	// MinTTL and MaxTTL clamp the TTLs of positive answers.
	MinTTL, MaxTTL time.Duration
	// NegativeMaxTTL caps how long NXDOMAIN/NODATA are cached (RFC 2308:
	// the SOA's MINIMUM and TTL, whichever is smaller, then this cap).
	// Negative disables negative caching.
	NegativeMaxTTL time.Duration
	// MaxCNAMEChain bounds how many CNAMEs are followed for one lookup.
	MaxCNAMEChain int
}
