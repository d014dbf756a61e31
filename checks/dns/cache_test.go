package dns

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vouch-mail/vouch/checks/dnstest"
)

func TestCacheExpiry(t *testing.T) {
	// Zone TTLs: short.example.com A 1 s, mail TXT absent (NODATA) and
	// nope NXDOMAIN under an SOA whose negative TTL is min(300, 120) = 120 s;
	// names outside every zone get dnstest's root SOA, 60 s.
	tests := []struct {
		name   string
		cfg    func(*Config)
		qname  string
		qtype  uint16
		fresh  time.Duration // still cached this long after the first lookup
		expire time.Duration // queried again this long after it
	}{
		{"positive TTL 1s", nil, "short.example.com", mdns.TypeA, 999 * time.Millisecond, time.Second},
		{"positive TTL 300s", nil, "mail.example.com", mdns.TypeA, 299 * time.Second, 300 * time.Second},
		{"MaxTTL caps", func(c *Config) { c.MaxTTL = time.Minute }, "mail.example.com", mdns.TypeA, 59 * time.Second, time.Minute},
		{"MinTTL raises", func(c *Config) { c.MinTTL = 10 * time.Second }, "short.example.com", mdns.TypeA, 9 * time.Second, 10 * time.Second},
		{"NXDOMAIN per SOA", nil, "nope.example.com", mdns.TypeTXT, 119 * time.Second, 120 * time.Second},
		{"NODATA per SOA", nil, "mail.example.com", mdns.TypeTXT, 119 * time.Second, 120 * time.Second},
		{"NXDOMAIN under the root SOA", nil, "elsewhere.test", mdns.TypeTXT, 59 * time.Second, 60 * time.Second},
		{"NegativeMaxTTL caps", func(c *Config) { c.NegativeMaxTTL = 30 * time.Second }, "nope.example.com", mdns.TypeTXT, 29 * time.Second, 30 * time.Second},
		{"CNAME TTL bounds the chain", nil, "alias.example.com", mdns.TypeA, 299 * time.Second, 300 * time.Second},
		{"PTR", nil, "192.0.2.25", mdns.TypePTR, 299 * time.Second, 300 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, srv, clk, _ := setup(t, tc.cfg)
			ctx := ctxT(t)
			lookup := func() {
				t.Helper()
				var err error
				switch tc.qtype {
				case mdns.TypeA:
					_, err = r.LookupIPAddr(ctx, tc.qname)
				case mdns.TypeTXT:
					_, err = r.LookupTXT(ctx, tc.qname)
				case mdns.TypePTR:
					_, err = r.LookupAddr(ctx, tc.qname)
				}
				var de *net.DNSError
				if err != nil && (!errors.As(err, &de) || !de.IsNotFound) {
					t.Fatal(err)
				}
			}
			qname := tc.qname
			if tc.qtype == mdns.TypePTR {
				qname = dnstest.ReverseName(tc.qname)
			}
			count := func() int { return srv.Queries(qname, tc.qtype) }

			lookup()
			lookup()
			clk.advance(tc.fresh)
			lookup()
			if n := count(); n != 1 {
				t.Fatalf("%d upstream queries within the TTL, want 1: %v", n, srv.QueryLog())
			}
			clk.advance(tc.expire - tc.fresh)
			lookup()
			lookup()
			if n := count(); n != 2 {
				t.Fatalf("%d upstream queries after expiry, want 2: %v", n, srv.QueryLog())
			}
		})
	}
}

func TestNotCached(t *testing.T) {
	tests := []struct {
		name  string
		cfg   func(*Config)
		fault *dnstest.Fault
		qname string
	}{
		{"SERVFAIL", nil, &dnstest.Fault{Rcode: mdns.RcodeServerFailure}, "spf.example.com"},
		{"REFUSED", nil, &dnstest.Fault{Rcode: mdns.RcodeRefused}, "spf.example.com"},
		{"timeout", func(c *Config) { c.Timeout = 100 * time.Millisecond }, &dnstest.Fault{Drop: true}, "spf.example.com"},
		{"FORMERR", nil, &dnstest.Fault{Rcode: mdns.RcodeFormatError}, "spf.example.com"},
		{"cache disabled", func(c *Config) { c.CacheSize = 0 }, nil, "spf.example.com"},
		{"negative caching disabled", func(c *Config) { c.NegativeMaxTTL = 0 }, nil, "nope.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, srv, _, _ := setup(t, tc.cfg)
			if tc.fault != nil {
				srv.SetFault(tc.qname, *tc.fault)
			}
			ctx := ctxT(t)
			r.LookupTXT(ctx, tc.qname)
			r.LookupTXT(ctx, tc.qname)
			// Counted with EDNS: a FORMERR is asked again without, within
			// its attempt.
			if n := srv.Queries(tc.qname, mdns.TypeTXT) - srv.QueriesNoEDNS(tc.qname, mdns.TypeTXT); n != 2 {
				t.Fatalf("%d upstream queries for two lookups, want 2: %v", n, srv.QueryLog())
			}
		})
	}
}

// TestCacheRecovers checks that a temporary failure is not remembered: the
// first lookup after the server recovers gets the answer.
func TestCacheRecovers(t *testing.T) {
	r, srv, _, _ := setup(t, nil)
	ctx := ctxT(t)
	srv.SetFault("spf.example.com", dnstest.Fault{Rcode: mdns.RcodeServerFailure})
	_, err := r.LookupTXT(ctx, "spf.example.com")
	checkErr(t, err, "spf.example.com", wantErr{temporary: true})
	srv.ClearFault("spf.example.com")
	got, err := r.LookupTXT(ctx, "spf.example.com")
	if err != nil || len(got) != 1 {
		t.Fatalf("after recovery: %q, %v", got, err)
	}
}

func TestCacheBounded(t *testing.T) {
	r, srv, _, obs := setup(t, func(c *Config) { c.CacheSize = 2 })
	ctx := ctxT(t)
	for _, n := range []string{"spf", "split", "two"} {
		if _, err := r.LookupTXT(ctx, n+".example.com"); err != nil {
			t.Fatal(err)
		}
	}
	if obs.entries != 2 {
		t.Errorf("CacheEntries reported %d, want 2", obs.entries)
	}
	r.LookupTXT(ctx, "two.example.com") // most recent: cached
	r.LookupTXT(ctx, "spf.example.com") // least recent: evicted
	if n := srv.Queries("two.example.com", mdns.TypeTXT); n != 1 {
		t.Errorf("two: %d queries, want 1", n)
	}
	if n := srv.Queries("spf.example.com", mdns.TypeTXT); n != 2 {
		t.Errorf("spf: %d queries, want 2 (evicted)", n)
	}
}

// TestCacheKeys checks that spellings of one name share an entry and that
// types do not.
func TestCacheKeys(t *testing.T) {
	r, srv, _, _ := setup(t, nil)
	ctx := ctxT(t)
	for _, n := range []string{"spf.example.com", "SPF.Example.Com", "spf.example.com."} {
		if _, err := r.LookupTXT(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	r.LookupMX(ctx, "spf.example.com")
	for _, a := range []string{"192.0.2.25", "::ffff:192.0.2.25"} {
		if _, err := r.LookupAddr(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.QueryLog(); !slices.Equal(got, []string{
		"25.2.0.192.in-addr.arpa. PTR/udp x1",
		"spf.example.com. MX/udp x1",
		"spf.example.com. TXT/udp x1",
	}) {
		t.Errorf("queries: %q", got)
	}
}

// TestResultsAreCopies checks that a caller modifying what it got does not
// change what the next caller gets from the cache.
func TestResultsAreCopies(t *testing.T) {
	r, _, _, _ := setup(t, nil)
	ctx := ctxT(t)
	ips, _ := r.LookupIPAddr(ctx, "mail.example.com")
	ips[0].IP[0] = 10
	ips[1].IP[15] = 0xff
	ips[0] = net.IPAddr{}
	txt, _ := r.LookupTXT(ctx, "spf.example.com")
	txt[0] = "changed"
	mx, _ := r.LookupMX(ctx, "example.com")
	mx[0].Host = "changed."
	mx[1] = nil
	ptr, _ := r.LookupAddr(ctx, "192.0.2.25")
	ptr[0] = "changed."

	ips, _ = r.LookupIPAddr(ctx, "mail.example.com")
	txt, _ = r.LookupTXT(ctx, "spf.example.com")
	mx, _ = r.LookupMX(ctx, "example.com")
	ptr, _ = r.LookupAddr(ctx, "192.0.2.25")
	if ips[0].IP.String() != "192.0.2.25" || ips[1].IP.String() != "2001:db8::25" {
		t.Errorf("addresses %v", ips)
	}
	if txt[0] != "v=spf1 ip4:192.0.2.0/24 -all" {
		t.Errorf("txt %q", txt)
	}
	if mx[0].Host != "mx1.example.com." || mx[1] == nil {
		t.Errorf("mx %v", mx)
	}
	if ptr[0] != "mail.example.com." {
		t.Errorf("ptr %q", ptr)
	}
}

// TestIPAddrPartial checks how LookupIPAddr merges an A and an AAAA result
// of different kinds. dnstest faults apply to every type of a name, so one
// type is put in the cache first, then the fault hits the other.
func TestIPAddrPartial(t *testing.T) {
	tests := []struct {
		name   string
		host   string
		cached uint16 // looked up before the fault
		fault  int
		want   []string
		err    *wantErr
	}{
		{"A ok, AAAA SERVFAIL: addresses and temporary", "mail.example.com", mdns.TypeA, mdns.RcodeServerFailure,
			[]string{"192.0.2.25"}, &wantErr{temporary: true}},
		{"AAAA ok, A SERVFAIL: addresses and temporary", "mail.example.com", mdns.TypeAAAA, mdns.RcodeServerFailure,
			[]string{"2001:db8::25"}, &wantErr{temporary: true}},
		{"A ok, AAAA FORMERR: addresses and temporary", "mail.example.com", mdns.TypeA, mdns.RcodeFormatError,
			[]string{"192.0.2.25"}, &wantErr{temporary: true}},
		{"AAAA NODATA, A SERVFAIL: temporary", "v4only.example.com", mdns.TypeAAAA, mdns.RcodeServerFailure,
			nil, &wantErr{temporary: true}},
		{"A NODATA, AAAA REFUSED: temporary", "v6only.example.com", mdns.TypeA, mdns.RcodeRefused,
			nil, &wantErr{temporary: true}},
		{"A NXDOMAIN, AAAA FORMERR: temporary", "nope.example.com", mdns.TypeA, mdns.RcodeFormatError,
			nil, &wantErr{temporary: true}},
		{"A NXDOMAIN, AAAA NOTIMP: temporary", "nope.example.com", mdns.TypeA, mdns.RcodeNotImplemented,
			nil, &wantErr{temporary: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, srv, _, _ := setup(t, nil)
			ctx := ctxT(t)
			name, _ := canonical(tc.host)
			r.lookup(ctx, key{name: name, qtype: tc.cached})
			srv.SetFault(tc.host, dnstest.Fault{Rcode: tc.fault})
			got, err := r.LookupIPAddr(ctx, tc.host)
			var gs []string
			for _, a := range got {
				gs = append(gs, a.IP.String())
			}
			if !slices.Equal(gs, tc.want) {
				t.Errorf("addresses %q, want %q", gs, tc.want)
			}
			if tc.err == nil {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			checkErr(t, err, tc.host, *tc.err)
		})
	}
}

// TestCoalescing: N concurrent identical lookups cost one upstream query.
func TestCoalescing(t *testing.T) {
	const n = 100
	r, srv, _, obs := setup(t, nil)
	// The delay keeps the flight open while all callers arrive; if some
	// arrive after it, they find the cache filled, and still cost nothing.
	srv.SetFault("spf.example.com", dnstest.Fault{Delay: 200 * time.Millisecond})
	srv.SetFault("mail.example.com", dnstest.Fault{Delay: 200 * time.Millisecond})
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			txt, err := r.LookupTXT(ctx, "spf.example.com")
			if err == nil && (len(txt) != 1 || !strings.HasPrefix(txt[0], "v=spf1")) {
				err = errors.New("wrong TXT " + strings.Join(txt, "|"))
			}
			if err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			ips, err := r.LookupIPAddr(ctx, "MAIL.example.com")
			if err == nil && len(ips) != 2 {
				err = errors.New("wrong addresses")
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"spf.example.com", mdns.TypeTXT}, {"mail.example.com", mdns.TypeA}, {"mail.example.com", mdns.TypeAAAA}} {
		if got := srv.Queries(q.name, q.qtype); got != 1 {
			t.Errorf("%s %s: %d upstream queries for %d lookups, want 1", q.name, mdns.TypeToString[q.qtype], got, n)
		}
	}
	if obs.maxIn < 1 || obs.inFlight != 0 {
		t.Errorf("in flight: max %d, now %d", obs.maxIn, obs.inFlight)
	}
}

// TestCoalescedCancel: the caller whose context started a flight gives up;
// the others sharing the flight still get the answer, and it is cached.
func TestCoalescedCancel(t *testing.T) {
	r, srv, _, _ := setup(t, nil)
	srv.SetFault("spf.example.com", dnstest.Fault{Delay: 400 * time.Millisecond})
	first, cancel := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() {
		_, err := r.LookupTXT(first, "spf.example.com")
		done1 <- err
	}()
	waitFor(t, func() bool { return srv.Queries("spf.example.com", mdns.TypeTXT) == 1 })
	done2 := make(chan error, 1)
	go func() {
		txt, err := r.LookupTXT(ctxT(t), "spf.example.com")
		if err == nil && len(txt) != 1 {
			err = errors.New("no TXT")
		}
		done2 <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the second caller join
	cancel()
	err := <-done1
	checkErr(t, err, "spf.example.com", wantErr{temporary: true})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("%v is not context.Canceled", err)
	}
	if err := <-done2; err != nil {
		t.Fatalf("the other caller: %v", err)
	}
	if _, err := r.LookupTXT(ctxT(t), "spf.example.com"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Queries("spf.example.com", mdns.TypeTXT); n != 1 {
		t.Errorf("%d upstream queries, want 1", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestContextEnds(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		want    wantErr
		wantIs  error
		queries int // upstream queries made, -1: any
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, wantErr{temporary: true, timeout: true}, context.DeadlineExceeded, -1},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, wantErr{temporary: true}, context.Canceled, -1},
		{"already cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, wantErr{temporary: true}, context.Canceled, 0},
		{"already past deadline", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Unix(0, 0))
		}, wantErr{temporary: true, timeout: true}, context.DeadlineExceeded, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Timeouts far above the context's, so only the context can end
			// the lookups in time.
			r, srv, _, _ := setup(t, func(c *Config) { c.Timeout = 30 * time.Second; c.Attempts = 2 })
			srv.SetFault("mail.example.com", dnstest.Fault{Drop: true})
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			_, err := r.LookupIPAddr(ctx, "mail.example.com")
			checkErr(t, err, "mail.example.com", tc.want)
			if !errors.Is(err, tc.wantIs) {
				t.Errorf("%v is not %v", err, tc.wantIs)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("returned after %v", d)
			}
			if tc.queries >= 0 && srv.TotalQueries() != tc.queries {
				t.Errorf("%d queries, want %d", srv.TotalQueries(), tc.queries)
			}
		})
	}
}

func TestTruncationRetriesOverTCP(t *testing.T) {
	long := func(parts, size int) string {
		var b strings.Builder
		for i := 0; i < parts; i++ {
			b.WriteString(` "` + strings.Repeat(string(rune('a'+i)), size) + `"`)
		}
		return b.String()
	}
	tests := []struct {
		name    string
		zone    string
		fault   *dnstest.Fault
		wantLen int
		tcp     int
	}{
		{"TC bit", "t.example.com. 300 TXT \"small\"", &dnstest.Fault{Truncate: true}, 5, 1},
		// 600 octets: over 512 but under the advertised EDNS0 1232.
		{"600 octets fit EDNS0 UDP", "t.example.com. 300 TXT" + long(3, 200), nil, 600, 0},
		// 2000 octets in 8 strings: only TCP can carry it.
		{"2000 octets need TCP", "t.example.com. 300 TXT" + long(8, 250), nil, 2000, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, srv, _, _ := setup(t, nil)
			if err := srv.AddZone(tc.zone); err != nil {
				t.Fatal(err)
			}
			if tc.fault != nil {
				srv.SetFault("t.example.com", *tc.fault)
			}
			got, err := r.LookupTXT(ctxT(t), "t.example.com")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || len(got[0]) != tc.wantLen {
				t.Fatalf("got %d records, lengths %v, want one of %d", len(got), lens(got), tc.wantLen)
			}
			if tc.wantLen == 2000 && (got[0][0] != 'a' || got[0][1999] != 'h') {
				t.Errorf("strings joined out of order")
			}
			if n := srv.QueriesTCP("t.example.com", mdns.TypeTXT); n != tc.tcp {
				t.Errorf("%d TCP queries, want %d", n, tc.tcp)
			}
		})
	}
}

func lens(ss []string) []int {
	var out []int
	for _, s := range ss {
		out = append(out, len(s))
	}
	return out
}

// TestFailover: with the first server failing, the second answers, and
// later lookups start with the second.
func TestFailover(t *testing.T) {
	deadAddr := func(t *testing.T) string {
		// A UDP port nobody listens on: queries get ICMP port unreachable.
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		pc.Close()
		return addr
	}
	tests := []struct {
		name  string
		first func(t *testing.T) (addr string, queries func() int)
	}{
		{"first drops", func(t *testing.T) (string, func() int) {
			s := dnstest.New(t, zone)
			s.SetFault("spf.example.com", dnstest.Fault{Drop: true})
			s.SetFault("split.example.com", dnstest.Fault{Drop: true})
			return s.Addr, s.TotalQueries
		}},
		{"first SERVFAILs", func(t *testing.T) (string, func() int) {
			s := dnstest.New(t, zone)
			s.SetFault("spf.example.com", dnstest.Fault{Rcode: mdns.RcodeServerFailure})
			s.SetFault("split.example.com", dnstest.Fault{Rcode: mdns.RcodeServerFailure})
			return s.Addr, s.TotalQueries
		}},
		{"first not listening", func(t *testing.T) (string, func() int) {
			return deadAddr(t), func() int { return 1 }
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			first, firstQueries := tc.first(t)
			second := dnstest.New(t, zone)
			r, err := New(withTimeout(testConfig(first, second.Addr), 300*time.Millisecond), nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxT(t)
			got, err := r.LookupTXT(ctx, "spf.example.com")
			if err != nil || len(got) != 1 {
				t.Fatalf("got %q, %v", got, err)
			}
			if firstQueries() != 1 || second.TotalQueries() != 1 {
				t.Errorf("queries: first %d, second %d; want 1, 1", firstQueries(), second.TotalQueries())
			}
			if _, err := r.LookupTXT(ctx, "split.example.com"); err != nil {
				t.Fatal(err)
			}
			if firstQueries() != 1 || second.TotalQueries() != 2 {
				t.Errorf("after failover: first %d, second %d queries; want 1, 2", firstQueries(), second.TotalQueries())
			}
		})
	}
}

// TestAllServersFail: attempts are shared out over the servers, and the
// error names the last one tried.
func TestAllServersFail(t *testing.T) {
	a, b := dnstest.New(t, zone), dnstest.New(t, zone)
	for _, s := range []*dnstest.Server{a, b} {
		s.SetFault("spf.example.com", dnstest.Fault{Rcode: mdns.RcodeServerFailure})
	}
	r, err := New(withAttempts(testConfig(a.Addr, b.Addr), 3), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.LookupTXT(ctxT(t), "spf.example.com")
	de := checkErr(t, err, "spf.example.com", wantErr{temporary: true})
	if a.TotalQueries() != 2 || b.TotalQueries() != 1 {
		t.Errorf("queries a %d b %d, want 2 and 1", a.TotalQueries(), b.TotalQueries())
	}
	if de.Server != a.Addr {
		t.Errorf("Server %q, want the last tried %q", de.Server, a.Addr)
	}
}

func TestObserver(t *testing.T) {
	r, srv, _, obs := setup(t, nil)
	srv.SetFault("spf.example.com", dnstest.Fault{Rcode: mdns.RcodeServerFailure})
	ctx := ctxT(t)
	r.LookupTXT(ctx, "split.example.com")
	r.LookupTXT(ctx, "split.example.com")
	r.LookupTXT(ctx, "spf.example.com")
	r.LookupTXT(ctx, "mail.example.com")
	r.LookupTXT(ctx, "nope.example.com")
	r.LookupIPAddr(ctx, "mail.example.com")
	want := map[string]int{
		"TXT success":  1,
		"TXT servfail": 1,
		"TXT nodata":   1,
		"TXT nxdomain": 1,
		"A success":    1,
		"AAAA success": 1,
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for k, v := range want {
		if obs.queries[k] != v {
			t.Errorf("Query %q: %d, want %d (all: %v)", k, obs.queries[k], v, obs.queries)
		}
	}
	if len(obs.queries) != len(want) {
		t.Errorf("queries %v, want %v", obs.queries, want)
	}
	if obs.hits != 1 || obs.misses != 6 {
		t.Errorf("hits %d misses %d, want 1 and 6", obs.hits, obs.misses)
	}
	if obs.entries != 5 {
		t.Errorf("entries %d, want 5", obs.entries)
	}
	if obs.inFlight != 0 || obs.maxIn < 1 {
		t.Errorf("in flight now %d, max %d", obs.inFlight, obs.maxIn)
	}
}
