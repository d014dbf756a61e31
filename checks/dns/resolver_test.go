package dns

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vouch-mail/vouch/checks/dnstest"
)

// zone is the test data. TTLs are chosen so that expiry tests can tell the
// cap, the SOA and the record apart.
var zone = `
$ORIGIN example.com.
$TTL 300
@          SOA   ns hostmaster 1 3600 600 86400 120
mail       A     192.0.2.25
mail       AAAA  2001:db8::25
v4only     A     192.0.2.4
v6only     AAAA  2001:db8::6
multi      A     192.0.2.1
multi      A     192.0.2.2
alias      CNAME mail
alias2     CNAME alias
loop1      CNAME loop2
loop2      CNAME loop1
dangling   CNAME nowhere
short  1   A     192.0.2.1
spf        TXT   "v=spf1 ip4:192.0.2.0/24 -all"
split      TXT   "v=spf1 " "include:_spf.example.com " "-all"
two        TXT   "one"
two        TXT   "two"
escaped    TXT   "quote\" backslash\\ bytes\128\255"
@          MX    20 mx2
@          MX    10 mx1
@          MX    20 mx3
mx1        A     192.0.2.10
*.wild     TXT   "wildcard"
badptr     MX    10 bad\032name.example.com.

25.2.0.192.in-addr.arpa.  PTR mail.example.com.
1.2.0.192.in-addr.arpa.   PTR one.example.com.
1.2.0.192.in-addr.arpa.   PTR uno.example.com.
9.2.0.192.in-addr.arpa.   PTR bad\032name.example.com.
`

// recorder is an Observer that remembers what it heard.
type recorder struct {
	mu       sync.Mutex
	queries  map[string]int // "TYPE outcome"
	hits     int
	misses   int
	entries  int
	inFlight int
	maxIn    int
}

func newRecorder() *recorder { return &recorder{queries: map[string]int{}} }

func (o *recorder) Query(qtype, outcome string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.queries[qtype+" "+outcome]++
}

func (o *recorder) Cache(hit bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if hit {
		o.hits++
	} else {
		o.misses++
	}
}

func (o *recorder) CacheEntries(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.entries = n
}

func (o *recorder) InFlight(delta int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inFlight += delta
	o.maxIn = max(o.maxIn, o.inFlight)
}

// clock is a settable clock for the cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// setup starts a dnstest server with zone and a resolver using it, with a
// settable clock. Timeouts are short so that drop tests finish quickly, yet
// far above a loopback round trip on a loaded machine.
func setup(t *testing.T, mod func(*Config)) (*Resolver, *dnstest.Server, *clock, *recorder) {
	t.Helper()
	srv := dnstest.New(t, zone)
	cfg := withAttempts(withTimeout(testConfig(srv.Addr), 500*time.Millisecond), 1)
	if mod != nil {
		mod(&cfg)
	}
	obs := newRecorder()
	r, err := New(cfg, obs)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	r.now = clk.now
	return r, srv, clk, obs
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestLookupAnswers(t *testing.T) {
	r, _, _, _ := setup(t, nil)
	ctx := ctxT(t)
	ipStrings := func(as []net.IPAddr) []string {
		var out []string
		for _, a := range as {
			out = append(out, a.IP.String())
		}
		return out
	}
	mxStrings := func(ms []*net.MX) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Host+"/"+string(rune('0'+m.Pref/10)))
		}
		return out
	}
	tests := []struct {
		name string
		do   func() ([]string, error)
		want []string
	}{
		{"A and AAAA merged, IPv4 first", func() ([]string, error) {
			a, err := r.LookupIPAddr(ctx, "mail.example.com")
			return ipStrings(a), err
		}, []string{"192.0.2.25", "2001:db8::25"}},
		{"A only", func() ([]string, error) {
			a, err := r.LookupIPAddr(ctx, "v4only.example.com")
			return ipStrings(a), err
		}, []string{"192.0.2.4"}},
		{"AAAA only", func() ([]string, error) {
			a, err := r.LookupIPAddr(ctx, "v6only.example.com.")
			return ipStrings(a), err
		}, []string{"2001:db8::6"}},
		{"two A records", func() ([]string, error) {
			a, err := r.LookupIPAddr(ctx, "multi.example.com")
			return ipStrings(a), err
		}, []string{"192.0.2.1", "192.0.2.2"}},
		{"case-insensitive", func() ([]string, error) {
			a, err := r.LookupIPAddr(ctx, "MAIL.Example.COM")
			return ipStrings(a), err
		}, []string{"192.0.2.25", "2001:db8::25"}},
		{"CNAME", func() ([]string, error) {
			a, err := r.LookupIPAddr(ctx, "alias.example.com")
			return ipStrings(a), err
		}, []string{"192.0.2.25", "2001:db8::25"}},
		{"CNAME to CNAME", func() ([]string, error) {
			a, err := r.LookupIPAddr(ctx, "alias2.example.com")
			return ipStrings(a), err
		}, []string{"192.0.2.25", "2001:db8::25"}},
		{"IPv4 literal", func() ([]string, error) {
			a, err := r.LookupIPAddr(ctx, "192.0.2.99")
			return ipStrings(a), err
		}, []string{"192.0.2.99"}},
		{"IPv6 literal", func() ([]string, error) {
			a, err := r.LookupIPAddr(ctx, "2001:db8::99")
			return ipStrings(a), err
		}, []string{"2001:db8::99"}},
		{"TXT", func() ([]string, error) { return r.LookupTXT(ctx, "spf.example.com") },
			[]string{"v=spf1 ip4:192.0.2.0/24 -all"}},
		{"TXT strings joined", func() ([]string, error) { return r.LookupTXT(ctx, "split.example.com") },
			[]string{"v=spf1 include:_spf.example.com -all"}},
		{"two TXT records", func() ([]string, error) { return r.LookupTXT(ctx, "two.example.com") },
			[]string{"one", "two"}},
		{"TXT raw bytes", func() ([]string, error) { return r.LookupTXT(ctx, "escaped.example.com") },
			[]string{"quote\" backslash\\ bytes\x80\xff"}},
		{"TXT wildcard", func() ([]string, error) { return r.LookupTXT(ctx, "anything.wild.example.com") },
			[]string{"wildcard"}},
		{"MX by preference", func() ([]string, error) {
			m, err := r.LookupMX(ctx, "example.com")
			return mxStrings(m), err
		}, []string{"mx1.example.com./1", "mx2.example.com./2", "mx3.example.com./2"}},
		{"PTR", func() ([]string, error) { return r.LookupAddr(ctx, "192.0.2.25") },
			[]string{"mail.example.com."}},
		{"two PTR names", func() ([]string, error) { return r.LookupAddr(ctx, "192.0.2.1") },
			[]string{"one.example.com.", "uno.example.com."}},
		{"PTR of IPv4-mapped IPv6", func() ([]string, error) { return r.LookupAddr(ctx, "::ffff:192.0.2.25") },
			[]string{"mail.example.com."}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.do()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLookupAddrIPv6(t *testing.T) {
	r, srv, _, _ := setup(t, nil)
	ip := "2001:db8::25"
	if err := srv.AddZone(dnstest.ReverseName(ip) + " 300 PTR mail.example.com.\n" +
		dnstest.ReverseName(ip) + " 300 PTR mail6.example.com.\n"); err != nil {
		t.Fatal(err)
	}
	got, err := r.LookupAddr(ctxT(t), ip)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"mail.example.com.", "mail6.example.com."}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if n := srv.Queries("5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", mdns.TypePTR); n != 1 {
		t.Fatalf("%d queries for the nibble name, want 1: %v", n, srv.QueryLog())
	}
}

// wantErr describes the *net.DNSError a lookup must return.
type wantErr struct {
	notFound, temporary, timeout bool
}

func checkErr(t *testing.T, err error, name string, want wantErr) *net.DNSError {
	t.Helper()
	var de *net.DNSError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T), want *net.DNSError", err, err)
	}
	if _, direct := err.(*net.DNSError); !direct {
		t.Fatalf("error %T is wrapped; blitiri spf needs *net.DNSError itself", err)
	}
	if de.Name != name {
		t.Errorf("Name %q, want %q", de.Name, name)
	}
	got := wantErr{de.IsNotFound, de.Temporary(), de.Timeout()}
	if got != want {
		t.Errorf("%v: notFound/temporary/timeout %v, want %v", err, got, want)
	}
	return de
}

func TestLookupErrors(t *testing.T) {
	tests := []struct {
		name  string
		fault *dnstest.Fault // on qname
		qname string
		call  string // "ip", "txt", "mx", "ptr"
		want  wantErr
		// server: whether Server must name the resolver's server (not for
		// names refused without a query).
		server bool
	}{
		{"NXDOMAIN", nil, "nope.example.com", "txt", wantErr{notFound: true}, true},
		{"NODATA", nil, "mail.example.com", "txt", wantErr{notFound: true}, true},
		{"NODATA MX", nil, "mail.example.com", "mx", wantErr{notFound: true}, true},
		{"NXDOMAIN A and AAAA", nil, "nope.example.com", "ip", wantErr{notFound: true}, true},
		{"no PTR", nil, "192.0.2.200", "ptr", wantErr{notFound: true}, true},
		{"CNAME to nothing", nil, "dangling.example.com", "ip", wantErr{notFound: true}, true},
		{"outside every zone", nil, "host.elsewhere.test", "ip", wantErr{notFound: true}, true},
		{"SERVFAIL", &dnstest.Fault{Rcode: mdns.RcodeServerFailure}, "spf.example.com", "txt", wantErr{temporary: true}, true},
		{"REFUSED", &dnstest.Fault{Rcode: mdns.RcodeRefused}, "spf.example.com", "txt", wantErr{temporary: true}, true},
		{"timeout", &dnstest.Fault{Drop: true}, "spf.example.com", "txt", wantErr{temporary: true, timeout: true}, true},
		{"timeout A and AAAA", &dnstest.Fault{Drop: true}, "mail.example.com", "ip", wantErr{temporary: true, timeout: true}, true},
		{"SERVFAIL PTR", &dnstest.Fault{Rcode: mdns.RcodeServerFailure}, dnstest.ReverseName("192.0.2.25"), "ptr", wantErr{temporary: true}, true},
		{"FORMERR is temporary", &dnstest.Fault{Rcode: mdns.RcodeFormatError}, "spf.example.com", "txt", wantErr{temporary: true}, true},
		{"NOTIMP is temporary", &dnstest.Fault{Rcode: mdns.RcodeNotImplemented}, "spf.example.com", "txt", wantErr{temporary: true}, true},
		{"CNAME loop is permanent", nil, "loop1.example.com", "ip", wantErr{}, true},
		{"invalid PTR name is permanent", nil, "192.0.2.9", "ptr", wantErr{}, true},
		{"invalid MX name is permanent", nil, "badptr.example.com", "mx", wantErr{}, true},
		{"name with CRLF (queried, RFC 2181 §11)", nil, "evil.example.com\r\nX-Injected: 1", "txt", wantErr{notFound: true}, true},
		{"name with space (queried)", nil, "a b.example.com", "ip", wantErr{notFound: true}, true},
		{"name with backslash (queried as a backslash)", nil, `a\046b.example.com`, "txt", wantErr{notFound: true}, true},
		{"name with 8-bit bytes (queried)", nil, "caf\xc3\xa9.example.com", "mx", wantErr{notFound: true}, true},
		{"label over 63", nil, strings.Repeat("a", 64) + ".example.com", "txt", wantErr{notFound: true}, false},
		{"name over 253", nil, strings.Repeat("abcdefghi.", 26) + "com", "txt", wantErr{notFound: true}, false},
		{"empty label", nil, "a..example.com", "txt", wantErr{notFound: true}, false},
		{"empty", nil, "", "ip", wantErr{notFound: true}, false},
		{"root", nil, ".", "txt", wantErr{notFound: true}, false},
		{"not an address", nil, "192.0.2.300", "ptr", wantErr{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, srv, _, _ := setup(t, func(c *Config) { c.Timeout = 200 * time.Millisecond })
			if tc.fault != nil {
				srv.SetFault(tc.qname, *tc.fault)
			}
			ctx := ctxT(t)
			var err error
			name := tc.qname
			switch tc.call {
			case "ip":
				var got []net.IPAddr
				got, err = r.LookupIPAddr(ctx, name)
				if got != nil {
					t.Errorf("addresses %v with the error", got)
				}
			case "txt":
				_, err = r.LookupTXT(ctx, name)
			case "mx":
				_, err = r.LookupMX(ctx, name)
			case "ptr":
				if strings.HasSuffix(name, ".arpa.") {
					name = "192.0.2.25"
				}
				_, err = r.LookupAddr(ctx, name)
			}
			de := checkErr(t, err, name, tc.want)
			if tc.server && de.Server != srv.Addr {
				t.Errorf("Server %q, want %q", de.Server, srv.Addr)
			}
			if !tc.server && srv.TotalQueries() != 0 {
				t.Errorf("queried upstream for an impossible name: %v", srv.QueryLog())
			}
		})
	}
}

func TestCNAMELoopEndsQuickly(t *testing.T) {
	r, _, _, _ := setup(t, func(c *Config) { c.Timeout = 5 * time.Second; c.Attempts = 3 })
	start := time.Now()
	_, err := r.LookupTXT(ctxT(t), "loop1.example.com")
	checkErr(t, err, "loop1.example.com", wantErr{})
	if !strings.Contains(err.Error(), "CNAME loop") {
		t.Errorf("error %q does not say CNAME loop", err)
	}
	// Far below one timeout: the loop is seen in the answer, not waited out.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestCNAMEChain uses a chain longer than dnstest follows in one answer
// (16), so the resolver must ask for the chain's target itself.
func TestCNAMEChain(t *testing.T) {
	var b strings.Builder
	b.WriteString("$ORIGIN chain.test.\n")
	for i := 0; i < 20; i++ {
		b.WriteString("c" + itoa(i) + " 300 CNAME c" + itoa(i+1) + "\n")
	}
	b.WriteString("c20 300 TXT \"end\"\n")
	tests := []struct {
		name    string
		max     int
		wantErr bool
	}{
		{"within the bound: target queried", 25, false},
		{"exactly the bound", 20, false},
		{"over the bound", 19, true},
		{"default bound 8", DefaultConfig().MaxCNAMEChain, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, srv, _, _ := setup(t, func(c *Config) { c.MaxCNAMEChain = tc.max })
			if err := srv.AddZone(b.String()); err != nil {
				t.Fatal(err)
			}
			got, err := r.LookupTXT(ctxT(t), "c0.chain.test")
			if tc.wantErr {
				checkErr(t, err, "c0.chain.test", wantErr{})
				return
			}
			if err != nil || !slices.Equal(got, []string{"end"}) {
				t.Fatalf("got %q, %v", got, err)
			}
			if n := srv.Queries("c16.chain.test", mdns.TypeTXT); n != 1 {
				t.Errorf("target c16 queried %d times, want 1: %v", n, srv.QueryLog())
			}
		})
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// TestClassify covers the classification of single answers, as they come
// over TCP (over UDP, exchangeUDP skips the ones that do not answer).
func TestClassify(t *testing.T) {
	q := new(mdns.Msg)
	q.SetQuestion("a.example.", mdns.TypeTXT)
	reply := func(edit func(m *mdns.Msg)) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetReply(q)
		edit(m)
		return m
	}
	txt, _ := mdns.NewRR(`a.example. 60 TXT "x"`)
	other, _ := mdns.NewRR(`b.example. 60 A 192.0.2.1`)
	unpackErr := new(mdns.Msg).Unpack([]byte{0, 1, 2})
	tests := []struct {
		name      string
		m         *mdns.Msg
		err       error
		outcome   string
		fail      bool
		temporary bool
	}{
		{"answer", reply(func(m *mdns.Msg) { m.Answer = []mdns.RR{txt} }), nil, OutcomeSuccess, false, false},
		{"question in other case", reply(func(m *mdns.Msg) { m.Question[0].Name = "A.Example."; m.Answer = []mdns.RR{txt} }), nil, OutcomeSuccess, false, false},
		{"no question echoed", reply(func(m *mdns.Msg) { m.Question = nil; m.Answer = []mdns.RR{txt} }), nil, OutcomeError, true, true},
		{"no question, NXDOMAIN", reply(func(m *mdns.Msg) { m.Question = nil; m.Rcode = mdns.RcodeNameError }), nil, OutcomeError, true, true},
		{"no question, FORMERR", reply(func(m *mdns.Msg) { m.Question = nil; m.Rcode = mdns.RcodeFormatError }), nil, OutcomeError, true, true},
		{"no question, SERVFAIL", reply(func(m *mdns.Msg) { m.Question = nil; m.Rcode = mdns.RcodeServerFailure }), nil, OutcomeServFail, true, true},
		{"not a response", reply(func(m *mdns.Msg) { m.Response = false; m.Answer = []mdns.RR{txt} }), nil, OutcomeError, true, true},
		{"FORMERR", reply(func(m *mdns.Msg) { m.Rcode = mdns.RcodeFormatError }), nil, OutcomeError, true, true},
		{"NOTIMP", reply(func(m *mdns.Msg) { m.Rcode = mdns.RcodeNotImplemented }), nil, OutcomeError, true, true},
		{"unrelated records only", reply(func(m *mdns.Msg) { m.Answer = []mdns.RR{other} }), nil, OutcomeNoData, false, false},
		{"other name", reply(func(m *mdns.Msg) { m.Question[0].Name = "b.example." }), nil, OutcomeError, true, true},
		{"other type", reply(func(m *mdns.Msg) { m.Question[0].Qtype = mdns.TypeA }), nil, OutcomeError, true, true},
		{"two questions", reply(func(m *mdns.Msg) { m.Question = append(m.Question, m.Question[0]) }), nil, OutcomeError, true, true},
		{"YXDOMAIN", reply(func(m *mdns.Msg) { m.Rcode = mdns.RcodeYXDomain }), nil, OutcomeError, true, true},
		{"malformed", nil, unpackErr, OutcomeError, true, true},
		{"wrong ID over TCP", nil, mdns.ErrId, OutcomeError, true, true},
		{"strays, then timeout", nil, &strayError{3, &net.OpError{Op: "read", Err: timeoutError{}}}, OutcomeTimeout, true, true},
		{"stray flood", nil, &strayError{maxStrayDatagrams, errStrayFlood}, OutcomeError, true, true},
		{"timeout", nil, &net.OpError{Op: "read", Err: timeoutError{}}, OutcomeTimeout, true, true},
		{"connection refused", nil, &net.OpError{Op: "read", Err: errors.New("connection refused")}, OutcomeError, true, true},
		{"TCP closed early", nil, io.ErrUnexpectedEOF, OutcomeError, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			outcome, f := classify(q, tc.m, tc.err)
			if outcome != tc.outcome || (f != nil) != tc.fail || (f != nil && f.temporary != tc.temporary) {
				t.Fatalf("outcome %q failure %+v, want %q fail=%v temporary=%v", outcome, f, tc.outcome, tc.fail, tc.temporary)
			}
		})
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// LookupNetIP asks one family: one query, the other family never asked;
// a name with only the other family's records is not found.
func TestLookupNetIP(t *testing.T) {
	r, srv, _, _ := setup(t, nil)
	ctx := ctxT(t)
	v4, err := r.LookupNetIP(ctx, "ip4", "mail.example.com")
	if err != nil || len(v4) == 0 || !v4[0].Is4() {
		t.Fatalf("ip4: %v, %v", v4, err)
	}
	if a, aaaa := srv.Queries("mail.example.com", mdns.TypeA), srv.Queries("mail.example.com", mdns.TypeAAAA); a != 1 || aaaa != 0 {
		t.Errorf("queries A %d AAAA %d, want 1 and 0", a, aaaa)
	}
	if again, err := r.LookupNetIP(ctx, "ip4", "mail.example.com"); err != nil || len(again) != len(v4) || srv.Queries("mail.example.com", mdns.TypeA) != 1 {
		t.Errorf("second lookup not from the cache: %v, %v", again, err)
	}
	v6, err := r.LookupNetIP(ctx, "ip6", "mail.example.com")
	if err != nil || len(v6) == 0 || !v6[0].Is6() {
		t.Fatalf("ip6: %v, %v", v6, err)
	}
	if _, err := r.LookupNetIP(ctx, "ip", "mail.example.com"); err == nil {
		t.Error("network ip accepted")
	}
	var de *net.DNSError
	if _, err := r.LookupNetIP(ctx, "ip4", "::1"); !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("an IPv6 literal for ip4: %v", err)
	}
}
