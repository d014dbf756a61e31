package milter

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-milter"
)

// This file is all of vouch's own milter wire code: the connection under
// go-milter, and the few packets vouch encodes itself rather than through
// go-milter. Each shape here is for speed; the figures are from
// docs/performance.md and the commits that made them.

// wire is one milter connection under go-milter. It buffers reads and
// writes, enforces the idle timeout, encodes answer and header packets
// into its output buffer, and ends the connection's state when go-milter
// (or Shutdown) closes it. Only the connection's goroutine reads and
// writes.
type wire struct {
	net.Conn
	// in buffers reads: go-milter reads each packet's length, then its
	// body, two system calls a packet unbuffered.
	in *bufio.Reader
	// out holds what is written until go-milter next reads: an answer at
	// end of message is a packet per header change and then the reply,
	// each its own write system call otherwise. The MTA waits for the
	// reply before it sends more, so nothing is held back from it.
	out       []byte
	idle      time.Duration
	deadline  time.Time // the read deadline last set; only read uses it
	closeOnce sync.Once
	onClose   func() // run once, after the first Close
	timedOut  atomic.Bool
	// neg is protocol 6 (negotiate.go): the negotiation vouch answers
	// itself and the replies the MTA does not wait for; nil at version 2.
	neg *negotiation
}

// readBufferSize holds the common packets (macros, commands, a header
// field) whole; a longer one is read in parts or straight into go-milter's
// buffer. Idle connections keep it, so it stays small.
const readBufferSize = 512

// maxHeldOutput bounds the output buffer a connection keeps between
// answers; a larger one (many header changes) is dropped after use.
const maxHeldOutput = 2048

func newWire(c net.Conn, idle time.Duration) *wire {
	w := &wire{Conn: c, idle: idle}
	w.in = bufio.NewReaderSize(rawReader{w}, readBufferSize)
	return w
}

// idleSlack is how far past the idle timeout a read deadline is set, so
// that it needs moving about once per slack of activity rather than on
// every read (two a milter packet), each move being a runtime timer
// update.
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

// Read sends what was written since the last read, then reads. A failed
// send fails the read: go-milter then closes the connection, as it does
// after a failed write.
func (w *wire) Read(p []byte) (int, error) {
	if w.neg != nil && w.neg.pending { // protocol 6: negotiate.go
		if err := w.neg.negotiate(w); err != nil {
			return 0, err
		}
	}
	if len(w.out) > 0 {
		_, err := w.Conn.Write(w.out)
		if cap(w.out) > maxHeldOutput {
			w.out = nil
		} else {
			w.out = w.out[:0]
		}
		if err != nil {
			return 0, err
		}
	}
	n, err := w.in.Read(p)
	if w.neg != nil { // protocol 6: negotiate.go
		w.neg.observe(w, p[:n])
	}
	return n, err
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

// rawReader reads from the connection itself, under the idle deadline.
type rawReader struct{ w *wire }

func (r rawReader) Read(p []byte) (int, error) { return r.w.read(p) }

func (w *wire) read(p []byte) (int, error) {
	if w.idle > 0 {
		if now := time.Now(); w.deadline.Sub(now) < w.idle {
			w.deadline = now.Add(w.idle + idleSlack(w.idle))
			w.Conn.SetReadDeadline(w.deadline)
		}
	}
	n, err := w.Conn.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		w.timedOut.Store(true)
	}
	return n, err
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
