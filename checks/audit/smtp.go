package audit

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vouch-mail/vouch/checks/iprev"
)

// EHLOName is the name the audit introduces itself with: a reserved name
// (RFC 6761 .invalid) that says what the connection is.
const EHLOName = "vouch-audit.invalid"

// NoSuchUser is a local part that should not exist anywhere; VRFY
// answering it differently from postmaster tells addresses apart.
const NoSuchUser = "vouch-audit-no-such-user"

// probeCommands is the dialogue after the greeting.
var probeCommands = []string{"EHLO " + EHLOName, "VRFY postmaster", "VRFY " + NoSuchUser, "EXPN postmaster", "QUIT"}

func (a *auditor) smtpFindings(rev iprev.Result, d *dialogue) {
	a.rep.Dialogue = d.steps
	if d.dialErr != nil {
		a.rep.add("smtp_connect", Fail, "cannot connect to "+d.addr+": "+d.dialErr.Error(),
			"check the address, that your MTA listens on it, and that no firewall is in the way")
		return
	}
	banner := d.step("")
	switch {
	case banner == nil || banner.Error != "":
		a.rep.add("smtp_connect", Fail, "no greeting from "+d.addr+": "+stepError(banner),
			"check that an SMTP server listens on "+d.addr)
		return
	case banner.Code != 220:
		a.rep.add("smtp_connect", Fail, d.addr+" greets with "+firstLine(banner),
			"a 220 greeting is needed for mail to be delivered; check your MTA's client restrictions and logs")
		return
	}
	a.rep.add("smtp_connect", Pass, d.addr+" greets with "+firstLine(banner), "")
	names := rev.Confirmed
	if len(names) == 0 {
		names = rev.PTRNames
	}
	a.nameFinding("smtp_banner", "banner", firstWord(banner.text[0]), names,
		"set the banner name (Postfix: myhostname, used by smtpd_banner)")

	ehlo := d.step("EHLO " + EHLOName)
	switch {
	case ehlo == nil || ehlo.Error != "":
		a.rep.add("smtp_ehlo", Fail, "no answer to EHLO: "+stepError(ehlo), "check your MTA's logs")
		return
	case ehlo.Code != 250:
		a.rep.add("smtp_ehlo", Warn, "EHLO "+EHLOName+" refused: "+firstLine(ehlo),
			"check your MTA's HELO restrictions (Postfix: smtpd_helo_restrictions)")
	default:
		a.nameFinding("smtp_ehlo", "EHLO", firstWord(ehlo.text[0]), names,
			"set the name your MTA answers EHLO with (Postfix: myhostname)")
		exts := ehlo.text[1:]
		tls := slices.ContainsFunc(exts, func(l string) bool { return strings.EqualFold(firstWord(l), "STARTTLS") })
		if tls {
			a.rep.add("smtp_starttls", Pass, "STARTTLS offered; extensions: "+strings.Join(exts, ", "), "")
		} else {
			a.rep.add("smtp_starttls", Warn, "no STARTTLS: mail to this server travels in clear; extensions: "+strings.Join(exts, ", "),
				"offer STARTTLS (Postfix: smtpd_tls_cert_file, smtpd_tls_key_file, smtpd_tls_security_level = may; Sendmail: confSERVER_CERT, confSERVER_KEY)")
		}
	}

	a.vrfy(d.step("VRFY postmaster"), d.step("VRFY "+NoSuchUser))
	a.expn(d.step("EXPN postmaster"))
}

// nameFinding compares the name a server calls itself with the IP's rDNS.
func (a *auditor) nameFinding(id, what, name string, rdns []string, fix string) {
	shown := Quote(name)
	bare := strings.TrimSuffix(name, ".")
	switch {
	case len(rdns) == 0:
		a.rep.add(id, Warn, fmt.Sprintf("%s name %s; %s has no rDNS name to compare with", what, shown, a.ipStr),
			fmt.Sprintf("set the PTR of %s (see ptr) to %s", a.ipStr, shown))
	case slices.ContainsFunc(rdns, func(n string) bool { return strings.EqualFold(n, bare) }):
		a.rep.add(id, Pass, fmt.Sprintf("%s name %s is the rDNS name of %s", what, shown, a.ipStr), "")
	default:
		a.rep.add(id, Warn, fmt.Sprintf("%s name %s is not the rDNS name %s of %s", what, shown, rdns[0], a.ipStr),
			fix+" to "+rdns[0])
	}
}

func (a *auditor) vrfy(known, unknown *Step) {
	fix := "disable VRFY (Postfix: disable_vrfy_command = yes; Sendmail: PrivacyOptions novrfy)"
	if known == nil || known.Error != "" {
		a.rep.add("smtp_vrfy", Warn, "no answer to VRFY postmaster: "+stepError(known), "")
		return
	}
	seen := "VRFY postmaster: " + firstLine(known)
	if unknown != nil && unknown.Error == "" {
		seen += "; VRFY " + NoSuchUser + ": " + firstLine(unknown)
	}
	switch {
	case discloses(known.Code) || unknown != nil && discloses(unknown.Code):
		a.rep.add("smtp_vrfy", Fail, seen+" (250/251 disclose addresses)", fix)
	case unknown != nil && unknown.Error == "" && known.Code/100 == 2 && unknown.Code/100 == 5:
		a.rep.add("smtp_vrfy", Warn, seen+" (VRFY tells existing addresses from unknown ones)", fix)
	default:
		a.rep.add("smtp_vrfy", Pass, seen, "")
	}
}

func (a *auditor) expn(st *Step) {
	switch {
	case st == nil || st.Error != "":
		a.rep.add("smtp_expn", Warn, "no answer to EXPN postmaster: "+stepError(st), "")
	case discloses(st.Code):
		a.rep.add("smtp_expn", Fail, "EXPN postmaster: "+firstLine(st)+" (discloses list members)",
			"disable EXPN (Sendmail: PrivacyOptions noexpn; Postfix has no EXPN)")
	default:
		a.rep.add("smtp_expn", Pass, "EXPN postmaster: "+firstLine(st), "")
	}
}

// discloses: 250 and 251 confirm an address (RFC 5321 §3.5.3); 252 is
// "cannot verify, but will try".
func discloses(code int) bool { return code == 250 || code == 251 }

func stepError(st *Step) string {
	if st == nil {
		return "the connection ended before"
	}
	return st.Error
}

func firstLine(st *Step) string {
	if len(st.Reply) == 0 {
		return strconv.Itoa(st.Code)
	}
	return st.Reply[0]
}

// firstWord is the first space-separated word of s (a reply's text).
func firstWord(s string) string {
	s = strings.TrimLeft(s, " ")
	if i := strings.IndexByte(s, ' '); i >= 0 {
		return s[:i]
	}
	return s
}
