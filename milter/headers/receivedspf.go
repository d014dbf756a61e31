package headers

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"
	"github.com/vouch-mail/vouch/checks/spf"
)

// ReceivedSPF returns the Received-SPF value (without the field name) for
// the identity that decided: MAIL FROM when it was checked, else HELO (the
// null sender's). ok is false when neither was checked.
//
//	pass (mx.example.org: domain of alice@example.com designates
//		192.0.2.10 as permitted sender) client-ip=192.0.2.10;
//		envelope-from="alice@example.com"; helo=mail.example.com;
//		identity=mailfrom; receiver=mx.example.org;
//		mechanism="ip4:192.0.2.0/24"
func ReceivedSPF(in Input) (value string, ok bool) {
	r := in.SPFMailFrom
	if r == nil {
		r = in.SPFHelo
	}
	if r == nil {
		return "", false
	}
	verdict := spfValue(r.Verdict)

	f := newFolder(len(ReceivedSPFField) + 2)
	f.text(string(verdict))
	words := strings.Fields(comment(in, r, spf.Verdict(verdict)))
	for i, w := range words {
		if i == 0 {
			w = "(" + w
		}
		if i == len(words)-1 {
			w += ")"
		}
		f.add(" ", w)
	}

	var pairs []string
	pair := func(key, v string) {
		pairs = append(pairs, key+"="+dotAtomOrQuoted(v))
	}
	if in.ClientIP != nil {
		pair("client-ip", in.ClientIP.String())
	}
	if safeValue(r.Sender) {
		pair("envelope-from", r.Sender)
	}
	if safeValue(in.HELO) {
		pair("helo", in.HELO)
	}
	if r.Identity == spf.MailFrom || r.Identity == spf.Helo {
		pair("identity", string(r.Identity))
	}
	if safeValue(in.Receiver) {
		pair("receiver", in.Receiver)
	}
	switch verdict {
	case authres.ResultPass, authres.ResultFail, authres.ResultSoftFail, authres.ResultNeutral:
		if safeValue(r.Mechanism) {
			pair("mechanism", r.Mechanism)
		}
	default:
		if p := freeText(r.Problem); p != "" {
			pairs = append(pairs, "problem="+`"`+p+`"`)
		}
	}
	for i, p := range pairs {
		sep := " "
		if i > 0 {
			sep = "; "
		}
		f.add(sep, p)
	}
	return f.String(), true
}

// comment is Received-SPF's human-readable explanation (RFC 7208 §9.1),
// in the wording SPF implementations have long used.
func comment(in Input, r *spf.Result, v spf.Verdict) string {
	who := "the sender"
	if s := mailFromValue(r.Sender); s != "" {
		who = s
	}
	ip := "the client"
	if in.ClientIP != nil {
		ip = in.ClientIP.String()
	}
	var text string
	switch v {
	case spf.Pass:
		text = "domain of " + who + " designates " + ip + " as permitted sender"
	case spf.Fail:
		text = "domain of " + who + " does not designate " + ip + " as permitted sender"
	case spf.SoftFail:
		text = "domain of transitioning " + who + " does not designate " + ip + " as permitted sender"
	case spf.Neutral:
		text = ip + " is neither permitted nor denied by domain of " + who
	case spf.None:
		if r.Sender != "" {
			text = "domain of " + who + " does not designate permitted sender hosts"
		} else {
			text = clip(r.Problem)
		}
	case spf.TempError:
		text = "error in processing during lookup of " + who + ": " + clip(r.Problem)
	default:
		text = "permanent error in processing domain of " + who + ": " + clip(r.Problem)
	}
	if rcv := in.Receiver; safeValue(rcv) && text != "" {
		text = rcv + ": " + text
	}
	return commentText(text)
}
