package milter_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	gomilter "github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/answer"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/metrics"
	"github.com/vouch-mail/vouch/milter/textsafe"
)

// FuzzMilterStream writes an arbitrary byte stream, as an MTA would send
// milter packets, into a live session of the real server over loopback
// TCP. Whatever the bytes:
//   - the server neither panics (a recovered panic counts too) nor hangs:
//     it answers or closes, within a read deadline;
//   - every packet it sends back is a well-formed milter response, and any
//     SMTP reply or header in it is safe to hand to Postfix or Sendmail;
//   - once the connection is closed, the session's goroutines are gone;
//   - a well-behaved connection open on the same server keeps working.
func FuzzMilterStream(f *testing.F) {
	h := newStreamHarness(f)
	for _, s := range streamSeeds() {
		f.Add(s.stream)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		h.run(t, stream)
	})
}

// TestStreamSeeds runs the named seeds with the checks of the fuzz target,
// so that a failure says which seed broke.
func TestStreamSeeds(t *testing.T) {
	h := newStreamHarness(t)
	for _, s := range streamSeeds() {
		t.Run(s.name, func(t *testing.T) { h.run(t, s.stream) })
	}
}

type streamHarness struct {
	dns     *dnstest.Server
	srv     *milter.Server
	metrics *metrics.Metrics
	addr    string
	logs    *checktest.LogBuffer
	good    *gomilter.ClientSession
	// idle is the goroutine count with only the good connection open,
	// taken when the first stream starts: the test's own goroutines count.
	idle     int
	idleOnce sync.Once
	mu       sync.Mutex // the good connection is one session
}

func newStreamHarness(tb testing.TB) *streamHarness {
	tb.Helper()
	h := &streamHarness{dns: dnstest.New(tb, zone), logs: &checktest.LogBuffer{}}
	reg := prometheus.NewRegistry()
	h.metrics = metrics.New(reg, "test")
	res := checktest.ResolverFor(tb, checktest.Config(h.dns.Addr, time.Second), h.metrics.DNSObserver())
	cfg := config.Default()
	cfg.Policy.TrustedNetworks = nil
	cfg.Checks.Deadline = 2 * time.Second
	// go-milter reports protocol errors and the panics it recovers through
	// the standard logger; route them as the daemon does, so that a panic
	// anywhere shows in the metric.
	prev, prevFlags := log.Writer(), log.Flags()
	log.SetFlags(0)
	log.SetOutput(milter.LibraryLog(slog.New(slog.DiscardHandler), h.metrics))
	tb.Cleanup(func() { log.SetOutput(prev); log.SetFlags(prevFlags) })

	srv, err := milter.NewServer(cfg, res, milter.Options{
		// Debug keeps every log call on the path the fuzzer explores.
		Logger:  slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: h.metrics,
	})
	if err != nil {
		tb.Fatal(err)
	}
	h.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	h.addr = ln.Addr().String()
	go h.srv.Serve(ln)
	tb.Cleanup(func() {
		h.good.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.srv.Shutdown(ctx)
	})

	c := gomilter.NewClientWithOptions("tcp", h.addr, gomilter.ClientOptions{
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	if h.good, err = c.Session(); err != nil {
		tb.Fatal(err)
	}
	if err := h.good.Macros(gomilter.CodeConn, "j", "mx.vouch.test"); err != nil {
		tb.Fatal(err)
	}
	for _, step := range []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) {
			return h.good.Conn("[127.0.0.10]", gomilter.FamilyInet, 25, "127.0.0.10")
		},
		func() (*gomilter.Action, error) { return h.good.Helo("mail.good.test") },
	} {
		if a, err := step(); err != nil || a.Code != gomilter.ActContinue {
			tb.Fatalf("good connection: %v %v", a, err)
		}
	}
	if err := h.goodMessage(); err != nil {
		tb.Fatal(err)
	}
	return h
}

// goodMessage sends one message on the good connection and checks vouch's
// answer: the SPF pass of a real sender, and its header.
func (h *streamHarness) goodMessage() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.good
	if a, err := g.Mail("<alice@good.test>", nil); err != nil || a.Code != gomilter.ActContinue {
		return fmt.Errorf("good connection, MAIL: %v %v", a, err)
	}
	if a, err := g.Rcpt("<user@vouch.test>", nil); err != nil || a.Code != gomilter.ActContinue {
		return fmt.Errorf("good connection, RCPT: %v %v", a, err)
	}
	mods, a, err := g.End()
	if err != nil || a.Code != gomilter.ActContinue {
		return fmt.Errorf("good connection, end of message: %v %v", a, err)
	}
	ar := ""
	for _, m := range mods {
		if m.Code == gomilter.ActInsertHeader && m.HeaderName == "Authentication-Results" {
			ar = m.HeaderValue
		}
	}
	if !strings.Contains(ar, "spf=pass") || !strings.Contains(ar, "iprev=pass") {
		return fmt.Errorf("good connection: Authentication-Results %q", ar)
	}
	if err := g.Abort(); err != nil {
		return fmt.Errorf("good connection, abort: %w", err)
	}
	return nil
}

// streamDeadline bounds one stream's whole exchange. The checks answer
// from loopback DNS in milliseconds; the check deadline (2 s) bounds a
// slow one. A server stuck in a callback misses this by far.
const streamDeadline = 15 * time.Second

func (h *streamHarness) run(t *testing.T, stream []byte) {
	h.idleOnce.Do(func() {
		// Let the warm-up's goroutines end first.
		time.Sleep(50 * time.Millisecond)
		h.idle = runtime.NumGoroutine()
	})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(streamDeadline))

	out := stream
	if streamComplete(stream) {
		// The server has read every packet and waits for the next: a
		// negotiation and a quit show that it still answers, then ends.
		out = append(append(bytes.Clone(stream), packet('O', make([]byte, 12))...), packet('Q', nil)...)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(out)
		// Either way, the server reads EOF after the stream: a session
		// left waiting for the rest of a packet ends there.
		c.(*net.TCPConn).CloseWrite()
		wrote <- err
	}()

	replies, err := readReplies(c)
	if err != nil {
		t.Fatalf("stream %q: %v", stream, err)
	}
	<-wrote
	for _, r := range replies {
		if err := checkReply(r); err != nil {
			t.Fatalf("stream %q: reply %q: %v", stream, r, err)
		}
	}
	c.Close()

	if n := testutil.ToFloat64(h.metrics.MilterErrors.WithLabelValues("panic")); n != 0 {
		t.Fatalf("stream %q: %v panics recovered", stream, n)
	}
	if err := h.goodMessage(); err != nil {
		t.Fatalf("after stream %q: %v", stream, err)
	}
	if err := h.settle(); err != nil {
		t.Fatalf("after stream %q: %v", stream, err)
	}
}

// settle waits until only the good connection is open and the goroutine
// count is back to its idle level. A lookup the stream started may still
// be in flight in the resolver (flights outlive the session that started
// them, within the resolver's budget of 1 s here), hence the wait.
func (h *streamHarness) settle() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if h.srv.Active() == 1 && n <= h.idle {
			return nil
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			pprof.Lookup("goroutine").WriteTo(&b, 1)
			return fmt.Errorf("%d milter connections open (want 1), %d goroutines (idle: %d):\n%s",
				h.srv.Active(), n, h.idle, b.String())
		}
		time.Sleep(time.Millisecond)
	}
}

// streamComplete reports whether stream is a whole number of packets the
// server reads without closing for a bad length.
func streamComplete(stream []byte) bool {
	for len(stream) > 0 {
		if len(stream) < 4 {
			return false
		}
		n := binary.BigEndian.Uint32(stream)
		if n == 0 || n > 1<<20 || uint64(len(stream)-4) < uint64(n) {
			return false
		}
		stream = stream[4+n:]
	}
	return true
}

// readReplies reads the server's packets until it closes the connection.
func readReplies(c net.Conn) ([][]byte, error) {
	var out [][]byte
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				// Closed between packets; a reset when the server left
				// our bytes unread.
				return out, nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return out, fmt.Errorf("server neither answered nor closed within %v (after %d replies)", streamDeadline, len(out))
			}
			return out, fmt.Errorf("reading a reply: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || n > 1<<20 {
			return out, fmt.Errorf("reply length %d", n)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(c, p); err != nil {
			return out, fmt.Errorf("reply cut short: %w", err)
		}
		out = append(out, p)
	}
}

// checkReply checks one packet from vouch: a response code it may send,
// and SMTP reply texts and header fields an MTA can take as they are.
func checkReply(p []byte) error {
	code, data := p[0], p[1:]
	switch code {
	case 'O': // negotiation: version, actions, protocol, then macro lists
		if len(data) < 12 {
			return errors.New("short negotiation")
		}
	case 'c', 'a', 't': // continue, accept, tempfail
		if len(data) != 0 {
			return errors.New("data after a plain action")
		}
	case 'y': // SMFIR_REPLYCODE
		text, ok := bytes.CutSuffix(data, []byte{0})
		if !ok {
			return errors.New("reply not NUL-terminated")
		}
		return checkSMTPReply(string(text))
	case 'i', 'm': // insert header, change (remove) header
		if len(data) < 4 {
			return errors.New("short header action")
		}
		f := strings.Split(string(data[4:]), "\x00")
		if len(f) != 3 || f[2] != "" {
			return fmt.Errorf("header action fields %q", f)
		}
		if code == 'm' && (f[0] != "Authentication-Results" || f[1] != "") {
			return fmt.Errorf("vouch changes only forged Authentication-Results, to nothing: %q", f)
		}
		if code == 'i' && f[0] != "Authentication-Results" && f[0] != "Received-SPF" {
			return fmt.Errorf("inserted field %q", f[0])
		}
		return checkFieldValue(f[1])
	case 'q': // quarantine
		reason, ok := bytes.CutSuffix(data, []byte{0})
		if !ok {
			return errors.New("reason not NUL-terminated")
		}
		if err := printable(string(reason)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("response code %q", code)
	}
	return nil
}

// checkSMTPReply: "CODE STATUS TEXT", classes agreeing, printable ASCII,
// every '%' doubled, at most 512 octets.
func checkSMTPReply(s string) error {
	if len(s) > 512 {
		return fmt.Errorf("%d octets", len(s))
	}
	if err := printable(s); err != nil {
		return err
	}
	f := strings.SplitN(s, " ", 3)
	if len(f) != 3 {
		return errors.New("not CODE STATUS TEXT")
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 400 || n > 599 || len(f[0]) != 3 {
		return fmt.Errorf("code %q", f[0])
	}
	if f[1][0] != f[0][0] || strings.Count(f[1], ".") != 2 {
		return fmt.Errorf("status %q with code %q", f[1], f[0])
	}
	if strings.Contains(strings.ReplaceAll(s, "%%", ""), "%") {
		return errors.New("lone %")
	}
	return nil
}

// checkFieldValue: printable ASCII, folded only with "\n\t" (Postfix wants
// LF), no line of the field near the 998-octet limit.
func checkFieldValue(v string) error {
	for i, line := range strings.Split(v, "\n") {
		if i > 0 {
			if !strings.HasPrefix(line, "\t") {
				return fmt.Errorf("line %d not folded with a tab", i)
			}
			line = line[1:]
		}
		if len(line) > 900 {
			return fmt.Errorf("line %d is %d octets", i, len(line))
		}
		if err := printable(line); err != nil {
			return err
		}
	}
	return nil
}

func printable(s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("byte %#x at %d", c, i)
		}
	}
	return nil
}

// TestSecondConnectStartsAfresh: a CONNECT on a milter connection that
// already had one (found by FuzzMilterStream, "connect-twice") starts a
// new SMTP session: the checks are the new client's, not the first one's
// under the new address; and the first session's background checks do not
// race with the new state (go test -race).
func TestSecondConnectStartsAfresh(t *testing.T) {
	for _, tc := range []struct {
		name          string
		first, second string
		rcpt          string
		header        []string
	}{
		{"no PTR, then a verified client", "127.0.0.11", "127.0.0.10", "continue",
			[]string{"iprev=pass (HELO mail.good.test: match) policy.iprev=127.0.0.10", "spf=pass smtp.mailfrom=alice@good.test"}},
		{"a verified client, then no PTR", "127.0.0.10", "127.0.0.11", // from a domain without SPF
			"450 4.7.25 Client address 127.0.0.11 has no reverse DNS (PTR) record", nil},
		{"a verified client, then a local one", "127.0.0.10", "", "continue", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.connect(tc.first)
			m.helo("mail.good.test", "continue")
			m.mail("alice@good.test", "continue")
			if tc.second == "" {
				// A local (non-TCP) client: no address, no checks.
				m.expect("connect", m.must(m.s.Conn("localhost", gomilter.FamilyUnix, 0, "/run/x")), "continue")
			} else {
				m.expect("connect", m.must(m.s.Conn("["+tc.second+"]", gomilter.FamilyInet, 1, tc.second)), "continue")
			}
			m.helo("mail.good.test", "continue")
			sender := "alice@good.test"
			if tc.second == "127.0.0.11" {
				sender = "a@nospf.test"
			}
			m.mail(sender, "continue")
			m.rcpt("user@vouch.test", tc.rcpt)
			if tc.rcpt != "continue" {
				return
			}
			fields := inserted(m.data())
			if tc.header == nil {
				if len(fields) != 0 {
					t.Errorf("local client's message got %q", fields)
				}
				return
			}
			hasHeader(t, fields, "Authentication-Results", tc.header...)
		})
	}
}

// TestClientStringsInJSONLogs: with log.format json, as with text, no
// client string reaches a log line raw. Each line is one valid JSON object
// and every string in it, once decoded by a log pipeline, is printable
// ASCII: a CR, LF, ESC or 8-bit byte in HELO or MAIL FROM cannot forge a
// line or a terminal escape downstream of the JSON decoder.
func TestClientStringsInJSONLogs(t *testing.T) {
	logs := &checktest.LogBuffer{}
	jsonLog := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, preset("strict"), func(s *setup) { s.logger = jsonLog })
	prev, prevFlags := log.Writer(), log.Flags()
	log.SetFlags(0)
	log.SetOutput(milter.LibraryLog(jsonLog, e.metrics))
	defer func() { log.SetOutput(prev); log.SetFlags(prevFlags) }()

	evilHelo := "evil\r\n{\"level\":\"INFO\",\"msg\":\"forged\"}\u2028\x1b[31m\xff\"\\%" + strings.Repeat("x", 1000)
	evilSender := "a\"b\\c\n{\"msg\":\"x\"}%00\x7f@other.test"
	m := e.connect("127.0.0.13")
	m.helo(evilHelo, "continue")
	m.mail(evilSender, "continue", "i", "Q\r\nID")
	act := m.must(m.s.Rcpt("<user@vouch.test>", nil))
	if act.Code != gomilter.ActReplyCode || act.SMTPCode != 550 {
		t.Fatalf("got %q, want a 550", answer.Text(act))
	}
	// Exempt by its local part: logged with the recipient.
	m.rcpt("postmaster@vouch.test\r\nX", "continue")
	// A protocol error the wire reports with the connection's logger: an
	// unknown command code.
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(append(packet('O', make([]byte, 12)), packet(0x1b, []byte("[31m"))...))
	io.Copy(io.Discard, c)
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "unknown milter command") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	var decision, exempt, library map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("line %d is not one JSON object: %v\n%q", i+1, err, line)
		}
		if err := noControls(obj); err != nil {
			t.Errorf("line %d: %v\n%s", i+1, err, line)
		}
		for _, k := range []string{"helo", "sender", "queue_id", "rcpt", "err"} {
			if v, ok := obj[k].(string); ok && printable(v) != nil {
				t.Errorf("line %d: %s=%q: %v", i+1, k, v, printable(v))
			}
		}
		switch obj["msg"] {
		case "decision":
			decision = obj
		case "unknown milter command; connection closed":
			library = obj
		case "exempt recipient accepted despite the verdict":
			exempt = obj
		case "forged":
			t.Errorf("line %d forged by a client: %s", i+1, line)
		}
	}
	if decision == nil || decision["helo"] != textsafe.Log(evilHelo) || decision["sender"] != textsafe.Log(evilSender) ||
		decision["queue_id"] != "Q%0D%0AID" {
		t.Errorf("decision line does not carry the escaped client strings: %v", decision)
	}
	if exempt == nil || exempt["rcpt"] != "postmaster@vouch.test%0D%0AX" {
		t.Errorf("exempt recipient line: %v", exempt)
	}
	if library == nil || library["command"] != "0x1b" || library["conn"] == nil {
		t.Errorf("the wire's error line: %v", library)
	}
}

// noControls checks every string in a decoded JSON value for characters
// that end or rewrite a line on a terminal or in a line-based pipeline:
// C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
// (vouch's own values may hold other non-ASCII, e.g. the "µs" of a
// duration; client strings are checked to be ASCII on their own.)
func noControls(v any) error {
	switch x := v.(type) {
	case string:
		for _, r := range x {
			if r < 0x20 || r >= 0x7f && r <= 0x9f || r == 0x2028 || r == 0x2029 || r == utf8.RuneError {
				return fmt.Errorf("character %U in %q", r, x)
			}
		}
	case map[string]any:
		for k, e := range x {
			if err := noControls(k); err != nil {
				return err
			}
			if err := noControls(e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := noControls(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// Seeds: what Postfix and Sendmail send, and what a broken or hostile peer
// might.

type streamSeed struct {
	name   string
	stream []byte
}

func cstrings(s ...string) []byte {
	var b []byte
	for _, x := range s {
		b = append(append(b, x...), 0)
	}
	return b
}

// negotiate is Postfix's SMFIC_OPTNEG: version 6, every action, its
// protocol mask.
func negotiate() []byte {
	d := binary.BigEndian.AppendUint32(nil, 6)
	d = binary.BigEndian.AppendUint32(d, 0x1ff)
	d = binary.BigEndian.AppendUint32(d, 0x1fffff)
	return packet('O', d)
}

func macros(stage byte, kv ...string) []byte {
	return packet('D', append([]byte{stage}, cstrings(kv...)...))
}

func connectPacket(host string, family byte, port uint16, addr string) []byte {
	d := cstrings(host)
	d = append(d, family)
	if family == '4' || family == '6' {
		d = binary.BigEndian.AppendUint16(d, port)
	}
	return packet('C', append(d, cstrings(addr)...))
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// postfixSession is the packet sequence of one Postfix SMTP session with
// one message, as Postfix 3.7 sends it with vouch's macro lists.
func postfixSession(ip, helo, from, rcpt string, hdrs ...string) []byte {
	fam := byte('4')
	if strings.Contains(ip, ":") {
		fam = '6'
	}
	s := join(
		negotiate(),
		macros('C', "j", "mx.vouch.test", "{daemon_name}", "smtpd", "_", "unknown ["+ip+"]", "{client_addr}", ip),
		connectPacket("["+ip+"]", fam, 40000, ip),
		packet('H', cstrings(helo)),
		macros('M', "i", "4XyZ1", "{mail_addr}", from),
		packet('M', cstrings("<"+from+">", "SIZE=1234", "BODY=8BITMIME")),
		macros('R', "i", "4XyZ1", "{rcpt_addr}", rcpt),
		packet('R', cstrings("<"+rcpt+">")),
		packet('T', nil),
	)
	for i := 0; i+1 < len(hdrs); i += 2 {
		s = append(s, packet('L', cstrings(hdrs[i], hdrs[i+1]))...)
	}
	return join(s, packet('N', nil), macros('E', "i", "4XyZ1"), packet('E', nil), packet('A', nil))
}

func streamSeeds() []streamSeed {
	good := postfixSession("127.0.0.10", "mail.good.test", "alice@good.test", "user@vouch.test", "Subject", "hi", "From", "alice@good.test")
	evil := "evil\r\n250 2.0.0 Ok 100% \xff\x1b[31m;\"" + strings.Repeat("x", 1100)
	return []streamSeed{
		{"postfix good client", good},
		{"postfix then quit", join(good, packet('Q', nil))},
		{"two messages on one connection", join(good,
			macros('M', "i", "4XyZ2"), packet('M', cstrings("<>")),
			packet('R', cstrings("<user@vouch.test>")), packet('N', nil), packet('E', nil), packet('A', nil))},
		{"no ptr tempfails", postfixSession("127.0.0.11", "mail.nospf.test", "a@nospf.test", "user@vouch.test")},
		{"spf fail rejects", postfixSession("127.0.0.13", "mail.other.test", "mallory@good.test", "user@vouch.test")},
		{"ipv6 client", postfixSession("::10", "mail6.good.test", "alice@good.test", "user@vouch.test")},
		{"forged authentication-results", postfixSession("127.0.0.10", "mail.good.test", "alice@good.test", "user@vouch.test",
			"Authentication-Results", "mx.vouch.test; spf=pass", "Authentication-Results", "MX.VOUCH.TEST (x); iprev=pass")},
		{"client strings with CR LF, percent, 8-bit, 1100 octets", postfixSession("127.0.0.13", evil, "a%b\r\nX-Injected: 1@"+evil, evil, evil, evil)},
		{"sendmail macros", join(negotiate(),
			macros('C', "j", "mx.vouch.test", "_", "[127.0.0.12]", "{daemon_name}", "MTA", "{if_name}", "mx", "{client_addr}", "127.0.0.12", "{client_resolve}", "FORGED"),
			connectPacket("liar.test", '4', 25, "127.0.0.12"),
			packet('H', cstrings("liar.test")),
			macros('M', "i", "q1", "{auth_authen}", "", "{mail_addr}", "bob@nospf.test"),
			packet('M', cstrings("<bob@nospf.test>")),
			packet('R', cstrings("<Postmaster@vouch.test>")),
			packet('Q', nil))},
		{"authenticated sender", join(negotiate(), connectPacket("[127.0.0.11]", '4', 1, "127.0.0.11"), packet('H', cstrings("laptop")),
			macros('M', "{auth_authen}", "alice", "{auth_type}", "PLAIN"), packet('M', cstrings("<alice@good.test>")),
			packet('R', cstrings("<user@vouch.test>")), packet('E', nil))},
		{"unix client", join(negotiate(), connectPacket("localhost", 'L', 0, "/var/run/x"), packet('H', cstrings("localhost")),
			packet('M', cstrings("<a@b>")), packet('R', cstrings("<c@d>")), packet('E', nil))},
		{"unknown family", join(negotiate(), connectPacket("x", 'U', 0, ""), packet('H', cstrings("x")))},
		{"family 4 without port", join(negotiate(), packet('C', []byte("h\x004")))},
		{"helo without connect", join(negotiate(), packet('H', cstrings("mail.good.test")),
			packet('M', cstrings("<alice@good.test>")), packet('R', cstrings("<u@v>")), packet('N', nil), packet('E', nil))},
		{"rcpt without mail", join(negotiate(), connectPacket("[127.0.0.10]", '4', 1, "127.0.0.10"), packet('R', cstrings("<u@v>")), packet('E', nil))},
		{"end of message alone", join(packet('E', nil), packet('A', nil), packet('E', nil))},
		{"connect twice", join(negotiate(), connectPacket("[127.0.0.10]", '4', 1, "127.0.0.10"),
			connectPacket("[::10]", '6', 1, "::10"), packet('H', cstrings("mail6.good.test")), packet('M', cstrings("<>")), packet('R', cstrings("<u@v>")))},
		{"body chunks though none were asked for", join(negotiate(), packet('B', bytes.Repeat([]byte("x"), 70000)), packet('E', []byte("tail")))},
		{"header with no value and odd macros", join(negotiate(), packet('L', []byte("Subject\x00")), packet('L', []byte("a\x00b\x00c\x00")),
			packet('D', []byte("C")), packet('D', []byte("Cj")), packet('D', []byte("\x00\x00\x00")))},
		{"empty macro packet", join(negotiate(), packet('D', nil))},
		{"unknown command", join(negotiate(), packet('Z', []byte("junk")))},
		{"quit_nc is not handled", join(good, packet('K', nil))},
		{"truncated connect", join(negotiate(), packet('C', []byte("host")))},
		{"zero length", join(negotiate(), []byte{0, 0, 0, 0})},
		{"oversized length", []byte{0xff, 0xff, 0xff, 0xff, 'C'}},
		{"one octet over the packet bound", join(negotiate(), packet('B', bytes.Repeat([]byte("x"), 65536)))},
		{"forged authentication-results longer than a packet, cut", postfixSession("127.0.0.10", "mail.good.test", "alice@good.test", "user@vouch.test",
			"Authentication-Results", "mx.vouch.test; spf=pass "+strings.Repeat("x", 100<<10))},
		{"a command before the negotiation", join(packet('H', cstrings("mail.good.test")), negotiate())},
		{"negotiation longer than any MTA's", packet('O', make([]byte, 100))},
		{"stream ends inside a packet", good[:len(good)-7]},
		{"stream ends inside a length", good[:3]},
		{"empty stream", nil},
	}
}
