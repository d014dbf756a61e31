package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// maxDatagram is the largest UDP answer read. We advertise 1232 octets
// (ednsSize); this leaves room for servers that send up to the historic
// 4096 anyway, and bounds what one read holds. A larger datagram is
// skipped like any other that is not the answer.
const maxDatagram = 4096

// maxStrayDatagrams bounds the datagrams skipped in one exchange before it
// gives up (a temporary failure): each query has a socket of its own, so
// only a broken path or someone spraying the port sends any at all.
const maxStrayDatagrams = 32

// errStrayFlood ends an exchange that skipped maxStrayDatagrams datagrams.
var errStrayFlood = errors.New("gave up")

// datagrams holds read buffers of maxDatagram+1 octets: one more than
// accepted, so that an oversized datagram shows as such instead of being
// silently cut to size by the kernel.
var datagrams = sync.Pool{New: func() any {
	b := make([]byte, maxDatagram+1)
	return &b
}}

// strayError is an exchange's failure after it skipped datagrams that did
// not answer the query: the count goes into the error message, for the
// postmaster who wonders why a server that answers timed out.
type strayError struct {
	skipped int
	err     error
}

func (e *strayError) Error() string {
	if e.err == errStrayFlood {
		return fmt.Sprintf("gave up after %d datagrams that do not answer the query", e.skipped)
	}
	return fmt.Sprintf("%v (%d datagrams that do not answer the query skipped)", e.err, e.skipped)
}

func (e *strayError) Unwrap() error { return e.err }

// exchangeUDP sends q to server over UDP and waits, until timeout or ctx
// ends, for the datagram that answers it. miekg/dns's client takes the
// first datagram with the query's ID that parses, and gives up at the
// first that does not, whatever its ID: one forged or broken datagram
// ahead of the answer would decide the attempt. Here every datagram that
// is not a well-formed response to this very query (ID, question) is
// skipped, up to maxStrayDatagrams.
func exchangeUDP(ctx context.Context, q *mdns.Msg, server string, timeout time.Duration) (*mdns.Msg, error) {
	wire, err := q.Pack()
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var dialer net.Dialer
	// A connected socket: the kernel drops datagrams from other addresses.
	// (Dialling UDP sends nothing and does not wait.)
	conn, err := dialer.DialContext(ctx, "udp", server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	// Cancellation (not only the deadline) interrupts the wait.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(wire); err != nil {
		return nil, err
	}

	bp := datagrams.Get().(*[]byte)
	defer datagrams.Put(bp)
	buf := *bp
	for skipped := 0; ; skipped++ {
		if skipped == maxStrayDatagrams {
			return nil, &strayError{skipped, errStrayFlood}
		}
		n, err := conn.Read(buf)
		if err != nil {
			if skipped > 0 {
				return nil, &strayError{skipped, err}
			}
			return nil, err
		}
		if m := answerTo(q, buf[:n]); m != nil {
			return m, nil
		}
	}
}

// answerTo returns the message in b if it answers q, else nil. The cheap
// tests on the raw header come first, so that a stream of strays costs
// little.
func answerTo(q *mdns.Msg, b []byte) *mdns.Msg {
	const headerSize = 12
	if len(b) < headerSize || len(b) > maxDatagram ||
		uint16(b[0])<<8|uint16(b[1]) != q.Id || b[2]&0x80 == 0 { // QR: a response
		return nil
	}
	m := new(mdns.Msg)
	// The buffer goes back to the pool: unpack a copy of it.
	if err := m.Unpack(append([]byte(nil), b...)); err != nil {
		return nil
	}
	if m.Opcode != q.Opcode || !answersQuestion(q, m) {
		return nil
	}
	return m
}

// answersQuestion reports whether m is a response to q's question: the
// same single question (the name in any case), or, from a server that
// could not read the question, no question and nothing but an error
// code or the TC bit, neither of which is a verdict (a temporary
// failure, a retry without EDNS or over TCP).
func answersQuestion(q, m *mdns.Msg) bool {
	if len(m.Question) == 0 {
		return m.Rcode != mdns.RcodeSuccess && m.Rcode != mdns.RcodeNameError ||
			m.Rcode == mdns.RcodeSuccess && m.Truncated && len(m.Answer) == 0
	}
	qq, mq := q.Question[0], m.Question[0]
	return len(m.Question) == 1 && mq.Qtype == qq.Qtype && mq.Qclass == qq.Qclass && strings.EqualFold(mq.Name, qq.Name)
}
