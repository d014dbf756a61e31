package milter

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/vouch-mail/vouch/checks/received"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter/policy"
	"github.com/vouch-mail/vouch/milter/textsafe"
)

// Mail from a trusted relay (policy.trusted_relays: your backup MX, an
// inbound gateway) is not judged by the relay's address and HELO, which
// say nothing about the sender, but by the original client that the
// relay recorded in the Received field it wrote. The fields arrive with
// the header, so the decision is taken at end of headers and the MTA
// answers the DATA command with it.

// boundedField keeps a header value the Received parser may refuse
// (received.MaxFieldLen) without holding more of a hostile one.
func boundedField(v string) string {
	if len(v) > received.MaxFieldLen {
		return v[:received.MaxFieldLen+1]
	}
	return v
}

// decideRelayed finds the original client of the relayed message, runs
// its checks, and takes the transaction's decision at end of headers.
// A message whose Received fields do not name an original client gets
// policy.relay_unparsed: never a rejection.
func (c *conn) decideRelayed() *Outcome {
	p := &c.gen.cfg.Policy
	origin, err := received.FindOrigin(c.tx.received, func(ip netip.Addr) bool {
		return p.TrustedRelay(ip) || p.Trusted(ip)
	})
	if err != nil {
		return c.relayUnparsed(err)
	}
	cl := &client{ip: net.IP(origin.IP.AsSlice()), addr: origin.IP, helo: origin.Helo}
	c.tx.origin = cl
	// The envelope sender is the one the relay passed on: SPF checks it
	// against the original client.
	c.startIprev(cl)
	c.startHeloChecks(cl)
	c.startSPF(cl)
	return c.decide(policy.StageEOH)
}

// answerRelayed is the answer to the DATA command of a relayed message.
// One answer goes for every recipient: a message that also goes to an
// exempt or allowed recipient is accepted for all of them.
func (c *conn) answerRelayed(o *Outcome) *reply {
	if o.Decision.Refuses() && len(c.tx.relayRecipients) > 0 {
		for _, r := range c.tx.relayRecipients {
			c.acceptRecipient(r.rcpt, r.reason, o)
		}
		return respContinue
	}
	return o.reply()
}

// relayUnparsed is the outcome for relayed mail whose original client is
// unknown: accepted and recorded, or tempfailed, as the operator chose.
func (c *conn) relayUnparsed(err error) *Outcome {
	o := &Outcome{Stage: policy.StageEOH, Client: Client{Relay: c.addr}}
	if c.gen.cfg.Policy.RelayUnparsed == policy.TempFail {
		r := policy.RelayUnknown
		o.Decision = policy.Decision{Action: r.Action, Would: r.Action, Code: r.Code, Status: r.Status, Text: r.Text}
	}
	c.srv.metrics.Exemptions.WithLabelValues(string(RelayUnparsed)).Inc()
	c.log.Warn("trusted relay's message names no original client", "queue_id", textsafe.Log(c.tx.queueID),
		"err", textsafe.Log(err.Error()), "unparsed", errors.Is(err, received.ErrSyntax), "action", o.Decision.Action.String())
	c.commit(o)
	c.tx.outcome = o
	return o
}

// spfPassDomain is the first of policy.allow_spf_domains whose SPF record
// cl passes, "" if none does. Each is an SPF check of the domain (for
// postmaster@domain) with cl's address; a warm cache answers it at once.
func (c *conn) spfPassDomain(ctx context.Context, cl *client) string {
	// Under the check deadline like any check: the caller's context has
	// none when every other check was done.
	ctx, cancel := context.WithTimeout(ctx, c.gen.cfg.Checks.Deadline)
	defer cancel()
	opts := c.gen.cfg.Checks.SPF.Options
	for _, d := range c.gen.policy.AllowSPFDomains {
		if r := spf.CheckMailFrom(ctx, c.gen.resolver, cl.ip, cl.helo, "postmaster@"+d, opts); r.Verdict == spf.Pass {
			return d
		}
	}
	return ""
}
