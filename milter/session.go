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
	"github.com/vouch-mail/vouch/checks/helo"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter/headers"
	"github.com/vouch-mail/vouch/milter/policy"
	"github.com/vouch-mail/vouch/milter/textsafe"
)

// reply is our milter response. Its Continue is always true: go-milter
// replaces the session's backend after a response whose Continue is false,
// which would lose the connection's state (IP, HELO, lookups) for the next
// message of the same SMTP session. The MTA reads the code, not Continue.
type reply struct {
	code byte
	data []byte
}

func (r *reply) Response() *milter.Message { return &milter.Message{Code: r.code, Data: r.data} }
func (r *reply) Continue() bool            { return true }

var (
	respContinue = &reply{code: byte(milter.ActContinue)}
	respAccept   = &reply{code: byte(milter.ActAccept)}
	respTempFail = &reply{code: byte(milter.ActTempFail)}
	// respInternal answers when vouch itself failed: tempfail, so the
	// client retries and nothing is lost.
	respInternal = replyCode(451, "4.3.0", "Temporary local error in the mail filter")
)

// replyCode builds SMFIR_REPLYCODE. text must already be reply-safe.
func replyCode(code int, status, text string) *reply {
	return &reply{code: byte(milter.ActReplyCode), data: []byte(strconv.Itoa(code) + " " + status + " " + text + "\x00")}
}

// conn is the state of one milter connection, which is one SMTP session.
// go-milter calls the session's callbacks one at a time from one
// goroutine, so no lock guards it; the futures carry their own.
type conn struct {
	srv *Server
	set *Settings
	log *slog.Logger
	// connLog is log before CONNECT added the client to it.
	connLog *slog.Logger
	ctx     context.Context
	id      uint64
	// wire, when set, takes the packets that add header fields directly
	// (see writeHeaders); nil outside a server connection.
	wire *trackedConn

	// Connect stage.
	hostname string // the MTA's name for the client, "[ip]" when unverified
	ip       net.IP // nil for a local (non-TCP) client
	addr     netip.Addr
	mtaName  string // the j macro
	exempt   string // why checks are skipped for the whole session, "" if not
	iprev    *future[iprev.Result]

	// HELO stage.
	helo      string
	heloCheck *future[helo.Result]
	spfHelo   *future[spf.Result]
	// heloDecision holds a refusal taken at HELO (decide_at: helo); it
	// answers every later transaction of the session too.
	heloDecision *policy.Decision

	tx *transaction
	// last holds the results of the latest decision, and the allowlist
	// that overrode it if any, for Explain.
	last        checkResults
	lastAllowed string
}

// transaction is the per-message state, cleared by Abort and by MAIL FROM.
type transaction struct {
	start    time.Time
	queueID  string
	sender   string // "" for the null sender
	exempt   string // why checks are skipped for this message
	spf      *future[spf.Result]
	decided  bool
	decision policy.Decision
	stage    Stage
	results  checkResults
	arSeen   int   // Authentication-Results fields seen
	forged   []int // their 1-based indices that claim our authserv-id
}

type checkResults struct {
	iprev   *iprev.Result
	helo    *helo.Result
	spf     *spf.Result
	spfHelo *spf.Result
}

// session is the go-milter backend. It is a thin handle on conn so that, if
// go-milter ever builds a new backend for the connection, state survives.
type session struct{ c *conn }

var _ milter.Milter = session{}

// guard turns a panic in a callback into a logged tempfail instead of a
// dead connection or daemon.
func (c *conn) guard(stage string, resp *milter.Response, err *error) {
	if v := recover(); v != nil {
		c.log.Error("internal error in milter callback; answering tempfail", "stage", stage, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
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

// send puts the answer straight into the connection's output, as
// writeHeaders does, and returns nil so that go-milter writes nothing:
// go-milter would build each answer packet in a fresh 4 KiB buffer.
// Outside a server connection (Explain) the answer is returned as is.
func (c *conn) send(resp milter.Response) milter.Response {
	if c.wire == nil || resp == nil {
		return resp
	}
	if r, ok := resp.(*reply); ok {
		c.wire.writePacket(r.code, r.data)
	} else {
		msg := resp.Response()
		c.wire.writePacket(msg.Code, msg.Data)
	}
	return nil
}

func (s session) Connect(host, family string, port uint16, addr net.IP, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	defer c.guard("connect", &resp, &err)
	c.newSession()
	c.hostname = host
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
		c.exempt = "local"
	case c.set.trusted(c.addr):
		c.exempt = "trusted_network"
	}
	if c.exempt != "" {
		c.srv.metrics.Exemptions.WithLabelValues(c.exempt).Inc()
		c.log.Debug("session exempt from checks", "reason", c.exempt, "family", family)
		return respContinue, nil
	}
	if c.set.Iprev.Enabled {
		// Sendmail names the client by its PTR even when the forward
		// check failed ({client_resolve} FORGED); only OK is a
		// verified name. Postfix's connect name is verified or "[ip]".
		if resolve := m.Macros["{client_resolve}"]; c.set.Iprev.TrustMTAHostname && (resolve == "" || resolve == "OK") {
			if r, ok := iprev.FromMTA(c.ip, host); ok {
				c.iprev = resolved(r)
				c.count("iprev", string(r.Verdict), 0)
			}
		}
		if c.iprev == nil {
			ip := c.ip
			c.iprev = startCheck(c, "iprev", func(ctx context.Context) iprev.Result {
				return iprev.Check(ctx, c.set.Resolver, ip, iprev.Options{MaxPTR: c.set.Iprev.MaxPTR})
			}, iprevVerdict, iprevFailed)
		}
	}
	return respContinue, nil
}

// newSession clears what a previous CONNECT on this milter connection
// left: an MTA (or anything else on the socket) may send another, and
// none of the previous client's state or checks may answer for the new
// one. The checks still running read only what they were started with.
func (c *conn) newSession() {
	if c.connLog == nil {
		c.connLog = c.log
	}
	c.hostname, c.mtaName, c.exempt = "", "", ""
	c.ip, c.addr, c.iprev = nil, netip.Addr{}, nil
	c.helo, c.heloCheck, c.spfHelo, c.heloDecision = "", nil, nil, nil
	c.tx, c.last = nil, checkResults{}
}

// startCheck runs fn in the background under the check deadline and counts
// its result and duration. A panic in a check becomes failed(err): a
// temperror, so the mail is retried rather than lost or the daemon killed.
// When the resolver's cache holds every answer fn needs and the futures
// fn waits for (deps) are done, fn runs at once instead (cachedCheck).
func startCheck[T any](c *conn, name string, fn func(context.Context) T, result func(T) string, failed func(error) T, deps ...dependency) *future[T] {
	if v, d, ok := cachedCheck(c, fn, deps); ok {
		c.count(name, result(v), d)
		return resolved(v)
	}
	log := c.log // a later CONNECT replaces c.log
	return startFuture(func() (v T) {
		ctx, cancel := context.WithTimeout(c.ctx, c.set.Deadline)
		defer cancel()
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				log.Error("internal error in check; counting it as temperror", "check", name,
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				c.srv.metrics.MilterErrors.WithLabelValues("panic").Inc()
				v = failed(fmt.Errorf("internal error: %v", p))
			}
			// A check cut short because the MTA hung up has no result
			// worth counting: as a temperror it would raise DNS alerts.
			if c.ctx.Err() == nil {
				c.count(name, result(v), time.Since(start))
			}
		}()
		return fn(ctx)
	})
}

// cachedCheck runs fn in the caller's goroutine with lookups answered only
// from the resolver's cache. With a warm cache, the common case, a check
// then costs no goroutine, no timer and none of the stack growth a new
// goroutine pays for an SPF evaluation; its result is the same, since the
// background run would read the same cache. ok is false, and the result is
// thrown away, when a lookup missed the cache, when a dependency is not
// done yet (fn would wait for it), when fn panicked (the background run
// reports that), or when the resolver has no cache-only mode.
func cachedCheck[T any](c *conn, fn func(context.Context) T, deps []dependency) (v T, d time.Duration, ok bool) {
	r, isResolver := c.set.Resolver.(*dns.Resolver)
	if !isResolver {
		return v, 0, false
	}
	for _, dep := range deps {
		if !dep.ready() {
			return v, 0, false
		}
	}
	ctx, run := r.CacheOnly(c.ctx)
	start := time.Now()
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	v = fn(ctx)
	if run.Missed() {
		return v, 0, false
	}
	run.Keep()
	return v, time.Since(start), true
}

func iprevVerdict(r iprev.Result) string { return string(r.Verdict) }
func heloVerdict(r helo.Result) string   { return string(r.Verdict) }
func spfVerdict(r spf.Result) string     { return string(r.Verdict) }

func iprevFailed(err error) iprev.Result { return iprev.Result{Verdict: iprev.TempError, Err: err} }
func heloFailed(err error) helo.Result   { return helo.Result{Verdict: helo.TempError, Err: err} }
func spfFailed(id spf.Identity) func(error) spf.Result {
	return func(err error) spf.Result {
		return spf.Result{Identity: id, Verdict: spf.TempError, Problem: "internal error", Err: err}
	}
}

func (c *conn) count(check, result string, d time.Duration) {
	c.srv.metrics.CheckResults.WithLabelValues(check, result).Inc()
	c.srv.metrics.CheckDuration.WithLabelValues(check).Observe(d.Seconds())
}

func (c *conn) clientIP() string {
	if c.ip == nil {
		return "local"
	}
	return c.addr.String()
}

func (s session) Helo(name string, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	defer c.guard("helo", &resp, &err)
	// A second HELO/EHLO (after STARTTLS) replaces the first.
	c.helo = name
	c.heloCheck, c.spfHelo, c.heloDecision = nil, nil, nil
	if c.exempt != "" {
		return respContinue, nil
	}
	// The checks run in the background: they get their own copies of the
	// session state they read.
	rev, ip := c.iprev, c.ip
	if c.set.HeloEnabled {
		c.heloCheck = startCheck(c, "helo", func(ctx context.Context) helo.Result {
			r := iprev.Result{Verdict: iprev.TempError, IP: ip, Err: errors.New("reverse DNS not checked")}
			if rev != nil {
				if v, ok := rev.wait(ctx); ok {
					r = v
				}
			}
			return helo.Check(ctx, c.set.Resolver, name, ip, r)
		}, heloVerdict, heloFailed, rev)
	}
	if c.set.SPF.Enabled && c.set.SPF.CheckHelo {
		c.spfHelo = startCheck(c, "spf_helo", func(ctx context.Context) spf.Result {
			return spf.CheckHelo(ctx, c.set.Resolver, ip, name, c.set.SPF.Options)
		}, spfVerdict, spfFailed(spf.Helo))
	}
	if c.set.DecideAt == StageHelo {
		d := c.decide(StageHelo, nil)
		if d.Action >= policy.TempFail {
			c.heloDecision = &d
			return decisionReply(d), nil
		}
	}
	return respContinue, nil
}

func (s session) MailFrom(from string, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	defer c.guard("mail", &resp, &err)
	c.tx = &transaction{start: time.Now(), sender: from, queueID: m.Macros["i"]}
	c.srv.metrics.Transactions.Inc()
	if c.exempt != "" {
		return respContinue, nil
	}
	if c.heloDecision != nil {
		c.tx.decided, c.tx.decision, c.tx.stage = true, *c.heloDecision, StageHelo
		return decisionReply(*c.heloDecision), nil
	}
	if c.set.SkipAuthenticated && m.Macros["{auth_authen}"] != "" {
		c.tx.exempt = "authenticated"
		c.srv.metrics.Exemptions.WithLabelValues(c.tx.exempt).Inc()
		c.log.Debug("message exempt from checks", "reason", c.tx.exempt, "queue_id", textsafe.Log(c.tx.queueID))
		return respContinue, nil
	}
	if c.set.SPF.Enabled {
		ip, heloName := c.ip, c.helo
		if from == "" {
			// The null sender: the HELO identity decides (RFC 7208 §2.4).
			c.tx.spf = c.spfHelo
			if c.tx.spf == nil {
				c.tx.spf = startCheck(c, "spf_helo", func(ctx context.Context) spf.Result {
					return spf.CheckHelo(ctx, c.set.Resolver, ip, heloName, c.set.SPF.Options)
				}, spfVerdict, spfFailed(spf.Helo))
			}
		} else {
			c.tx.spf = startCheck(c, "spf_mailfrom", func(ctx context.Context) spf.Result {
				return spf.CheckMailFrom(ctx, c.set.Resolver, ip, heloName, from, c.set.SPF.Options)
			}, spfVerdict, spfFailed(spf.MailFrom))
		}
	}
	if c.set.DecideAt == StageMail || c.set.DecideAt == StageHelo {
		c.decideTx(StageMail)
		return decisionReply(c.tx.decision), nil
	}
	return respContinue, nil
}

func (s session) RcptTo(rcpt string, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	defer c.guard("rcpt", &resp, &err)
	c.queueID(m)
	if c.exempt != "" || c.tx == nil || c.tx.exempt != "" {
		return respContinue, nil
	}
	if !c.tx.decided {
		c.decideTx(StageRcpt)
	}
	if c.tx.decision.Action >= policy.TempFail && c.set.exemptRecipient(rcpt) {
		c.srv.metrics.ExemptRecipients.Inc()
		c.log.Info("exempt recipient accepted despite the verdict", "queue_id", textsafe.Log(c.tx.queueID),
			"rcpt", textsafe.Log(rcpt), "action", c.tx.decision.Action.String())
		return respContinue, nil
	}
	return decisionReply(c.tx.decision), nil
}

// decisionReply is the milter answer for a decision: a reply code for
// tempfail and reject, continue otherwise (quarantine happens at the end
// of the message).
func decisionReply(d policy.Decision) *reply {
	if d.Action >= policy.TempFail {
		return replyCode(d.Code, d.Status, d.Text)
	}
	return respContinue
}

func (s session) Header(name, value string, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	defer c.guard("header", &resp, &err)
	c.queueID(m)
	if c.tx == nil || c.exempt != "" || !c.set.RemoveForgedAuthRes || !strings.EqualFold(name, "Authentication-Results") {
		return respContinue, nil
	}
	c.tx.arSeen++
	if headers.ClaimsAuthServID(value, c.authServID()) {
		c.tx.forged = append(c.tx.forged, c.tx.arSeen)
	}
	return respContinue, nil
}

func (s session) Headers(h textproto.MIMEHeader, m *milter.Modifier) (milter.Response, error) {
	return s.c.send(respContinue), nil
}

func (s session) BodyChunk(chunk []byte, m *milter.Modifier) (milter.Response, error) {
	return respContinue, nil
}

func (s session) Body(m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	defer c.guard("eom", &resp, &err)
	c.queueID(m)
	if c.exempt != "" || c.tx == nil || c.tx.exempt != "" {
		return respContinue, nil
	}
	if !c.tx.decided {
		c.decideTx(StageEOM)
	}
	if err := c.writeHeaders(m); err != nil {
		return nil, err // the MTA's connection is broken; go-milter drops it
	}
	if c.tx.decision.Action == policy.Quarantine {
		reason := textsafe.Printable(fmt.Sprintf("vouch: %s", findingsText(c.tx.results)), 200)
		if err := m.Quarantine(reason); err != nil {
			return nil, err
		}
	}
	// Postfix gives the queue id only after the first accepted RCPT, so
	// the decision line may lack it: this line ties the two together.
	c.log.Info("message accepted", "queue_id", textsafe.Log(c.tx.queueID),
		"sender", textsafe.Log(orNullSender(c.tx.sender)), "action", c.tx.decision.Action.String(),
		"results", findingsText(c.tx.results))
	return respContinue, nil
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
	defer c.guard("abort", nil, &err)
	// Per-message state only: IP, HELO and their lookups stay.
	c.tx = nil
	return nil
}

// authServID names this host in Authentication-Results: the configured
// id, else the MTA's own name.
func (c *conn) authServID() string {
	if c.set.AuthServID != "" {
		return c.set.AuthServID
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

// fields are the header fields for the transaction, in the order they
// appear at the top of the message.
func (c *conn) fields() []Field {
	in := headers.Input{
		AuthServID: c.authServID(),
		ClientIP:   c.ip,
		HELO:       c.helo,
		Receiver:   c.receiver(),
	}
	r := c.tx.results
	if r.iprev != nil {
		in.Iprev = &headers.IprevInfo{Result: r.iprev.AuthResult(), IP: c.ip}
	}
	if c.tx.sender == "" {
		in.SPFHelo = r.spf // the null sender's only identity is HELO
	} else {
		in.SPFMailFrom, in.SPFHelo = r.spf, r.spfHelo
	}
	var out []Field
	if c.set.AddAuthResults {
		out = append(out, Field{"Authentication-Results", headers.AuthenticationResults(in)})
	}
	if c.set.AddReceivedSPF {
		if v, ok := headers.ReceivedSPF(in); ok {
			out = append(out, Field{"Received-SPF", v})
		}
	}
	return out
}

// writeHeaders removes forged Authentication-Results and adds ours.
func (c *conn) writeHeaders(m *milter.Modifier) error {
	// Highest index first, so deleting one does not renumber the next.
	for i := len(c.tx.forged) - 1; i >= 0; i-- {
		if err := m.ChangeHeader(c.tx.forged[i], "Authentication-Results", ""); err != nil {
			return fmt.Errorf("removing forged Authentication-Results: %w", err)
		}
		c.srv.metrics.ForgedRemoved.Inc()
	}
	// Each insert at the same index goes above the previous ones: insert
	// the last field first.
	fields := c.fields()
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

// decideTx takes the transaction's decision at stage, once.
func (c *conn) decideTx(stage Stage) {
	d := c.decide(stage, c.tx)
	c.tx.decided, c.tx.decision, c.tx.stage = true, d, stage
}

// decide waits for the checks the stage can see, applies the policy, logs
// the decision and counts it.
func (c *conn) decide(stage Stage, tx *transaction) policy.Decision {
	start := time.Now()
	// The futures carry their own deadlines; this bound only guards
	// against a check that ignores its context. With every check done
	// (a warm cache) there is nothing to bound, and no timer is set.
	ctx := c.ctx
	if !c.iprev.ready() || !c.heloCheck.ready() || !c.spfHelo.ready() || tx != nil && !tx.spf.ready() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(c.ctx, c.set.Deadline+time.Second)
		defer cancel()
	}

	var res checkResults
	var findings []policy.Finding
	if c.iprev != nil {
		r, ok := c.iprev.wait(ctx)
		if !ok {
			r = iprev.Result{Verdict: iprev.TempError, IP: c.ip, Err: ctx.Err()}
		}
		res.iprev = &r
		findings = append(findings, policy.Finding{Check: policy.Iprev, Result: string(r.Verdict)})
	}
	if c.heloCheck != nil {
		r, ok := c.heloCheck.wait(ctx)
		if !ok {
			r = helo.Result{Verdict: helo.TempError, Err: ctx.Err()}
		}
		res.helo = &r
		findings = append(findings, policy.Finding{Check: policy.Helo, Result: string(r.Verdict)})
	}
	if tx != nil && tx.spf != nil {
		r, ok := tx.spf.wait(ctx)
		if !ok {
			r = spf.Result{Verdict: spf.TempError, Problem: "check deadline exceeded", Err: ctx.Err()}
		}
		res.spf = &r
		findings = append(findings, policy.Finding{Check: policy.SPF, Result: string(r.Verdict)})
	}
	if c.spfHelo != nil && (tx == nil || tx.sender != "") {
		r, ok := c.spfHelo.wait(ctx)
		if !ok {
			r = spf.Result{Identity: spf.Helo, Verdict: spf.TempError, Problem: "check deadline exceeded", Err: ctx.Err()}
		}
		res.spfHelo = &r
		findings = append(findings, policy.Finding{Check: policy.SPFHelo, Result: string(r.Verdict)})
	}

	vars := policy.Vars{IP: c.clientIP(), HELO: c.helo}
	if tx != nil {
		vars.Sender = tx.sender
		vars.Domain = senderDomain(tx.sender)
		if tx.sender == "" {
			vars.Domain = c.helo
		}
	} else {
		vars.Domain = c.helo
	}
	d := c.set.Policy.Decide(findings, vars)

	allowed := ""
	if res.iprev != nil && res.iprev.Verdict == iprev.Pass {
		for _, n := range res.iprev.Confirmed {
			if domainListed(n, c.set.AllowClientNames) {
				allowed = "allowed_client_name"
			}
		}
	}
	if allowed == "" && tx != nil && domainListed(senderDomain(tx.sender), c.set.AllowSenderDomains) &&
		(res.spf == nil || res.spf.Verdict != spf.Fail) {
		// A sender domain is trivially forged; only SPF can say the mail
		// is not from it, so an SPF fail still counts.
		allowed = "allowed_sender_domain"
	}
	if allowed != "" && d.Action != policy.Accept {
		c.srv.metrics.Exemptions.WithLabelValues(allowed).Inc()
		d = policy.Decision{Action: policy.Accept, Would: policy.Accept}
	}

	if tx != nil {
		tx.results = res
	}
	c.last, c.lastAllowed = res, allowed
	c.srv.metrics.Decisions.WithLabelValues(string(stage), d.Action.String(), strconv.FormatBool(d.DryRun())).Inc()
	c.logDecision(stage, tx, res, d, allowed, time.Since(start))
	return d
}

func (c *conn) logDecision(stage Stage, tx *transaction, r checkResults, d policy.Decision, allowed string, waited time.Duration) {
	attrs := []any{"stage", string(stage), "action", d.Action.String()}
	if d.DryRun() {
		attrs = append(attrs, "dry_run_would", d.Would.String())
	}
	if tx != nil {
		attrs = append(attrs, "queue_id", textsafe.Log(tx.queueID), "sender", textsafe.Log(orNullSender(tx.sender)))
	}
	attrs = append(attrs, "helo", textsafe.Log(c.helo))
	if r.iprev != nil {
		attrs = append(attrs, "iprev", string(r.iprev.Verdict))
		if len(r.iprev.Confirmed) > 0 {
			attrs = append(attrs, "rdns", textsafe.Log(r.iprev.Confirmed[0]))
		} else if len(r.iprev.PTRNames) > 0 {
			attrs = append(attrs, "ptr", textsafe.Log(r.iprev.PTRNames[0]))
		}
	}
	if r.helo != nil {
		attrs = append(attrs, "helo_result", string(r.helo.Verdict))
	}
	if r.spf != nil {
		attrs = append(attrs, "spf", string(r.spf.Verdict), "spf_identity", string(r.spf.Identity))
		if r.spf.Problem != "" {
			attrs = append(attrs, "spf_problem", textsafe.Log(r.spf.Problem))
		}
	}
	if r.spfHelo != nil {
		attrs = append(attrs, "spf_helo", string(r.spfHelo.Verdict))
	}
	if allowed != "" {
		attrs = append(attrs, "allowed", allowed)
	}
	if d.Code != 0 {
		attrs = append(attrs, "reply", fmt.Sprintf("%d %s %s", d.Code, d.Status, d.Text))
	}
	if tx != nil {
		attrs = append(attrs, "duration", time.Since(tx.start).Round(time.Microsecond).String())
	}
	attrs = append(attrs, "waited", waited.Round(time.Microsecond).String())
	c.log.Info("decision", attrs...)
}

func orNullSender(s string) string {
	if s == "" {
		return "<>"
	}
	return s
}

func senderDomain(sender string) string {
	if i := strings.LastIndexByte(sender, '@'); i >= 0 {
		return sender[i+1:]
	}
	return ""
}

// findingsText summarises the results for a quarantine reason.
func findingsText(r checkResults) string {
	var parts []string
	if r.iprev != nil {
		parts = append(parts, "iprev="+string(r.iprev.Verdict))
	}
	if r.helo != nil {
		parts = append(parts, "helo="+string(r.helo.Verdict))
	}
	if r.spf != nil {
		parts = append(parts, "spf="+string(r.spf.Verdict))
	}
	if r.spfHelo != nil {
		parts = append(parts, "spf_helo="+string(r.spfHelo.Verdict))
	}
	return strings.Join(parts, " ")
}
