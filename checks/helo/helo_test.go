package helo

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/checks/iprev"
)

const zone = `
$ORIGIN example.com.
$TTL 300
@          SOA ns hostmaster 1 3600 600 86400 120
mail       A     192.0.2.1
mail       AAAA  2001:db8::1
mx2        A     192.0.2.1
other      A     192.0.2.99
v6host     AAAA  2001:db8::1
v6other    AAAA  2001:db8::99
broken     A     192.0.2.1
hang       A     192.0.2.1
servfail   A     192.0.2.1
alias      CNAME mx2
1.2.0.192.in-addr.arpa. PTR mail.example.com.
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR mail.example.com.
`

func startZone(t testing.TB) *dnstest.Server {
	t.Helper()
	srv := dnstest.New(t, zone)
	srv.SetFault("servfail.example.com", dnstest.Fault{Rcode: mdns.RcodeServerFailure})
	srv.SetFault("nxservfail.example.com", dnstest.Fault{Rcode: mdns.RcodeServerFailure})
	srv.SetFault("hang.example.com", dnstest.Fault{Drop: true})
	return srv
}

func TestCheck(t *testing.T) {
	srv := startZone(t)
	r := newResolver(t, srv)

	// The iprev results the HELO is compared with, as the daemon gets them.
	revV4 := iprev.Check(context.Background(), r, net.ParseIP("192.0.2.1"), iprev.Options{})
	revV6 := iprev.Check(context.Background(), r, net.ParseIP("2001:db8::1"), iprev.Options{})
	revMapped := iprev.Check(context.Background(), r, net.ParseIP("::ffff:192.0.2.1"), iprev.Options{})
	for _, rev := range []iprev.Result{revV4, revV6, revMapped} {
		if rev.Verdict != iprev.Pass || !slices.Equal(rev.Confirmed, []string{"mail.example.com"}) {
			t.Fatalf("iprev for %v = %q %q, want pass [mail.example.com]", rev.IP, rev.Verdict, rev.Confirmed)
		}
	}
	revNoPTR := iprev.Result{Verdict: iprev.NoPTR, IP: net.ParseIP("192.0.2.1")}
	revTemp := iprev.Result{Verdict: iprev.TempError, IP: net.ParseIP("192.0.2.1"),
		Err: &net.DNSError{Err: "server misbehaving", Name: "1.2.0.192.in-addr.arpa", IsTemporary: true}}
	revPerm := iprev.Result{Verdict: iprev.PermError, IP: net.ParseIP("192.0.2.1"), Err: errors.New("malformed")}

	tests := []struct {
		name    string
		helo    string
		ip      string
		rev     iprev.Result
		timeout time.Duration // 0: 5 s
		verdict Verdict
		hname   string
		literal string
		addrs   []string
		noDNS   bool // the check must not query
		errSet  bool
	}{
		{name: "match", helo: "mail.example.com", ip: "192.0.2.1", rev: revV4,
			verdict: Match, hname: "mail.example.com", noDNS: true},
		{name: "match upper-case with trailing dot", helo: "MAIL.Example.COM.", ip: "192.0.2.1", rev: revV4,
			verdict: Match, hname: "mail.example.com", noDNS: true},
		{name: "match confirmed name given with a dot and capitals", helo: "mail.example.com",
			ip: "192.0.2.1", rev: iprev.Result{Verdict: iprev.Pass, Confirmed: []string{"Mail.Example.Com."}},
			verdict: Match, hname: "mail.example.com", noDNS: true},
		{name: "match IPv6", helo: "mail.example.com", ip: "2001:db8::1", rev: revV6,
			verdict: Match, hname: "mail.example.com", noDNS: true},
		{name: "match IPv4-mapped client", helo: "Mail.Example.Com", ip: "::ffff:192.0.2.1", rev: revMapped,
			verdict: Match, hname: "mail.example.com", noDNS: true},
		{name: "resolves", helo: "mx2.example.com", ip: "192.0.2.1", rev: revV4,
			verdict: Resolves, hname: "mx2.example.com", addrs: []string{"192.0.2.1"}},
		{name: "resolves via CNAME", helo: "alias.example.com", ip: "192.0.2.1", rev: revV4,
			verdict: Resolves, hname: "alias.example.com", addrs: []string{"192.0.2.1"}},
		{name: "resolves without PTR", helo: "MX2.example.com.", ip: "192.0.2.1", rev: revNoPTR,
			verdict: Resolves, hname: "mx2.example.com", addrs: []string{"192.0.2.1"}},
		{name: "resolves IPv6", helo: "v6host.example.com", ip: "2001:db8::1", rev: iprev.Result{Verdict: iprev.NoPTR},
			verdict: Resolves, hname: "v6host.example.com", addrs: []string{"2001:db8::1"}},
		{name: "resolves IPv4-mapped client", helo: "mx2.example.com", ip: "::ffff:192.0.2.1", rev: revMapped,
			verdict: Resolves, hname: "mx2.example.com", addrs: []string{"192.0.2.1"}},
		{name: "resolves while iprev failed temporarily", helo: "mx2.example.com", ip: "192.0.2.1", rev: revTemp,
			verdict: Resolves, hname: "mx2.example.com", addrs: []string{"192.0.2.1"}},
		{name: "mismatch: other address", helo: "other.example.com", ip: "192.0.2.1", rev: revV4,
			verdict: Mismatch, hname: "other.example.com", addrs: []string{"192.0.2.99"}},
		{name: "mismatch: IPv6 other address", helo: "v6other.example.com", ip: "2001:db8::1", rev: revV6,
			verdict: Mismatch, hname: "v6other.example.com", addrs: []string{"2001:db8::99"}},
		{name: "mismatch: no such name", helo: "nowhere.example.com", ip: "192.0.2.1", rev: revV4,
			verdict: Mismatch, hname: "nowhere.example.com"},
		{name: "mismatch: name outside any zone", helo: "gmail.test", ip: "192.0.2.1", rev: revNoPTR,
			verdict: Mismatch, hname: "gmail.test"},
		{name: "mismatch: iprev permerror", helo: "other.example.com", ip: "192.0.2.1", rev: revPerm,
			verdict: Mismatch, hname: "other.example.com", addrs: []string{"192.0.2.99"}},
		{name: "mismatch: another client's confirmed name", helo: "mail.example.com", ip: "192.0.2.7",
			rev: iprev.Result{Verdict: iprev.NoPTR}, verdict: Mismatch, hname: "mail.example.com",
			addrs: []string{"192.0.2.1", "2001:db8::1"}},
		{name: "temperror: SERVFAIL", helo: "servfail.example.com", ip: "192.0.2.1", rev: revV4,
			verdict: TempError, hname: "servfail.example.com", errSet: true},
		{name: "temperror: iprev temperror, name elsewhere", helo: "other.example.com", ip: "192.0.2.1", rev: revTemp,
			verdict: TempError, hname: "other.example.com", addrs: []string{"192.0.2.99"}, errSet: true},
		{name: "temperror: iprev temperror, no such name", helo: "nowhere.example.com", ip: "192.0.2.1", rev: revTemp,
			verdict: TempError, hname: "nowhere.example.com", errSet: true},
		{name: "temperror: timeout", helo: "hang.example.com", ip: "192.0.2.1", rev: revV4, timeout: 500 * time.Millisecond,
			verdict: TempError, hname: "hang.example.com", errSet: true},
		{name: "literal IPv4", helo: "[192.0.2.1]", ip: "192.0.2.1", rev: revV4,
			verdict: Literal, literal: "192.0.2.1", noDNS: true},
		{name: "literal IPv6", helo: "[IPv6:2001:DB8:0::1]", ip: "2001:db8::1", rev: revV6,
			verdict: Literal, literal: "2001:db8::1", noDNS: true},
		{name: "literal IPv4 for IPv4-mapped client", helo: "[192.0.2.1]", ip: "::ffff:192.0.2.1", rev: revMapped,
			verdict: Literal, literal: "192.0.2.1", noDNS: true},
		{name: "literal IPv4-mapped for IPv4 client", helo: "[IPv6:::ffff:192.0.2.1]", ip: "192.0.2.1", rev: revV4,
			verdict: Literal, literal: "192.0.2.1", noDNS: true},
		{name: "literal mismatch IPv4", helo: "[192.0.2.2]", ip: "192.0.2.1", rev: revV4,
			verdict: LiteralMismatch, literal: "192.0.2.2", noDNS: true},
		{name: "literal mismatch across families", helo: "[IPv6:2001:db8::1]", ip: "192.0.2.1", rev: revV4,
			verdict: LiteralMismatch, literal: "2001:db8::1", noDNS: true},
		{name: "literal mismatch: no client IP", helo: "[192.0.2.1]", ip: "", rev: iprev.Result{},
			verdict: LiteralMismatch, literal: "192.0.2.1", noDNS: true},
		{name: "invalid: single label", helo: "localhost", ip: "192.0.2.1", rev: revV4, verdict: Invalid, noDNS: true},
		{name: "invalid: bare IP", helo: "192.0.2.1", ip: "192.0.2.1", rev: revV4, verdict: Invalid, noDNS: true},
		{name: "invalid: empty", helo: "", ip: "192.0.2.1", rev: revV4, verdict: Invalid, noDNS: true},
		{name: "invalid: underscore", helo: "my_pc.example.com", ip: "192.0.2.1", rev: revV4, verdict: Invalid, noDNS: true},
		{name: "invalid: CR/LF injection", helo: "mail.example.com\r\nX-Injected: yes", ip: "192.0.2.1", rev: revV4,
			verdict: Invalid, noDNS: true},
		{name: "invalid: percent and quotes", helo: `"100%";.example.com`, ip: "192.0.2.1", rev: revV4,
			verdict: Invalid, noDNS: true},
		{name: "invalid: 8-bit", helo: "m\xe4il.example.com", ip: "192.0.2.1", rev: revV4, verdict: Invalid, noDNS: true},
		{name: "invalid: 1200 octets", helo: strings.Repeat("a.", 600) + "com", ip: "192.0.2.1", rev: revV4,
			verdict: Invalid, noDNS: true},
		{name: "invalid: bad literal", helo: "[192.0.2.300]", ip: "192.0.2.1", rev: revV4, verdict: Invalid, noDNS: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			srv.ResetCounts()
			start := time.Now()
			got := Check(ctx, r, tc.helo, net.ParseIP(tc.ip), tc.rev)
			took := time.Since(start)

			if got.Verdict != tc.verdict {
				t.Fatalf("Verdict = %q (err %v), want %q; queries %v", got.Verdict, got.Err, tc.verdict, srv.QueryLog())
			}
			if got.Name != tc.hname {
				t.Errorf("Name = %q, want %q", got.Name, tc.hname)
			}
			if tc.literal == "" && got.Literal != nil || tc.literal != "" && !got.Literal.Equal(net.ParseIP(tc.literal)) {
				t.Errorf("Literal = %v, want %q", got.Literal, tc.literal)
			}
			var want []net.IP
			for _, a := range tc.addrs {
				want = append(want, net.ParseIP(a))
			}
			if !slices.EqualFunc(got.Addrs, want, func(a, b net.IP) bool { return a.Equal(b) }) {
				t.Errorf("Addrs = %v, want %v", got.Addrs, want)
			}
			if (got.Err != nil) != tc.errSet {
				t.Errorf("Err = %v, want set: %v", got.Err, tc.errSet)
			}
			if n := srv.TotalQueries(); tc.noDNS && n != 0 {
				t.Errorf("%d DNS queries, want none: %v", n, srv.QueryLog())
			}
			// An upper bound, not a speed test: slack for a loaded machine.
			if took > timeout+2500*time.Millisecond {
				t.Errorf("Check took %v, want at most its deadline %v + 2.5s", took, timeout)
			}
		})
	}
}

// The error of a TempError says which lookup failed, so the operator can
// tell a broken HELO zone from an iprev failure.
func TestCheckTempErrorCause(t *testing.T) {
	srv := startZone(t)
	r := newResolver(t, srv)
	revTemp := iprev.Result{Verdict: iprev.TempError, Err: &net.DNSError{Err: "timeout", IsTimeout: true}}

	got := Check(context.Background(), r, "other.example.com", net.ParseIP("192.0.2.1"), revTemp)
	if got.Verdict != TempError || !errors.Is(got.Err, ErrNoConfirmedNames) {
		t.Errorf("iprev temperror: got %q, %v; want temperror wrapping ErrNoConfirmedNames", got.Verdict, got.Err)
	}
	var de *net.DNSError
	if !errors.As(got.Err, &de) || !de.IsTimeout {
		t.Errorf("iprev temperror: Err %v does not wrap the iprev DNS error", got.Err)
	}

	got = Check(context.Background(), r, "servfail.example.com", net.ParseIP("192.0.2.1"), iprev.Result{Verdict: iprev.NoPTR})
	if got.Verdict != TempError || errors.Is(got.Err, ErrNoConfirmedNames) {
		t.Errorf("HELO SERVFAIL: got %q, %v; want temperror of the HELO lookup", got.Verdict, got.Err)
	}
	if !errors.As(got.Err, &de) || !(de.IsTemporary || de.IsTimeout) {
		t.Errorf("HELO SERVFAIL: Err %v is not a temporary *net.DNSError", got.Err)
	}
}

func TestCheckContextDone(t *testing.T) {
	srv := startZone(t)
	r := newResolver(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got := Check(ctx, r, "mx2.example.com", net.ParseIP("192.0.2.1"), iprev.Result{Verdict: iprev.NoPTR})
	if got.Verdict != TempError {
		t.Errorf("Verdict = %q (err %v), want temperror", got.Verdict, got.Err)
	}
}

// A temporary failure of the other address family's lookup does not make
// the result temperror.
func TestCheckOtherFamilyFails(t *testing.T) {
	srv := startZone(t)
	rev := iprev.Result{Verdict: iprev.NoPTR}
	tests := []struct {
		name      string
		helo      string
		ip        string
		aaaaFails bool // else the A lookup fails
		want      Verdict
	}{
		{"IPv4 client, AAAA fails, A elsewhere", "other.example.com", "192.0.2.1", true, Mismatch},
		{"IPv4 client, AAAA fails, A holds it", "mail.example.com", "192.0.2.1", true, Resolves},
		{"IPv4 client, A fails", "other.example.com", "192.0.2.1", false, TempError},
		{"IPv6 client, AAAA fails, A answered", "mail.example.com", "2001:db8::1", true, TempError},
		{"IPv6 client, A fails, AAAA holds it", "mail.example.com", "2001:db8::1", false, Resolves},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := checktest.FakeFamilyFailure{Resolver: newResolver(t, srv), Fail: map[string]bool{tc.helo: tc.aaaaFails}}
			got := Check(context.Background(), r, tc.helo, net.ParseIP(tc.ip), rev)
			if got.Verdict != tc.want {
				t.Errorf("Verdict = %q (err %v), want %q", got.Verdict, got.Err, tc.want)
			}
			if (tc.want == TempError) != (got.Err != nil) {
				t.Errorf("Err = %v with verdict %q", got.Err, got.Verdict)
			}
		})
	}
}
