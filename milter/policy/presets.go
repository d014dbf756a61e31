package policy

import (
	"fmt"
	"sort"

	"github.com/vouch-mail/vouch/checks/helo"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
)

// The default replies. RFC 7372 gives the enhanced codes: 5.7.23 SPF
// validation failed, 5.7.24 SPF validation error, 5.7.25 reverse DNS
// validation failed, 5.7.26 multiple authentication checks failed.
var (
	iprevNoPTRTemp = Rule{TempFail, 450, "4.7.25", "Client address {ip} has no reverse DNS (PTR) record"}
	iprevNoPTR     = Rule{Reject, 550, "5.7.25", "Client address {ip} has no reverse DNS (PTR) record"}
	iprevUnconf    = Rule{Reject, 550, "5.7.25", "Reverse DNS of {ip} does not resolve back to {ip}"}
	iprevPerm      = Rule{Reject, 550, "5.7.25", "Reverse DNS of {ip} cannot be verified"}
	iprevTemp      = Rule{TempFail, 451, "4.7.25", "Temporary DNS failure verifying reverse DNS of {ip}"}
	heloMismatch   = Rule{Reject, 550, "5.7.25", "HELO name {helo} does not match the reverse DNS of {ip}"}
	heloInvalid    = Rule{Reject, 550, "5.7.25", "HELO name {helo} is not a valid host name or address literal"}
	heloLitMis     = Rule{Reject, 550, "5.7.25", "HELO address literal {helo} is not the client address {ip}"}
	heloTemp       = Rule{TempFail, 451, "4.7.25", "Temporary DNS failure verifying HELO name {helo}"}
	spfFail        = Rule{Reject, 550, "5.7.23", "SPF: {ip} is not allowed to send mail from {domain}"}
	spfTemp        = Rule{TempFail, 451, "4.7.24", "SPF: temporary DNS failure checking {domain}"}
	spfPerm        = Rule{Reject, 550, "5.7.24", "SPF: the SPF record of {domain} is invalid"}
	spfSoft        = Rule{Action: Quarantine}
	heloSPFFail    = Rule{Reject, 550, "5.7.23", "SPF: {ip} is not allowed to use the HELO name {helo}"}
	heloSPFTemp    = Rule{TempFail, 451, "4.7.24", "SPF: temporary DNS failure checking HELO name {helo}"}
)

// RelayUnknown is the reply, with policy.relay_unparsed: tempfail, to a
// trusted relay's message whose Received fields name no original client.
var RelayUnknown = Rule{TempFail, 451, "4.7.0", "Cannot tell the original client of this relayed message"}

// Multiple is the reply when two or more checks reject.
var Multiple = Rule{Reject, 550, "5.7.26", "Multiple authentication checks failed: {checks}"}

// Presets are the named starting tables; config rules override cells.
//
//   - lenient records every result and never refuses mail.
//   - standard refuses only what is certain or temporary: no PTR at all
//     (tempfail, so a real sender fixing its DNS loses nothing), DNS
//     trouble (tempfail), and an SPF fail of the deciding identity.
//     RFC 5321 §4.1.4 forbids refusing mail only because the EHLO name
//     fails verification, so no HELO result refuses mail here.
//   - strict is the operator's explicit choice to refuse on every failed
//     identity check, HELO included.
var presets = map[string]func() Table{
	"lenient": func() Table { return Table{} },
	"standard": func() Table {
		return Table{
			Iprev: {Result(iprev.NoPTR): iprevNoPTRTemp, Result(iprev.TempError): iprevTemp},
			SPF:   {Result(spf.Fail): spfFail, Result(spf.TempError): spfTemp},
		}
	},
	"strict": func() Table {
		return Table{
			Iprev: {Result(iprev.NoPTR): iprevNoPTR, Result(iprev.Unconfirmed): iprevUnconf, Result(iprev.PermError): iprevPerm, Result(iprev.TempError): iprevTemp},
			Helo: {Result(helo.Mismatch): heloMismatch, Result(helo.Invalid): heloInvalid, Result(helo.LiteralMismatch): heloLitMis,
				Result(helo.TempError): heloTemp},
			SPF:     {Result(spf.Fail): spfFail, Result(spf.TempError): spfTemp, Result(spf.PermError): spfPerm, Result(spf.SoftFail): spfSoft},
			SPFHelo: {Result(spf.Fail): heloSPFFail, Result(spf.TempError): heloSPFTemp},
		}
	},
}

// PresetNames lists the presets, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns a fresh copy of the named table.
func Preset(name string) (Table, error) {
	p, ok := presets[name]
	if !ok {
		return nil, fmt.Errorf("unknown preset %q (want one of %v)", name, PresetNames())
	}
	return p(), nil
}

// texts are the reply texts for cells no preset refuses, used when an
// override names only an action.
var texts = map[Check]map[Result]string{
	Iprev: {Result(iprev.Pass): "Reverse DNS of {ip} is verified, but refused by local policy"},
	Helo: {
		Result(helo.Match):    "HELO name {helo} refused by local policy",
		Result(helo.Resolves): "HELO name {helo} is not the reverse DNS name of {ip}",
		Result(helo.Literal):  "HELO address literal {helo} refused by local policy",
	},
	SPF: {
		Result(spf.Pass):     "SPF: mail from {domain} refused by local policy",
		Result(spf.SoftFail): "SPF: {ip} is probably not allowed to send mail from {domain} (softfail)",
		Result(spf.Neutral):  "SPF: {domain} does not say whether {ip} may send its mail (neutral)",
		Result(spf.None):     "SPF: {domain} publishes no SPF record",
	},
	SPFHelo: {
		Result(spf.Pass):      "SPF: HELO name {helo} refused by local policy",
		Result(spf.SoftFail):  "SPF: {ip} is probably not allowed to use the HELO name {helo} (softfail)",
		Result(spf.Neutral):   "SPF: {helo} does not say whether {ip} may use it (neutral)",
		Result(spf.None):      "SPF: HELO name {helo} publishes no SPF record",
		Result(spf.PermError): "SPF: the SPF record of HELO name {helo} is invalid",
	},
}

// DefaultRule is the rule an override starts from when it names only an
// action: the standard or strict preset's reply for that action if either
// has one, else the preset's text with the code of the action, else a
// text from the table above.
func DefaultRule(check Check, result Result, action Action) Rule {
	if action != TempFail && action != Reject {
		return Rule{Action: action}
	}
	text := texts[check][result]
	if text == "" {
		text = fmt.Sprintf("%s check result %s for {ip}", check, result)
	}
	detail := "7.25"
	if check == SPF || check == SPFHelo {
		detail = "7.23"
		if result == Result(spf.TempError) || result == Result(spf.PermError) {
			detail = "7.24"
		}
	}
	for _, name := range []string{"standard", "strict"} {
		r, ok := presets[name]()[check][result]
		if ok && r.Action == action {
			return r
		}
		if ok && r.Text != "" {
			text, detail = r.Text, r.Status[2:]
		}
	}
	if action == TempFail {
		return Rule{TempFail, 451, "4." + detail, text}
	}
	return Rule{Reject, 550, "5." + detail, text}
}
