package dnstest

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var zone = `
$ORIGIN example.com.
$TTL 300
@        SOA ns hostmaster 1 3600 600 86400 120
mail     A     127.0.0.2
mail     AAAA  ::2
alias    CNAME mail
loop1    CNAME loop2
loop2    CNAME loop1
dangling CNAME nowhere
a.b.deep TXT   "deep"
*.wild   TXT   "wildcard"
big      TXT   "` + strings.Repeat("x", 250) + `" "` + strings.Repeat("y", 250) + `" "` + strings.Repeat("z", 250) + `"
2.0.0.127.in-addr.arpa. PTR mail.example.com.
`

func query(t *testing.T, s *Server, name string, qtype uint16, net string) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: net, Timeout: 300 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := c.Exchange(m, s.Addr)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return r
}

func TestAnswers(t *testing.T) {
	s := New(t, zone)
	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		rcode   int
		answers int
		soaTTL  uint32 // expected negative TTL, 0 = no SOA expected
	}{
		{"A", "mail.example.com", dns.TypeA, dns.RcodeSuccess, 1, 0},
		{"case-insensitive", "MAIL.Example.COM", dns.TypeAAAA, dns.RcodeSuccess, 1, 0},
		{"nodata", "mail.example.com", dns.TypeTXT, dns.RcodeSuccess, 0, 120},
		{"nxdomain", "nope.example.com", dns.TypeA, dns.RcodeNameError, 0, 120},
		{"empty non-terminal", "b.deep.example.com", dns.TypeTXT, dns.RcodeSuccess, 0, 120},
		{"cname followed", "alias.example.com", dns.TypeA, dns.RcodeSuccess, 2, 0},
		{"cname loop ends", "loop1.example.com", dns.TypeA, dns.RcodeSuccess, 2, 0},
		{"cname to nowhere", "dangling.example.com", dns.TypeA, dns.RcodeNameError, 1, 120},
		{"wildcard", "x.wild.example.com", dns.TypeTXT, dns.RcodeSuccess, 1, 0},
		{"ptr", ReverseName("127.0.0.2"), dns.TypePTR, dns.RcodeSuccess, 1, 0},
		{"outside zones", "elsewhere.test", dns.TypeA, dns.RcodeNameError, 0, 60},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := query(t, s, tc.qname, tc.qtype, "udp")
			if r.Rcode != tc.rcode || len(r.Answer) != tc.answers {
				t.Fatalf("rcode %s answers %d, want %s %d:\n%v", dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[tc.rcode], tc.answers, r)
			}
			if tc.soaTTL != 0 {
				if len(r.Ns) != 1 || r.Ns[0].Header().Ttl != tc.soaTTL {
					t.Fatalf("authority %v, want one SOA with TTL %d", r.Ns, tc.soaTTL)
				}
			}
		})
	}
}

func TestFaults(t *testing.T) {
	s := New(t, zone)
	s.SetFault("mail.example.com", Fault{Rcode: dns.RcodeServerFailure})
	if r := query(t, s, "mail.example.com", dns.TypeA, "udp"); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	s.SetFault("mail.example.com", Fault{Truncate: true})
	if r := query(t, s, "mail.example.com", dns.TypeA, "udp"); !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("udp answer not truncated: %v", r)
	}
	if r := query(t, s, "mail.example.com", dns.TypeA, "tcp"); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("tcp answer: %v", r)
	}
	if got := s.QueriesTCP("mail.example.com", dns.TypeA); got != 1 {
		t.Errorf("tcp queries %d, want 1", got)
	}
	s.SetFault("mail.example.com", Fault{Drop: true})
	c := &dns.Client{Timeout: 100 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("mail.example.com.", dns.TypeA)
	if _, _, err := c.Exchange(m, s.Addr); err == nil {
		t.Error("dropped query was answered")
	}
	s.SetFault("mail.example.com", Fault{Delay: 150 * time.Millisecond})
	start := time.Now()
	query(t, s, "mail.example.com", dns.TypeA, "udp")
	if time.Since(start) < 150*time.Millisecond {
		t.Error("delayed answer came early")
	}
	s.ClearFault("mail.example.com")
	if got, want := s.Queries("mail.example.com", dns.TypeA), 5; got != want {
		t.Errorf("counted %d queries, want %d: %v", got, want, s.QueryLog())
	}
}

func TestLargeAnswerTruncatesOverUDP(t *testing.T) {
	s := New(t, zone)
	if r := query(t, s, "big.example.com", dns.TypeTXT, "udp"); !r.Truncated {
		t.Errorf("760-byte TXT over 512-byte UDP not truncated")
	}
	if r := query(t, s, "big.example.com", dns.TypeTXT, "tcp"); len(r.Answer) != 1 || len(r.Answer[0].(*dns.TXT).Txt) != 3 {
		t.Errorf("tcp answer: %v", r)
	}
}
