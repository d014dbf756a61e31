// Package dnstest runs a small authoritative DNS server on loopback for
// tests. Zones are written as RFC 1035 zone text; faults (drop, delay, any
// RCODE, truncation, FORMERR to EDNS, TCP closed, stray datagrams ahead of
// the answer) can be injected per name; every query is counted so tests
// can assert caching, coalescing and retries.
//
// It is a real server speaking real DNS over UDP and TCP: the resolver under
// test cannot tell it from a production authoritative server.
package dnstest

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is an authoritative DNS server on 127.0.0.1, same port for UDP and
// TCP.
type Server struct {
	// Addr is "127.0.0.1:PORT", for UDP and TCP alike.
	Addr string

	udp, tcp *dns.Server
	done     chan struct{}

	mu      sync.Mutex
	records map[string][]dns.RR // lower-case FQDN -> records at that name
	soas    map[string]*dns.SOA // zone apex -> SOA
	faults  map[string]Fault
	counts  map[queryKey]int
	total   int
}

type queryKey struct {
	name  string
	qtype uint16
	tcp   bool
	edns  bool
}

// rootSOA answers negatives for names outside any zone the test wrote, so
// tests need not write an SOA unless they care about negative TTLs.
var rootSOA = &dns.SOA{
	Hdr:     dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
	Ns:      "ns.dnstest.invalid.",
	Mbox:    "hostmaster.dnstest.invalid.",
	Serial:  1,
	Refresh: 3600, Retry: 600, Expire: 86400,
	Minttl: 60,
}

// Start parses zoneText and starts the server. Close stops it.
func Start(zoneText string) (*Server, error) {
	s := &Server{
		done:    make(chan struct{}),
		records: map[string][]dns.RR{},
		soas:    map[string]*dns.SOA{},
		faults:  map[string]Fault{},
		counts:  map[queryKey]int{},
	}
	if err := s.AddZone(zoneText); err != nil {
		return nil, err
	}

	// UDP and TCP on the same port: take a free UDP port, then try its TCP
	// twin, which another process may hold; then try again.
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for try := 0; try < 50; try++ {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("dnstest: listen udp: %w", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("dnstest: no port free for both udp and tcp: %w", err)
	}
	s.Addr = pc.LocalAddr().String()

	udpStarted, tcpStarted := make(chan struct{}), make(chan struct{})
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serveUDP),
		NotifyStartedFunc: func() { close(udpStarted) }}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serveTCP),
		NotifyStartedFunc: func() { close(tcpStarted) }}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	<-udpStarted
	<-tcpStarted
	return s, nil
}

// New starts a server for a test and stops it when the test ends.
func New(tb testing.TB, zoneText string) *Server {
	tb.Helper()
	s, err := Start(zoneText)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// Close stops the server. Delayed answers still pending are abandoned.
func (s *Server) Close() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	close(s.done)
	return errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
}

// AddZone adds the records of zoneText (RFC 1035 master file syntax;
// $ORIGIN and $TTL work; relative names need an $ORIGIN; records without a
// TTL get 300 s). SOA records make their owner a zone apex, whose SOA
// answers negatives beneath it.
func (s *Server) AddZone(zoneText string) error {
	zp := dns.NewZoneParser(strings.NewReader("$TTL 300\n"+zoneText), ".", "dnstest")
	s.mu.Lock()
	defer s.mu.Unlock()
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := strings.ToLower(rr.Header().Name)
		s.records[name] = append(s.records[name], rr)
		if soa, isSOA := rr.(*dns.SOA); isSOA {
			s.soas[name] = soa
		}
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("dnstest: zone text: %w", err)
	}
	return nil
}

// Remove deletes every record at name.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, canonical(name))
}

// SetFault makes queries for name (any type) misbehave as f says.
func (s *Server) SetFault(name string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[canonical(name)] = f
}

// ClearFault restores normal answers for name.
func (s *Server) ClearFault(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.faults, canonical(name))
}

// Queries counts queries received for name and type, over UDP and TCP.
func (s *Server) Queries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := canonical(name)
	total := 0
	for _, tcp := range []bool{false, true} {
		for _, edns := range []bool{false, true} {
			total += s.counts[queryKey{n, qtype, tcp, edns}]
		}
	}
	return total
}

// QueriesTCP counts queries received over TCP for name and type.
func (s *Server) QueriesTCP(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := canonical(name)
	return s.counts[queryKey{n, qtype, true, false}] + s.counts[queryKey{n, qtype, true, true}]
}

// QueriesNoEDNS counts queries received without EDNS (no OPT record) for
// name and type, over UDP and TCP.
func (s *Server) QueriesNoEDNS(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := canonical(name)
	return s.counts[queryKey{n, qtype, false, false}] + s.counts[queryKey{n, qtype, true, false}]
}

// TotalQueries counts every query received since start or ResetCounts.
func (s *Server) TotalQueries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// QueryLog lists "name TYPE/proto" for every distinct query seen, with
// counts, for failure messages; proto is "udp" or "tcp", followed by
// "-noedns" when the query carried no EDNS.
func (s *Server) QueryLog() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k, n := range s.counts {
		proto := "udp"
		if k.tcp {
			proto = "tcp"
		}
		if !k.edns {
			proto += "-noedns"
		}
		out = append(out, fmt.Sprintf("%s %s/%s x%d", k.name, dns.TypeToString[k.qtype], proto, n))
	}
	sort.Strings(out)
	return out
}

// ResetCounts zeroes the query counters.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts = map[queryKey]int{}
	s.total = 0
}

// ReverseName is the PTR owner name of ip (in-addr.arpa or ip6.arpa).
func ReverseName(ip string) string {
	name, err := dns.ReverseAddr(ip)
	if err != nil {
		panic("dnstest: ReverseName: " + err.Error())
	}
	return name
}

func canonical(name string) string {
	return strings.ToLower(dns.Fqdn(name))
}

func (s *Server) serveUDP(w dns.ResponseWriter, r *dns.Msg) { s.serve(w, r, false) }
func (s *Server) serveTCP(w dns.ResponseWriter, r *dns.Msg) { s.serve(w, r, true) }

func (s *Server) serve(w dns.ResponseWriter, r *dns.Msg, tcp bool) {
	if len(r.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	opt := r.IsEdns0()

	s.mu.Lock()
	s.counts[queryKey{name, q.Qtype, tcp, opt != nil}]++
	s.total++
	fault, faulty := s.faults[name]
	s.mu.Unlock()

	if faulty {
		if tcp && fault.CloseTCP {
			w.Close()
			return
		}
		if !tcp {
			for _, d := range fault.Before {
				w.Write(stray(d, r))
			}
		}
		if fault.Drop {
			return
		}
		if fault.Delay > 0 {
			select {
			case <-time.After(fault.Delay):
			case <-s.done:
				return
			}
		}
	}

	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	udpSize := dns.MinMsgSize
	if opt != nil {
		udpSize = int(opt.UDPSize())
		m.SetEdns0(opt.UDPSize(), false)
	}
	switch {
	case faulty && (fault.Rcode != 0 || fault.FormErrEDNS && opt != nil):
		m.Rcode = fault.Rcode
		if fault.FormErrEDNS && opt != nil {
			m.Rcode = dns.RcodeFormatError
			m.Extra = nil // a server without EDNS sends no OPT
		}
		m.Authoritative = false
		if fault.Bare {
			m.Question = nil
		}
	case faulty && fault.Truncate && !tcp:
		m.Truncated = true
	default:
		s.answer(m, name, q.Qtype)
		if !tcp {
			m.Truncate(udpSize)
		}
	}
	w.WriteMsg(m)
}

// answer fills m with the records for name/qtype, following CNAMEs held
// here (as an authoritative server does within its own data), or with a
// negative answer and the covering SOA.
func (s *Server) answer(m *dns.Msg, name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()

	seen := map[string]bool{}
	for hops := 0; hops < 16; hops++ {
		rrs, exists := s.lookup(name)
		var matched, cname []dns.RR
		for _, rr := range rrs {
			switch {
			case rr.Header().Rrtype == qtype || qtype == dns.TypeANY:
				matched = append(matched, rr)
			case rr.Header().Rrtype == dns.TypeCNAME:
				cname = append(cname, rr)
			}
		}
		if len(matched) > 0 {
			m.Answer = append(m.Answer, matched...)
			return
		}
		if len(cname) > 0 {
			m.Answer = append(m.Answer, cname[0])
			target := strings.ToLower(cname[0].(*dns.CNAME).Target)
			if seen[target] {
				return // a loop: hand back what we have, as real servers do
			}
			seen[name] = true
			name = target
			continue
		}
		if !exists {
			// After a CNAME too: the rcode speaks of the last name (RFC 6604).
			m.Rcode = dns.RcodeNameError
		}
		m.Ns = append(m.Ns, s.negativeSOA(name))
		return
	}
}

// lookup returns the records at name, synthesising from a wildcard when the
// name does not exist; exists reports whether the name (or an empty
// non-terminal beneath it) exists.
func (s *Server) lookup(name string) (rrs []dns.RR, exists bool) {
	if rrs, ok := s.records[name]; ok {
		return rrs, true
	}
	for owner := range s.records {
		if strings.HasSuffix(owner, "."+name) {
			return nil, true // empty non-terminal
		}
	}
	labels := dns.SplitDomainName(name)
	for i := 1; i < len(labels); i++ {
		wild := "*." + dns.Fqdn(strings.Join(labels[i:], "."))
		if wrrs, ok := s.records[wild]; ok {
			out := make([]dns.RR, 0, len(wrrs))
			for _, rr := range wrrs {
				c := dns.Copy(rr)
				c.Header().Name = name
				out = append(out, c)
			}
			return out, true
		}
	}
	return nil, false
}

// negativeSOA returns the SOA of the closest enclosing zone, its TTL the
// smaller of the SOA TTL and MINIMUM (RFC 2308 §3).
func (s *Server) negativeSOA(name string) dns.RR {
	soa := rootSOA
	labels := dns.SplitDomainName(name)
	for i := 0; i < len(labels); i++ {
		if z, ok := s.soas[dns.Fqdn(strings.Join(labels[i:], "."))]; ok {
			soa = z
			break
		}
	}
	c := dns.Copy(soa).(*dns.SOA)
	c.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	return c
}
