package dns

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	mdns "github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// ednsSize is the UDP payload size advertised with EDNS0: the 2020 DNS Flag
// Day value, which avoids IP fragmentation; larger answers come over TCP.
const ednsSize = 1232

// Resolver answers the checks' lookups from its cache or from the
// configured servers. It is safe for concurrent use.
type Resolver struct {
	cfg     Config
	servers []string // "ip:port"
	obs     Observer
	cache   *lru.Cache[key, *entry] // nil: caching disabled
	group   singleflight.Group
	tcp     *mdns.Client // UDP is exchangeUDP's own
	// budget bounds a shared upstream flight, whoever waits for it: every
	// attempt, each possibly asked again without EDNS and retried over TCP.
	budget time.Duration
	// preferred is the index of the server that last answered, tried
	// first, so that a dead first server costs one timeout, not one per
	// lookup.
	preferred atomic.Uint32
	now       func() time.Time // the cache's clock; tests replace it
}

var _ Lookuper = (*Resolver)(nil)

// key identifies a cache entry and a flight. PTR lookups are keyed by the
// address itself, which spares building the reverse name on cache hits.
type key struct {
	name  string     // lower-case, no trailing dot; empty for PTR
	ip    netip.Addr // PTR only
	qtype uint16
}

func (k key) fqdn() string {
	if k.qtype == mdns.TypePTR {
		// Cannot fail: ip is a valid address without zone.
		name, _ := mdns.ReverseAddr(k.ip.String())
		return name
	}
	return k.name + "."
}

// New returns a Resolver for cfg (start from DefaultConfig); empty
// cfg.Servers means the nameservers of /etc/resolv.conf; a nil obs
// means NopObserver.
func New(cfg Config, obs Observer) (*Resolver, error) {
	return newResolver(cfg, obs, defaultResolvConf)
}

func newResolver(cfg Config, obs Observer, resolvConf string) (*Resolver, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	var servers []string
	var err error
	if len(cfg.Servers) > 0 {
		servers, err = serverAddrs(cfg.Servers)
	} else {
		servers, err = resolvConfServers(resolvConf)
	}
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	if obs == nil {
		obs = NopObserver{}
	}
	r := &Resolver{
		cfg:     cfg,
		servers: servers,
		obs:     obs,
		tcp:     &mdns.Client{Net: "tcp", Timeout: cfg.Timeout},
		budget:  2 * cfg.Timeout * time.Duration(cfg.Attempts),
		now:     time.Now,
	}
	if cfg.CacheSize > 0 {
		r.cache, err = lru.New[key, *entry](cfg.CacheSize)
		if err != nil {
			return nil, fmt.Errorf("dns: cache: %w", err)
		}
	}
	return r, nil
}

// Servers returns the servers queried, as "ip:port", for logging.
func (r *Resolver) Servers() []string {
	return append([]string(nil), r.servers...)
}

// LookupAddr returns the PTR names of addr (IPv4 or IPv6), fully qualified
// with a trailing dot as net.Resolver returns them. Names that are not
// valid host names are left out; if that leaves none, the error is
// permanent (neither not-found nor temporary).
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	e := r.lookup(ctx, key{ip: ip.Unmap().WithZone(""), qtype: mdns.TypePTR})
	if e.kind != kindData {
		return nil, r.dnsError(e, addr, mdns.TypePTR)
	}
	if len(e.strs) == 0 {
		return nil, malformed(addr, e.server)
	}
	return append([]string(nil), e.strs...), nil
}

// LookupTXT returns the TXT records of name, each record's strings joined
// into one, as net.Resolver does.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	k, ok := canonical(name)
	if !ok {
		return nil, noSuchHost(name)
	}
	e := r.lookup(ctx, key{name: k, qtype: mdns.TypeTXT})
	if e.kind != kindData {
		return nil, r.dnsError(e, name, mdns.TypeTXT)
	}
	return append([]string(nil), e.strs...), nil
}

// LookupMX returns the MX records of name sorted by preference (equal
// preferences in the server's order), hosts with a trailing dot. Hosts that
// are not valid host names are left out; if that leaves none, the error is
// permanent.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	k, ok := canonical(name)
	if !ok {
		return nil, noSuchHost(name)
	}
	e := r.lookup(ctx, key{name: k, qtype: mdns.TypeMX})
	if e.kind != kindData {
		return nil, r.dnsError(e, name, mdns.TypeMX)
	}
	if len(e.mx) == 0 {
		return nil, malformed(name, e.server)
	}
	vals := append([]net.MX(nil), e.mx...)
	out := make([]*net.MX, len(vals))
	for i := range vals {
		out[i] = &vals[i]
	}
	return out, nil
}

// LookupIPAddr returns the A and AAAA addresses of host (IPv4 first),
// queried concurrently. An IP literal is returned as is, as net.Resolver
// does. The error is not-found only when both types are (NXDOMAIN or
// NODATA); temporary when either failed temporarily. When one type has
// addresses and the other failed temporarily, both the addresses and the
// temporary error are returned: the list may be incomplete, and a caller
// that finds what it looks for in it may use it.
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if mayBeIP(host) {
		if ip, err := netip.ParseAddr(host); err == nil {
			return []net.IPAddr{{IP: net.IP(ip.AsSlice()).To16(), Zone: ip.Zone()}}, nil
		}
	}
	name, ok := canonical(host)
	if !ok {
		return nil, noSuchHost(host)
	}
	ka := key{name: name, qtype: mdns.TypeA}
	k6 := key{name: name, qtype: mdns.TypeAAAA}
	if err := ctx.Err(); err != nil {
		return nil, r.dnsError(r.ctxEntry(err), host, mdns.TypeA)
	}
	e4, e6 := r.cached(ctx, ka), r.cached(ctx, k6)
	switch {
	case e4 == nil && e6 == nil:
		e4, e6 = r.fetchBoth(ctx, ka, k6)
	case e4 == nil:
		e4 = r.fetch(ctx, ka)
	case e6 == nil:
		e6 = r.fetch(ctx, k6)
	}

	var out []net.IPAddr
	if n := len(e4.ips) + len(e6.ips); n > 0 {
		// One backing array for all addresses: callers may modify them.
		buf := make([]byte, 0, 4*len(e4.ips)+16*len(e6.ips))
		out = make([]net.IPAddr, 0, n)
		for _, ips := range [2][]net.IP{e4.ips, e6.ips} {
			for _, ip := range ips {
				buf = append(buf, ip...)
				out = append(out, net.IPAddr{IP: net.IP(buf[len(buf)-len(ip) : len(buf) : len(buf)])})
			}
		}
	}
	var errA, err6 *net.DNSError
	if e4.kind != kindData {
		errA = r.dnsError(e4, host, mdns.TypeA)
	}
	if e6.kind != kindData {
		err6 = r.dnsError(e6, host, mdns.TypeAAAA)
	}
	switch {
	case errA == nil && err6 == nil:
		return out, nil
	case out != nil:
		// One type answered; the other's failure matters only if it
		// may hide addresses that a retry would show.
		for _, err := range []*net.DNSError{errA, err6} {
			if err != nil && err.Temporary() {
				return out, err
			}
		}
		return out, nil
	}
	return nil, mergeErrors(errA, err6)
}

// fetchBoth asks for a and b at once. It is a function of its own so that
// the variables the goroutine shares do not escape to the heap on the
// warm-cache path of LookupIPAddr.
func (r *Resolver) fetchBoth(ctx context.Context, a, b key) (ea, eb *entry) {
	if cachedRun(ctx) != nil {
		return r.fetch(ctx, a), r.fetch(ctx, b) // answered at once
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ea = r.fetch(ctx, a)
	}()
	eb = r.fetch(ctx, b)
	<-done
	return ea, eb
}

// mayBeIP spares netip.ParseAddr, whose error allocates, for host names:
// an address literal holds a ':' or only digits and dots.
func mayBeIP(s string) bool {
	if strings.IndexByte(s, ':') >= 0 {
		return true
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

// mergeErrors picks the error LookupIPAddr reports when neither type gave
// addresses: temporary beats permanent beats not-found, since only a name
// absent in both types is truly not found.
func mergeErrors(a, b *net.DNSError) *net.DNSError {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	rank := func(e *net.DNSError) int {
		switch {
		case e.Temporary():
			return 2
		case !e.IsNotFound:
			return 1
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// cached returns the live cache entry for k, or nil, and tells the
// Observer which (under CacheOnly: a hit later, a miss never, see
// CachedRun.Keep).
func (r *Resolver) cached(ctx context.Context, k key) *entry {
	if r.cache == nil {
		return nil
	}
	run := cachedRun(ctx)
	if e, ok := r.cache.Get(k); ok && r.now().Before(e.expires) {
		if run != nil {
			run.hits.Add(1)
		} else {
			r.obs.Cache(true)
		}
		return e
	}
	// An expired entry stays until the flight below replaces it or the LRU
	// evicts it; removing it here could race with that replacement.
	if run == nil {
		r.obs.Cache(false)
	}
	return nil
}

// lookup answers k from the cache or upstream. The result is never nil.
func (r *Resolver) lookup(ctx context.Context, k key) *entry {
	if err := ctx.Err(); err != nil {
		return r.ctxEntry(err)
	}
	if e := r.cached(ctx, k); e != nil {
		return e
	}
	return r.fetch(ctx, k)
}

// fetch answers k, after a cache miss, from a flight shared with every
// other caller asking the same; it waits for the flight only as long as ctx
// lets it.
func (r *Resolver) fetch(ctx context.Context, k key) *entry {
	if run := cachedRun(ctx); run != nil {
		run.missed.Store(true)
		return notCached
	}
	fk := mdns.TypeToString[k.qtype] + " " + k.name + k.ip.String()
	ch := r.group.DoChan(fk, func() (any, error) { return r.flight(ctx, k), nil })
	select {
	case res := <-ch:
		return res.Val.(*entry)
	case <-ctx.Done():
		// The flight goes on for the others and for the cache.
		return r.ctxEntry(ctx.Err())
	}
}

// flight does the upstream work for k and caches what may be cached. It
// runs detached from the caller that started it, whose cancellation must
// not fail the others waiting, but within the resolver's own budget.
func (r *Resolver) flight(ctx context.Context, k key) *entry {
	if r.cache != nil {
		// A flight that just ended may have filled the cache between our
		// miss and this flight's start.
		if e, ok := r.cache.Peek(k); ok && r.now().Before(e.expires) {
			return e
		}
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.budget)
	defer cancel()
	e := r.resolve(fctx, k.fqdn(), k.qtype)
	if r.cache != nil && e.ttl > 0 {
		e.expires = r.now().Add(e.ttl)
		r.cache.Add(k, e)
		r.obs.CacheEntries(r.cache.Len())
	}
	return e
}

// resolve queries fqdn/qtype upstream, following CNAMEs: within each answer,
// and with a new query for the chain's target when a server gave the chain
// without the target's records.
func (r *Resolver) resolve(ctx context.Context, fqdn string, qtype uint16) *entry {
	var seen []string
	hops := 0
	minTTL := uint32(math.MaxUint32)
	name := fqdn
	for {
		m, server, fail := r.exchange(ctx, name, qtype)
		if fail != nil {
			return fail
		}
		c, s, err := follow(m.Answer, name, qtype, r.cfg.MaxCNAMEChain-hops, seen)
		seen = s
		if err != nil {
			return &entry{kind: kindFailure, server: server, msg: err.Error()}
		}
		hops += c.hops
		minTTL = min(minTTL, c.minTTL)
		switch {
		case len(c.rrs) > 0:
			e := &entry{kind: kindData, server: server, ttl: r.positiveTTL(minTTL)}
			e.fill(c.rrs, qtype)
			return e
		case m.Rcode == mdns.RcodeNameError:
			return &entry{kind: kindNXDomain, server: server, ttl: r.negTTL(m, minTTL)}
		case c.hops > 0 && !hasSOA(m):
			// A chain without the target's records and without an SOA
			// saying they do not exist: ask for the target itself.
			name = c.end
			continue
		}
		return &entry{kind: kindNoData, server: server, ttl: r.negTTL(m, minTTL)}
	}
}

// positiveTTL clamps the lowest TTL of an answer to [MinTTL, MaxTTL].
func (r *Resolver) positiveTTL(ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	return min(max(d, r.cfg.MinTTL), r.cfg.MaxTTL)
}

// negTTL is how long a negative answer may be cached: RFC 2308 from the
// SOA, no longer than the CNAMEs that led there, capped by NegativeMaxTTL.
// Without an SOA it is not cached.
func (r *Resolver) negTTL(m *mdns.Msg, chainTTL uint32) time.Duration {
	ttl, ok := negativeTTL(m)
	if !ok || r.cfg.NegativeMaxTTL < 0 {
		return 0
	}
	d := time.Duration(min(ttl, chainTTL)) * time.Second
	return min(d, r.cfg.NegativeMaxTTL)
}
