package dns

import (
	"encoding/binary"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzCanonical: whatever a client puts in HELO, MAIL FROM or an SPF
// macro, a name the resolver accepts is a key that miekg/dns packs to
// exactly the name's own octets (ASCII letters lower-cased, every '.' a
// label break, nothing read as an escape) and unpacks back to the key.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		"example.com", "Example.COM.", "_spf.example.com", "a..b", ".", "",
		"evil.example\r\nX: y", "a b", `a\046b`, `a\.b`, "caf\xc3\xa9.fr", "100%.example",
		"a;b", `"q"`, strings.Repeat("a", 64) + ".com", strings.Repeat("a.", 127),
		"2.0/25.2.0.192.in-addr.arpa", "*.example.com", "-lead.example.com",
		"bounces+x=gmail.com.example.com", "[192.0.2.10].example.com", "user@example.com", "a(b)c\"d\\e\x7f\x80.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		k, ok := canonical(name)
		if !ok {
			return
		}
		n := strings.TrimSuffix(name, ".")
		if k != strings.ToLower(k) || strings.HasSuffix(k, ".") || len(n) > 253 {
			t.Fatalf("key %q", k)
		}
		if strings.ContainsAny(k, "\r\n\t\x00") {
			t.Fatalf("key %q holds a control byte unescaped", k)
		}
		m := new(mdns.Msg)
		m.SetQuestion(k+".", mdns.TypeTXT)
		wire, err := m.Pack()
		if err != nil {
			t.Fatalf("accepted %q that does not pack: %v", k, err)
		}
		back := new(mdns.Msg)
		if err := back.Unpack(wire); err != nil {
			t.Fatal(err)
		}
		if got := back.Question[0].Name; got != k+"." {
			t.Fatalf("%q came back as %q", k, got)
		}
		// The wire labels are the name's own octets, lower-cased.
		var labels []string
		for off := 12; wire[off] != 0; off += int(wire[off]) + 1 {
			labels = append(labels, string(wire[off+1:off+1+int(wire[off])]))
		}
		if got, want := strings.Join(labels, "."), asciiLower(n); got != want {
			t.Fatalf("%q went on the wire as %q, want %q", name, got, want)
		}
	})
}

// txtAnswer builds a DNS response holding one TXT record whose single
// character-string is raw, byte for byte.
func txtAnswer(raw []byte) []byte {
	msg := []byte{0, 1, 0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0} // id 1, QR RD RA, 1 answer
	msg = append(msg, 0)                                    // owner: root
	msg = binary.BigEndian.AppendUint16(msg, mdns.TypeTXT)
	msg = binary.BigEndian.AppendUint16(msg, mdns.ClassINET)
	msg = binary.BigEndian.AppendUint32(msg, 300)
	msg = binary.BigEndian.AppendUint16(msg, uint16(1+len(raw)))
	msg = append(msg, byte(len(raw)))
	return append(msg, raw...)
}

// FuzzTXT: the strings LookupTXT returns are the octets on the wire, for
// any octets (SPF records are untrusted input too).
func FuzzTXT(f *testing.F) {
	for _, s := range []string{"v=spf1 -all", `quote" back\slash`, "\x00\x01\xff\x80", `\065`, "\\", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 255 {
			raw = raw[:255]
		}
		m := new(mdns.Msg)
		if err := m.Unpack(txtAnswer(raw)); err != nil {
			t.Fatalf("unpack: %v", err)
		}
		e := &entry{}
		e.fill(m.Answer, mdns.TypeTXT)
		if len(e.strs) != 1 || e.strs[0] != string(raw) {
			t.Fatalf("got %q, want %q", e.strs, raw)
		}
	})
}

// FuzzAnswer: any response a server (or an attacker racing it) sends is
// walked without panic or unbounded work, and what comes out is usable.
func FuzzAnswer(f *testing.F) {
	seed := func(qtype uint16, zone ...string) {
		m := new(mdns.Msg)
		m.SetQuestion("a.example.", qtype)
		m.Response = true
		for _, z := range zone {
			rr, err := mdns.NewRR(z)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	seed(mdns.TypeA, "a.example. 60 IN A 192.0.2.1")
	seed(mdns.TypeA, "a.example. 60 IN CNAME b.example.", "b.example. 30 IN A 192.0.2.1")
	seed(mdns.TypeA, "a.example. 60 IN CNAME b.example.", "b.example. 30 IN CNAME a.example.")
	seed(mdns.TypeTXT, `a.example. 60 IN TXT "v=spf1" " -all"`)
	seed(mdns.TypeMX, "a.example. 60 IN MX 10 mx.example.", "a.example. 60 IN MX 0 .")
	seed(mdns.TypePTR, `a.example. 60 IN PTR bad\032name.example.`)
	seed(mdns.TypeAAAA, "A.EXAMPLE. 60 IN AAAA 2001:db8::1")
	f.Fuzz(func(t *testing.T, wire []byte) {
		m := new(mdns.Msg)
		if err := m.Unpack(wire); err != nil || len(m.Question) == 0 {
			return
		}
		q := m.Question[0]
		c, _, err := follow(m.Answer, q.Name, q.Qtype, 8, nil)
		if c.hops > 8 {
			t.Fatalf("%d hops over a budget of 8", c.hops)
		}
		if err != nil {
			return
		}
		e := &entry{kind: kindData}
		e.fill(c.rrs, q.Qtype)
		for _, s := range e.strs {
			if q.Qtype == mdns.TypePTR && !validTarget(s) {
				t.Fatalf("PTR target %q kept", s)
			}
		}
		for _, mx := range e.mx {
			if mx.Host != "." && !validTarget(mx.Host) {
				t.Fatalf("MX host %q kept", mx.Host)
			}
		}
		for _, ip := range e.ips {
			if len(ip) != 4 && len(ip) != 16 {
				t.Fatalf("address %v", ip)
			}
		}
		negativeTTL(m)
		classify(m, m, nil)
	})
}

// FuzzDatagram: whatever arrives on a query's UDP socket, answerTo takes
// it only if it is a response to that query, and a datagram without the
// query's question never gives a verdict (data, NXDOMAIN or NODATA): at
// most a temporary failure, a retry without EDNS or over TCP.
func FuzzDatagram(f *testing.F) {
	q := newQuery("a.example.", mdns.TypeTXT, true)
	q.Id = 0x1234
	reply := func(edit func(m *mdns.Msg)) {
		m := new(mdns.Msg)
		m.SetReply(q)
		txt, _ := mdns.NewRR(`a.example. 60 TXT "v=spf1 -all"`)
		m.Answer = []mdns.RR{txt}
		edit(m)
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	reply(func(*mdns.Msg) {})
	reply(func(m *mdns.Msg) { m.Question = nil })
	reply(func(m *mdns.Msg) { m.Question = nil; m.Answer = nil; m.Rcode = mdns.RcodeFormatError })
	reply(func(m *mdns.Msg) { m.Question = nil; m.Answer = nil; m.Truncated = true })
	reply(func(m *mdns.Msg) { m.Question[0].Name = "b.example." })
	reply(func(m *mdns.Msg) { m.Id++ })
	reply(func(m *mdns.Msg) { m.Response = false })
	reply(func(m *mdns.Msg) { m.Question = append(m.Question, m.Question[0]) })
	f.Add([]byte{0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1})
	f.Add([]byte{0x12, 0x34, 0x81})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := answerTo(q, b)
		if m == nil {
			return
		}
		if m.Id != q.Id || !m.Response || len(b) > maxDatagram {
			t.Fatalf("took %v", m)
		}
		matched := len(m.Question) == 1 && strings.EqualFold(m.Question[0].Name, "a.example.") &&
			m.Question[0].Qtype == mdns.TypeTXT && m.Question[0].Qclass == mdns.ClassINET
		if !matched && len(m.Question) != 0 {
			t.Fatalf("took an answer to another question: %v", m)
		}
		if !matched && !m.Truncated {
			if _, fail := classify(q, m, nil); fail == nil || !fail.temporary {
				t.Fatalf("a datagram without the question gave a verdict: %v", m)
			}
		}
	})
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
