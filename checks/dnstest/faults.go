package dnstest

import (
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"
)

// Fault changes how the server answers queries for one name.
type Fault struct {
	// Drop: never answer, so the client times out.
	Drop bool
	// Delay: answer only after this long.
	Delay time.Duration
	// Rcode: answer with this response code and no records
	// (dns.RcodeServerFailure, dns.RcodeRefused, ...). Zero means normal.
	Rcode int
	// Truncate: over UDP answer with TC=1 and no records, forcing a retry
	// over TCP; over TCP answer normally.
	Truncate bool
	// FormErrEDNS: answer a query that carries EDNS (an OPT record) with
	// FORMERR and no OPT, as a server that predates EDNS does (RFC 6891
	// §7); answer a query without EDNS normally.
	FormErrEDNS bool
	// Bare: an Rcode or FormErrEDNS answer is a header only, without the
	// question, as from a server that could not parse the query.
	Bare bool
	// CloseTCP: over TCP, close the connection without answering.
	CloseTCP bool
	// Before lists datagrams sent, in order, ahead of the answer over UDP
	// (ignored over TCP). With Drop, they are all the client gets.
	Before []Datagram
}

// Datagram is a stray UDP datagram the server can send ahead of its
// answer: what an off-path attacker who guessed the client's port, or a
// broken middlebox, might put on the wire. Those that carry records carry
// forged ones (see Forged).
type Datagram int

const (
	// Garbage has the query's ID and a header saying "response", then
	// bytes that do not parse (a compression pointer to itself).
	Garbage Datagram = iota + 1
	// Short is 3 bytes: not even a header.
	Short
	// WrongID is a well-formed answer with forged records and another ID.
	WrongID
	// WrongIDGarbage is Garbage with another ID.
	WrongIDGarbage
	// NoQuestion has the query's ID, NOERROR and forged records, and no
	// question section.
	NoQuestion
	// OtherQuestion has the query's ID, forged records at the query's
	// name, and the question of another name.
	OtherQuestion
	// Echo is the query itself sent back: the right ID and question, but
	// not a response (QR=0) and no records.
	Echo
	// Oversized has the query's ID and forged records, padded with an
	// EDNS option to 8,000 octets: more than the 4,096 a client reads at
	// most (and than any buffer it advertises).
	Oversized
)

var datagramNames = map[Datagram]string{
	Garbage: "garbage", Short: "short", WrongID: "wrong ID", WrongIDGarbage: "wrong-ID garbage",
	NoQuestion: "no question", OtherQuestion: "other question", Echo: "echoed query", Oversized: "oversized",
}

func (d Datagram) String() string {
	if n, ok := datagramNames[d]; ok {
		return n
	}
	return fmt.Sprintf("Datagram(%d)", int(d))
}

// Forged returns the records the stray datagrams carry for name and
// qtype: ones that would change a verdict if a client believed them.
//
//	A     192.0.2.66
//	AAAA  2001:db8::66
//	TXT   "v=spf1 -all"
//	PTR   forged.dnstest.invalid.
//	MX    10 forged.dnstest.invalid.
func Forged(name string, qtype uint16) []dns.RR {
	hdr := dns.RR_Header{Name: dns.Fqdn(name), Rrtype: qtype, Class: dns.ClassINET, Ttl: 300}
	switch qtype {
	case dns.TypeA:
		return []dns.RR{&dns.A{Hdr: hdr, A: net.IPv4(192, 0, 2, 66).To4()}}
	case dns.TypeAAAA:
		return []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: net.ParseIP("2001:db8::66")}}
	case dns.TypeTXT:
		return []dns.RR{&dns.TXT{Hdr: hdr, Txt: []string{"v=spf1 -all"}}}
	case dns.TypePTR:
		return []dns.RR{&dns.PTR{Hdr: hdr, Ptr: "forged.dnstest.invalid."}}
	case dns.TypeMX:
		return []dns.RR{&dns.MX{Hdr: hdr, Preference: 10, Mx: "forged.dnstest.invalid."}}
	}
	return nil
}

// stray builds the datagram d for the query r.
func stray(d Datagram, r *dns.Msg) []byte {
	q := r.Question[0]
	m := new(dns.Msg)
	m.SetReply(r)
	m.Answer = Forged(q.Name, q.Qtype)
	switch d {
	case Garbage, WrongIDGarbage:
		// A header with one question, then a name that is a compression
		// pointer to itself: no parser can get past it.
		b := []byte{byte(r.Id >> 8), byte(r.Id), 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}
		if d == WrongIDGarbage {
			b[0] ^= 0xff
		}
		return b
	case Short:
		return []byte{byte(r.Id >> 8), byte(r.Id), 0x81}
	case WrongID:
		m.Id ^= 0xffff
	case NoQuestion:
		m.Question = nil
	case OtherQuestion:
		m.Question[0].Name = "other." + q.Name
	case Echo:
		m = r.Copy()
	case Oversized:
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(dns.DefaultMsgSize)
		o.Option = []dns.EDNS0{&dns.EDNS0_PADDING{Padding: make([]byte, 8000)}}
		m.Extra = append(m.Extra, o)
	}
	b, err := m.Pack()
	if err != nil {
		panic("dnstest: packing a stray datagram: " + err.Error())
	}
	return b
}
