package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-milter"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/envelope"
	"github.com/vouch-mail/vouch/checks/helo"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/received"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter/headers"
	"github.com/vouch-mail/vouch/milter/policy"
	"github.com/vouch-mail/vouch/milter/textsafe"
)

// conn is the state of one milter connection, which is one SMTP session.
// go-milter calls the session's callbacks one at a time from one
// goroutine, so no lock guards it; the futures carry their own.
//
// The callbacks record what the MTA says and start the checks; the one
// decision step (decide.go) turns their results into the answer, at the
// stage policy.decide_at names.
type conn struct {
	srv *Server
	gen *generation
	log *slog.Logger
	// connLog is log before CONNECT added the client to it.
	connLog *slog.Logger
	ctx     context.Context
	// wire, when set, takes the answer and header packets directly;
	// nil outside a server connection (Explain).
	wire *wire

	// client is the SMTP client and its checks, filled at CONNECT and
	// HELO; for a trusted relay they stay unchecked.
	client
	mtaName string    // the j macro
	exempt  Exemption // why checks are skipped for the whole session
	// relay: the client is one of policy.trusted_relays; each message is
	// judged by the original client its Received fields name.
	relay bool
	// heloRefusal is a refusal decided at HELO (decide_at: helo); it
	// answers every later transaction of the session too.
	heloRefusal *Outcome

	tx *transaction

	// checks holds each stage's context and the checks in flight.
	checks checkState
}

// client is a client vouch judges, and its checks: the SMTP client, or
// the original client behind a trusted relay.
type client struct {
	ip        net.IP // nil for a local (non-TCP) client
	addr      netip.Addr
	helo      string
	iprev     *future[iprev.Result]
	heloCheck *future[helo.Result]
	spfHelo   *future[spf.Result]
}

func (cl *client) clientIP() string {
	if cl.ip == nil {
		return "local"
	}
	return cl.addr.String()
}

// transaction is the per-message state, cleared by Abort and by MAIL FROM.
type transaction struct {
	start   time.Time
	queueID string
	sender  string    // "" for the null sender
	exempt  Exemption // why checks are skipped for this message
	spf     *future[spf.Result]
	// outcome is the transaction's one decision; nil until it is taken.
	outcome *Outcome
	// exemptRecipients were accepted although the outcome refuses (or,
	// for relayed mail decided later, would be).
	exemptRecipients []string
	// origin is the original client behind a trusted relay, received
	// the Received fields that name it, topmost first, and
	// relayRecipients the exempt or allowed recipients of the message.
	origin          *client
	received        []string
	relayRecipients []relayRecipient
	arSeen          int   // Authentication-Results fields seen
	forged          []int // their 1-based indices that claim our authserv-id
}

// Exemption says why checks are skipped; it is a metric label value
// (vouch_exemptions_total{reason}).
type Exemption string

const (
	ExemptLocal         Exemption = "local"           // not a TCP client
	ExemptTrusted       Exemption = "trusted_network" // in policy.trusted_networks
	ExemptAuthenticated Exemption = "authenticated"   // {auth_authen} set
	// A recipient accepted although the decision refuses.
	ExemptRecipient  Exemption = "exempt_recipient"  // policy.exempt_recipients
	AllowedRecipient Exemption = "allowed_recipient" // policy.allow_recipients
	// A trusted relay's message that names no original client.
	RelayUnparsed Exemption = "relay_unparsed"
)

// session is the go-milter backend. It is a thin handle on conn so that, if
// go-milter ever builds a new backend for the connection, state survives.
type session struct{ c *conn }

var _ milter.Milter = session{}

// guard turns a panic in a callback into a logged tempfail instead of a
// dead connection or daemon, and sends the answer.
func (c *conn) guard(stage policy.Stage, resp *milter.Response, err *error) {
	if v := recover(); v != nil {
		c.log.Error("internal error in milter callback; answering tempfail", "stage", string(stage), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		c.srv.metrics.MilterErrors.WithLabelValues("panic").Inc()
		if resp != nil {
			*resp = respInternal
		}
		if err != nil {
			*err = nil
		}
	}
	if resp != nil && (err == nil || *err == nil) {
		*resp = c.send(*resp)
	}
}

// send puts the answer straight into the connection's output and returns
// nil so that go-milter writes nothing (see wire.answer). Outside a
// server connection (Explain) the answer is returned as is.
func (c *conn) send(resp milter.Response) milter.Response {
	if c.wire == nil || resp == nil {
		return resp
	}
	c.wire.answer(resp)
	return nil
}

func (s session) Connect(host, family string, port uint16, addr net.IP, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	defer c.guard(policy.StageConnect, &resp, &err)
	c.newSession()
	c.mtaName = m.Macros["j"]
	if addr != nil {
		if v4 := addr.To4(); v4 != nil {
			addr = v4
		}
		c.ip = addr
		c.addr, _ = netip.AddrFromSlice(addr)
		c.addr = c.addr.Unmap()
	}
	c.log = c.connLog.With("client_ip", c.clientIP())
	switch {
	case c.ip == nil:
		c.exempt = ExemptLocal
	case c.gen.cfg.Policy.Trusted(c.addr):
		c.exempt = ExemptTrusted
	}
	if c.exempt != "" {
		c.srv.metrics.Exemptions.WithLabelValues(string(c.exempt)).Inc()
		c.log.Debug("session exempt from checks", "reason", string(c.exempt), "family", family)
		return respContinue, nil
	}
	if c.gen.cfg.Policy.TrustedRelay(c.addr) {
		c.relay = true
		c.log.Debug("trusted relay: its messages are judged by their original client", "family", family)
		return respContinue, nil
	}
	cfg := c.gen.cfg.Checks.Iprev
	// Sendmail names the client by its PTR even when the forward check
	// failed ({client_resolve} FORGED); only OK is a verified name.
	// Postfix's connect name is verified or "[ip]".
	if resolve := m.Macros["{client_resolve}"]; cfg.Enabled && cfg.TrustMTAHostname && (resolve == "" || resolve == "OK") {
		if r, ok := iprev.FromMTA(c.ip, host); ok {
			c.iprev = resolved(r)
			c.count(checkIprev, string(r.Verdict), 0)
			return respContinue, nil
		}
	}
	c.startIprev(&c.client)
	return respContinue, nil
}

// startIprev starts the iprev check of cl, if it is on.
func (c *conn) startIprev(cl *client) {
	cfg := c.gen.cfg.Checks.Iprev
	if !cfg.Enabled {
		return
	}
	ip, opts := cl.ip, cfg.Options
	cl.iprev = startCheck(c, checkIprev, func(ctx context.Context, r dns.Lookuper) iprev.Result {
		return iprev.Check(ctx, r, ip, opts)
	}, iprevVerdict, iprevFailed)
}

// startHeloChecks starts the HELO check and the HELO identity's SPF
// check of cl, those that are on; the HELO check waits for cl's iprev.
func (c *conn) startHeloChecks(cl *client) {
	// The checks run in the background: they get their own copies of the
	// state they read.
	rev, ip, name, checks := cl.iprev, cl.ip, cl.helo, c.gen.cfg.Checks
	if checks.Helo.Enabled {
		cl.heloCheck = startCheck(c, checkHelo, func(ctx context.Context, r dns.Lookuper) helo.Result {
			ev := iprev.Result{Verdict: iprev.TempError, IP: ip, Err: errors.New("reverse DNS not checked")}
			if rev != nil {
				if v, ok := rev.wait(ctx); ok {
					ev = v
				}
			}
			return helo.Check(ctx, r, name, ip, ev)
		}, heloVerdict, heloFailed, rev)
	}
	if checks.SPF.Enabled && checks.SPF.CheckHelo {
		cl.spfHelo = c.startSPFHelo(cl)
	}
}

// startSPF starts the SPF check of the transaction's deciding identity
// for cl: MAIL FROM, or for the null sender HELO (RFC 7208 §2.4).
func (c *conn) startSPF(cl *client) {
	spfCfg := c.gen.cfg.Checks.SPF
	if !spfCfg.Enabled {
		return
	}
	from := c.tx.sender
	if envelope.IsNull(from) {
		c.tx.spf = cl.spfHelo
		if c.tx.spf == nil {
			c.tx.spf = c.startSPFHelo(cl)
		}
		return
	}
	ip, heloName, opts := cl.ip, cl.helo, spfCfg.Options
	c.tx.spf = startCheck(c, checkSPFMailFrom, func(ctx context.Context, r dns.Lookuper) spf.Result {
		return spf.CheckMailFrom(ctx, r, ip, heloName, from, opts)
	}, spfVerdict, spfFailed(spf.MailFrom))
}

// newSession clears what a previous CONNECT on this milter connection
// left: an MTA (or anything else on the socket) may send another, and
// none of the previous client's state or checks may answer for the new
// one. The checks still running read only what they were started with.
func (c *conn) newSession() {
	if c.connLog == nil {
		c.connLog = c.log
	}
	c.mtaName, c.exempt, c.relay = "", "", false
	c.client, c.heloRefusal = client{}, nil
	c.tx = nil
	c.beginStage(policy.StageConnect)
}

func (s session) Helo(name string, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	defer c.guard(policy.StageHelo, &resp, &err)
	// A second HELO/EHLO (after STARTTLS) replaces the first.
	c.helo = name
	c.heloCheck, c.spfHelo, c.heloRefusal = nil, nil, nil
	c.beginStage(policy.StageHelo)
	if c.exempt != "" || c.relay {
		return respContinue, nil
	}
	c.startHeloChecks(&c.client)
	if c.gen.cfg.Policy.DecideAt == policy.StageHelo {
		// Only a refusal is answered here: an accepted HELO is decided
		// again, with the sender's SPF, at MAIL.
		if o := c.evaluate(policy.StageHelo); o.Decision.Refuses() {
			c.commit(o)
			c.heloRefusal = o
			return o.reply(), nil
		}
	}
	return respContinue, nil
}

func (c *conn) startSPFHelo(cl *client) *future[spf.Result] {
	ip, name, opts := cl.ip, cl.helo, c.gen.cfg.Checks.SPF.Options
	return startCheck(c, checkSPFHelo, func(ctx context.Context, r dns.Lookuper) spf.Result {
		return spf.CheckHelo(ctx, r, ip, name, opts)
	}, spfVerdict, spfFailed(spf.Helo))
}

func (s session) MailFrom(from string, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	defer c.guard(policy.StageMail, &resp, &err)
	c.tx = &transaction{start: time.Now(), sender: from, queueID: m.Macros["i"]}
	c.beginStage(policy.StageMail)
	c.srv.metrics.Transactions.Inc()
	if c.exempt != "" {
		return respContinue, nil
	}
	if c.heloRefusal != nil {
		c.tx.outcome = c.heloRefusal
		return c.heloRefusal.reply(), nil
	}
	if c.gen.cfg.Policy.SkipAuthenticated && m.Macros["{auth_authen}"] != "" {
		c.tx.exempt = ExemptAuthenticated
		c.srv.metrics.Exemptions.WithLabelValues(string(c.tx.exempt)).Inc()
		c.log.Debug("message exempt from checks", "reason", string(c.tx.exempt), "queue_id", textsafe.Log(c.tx.queueID))
		return respContinue, nil
	}
	if c.relay {
		return respContinue, nil // judged at end of headers
	}
	c.startSPF(&c.client)
	if at := c.gen.cfg.Policy.DecideAt; at == policy.StageMail || at == policy.StageHelo {
		return c.decide(policy.StageMail).reply(), nil
	}
	return respContinue, nil
}

func (s session) RcptTo(rcpt string, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	defer c.guard(policy.StageRcpt, &resp, &err)
	c.queueID(m)
	if !c.checked() {
		return respContinue, nil
	}
	if c.relay {
		// Judged at end of headers, for the whole message.
		if reason := c.recipientExemption(rcpt); reason != "" {
			c.tx.relayRecipients = append(c.tx.relayRecipients, relayRecipient{rcpt, reason})
		}
		return respContinue, nil
	}
	o := c.tx.outcome
	if o == nil {
		o = c.decide(policy.StageRcpt)
	}
	if !o.Decision.Refuses() {
		return respContinue, nil
	}
	if reason := c.recipientExemption(rcpt); reason != "" {
		c.acceptRecipient(rcpt, reason, o)
		return respContinue, nil
	}
	return o.reply(), nil
}

// relayRecipient is an exempt or allowed recipient of a relayed message,
// whose decision comes at end of headers.
type relayRecipient struct {
	rcpt   string
	reason Exemption
}

// recipientExemption says why rcpt is accepted whatever the verdict:
// ExemptRecipient (RFC 5321 §4.5.1), AllowedRecipient (forwarded mail),
// or "".
func (c *conn) recipientExemption(rcpt string) Exemption {
	p := &c.gen.cfg.Policy
	switch {
	case p.ExemptRecipient(rcpt):
		return ExemptRecipient
	case p.AllowedRecipient(rcpt):
		return AllowedRecipient
	}
	return ""
}

// acceptRecipient accepts rcpt although o refuses, and says so.
func (c *conn) acceptRecipient(rcpt string, reason Exemption, o *Outcome) {
	c.tx.exemptRecipients = append(c.tx.exemptRecipients, rcpt)
	if reason == ExemptRecipient {
		c.srv.metrics.ExemptRecipients.Inc()
	} else {
		c.srv.metrics.Exemptions.WithLabelValues(string(reason)).Inc()
	}
	c.log.Info("exempt recipient accepted despite the verdict", "queue_id", textsafe.Log(c.tx.queueID),
		"rcpt", textsafe.Log(rcpt), "reason", string(reason), "verdict", o.Decision.Action.String())
}

// checked reports whether the transaction under way is checked: there
// is one, and neither the session nor the message is exempt.
func (c *conn) checked() bool {
	return c.exempt == "" && c.tx != nil && c.tx.exempt == ""
}

func (s session) Header(name, value string, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	defer c.guard(policy.StageEOM, &resp, &err)
	c.queueID(m)
	if c.relay && c.checked() && strings.EqualFold(name, "Received") && len(c.tx.received) <= received.MaxHops {
		c.tx.received = append(c.tx.received, boundedField(value))
	}
	if c.tx == nil || c.exempt != "" || !c.gen.cfg.Headers.RemoveForged || !strings.EqualFold(name, "Authentication-Results") {
		return respContinue, nil
	}
	c.tx.arSeen++
	if headers.ClaimsAuthServID(value, c.authServID()) {
		c.tx.forged = append(c.tx.forged, c.tx.arSeen)
	}
	return respContinue, nil
}

func (s session) Headers(h textproto.MIMEHeader, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	defer c.guard(policy.StageEOH, &resp, &err)
	if !c.relay || !c.checked() {
		return respContinue, nil
	}
	return c.answerRelayed(c.decideRelayed()), nil
}

func (s session) BodyChunk(chunk []byte, m *milter.Modifier) (milter.Response, error) {
	return respContinue, nil
}

func (s session) Body(m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	defer c.guard(policy.StageEOM, &resp, &err)
	c.queueID(m)
	if !c.checked() {
		return respContinue, nil
	}
	o := c.tx.outcome
	switch {
	case o == nil && c.relay:
		// No end of headers seen (a message without a header): decide
		// the relayed message here.
		if o = c.decideRelayed(); c.answerRelayed(o) != respContinue {
			return o.reply(), nil
		}
	case o == nil:
		o = c.decide(policy.StageEOM)
	}
	if err := c.writeHeaders(m, o); err != nil {
		return nil, err // the MTA's connection is broken; go-milter drops it
	}
	if o.Decision.Action == policy.Quarantine {
		reason := textsafe.Printable("vouch: "+o.Results.summary(), 200)
		if err := m.Quarantine(reason); err != nil {
			return nil, err
		}
	}
	c.logAccepted(o)
	return respContinue, nil
}

// logAccepted ties the decision to the MTA's queue id, which Postfix
// gives only after the first accepted RCPT, so the decision line may lack
// it. A refusing verdict here means only exempt recipients were
// accepted: the line says so instead of naming the refusal as the action.
func (c *conn) logAccepted(o *Outcome) {
	attrs := []any{"queue_id", textsafe.Log(c.tx.queueID), "sender", textsafe.Log(envelope.Display(c.tx.sender))}
	if o.Decision.Refuses() {
		attrs = append(attrs, "action", "accept", "reason", string(ExemptRecipient), "verdict", o.Decision.Action.String(),
			"exempt_recipients", len(c.tx.exemptRecipients))
	} else {
		attrs = append(attrs, "action", o.Decision.Action.String())
	}
	attrs = append(attrs, "results", o.Results.summary())
	c.log.Info("message accepted", attrs...)
}

// queueID takes the MTA's queue id (macro i) when it first appears:
// Sendmail sends it with MAIL, Postfix from a later stage.
func (c *conn) queueID(m *milter.Modifier) {
	if c.tx != nil && c.tx.queueID == "" {
		c.tx.queueID = m.Macros["i"]
	}
}

func (s session) Abort(m *milter.Modifier) (err error) {
	c := s.c
	defer c.guard(policy.StageEOM, nil, &err)
	// Per-message state only: IP, HELO and their lookups stay.
	c.tx = nil
	c.endTransaction()
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }
