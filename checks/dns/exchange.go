package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	mdns "github.com/miekg/dns"
)

// exchange sends one query, trying up to Attempts times over the servers
// in turn, starting with the one that last answered. It returns the first
// definitive answer (NOERROR or NXDOMAIN), or a failure entry.
func (r *Resolver) exchange(ctx context.Context, fqdn string, qtype uint16) (*mdns.Msg, string, *entry) {
	n := uint32(len(r.servers))
	start := r.preferred.Load()
	fail := &entry{kind: kindFailure, server: r.servers[start%n]}
	for i := uint32(0); i < uint32(r.cfg.Attempts); i++ {
		if ctx.Err() != nil {
			break
		}
		idx := (start + i) % n
		server := r.servers[idx]
		m, f := r.query(ctx, server, fqdn, qtype)
		if f == nil {
			r.preferred.Store(idx)
			return m, server, nil
		}
		fail.server = server
		fail.msg = f.msg
		fail.temporary = fail.temporary || f.temporary
		fail.timeout = fail.timeout || f.timeout
	}
	if err := ctx.Err(); err != nil && fail.msg == "" {
		return nil, "", &entry{kind: kindFailure, server: fail.server,
			temporary: true, timeout: true, msg: "i/o timeout", cause: err}
	}
	return nil, "", fail
}

// attemptFailure is why one attempt gave no usable answer.
type attemptFailure struct {
	temporary, timeout bool
	msg                string
}

// query makes one attempt at one server: UDP with EDNS; again without
// EDNS if the server answered FORMERR; then TCP if the answer was
// truncated. It reports the attempt to the Observer, once.
func (r *Resolver) query(ctx context.Context, server, fqdn string, qtype uint16) (*mdns.Msg, *attemptFailure) {
	q := newQuery(fqdn, qtype, true)

	r.obs.InFlight(1)
	start := time.Now()
	m, err := exchangeUDP(ctx, q, server, r.cfg.Timeout)
	if err == nil && m.Rcode == mdns.RcodeFormatError {
		// RFC 6891 §7: a server that does not implement EDNS answers
		// FORMERR to a query with an OPT record. Ask it without one
		// (answers over 512 octets then come truncated, and over TCP).
		q = newQuery(fqdn, qtype, false)
		m, err = exchangeUDP(ctx, q, server, r.cfg.Timeout)
	}
	if err == nil && m.Truncated {
		m, err = r.exchangeTCP(ctx, q, server)
	}
	d := time.Since(start)
	r.obs.InFlight(-1)

	outcome, f := classify(q, m, err)
	r.obs.Query(mdns.TypeToString[qtype], outcome, d)
	return m, f
}

// newQuery is a recursive query with a random ID, advertising ednsSize
// with EDNS0 when edns is set.
func newQuery(fqdn string, qtype uint16, edns bool) *mdns.Msg {
	q := new(mdns.Msg)
	q.SetQuestion(fqdn, qtype)
	if edns {
		q.SetEdns0(ednsSize, false)
	}
	return q
}

func (r *Resolver) exchangeTCP(ctx context.Context, q *mdns.Msg, server string) (*mdns.Msg, error) {
	actx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	m, _, err := r.tcp.ExchangeContext(actx, q, server)
	return m, err
}

// classify sorts the result of one attempt into an Observer outcome and,
// unless the answer is definitive (NOERROR or NXDOMAIN, answering the
// question), a failure. Every failure is temporary (RFC 7208 §4.4, §5:
// every RCODE but 0 and 3, a timeout, an answer that cannot be used):
// another try, another server, or a later delivery attempt may work, and
// none of them says anything about the name.
func classify(q, m *mdns.Msg, err error) (string, *attemptFailure) {
	if err != nil {
		var ne net.Error
		var de *mdns.Error
		var se *strayError
		msg := err.Error()
		switch {
		case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
			msg = "i/o timeout"
			if errors.As(err, &se) {
				msg = fmt.Sprintf("i/o timeout (%d datagrams that do not answer the query skipped)", se.skipped)
			}
			return OutcomeTimeout, &attemptFailure{temporary: true, timeout: true, msg: msg}
		case errors.As(err, &de):
			// Over TCP: the stream holds one answer, and it is broken.
			msg = "malformed answer: " + msg
		}
		return OutcomeError, &attemptFailure{temporary: true, msg: msg}
	}
	if !m.Response || !answersQuestion(q, m) {
		return OutcomeError, &attemptFailure{temporary: true, msg: "answer does not match the question"}
	}
	switch m.Rcode {
	case mdns.RcodeSuccess:
		qt := q.Question[0].Qtype
		for _, rr := range m.Answer {
			// A CNAME counts: the caller follows the chain.
			if t := rr.Header().Rrtype; t == qt || t == mdns.TypeCNAME {
				return OutcomeSuccess, nil
			}
		}
		return OutcomeNoData, nil
	case mdns.RcodeNameError:
		return OutcomeNXDomain, nil
	case mdns.RcodeServerFailure:
		return OutcomeServFail, &attemptFailure{temporary: true, msg: "server misbehaving (SERVFAIL)"}
	case mdns.RcodeRefused:
		return OutcomeRefused, &attemptFailure{temporary: true, msg: "query refused (REFUSED)"}
	}
	return OutcomeError, &attemptFailure{temporary: true, msg: "server answered " + rcodeName(m.Rcode)}
}

func rcodeName(rc int) string {
	if s, ok := mdns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}
