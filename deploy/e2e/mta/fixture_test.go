package mta

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/textproto"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-milter"
)

// TEST FIXTURE: fixtureMilter is a tiny milter on emersion/go-milter that
// stands in for vouch, to prove the harness works with any milter address.
// It answers RCPT by local part:
//
//	blocked@  SMFIR_REPLYCODE "550 5.7.1 blocked %% test"
//	busy@     SMFIR_REPLYCODE "451 4.7.1 busy %% try later"
//	tempfail@ SMFIR_TEMPFAIL (the MTA's own text)
//	reject@   SMFIR_REJECT (the MTA's own text)
//
// and at end of message inserts "X-Fixture: client=IP helo=NAME" at index 0
// and appends "X-Fixture-Added: yes". It also records, from the raw
// protocol stream, every command and macro the MTA sent, per milter
// connection, so tests can assert (and the README can report) them.
type fixtureMilter struct {
	Addr string // inet:PORT@127.0.0.1

	ln net.Listener

	mu       sync.Mutex
	sessions []*fixtureSession
	conns    []net.Conn
}

// fixtureSession is what one milter connection carried, as sniffed from
// the MTA's side of the stream.
type fixtureSession struct {
	Host   string              // SMFIC_CONNECT host name
	Addr   string              // SMFIC_CONNECT address
	Cmds   []string            // command letters in order: "O", "C", "H", ...
	Hdrs   []string            // header names sent with SMFIC_HEADER, in order
	Helos  []string            // SMFIC_HELO arguments, in order
	Mails  []string            // SMFIC_MAIL first arguments (the sender), in order
	Macros map[byte][][]string // SMFIC_MACRO per stage letter, each as name,value pairs
}

// stageName names the command letter a SMFIC_MACRO packet refers to.
func stageName(c byte) string {
	switch c {
	case 'C':
		return "connect"
	case 'H':
		return "helo"
	case 'M':
		return "mail"
	case 'R':
		return "rcpt"
	case 'T':
		return "data"
	case 'L':
		return "header"
	case 'N':
		return "eoh"
	case 'B':
		return "body"
	case 'E':
		return "eom"
	}
	return string(c)
}

func startFixtureMilter(t *testing.T) *fixtureMilter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixtureMilter{ln: ln, Addr: fmt.Sprintf("inet:%d@127.0.0.1", ln.Addr().(*net.TCPAddr).Port)}
	srv := &milter.Server{
		NewMilter: func() milter.Milter { return &fixtureBackend{} },
		Actions:   milter.OptAddHeader | milter.OptChangeHeader,
	}
	// Serve returns when the listener is closed. Server.Close is not
	// used: it writes an unsynchronised flag that Serve reads.
	go srv.Serve(sniffListener{ln, f})
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.conns {
			c.Close()
		}
	})
	return f
}

// session returns the one milter session whose connect address is addr.
func (f *fixtureMilter) session(t *testing.T, addr string) *fixtureSession {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var found []*fixtureSession
	for _, s := range f.sessions {
		if s.Addr == addr {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("fixture milter: %d sessions from %s, want 1", len(found), addr)
	}
	return found[0].clone()
}

func (s *fixtureSession) clone() *fixtureSession {
	c := *s
	c.Cmds = append([]string(nil), s.Cmds...)
	c.Hdrs = append([]string(nil), s.Hdrs...)
	c.Helos = append([]string(nil), s.Helos...)
	c.Mails = append([]string(nil), s.Mails...)
	c.Macros = map[byte][][]string{}
	for k, v := range s.Macros {
		c.Macros[k] = append([][]string(nil), v...)
	}
	return &c
}

// macroNames lists the macro names sent for stage, in order, from the
// first SMFIC_MACRO packet for that stage.
func (s *fixtureSession) macroNames(stage byte) []string {
	if len(s.Macros[stage]) == 0 {
		return nil
	}
	var names []string
	kv := s.Macros[stage][0]
	for i := 0; i+1 < len(kv); i += 2 {
		names = append(names, kv[i])
	}
	return names
}

func (s *fixtureSession) macro(stage byte, name string) (string, bool) {
	if len(s.Macros[stage]) == 0 {
		return "", false
	}
	kv := s.Macros[stage][0]
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == name {
			return kv[i+1], true
		}
	}
	return "", false
}

// report renders the session's commands and macros for the test log.
func (s *fixtureSession) report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connect host=%q addr=%q\ncommands: %s\nheaders: %s\n", s.Host, s.Addr, strings.Join(s.Cmds, " "), strings.Join(s.Hdrs, " "))
	stages := make([]byte, 0, len(s.Macros))
	for k := range s.Macros {
		stages = append(stages, k)
	}
	sort.Slice(stages, func(i, j int) bool { return stages[i] < stages[j] })
	for _, st := range stages {
		for _, kv := range s.Macros[st] {
			fmt.Fprintf(&b, "macros %s:", stageName(st))
			for i := 0; i+1 < len(kv); i += 2 {
				fmt.Fprintf(&b, " %s=%q", kv[i], kv[i+1])
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

type sniffListener struct {
	net.Listener
	f *fixtureMilter
}

func (l sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	s := &fixtureSession{Macros: map[byte][][]string{}}
	l.f.mu.Lock()
	l.f.sessions = append(l.f.sessions, s)
	l.f.conns = append(l.f.conns, c)
	l.f.mu.Unlock()
	return &sniffConn{Conn: c, f: l.f, s: s}, nil
}

// sniffConn parses the milter packets the MTA sends as the library reads
// them. Only the library's session goroutine calls Read.
type sniffConn struct {
	net.Conn
	f   *fixtureMilter
	s   *fixtureSession
	buf []byte
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.buf = append(c.buf, p[:n]...)
	for len(c.buf) >= 4 {
		size := int(binary.BigEndian.Uint32(c.buf))
		if size == 0 || len(c.buf) < 4+size {
			break
		}
		c.record(c.buf[4], c.buf[5:4+size])
		c.buf = c.buf[4+size:]
	}
	return n, err
}

func (c *sniffConn) record(cmd byte, data []byte) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	s := c.s
	s.Cmds = append(s.Cmds, string(cmd))
	switch cmd {
	case 'D':
		if len(data) == 0 {
			return
		}
		var kv []string
		for _, f := range bytes.Split(bytes.TrimSuffix(data[1:], []byte{0}), []byte{0}) {
			kv = append(kv, string(f))
		}
		if len(kv) == 1 && kv[0] == "" {
			kv = nil
		}
		s.Macros[data[0]] = append(s.Macros[data[0]], kv)
		s.Cmds[len(s.Cmds)-1] = "D" + string(data[0])
	case 'H':
		s.Helos = append(s.Helos, string(bytes.TrimSuffix(data, []byte{0})))
	case 'M':
		from, _, _ := bytes.Cut(data, []byte{0})
		s.Mails = append(s.Mails, string(from))
	case 'L':
		name, _, _ := bytes.Cut(data, []byte{0})
		s.Hdrs = append(s.Hdrs, string(name))
	case 'C':
		// host NUL family [port(2) address NUL]
		host, rest, _ := bytes.Cut(data, []byte{0})
		s.Host = string(host)
		if len(rest) >= 3 && (rest[0] == '4' || rest[0] == '6') {
			s.Addr = string(bytes.TrimSuffix(rest[3:], []byte{0}))
		}
	}
}

// fixtureBackend is the per-connection milter logic (a fresh one after
// every non-continue answer, as go-milter does).
type fixtureBackend struct {
	milter.NoOpMilter
	addr, helo string
}

func (b *fixtureBackend) Connect(host, family string, port uint16, addr net.IP, m *milter.Modifier) (milter.Response, error) {
	b.addr = addr.String()
	return milter.RespContinue, nil
}

func (b *fixtureBackend) Helo(name string, m *milter.Modifier) (milter.Response, error) {
	b.helo = name
	return milter.RespContinue, nil
}

func (b *fixtureBackend) RcptTo(rcpt string, m *milter.Modifier) (milter.Response, error) {
	local, _, _ := strings.Cut(rcpt, "@")
	switch local {
	case "blocked":
		return milter.NewResponseStr(byte(milter.ActReplyCode), "550 5.7.1 blocked %% test"), nil
	case "busy":
		return milter.NewResponseStr(byte(milter.ActReplyCode), "451 4.7.1 busy %% try later"), nil
	case "tempfail":
		return milter.RespTempFail, nil
	case "reject":
		return milter.RespReject, nil
	}
	return milter.RespContinue, nil
}

func (b *fixtureBackend) Headers(h textproto.MIMEHeader, m *milter.Modifier) (milter.Response, error) {
	return milter.RespContinue, nil
}

func (b *fixtureBackend) Body(m *milter.Modifier) (milter.Response, error) {
	if err := m.InsertHeader(0, "X-Fixture", "client="+b.addr+" helo="+b.helo); err != nil {
		return nil, err
	}
	if err := m.AddHeader("X-Fixture-Added", "yes"); err != nil {
		return nil, err
	}
	return milter.RespAccept, nil
}
