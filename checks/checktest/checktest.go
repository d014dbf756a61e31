// Package checktest holds the test helpers the packages' tests share: the
// project's resolver pointed at a checks/dnstest server, and a log buffer
// several goroutines may write. It is imported by tests only.
package checktest

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/dns"
)

// Config is the resolver configuration of the tests: the defaults, asking
// only the server at addr, one attempt of timeout each.
func Config(addr string, timeout time.Duration) dns.Config {
	c := dns.DefaultConfig()
	c.Servers = []string{addr}
	c.Timeout = timeout
	c.Attempts = 1
	return c
}

// Resolver is the project's resolver, cache on, querying only the
// dnstest server at addr with the given per-query timeout.
func Resolver(t testing.TB, addr string, timeout time.Duration) *dns.Resolver {
	t.Helper()
	return ResolverFor(t, Config(addr, timeout), nil)
}

// ResolverFor builds a resolver for c reporting to obs (nil: none).
func ResolverFor(t testing.TB, c dns.Config, obs dns.Observer) *dns.Resolver {
	t.Helper()
	r, err := dns.New(c, obs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// LogBuffer collects log output from several goroutines.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FakeFamilyFailure is a FAKE Lookuper, for the one fault dnstest cannot
// produce: a name whose A lookup answers while its AAAA lookup fails
// temporarily (or the reverse). dnstest faults a name for every type. It
// wraps the real resolver and, for the names in fail, keeps only the
// addresses of the family that answered and adds the temporary error, as
// dns.Resolver.LookupIPAddr documents for that case.
type FakeFamilyFailure struct {
	*dns.Resolver
	Fail map[string]bool // name -> true: AAAA fails; false: A fails
}

func (f FakeFamilyFailure) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	addrs, err := f.Resolver.LookupIPAddr(ctx, host)
	aaaaFails, ok := f.Fail[host]
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

// update rewrites golden files instead of comparing with them:
// go test ./... -update.
var update = flag.Bool("update", false, "rewrite the golden files under testdata/ with the output the tests get")

// Golden compares got with the file at path (under the test package's
// testdata/), or writes it there when the tests run with -update. The
// file holds exactly the bytes the user sees.
func Golden(t testing.TB, path string, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the tests with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (rerun with -update if the change is intended):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
