package dns

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
	mdns "github.com/miekg/dns"

	"github.com/vouch-mail/vouch/checks/dnstest"
)

// lookupAll makes each kind of lookup the checks make, at a name of zone
// that has records of that type, and returns what came back, by call.
func lookupAll(t *testing.T, r *Resolver) map[string]struct {
	got []string
	err error
} {
	t.Helper()
	ctx := ctxT(t)
	out := map[string]struct {
		got []string
		err error
	}{}
	set := func(call string, got []string, err error) {
		out[call] = struct {
			got []string
			err error
		}{got, err}
	}
	ips, err := r.LookupIPAddr(ctx, "mail.example.com")
	var s []string
	for _, a := range ips {
		s = append(s, a.IP.String())
	}
	set("ip", s, err)
	txt, err := r.LookupTXT(ctx, "spf.example.com")
	set("txt", txt, err)
	mx, err := r.LookupMX(ctx, "example.com")
	s = nil
	for _, m := range mx {
		s = append(s, m.Host)
	}
	set("mx", s, err)
	ptr, err := r.LookupAddr(ctx, "192.0.2.25")
	set("ptr", ptr, err)
	return out
}

var (
	faultNames = []string{"mail.example.com", "spf.example.com", "example.com", dnstest.ReverseName("192.0.2.25")}
	wantAll    = map[string][]string{
		"ip":  {"192.0.2.25", "2001:db8::25"},
		"txt": {"v=spf1 ip4:192.0.2.0/24 -all"},
		"mx":  {"mx1.example.com.", "mx2.example.com.", "mx3.example.com."},
		"ptr": {"mail.example.com."},
	}
)

// TestDNSFaultsAreTemporary: RFC 7208 §4.4 and §5 make every RCODE other
// than NOERROR and NXDOMAIN, a timeout, and an answer that cannot be used
// a temporary error; blitiri spf turns it into temperror only when the
// *net.DNSError says IsTemporary, and the iprev and HELO checks read the
// same flag. None of these is an answer, so none may be not-found or
// permanent.
func TestDNSFaultsAreTemporary(t *testing.T) {
	strays := func(ds ...dnstest.Datagram) dnstest.Fault { return dnstest.Fault{Before: ds, Drop: true} }
	flood := dnstest.Fault{Before: slices.Repeat([]dnstest.Datagram{dnstest.Garbage}, maxStrayDatagrams+1)}
	tests := []struct {
		name  string
		fault dnstest.Fault
	}{
		{"FORMERR", dnstest.Fault{Rcode: mdns.RcodeFormatError}},
		{"FORMERR without question", dnstest.Fault{Rcode: mdns.RcodeFormatError, Bare: true}},
		{"NOTIMP", dnstest.Fault{Rcode: mdns.RcodeNotImplemented}},
		{"NOTIMP without question", dnstest.Fault{Rcode: mdns.RcodeNotImplemented, Bare: true}},
		{"YXDOMAIN", dnstest.Fault{Rcode: mdns.RcodeYXDomain}},
		{"BADVERS", dnstest.Fault{Rcode: mdns.RcodeBadVers}},
		{"SERVFAIL without question", dnstest.Fault{Rcode: mdns.RcodeServerFailure, Bare: true}},
		{"truncated, TCP closed", dnstest.Fault{Truncate: true, CloseTCP: true}},
		{"garbage only", strays(dnstest.Garbage)},
		{"short datagram only", strays(dnstest.Short)},
		{"wrong ID only", strays(dnstest.WrongID, dnstest.WrongIDGarbage)},
		{"answer without question only", strays(dnstest.NoQuestion)},
		{"answer to another question only", strays(dnstest.OtherQuestion)},
		{"echoed query only", strays(dnstest.Echo)},
		{"oversized only", strays(dnstest.Oversized)},
		{"more stray datagrams than the bound, then the answer", flood},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, srv, _, _ := setup(t, func(c *Config) { c.Timeout = 300 * time.Millisecond })
			for _, n := range faultNames {
				srv.SetFault(n, tc.fault)
			}
			for call, res := range lookupAll(t, r) {
				if res.got != nil {
					t.Errorf("%s: records %q", call, res.got)
				}
				// Temporary is the point; whether it is also a timeout
				// depends on the fault.
				var timeout bool
				if de, ok := res.err.(*net.DNSError); ok {
					timeout = de.IsTimeout
				}
				de := checkErr(t, res.err, map[string]string{"ip": "mail.example.com", "txt": "spf.example.com",
					"mx": "example.com", "ptr": "192.0.2.25"}[call], wantErr{temporary: true, timeout: timeout})
				if de != nil && de.Server != srv.Addr {
					t.Errorf("%s: Server %q, want %q", call, de.Server, srv.Addr)
				}
			}
		})
	}
}

// TestStrayDatagramsSkipped: datagrams that do not answer the query, on
// the query's own socket ahead of the answer, are skipped and the answer
// awaited, within the same attempt. miekg/dns skips a wrong ID only in a
// datagram that parses, takes a datagram without a question as the
// answer, and ends the attempt at the first one that does not parse.
func TestStrayDatagramsSkipped(t *testing.T) {
	all := []dnstest.Datagram{dnstest.Garbage, dnstest.Short, dnstest.WrongID, dnstest.WrongIDGarbage,
		dnstest.NoQuestion, dnstest.OtherQuestion, dnstest.Echo, dnstest.Oversized}
	tests := []struct {
		name   string
		before []dnstest.Datagram
	}{
		// Oversized once only: a burst of big datagrams could overflow the
		// socket's receive buffer, and the kernel drop the answer with them.
		{"all kinds, up to the bound", append(slices.Repeat(all[:len(all)-1], (maxStrayDatagrams-1)/(len(all)-1)), dnstest.Oversized)},
	}
	for _, d := range all {
		tests = append(tests, struct {
			name   string
			before []dnstest.Datagram
		}{d.String(), []dnstest.Datagram{d}})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, srv, _, obs := setup(t, func(c *Config) { c.Timeout = 2 * time.Second; c.CacheSize = 0 })
			for _, n := range faultNames {
				srv.SetFault(n, dnstest.Fault{Before: tc.before})
			}
			for call, res := range lookupAll(t, r) {
				if res.err != nil || !slices.Equal(res.got, wantAll[call]) {
					t.Errorf("%s: %q, %v; want %q", call, res.got, res.err, wantAll[call])
				}
			}
			// One query each (A and AAAA for ip): no retry was needed.
			if n := srv.TotalQueries(); n != 5 {
				t.Errorf("%d queries, want 5: %v", n, srv.QueryLog())
			}
			obs.mu.Lock()
			defer obs.mu.Unlock()
			for k, n := range obs.queries {
				if !strings.HasSuffix(k, " "+OutcomeSuccess) {
					t.Errorf("outcome %q x%d", k, n)
				}
			}
		})
	}
}

// TestFormErrToEDNSRetriedWithout: a server that answers FORMERR to a
// query with EDNS (one from before RFC 6891, or a middlebox that drops
// OPT records' meaning) is asked again without EDNS, once, in the same
// attempt.
func TestFormErrToEDNSRetriedWithout(t *testing.T) {
	for _, bare := range []bool{false, true} {
		name := "question echoed"
		if bare {
			name = "header only"
		}
		t.Run(name, func(t *testing.T) {
			r, srv, _, obs := setup(t, func(c *Config) { c.CacheSize = 0 })
			for _, n := range faultNames {
				srv.SetFault(n, dnstest.Fault{FormErrEDNS: true, Bare: bare})
			}
			for call, res := range lookupAll(t, r) {
				if res.err != nil || !slices.Equal(res.got, wantAll[call]) {
					t.Errorf("%s: %q, %v; want %q", call, res.got, res.err, wantAll[call])
				}
			}
			for _, q := range []struct {
				name  string
				qtype uint16
			}{{"mail.example.com", mdns.TypeA}, {"mail.example.com", mdns.TypeAAAA}, {"spf.example.com", mdns.TypeTXT},
				{"example.com", mdns.TypeMX}, {dnstest.ReverseName("192.0.2.25"), mdns.TypePTR}} {
				if all, plain := srv.Queries(q.name, q.qtype), srv.QueriesNoEDNS(q.name, q.qtype); all != 2 || plain != 1 {
					t.Errorf("%s %s: %d queries, %d without EDNS; want 2, 1: %v", q.name, mdns.TypeToString[q.qtype], all, plain, srv.QueryLog())
				}
			}
			obs.mu.Lock()
			defer obs.mu.Unlock()
			if n := obs.queries["TXT "+OutcomeSuccess]; n != 1 {
				t.Errorf("observed %v, want one TXT success (the retry belongs to its attempt)", obs.queries)
			}
		})
	}
	t.Run("FORMERR to both: temporary, one retry per attempt", func(t *testing.T) {
		r, srv, _, _ := setup(t, func(c *Config) { c.Attempts = 2 })
		srv.SetFault("spf.example.com", dnstest.Fault{Rcode: mdns.RcodeFormatError})
		_, err := r.LookupTXT(ctxT(t), "spf.example.com")
		checkErr(t, err, "spf.example.com", wantErr{temporary: true})
		if all, plain := srv.Queries("spf.example.com", mdns.TypeTXT), srv.QueriesNoEDNS("spf.example.com", mdns.TypeTXT); all != 4 || plain != 2 {
			t.Errorf("%d queries, %d without EDNS; want 4, 2: %v", all, plain, srv.QueryLog())
		}
	})
	t.Run("retried without EDNS, truncated, then TCP", func(t *testing.T) {
		r, srv, _, _ := setup(t, nil)
		big := strings.Repeat("x", 250)
		if err := srv.AddZone(`big.example.com. 300 TXT "v=spf1 ` + big + `" "` + big + `" "` + big + `"`); err != nil {
			t.Fatal(err)
		}
		srv.SetFault("big.example.com", dnstest.Fault{FormErrEDNS: true})
		got, err := r.LookupTXT(ctxT(t), "big.example.com")
		if err != nil || len(got) != 1 || len(got[0]) != 757 {
			t.Fatalf("got %d records, %v", len(got), err)
		}
		if n := srv.QueriesTCP("big.example.com", mdns.TypeTXT); n != 1 {
			t.Errorf("%d TCP queries, want 1: %v", n, srv.QueryLog())
		}
	})
}

// TestSPFNeverPermErrorFromDNSFaults runs blitiri spf over the faults:
// each must give temperror, never permerror or fail, and where the right
// answer follows the strays, pass.
func TestSPFNeverPermErrorFromDNSFaults(t *testing.T) {
	const spfZone = `
$ORIGIN spf.test.
@     SOA  ns hostmaster 1 3600 600 86400 60
pass  TXT  "v=spf1 a:host.spf.test -all"
host  A    192.0.2.1
`
	tests := []struct {
		name  string
		fault dnstest.Fault
		want  spf.Result
	}{
		{"FORMERR", dnstest.Fault{Rcode: mdns.RcodeFormatError}, spf.TempError},
		{"NOTIMP", dnstest.Fault{Rcode: mdns.RcodeNotImplemented}, spf.TempError},
		{"FORMERR to EDNS only", dnstest.Fault{FormErrEDNS: true}, spf.Pass},
		{"answer without question carrying -all", dnstest.Fault{Before: []dnstest.Datagram{dnstest.NoQuestion}, Drop: true}, spf.TempError},
		{"answer to another question carrying -all", dnstest.Fault{Before: []dnstest.Datagram{dnstest.OtherQuestion}, Drop: true}, spf.TempError},
		{"garbage, then the answer", dnstest.Fault{Before: []dnstest.Datagram{dnstest.Garbage}}, spf.Pass},
		{"wrong-ID garbage, then the answer", dnstest.Fault{Before: []dnstest.Datagram{dnstest.WrongIDGarbage}}, spf.Pass},
		{"forged answer without question, then the answer", dnstest.Fault{Before: []dnstest.Datagram{dnstest.NoQuestion}}, spf.Pass},
	}
	for _, tc := range tests {
		for _, at := range []string{"pass.spf.test", "host.spf.test"} {
			t.Run(tc.name+"/"+at, func(t *testing.T) {
				t.Parallel()
				r, srv, _, _ := setup(t, func(c *Config) { c.Timeout = 300 * time.Millisecond })
				if err := srv.AddZone(spfZone); err != nil {
					t.Fatal(err)
				}
				srv.SetFault(at, tc.fault)
				got, err := spf.CheckHostWithSender(net.ParseIP("192.0.2.1"), "helo.spf.test", "user@pass.spf.test",
					spf.WithResolver(r), spf.WithContext(ctxT(t)))
				if got != tc.want {
					t.Fatalf("spf %s (%v), want %s", got, err, tc.want)
				}
			})
		}
	}
}

// TestStrayErrorsSaySo: the error of a lookup that met strays says how
// many, for the postmaster reading the log.
func TestStrayErrorsSaySo(t *testing.T) {
	tests := []struct {
		name  string
		fault dnstest.Fault
		want  string
	}{
		{"strays, then nothing", dnstest.Fault{Before: []dnstest.Datagram{dnstest.Garbage, dnstest.NoQuestion}, Drop: true},
			"i/o timeout (2 datagrams that do not answer the query skipped)"},
		{"flood", dnstest.Fault{Before: slices.Repeat([]dnstest.Datagram{dnstest.WrongIDGarbage}, maxStrayDatagrams)},
			"gave up after 32 datagrams that do not answer the query"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, srv, _, _ := setup(t, func(c *Config) { c.Timeout = 200 * time.Millisecond })
			srv.SetFault("spf.example.com", tc.fault)
			_, err := r.LookupTXT(ctxT(t), "spf.example.com")
			de := checkErr(t, err, "spf.example.com", wantErr{temporary: true, timeout: strings.HasPrefix(tc.want, "i/o timeout")})
			if de != nil && de.Err != tc.want {
				t.Errorf("Err %q, want %q", de.Err, tc.want)
			}
		})
	}
}
