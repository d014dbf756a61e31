package spf

import (
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dns"
)

// newResolver is the project's resolver, cache on, querying only the
// dnstest server at addr with the given per-query timeout.
func newResolver(t testing.TB, addr string, timeout time.Duration) *dns.Resolver {
	t.Helper()
	return checktest.Resolver(t, addr, timeout)
}
