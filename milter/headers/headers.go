// Package headers formats the Authentication-Results (RFC 8601) and
// Received-SPF (RFC 7208 §9.1) header values vouch adds to a message, and
// recognises incoming Authentication-Results that claim to be ours
// (RFC 8601 §5). It is pure string work: no milter, no metrics.
//
// Everything the SMTP client chose (HELO, sender) and everything from DNS
// (SPF terms, names in problems) is untrusted. A value goes into a header
// only in a form that cannot end the header, start another, or change how
// the header parses: printable ASCII, quoted when it is not a bare token,
// never containing ';', '"' or '\'. A value that cannot be made so is left
// out (for a sender, its domain is tried first); free text (reasons,
// comments) has such bytes replaced with '?'.
//
// Folding: values are folded with "\n\t", a bare LF. The milter protocol
// carries header values with LF line ends: libmilter's smfi_insheader
// documentation asks for "\n" followed by whitespace to make a multi-line
// header and says the MTA adds the CR; Postfix turns a CRLF into a doubled
// CR, which is why go-milter rewrites CRLF to LF anyway. Lines stay under
// 78 characters (with the header name) unless a single value is longer.
package headers

import (
	"net"
	"strings"

	"github.com/emersion/go-msgauth/authres"

	"github.com/vouch-mail/vouch/checks/dnsname"
	"github.com/vouch-mail/vouch/checks/helo"
	"github.com/vouch-mail/vouch/checks/spf"
)

// Header field names, as inserted.
const (
	AuthenticationResultsField = "Authentication-Results"
	ReceivedSPFField           = "Received-SPF"
)

// Fold is the line break inside a folded header value.
const Fold = "\n\t"

// maxLine is the longest line we build, header name included: RFC 5322
// §2.1.1 asks for at most 78 characters.
const maxLine = 77

// maxValue bounds an untrusted value copied into a header. 254 is the
// longest address a 256-octet RFC 5321 path can hold.
const maxValue = 254

// maxText bounds free text (reasons, problems) copied into a header.
const maxText = 120

// IprevInfo is the iprev result for Authentication-Results.
type IprevInfo struct {
	Result string // pass | fail | temperror | permerror
	IP     net.IP // the client address, reported as policy.iprev
}

// Input is what the headers report.
type Input struct {
	// AuthServID names this receiver in Authentication-Results: the
	// authserv_id setting, by default the MTA's j macro (the caller
	// supplies it). Empty means Receiver, then "localhost".
	AuthServID  string
	ClientIP    net.IP
	HELO        string      // as the client sent it (untrusted)
	Iprev       *IprevInfo  // nil when not checked
	SPFMailFrom *spf.Result // nil when not checked (trusted client etc.)
	SPFHelo     *spf.Result // nil when the HELO identity was not checked
	// HeloResult is the HELO check's verdict (checks/helo: match,
	// resolves, literal, mismatch, invalid, literal-mismatch,
	// temperror), "" when not checked. RFC 8601 registers no HELO
	// method, so it is written as a comment of the iprev result,
	// "iprev=pass (HELO mail.example.com: match)", with HELO when that
	// is a plain domain name or IP address literal; only with Iprev, and
	// any other value is left out.
	HeloResult string
	// Receiver is Received-SPF's receiver= (the MTA's host name, the j
	// macro).
	Receiver string
}

// AuthenticationResults returns the Authentication-Results value (without
// the field name), one result per line:
//
//	mx.example.org;
//		iprev=pass (HELO mail.example.com: match) policy.iprev=192.0.2.10;
//		spf=pass smtp.mailfrom=alice@example.com;
//		spf=pass smtp.helo=mail.example.com
//
// With nothing to report it is "mx.example.org; none".
func AuthenticationResults(in Input) string {
	var results []authres.Result
	if in.Iprev != nil {
		// RFC 8601 §2.7.3 results only: anything else is left out.
		switch v := authres.ResultValue(in.Iprev.Result); v {
		case authres.ResultPass, authres.ResultFail, authres.ResultTempError, authres.ResultPermError:
			r := &authres.IPRevResult{Value: v}
			if in.Iprev.IP != nil {
				r.IP = in.Iprev.IP.String()
			}
			results = append(results, r)
		}
	}
	if in.SPFMailFrom != nil {
		results = append(results, &authres.SPFResult{
			Value:  spfValue(in.SPFMailFrom.Verdict),
			Reason: reason(in.SPFMailFrom),
			From:   mailFromValue(in.SPFMailFrom.Sender),
		})
	}
	if in.SPFHelo != nil {
		helo := in.HELO
		if helo == "" {
			helo = in.SPFHelo.Domain
		}
		helo = propValue(helo)
		results = append(results, &authres.SPFResult{
			Value:  spfValue(in.SPFHelo.Verdict),
			Reason: reason(in.SPFHelo),
			Helo:   helo,
		})
	}

	id := authServID(in)
	if len(results) == 0 {
		return authres.Format(id, nil)
	}
	// authres.Format joins the results with "; " and the properties with
	// spaces. No value we pass it holds a ';' (propValue, freeText and
	// sanitiseID see to it), so the split below is exact; we fold each
	// result onto its own line.
	parts := strings.Split(authres.Format(id, results), "; ")
	var heloWords []string
	if in.Iprev != nil {
		heloWords = strings.Fields(heloComment(in.HeloResult, in.HELO))
	}
	f := newFolder(len(AuthenticationResultsField) + 2)
	f.add("", parts[0])
	for _, p := range parts[1:] {
		f.text(";")
		f.breakLine()
		for i, atom := range splitAtoms(strings.TrimRight(p, " ")) {
			if i == 0 {
				f.text(atom)
			} else {
				f.add(" ", atom)
			}
			if i == 0 && strings.HasPrefix(atom, "iprev=") {
				// The comment goes where RFC 8601 §2.2 allows CFWS
				// between the result and its properties (where most
				// receivers put theirs); it may fold between words.
				for _, w := range heloWords {
					f.add(" ", w)
				}
			}
		}
	}
	return f.String()
}

// heloComment is the comment carrying the HELO verdict: "(HELO name:
// verdict)", or "(HELO: verdict)" when the name is not a plain domain
// name or address literal; "" for a verdict that is not one of
// checks/helo's. The name is the client's: it goes in only if it is
// letters, digits, '-', '.' (or an IP address in brackets), so it can
// neither end the comment nor look like a property ("a=b") to parsers
// that split results at white space and '='.
func heloComment(verdict, name string) string {
	switch helo.Verdict(verdict) {
	case helo.Match, helo.Resolves, helo.Literal, helo.Mismatch, helo.Invalid, helo.LiteralMismatch, helo.TempError:
	default:
		return ""
	}
	if len(name) <= maxValue && (isDomainName(strings.TrimSuffix(name, ".")) || isAddressLiteral(name)) {
		return "(HELO " + name + ": " + verdict + ")"
	}
	return "(HELO: " + verdict + ")"
}

// isAddressLiteral accepts "[IPv4]" and "[IPv6:addr]" (RFC 5321 §4.1.3)
// of valid addresses.
func isAddressLiteral(s string) bool {
	if len(s) < 3 || s[0] != '[' || s[len(s)-1] != ']' {
		return false
	}
	inner := s[1 : len(s)-1]
	if v6, ok := strings.CutPrefix(inner, "IPv6:"); ok {
		ip := net.ParseIP(v6)
		return ip != nil && strings.Contains(v6, ":")
	}
	ip := net.ParseIP(inner)
	return ip != nil && ip.To4() != nil && !strings.Contains(inner, ":")
}

// spfValue maps a verdict to an RFC 8601 §2.7.2 result; anything else is
// reported as permerror rather than passed through.
func spfValue(v spf.Verdict) authres.ResultValue {
	switch v {
	case spf.Pass, spf.Fail, spf.SoftFail, spf.Neutral, spf.None, spf.TempError, spf.PermError:
		return authres.ResultValue(v)
	}
	return authres.ResultPermError
}

func reason(r *spf.Result) string {
	switch r.Verdict {
	case spf.None, spf.TempError, spf.PermError:
		return freeText(r.Problem)
	}
	return ""
}

// mailFromValue is smtp.mailfrom: the address, or only its domain when the
// address cannot be written safely (RFC 8601 §2.3 pvalue allows a bare
// domain-name), or nothing.
func mailFromValue(addr string) string {
	if v := propValue(addr); v != "" {
		return v
	}
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return propValue(addr[at+1:])
	}
	return ""
}

// propValue returns s if authres.Format will write it as a valid RFC 8601
// pvalue, else "". authres quotes a value unless it holds only letters,
// digits and address punctuation; such a bare value must then be a token
// or [local-part]@domain-name, which authres does not check ("@" alone,
// "a/b", "x@y" would go out bare and invalid).
func propValue(s string) string {
	if !safeValue(s) {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLetDig(c) && strings.IndexByte("#$%&'*+,./-@[]\\^_`{|}~", c) < 0 {
			return s // authres quotes it
		}
	}
	if isToken(s) {
		return s
	}
	at := strings.LastIndexByte(s, '@')
	if at >= 0 && (at == 0 || isDotAtom(s[:at])) && isDomainName(s[at+1:]) {
		return s
	}
	return ""
}

func isLetDig(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isDomainName is RFC 6376's domain-name, which RFC 8601 uses: two or
// more labels of letters, digits and inner hyphens.
func isDomainName(s string) bool { return dnsname.Valid(s, dnsname.Header) }

func authServID(in Input) string {
	id := in.AuthServID
	if id == "" {
		id = in.Receiver
	}
	if id == "" {
		id = "localhost"
	}
	if ValidAuthServID(id) {
		return id
	}
	return `"` + sanitiseID(id) + `"`
}

// sanitiseID turns an authserv-id that is not a token into the content of
// a quoted-string that every parser reads whole: no spaces (authres.Parse
// would take what follows one for a version) and nothing but token
// characters, the rest replaced with '?'.
func sanitiseID(id string) string {
	if len(id) > maxValue {
		id = id[:maxValue]
	}
	b := []byte(id)
	for i, c := range b {
		if !tokenChar(c) {
			b[i] = '?'
		}
	}
	return string(b)
}

// ValidAuthServID reports whether id can be used as an authserv-id as is:
// an RFC 2045 token of at most 254 octets, such as a host name.
// Configuration should insist on it; other values are written quoted,
// with every character outside a token replaced by '?', and then do not
// match what ClaimsAuthServID is asked to find.
func ValidAuthServID(id string) bool {
	return isToken(id) && len(id) <= maxValue && strings.Trim(id, ".") != ""
}

// safeValue reports whether an untrusted value can go into a header: 1 to
// maxValue octets of printable ASCII without spaces, ';', '"', '\' (which
// would need escaping that naive parsers get wrong), nor ',', '[' or ']'
// (which authres.Format would leave unquoted, making an invalid pvalue).
func safeValue(s string) bool {
	if s == "" || len(s) > maxValue {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`;"\,[]`, c) >= 0 {
			return false
		}
	}
	return true
}

// clip cuts free text to maxText octets, marking the cut.
func clip(s string) string {
	if len(s) > maxText {
		return s[:maxText-3] + "..."
	}
	return s
}

// freeText makes s safe inside a quoted-string: printable ASCII, '"', '\'
// and ';' replaced with '?', cut to maxText octets.
func freeText(s string) string {
	b := []byte(clip(s))
	for i, c := range b {
		if c < ' ' || c >= 0x7f || c == '"' || c == '\\' || c == ';' {
			b[i] = '?'
		}
	}
	return string(b)
}

// commentText makes s safe inside a comment: as freeText, and no
// parentheses either. It may be long: the folder breaks it at spaces.
func commentText(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c >= 0x7f || c == '"' || c == '\\' || c == ';' || c == '(' || c == ')' {
			b[i] = '?'
		}
	}
	return string(b)
}

// isToken reports whether s is an RFC 2045 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChar(s[i]) {
			return false
		}
	}
	return true
}

func tokenChar(c byte) bool {
	return c > ' ' && c < 0x7f && strings.IndexByte(`()<>@,;:\"/[]?=`, c) < 0
}

// dotAtomOrQuoted writes a Received-SPF value: an RFC 5322 dot-atom as
// is, anything else (an address, an IPv6 address, "ip4:...") quoted. The
// callers pass only safeValue strings, which need no escaping.
func dotAtomOrQuoted(s string) string {
	if isDotAtom(s) {
		return s
	}
	return `"` + s + `"`
}

func isDotAtom(s string) bool {
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
				strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0) {
				return false
			}
		}
	}
	return true
}

// splitAtoms splits a result at the spaces outside quoted strings.
func splitAtoms(s string) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case ' ':
			if !quoted {
				if i > start {
					out = append(out, s[start:i])
				}
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
