package helo

import (
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
