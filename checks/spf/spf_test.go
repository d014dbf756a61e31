package spf

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/vouch-mail/vouch/checks/dnstest"
)

// Client addresses (RFC 5737 / RFC 3849 documentation ranges).
var (
	ipIn   = net.ParseIP("192.0.2.10")    // inside the published ranges
	ipOut  = net.ParseIP("198.51.100.7")  // outside every range
	ip6In  = net.ParseIP("2001:db8::25")  // inside ip6:2001:db8::/32
	ip6Out = net.ParseIP("2001:db8:1::1") // outside ip6:2001:db8::/48
)

// bigRecord is an SPF record of more than 512 octets, published as many
// character-strings; the term that matches is split across two of them,
// as RFC 7208 §3.3 allows (the strings are joined with nothing between).
func bigRecord() (record string, rdata string) {
	var terms []string
	for i := 1; i <= 60; i++ {
		terms = append(terms, fmt.Sprintf("ip4:203.0.113.%d", i))
	}
	record = "v=spf1 " + strings.Join(terms, " ") + " ip4:192.0.2.0/24 -all"
	cut := strings.Index(record, "ip4:192.0.2.0/24") + len("ip4:192.0")
	var parts []string
	for start := 0; start < len(record); {
		end := min(start+200, len(record))
		if start < cut && cut < end {
			end = cut
		}
		parts = append(parts, `"`+record[start:end]+`"`)
		start = end
	}
	return record, strings.Join(parts, " ")
}

func zone() string {
	_, big := bigRecord()
	return `
$ORIGIN example.com.
$TTL 300
@          SOA ns hostmaster 1 3600 600 86400 300
pass       TXT "v=spf1 ip4:192.0.2.0/24 -all"
pass       TXT "some other TXT record"
upper      TXT "v=spf1 IP4:192.0.2.0/24 -ALL"
plus       TXT "v=spf1 +ip4:192.0.2.0/24 -all"
soft       TXT "v=spf1 ip4:192.0.2.0/24 ~all"
neutral    TXT "v=spf1 ip4:192.0.2.0/24 ?all"
default    TXT "v=spf1 ip4:192.0.2.0/24"
six        TXT "v=spf1 ip6:2001:db8::/48 -all"
amech      TXT "v=spf1 a -all"
amech      A   192.0.2.10
mxmech     TXT "v=spf1 mx:mx.example.com/24 -all"
mx         MX  10 mx1.example.com.
mx1        A   192.0.2.200
exists     TXT "v=spf1 exists:%{i}._spf.example.com -all"
192.0.2.10._spf A 127.0.0.2
local      TXT "v=spf1 exists:%{l}.users.example.com -all"
postmaster.users A 127.0.0.2
inc        TXT "v=spf1 include:_spf.example.net -all"
softinc    TXT "v=spf1 ~include:_spf.example.net -all"
incnone    TXT "v=spf1 include:nothing.example.net -all"
redir      TXT "v=spf1 redirect=_spf.example.net"
redirdef   TXT "v=spf1 redirect=nodefault.example.net"
norecord   A   192.0.2.10
notspf     TXT "v=spf10 -all"
two        TXT "v=spf1 -all"
two        TXT "v=spf1 +all"
badcidr    TXT "v=spf1 ip4:192.0.2.0/33 -all"
badterm    TXT "v=spf1 frobnicate -all"
servfail   TXT "v=spf1 -all"
slow       TXT "v=spf1 -all"
big        TXT ` + big + `
mail       TXT "v=spf1 a -all"
mail       A   192.0.2.10
mail       AAAA 2001:db8::25
helo       TXT "v=spf1 exists:%{l}.%{d} -all"
postmaster.helo A 127.0.0.2

$ORIGIN example.net.
@          SOA ns hostmaster 1 3600 600 86400 300
_spf       TXT "v=spf1 ip4:192.0.2.0/24 -all"
nothing    A   192.0.2.1
nodefault  TXT "v=spf1 ip4:203.0.113.0/24"
`
}

func TestCheckMailFrom(t *testing.T) {
	srv := dnstest.New(t, zone())
	srv.SetFault("servfail.example.com", dnstest.Fault{Rcode: mdns.RcodeServerFailure})
	r := newResolver(t, srv.Addr, 2*time.Second)

	tests := []struct {
		name      string
		ip        net.IP
		sender    string
		verdict   Verdict
		mechanism string
		problem   string // prefix
		sent      string // Result.Sender, when it differs from sender
		domain    string
	}{
		{"pass ip4", ipIn, "alice@pass.example.com", Pass, "ip4:192.0.2.0/24", "", "", "pass.example.com"},
		{"fail -all", ipOut, "alice@pass.example.com", Fail, "-all", "", "", "pass.example.com"},
		{"softfail ~all", ipOut, "alice@soft.example.com", SoftFail, "~all", "", "", "soft.example.com"},
		{"neutral ?all", ipOut, "alice@neutral.example.com", Neutral, "?all", "", "", "neutral.example.com"},
		{"neutral by default", ipOut, "alice@default.example.com", Neutral, "default", "", "", "default.example.com"},
		{"term as written", ipIn, "alice@upper.example.com", Pass, "IP4:192.0.2.0/24", "", "", "upper.example.com"},
		{"all as -all whatever its case", ipOut, "alice@upper.example.com", Fail, "-all", "", "", "upper.example.com"},
		{"explicit + not repeated", ipIn, "alice@plus.example.com", Pass, "ip4:192.0.2.0/24", "", "", "plus.example.com"},
		{"ipv6 pass", ip6In, "alice@six.example.com", Pass, "ip6:2001:db8::/48", "", "", "six.example.com"},
		{"ipv6 fail", ip6Out, "alice@six.example.com", Fail, "-all", "", "", "six.example.com"},
		{"ipv4 client against ip6 only", ipIn, "alice@six.example.com", Fail, "-all", "", "", "six.example.com"},
		{"a", ipIn, "alice@amech.example.com", Pass, "a", "", "", "amech.example.com"},
		{"mx with cidr", ipIn, "alice@mxmech.example.com", Pass, "mx:mx.example.com/24", "", "", "mxmech.example.com"},
		{"exists with macro", ipIn, "alice@exists.example.com", Pass, "exists:%{i}._spf.example.com", "", "", "exists.example.com"},
		{"include", ipIn, "alice@inc.example.com", Pass, "include:_spf.example.net", "", "", "inc.example.com"},
		{"include with qualifier", ipIn, "alice@softinc.example.com", SoftFail, "~include:_spf.example.net", "", "", "softinc.example.com"},
		{"include not matching", ipOut, "alice@inc.example.com", Fail, "-all", "", "", "inc.example.com"},
		{"redirect pass reports target's term", ipIn, "alice@redir.example.com", Pass, "ip4:192.0.2.0/24", "", "", "redir.example.com"},
		{"redirect fail reports target's term", ipOut, "alice@redir.example.com", Fail, "-all", "", "", "redir.example.com"},
		{"redirect to record without match", ipOut, "alice@redirdef.example.com", Neutral, "default", "", "", "redirdef.example.com"},
		{"angle brackets", ipIn, "<alice@pass.example.com>", Pass, "ip4:192.0.2.0/24", "", "alice@pass.example.com", "pass.example.com"},
		{"trailing dot", ipIn, "alice@pass.example.com.", Pass, "ip4:192.0.2.0/24", "", "alice@pass.example.com", "pass.example.com"},
		{"empty local-part is postmaster", ipIn, "@local.example.com", Pass, "exists:%{l}.users.example.com", "", "postmaster@local.example.com", "local.example.com"},
		{"quoted local-part with @", ipIn, `"a@b"@pass.example.com`, Pass, "ip4:192.0.2.0/24", "", "", "pass.example.com"},
		{"no record", ipIn, "alice@norecord.example.com", None, "", "no SPF record", "", "norecord.example.com"},
		{"nxdomain", ipIn, "alice@nowhere.example.com", None, "", "no SPF record", "", "nowhere.example.com"},
		{"not an spf1 record", ipIn, "alice@notspf.example.com", None, "", "no SPF record", "", "notspf.example.com"},
		{"two records", ipIn, "alice@two.example.com", PermError, "", "more than one SPF record", "", "two.example.com"},
		{"bad cidr", ipIn, "alice@badcidr.example.com", PermError, "", `syntax error: term 'ip4:192.0.2.0/33': invalid CIDR length /33`, "", "badcidr.example.com"},
		{"unknown term", ipOut, "alice@badterm.example.com", PermError, "", `syntax error: term 'frobnicate': unknown mechanism`, "", "badterm.example.com"},
		{"include without record", ipOut, "alice@incnone.example.com", PermError, "", "include or redirect target has no SPF record", "", "incnone.example.com"},
		{"servfail", ipIn, "alice@servfail.example.com", TempError, "", "DNS error looking up TXT servfail.example.com", "", "servfail.example.com"},
		{"record over 512 octets in many strings", ipIn, "alice@big.example.com", Pass, "ip4:192.0.2.0/24", "", "", "big.example.com"},
		{"record over 512 octets, fail", ipOut, "alice@big.example.com", Fail, "-all", "", "", "big.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := CheckMailFrom(context.Background(), r, tc.ip, "mail.example.org", tc.sender, Options{})
			want := Result{
				Identity:  MailFrom,
				Sender:    tc.sender,
				Domain:    tc.domain,
				Verdict:   tc.verdict,
				Mechanism: tc.mechanism,
			}
			if tc.sent != "" {
				want.Sender = tc.sent
			}
			if res.Identity != want.Identity || res.Sender != want.Sender || res.Domain != want.Domain ||
				res.Verdict != want.Verdict || res.Mechanism != want.Mechanism || !strings.HasPrefix(res.Problem, tc.problem) {
				t.Errorf("got %+v\nwant %+v with problem %q...", res, want, tc.problem)
			}
			if (res.Err != nil) != (tc.verdict == TempError || tc.verdict == PermError) {
				t.Errorf("Err = %v for %s: set iff temperror or permerror", res.Err, res.Verdict)
			}
		})
	}
}

// Identities that cannot be a domain are "none" at once, with no DNS.
func TestCheckMailFromNotADomain(t *testing.T) {
	srv := dnstest.New(t, zone())
	r := newResolver(t, srv.Addr, 2*time.Second)
	tests := []struct {
		sender, problem string
	}{
		{"postmaster", "sender address has no domain"},
		{"alice@[192.0.2.1]", "sender domain is not a domain name"},
		{"alice@localhost", "sender domain is not a domain name"},
		{"alice@192.0.2.1", "sender domain is not a domain name"},
		{"alice@a..example.com", "sender domain is not a domain name"},
		{"alice@" + strings.Repeat("a", 64) + ".example.com", "sender domain is not a domain name"},
		{"alice@" + strings.Repeat("abcdefghi.", 26) + "com", "sender domain is not a domain name"},
		{"alice@pass.example.com\r\nX-Injected: 1", "sender domain is not a domain name"},
		{"alice@pass example.com", "sender domain is not a domain name"},
		{"alice@b\xfccher.example.com", "sender domain is not a domain name"},
		{"alice@", "sender domain is not a domain name"},
	}
	for _, tc := range tests {
		t.Run(tc.sender, func(t *testing.T) {
			before := srv.TotalQueries()
			res := CheckMailFrom(context.Background(), r, ipIn, "mail.example.org", tc.sender, Options{})
			if res.Verdict != None || res.Problem != tc.problem || res.Sender != "" || res.Domain != "" || res.Err != nil {
				t.Errorf("got %+v, want none with problem %q", res, tc.problem)
			}
			if n := srv.TotalQueries() - before; n != 0 {
				t.Errorf("%d DNS queries, want none: %v", n, srv.QueryLog())
			}
		})
	}
	// The longest valid name (253 octets) is still checked.
	long := strings.Repeat("abcdefghi.", 24) + "example.com"
	if res := CheckMailFrom(context.Background(), r, ipIn, "", "a@"+long, Options{}); res.Domain != long || res.Verdict != None || res.Problem != "no SPF record" {
		t.Errorf("253-octet domain: got %+v, want none after a lookup", res)
	}
}

// The HELO identity, also the null sender's (RFC 7208 §2.3, §2.4).
func TestCheckHelo(t *testing.T) {
	srv := dnstest.New(t, zone())
	r := newResolver(t, srv.Addr, 2*time.Second)

	tests := []struct {
		name, helo string
		ip         net.IP
		verdict    Verdict
		mechanism  string
		domain     string
	}{
		{"pass", "mail.example.com", ipIn, Pass, "a", "mail.example.com"},
		{"pass ipv6", "mail.example.com", ip6In, Pass, "a", "mail.example.com"},
		{"fail", "mail.example.com", ipOut, Fail, "-all", "mail.example.com"},
		{"trailing dot", "mail.example.com.", ipIn, Pass, "a", "mail.example.com"},
		{"local-part is postmaster", "helo.example.com", ipOut, Pass, "exists:%{l}.%{d}", "helo.example.com"},
		{"no record", "norecord.example.com", ipIn, None, "", "norecord.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := CheckHelo(context.Background(), r, tc.ip, tc.helo, Options{})
			want := Result{Identity: Helo, Sender: "postmaster@" + tc.domain, Domain: tc.domain, Verdict: tc.verdict, Mechanism: tc.mechanism}
			if tc.verdict == None {
				want.Problem = "no SPF record"
			}
			if res != want {
				t.Errorf("got %+v\nwant %+v", res, want)
			}
		})
	}

	for _, helo := range []string{
		"", "[192.0.2.10]", "[IPv6:2001:db8::25]", "192.0.2.10", "localhost", "OEMCOMPUTER",
		"mail.example.com\r\nX-Injected: 1", "mail example.com", "mail.example.com;", "%%%%.example.com",
		"\"mail\".example.com", "m\xe4il.example.com", strings.Repeat("a.", 500) + "com",
	} {
		t.Run(fmt.Sprintf("not a domain %q", helo), func(t *testing.T) {
			before := srv.TotalQueries()
			res := CheckHelo(context.Background(), r, ipIn, helo, Options{})
			want := Result{Identity: Helo, Verdict: None, Problem: "HELO is not a domain name"}
			if res != want {
				t.Errorf("got %+v, want %+v", res, want)
			}
			if n := srv.TotalQueries() - before; n != 0 {
				t.Errorf("%d DNS queries, want none: %v", n, srv.QueryLog())
			}
		})
	}
}

// RFC 7208 §4.6.4: at most 10 terms that cause DNS lookups, at most 2
// lookups that come back empty; both are permerrors, and both can be
// changed.
func TestLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("$ORIGIN example.com.\n$TTL 300\n")
	terms := func(n int, host string) string {
		var ts []string
		for i := 1; i <= n; i++ {
			ts = append(ts, fmt.Sprintf("a:%s%d.example.com", host, i))
		}
		return strings.Join(ts, " ")
	}
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&b, "h%d A 203.0.113.%d\n", i, i)
	}
	fmt.Fprintf(&b, "ten TXT \"v=spf1 %s -all\"\n", terms(10, "h"))
	fmt.Fprintf(&b, "eleven TXT \"v=spf1 %s -all\"\n", terms(11, "h"))
	fmt.Fprintf(&b, "incten TXT \"v=spf1 include:ten.example.com -all\"\n") // 11 with the include
	fmt.Fprintf(&b, "void2 TXT \"v=spf1 %s -all\"\n", terms(2, "v"))
	fmt.Fprintf(&b, "void3 TXT \"v=spf1 %s -all\"\n", terms(3, "v"))
	fmt.Fprintf(&b, "nodata3 TXT \"v=spf1 %s -all\"\n", terms(3, "n"))
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&b, "n%d TXT \"not an address\"\n", i) // exists, but no A: NODATA
	}
	srv := dnstest.New(t, b.String())
	r := newResolver(t, srv.Addr, 2*time.Second)

	tests := []struct {
		name    string
		sender  string
		opts    Options
		verdict Verdict
		problem string
	}{
		{"11 lookups", "a@eleven.example.com", Options{}, PermError, "too many DNS lookups"}, // first: h11 not yet queried
		{"10 lookups", "a@ten.example.com", Options{}, Fail, ""},
		{"11 with an include", "a@incten.example.com", Options{}, PermError, "too many DNS lookups"},
		{"11 lookups, limit raised", "a@eleven.example.com", Options{LookupLimit: 11}, Fail, ""},
		{"10 lookups, limit lowered", "a@ten.example.com", Options{LookupLimit: 9}, PermError, "too many DNS lookups"},
		{"2 void lookups", "a@void2.example.com", Options{}, Fail, ""},
		{"3 void lookups (NXDOMAIN)", "a@void3.example.com", Options{}, PermError, "too many void DNS lookups"},
		{"3 void lookups (no data)", "a@nodata3.example.com", Options{}, PermError, "too many void DNS lookups"},
		{"3 void lookups, limit raised", "a@void3.example.com", Options{VoidLookupLimit: 3}, Fail, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := CheckMailFrom(context.Background(), r, ipIn, "", tc.sender, tc.opts)
			if res.Verdict != tc.verdict || res.Problem != tc.problem {
				t.Errorf("got %s %q (%v), want %s %q", res.Verdict, res.Problem, res.Err, tc.verdict, tc.problem)
			}
			// The term over the limit is never looked up.
			if tc.name == "11 lookups" {
				if n := srv.Queries("h11.example.com", mdns.TypeA); n != 0 {
					t.Errorf("h11.example.com looked up %d times despite the limit", n)
				}
			}
		})
	}
}

// A DNS server that never answers gives temperror, and the check returns
// once the context's deadline passes, however long the resolver would
// have waited.
func TestTimeout(t *testing.T) {
	srv := dnstest.New(t, zone())
	srv.SetFault("slow.example.com", dnstest.Fault{Drop: true})

	t.Run("context deadline", func(t *testing.T) {
		r := newResolver(t, srv.Addr, 30*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		res := CheckMailFrom(ctx, r, ipIn, "", "a@slow.example.com", Options{})
		// Upper bound only, generous for a loaded machine: the point is
		// not waiting for the resolver's 30 s.
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("took %v with a 300ms deadline", took)
		}
		if res.Verdict != TempError || res.Err == nil {
			t.Errorf("got %+v, want temperror", res)
		}
		if !strings.Contains(res.Problem, "slow.example.com") && res.Problem != "check deadline exceeded" {
			t.Errorf("problem %q names neither the lookup nor the deadline", res.Problem)
		}
	})
	t.Run("resolver timeout", func(t *testing.T) {
		r := newResolver(t, srv.Addr, 100*time.Millisecond)
		res := CheckMailFrom(context.Background(), r, ipIn, "", "a@slow.example.com", Options{})
		if res.Verdict != TempError || res.Problem != "DNS timeout looking up TXT slow.example.com" {
			t.Errorf("got %s %q (%v), want temperror %q", res.Verdict, res.Problem, res.Err, "DNS timeout looking up TXT slow.example.com")
		}
	})
	t.Run("expired before the check", func(t *testing.T) {
		r := newResolver(t, srv.Addr, time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res := CheckMailFrom(ctx, r, ipIn, "", "a@pass.example.com", Options{})
		if res.Verdict != TempError {
			t.Errorf("got %+v, want temperror", res)
		}
	})
}

func FuzzCheckMailFrom(f *testing.F) {
	srv := dnstest.New(f, zone())
	r := newResolver(f, srv.Addr, 2*time.Second)
	for _, s := range []struct{ helo, sender string }{
		{"mail.example.com", "alice@pass.example.com"},
		{"mail.example.com", "@local.example.com"},
		{"[192.0.2.10]", "<alice@inc.example.com>"},
		{"", "postmaster"},
		{"x", `"a@b"@pass.example.com`},
		{"%{l}", "a%{l}@exists.example.com"},
		{"mail.example.com\r\n", "alice@pass.example.com\r\nX: y"},
		{strings.Repeat("a", 1000), strings.Repeat("b@", 600)},
		{"m\xe4il", "\xff@\xfe.example.com"},
	} {
		f.Add(s.helo, s.sender)
	}
	verdicts := map[Verdict]bool{Pass: true, Fail: true, SoftFail: true, Neutral: true, None: true, TempError: true, PermError: true}
	f.Fuzz(func(t *testing.T, helo, sender string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, res := range []Result{
			CheckMailFrom(ctx, r, ipIn, helo, sender, Options{}),
			CheckHelo(ctx, r, ipIn, helo, Options{}),
		} {
			if !verdicts[res.Verdict] {
				t.Fatalf("verdict %q not an RFC 7208 result: %+v", res.Verdict, res)
			}
			if res.Domain != "" && !validDomain(res.Domain) {
				t.Fatalf("evaluated %q, not a domain name: %+v", res.Domain, res)
			}
			if res.Domain != "" && !strings.HasSuffix(res.Sender, "@"+res.Domain) {
				t.Fatalf("sender %q is not at domain %q", res.Sender, res.Domain)
			}
			switch res.Verdict {
			case Pass, Fail, SoftFail, Neutral:
				if res.Mechanism == "" {
					t.Fatalf("%s without a mechanism: %+v", res.Verdict, res)
				}
			default:
				if res.Problem == "" {
					t.Fatalf("%s without a problem: %+v", res.Verdict, res)
				}
			}
		}
	})
}

// BenchmarkCheckMailFromCached is the cost of a check whose DNS answers
// are all in the resolver's cache: an include and an ip4 match.
func BenchmarkCheckMailFromCached(b *testing.B) {
	srv := dnstest.New(b, zone())
	r := newResolver(b, srv.Addr, 2*time.Second)
	ctx := context.Background()
	if res := CheckMailFrom(ctx, r, ipIn, "mail.example.org", "alice@inc.example.com", Options{}); res.Verdict != Pass {
		b.Fatalf("warm-up: %+v", res)
	}
	b.ReportAllocs()
	for b.Loop() {
		CheckMailFrom(ctx, r, ipIn, "mail.example.org", "alice@inc.example.com", Options{})
	}
}
