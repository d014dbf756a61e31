package milter_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/vouch-mail/vouch/milter/policy"
)

// These tests speak the milter protocol byte by byte, as Postfix and
// Sendmail do at version 6: go-milter's client cannot leave a reply
// unread. Each conversation sends every command without waiting, as the
// MTA does for a command it negotiated no reply to, and then reads what
// vouch wrote: the replies must be exactly those the MTA waits for, in
// order, and nothing after QUIT.

// rawMTA is one milter connection driven packet by packet.
type rawMTA struct {
	t *testing.T
	c net.Conn
}

func (e *env) dialMTA() *rawMTA {
	e.t.Helper()
	c, err := net.Dial(e.network, e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &rawMTA{t: e.t, c: c}
}

// send writes one packet: code, then each part NUL-terminated.
func (m *rawMTA) send(code byte, parts ...string) {
	m.t.Helper()
	data := []byte{code}
	for _, p := range parts {
		data = append(append(data, p...), 0)
	}
	m.sendRaw(data)
}

func (m *rawMTA) sendRaw(data []byte) {
	m.t.Helper()
	pkt := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	if _, err := m.c.Write(append(pkt, data...)); err != nil {
		m.t.Fatal(err)
	}
}

type rawPacket struct {
	code byte
	data []byte
}

// read reads the next packet vouch wrote.
func (m *rawMTA) read() (rawPacket, error) {
	m.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var l [4]byte
	if _, err := io.ReadFull(m.c, l[:]); err != nil {
		return rawPacket{}, err
	}
	b := make([]byte, binary.BigEndian.Uint32(l[:]))
	if _, err := io.ReadFull(m.c, b); err != nil {
		return rawPacket{}, err
	}
	return rawPacket{b[0], b[1:]}, nil
}

// negotiate offers version, all actions and offered, and returns vouch's
// version and protocol flags.
func (m *rawMTA) negotiate(version uint32, offered gomilter.OptProtocol) (uint32, gomilter.OptProtocol, []byte) {
	m.t.Helper()
	data := []byte{'O'}
	data = binary.BigEndian.AppendUint32(data, version)
	data = binary.BigEndian.AppendUint32(data, 0x1ff)
	data = binary.BigEndian.AppendUint32(data, uint32(offered))
	m.sendRaw(data)
	p, err := m.read()
	if err != nil || p.code != 'O' || len(p.data) < 12 {
		m.t.Fatalf("negotiation answer %q, %v", p.data, err)
	}
	return binary.BigEndian.Uint32(p.data), gomilter.OptProtocol(binary.BigEndian.Uint32(p.data[8:])), p.data[12:]
}

// session sends a whole SMTP session from ip (HELO, MAIL, RCPT, the header
// fields, end of message, QUIT) without waiting, then returns the codes
// of every packet vouch wrote up to the end of the connection, replies
// as their SMTP text ("c", "550 ...").
// Header fields and end of headers are sent unless protocol says not to.
func (m *rawMTA) session(protocol gomilter.OptProtocol, ip, helo, from string, fields ...string) []string {
	m.t.Helper()
	m.send('D', "C", "j", "mx.vouch.test", "{daemon_name}", "smtpd", "_", "["+ip+"]")
	conn := []byte{'C'}
	conn = append(conn, "["+ip+"]\x004"...)
	conn = binary.BigEndian.AppendUint16(conn, 40000)
	conn = append(append(conn, ip...), 0)
	m.sendRaw(conn)
	m.send('H', helo)
	m.send('D', "M", "i", "4ABCDEF")
	m.send('M', "<"+from+">")
	m.send('R', "<alice@vouch.test>")
	for i := 0; i+1 < len(fields) && protocol&gomilter.OptNoHeaders == 0; i += 2 {
		m.send('L', fields[i], fields[i+1])
	}
	if protocol&gomilter.OptNoEOH == 0 {
		m.send('N')
	}
	m.send('E')
	m.send('A')
	m.send('Q')
	var got []string
	for {
		p, err := m.read()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			m.t.Fatalf("after %q: %v", got, err)
		}
		switch p.code {
		case 'y':
			got = append(got, strings.TrimRight(string(p.data), "\x00"))
		default:
			got = append(got, string(p.code))
		}
	}
}

// everyFlag is what Sendmail 8.17 offers (SMFI_CURR_PROT); Postfix offers
// the same events and replies.
const everyFlag gomilter.OptProtocol = 0x1fffff

func TestNegotiationAsksOnlyForTheRepliesTheConfigurationNeeds(t *testing.T) {
	base := gomilter.OptNoBody | gomilter.OptNoData | gomilter.OptNoUnknown
	noRepliesBeforeRcpt := gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoMailReply
	accepted := []string{"c", "i", "i", "c"} // RCPT, the two fields, end of message
	forged := []string{"Authentication-Results", "mx.vouch.test; spf=pass smtp.mailfrom=good.test"}
	for _, tc := range []struct {
		name     string
		set      func(*setup)
		ip, from string
		fields   []string
		protocol gomilter.OptProtocol
		replies  []string
	}{
		{name: "defaults: nothing before RCPT, headers unanswered, no end of headers",
			set: func(*setup) {}, ip: "127.0.0.10", from: "a@good.test", fields: forged,
			protocol: base | noRepliesBeforeRcpt | gomilter.OptNoHeaderReply | gomilter.OptNoEOH,
			// the forged field removed ("m"), then ours
			replies: []string{"c", "m", "i", "i", "c"}},
		{name: "remove_forged off and no trusted relays: no headers at all",
			set: func(s *setup) { s.cfg.Headers.RemoveForged = false }, ip: "127.0.0.10", from: "a@good.test",
			protocol: base | noRepliesBeforeRcpt | gomilter.OptNoHeaders | gomilter.OptNoEOH,
			replies:  accepted},
		{name: "a refusal at RCPT is the first reply",
			set: func(*setup) {}, ip: "127.0.0.13", from: "a@good.test",
			protocol: base | noRepliesBeforeRcpt | gomilter.OptNoHeaderReply | gomilter.OptNoEOH,
			// RCPT refused; the MTA would not send the message, but a
			// client that does gets end of message answered
			replies: []string{"550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test", "i", "i", "c"}},
		{name: "decide_at mail: MAIL answered",
			set: func(s *setup) { s.cfg.Policy.DecideAt = policy.StageMail }, ip: "127.0.0.13", from: "a@good.test",
			protocol: base | gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoHeaderReply | gomilter.OptNoEOH,
			replies:  []string{"550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test", "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test", "i", "i", "c"}},
		{name: "decide_at helo: HELO and MAIL answered",
			set: func(s *setup) { s.cfg.Policy.DecideAt = policy.StageHelo }, ip: "127.0.0.10", from: "a@good.test",
			protocol: base | gomilter.OptNoConnReply | gomilter.OptNoHeaderReply | gomilter.OptNoEOH,
			replies:  append([]string{"c", "c"}, accepted...)},
		{name: "trusted relays: headers sent, end of headers answered",
			set: func(s *setup) {
				s.cfg.Policy.TrustedRelays = []netip.Prefix{netip.MustParsePrefix("127.0.0.99/32")}
			}, ip: "127.0.0.10", from: "a@good.test", fields: forged,
			protocol: base | noRepliesBeforeRcpt | gomilter.OptNoHeaderReply,
			replies:  []string{"c", "c", "m", "i", "i", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.set)
			m := e.dialMTA()
			version, protocol, syms := m.negotiate(6, everyFlag)
			if version != 6 || protocol != tc.protocol {
				t.Errorf("negotiated version %d protocol %#x, want 6 %#x", version, protocol, tc.protocol)
			}
			if want := "\x00\x00\x00\x00j _ {daemon_name} {client_addr} {client_name} {client_resolve}\x00"; !strings.HasPrefix(string(syms), want) {
				t.Errorf("macro list %q, want it to start %q", syms, want)
			}
			if got := m.session(protocol, tc.ip, "mail.good.test", tc.from, tc.fields...); strings.Join(got, "|") != strings.Join(tc.replies, "|") {
				t.Errorf("replies %q, want %q", got, tc.replies)
			}
		})
	}
}

func TestNegotiationTakesOnlyWhatTheMTAOffers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		version  uint32
		offered  gomilter.OptProtocol
		wantVer  uint32
		protocol gomilter.OptProtocol
		replies  []string
	}{
		{name: "version 2: every stage answered, as go-milter answers",
			version: 2, offered: 0x7f, wantVer: 2, protocol: gomilter.OptNoBody,
			replies: []string{"c", "c", "c", "c", "c", "c", "i", "i", "c"}},
		{name: "version 6 without SMFIP_NOUNKNOWN: version 2",
			version: 6, offered: everyFlag &^ gomilter.OptNoUnknown, wantVer: 2, protocol: gomilter.OptNoBody,
			replies: []string{"c", "c", "c", "c", "c", "c", "i", "i", "c"}},
		{name: "version 6 without the header and MAIL reply flags: those answered",
			version: 6, offered: everyFlag &^ (gomilter.OptNoHeaderReply | gomilter.OptNoMailReply), wantVer: 6,
			protocol: gomilter.OptNoBody | gomilter.OptNoData | gomilter.OptNoUnknown | gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoEOH,
			replies:  []string{"c", "c", "c", "i", "i", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.dialMTA()
			version, protocol, _ := m.negotiate(tc.version, tc.offered)
			if version != tc.wantVer || protocol != tc.protocol {
				t.Errorf("negotiated version %d protocol %#x, want %d %#x", version, protocol, tc.wantVer, tc.protocol)
			}
			// An unforged field: the MTA at version 2 sends end of
			// headers whatever was negotiated.
			if got := m.session(protocol, "127.0.0.10", "mail.good.test", "a@good.test", "Subject", "hi"); strings.Join(got, "|") != strings.Join(tc.replies, "|") {
				t.Errorf("replies %q, want %q", got, tc.replies)
			}
		})
	}
}

// TestNegotiationOverloadedKeepsTheConnectReply: a connection past
// milter.max_connections is answered at CONNECT, so it asks for that
// reply; the others do not.
func TestNegotiationOverloadedKeepsTheConnectReply(t *testing.T) {
	for _, action := range []string{"tempfail", "accept"} {
		t.Run(action, func(t *testing.T) {
			e := newEnv(t, func(s *setup) {
				s.cfg.Milter.MaxConnections = 1
				s.cfg.Milter.OverloadAction, _ = policy.ParseAction(action)
			})
			first := e.dialMTA()
			if _, p, _ := first.negotiate(6, everyFlag); p&gomilter.OptNoConnReply == 0 {
				t.Errorf("first connection's protocol %#x lacks SMFIP_NR_CONN", p)
			}
			second := e.dialMTA()
			_, p, _ := second.negotiate(6, everyFlag)
			if p&gomilter.OptNoConnReply != 0 {
				t.Errorf("overloaded connection's protocol %#x has SMFIP_NR_CONN", p)
			}
			second.send('D', "C", "j", "mx.vouch.test")
			conn := binary.BigEndian.AppendUint16([]byte("C[127.0.0.10]\x004"), 40000)
			second.sendRaw(append(conn, "127.0.0.10\x00"...))
			got, err := second.read()
			if want := map[string]byte{"tempfail": 't', "accept": 'a'}[action]; err != nil || got.code != want {
				t.Errorf("overloaded CONNECT answered %q, %v; want %q", got.code, err, want)
			}
		})
	}
}

// TestNegotiationDropsGoMilterReplyToAMalformedHeader: go-milter answers
// "continue" itself, without the session, to a header packet that is
// not two strings; with SMFIP_NR_HDR it must not reach the MTA, which
// would take it for the answer to end of message.
func TestNegotiationDropsGoMilterReplyToAMalformedHeader(t *testing.T) {
	e := newEnv(t)
	m := e.dialMTA()
	_, protocol, _ := m.negotiate(6, everyFlag)
	got := m.session(protocol, "127.0.0.10", "mail.good.test", "a@good.test", "X-A", "b\x00c", "Subject", "hi")
	if want := []string{"c", "i", "i", "c"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("replies %q, want %q", got, want)
	}
}

// TestNegotiationLeavesOtherFirstPacketsToGoMilter: vouch only peeks at
// the first packet; anything but a whole SMFIC_OPTNEG is go-milter's,
// which closes the connection or answers version 2, as before.
func TestNegotiationLeavesOtherFirstPacketsToGoMilter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first []byte
		want  string
	}{
		{"zero length", []byte{0, 0, 0, 0}, "closed"},
		{"unknown code", []byte{0, 0, 0, 13, 'X', 0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff}, "closed"},
		{"optneg without its words", []byte{0, 0, 0, 1, 'O'}, "version 2"},
		{"short optneg", []byte{0, 0, 0, 5, 'O', 0, 0, 0, 6}, "version 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newEnv(t).dialMTA()
			if _, err := m.c.Write(tc.first); err != nil {
				t.Fatal(err)
			}
			got := "closed"
			if p, err := m.read(); err == nil {
				got = fmt.Sprintf("%c", p.code)
				if p.code == 'O' && len(p.data) >= 4 {
					got = fmt.Sprintf("version %d", binary.BigEndian.Uint32(p.data))
				}
			} else if !errors.Is(err, io.EOF) {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
