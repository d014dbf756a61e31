package spf

import (
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/dns"
)

// newResolver is the project's resolver, cache on, querying only the
// dnstest server at addr with the given per-query timeout.
func newResolver(t testing.TB, addr string, timeout time.Duration) *dns.Resolver {
	t.Helper()
	r, err := dns.New(dns.Config{Servers: []string{addr}, Timeout: timeout, Attempts: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
