package milter

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vouch-mail/vouch/checks/envelope"
	"github.com/vouch-mail/vouch/checks/helo"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter/policy"
	"github.com/vouch-mail/vouch/milter/textsafe"
)

// Outcome is the one decision of a transaction (or of a session refused
// at HELO): where it was taken, every check's result with its evidence,
// and the policy's decision with the allowlist that applied. The reply,
// the log line, the metrics, the headers and Explain all read it.
type Outcome struct {
	Stage policy.Stage
	// Client is the client judged: the SMTP client, or the original
	// client behind a trusted relay.
	Client   Client
	Results  Results
	Decision policy.Decision
	// Waited is how long the decision waited for checks still running.
	Waited time.Duration
}

// Client names the client a decision judged.
type Client struct {
	IP   netip.Addr // invalid for a local client
	HELO string
	// Relay is the trusted relay the message came through; invalid when
	// the client sent it straight.
	Relay netip.Addr
}

// judged is the client the transaction is judged by: the original client
// of relayed mail, else the SMTP client.
func (c *conn) judged() *client {
	if c.tx != nil && c.tx.origin != nil {
		return c.tx.origin
	}
	return &c.client
}

// Results are the checks' results; nil for a check that did not run.
type Results struct {
	Iprev   *iprev.Result
	Helo    *helo.Result
	SPF     *spf.Result // the deciding identity: MAIL FROM, or HELO for <>
	SPFHelo *spf.Result // the HELO identity of a non-null sender
}

// summary lists the results in a word each, for a quarantine reason and
// the accepted-message log line.
func (r Results) summary() string {
	var parts []string
	if r.Iprev != nil {
		parts = append(parts, "iprev="+string(r.Iprev.Verdict))
	}
	if r.Helo != nil {
		parts = append(parts, "helo="+string(r.Helo.Verdict))
	}
	if r.SPF != nil {
		parts = append(parts, "spf="+string(r.SPF.Verdict))
	}
	if r.SPFHelo != nil {
		parts = append(parts, "spf_helo="+string(r.SPFHelo.Verdict))
	}
	return strings.Join(parts, " ")
}

// reply is the milter answer for the outcome: a reply code for tempfail
// and reject, continue otherwise (quarantine happens at the end of the
// message).
func (o *Outcome) reply() *reply {
	d := o.Decision
	if d.Refuses() {
		return replyCode(d.Code, d.Status, d.Text)
	}
	return respContinue
}

// decide is the decision step: it takes the transaction's one decision at
// stage, logs it and counts it.
func (c *conn) decide(stage policy.Stage) *Outcome {
	o := c.evaluate(stage)
	c.commit(o)
	c.tx.outcome = o
	return o
}

// evaluate waits for the checks the stage can see and applies the
// policy; it records nothing.
func (c *conn) evaluate(stage policy.Stage) *Outcome {
	start := time.Now()
	tx, cl := c.tx, c.judged()
	if stage == policy.StageHelo {
		tx = nil // no transaction yet: only the session's checks count
	}
	// The futures carry their own deadlines; this bound only guards
	// against a check that ignores its context. With every check done
	// (a warm cache) there is nothing to bound, and no timer is set
	// (commit 19de34f: 7 allocations a session).
	ctx := c.ctx
	if !cl.iprev.ready() || !cl.heloCheck.ready() || !cl.spfHelo.ready() || tx != nil && !tx.spf.ready() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(c.ctx, c.gen.cfg.Checks.Deadline+time.Second)
		defer cancel()
	}

	o := &Outcome{Stage: stage, Client: Client{IP: cl.addr, HELO: cl.helo}}
	if cl != &c.client {
		o.Client.Relay = c.addr
	}
	var in policy.Input
	if cl.iprev != nil {
		r, ok := cl.iprev.wait(ctx)
		if !ok {
			r = iprev.Result{Verdict: iprev.TempError, IP: cl.ip, Err: ctx.Err()}
		}
		o.Results.Iprev = &r
		in.Findings = append(in.Findings, policy.Finding{Check: policy.Iprev, Result: policy.Result(r.Verdict)})
		if r.Verdict == iprev.Pass {
			in.ClientNames = r.Confirmed
		}
	}
	if cl.heloCheck != nil {
		r, ok := cl.heloCheck.wait(ctx)
		if !ok {
			r = helo.Result{Verdict: helo.TempError, Err: ctx.Err()}
		}
		o.Results.Helo = &r
		in.Findings = append(in.Findings, policy.Finding{Check: policy.Helo, Result: policy.Result(r.Verdict)})
	}
	if tx != nil && tx.spf != nil {
		r, ok := tx.spf.wait(ctx)
		if !ok {
			r = spf.Result{Verdict: spf.TempError, Problem: "check deadline exceeded", Err: ctx.Err()}
		}
		o.Results.SPF = &r
		in.Findings = append(in.Findings, policy.Finding{Check: policy.SPF, Result: policy.Result(r.Verdict)})
	}
	if cl.spfHelo != nil && (tx == nil || !envelope.IsNull(tx.sender)) {
		r, ok := cl.spfHelo.wait(ctx)
		if !ok {
			r = spf.Result{Identity: spf.Helo, Verdict: spf.TempError, Problem: "check deadline exceeded", Err: ctx.Err()}
		}
		o.Results.SPFHelo = &r
		in.Findings = append(in.Findings, policy.Finding{Check: policy.SPFHelo, Result: policy.Result(r.Verdict)})
	}

	if r := o.Results.Helo; r != nil && (r.Verdict == helo.Match || r.Verdict == helo.Resolves) {
		in.HeloName = r.Name
	}
	in.Vars = policy.Vars{IP: cl.clientIP(), HELO: cl.helo, Domain: cl.helo}
	if tx != nil {
		in.Vars.Sender = tx.sender
		if !envelope.IsNull(tx.sender) {
			in.SenderDomain = envelope.Domain(tx.sender)
			in.Vars.Domain = in.SenderDomain
		}
	}
	o.Decision = c.gen.policy.Decide(in)
	if o.Decision.Refuses() && len(c.gen.policy.AllowSPFDomains) > 0 {
		// Checked only for mail about to be refused: a pass of a
		// forwarder's record lets it through (policy.allow_spf_domains).
		if in.SPFPassDomain = c.spfPassDomain(ctx, cl); in.SPFPassDomain != "" {
			o.Decision = c.gen.policy.Decide(in)
		}
	}
	o.Waited = time.Since(start)
	return o
}

// commit logs and counts a decision: once per transaction.
func (c *conn) commit(o *Outcome) {
	d := o.Decision
	if d.Allowed != "" {
		c.srv.metrics.Exemptions.WithLabelValues(string(d.Allowed)).Inc()
	}
	c.srv.metrics.Decisions.WithLabelValues(string(o.Stage), d.Action.String(), strconv.FormatBool(d.DryRun())).Inc()
	c.logDecision(o)
}

func (c *conn) logDecision(o *Outcome) {
	d, r := o.Decision, o.Results
	attrs := []any{"stage", string(o.Stage), "action", d.Action.String()}
	if d.DryRun() {
		attrs = append(attrs, "dry_run_would", d.Would.String())
	}
	tx := c.tx
	if o.Stage == policy.StageHelo {
		tx = nil
	}
	if tx != nil {
		attrs = append(attrs, "queue_id", textsafe.Log(tx.queueID), "sender", textsafe.Log(envelope.Display(tx.sender)))
		if srs, ok := envelope.ParseSRS(tx.sender); ok {
			// A forwarder rewrote the sender: SPF judged the forwarder.
			attrs = append(attrs, "srs_forwarder", textsafe.Log(srs.Forwarder), "srs_original_domain", textsafe.Log(srs.OrigDomain))
		}
	}
	if o.Client.Relay.IsValid() {
		attrs = append(attrs, "relay", o.Client.Relay.String(), "origin_ip", o.Client.IP.String())
	}
	attrs = append(attrs, "helo", textsafe.Log(o.Client.HELO))
	if r.Iprev != nil {
		attrs = append(attrs, "iprev", string(r.Iprev.Verdict))
		if len(r.Iprev.Confirmed) > 0 {
			attrs = append(attrs, "rdns", textsafe.Log(r.Iprev.Confirmed[0]))
		} else if len(r.Iprev.PTRNames) > 0 {
			attrs = append(attrs, "ptr", textsafe.Log(r.Iprev.PTRNames[0]))
		}
	}
	if r.Helo != nil {
		attrs = append(attrs, "helo_result", string(r.Helo.Verdict))
	}
	if r.SPF != nil {
		attrs = append(attrs, "spf", string(r.SPF.Verdict), "spf_identity", string(r.SPF.Identity))
		if r.SPF.Problem != "" {
			attrs = append(attrs, "spf_problem", textsafe.Log(r.SPF.Problem))
		}
	}
	if r.SPFHelo != nil {
		attrs = append(attrs, "spf_helo", string(r.SPFHelo.Verdict))
	}
	if d.Allowed != "" {
		attrs = append(attrs, "allowed", string(d.Allowed))
	}
	if d.DomainRules != "" {
		attrs = append(attrs, "domain_rules", d.DomainRules)
	}
	if d.Code != 0 && d.Allowed == "" {
		// A dry-run decision names the reply it would have sent.
		attrs = append(attrs, "reply", itoa(d.Code)+" "+d.Status+" "+d.Text)
	}
	if tx != nil {
		attrs = append(attrs, "duration", asciiDuration(time.Since(tx.start)))
	}
	attrs = append(attrs, "waited", asciiDuration(o.Waited))
	c.log.Info("decision", attrs...)
}

// asciiDuration writes d rounded to the microsecond, with "us" rather
// than Go's "µs": log lines stay ASCII for syslog and grep.
func asciiDuration(d time.Duration) string {
	return strings.Replace(d.Round(time.Microsecond).String(), "µs", "us", 1)
}
