package helo

import (
	"testing"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/dnstest"
)

// newResolver is the project's resolver, with its cache, pointed at srv.
func newResolver(tb testing.TB, srv *dnstest.Server) *dns.Resolver {
	tb.Helper()
	r, err := dns.New(dns.Config{Servers: []string{srv.Addr}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}
