package milter

import (
	"context"
	"log/slog"
	"net"

	"github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-mail/vouch/milter/config"
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

// Explanation is what the daemon would do with a Request, and why: the
// transaction's Outcome as the decision step took it.
type Explanation struct {
	// Exempt says why checks were skipped, "" if they ran; the Outcome
	// is then empty but for its Stage.
	Exempt Exemption
	Outcome
	// ExemptRecipient: Rcpt is accepted although the decision refuses.
	ExemptRecipient bool
	// Reply is what the client is told at Stage ("550 5.7.23 ...", with
	// "%" as the MTA sends it), "" when the mail is accepted.
	Reply string
	// Headers are the fields added to an accepted message, top first.
	Headers []Field
}

// Explain runs the daemon's own session code for req, callback by
// callback as an MTA would drive it, and reports the outcome. Logs go to
// log (nil: discarded); metrics to a private registry.
func Explain(ctx context.Context, cfg *config.Config, r Resolver, req Request, log *slog.Logger) (Explanation, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv, err := NewServer(cfg, r, Options{Logger: log, Metrics: metrics.New(prometheus.NewRegistry(), "explain")})
	if err != nil {
		return Explanation{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &conn{srv: srv, gen: srv.gen.Load(), ctx: ctx, log: log}
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
	// refused reports whether the outcome at hand was answered with a
	// refusal, and fills the explanation from it.
	refused := func(o *Outcome) bool {
		if o == nil || !o.Decision.Refuses() {
			return false
		}
		e.Outcome, e.Reply = *o, o.Decision.Reply()
		return true
	}

	sess.Connect(host, family, 25, ip, macros("j", req.MTAName))
	e.Exempt = c.exempt
	sess.Helo(req.HELO, macros())
	if refused(c.heloRefusal) {
		return e, nil
	}
	sess.MailFrom(req.Sender, macros("{auth_authen}", req.AuthUser))
	if e.Exempt == "" {
		e.Exempt = c.tx.exempt
	}
	if e.Exempt != "" {
		e.Stage = policy.StageRcpt
		return e, nil
	}
	if refused(c.tx.outcome) {
		return e, nil
	}
	rcpt := req.Rcpt
	if rcpt == "" {
		rcpt = "recipient@" + req.MTAName
	}
	sess.RcptTo(rcpt, macros())
	o := c.tx.outcome
	if len(c.tx.exemptRecipients) == 0 && refused(o) {
		return e, nil
	}
	e.Outcome = *o
	e.ExemptRecipient = len(c.tx.exemptRecipients) > 0
	e.Headers = c.fields(o)
	return e, nil
}
