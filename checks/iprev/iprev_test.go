package iprev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dnstest"
)

// zone holds one client per scenario; the comment on each block names it.
const zone = `
$ORIGIN example.com.
$TTL 300
@           SOA ns hostmaster 1 3600 600 86400 120
mail        A     192.0.2.1
mail        AAAA  2001:db8::1
other       A     192.0.2.99
first       A     192.0.2.100
second      A     192.0.2.3
cn-host     A     192.0.2.4
ptrcname    CNAME cn-host
classless   A     198.51.100.10
slow        A     192.0.2.6
broken      A     192.0.2.200
good7       A     192.0.2.7
hang        A     192.0.2.9
good9       A     192.0.2.9
v6only      AAAA  2001:db8::6
upper       A     192.0.2.11
notimp      A     192.0.2.15
good17      A     192.0.2.17

; pass, IPv4, IPv6 and IPv4-mapped
1.2.0.192.in-addr.arpa.  PTR mail.example.com.
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR mail.example.com.
; unconfirmed: the name resolves elsewhere
2.2.0.192.in-addr.arpa.  PTR other.example.com.
; two names, only the second confirms
3.2.0.192.in-addr.arpa.  PTR first.example.com.
3.2.0.192.in-addr.arpa.  PTR second.example.com.
; PTR names a CNAME
4.2.0.192.in-addr.arpa.  PTR ptrcname.example.com.
; unconfirmed: the name does not exist
5.2.0.192.in-addr.arpa.  PTR gone.example.com.
; forward lookup fails temporarily
6.2.0.192.in-addr.arpa.  PTR slow.example.com.
; one forward lookup fails, another confirms
7.2.0.192.in-addr.arpa.  PTR broken.example.com.
7.2.0.192.in-addr.arpa.  PTR good7.example.com.
; one forward lookup hangs, another confirms
9.2.0.192.in-addr.arpa.  PTR hang.example.com.
9.2.0.192.in-addr.arpa.  PTR good9.example.com.
; NODATA: the reverse name exists, but holds no PTR
10.2.0.192.in-addr.arpa. TXT "no ptr here"
; upper-case PTR target, duplicate differing only in case
11.2.0.192.in-addr.arpa. PTR UPPER.Example.COM.
11.2.0.192.in-addr.arpa. PTR upper.example.com.
; PTR lookup times out
12.2.0.192.in-addr.arpa. PTR mail.example.com.
; PTR lookup fails temporarily
13.2.0.192.in-addr.arpa. PTR mail.example.com.
; RFC 2317 classless delegation: the reverse name is a CNAME
10.100.51.198.in-addr.arpa. CNAME 10.0-63.100.51.198.in-addr.arpa.
10.0-63.100.51.198.in-addr.arpa. PTR classless.example.com.
; PTR lookup answers NOTIMP: a temporary failure (RFC 7208 §5, RFC 8601 §2.7.3)
14.2.0.192.in-addr.arpa. PTR mail.example.com.
; forward lookup answers NOTIMP
15.2.0.192.in-addr.arpa. PTR notimp.example.com.
; PTR names that are not host names only
16.2.0.192.in-addr.arpa. PTR bad\032name.example.com.
16.2.0.192.in-addr.arpa. PTR slash/name.example.com.
; a name that is not a host name beside one that confirms
17.2.0.192.in-addr.arpa. PTR bad\032name.example.com.
17.2.0.192.in-addr.arpa. PTR good17.example.com.
; IPv6 client whose name has only AAAA
6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR v6only.example.com.
`

func startZone(t testing.TB) *dnstest.Server {
	t.Helper()
	srv := dnstest.New(t, zone)
	srv.SetFault("slow.example.com", dnstest.Fault{Rcode: mdns.RcodeServerFailure})
	srv.SetFault("broken.example.com", dnstest.Fault{Rcode: mdns.RcodeServerFailure})
	srv.SetFault("hang.example.com", dnstest.Fault{Drop: true})
	srv.SetFault(dnstest.ReverseName("192.0.2.12"), dnstest.Fault{Drop: true})
	srv.SetFault(dnstest.ReverseName("192.0.2.13"), dnstest.Fault{Rcode: mdns.RcodeServerFailure})
	srv.SetFault(dnstest.ReverseName("192.0.2.14"), dnstest.Fault{Rcode: mdns.RcodeNotImplemented})
	srv.SetFault("notimp.example.com", dnstest.Fault{Rcode: mdns.RcodeNotImplemented})
	return srv
}

func ips(ss ...string) []net.IP {
	var out []net.IP
	for _, s := range ss {
		out = append(out, net.ParseIP(s))
	}
	return out
}

func sameIPs(a, b []net.IP) bool {
	return slices.EqualFunc(a, b, func(x, y net.IP) bool { return x.Equal(y) })
}

func TestCheck(t *testing.T) {
	srv := startZone(t)
	r := newResolver(t, srv)

	tests := []struct {
		name      string
		ip        string
		timeout   time.Duration // 0: 5 s
		verdict   Verdict
		auth      string
		wantIP    string
		ptr       []string // compared sorted: answer order is the resolver's
		confirmed []string
		forward   map[string][]net.IP // checked when non-nil
		errTemp   bool                // Err must be a temporary *net.DNSError or a ctx error
		errSet    bool
	}{
		{name: "pass IPv4", ip: "192.0.2.1", verdict: Pass, auth: "pass", wantIP: "192.0.2.1",
			ptr: []string{"mail.example.com"}, confirmed: []string{"mail.example.com"},
			forward: map[string][]net.IP{"mail.example.com": ips("192.0.2.1", "2001:db8::1")}},
		{name: "pass IPv6", ip: "2001:db8::1", verdict: Pass, auth: "pass", wantIP: "2001:db8::1",
			ptr: []string{"mail.example.com"}, confirmed: []string{"mail.example.com"}},
		{name: "pass IPv6 name with AAAA only", ip: "2001:db8::6", verdict: Pass, auth: "pass", wantIP: "2001:db8::6",
			ptr: []string{"v6only.example.com"}, confirmed: []string{"v6only.example.com"},
			forward: map[string][]net.IP{"v6only.example.com": ips("2001:db8::6")}},
		{name: "pass IPv4-mapped IPv6 checked as IPv4", ip: "::ffff:192.0.2.1", verdict: Pass, auth: "pass", wantIP: "192.0.2.1",
			ptr: []string{"mail.example.com"}, confirmed: []string{"mail.example.com"}},
		{name: "second of two PTR names confirms", ip: "192.0.2.3", verdict: Pass, auth: "pass", wantIP: "192.0.2.3",
			ptr: []string{"first.example.com", "second.example.com"}, confirmed: []string{"second.example.com"},
			forward: map[string][]net.IP{"first.example.com": ips("192.0.2.100"), "second.example.com": ips("192.0.2.3")}},
		{name: "PTR names a CNAME", ip: "192.0.2.4", verdict: Pass, auth: "pass", wantIP: "192.0.2.4",
			ptr: []string{"ptrcname.example.com"}, confirmed: []string{"ptrcname.example.com"}},
		{name: "RFC 2317 reverse CNAME", ip: "198.51.100.10", verdict: Pass, auth: "pass", wantIP: "198.51.100.10",
			ptr: []string{"classless.example.com"}, confirmed: []string{"classless.example.com"}},
		{name: "upper-case PTR normalised and deduplicated", ip: "192.0.2.11", verdict: Pass, auth: "pass", wantIP: "192.0.2.11",
			ptr: []string{"upper.example.com"}, confirmed: []string{"upper.example.com"}},
		{name: "no PTR: NXDOMAIN", ip: "192.0.2.50", verdict: NoPTR, auth: "permerror", wantIP: "192.0.2.50"},
		{name: "no PTR: NODATA", ip: "192.0.2.10", verdict: NoPTR, auth: "permerror", wantIP: "192.0.2.10"},
		{name: "no PTR: IPv6", ip: "2001:db8::99", verdict: NoPTR, auth: "permerror", wantIP: "2001:db8::99"},
		{name: "unconfirmed: name resolves elsewhere", ip: "192.0.2.2", verdict: Unconfirmed, auth: "fail", wantIP: "192.0.2.2",
			ptr: []string{"other.example.com"}, forward: map[string][]net.IP{"other.example.com": ips("192.0.2.99")}},
		{name: "unconfirmed: name does not exist", ip: "192.0.2.5", verdict: Unconfirmed, auth: "fail", wantIP: "192.0.2.5",
			ptr: []string{"gone.example.com"}, forward: map[string][]net.IP{"gone.example.com": nil}},
		{name: "PTR lookup SERVFAIL", ip: "192.0.2.13", verdict: TempError, auth: "temperror", wantIP: "192.0.2.13",
			errTemp: true, errSet: true},
		{name: "forward lookup SERVFAIL, none confirms", ip: "192.0.2.6", verdict: TempError, auth: "temperror", wantIP: "192.0.2.6",
			ptr: []string{"slow.example.com"}, errTemp: true, errSet: true},
		{name: "forward lookup SERVFAIL, another confirms", ip: "192.0.2.7", verdict: Pass, auth: "pass", wantIP: "192.0.2.7",
			ptr: []string{"broken.example.com", "good7.example.com"}, confirmed: []string{"good7.example.com"}},
		{name: "forward lookup hangs, another confirms", ip: "192.0.2.9", timeout: time.Second, verdict: Pass, auth: "pass", wantIP: "192.0.2.9",
			ptr: []string{"good9.example.com", "hang.example.com"}, confirmed: []string{"good9.example.com"}},
		{name: "PTR lookup NOTIMP", ip: "192.0.2.14", verdict: TempError, auth: "temperror", wantIP: "192.0.2.14",
			errTemp: true, errSet: true},
		{name: "forward lookup NOTIMP", ip: "192.0.2.15", verdict: TempError, auth: "temperror", wantIP: "192.0.2.15",
			ptr: []string{"notimp.example.com"}, errTemp: true, errSet: true},
		{name: "only PTR names that are not host names", ip: "192.0.2.16", verdict: PermError, auth: "permerror", wantIP: "192.0.2.16",
			errSet: true},
		{name: "bad PTR name ignored beside a good one", ip: "192.0.2.17", verdict: Pass, auth: "pass", wantIP: "192.0.2.17",
			ptr: []string{"good17.example.com"}, confirmed: []string{"good17.example.com"}},
		{name: "PTR lookup times out", ip: "192.0.2.12", timeout: 500 * time.Millisecond, verdict: TempError, auth: "temperror", wantIP: "192.0.2.12",
			errTemp: true, errSet: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			got := Check(ctx, r, net.ParseIP(tc.ip), Options{})
			if got.Verdict != tc.verdict {
				t.Fatalf("Verdict = %q, want %q (err %v; queries %v)", got.Verdict, tc.verdict, got.Err, srv.QueryLog())
			}
			if a := got.AuthResult(); a != tc.auth {
				t.Errorf("AuthResult() = %q, want %q", a, tc.auth)
			}
			if got.IP.String() != tc.wantIP {
				t.Errorf("IP = %v, want %v", got.IP, tc.wantIP)
			}
			if tc.wantIP == "192.0.2.1" && len(got.IP) != net.IPv4len {
				t.Errorf("IP has %d bytes, want the 4-byte form", len(got.IP))
			}
			if p := slices.Sorted(slices.Values(got.PTRNames)); !slices.Equal(p, tc.ptr) {
				t.Errorf("PTRNames = %q, want %q", got.PTRNames, tc.ptr)
			}
			if !slices.Equal(got.Confirmed, tc.confirmed) {
				t.Errorf("Confirmed = %q, want %q", got.Confirmed, tc.confirmed)
			}
			for name, want := range tc.forward {
				f, ok := got.Forward[name]
				if !ok {
					t.Errorf("Forward has no entry for %s: %v", name, got.Forward)
				}
				if !sameIPs(f, want) {
					t.Errorf("Forward[%s] = %v, want %v", name, f, want)
				}
			}
			if (got.Err != nil) != tc.errSet {
				t.Errorf("Err = %v, want set: %v", got.Err, tc.errSet)
			}
			if tc.errTemp && !isTemporary(got.Err) {
				t.Errorf("Err = %v, want a temporary DNS error or ctx error in its chain", got.Err)
			}
		})
	}
}

func isTemporary(err error) bool {
	var de *net.DNSError
	if errors.As(err, &de) && (de.IsTemporary || de.IsTimeout) {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// A PTR lookup that never answers must give TempError once ctx expires,
// not when the resolver's own retries run out.
func TestCheckDeadline(t *testing.T) {
	srv := startZone(t)
	r := newResolver(t, srv)
	for _, tc := range []struct {
		name string
		ip   string
		want Verdict
	}{
		{"PTR dropped", "192.0.2.12", TempError},
		{"forward dropped", "192.0.2.9", Pass}, // good9 confirms, hang never answers
	} {
		t.Run(tc.name, func(t *testing.T) {
			const deadline = 400 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			got := Check(ctx, r, net.ParseIP(tc.ip), Options{})
			took := time.Since(start)
			if got.Verdict != tc.want {
				t.Errorf("Verdict = %q (err %v), want %q", got.Verdict, got.Err, tc.want)
			}
			// An upper bound, not a speed test: slack for a loaded machine,
			// still well below the resolver's own 2 x 2s of retries.
			if took > deadline+2500*time.Millisecond {
				t.Errorf("Check returned after %v, want before the deadline %v + 2.5s", took, deadline)
			}
		})
	}
}

func TestCheckContextDone(t *testing.T) {
	srv := startZone(t)
	r := newResolver(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got := Check(ctx, r, net.ParseIP("192.0.2.1"), Options{})
	if got.Verdict != TempError || !errors.Is(got.Err, context.Canceled) {
		t.Errorf("got %q, %v; want temperror wrapping context.Canceled", got.Verdict, got.Err)
	}
	if n := srv.TotalQueries(); n != 0 {
		t.Errorf("%d queries sent for a cancelled check, want 0: %v", n, srv.QueryLog())
	}
}

func TestCheckInvalidIP(t *testing.T) {
	srv := startZone(t)
	r := newResolver(t, srv)
	for _, ip := range []net.IP{nil, {1, 2, 3}} {
		got := Check(context.Background(), r, ip, Options{})
		if got.Verdict != PermError || got.Err == nil || got.AuthResult() != "permerror" {
			t.Errorf("Check(%v) = %q, %v; want permerror with an error", []byte(ip), got.Verdict, got.Err)
		}
	}
	if n := srv.TotalQueries(); n != 0 {
		t.Errorf("%d queries sent for an invalid IP, want 0", n)
	}
}

// MaxPTR bounds the forward lookups: a client with many PTR names cannot
// make us send a query per name.
func TestCheckMaxPTR(t *testing.T) {
	var z strings.Builder
	z.WriteString("$ORIGIN example.net.\n@ 300 SOA ns hostmaster 1 3600 600 86400 120\n")
	const n = 14
	for i := range n {
		// None exists: each forward lookup is NXDOMAIN, so every one is tried.
		fmt.Fprintf(&z, "%s 300 PTR host%02d.example.net.\n", dnstest.ReverseName("203.0.113.7"), i)
	}
	srv := dnstest.New(t, z.String())

	for _, tc := range []struct {
		max, want int
	}{
		{0, DefaultMaxPTR},
		{3, 3},
		{1, 1},
		{50, n},
	} {
		t.Run(fmt.Sprintf("MaxPTR=%d", tc.max), func(t *testing.T) {
			srv.ResetCounts()
			r := newResolver(t, srv) // a cold cache: every lookup reaches srv
			got := Check(context.Background(), r, net.ParseIP("203.0.113.7"), Options{MaxPTR: tc.max})
			if got.Verdict != Unconfirmed {
				t.Fatalf("Verdict = %q (err %v), want unconfirmed", got.Verdict, got.Err)
			}
			if len(got.PTRNames) != tc.want || len(got.Forward) != tc.want {
				t.Errorf("%d PTR names, %d forward entries; want %d", len(got.PTRNames), len(got.Forward), tc.want)
			}
			looked := 0
			for i := range n {
				name := fmt.Sprintf("host%02d.example.net", i)
				q := srv.Queries(name, mdns.TypeA) + srv.Queries(name, mdns.TypeAAAA)
				if q > 0 {
					looked++
					if !slices.Contains(got.PTRNames, name) {
						t.Errorf("forward query for %s, which is not among PTRNames %q", name, got.PTRNames)
					}
				}
			}
			if looked != tc.want {
				t.Errorf("forward lookups for %d names, want %d: %v", looked, tc.want, srv.QueryLog())
			}
		})
	}
}

func TestFromMTA(t *testing.T) {
	ip := net.ParseIP("::ffff:192.0.2.1")
	tests := []struct {
		hostname string
		ok       bool
		name     string
	}{
		{"mail.example.com", true, "mail.example.com"},
		{"MAIL.Example.COM.", true, "mail.example.com"},
		{"host_1.example.com", true, "host_1.example.com"},
		{"[192.0.2.1]", false, ""},
		{"[IPv6:2001:db8::1]", false, ""},
		{"unknown", false, ""},
		{"UNKNOWN", false, ""},
		{"", false, ""},
		{".", false, ""},
		{"mail.example.com\r\nX-Evil: 1", false, ""},
		{"mail example.com", false, ""},
		{"m%il.example.com", false, ""},
		{"m\xe4il.example.com", false, ""},
		{"a..b", false, ""},
		{strings.Repeat("a.", 130) + "com", false, ""},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.hostname), func(t *testing.T) {
			got, ok := FromMTA(ip, tc.hostname)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				if got.Verdict != "" {
					t.Errorf("Verdict = %q with ok=false, want the zero Result", got.Verdict)
				}
				return
			}
			if got.Verdict != Pass || got.AuthResult() != "pass" {
				t.Errorf("Verdict = %q, want pass", got.Verdict)
			}
			if !slices.Equal(got.Confirmed, []string{tc.name}) || !slices.Equal(got.PTRNames, []string{tc.name}) {
				t.Errorf("Confirmed = %q, PTRNames = %q; want [%s]", got.Confirmed, got.PTRNames, tc.name)
			}
			if got.IP.String() != "192.0.2.1" || len(got.IP) != net.IPv4len {
				t.Errorf("IP = %v (%d bytes), want 192.0.2.1 in 4-byte form", got.IP, len(got.IP))
			}
		})
	}
	if _, ok := FromMTA(nil, "mail.example.com"); ok {
		t.Error("FromMTA(nil IP) ok, want false")
	}
}

func TestAuthResult(t *testing.T) {
	for v, want := range map[Verdict]string{
		Pass: "pass", NoPTR: "permerror", Unconfirmed: "fail",
		TempError: "temperror", PermError: "permerror", "": "",
	} {
		if got := (Result{Verdict: v}).AuthResult(); got != want {
			t.Errorf("AuthResult(%q) = %q, want %q", v, got, want)
		}
	}
}

// FuzzFromMTA: the connect hostname comes from the MTA, but it is a PTR
// name someone else published; what FromMTA accepts goes into headers and
// logs.
func FuzzFromMTA(f *testing.F) {
	for _, s := range []string{"mail.example.com", "[192.0.2.1]", "unknown", "MX.Example.COM.", "a\r\nb", "host_1.example"} {
		f.Add(s)
	}
	ip := net.ParseIP("192.0.2.1")
	f.Fuzz(func(t *testing.T, hostname string) {
		got, ok := FromMTA(ip, hostname)
		if !ok {
			return
		}
		if got.Verdict != Pass || len(got.Confirmed) != 1 || len(got.Confirmed[0]) > 253 {
			t.Fatalf("FromMTA(%q) = %+v", hostname, got)
		}
		name := got.Confirmed[0]
		if name == "" || name == "unknown" || strings.HasSuffix(name, ".") {
			t.Fatalf("FromMTA(%q) accepted %q", hostname, name)
		}
		for i := 0; i < len(name); i++ {
			if c := name[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
				t.Fatalf("FromMTA(%q) accepted %q, which holds byte %q", hostname, name, c)
			}
		}
	})
}

// A temporary failure of the other address family's lookup does not make
// the result temperror: an AAAA record cannot confirm an IPv4 client.
func TestCheckOtherFamilyFails(t *testing.T) {
	srv := startZone(t)
	tests := []struct {
		name      string
		ip        string
		aaaaFails bool // else the A lookup fails
		want      Verdict
	}{
		{"IPv4 client, AAAA fails, A elsewhere", "192.0.2.2", true, Unconfirmed},
		{"IPv4 client, AAAA fails, A confirms", "192.0.2.1", true, Pass},
		{"IPv4 client, A fails", "192.0.2.2", false, TempError},
		{"IPv6 client, A fails, AAAA confirms", "2001:db8::1", false, Pass},
		{"IPv6 client, AAAA fails", "2001:db8::1", true, TempError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := checktest.FakeFamilyFailure{Resolver: newResolver(t, srv), Fail: map[string]bool{
				"other.example.com": tc.aaaaFails, "mail.example.com": tc.aaaaFails}}
			got := Check(context.Background(), r, net.ParseIP(tc.ip), Options{})
			if got.Verdict != tc.want {
				t.Errorf("Verdict = %q (err %v), want %q", got.Verdict, got.Err, tc.want)
			}
			if (tc.want == TempError) != (got.Err != nil) {
				t.Errorf("Err = %v with verdict %q", got.Err, got.Verdict)
			}
		})
	}
}
