package milter

import (
	"fmt"
	"net"

	"github.com/emersion/go-milter"
	"github.com/vouch-mail/vouch/checks/envelope"
	"github.com/vouch-mail/vouch/milter/headers"
)

// The header fields vouch adds to an accepted message, and the forged
// ones it removes.

// authServID names this host in Authentication-Results: the configured
// id, else the MTA's own name.
func (c *conn) authServID() string {
	if id := c.gen.cfg.Headers.AuthServID; id != "" {
		return id
	}
	return c.receiver()
}

// receiver names this host in Received-SPF: the MTA's own name (its j
// macro), else this machine's.
func (c *conn) receiver() string {
	if c.mtaName != "" {
		return c.mtaName
	}
	return c.srv.hostname
}

// Field is a header field vouch adds.
type Field struct{ Name, Value string }

// fields are the header fields for the transaction's outcome, in the
// order they appear at the top of the message.
func (c *conn) fields(o *Outcome) []Field {
	// The judged client: the original one for relayed mail.
	var ip net.IP
	if o.Client.IP.IsValid() {
		ip = net.IP(o.Client.IP.AsSlice())
	}
	in := headers.Input{
		AuthServID: c.authServID(),
		ClientIP:   ip,
		HELO:       o.Client.HELO,
		Receiver:   c.receiver(),
	}
	r := o.Results
	if r.Iprev != nil {
		in.Iprev = &headers.IprevInfo{Result: r.Iprev.AuthResult(), IP: ip}
	}
	if r.Helo != nil {
		in.HeloResult = string(r.Helo.Verdict)
	}
	if envelope.IsNull(c.tx.sender) {
		in.SPFHelo = r.SPF // the null sender's only identity is HELO
	} else {
		in.SPFMailFrom, in.SPFHelo = r.SPF, r.SPFHelo
	}
	var out []Field
	h := c.gen.cfg.Headers
	if h.AuthenticationResults {
		out = append(out, Field{"Authentication-Results", headers.AuthenticationResults(in)})
	}
	if h.ReceivedSPF {
		if v, ok := headers.ReceivedSPF(in); ok {
			out = append(out, Field{"Received-SPF", v})
		}
	}
	return out
}

// writeHeaders removes forged Authentication-Results and adds ours.
func (c *conn) writeHeaders(m *milter.Modifier, o *Outcome) error {
	// Highest index first, so deleting one does not renumber the next.
	for i := len(c.tx.forged) - 1; i >= 0; i-- {
		if err := m.ChangeHeader(c.tx.forged[i], "Authentication-Results", ""); err != nil {
			return fmt.Errorf("removing forged Authentication-Results: %w", err)
		}
		c.srv.metrics.ForgedRemoved.Inc()
	}
	// Each insert at the same index goes above the previous ones: insert
	// the last field first.
	fields := c.fields(o)
	for i := len(fields) - 1; i >= 0; i-- {
		if c.wire != nil {
			c.wire.insertHeader(headerIndex, fields[i].Name, fields[i].Value)
		} else if err := m.InsertHeader(headerIndex, fields[i].Name, fields[i].Value); err != nil {
			return fmt.Errorf("adding %s: %w", fields[i].Name, err)
		}
		c.srv.metrics.HeadersAdded.WithLabelValues(fields[i].Name).Inc()
	}
	return nil
}

// headerIndex is where new fields go: 0 is the very top.
const headerIndex = 0
