package helo

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/dnstest"
)

// newResolver is the project's resolver, with its cache, pointed at srv.
func newResolver(tb testing.TB, srv *dnstest.Server) *dns.Resolver {
	tb.Helper()
	return checktest.ResolverFor(tb, checktest.Config(srv.Addr, 2*time.Second), nil)
}

// fakeFamilyFailure is a FAKE Lookuper, for the one fault dnstest cannot
// produce: a name whose A lookup answers while its AAAA lookup fails
// temporarily (or the reverse). dnstest faults a name for every type. It
// wraps the real resolver and, for the names in fail, keeps only the
// addresses of the family that answered and adds the temporary error, as
// dns.Resolver.LookupIPAddr documents for that case.
type fakeFamilyFailure struct {
	*dns.Resolver
	fail map[string]bool // name -> true: AAAA fails; false: A fails
}

func (f fakeFamilyFailure) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	addrs, err := f.Resolver.LookupIPAddr(ctx, host)
	aaaaFails, ok := f.fail[host]
	if !ok || err != nil {
		return addrs, err
	}
	var kept []net.IPAddr
	for _, a := range addrs {
		if (a.IP.To4() != nil) == aaaaFails {
			kept = append(kept, a)
		}
	}
	return kept, &net.DNSError{Err: "server misbehaving", Name: host, IsTemporary: true}
}
