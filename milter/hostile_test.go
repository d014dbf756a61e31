package milter_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter/config"
)

// Issue 14: vouch against hostile milter clients. Each test fails on the
// code before the wire framed packets itself (0fcf0e3).

// dialRaw opens a milter connection that the test drives octet by octet.
func (e *env) dialRaw(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func readPacket(c net.Conn) (byte, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return 0, nil, err
	}
	p := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(c, p); err != nil || len(p) == 0 {
		return 0, nil, errors.Join(err, io.ErrUnexpectedEOF)
	}
	return p[0], p[1:], nil
}

// closedWithin reports whether the server closes c within d, reading and
// discarding what it sends meanwhile.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return err == nil || errors.Is(err, syscall.ECONNRESET) || !(errors.As(err, &ne) && ne.Timeout())
}

// negotiation offers protocol version 2, so that every command is
// answered: these tests read the answers one by one (version 6, whose
// commands go unanswered, is negotiate_test.go's).
var negotiation = packet('O', []byte{0, 0, 0, 2, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff})

// A packet claiming more than any MTA sends is refused at its length,
// before anything is allocated for it; the largest MTAs send (65,535
// octets of data) and a header field of Postfix's header_size_limit pass.
func TestPacketLengthBound(t *testing.T) {
	e := newEnv(t)
	claim := func(length uint32, cmd byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, length), cmd)
	}
	t.Run("over the bound: refused at the length", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			stream []byte
		}{
			{"body chunk of 65,536 octets", append(negotiation, claim(65536+1, 'B')...)},
			{"macro of 1 MiB - 1", append(negotiation, claim(1<<20-1, 'D')...)},
			{"header of 1 MiB + 1", append(negotiation, claim(1<<20+1, 'L')...)},
			{"negotiation of 1 MiB - 1, first", claim(1<<20-1, 'O')},
			{"a command before the negotiation", packet('H', []byte("x\x00"))},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := e.dialRaw(t)
				c.Write(tc.stream)
				// Nothing of the packet's data was sent: a server that
				// waits for it before judging the length never closes.
				if !closedWithin(c, 2*time.Second) {
					t.Fatal("connection not closed at the length")
				}
			})
		}
		if !strings.Contains(e.logs.String(), `msg="milter packet too large; connection closed" conn=`) {
			t.Errorf("no log line with the connection:\n%s", e.logs)
		}
	})
	t.Run("the largest packets MTAs send: served", func(t *testing.T) {
		c := e.dialRaw(t)
		c.Write(negotiation)
		if code, _, err := readPacket(c); err != nil || code != 'O' {
			t.Fatalf("negotiation: %q %v", code, err)
		}
		// 65,535 octets of body (vouch asked for none; an MTA may send).
		c.Write(packet('B', bytes.Repeat([]byte("x"), 65535)))
		if code, _, err := readPacket(c); err != nil || code != 'c' {
			t.Fatalf("65,535-octet body chunk: %q %v", code, err)
		}
		// A 100 KiB header field (Postfix's header_size_limit):
		// vouch reads its start.
		c.Write(packet('L', append([]byte("X-Big\x00"), append(bytes.Repeat([]byte("y"), 100<<10), 0)...)))
		if code, _, err := readPacket(c); err != nil || code != 'c' {
			t.Fatalf("100 KiB header: %q %v", code, err)
		}
	})
}

// A connection past max_connections is answered by vouch's wire, not
// go-milter: its negotiation asks the MTA for nothing after CONNECT, its
// packets are read past, and CONNECT gets the overload action.
func TestOverloadedConnectionAnsweredByTheWire(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.cfg.Milter.MaxConnections = 1 })
	held := e.connect("127.0.0.10")
	held.helo("mail.good.test", "continue")

	c := e.dialRaw(t)
	c.Write(negotiation)
	code, data, err := readPacket(c)
	if err != nil || code != 'O' || len(data) != 12 {
		t.Fatalf("negotiation: %q %q %v", code, data, err)
	}
	// version 2, no actions, and every step after CONNECT skipped.
	want := []byte{0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, byte(gomilter.OptNoHelo | gomilter.OptNoMailFrom | gomilter.OptNoRcptTo |
		gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH)}
	if !bytes.Equal(data, want) {
		t.Errorf("negotiation answer %x, want %x", data, want)
	}
	// A large macro packet, then CONNECT.
	c.Write(packet('D', append([]byte("C"), bytes.Repeat([]byte("m\x00v\x00"), 16000)...)))
	c.Write(packet('C', []byte("[192.0.2.1]\x004\x9c\x40192.0.2.1\x00")))
	if code, _, err := readPacket(c); err != nil || code != 't' {
		t.Fatalf("CONNECT past the cap: %q %v, want tempfail", code, err)
	}
	c.Write(packet('Q', nil))
	if !closedWithin(c, 2*time.Second) {
		t.Error("not closed after QUIT")
	}
	if got := testutil.ToFloat64(e.metrics.SessionsRefused.WithLabelValues("overload")); got != 1 {
		t.Errorf("refused %v, want 1", got)
	}
	held.mail("alice@good.test", "continue")
	held.rcpt("user@vouch.test", "continue")
}

// A packet must arrive whole within packet_timeout of its first octet: a
// client trickling octets (each pushed the idle deadline back before) is
// closed, and counted as a timeout.
func TestTricklingConnectionClosedWithinPacketTimeout(t *testing.T) {
	e := newEnv(t, func(s *setup) {
		s.cfg.Milter.PacketTimeout = 400 * time.Millisecond
		s.cfg.Milter.IdleTimeout = time.Minute
	})
	for _, tc := range []struct {
		name   string
		before []byte // sent at once
		slow   []byte // then one octet every 50 ms
	}{
		{"the negotiation trickled", nil, negotiation},
		{"a HELO trickled after the negotiation", negotiation, packet('H', []byte("a-very-long-helo-name.example\x00"))},
		{"nothing sent at all", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dialRaw(t)
			c.Write(tc.before)
			start := time.Now()
			closed := make(chan struct{})
			go func() {
				io.Copy(io.Discard, c)
				close(closed)
			}()
			for i := 0; ; i++ {
				select {
				case <-closed:
				case <-time.After(50 * time.Millisecond):
					if len(tc.slow) > 0 {
						c.Write(tc.slow[i%len(tc.slow) : i%len(tc.slow)+1])
					}
					if time.Since(start) < 5*time.Second {
						continue
					}
					t.Fatal("trickling connection still open after 5 s")
				}
				break
			}
		})
	}
	if got := testutil.ToFloat64(e.metrics.MilterErrors.WithLabelValues("timeout")); got != 3 {
		t.Errorf("timeouts %v, want 3", got)
	}
	if !strings.Contains(e.logs.String(), `msg="milter packet not received in time; connection closed" conn=`) {
		t.Errorf("no log line with the connection:\n%s", e.logs)
	}
}

// Trickling connections hold none of max_connections' places: an MTA's
// session is checked in full while they are open.
func TestTricklersHoldNoPlace(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.cfg.Milter.MaxConnections = 2 })
	for range 5 {
		c := e.dialRaw(t)
		c.Write(negotiation[:3])
	}
	time.Sleep(100 * time.Millisecond)
	m := e.connect("127.0.0.10")
	m.helo("mail.good.test", "continue")
	m.mail("alice@good.test", "continue")
	m.rcpt("user@vouch.test", "continue")
	hasHeader(t, inserted(m.data()), "Authentication-Results", "iprev=pass", "spf=pass")
	if got := testutil.ToFloat64(e.metrics.SessionsRefused.WithLabelValues("overload")); got != 0 {
		t.Errorf("refused %v, want 0", got)
	}
}

// One connection sending HELO after HELO with new names, whose DNS is
// slow, starts a bounded number of checks: the replaced ones are
// cancelled and, while their lookups may still run, hold their places.
// The decision for the last HELO and MAIL is still right.
func TestHeloAndMailFloodBounded(t *testing.T) {
	const flood = 1000
	e := newEnv(t)
	for i := range flood {
		e.dns.SetFault(fmt.Sprintf("h%d.flood.test", i), dnstest.Fault{Delay: 2 * time.Second})
		e.dns.SetFault(fmt.Sprintf("d%d.flood.test", i), dnstest.Fault{Delay: 2 * time.Second})
	}
	idle := runtime.NumGoroutine()
	q0 := e.dns.TotalQueries()
	m := e.connect("127.0.0.10")
	peak := 0
	for i := range flood {
		m.helo(fmt.Sprintf("h%d.flood.test", i), "continue")
		peak = max(peak, runtime.NumGoroutine())
	}
	m.helo("mail.good.test", "continue")
	for i := range flood {
		m.mail(fmt.Sprintf("a@d%d.flood.test", i), "continue")
		m.abort()
		peak = max(peak, runtime.NumGoroutine())
	}
	m.mail("alice@good.test", "continue")
	m.rcpt("user@vouch.test", "continue")
	hasHeader(t, inserted(m.data()), "Authentication-Results", "iprev=pass", "spf=pass smtp.mailfrom=alice@good.test", "spf=pass smtp.helo=mail.good.test")
	// The lookups of the flood end within the resolver's budget.
	time.Sleep(2500 * time.Millisecond)
	queries := e.dns.TotalQueries() - q0
	// Before: 3 queries per HELO and 1 per MAIL, 4,000 and more.
	if queries > 100 {
		t.Errorf("%d DNS queries for %d HELOs and %d MAILs, want at most 100", queries, flood, flood)
	}
	if peak-idle > 60 {
		t.Errorf("%d goroutines above idle during the flood, want at most 60", peak-idle)
	}
	t.Logf("%d queries, %d goroutines above idle at the peak", queries, peak-idle)
}

// Every line about a connection carries conn, the wire's protocol errors
// included.
func TestWireErrorsLoggedWithTheConnection(t *testing.T) {
	e := newEnv(t)
	for _, stream := range [][]byte{
		append(negotiation, packet('Z', nil)...),
		append(negotiation, packet('C', []byte("host"))...),
		append(negotiation, 0, 0, 0, 0),
		append(negotiation, packet('D', nil)...),
		append(negotiation, 0, 0, 0, 9, 'H'),
	} {
		c := e.dialRaw(t)
		c.Write(stream)
		if len(stream) > len(negotiation)+5 || stream[len(stream)-1] == 'H' {
			c.(*net.TCPConn).CloseWrite()
		}
		closedWithin(c, 2*time.Second)
	}
	time.Sleep(50 * time.Millisecond)
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		if strings.Contains(line, "level=WARN") && !strings.Contains(line, " conn=") {
			t.Errorf("line without conn: %s", line)
		}
	}
	for _, msg := range []string{"unknown milter command; connection closed", "malformed milter connect packet; connection closed",
		"malformed milter packet (length 0); connection closed", "malformed milter macro packet; connection closed",
		"milter connection closed inside a packet"} {
		if !strings.Contains(e.logs.String(), `msg="`+msg+`"`) {
			t.Errorf("no %q line:\n%s", msg, e.logs)
		}
	}
	if got := testutil.ToFloat64(e.metrics.MilterErrors.WithLabelValues("protocol")); got != 5 {
		t.Errorf("protocol errors %v, want 5", got)
	}
}

// The default packet timeout stays well below Postfix's
// milter_command_timeout (30 s) and above what a loaded MTA needs to send
// one packet.
func TestDefaultPacketTimeout(t *testing.T) {
	if d := config.Default().Milter.PacketTimeout; d != 10*time.Second {
		t.Errorf("packet_timeout default %v, want 10s", d)
	}
}

// The header fields of a message are not kept while it lasts: go-milter
// would keep each one (up to the MTA's message size, 10 MB by default in
// Postfix) for its end-of-headers callback, which vouch does not use.
func TestHeaderFieldsNotKept(t *testing.T) {
	e := newEnv(t)
	m := e.connect("127.0.0.10")
	m.helo("mail.good.test", "continue")
	m.mail("alice@good.test", "continue")
	m.rcpt("user@vouch.test", "continue")
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	value := strings.Repeat("x", 60<<10)
	for range 200 { // 12 MB of header fields
		if a, err := m.s.HeaderField("X-Filler", value); err != nil || a.Code != gomilter.ActContinue {
			t.Fatalf("header: %v %v", a, err)
		}
	}
	grown := int64(heap()) - int64(before)
	if grown > 4<<20 {
		t.Errorf("heap grew %d KiB over 12 MB of header fields, want under 4 MiB", grown>>10)
	}
	t.Logf("heap grew %d KiB", grown>>10)
	if a, err := m.s.HeaderEnd(); err != nil || a.Code != gomilter.ActContinue {
		t.Fatalf("end of headers: %v %v", a, err)
	}
}

// A forged Authentication-Results longer than a packet (Postfix passes
// up to 100 KiB whole) is read by its start, and still removed.
func TestForgedAuthenticationResultsLongerThanAPacketRemoved(t *testing.T) {
	e := newEnv(t)
	m := e.connect("127.0.0.10")
	m.helo("mail.good.test", "continue")
	m.mail("alice@good.test", "continue")
	m.rcpt("user@vouch.test", "continue")
	mods := m.data(
		"Authentication-Results", "other.example; spf=pass",
		"Authentication-Results", "mx.vouch.test; spf=pass "+strings.Repeat("x", 100<<10),
	)
	var removed []uint32
	for _, a := range mods {
		if a.Code == gomilter.ActChangeHeader {
			removed = append(removed, a.HeaderIndex)
		}
	}
	if len(removed) != 1 || removed[0] != 2 {
		t.Errorf("removed Authentication-Results indices %v, want [2]", removed)
	}
}

// A client that sends but never reads the answers fills the socket's
// buffers; the write that then blocks is bounded like a packet.
func TestClientThatNeverReadsIsClosed(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.cfg.Milter.PacketTimeout = 300 * time.Millisecond })
	c := e.dialRaw(t)
	c.(*net.TCPConn).SetReadBuffer(4096)
	c.SetDeadline(time.Now().Add(90 * time.Second))
	// A client with no PTR record: each RCPT is answered with the
	// transaction's refusal, some 80 octets, decided once.
	c.Write(negotiation)
	c.Write(packet('C', []byte("[127.0.0.11]\x004\x9c\x40127.0.0.11\x00")))
	c.Write(packet('H', []byte("mail.nowhere.test\x00")))
	c.Write(packet('M', []byte("<a@nowhere.test>\x00")))
	chunk := bytes.Repeat(packet('R', []byte("<user@vouch.test>\x00")), 20000)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.Write(chunk); err != nil {
			break // closed by the server
		}
	}
	if time.Now().After(deadline) {
		t.Fatal("the server still read after 60 s of answers never read")
	}
	if !strings.Contains(e.logs.String(), `msg="milter answer not delivered; connection closed" conn=`) {
		t.Errorf("no log line for the undelivered answer:\n%.2000s", e.logs)
	}
}

// A client that negotiates and then trickles holds its place only until
// a connection past the cap needs it: the session stalled inside a packet
// the longest is closed, and the new one is checked in full.
func TestStalledSessionMakesRoom(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.cfg.Milter.MaxConnections = 2 })
	var stalled []net.Conn
	for range 2 {
		c := e.dialRaw(t)
		c.Write(negotiation)
		if code, _, err := readPacket(c); err != nil || code != 'O' {
			t.Fatalf("negotiation: %q %v", code, err)
		}
		c.Write(packet('C', []byte("[192.0.2.1]\x004\x9c\x40192.0.2.1\x00")))
		readPacket(c)
		c.Write(packet('H', []byte("slow.example\x00"))[:6]) // and no more
		stalled = append(stalled, c)
	}
	time.Sleep(1500 * time.Millisecond) // past the grace
	m := e.connect("127.0.0.10")
	m.helo("mail.good.test", "continue")
	m.mail("alice@good.test", "continue")
	m.rcpt("user@vouch.test", "continue")
	hasHeader(t, inserted(m.data()), "Authentication-Results", "iprev=pass", "spf=pass")
	closed := 0
	for _, c := range stalled {
		if closedWithin(c, 100*time.Millisecond) {
			closed++
		}
	}
	if closed != 1 {
		t.Errorf("%d stalled sessions closed, want 1", closed)
	}
	if got := testutil.ToFloat64(e.metrics.SessionsRefused.WithLabelValues("overload")); got != 0 {
		t.Errorf("refused %v, want 0", got)
	}
	if !strings.Contains(e.logs.String(), `msg="milter session stalled inside a packet; closed to make room for a new one" conn=`) {
		t.Errorf("no log line:\n%s", e.logs)
	}
}
