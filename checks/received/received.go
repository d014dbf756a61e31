// Package received reads Received header fields (RFC 5321 §4.4) as
// Postfix and Sendmail write them, and finds, behind a chain of trusted
// relays, the hop that names the message's original client.
//
// A Received field is mostly free text written by whoever added it, with
// the client's HELO copied in verbatim. The parser is therefore strict
// where a client could forge a hop: the from clause must come first and
// the by clause second (RFC 5321 order), and exactly one comment of the
// from clause may hold TCP-info ("name [IP]", "[IP]", "unknown [IP]"). A
// HELO that smuggles a second TCP-info comment in front of the real one
// makes the field ambiguous, which is an error, never a forged hop.
//
// The package is pure string work: no DNS, no milter, no logging. Hop
// strings (Helo above all) are as the field holds them: untrusted, to be
// sanitised by whoever logs or reports them.
package received

import (
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vouch-mail/vouch/checks/dnsname"
)

// MaxFieldLen bounds one Received field value, in octets. Postfix's and
// Sendmail's fields, TLS comments included, stay under 600; a longer one
// is refused rather than scanned.
const MaxFieldLen = 4096

// Hop is what one Received field says about one SMTP hop: who connected
// (From side) to whom (By side).
type Hop struct {
	// Helo is the From-domain: the HELO/EHLO name the client gave, as the
	// receiving MTA recorded it (Postfix writes the reverse name, or
	// "unknown", when the client sent none; Sendmail writes nothing, and
	// Helo is ""). Untrusted: whatever the client typed.
	Helo string
	// ReverseName is the client's reverse DNS name as the receiver
	// recorded it; "" when it wrote "unknown" or no name at all. Postfix
	// writes a name only when forward-confirmed; Sendmail writes it
	// anyway and sets Forged when it was not.
	ReverseName string
	// Forged is Sendmail's "(may be forged)": the reverse name did not
	// resolve back to IP.
	Forged bool
	// IP is the client's address from the TCP-info (IPv4-mapped IPv6
	// addresses unmapped); always valid in a Hop returned without error.
	IP netip.Addr
	// Port is the client's port when the receiver recorded one ("[IP]:port"),
	// else 0.
	Port uint16
	// By is the By-domain: the receiving host.
	By string
	// Via, With, ID and For are the optional clauses ("" when absent):
	// With is the protocol (ESMTP, ESMTPS, ESMTPSA, SMTP, LMTP...), ID the
	// receiver's queue id, For the recipient path as written ("<a@b>").
	Via, With, ID, For string
	// Date is the time stamp after ';', zero when it did not parse.
	Date time.Time
	// Complete reports whether the whole field followed the grammar:
	// clauses in order, each at most once, and a valid date after ';'.
	// A Hop can be returned without error and incomplete when only the
	// part after the by clause is odd.
	Complete bool
}

// Errors Parse wraps; test with errors.Is.
var (
	ErrTooLong   = errors.New("received: field too long")
	ErrNoFrom    = errors.New("received: no from clause")
	ErrNoClient  = errors.New("received: no client address in the from clause")
	ErrAmbiguous = errors.New("received: more than one client address in the from clause")
	ErrSyntax    = errors.New("received: syntax error")
)

// Parse reads one Received field value (without the "Received:" name;
// folded or not). It returns an error when the field is too long, cannot
// be tokenised, or has no from clause naming exactly one client address
// followed by a by clause: such a field says nothing reliable about who
// connected. Oddities after the by clause only clear Hop.Complete; a
// caller that acts on the client address should, as FindOrigin does,
// accept only a Complete hop (an incomplete one may be a HELO that wrote
// a by clause of its own).
func Parse(value string) (Hop, error) {
	if len(value) > MaxFieldLen {
		return Hop{}, fmt.Errorf("%w (%d octets, at most %d)", ErrTooLong, len(value), MaxFieldLen)
	}
	items, err := lex(value)
	if err != nil {
		return Hop{}, err
	}
	var date []item
	hasDate := false
	for i, it := range items {
		if it.kind == semicolon {
			items, date, hasDate = items[:i], items[i+1:], true
			break
		}
	}
	for _, it := range date {
		if it.kind == semicolon {
			// date-time holds no ';': what follows a second one was
			// written after a HELO that forged a date of its own.
			return Hop{}, fmt.Errorf("%w: a second ';'", ErrSyntax)
		}
	}
	var h Hop
	i := 0
	clientComments := 0
	switch {
	case len(items) >= 2 && items[0].isWord("from") && items[1].kind == word && !items[1].isKeyword():
		h.Helo = items[1].text
		i = 2
	case len(items) >= 1 && items[0].kind == comment && hasFromPrefix(items[0].text):
		// Sendmail without HELO: "(from name [IP])" stands for the whole
		// from clause.
		if !h.tcpInfo(strings.TrimSpace(items[0].text[len("from"):])) {
			return Hop{}, fmt.Errorf("%w: %q", ErrNoClient, items[0].text)
		}
		clientComments = 1
		i = 1
	default:
		return Hop{}, ErrNoFrom
	}
	// Comments of the from clause: TCP-info, "(may be forged)", and
	// whatever else the receiver notes (TLS, authentication).
	for ; i < len(items) && items[i].kind == comment; i++ {
		c := items[i].text
		switch {
		case h.tcpInfo(c):
			clientComments++
		case strings.EqualFold(strings.TrimSpace(c), "may be forged"):
			h.Forged = true
		}
	}
	switch {
	case clientComments == 0:
		return Hop{}, ErrNoClient
	case clientComments > 1:
		return Hop{}, ErrAmbiguous
	}
	if i+1 >= len(items) || !items[i].isWord("by") || items[i+1].kind != word || items[i+1].isKeyword() {
		return Hop{}, fmt.Errorf("%w: the from clause is not followed by a by clause", ErrSyntax)
	}
	h.By = items[i+1].text
	i += 2

	h.Complete = h.optInfo(items[i:])
	if d, ok := parseDate(date); ok && hasDate {
		h.Date = d
	} else {
		h.Complete = false
	}
	return h, nil
}

// parseDate reads RFC 5322 date-time, comments aside: "[day ,] d mon
// yyyy hh:mm[:ss] zone" is five or six words. The count matters because
// net/mail.ParseDate ignores whatever follows the zone.
func parseDate(items []item) (time.Time, bool) {
	var words []string
	for _, it := range items {
		if it.kind == word {
			words = append(words, it.text)
		}
	}
	if len(words) < 5 || len(words) > 6 {
		return time.Time{}, false
	}
	d, err := mail.ParseDate(strings.Join(words, " "))
	return d, err == nil
}

// optInfo reads Opt-info: [Via] [With] [ID] [For] then any
// Additional-Registered-Clauses (Atom FWS String), comments anywhere. It
// reports whether they followed the grammar.
func (h *Hop) optInfo(items []item) bool {
	fields := []*string{&h.Via, &h.With, &h.ID, &h.For}
	next := 0 // index in fields of the first clause still allowed
	extra := false
	for i := 0; i < len(items); i++ {
		it := items[i]
		if it.kind == comment {
			continue
		}
		j := i + 1
		for j < len(items) && items[j].kind == comment {
			j++
		}
		if j == len(items) || items[j].kind != word || items[j].isKeyword() {
			return false // a keyword without its value
		}
		k := keywordIndex(it.text)
		switch {
		case k >= 0 && !extra && k >= next:
			*fields[k] = items[j].text
			next = k + 1
		case k >= 0:
			return false // out of order, or twice
		case strings.EqualFold(it.text, "from") || strings.EqualFold(it.text, "by"):
			return false
		default:
			extra = true // an Additional-Registered-Clause
		}
		i = j
	}
	return true
}

var keywords = []string{"via", "with", "id", "for"}

func keywordIndex(s string) int {
	for i, k := range keywords {
		if strings.EqualFold(s, k) {
			return i
		}
	}
	return -1
}

func hasFromPrefix(c string) bool {
	return len(c) > 5 && strings.EqualFold(c[:4], "from") && (c[4] == ' ' || c[4] == '\t')
}

// tcpInfo reads a comment as TCP-info in the forms Postfix and Sendmail
// write: "[IP]", "name [IP]", "unknown [IP]", "user@name [IP]" (Sendmail
// with ident), "[IP]:port", each optionally followed by a nested
// "(may be forged)". On success it sets the hop's client fields and
// reports true; anything else is left alone.
func (h *Hop) tcpInfo(c string) bool {
	words := strings.Fields(c)
	forged := false
	if n := len(words); n >= 3 && strings.EqualFold(strings.Join(words[n-3:], " "), "(may be forged)") {
		forged = true
		words = words[:n-3]
	}
	var name, literal string
	switch len(words) {
	case 1:
		literal = words[0]
	case 2:
		name, literal = words[0], words[1]
	default:
		return false
	}
	ip, port, ok := parseLiteral(literal)
	if !ok {
		return false
	}
	if name != "" {
		if at := strings.LastIndexByte(name, '@'); at >= 0 {
			name = name[at+1:]
		}
		if !isDomain(name) {
			return false
		}
		if strings.EqualFold(name, "unknown") {
			name = ""
		}
	}
	h.IP, h.Port, h.ReverseName = ip, port, name
	h.Forged = h.Forged || forged
	return true
}

// parseLiteral reads "[192.0.2.1]", "[IPv6:2001:db8::1]" (or the bare
// "[2001:db8::1]" some MTAs write), each optionally followed by ":port".
func parseLiteral(s string) (netip.Addr, uint16, bool) {
	if len(s) < 3 || s[0] != '[' {
		return netip.Addr{}, 0, false
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return netip.Addr{}, 0, false
	}
	inner, rest := s[1:end], s[end+1:]
	var port uint16
	if rest != "" {
		if rest[0] != ':' || len(rest) > 6 {
			return netip.Addr{}, 0, false
		}
		p, err := strconv.ParseUint(rest[1:], 10, 16)
		if err != nil {
			return netip.Addr{}, 0, false
		}
		port = uint16(p)
	}
	v6 := len(inner) > 5 && strings.EqualFold(inner[:5], "IPv6:")
	if v6 {
		inner = inner[5:]
	}
	ip, err := netip.ParseAddr(inner)
	if err != nil || ip.Zone() != "" || (v6 && !ip.Is6()) {
		return netip.Addr{}, 0, false
	}
	return ip.Unmap(), port, true
}

// isDomain accepts a host name as receivers write one: letters, digits,
// '-', '_' and inner dots (no trailing dot, no empty label).
func isDomain(s string) bool { return dnsname.Valid(s, dnsname.Host) }
