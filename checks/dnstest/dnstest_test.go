package dnstest

import (
	"fmt"
	"net"
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

// exchangeRaw sends q over UDP and returns the first n datagrams that come
// back, raw: what a client sees on its socket.
func exchangeRaw(t *testing.T, s *Server, q *dns.Msg, n int) [][]byte {
	t.Helper()
	got := readRaw(t, s, q, n, 2*time.Second)
	if len(got) < n {
		t.Fatalf("%d datagrams, want %d", len(got), n)
	}
	return got
}

// readRaw sends q over UDP and returns the datagrams that come back within
// wait, at most n.
func readRaw(t *testing.T, s *Server, q *dns.Msg, n int, wait time.Duration) [][]byte {
	t.Helper()
	c, err := net.Dial("udp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(wire); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	var out [][]byte
	buf := make([]byte, 70000)
	for len(out) < n {
		k, err := c.Read(buf)
		if err != nil {
			break
		}
		out = append(out, append([]byte(nil), buf[:k]...))
	}
	return out
}

func TestStrayDatagrams(t *testing.T) {
	s := New(t, zone)
	tests := []struct {
		d     Datagram
		check func(q *dns.Msg, b []byte) error
	}{
		{Garbage, unparseable(true)},
		{WrongIDGarbage, unparseable(false)},
		{Short, func(q *dns.Msg, b []byte) error {
			if len(b) >= 12 {
				return fmt.Errorf("%d octets, want fewer than a header", len(b))
			}
			return nil
		}},
		{WrongID, parsed(func(q, m *dns.Msg) bool { return m.Id != q.Id && m.Question[0] == q.Question[0] && forged(m) })},
		{NoQuestion, parsed(func(q, m *dns.Msg) bool { return m.Id == q.Id && len(m.Question) == 0 && forged(m) })},
		{OtherQuestion, parsed(func(q, m *dns.Msg) bool {
			return m.Id == q.Id && m.Question[0].Name == "other.mail.example.com." && forged(m)
		})},
		{Echo, parsed(func(q, m *dns.Msg) bool { return m.Id == q.Id && !m.Response && len(m.Answer) == 0 })},
		{Oversized, func(q *dns.Msg, b []byte) error {
			if len(b) < 8000 {
				return fmt.Errorf("%d octets", len(b))
			}
			return parsed(func(q, m *dns.Msg) bool { return m.Id == q.Id && forged(m) })(q, b)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.d.String(), func(t *testing.T) {
			s.SetFault("mail.example.com", Fault{Before: []Datagram{tc.d, tc.d}})
			q := new(dns.Msg)
			q.SetQuestion("mail.example.com.", dns.TypeA)
			got := exchangeRaw(t, s, q, 3)
			for _, b := range got[:2] {
				if err := tc.check(q, b); err != nil {
					t.Errorf("stray datagram: %v", err)
				}
			}
			m := new(dns.Msg)
			if err := m.Unpack(got[2]); err != nil || m.Id != q.Id || len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "127.0.0.2" {
				t.Errorf("answer after the stray datagrams: %v %v", m, err)
			}
		})
	}
	t.Run("with Drop, only the strays", func(t *testing.T) {
		s.SetFault("mail.example.com", Fault{Before: []Datagram{NoQuestion}, Drop: true})
		q := new(dns.Msg)
		q.SetQuestion("mail.example.com.", dns.TypeA)
		if got := readRaw(t, s, q, 2, 300*time.Millisecond); len(got) != 1 {
			t.Errorf("%d datagrams, want the stray one alone", len(got))
		}
	})
}

func unparseable(rightID bool) func(q *dns.Msg, b []byte) error {
	return func(q *dns.Msg, b []byte) error {
		if len(b) < 12 {
			return fmt.Errorf("%d octets", len(b))
		}
		id := uint16(b[0])<<8 | uint16(b[1])
		if (id == q.Id) != rightID {
			return fmt.Errorf("ID %d, query's %d", id, q.Id)
		}
		if err := new(dns.Msg).Unpack(b); err == nil {
			return fmt.Errorf("parses")
		}
		return nil
	}
}

func parsed(ok func(q, m *dns.Msg) bool) func(q *dns.Msg, b []byte) error {
	return func(q *dns.Msg, b []byte) error {
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			return err
		}
		if !ok(q, m) {
			return fmt.Errorf("unexpected: %v", m)
		}
		return nil
	}
}

func forged(m *dns.Msg) bool {
	return len(m.Answer) == 1 && m.Answer[0].(*dns.A).A.String() == "192.0.2.66"
}

func TestFormErrEDNS(t *testing.T) {
	for _, bare := range []bool{false, true} {
		t.Run(fmt.Sprintf("bare=%v", bare), func(t *testing.T) {
			s := New(t, zone)
			s.SetFault("mail.example.com", Fault{FormErrEDNS: true, Bare: bare})
			q := new(dns.Msg)
			q.SetQuestion("mail.example.com.", dns.TypeA)
			q.SetEdns0(1232, false)
			m := new(dns.Msg)
			if err := m.Unpack(exchangeRaw(t, s, q, 1)[0]); err != nil {
				t.Fatal(err)
			}
			if m.Rcode != dns.RcodeFormatError || m.IsEdns0() != nil || (len(m.Question) == 0) != bare {
				t.Errorf("answer to EDNS: %v", m)
			}
			if r := query(t, s, "mail.example.com", dns.TypeA, "udp"); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Errorf("answer without EDNS: %v", r)
			}
			if got := s.QueriesNoEDNS("mail.example.com", dns.TypeA); got != 1 {
				t.Errorf("%d queries without EDNS, want 1: %v", got, s.QueryLog())
			}
			if log := strings.Join(s.QueryLog(), " "); !strings.Contains(log, "A/udp x1") || !strings.Contains(log, "A/udp-noedns x1") {
				t.Errorf("query log %q", log)
			}
		})
	}
}

func TestCloseTCP(t *testing.T) {
	s := New(t, zone)
	s.SetFault("mail.example.com", Fault{Truncate: true, CloseTCP: true})
	if r := query(t, s, "mail.example.com", dns.TypeA, "udp"); !r.Truncated {
		t.Errorf("udp answer not truncated: %v", r)
	}
	c := &dns.Client{Net: "tcp", Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion("mail.example.com.", dns.TypeA)
	if r, _, err := c.Exchange(m, s.Addr); err == nil {
		t.Errorf("answered over TCP: %v", r)
	}
}
