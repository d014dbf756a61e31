package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	mdns "github.com/miekg/dns"
)

// LookupNetIP returns host's addresses of one family, network "ip4" (A
// records) or "ip6" (AAAA), as net.Resolver.LookupNetIP does. SPF's a and
// mx terms ask only the client's family (RFC 7208 §5.3, §5.4): one query
// instead of two, and a name without that family's records is a void
// lookup.
func (r *Resolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	qtype := mdns.TypeA
	switch network {
	case "ip4":
	case "ip6":
		qtype = mdns.TypeAAAA
	default:
		return nil, &net.DNSError{Err: fmt.Sprintf("unsupported network %q", network), Name: host}
	}
	if mayBeIP(host) {
		if ip, err := netip.ParseAddr(host); err == nil {
			if ip.Unmap().Is4() != (qtype == mdns.TypeA) {
				return nil, &net.DNSError{Err: "no suitable address", Name: host, IsNotFound: true}
			}
			return []netip.Addr{ip}, nil
		}
	}
	name, ok := canonical(host)
	if !ok {
		return nil, noSuchHost(host)
	}
	e := r.lookup(ctx, key{name: name, qtype: qtype})
	if e.kind != kindData {
		return nil, r.dnsError(e, host, qtype)
	}
	out := make([]netip.Addr, 0, len(e.ips))
	for _, ip := range e.ips {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}

// LookupNetIP is Resolver.LookupNetIP from the cache alone.
func (v *CacheView) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return v.r.LookupNetIP(v.ctx(ctx), network, host)
}
