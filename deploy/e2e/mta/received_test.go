package mta

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vouch-mail/vouch/checks/received"
)

// The Received fields the real MTAs write, read back with checks/received:
// the HELO and address the client used must come out of the field the
// MTA wrote, with and without TLS, with and without a reverse name.
// A failing run logs the fields, which is also how the unit tests'
// testdata (checks/received/testdata/captured.txt) was captured.

// receivedCase is one client as an MTA sees it.
type receivedCase struct {
	name   string
	ip     string // dial from
	helo   string
	tls    bool
	noHelo bool // MAIL without HELO/EHLO (Postfix requires none by default; Sendmail neither)
}

// receivedHosts gives 127.0.9.2 a name. (A hosts file cannot give an
// address a name that does not resolve back to it: glibc returns every
// line with the name. Sendmail's "(may be forged)" and Postfix's
// "unknown" for such a client are in the unit tests' testdata.)
var receivedHosts = []string{"127.0.9.2 relay.client.test"}

func receivedCases() []receivedCase {
	return []receivedCase{
		{name: "no-rdns", ip: "127.0.9.1", helo: "client.example"},
		{name: "rdns", ip: "127.0.9.2", helo: "relay.client.test"},
		{name: "rdns-other-helo", ip: "127.0.9.2", helo: "helo.client.example"},
		{name: "literal-helo", ip: "127.0.9.1", helo: "[127.0.9.1]"},
		{name: "tls", ip: "127.0.9.1", helo: "client.example", tls: true},
		{name: "tls-rdns", ip: "127.0.9.2", helo: "relay.client.test", tls: true},
		{name: "no-helo", ip: "127.0.9.1", noHelo: true},
	}
}

// rdns is the reverse name the MTAs record for c.
func (c receivedCase) rdns() string {
	if c.ip == "127.0.9.2" {
		return "relay.client.test"
	}
	return ""
}

func startForReceived(t *testing.T, name string) Server {
	t.Helper()
	tf := NewTLSFiles(t, "mx.example.test")
	o := Options{Hosts: receivedHosts}
	switch name {
	case "postfix":
		o.PostfixMain = tf.PostfixTLS()
		o.PostfixMain["smtpd_peername_lookup"] = "yes"
	case "sendmail":
		o.SendmailMC = tf.SendmailTLS()
	}
	return Start(t, name, o)
}

// sendOne delivers one message from c to user and returns the Received
// field values of the delivered message, top first.
func sendOne(t *testing.T, s Server, c receivedCase, user string, msg []byte) []string {
	t.Helper()
	cl := Dial(t, s.SMTPAddr(), net.ParseIP(c.ip))
	if !c.noHelo {
		if r := cl.Ehlo(c.helo); r.Code != 250 {
			t.Fatalf("EHLO: %s", r)
		}
	}
	if c.tls {
		if r := cl.StartTLS(); r.Code != 220 {
			t.Fatalf("STARTTLS: %s", r)
		}
		if r := cl.Ehlo(c.helo); r.Code != 250 {
			t.Fatalf("EHLO after STARTTLS: %s", r)
		}
	}
	rcpt := user + "@" + s.Domain()
	if r := cl.MailFrom("sender@client.example"); r.Code != 250 {
		t.Fatalf("MAIL: %s", r)
	}
	if r := cl.RcptTo(rcpt); r.Code != 250 {
		t.Fatalf("RCPT: %s", r)
	}
	if msg == nil {
		msg = SimpleMessage("sender@client.example", rcpt, c.name, "received test")
	}
	if r := cl.Data(msg); r.Code != 250 {
		t.Fatalf("DATA: %s", r)
	}
	cl.Quit()
	m := s.Mailbox(t, user, 1, mailTimeout)[0]
	var fields []string
	for _, f := range m.Fields {
		if strings.EqualFold(f.Name, "Received") {
			_, v, _ := strings.Cut(f.Raw, ":")
			fields = append(fields, v)
		}
	}
	if len(fields) == 0 {
		t.Fatalf("no Received field in\n%s", m.Raw)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range fields {
				t.Logf("Received:%s", f)
			}
		}
	})
	return fields
}

func TestReceivedParsed(t *testing.T) {
	t.Parallel()
	for _, mtaName := range Names() {
		t.Run(mtaName, func(t *testing.T) {
			t.Parallel()
			s := startForReceived(t, mtaName)
			for i, c := range receivedCases() {
				t.Run(c.name, func(t *testing.T) {
					fields := sendOne(t, s, c, fmt.Sprintf("user%d", i), nil)
					if testing.Verbose() {
						t.Logf("Received:%s", fields[0])
					}
					h, err := received.Parse(fields[0])
					if err != nil {
						t.Fatalf("Parse: %v", err)
					}
					wantHelo, with := c.helo, "ESMTP"
					if c.tls {
						with = "ESMTPS"
					}
					if c.noHelo {
						// In place of the HELO it never got, Postfix
						// writes the client's name ("unknown" here),
						// Sendmail the address literal.
						wantHelo, with = "unknown", "SMTP"
						if mtaName == "sendmail" {
							wantHelo = "[" + c.ip + "]"
						}
					}
					got := fmt.Sprintf("helo=%q rdns=%q forged=%v ip=%v by=%q with=%q complete=%v",
						h.Helo, h.ReverseName, h.Forged, h.IP, h.By, h.With, h.Complete)
					want := fmt.Sprintf("helo=%q rdns=%q forged=%v ip=%v by=%q with=%q complete=%v",
						wantHelo, c.rdns(), false, c.ip, s.Hostname(), with, true)
					if got != want {
						t.Errorf("Parse:\n got %s\nwant %s", got, want)
					}
					if h.ID == "" || h.Date.IsZero() {
						t.Errorf("Parse: id %q, date %v: want both", h.ID, h.Date)
					}
					o, err := received.FindOrigin(fields, func(netip.Addr) bool { return false })
					if err != nil || o.Index != 0 || o.IP != netip.MustParseAddr(c.ip) {
						t.Errorf("FindOrigin with nothing trusted = %+v, %v; want field 0, %s", o, err, c.ip)
					}
				})
			}
		})
	}
}

// TestReceivedRelayChain makes a two-hop chain with two real MTAs: a
// client (127.0.9.1) sends to the first MTA; the delivered message, its
// Received field on top, is relayed from 127.0.9.2 to the second MTA.
// With 127.0.9.2 trusted, FindOrigin must step over the second MTA's
// field and name the first client, HELO and address.
func TestReceivedRelayChain(t *testing.T) {
	t.Parallel()
	for _, order := range [][2]string{{"postfix", "sendmail"}, {"sendmail", "postfix"}} {
		t.Run(order[0]+"-then-"+order[1], func(t *testing.T) {
			t.Parallel()
			first, second := startForReceived(t, order[0]), startForReceived(t, order[1])
			origin := receivedCase{name: "origin", ip: "127.0.9.1", helo: "origin.client.example", tls: true}
			sendOne(t, first, origin, "hop", nil)
			raw := first.Mailbox(t, "hop", 1, mailTimeout)[0].Raw
			// Drop the delivery agent's Return-Path, as a relay would.
			if i := strings.Index(string(raw), "\nReceived:"); strings.HasPrefix(string(raw), "Return-Path:") && i > 0 {
				raw = raw[i+1:]
			}
			relay := receivedCase{name: "relay", ip: "127.0.9.2", helo: "relay.client.test"}
			fields := sendOne(t, second, relay, "final", raw)
			if len(fields) != 2 {
				t.Fatalf("%d Received fields, want 2", len(fields))
			}
			trusted := func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.9.2") }
			o, err := received.FindOrigin(fields, trusted)
			if err != nil {
				t.Fatalf("FindOrigin: %v", err)
			}
			if o.Index != 1 || o.IP != netip.MustParseAddr("127.0.9.1") || o.Helo != "origin.client.example" || o.By != first.Hostname() {
				t.Errorf("FindOrigin = field %d, ip %v, helo %q, by %q; want field 1, 127.0.9.1, origin.client.example, %s",
					o.Index, o.IP, o.Helo, o.By, first.Hostname())
			}
			// Trusting nothing, the relay itself is the client.
			if o, err := received.FindOrigin(fields, func(netip.Addr) bool { return false }); err != nil || o.Index != 0 || o.Helo != "relay.client.test" {
				t.Errorf("FindOrigin trusting nothing = %+v, %v; want field 0, relay.client.test", o, err)
			}
			// Trusting both, the chain runs out.
			both := func(a netip.Addr) bool { return trusted(a) || a == netip.MustParseAddr("127.0.9.1") }
			if _, err := received.FindOrigin(fields, both); !errors.Is(err, received.ErrAllTrusted) {
				t.Errorf("FindOrigin trusting both: %v, want ErrAllTrusted", err)
			}
		})
	}
}

// TestReceivedHostileHelo: Postfix copies the HELO into its Received
// field, and a bare CR in EHLO becomes a space (README.md), so a client
// could try to write a TCP-info comment of its own in front of Postfix's.
// Postfix 3.7 writes every space, '(', ')' and ';' of the HELO as '?'
// there (the parser would refuse a second TCP-info comment anyway; see
// the unit tests): the field names the real client.
func TestReceivedHostileHelo(t *testing.T) {
	t.Parallel()
	s := startForReceived(t, "postfix")
	for i, tc := range []struct{ helo, want string }{
		{"x\r(evil.example\r[192.0.2.66])", "x??evil.example?[192.0.2.66]?"},
		{"x\r(evil.example\r[192.0.2.66])\rby\revil.example;\rTue,\r1\rDec\r2026\r00:00:00\r+0000\r(",
			"x??evil.example?[192.0.2.66]??by?evil.example??Tue,?1?Dec?2026?00:00:00?+0000??"},
		{"x;\r(evil.example\r[192.0.2.66])", "x???evil.example?[192.0.2.66]?"},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := receivedCase{name: "hostile", ip: "127.0.9.1", helo: tc.helo}
			fields := sendOne(t, s, c, fmt.Sprintf("hostile%d", i), nil)
			o, err := received.FindOrigin(fields, func(netip.Addr) bool { return false })
			if err != nil || o.IP != netip.MustParseAddr("127.0.9.1") || o.Helo != tc.want {
				t.Errorf("FindOrigin = client %v, helo %q, %v; want 127.0.9.1, %q", o.IP, o.Helo, err, tc.want)
			}
		})
	}
}
