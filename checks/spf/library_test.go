package spf

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	blitiri "blitiri.com.ar/go/spf"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/dnstest"
)

// The corrections in recorder.go rely on what blitiri.com.ar/go/spf does
// with what it is served. These tests pin those behaviours on the library
// alone (our resolver, no recorder), so that an upgrade that changes one
// fails here, by name, before it changes a verdict.

// spy is the project's resolver with the address names the library asked
// logged; the answers are the real server's.
type spy struct {
	dns.Lookuper
	mu    sync.Mutex
	asked []string
}

func (s *spy) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	s.mu.Lock()
	s.asked = append(s.asked, host)
	s.mu.Unlock()
	return s.Lookuper.LookupIPAddr(ctx, host)
}

// TestLibraryPermErrorRecord: permErrorRecord is permerror, with
// ErrUnknownField, at the top, through include and through redirect
// (recorder.LookupTXT hands it over in place of a record with a syntax
// error; check reads ErrUnknownField to report the syntax error).
func TestLibraryPermErrorRecord(t *testing.T) {
	srv := dnstest.New(t, `
$ORIGIN example.com.
@        SOA ns hostmaster 1 3600 600 86400 300
bad      TXT "`+permErrorRecord+`"
inc      TXT "v=spf1 include:bad.example.com +all"
redir    TXT "v=spf1 redirect=bad.example.com"
`)
	r := newResolver(t, srv.Addr, 2*time.Second)
	for _, domain := range []string{"bad.example.com", "inc.example.com", "redir.example.com"} {
		t.Run(domain, func(t *testing.T) {
			res, err := blitiri.CheckHostWithSender(net.ParseIP("192.0.2.1"), "h.example.com", "a@"+domain,
				blitiri.WithResolver(r), blitiri.WithContext(context.Background()))
			if res != blitiri.PermError || !errors.Is(err, blitiri.ErrUnknownField) {
				t.Errorf("library gives %v, %v; recorder.go relies on permerror, ErrUnknownField", res, err)
			}
		})
	}
}

// TestLibraryExistsMarker: the library hands an exists domain-spec that
// starts with existsMarker to LookupIPAddr with the marker still in front,
// macros expanded after it, and ends the evaluation on what it returns.
func TestLibraryExistsMarker(t *testing.T) {
	srv := dnstest.New(t, `
$ORIGIN example.com.
@        SOA ns hostmaster 1 3600 600 86400 300
ex       TXT "v=spf1 exists:\001a.%{l}.x.example.com -all"
`)
	s := &spy{Lookuper: newResolver(t, srv.Addr, 2*time.Second)}
	res, _ := blitiri.CheckHostWithSender(net.ParseIP("2001:db8::1"), "h.example.com", "alice@ex.example.com",
		blitiri.WithResolver(s), blitiri.WithContext(context.Background()))
	if len(s.asked) != 1 || s.asked[0] != existsMarker+"alice.x.example.com" {
		t.Errorf("library asked %q, want [%q]", s.asked, existsMarker+"alice.x.example.com")
	}
	if res != blitiri.Fail {
		t.Errorf("result %v, want fail (the name does not exist)", res)
	}
}
