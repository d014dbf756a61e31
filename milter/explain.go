package milter

import (
	"context"
	"log/slog"
	"net"
	"strings"

	"github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-mail/vouch/checks/helo"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter/metrics"
	"github.com/vouch-mail/vouch/milter/policy"
)

// Request is one SMTP transaction, described without an MTA.
type Request struct {
	IP     net.IP
	HELO   string
	Sender string // "" is the null sender
	Rcpt   string // "" means a plain recipient, never exempt
	// MTAName is the MTA's j macro, the default authserv-id.
	MTAName string
	// Hostname is the MTA's name for the client; "" means "[ip]".
	Hostname string
	// AuthUser is the SMTP AUTH identity ({auth_authen}), if any.
	AuthUser string
}

// Explanation is what the daemon would do with a Request, and why.
type Explanation struct {
	// Exempt says why checks were skipped ("trusted_network",
	// "authenticated", "local"), "" if they ran.
	Exempt  string
	Iprev   *iprev.Result
	Helo    *helo.Result
	SPF     *spf.Result // the deciding identity: MAIL FROM, or HELO for <>
	SPFHelo *spf.Result // the HELO identity of a non-null sender
	// Allowed names the allowlist that turned a refusal into accept
	// ("allowed_client_name", "allowed_sender_domain"), "" if none did.
	Allowed string
	// Stage is where the MTA gets the answer; Decision is the policy's.
	Stage    Stage
	Decision policy.Decision
	// ExemptRecipient: Rcpt is accepted whatever the decision.
	ExemptRecipient bool
	// Reply is what the MTA tells the client at Stage ("550 5.7.23 ..."),
	// "" when the mail is accepted.
	Reply string
	// Headers are the fields added to an accepted message, top first.
	Headers []Field
}

// Explain runs the daemon's own session code for req, callback by
// callback as an MTA would drive it, and reports the outcome. Logs go to
// log (nil: discarded); metrics to a private registry.
func Explain(ctx context.Context, s *Settings, req Request, log *slog.Logger) Explanation {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := NewServer(s, Options{Logger: log, Metrics: metrics.New(prometheus.NewRegistry(), "explain")})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &conn{srv: srv, set: s, ctx: ctx, log: log}
	sess := session{c}

	host := req.Hostname
	ip := req.IP
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	if host == "" {
		host = "[" + ip.String() + "]"
	}
	family := "tcp4"
	if ip.To4() == nil {
		family = "tcp6"
	}
	macros := func(kv ...string) *milter.Modifier {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return &milter.Modifier{Macros: m}
	}

	var e Explanation
	answer := func(stage Stage, r milter.Response) bool {
		if text := replyText(r); text != "" {
			e.Stage, e.Reply = stage, text
			return true
		}
		return false
	}
	done := func() Explanation {
		e.Exempt = c.exempt
		if c.tx != nil {
			if e.Exempt == "" {
				e.Exempt = c.tx.exempt
			}
			e.Decision = c.tx.decision
		} else if c.heloDecision != nil {
			e.Decision = *c.heloDecision
		}
		e.Iprev, e.Helo, e.SPF, e.SPFHelo = c.last.iprev, c.last.helo, c.last.spf, c.last.spfHelo
		e.Allowed = c.lastAllowed
		return e
	}

	r, _ := sess.Connect(host, family, 25, ip, macros("j", req.MTAName))
	if answer(StageConnect, r) {
		return done()
	}
	r, _ = sess.Helo(req.HELO, macros())
	if answer(StageHelo, r) {
		return done()
	}
	r, _ = sess.MailFrom(req.Sender, macros("{auth_authen}", req.AuthUser))
	if answer(StageMail, r) {
		return done()
	}
	rcpt := req.Rcpt
	if rcpt == "" {
		rcpt = "recipient@" + req.MTAName
	}
	r, _ = sess.RcptTo(rcpt, macros())
	if answer(StageRcpt, r) {
		return done()
	}
	if c.tx != nil && c.tx.decision.Action >= policy.TempFail {
		e.ExemptRecipient = true
	}
	e.Stage = StageRcpt
	if c.exempt == "" && c.tx != nil && c.tx.exempt == "" {
		if !c.tx.decided {
			c.decideTx(StageEOM)
		}
		e.Headers = c.fields()
	}
	return done()
}

// replyText renders a refusal as the MTA would send it, "" otherwise.
func replyText(r milter.Response) string {
	if r == nil {
		return ""
	}
	msg := r.Response()
	switch milter.ActionCode(msg.Code) {
	case milter.ActReplyCode:
		// Postfix and Sendmail send "%%" as "%".
		return strings.ReplaceAll(strings.TrimRight(string(msg.Data), "\x00"), "%%", "%")
	case milter.ActTempFail:
		return "451 4.7.1 Service unavailable - try again later"
	case milter.ActReject:
		return "550 5.7.1 Command rejected"
	}
	return ""
}
