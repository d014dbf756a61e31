package milter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-milter"

	"github.com/vouch-mail/vouch/milter/textsafe"
)

// This file is all of vouch's own milter wire code: the connection under
// go-milter, and the few packets vouch encodes itself rather than through
// go-milter. Each shape here is for speed; the figures are from
// docs/performance.md and the commits that made them.

// wire is one milter connection under go-milter. It frames the packets
// itself: go-milter is handed a packet only once all of it has arrived and
// passed the checks go-milter would fail it on (length, command, shape),
// so go-milter never allocates a length a client merely claims and never
// logs an error of its own; the wire logs each with the connection's
// logger. It buffers reads and writes, bounds the time a packet may take
// (packet_timeout) and the time between packets (idle_timeout), encodes
// answer and header packets into its output buffer, and ends the
// connection's state when go-milter (or Shutdown) closes it. Only the
// connection's goroutine reads and writes.
type wire struct {
	net.Conn
	// in buffers reads: a packet that fits is handed to go-milter from
	// this buffer, with no copy.
	in *bufio.Reader
	// pkt is the packet being handed to go-milter (length and body);
	// go-milter has read pkt[:off]. fromBuffer: pkt is in in's buffer.
	pkt        []byte
	off        int
	fromBuffer bool
	// out holds what is written until go-milter next reads: an answer at
	// end of message is a packet per header change and then the reply,
	// each its own write system call otherwise. The MTA waits for the
	// reply before it sends more, so nothing is held back from it.
	out           []byte
	idle          time.Duration
	packetTimeout time.Duration
	// inPacket: part of a packet has arrived, since packetStart; else
	// the connection is idle since the last complete packet.
	inPacket    bool
	packetStart time.Time
	deadline    time.Time // the read deadline last set; only read uses it
	// writeDeadline is the write deadline last set; only flush uses it.
	writeDeadline time.Time
	negotiated    bool // the first packet, the negotiation, was read
	ended         bool // the wire reported why it stopped reading
	// stalledSince is when the packet under way began (Unix ns), 0
	// between packets: Server.evictStalled reads it from other
	// goroutines.
	stalledSince atomic.Int64
	// counted: the connection holds one of max_connections' places;
	// closed: onClose ran. Both under Server.mu.
	counted, closed bool
	closeOnce       sync.Once
	onClose         func() // run once, after the first Close
	// conn is the session, for its logger and metrics; nil in tests of
	// the encoders. id is its number, the conn of its log lines.
	conn *conn
	id   uint64
	// neg is protocol 6 (negotiate.go): the negotiation vouch answers
	// itself and the replies the MTA does not wait for; nil at version 2.
	neg *negotiation
}

// readBufferSize holds the common packets (macros, commands, a header
// field) whole; a longer one is read into a buffer of its own. Idle
// connections keep it, so it stays small.
const readBufferSize = 512

// maxPacketSize bounds a packet (command byte and data) the wire accepts,
// before anything is allocated for it. The MTAs send at most 65,535 data
// octets in a packet: Postfix and Sendmail cut the body into
// MILTER_CHUNK_SIZE (65,535) chunks, and libmilter, which most milters are
// built on, refuses a packet with more data than MILTER_MAX_DATA_SIZE
// (65,535) unless a larger size was negotiated, which go-milter cannot
// do. Macros, addresses and the connect information are far smaller. The
// one exception is a header field: Postfix passes one of up to its
// header_size_limit (100 KiB by default) whole; see maxHeaderPacket.
const maxPacketSize = 65535 + 1

// maxHeaderPacket bounds a header packet, which is passed to go-milter
// cut to maxPacketSize: vouch reads only the start of a header field (the
// authserv-id of an Authentication-Results). It is go-milter's own limit.
const maxHeaderPacket = 1 << 20

// maxNegotiation bounds the first packet, SMFIC_OPTNEG: 13 octets from
// Postfix and Sendmail (command, version, actions, protocol).
const maxNegotiation = 64

// maxHeldOutput bounds the output buffer a connection keeps between
// answers; a larger one (many header changes) is dropped after use.
const maxHeldOutput = 2048

func newWire(c net.Conn, idle, packetTimeout time.Duration) *wire {
	w := &wire{Conn: c, idle: idle, packetTimeout: packetTimeout}
	w.in = bufio.NewReaderSize(rawReader{w}, readBufferSize)
	// The MTA sends its negotiation as soon as it connects: the first
	// packet's time runs from the accept.
	w.inPacket, w.packetStart = true, time.Now()
	return w
}

// idleSlack is how far past the idle timeout a read deadline is set, so
// that it needs moving about once per slack of activity rather than on
// every read, each move being a runtime timer update.
func idleSlack(idle time.Duration) time.Duration { return min(idle/8, time.Second) }

// Write is go-milter's own output (negotiation, the modifications vouch
// leaves to it); it goes out with the next answer.
func (w *wire) Write(p []byte) (int, error) {
	if w.neg != nil && w.neg.drops() { // protocol 6: negotiate.go
		return len(p), nil
	}
	w.grow()
	w.out = append(w.out, p...)
	return len(p), nil
}

func (w *wire) grow() {
	if w.out == nil {
		w.out = make([]byte, 0, 256) // most answers fit
	}
}

// Read hands go-milter the packet under way; once it has read all of
// it, Read sends what was written since, then reads the next packet
// whole. Every failure, logged and counted by the wire, ends the stream
// between two packets as a plain EOF, on which go-milter closes the
// connection without a word.
func (w *wire) Read(p []byte) (int, error) {
	for w.off == len(w.pkt) {
		if w.ended || !w.flush() {
			return 0, io.EOF
		}
		if err := w.next(false); err != nil {
			w.end(err)
			return 0, io.EOF
		}
		if w.neg != nil && w.neg.packet(w) { // protocol 6: negotiate.go
			continue // answered by vouch, not go-milter's
		}
		if w.pkt[4] == byte(milter.CodeHeader) && w.conn != nil {
			w.header()
		}
	}
	n := copy(p, w.pkt[w.off:])
	w.off += n
	return n, nil
}

// flush sends the output held; false if that failed (the wire said why).
func (w *wire) flush() bool {
	if len(w.out) == 0 {
		return true
	}
	if w.packetTimeout > 0 {
		// A client that sends but never reads would block the write for
		// good once the socket's buffers are full: bound it like a
		// packet, moving the deadline at most once per slack.
		if now := time.Now(); w.writeDeadline.Sub(now) < w.packetTimeout {
			w.writeDeadline = now.Add(w.packetTimeout + idleSlack(w.packetTimeout))
			w.Conn.SetWriteDeadline(w.writeDeadline)
		}
	}
	_, err := w.Conn.Write(w.out)
	if cap(w.out) > maxHeldOutput {
		w.out = nil
	} else {
		w.out = w.out[:0]
	}
	if err != nil {
		e := protocolError("milter answer not delivered; connection closed")
		e.err = err
		w.end(e)
		return false
	}
	return true
}

// answer queues a callback's answer packet, encoded as go-milter encodes
// it. go-milter would build each answer in a fresh 4 KiB bufio.Writer,
// some 57 KiB of garbage per session (commit b673ad1).
func (w *wire) answer(resp milter.Response) {
	if r, ok := resp.(*reply); ok {
		w.packet(r.code, r.data)
		return
	}
	msg := resp.Response()
	w.packet(msg.Code, msg.Data)
}

// packet queues a milter packet: its length, code and data.
func (w *wire) packet(code byte, data []byte) {
	if w.neg != nil { // protocol 6: negotiate.go
		if w.neg.dropsAnswer(code, data) {
			return
		}
		code, data = w.neg.answer(code, data)
	}
	w.grow()
	w.out = binary.BigEndian.AppendUint32(w.out, uint32(len(data)+1))
	w.out = append(w.out, code)
	w.out = append(w.out, data...)
}

// insertHeader queues SMFIR_INSHEADER as go-milter's
// Modifier.InsertHeader encodes it (length, 'i', index, name NUL, value
// with CRLF as LF, NUL), without the two buffers go-milter allocates per
// packet; every accepted message gets two fields (commit 634e376).
func (w *wire) insertHeader(index int, name, value string) {
	w.grow()
	start := len(w.out)
	w.out = append(w.out, 0, 0, 0, 0, byte(milter.ActInsertHeader))
	w.out = binary.BigEndian.AppendUint32(w.out, uint32(index))
	w.out = append(w.out, name...)
	w.out = append(w.out, 0)
	for {
		i := strings.Index(value, "\r\n")
		if i < 0 {
			break
		}
		w.out = append(w.out, value[:i]...)
		w.out = append(w.out, '\n')
		value = value[i+2:]
	}
	w.out = append(w.out, value...)
	w.out = append(w.out, 0)
	binary.BigEndian.PutUint32(w.out[start:], uint32(len(w.out)-start-4))
}

// header hands a header field to the session itself, not through
// go-milter, which would keep every field of the message (up to the MTA's
// message size) for its end-of-headers callback, which vouch ignores. The
// field is split as go-milter splits it.
func (w *wire) header() {
	data := string(bytes.Trim(w.pkt[5:], "\x00"))
	w.off = len(w.pkt)
	name, value, _ := strings.Cut(data, "\x00")
	if len(w.pkt) == 5 || strings.Contains(value, "\x00") {
		// go-milter answers continue without a callback.
		w.answer(respContinue)
		return
	}
	session{w.conn}.Header(name, value, &milter.Modifier{})
}

// rawReader reads from the connection itself, under the idle or packet
// deadline.
type rawReader struct{ w *wire }

func (r rawReader) Read(p []byte) (int, error) { return r.w.read(p) }

func (w *wire) read(p []byte) (int, error) {
	w.setDeadline()
	n, err := w.Conn.Read(p)
	if n > 0 && !w.inPacket {
		w.inPacket, w.packetStart = true, time.Now()
		w.stalledSince.Store(w.packetStart.UnixNano())
	}
	return n, err
}

// setDeadline puts the read deadline where the phase wants it: between
// packets, idle_timeout after the last complete one (moved once per slack,
// not at every read); within a packet, packet_timeout after its first
// octet, which trickling cannot push back.
func (w *wire) setDeadline() {
	var target time.Time
	var slack time.Duration
	switch {
	case w.inPacket && w.packetTimeout > 0:
		target = w.packetStart.Add(w.packetTimeout)
		if w.idle > 0 && !w.negotiated {
			// Before the negotiation, the packet and the idle bounds
			// both count from the accept: the tighter one holds.
			target = minTime(target, w.packetStart.Add(w.idle))
		}
	case w.idle > 0:
		slack = idleSlack(w.idle)
		target = time.Now().Add(w.idle)
	default:
		if !w.deadline.IsZero() {
			w.deadline = time.Time{}
			w.Conn.SetReadDeadline(w.deadline)
		}
		return
	}
	if w.deadline.Before(target) || w.deadline.After(target.Add(slack)) {
		w.deadline = target.Add(slack)
		w.Conn.SetReadDeadline(w.deadline)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// wireError is why the wire stopped reading: logged once, with the
// connection's logger, and counted in vouch_milter_errors_total by kind
// ("" for a normal end).
type wireError struct {
	kind  string
	level slog.Level
	msg   string
	err   error
	attrs []any
}

func (e *wireError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func protocolError(msg string, attrs ...any) *wireError {
	return &wireError{kind: "protocol", level: slog.LevelWarn, msg: msg, attrs: attrs}
}

// errEnd is the MTA closing the connection between packets.
var errEnd = &wireError{level: slog.LevelDebug, msg: "milter connection closed by the MTA"}

// next reads the next packet whole into w.pkt. discard (a connection
// answered without go-milter) keeps only a packet's command.
func (w *wire) next(discard bool) error {
	if w.fromBuffer {
		w.in.Discard(len(w.pkt))
	}
	w.pkt, w.off, w.fromBuffer = nil, 0, false
	switch {
	case !w.negotiated:
		// The negotiation's time runs from the accept.
	case w.in.Buffered() == 0:
		// The previous packet is complete: idle from now on, until the
		// next octet arrives.
		w.inPacket = false
	default:
		// The octets buffered are the next packet, under way.
		w.inPacket, w.packetStart = true, time.Now()
		w.stalledSince.Store(w.packetStart.UnixNano())
	}
	hdr, err := w.in.Peek(4)
	if err != nil {
		return w.readError(err, len(hdr))
	}
	length := binary.BigEndian.Uint32(hdr)
	if length == 0 {
		return protocolError("malformed milter packet (length 0); connection closed")
	}
	if hdr, err = w.in.Peek(5); err != nil {
		return w.readError(err, len(hdr))
	}
	cmd := hdr[4]
	limit := uint32(maxPacketSize)
	switch {
	case !w.negotiated:
		limit = maxNegotiation
		if cmd != 'O' {
			return protocolError("milter connection did not start with a negotiation; closed", "command", commandName(cmd))
		}
	case cmd == byte(milter.CodeHeader):
		limit = maxHeaderPacket
	}
	if !known(cmd) {
		return protocolError("unknown milter command; connection closed", "command", commandName(cmd))
	}
	if length > limit {
		return protocolError("milter packet too large; connection closed", "command", commandName(cmd), "length", length, "max", limit)
	}
	size := 4 + int(length)
	switch {
	case size <= w.in.Size():
		b, err := w.in.Peek(size)
		if err != nil {
			return w.readError(err, len(b))
		}
		w.pkt, w.fromBuffer = b, true
	case discard:
		// Keep the length and the command, for the answer.
		kept := append(make([]byte, 0, 5), hdr[:5]...)
		if n, err := w.in.Discard(size); err != nil {
			return w.readError(err, n)
		}
		w.pkt = kept
	default:
		if w.pkt, err = w.readLarge(size); err != nil {
			return err
		}
	}
	w.negotiated = true
	w.stalledSince.Store(0)
	if discard {
		return nil
	}
	if err := wellFormed(w.pkt[4], w.pkt[5:]); err != nil {
		w.pkt, w.off = nil, 0
		return err
	}
	return nil
}

// readLarge reads a packet larger than the read buffer into a buffer of
// its own, allocated once a read buffer's worth of the packet has arrived,
// so that a length merely claimed costs nothing. A header packet longer
// than maxPacketSize keeps only its start, NUL terminated, which is what
// vouch reads of a header field.
func (w *wire) readLarge(size int) ([]byte, error) {
	if b, err := w.in.Peek(w.in.Size()); err != nil {
		return nil, w.readError(err, len(b))
	}
	keep := min(size, 4+maxPacketSize)
	buf := make([]byte, keep)
	if n, err := io.ReadFull(w.in, buf); err != nil {
		return nil, w.readError(err, n)
	}
	if rest := size - keep; rest > 0 {
		if n, err := w.in.Discard(rest); err != nil {
			return nil, w.readError(err, keep+n)
		}
		buf[len(buf)-1] = 0
		binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
	}
	return buf, nil
}

// readError says why a read ended, having read got octets of the packet.
func (w *wire) readError(err error, got int) error {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		if w.inPacket {
			return &wireError{kind: "timeout", level: slog.LevelWarn, msg: "milter packet not received in time; connection closed",
				attrs: []any{"packet_timeout", w.packetTimeout, "received", got}}
		}
		return &wireError{kind: "timeout", level: slog.LevelInfo, msg: "milter connection idle too long; closed",
			attrs: []any{"idle_timeout", w.idle}}
	case errors.Is(err, net.ErrClosed):
		// Our own Close (shutdown).
		return &wireError{level: slog.LevelDebug, msg: "milter connection closed by vouch"}
	case errors.Is(err, io.EOF) && got == 0:
		return errEnd
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return protocolError("milter connection closed inside a packet", "received", got)
	}
	e := protocolError("milter connection read failed; closed")
	e.err = err
	return e
}

// end reports, once, why the wire stopped: a log line with the
// connection's logger and the metric.
func (w *wire) end(err error) {
	if w.ended {
		return
	}
	w.ended = true
	var we *wireError
	if !errors.As(err, &we) {
		we = protocolError("milter connection error")
		we.err = err
	}
	if w.conn == nil {
		return
	}
	if we.kind != "" {
		w.conn.srv.metrics.MilterErrors.WithLabelValues(we.kind).Inc()
	}
	attrs := we.attrs
	if we.err != nil {
		attrs = append(attrs, "err", textsafe.Log(we.err.Error()))
	}
	w.conn.log.Log(context.Background(), we.level, we.msg, attrs...)
}

// known reports whether go-milter handles the command; it closes the
// connection, with a log line of its own, on any other.
func known(cmd byte) bool {
	switch milter.Code(cmd) {
	case milter.CodeAbort, milter.CodeBody, milter.CodeConn, milter.CodeMacro, milter.CodeEOB,
		milter.CodeHelo, milter.CodeHeader, milter.CodeMail, milter.CodeEOH, milter.CodeOptNeg,
		milter.CodeQuit, milter.CodeRcpt, milter.CodeData:
		return true
	}
	return false
}

// wellFormed fails the packets go-milter would fail (with a log line of
// its own and the connection closed).
func wellFormed(cmd byte, data []byte) error {
	switch milter.Code(cmd) {
	case milter.CodeConn:
		// The host name, NUL, then at least the family.
		if i := bytes.IndexByte(data, 0); i < 0 || len(data) < i+2 {
			return protocolError("malformed milter connect packet; connection closed")
		}
	case milter.CodeMacro:
		if len(data) == 0 {
			return protocolError("malformed milter macro packet; connection closed")
		}
	}
	return nil
}

// commandName is a command octet as a log value: the letter, or its code.
func commandName(cmd byte) string {
	if cmd > ' ' && cmd < 0x7f {
		return string(rune(cmd))
	}
	return "0x" + strconv.FormatUint(uint64(cmd), 16)
}

func (w *wire) Close() error {
	err := net.ErrClosed
	w.closeOnce.Do(func() {
		err = w.Conn.Close()
		if w.onClose != nil {
			w.onClose()
		}
	})
	return err
}

// overloadedProtocol is what a connection answered without go-milter
// asks the MTA for: nothing after CONNECT but the end of the session.
const overloadedProtocol = milter.OptNoHelo | milter.OptNoMailFrom | milter.OptNoRcptTo |
	milter.OptNoBody | milter.OptNoHeaders | milter.OptNoEOH

// serveOverloaded answers a connection past max_connections itself, its
// negotiation read: go-milter is not involved, so the connection costs
// its socket, the read buffer and this goroutine, and its packets are
// read past rather than kept. CONNECT gets accept or tempfail, every other
// command that wants an answer continue.
func (w *wire) serveOverloaded(accept bool) {
	defer w.Close()
	var neg [12]byte
	binary.BigEndian.PutUint32(neg[0:], 2) // go-milter's protocol version
	binary.BigEndian.PutUint32(neg[8:], uint32(overloadedProtocol))
	connect := respTempFail
	if accept {
		connect = respAccept
	}
	for {
		switch milter.Code(w.pkt[4]) {
		case milter.CodeOptNeg:
			w.packet('O', neg[:])
		case milter.CodeConn:
			w.answer(connect)
		case milter.CodeMacro, milter.CodeAbort:
			// No answer.
		case milter.CodeQuit:
			return
		default:
			w.answer(respContinue)
		}
		if !w.flush() {
			return
		}
		if err := w.next(true); err != nil {
			w.end(err)
			return
		}
	}
}

// oneConnListener hands go-milter a single connection; the next Accept
// fails, which ends go-milter's Serve (not the connection), so no
// goroutine of vouch's waits beside each connection (commit faea658).
type oneConnListener struct {
	conn *wire
	used bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.used {
		l.used = true
		return l.conn, nil
	}
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// reply is our milter response. Its Continue is always true: go-milter
// replaces the session's backend after a response whose Continue is
// false, which would lose the connection's state (IP, HELO, lookups) for
// the next message of the same SMTP session. The MTA reads the code, not
// Continue.
type reply struct {
	code byte
	data []byte
}

func (r *reply) Response() *milter.Message { return &milter.Message{Code: r.code, Data: r.data} }
func (r *reply) Continue() bool            { return true }

var (
	respContinue = &reply{code: byte(milter.ActContinue)}
	respAccept   = &reply{code: byte(milter.ActAccept)}
	respTempFail = &reply{code: byte(milter.ActTempFail)}
	// respInternal answers when vouch itself failed: tempfail, so the
	// client retries and nothing is lost.
	respInternal = replyCode(451, "4.3.0", "Temporary local error in the mail filter")
)

// replyCode builds SMFIR_REPLYCODE. text must already be reply-safe.
func replyCode(code int, status, text string) *reply {
	return &reply{code: byte(milter.ActReplyCode), data: []byte(itoa(code) + " " + status + " " + text + "\x00")}
}
