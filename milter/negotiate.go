package milter

import (
	"encoding/binary"
	"log/slog"
	"slices"
	"strconv"
	"sync"

	"github.com/emersion/go-milter"

	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/policy"
)

// Milter protocol version 6 (docs/mta.md, "Negotiation").
//
// go-milter v0.5.0 answers every negotiation with version 2, which cannot
// say "send this, but do not wait for my reply": the MTA waits for an
// answer at CONNECT, HELO, MAIL, each header and end of headers, a round
// trip each, although vouch only continues there. Postfix and Sendmail
// both offer version 6, whose SMFIP_NR_* flags let the MTA go on without
// waiting. The library's version is a constant it does not export, so
// vouch answers the MTA's SMFIC_OPTNEG itself, on the wire (which reads
// every packet whole before go-milter does), and then drops the replies
// go-milter or the session would write to a command the MTA does not
// wait for. go-milter stays the
// protocol library for everything else; it is not patched.
//
// An MTA that offers a version below 6, or that cannot be asked to keep
// unknown SMTP commands to itself (go-milter drops the connection on
// SMFIC_UNKNOWN), gets go-milter's own version 2 answer, as before.

// negotiationVersion is the milter protocol version vouch speaks when the
// MTA offers it.
const negotiationVersion = 6

// negotiation is one connection's protocol-6 state: until the MTA's
// SMFIC_OPTNEG is read, what to ask for; afterwards, which commands the
// MTA does not wait for a reply to, and the command being answered.
type negotiation struct {
	pending  bool               // the MTA's SMFIC_OPTNEG is still to read
	want     milter.OptProtocol // what vouch asks for, before the MTA's offer
	actions  milter.OptAction
	protocol milter.OptProtocol // negotiated; zero until then or at version 2
	log      *slog.Logger
	held     *reply // an answer other than continue to an unanswered command
	// noReply[code] is set for each command code the MTA sends without
	// waiting for an answer.
	noReply [256]bool

	// code is the command of the MTA's last packet: the one being
	// answered.
	code byte
}

// wantedProtocol is what vouch asks the MTA for under cfg: no event it
// does not read, and no reply it only ever answers "continue". (A
// connection past milter.max_connections never gets here: the wire
// answers it alone, at version 2, CONNECT's reply included.)
func wantedProtocol(cfg *config.Config) milter.OptProtocol {
	// Never the body, the DATA command or unknown commands; go-milter
	// would answer DATA "continue" and drop the connection on UNKNOWN.
	// CONNECT only records.
	p := milter.OptNoBody | milter.OptNoData | milter.OptNoUnknown | milter.OptNoConnReply
	switch cfg.Policy.DecideAt {
	case policy.StageHelo: // refuses at HELO; the refusal answers MAIL too
	case policy.StageMail:
		p |= milter.OptNoHeloReply
	default: // rcpt: nothing is answered before RCPT
		p |= milter.OptNoHeloReply | milter.OptNoMailReply
	}
	// Mail from a trusted relay is judged at end of headers from its
	// Received fields; forged Authentication-Results are noted per field.
	relays := len(cfg.Policy.TrustedRelays) > 0
	if relays || cfg.Headers.RemoveForged {
		p |= milter.OptNoHeaderReply
	} else {
		p |= milter.OptNoHeaders
	}
	if !relays {
		p |= milter.OptNoEOH
	}
	return p
}

// noReplyCommands maps each SMFIP_NR_* flag to the command it spares a
// reply.
var noReplyCommands = []struct {
	flag milter.OptProtocol
	code milter.Code
}{
	{milter.OptNoConnReply, milter.CodeConn},
	{milter.OptNoHeloReply, milter.CodeHelo},
	{milter.OptNoMailReply, milter.CodeMail},
	{milter.OptNoRcptReply, milter.CodeRcpt},
	{milter.OptNoDataReply, milter.CodeData},
	{milter.OptNoUnknownReply, 'U'}, // SMFIC_UNKNOWN; go-milter has no name
	{milter.OptNoHeaderReply, milter.CodeHeader},
	{milter.OptNoEOHReply, milter.CodeEOH},
	{milter.OptNoBodyReply, milter.CodeBody},
}

func newNegotiation(cfg *config.Config, actions milter.OptAction, log *slog.Logger) *negotiation {
	return &negotiation{pending: true, want: wantedProtocol(cfg), actions: actions, log: log}
}

// packet sees each packet of the MTA whole (w.pkt), before go-milter
// does: the first, SMFIC_OPTNEG, vouch answers itself at version 6 when
// the MTA offers it; of the others it notes the command, which the next
// answers go to. true: vouch answered the packet, and go-milter must not
// see it. When the MTA cannot speak version 6 as vouch needs, w.neg is
// cleared: go-milter negotiates version 2 and every reply is written.
func (n *negotiation) packet(w *wire) bool {
	code := w.pkt[4]
	if n.pending {
		n.pending = false
		if code == byte(milter.CodeOptNeg) && n.negotiate(w, w.pkt[5:]) {
			w.off = len(w.pkt)
			return true
		}
		w.neg = nil
		return false
	}
	n.code = code
	if n.noReply[code] || code == byte(milter.CodeMacro) {
		// The MTA's next write would wait for vouch's TCP
		// acknowledgment (Nagle's algorithm on its side, delayed ACKs on
		// ours, some 40 ms on Linux): send it at once.
		quickAck(w.Conn)
	}
	return false
}

// negotiate answers the MTA's SMFIC_OPTNEG (data: version, actions,
// protocol) at version 6, asking for what the configuration needs; false
// leaves it to go-milter (version 2).
func (n *negotiation) negotiate(w *wire, data []byte) bool {
	if len(data) < 12 {
		return false
	}
	version := binary.BigEndian.Uint32(data)
	offered := milter.OptProtocol(binary.BigEndian.Uint32(data[8:]))
	if version < negotiationVersion || offered&milter.OptNoUnknown == 0 {
		n.log.Debug("milter protocol: the MTA's offer leaves version 2", "mta_version", version, "mta_protocol", hex(uint32(offered)))
		return false
	}
	n.protocol = n.want & offered
	for _, nr := range noReplyCommands {
		if n.protocol&nr.flag != 0 {
			n.noReply[nr.code] = true
		}
	}
	out := binary.BigEndian.AppendUint32(make([]byte, 0, 12+len(encodedSymList())), negotiationVersion)
	out = binary.BigEndian.AppendUint32(out, uint32(n.actions))
	out = binary.BigEndian.AppendUint32(out, uint32(n.protocol))
	out = append(out, encodedSymList()...)
	w.packet(byte(milter.CodeOptNeg), out)
	n.log.Debug("milter protocol negotiated", "version", negotiationVersion, "protocol", hex(uint32(n.protocol)),
		"mta_version", version, "mta_protocol", hex(uint32(offered)))
	return true
}

func hex(v uint32) string { return "0x" + strconv.FormatUint(uint64(v), 16) }

// drops reports whether a reply now would answer a command the MTA does
// not wait for: it must not be written, or the MTA would read it as the
// answer to its next command.
func (n *negotiation) drops() bool { return n.noReply[n.code] }

// dropsAnswer is drops for one of vouch's answers. vouch only answers
// "continue" where it asks for no reply, but a callback that panicked
// answers tempfail (conn.guard): that answer is held and given instead
// of the next one the MTA waits for, so the failure still reaches the
// client rather than the message going on unchecked.
func (n *negotiation) dropsAnswer(code byte, data []byte) bool {
	if !n.noReply[n.code] {
		return false
	}
	if code != byte(milter.ActContinue) && n.held == nil {
		n.held = &reply{code: code, data: slices.Clone(data)}
	}
	return true
}

// answer is the answer to write to a command the MTA waits for: the one
// held back, if any, else code and data.
func (n *negotiation) answer(code byte, data []byte) (byte, []byte) {
	if h := n.held; h != nil {
		n.held = nil
		return h.code, h.data
	}
	return code, data
}

// encodedSymList is symList as SMFIC_OPTNEG carries it (the stage, a
// 32-bit word, then the space-separated macro names and a NUL), in
// stage order.
var encodedSymList = sync.OnceValue(func() []byte {
	stages := make([]milter.Stage, 0, len(symList))
	for s := range symList {
		stages = append(stages, s)
	}
	slices.Sort(stages)
	var b []byte
	for _, s := range stages {
		b = binary.BigEndian.AppendUint32(b, uint32(s))
		for i, m := range symList[s] {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, m...)
		}
		b = append(b, 0)
	}
	return b
})
