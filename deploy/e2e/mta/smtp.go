package mta

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Reply is one SMTP reply as the client saw it.
type Reply struct {
	// Code is the three-digit reply code.
	Code int
	// Text is the reply text without the code and separator; lines of a
	// multi-line reply are joined with "\n".
	Text string
	// Raw is the reply exactly as received, CRLFs included.
	Raw string
}

// String renders the reply as it appeared on the wire, one line per line,
// without line ends: "550 5.7.1 text", "250-first\n250 last".
func (r Reply) String() string {
	return strings.TrimRight(strings.ReplaceAll(r.Raw, "\r\n", "\n"), "\n")
}

// maxReplyLines bounds a reply so a broken server cannot make the client
// read forever.
const maxReplyLines = 1000

// readReply reads one possibly multi-line reply (RFC 5321 §4.2.1). Each
// line is "ddd-text" or, for the last, "ddd text" or "ddd".
func readReply(r *bufio.Reader) (Reply, error) {
	var rep Reply
	var raw strings.Builder
	var texts []string
	for i := 0; ; i++ {
		if i == maxReplyLines {
			return rep, fmt.Errorf("reply longer than %d lines", maxReplyLines)
		}
		line, err := r.ReadString('\n')
		raw.WriteString(line)
		if err != nil {
			if errors.Is(err, io.EOF) && line == "" && i == 0 {
				return rep, io.EOF
			}
			return rep, fmt.Errorf("reading reply %q: %w", raw.String(), err)
		}
		l := strings.TrimRight(line, "\r\n")
		if len(l) < 3 || (len(l) > 3 && l[3] != ' ' && l[3] != '-') {
			return rep, fmt.Errorf("malformed reply line %q", l)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil || code < 100 || code > 599 {
			return rep, fmt.Errorf("malformed reply code in %q", l)
		}
		if i > 0 && code != rep.Code {
			return rep, fmt.Errorf("reply code changed from %d to %d mid-reply", rep.Code, code)
		}
		rep.Code = code
		if len(l) > 4 {
			texts = append(texts, l[4:])
		} else {
			texts = append(texts, "")
		}
		if len(l) == 3 || l[3] == ' ' {
			break
		}
	}
	rep.Text = strings.Join(texts, "\n")
	rep.Raw = raw.String()
	return rep, nil
}

// Client is an SMTP client for tests: every method returns the server's
// exact reply and fails the test on I/O errors, so it must be used from the
// test's goroutine. It does not enforce the SMTP state machine: tests may
// send anything, in any order.
type Client struct {
	t        testing.TB
	conn     net.Conn
	r        *bufio.Reader
	greeting Reply
	// Timeout bounds each command's round trip; default 60s, generous on
	// purpose (a milter may legitimately take its time).
	Timeout time.Duration
}

// Dial connects to smtpAddr from the loopback source address from (any of
// 127.0.0.0/8 works on Linux without configuration; nil lets the kernel
// choose) and reads the greeting. The connection is closed at cleanup.
func Dial(t testing.TB, smtpAddr string, from net.IP) *Client {
	t.Helper()
	d := net.Dialer{Timeout: 30 * time.Second}
	if from != nil {
		d.LocalAddr = &net.TCPAddr{IP: from}
	}
	conn, err := d.Dial("tcp", smtpAddr)
	if err != nil {
		t.Fatalf("smtp: dial %s from %v: %v", smtpAddr, from, err)
	}
	c := &Client{t: t, conn: conn, r: bufio.NewReader(conn), Timeout: 60 * time.Second}
	t.Cleanup(func() { conn.Close() })
	c.greeting = c.read("greeting")
	return c
}

// Greeting is the server's opening reply.
func (c *Client) Greeting() Reply { return c.greeting }

// LocalAddr is the client side of the connection.
func (c *Client) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// Ehlo sends EHLO name.
func (c *Client) Ehlo(name string) Reply { return c.Cmd("EHLO " + name) }

// Helo sends HELO name.
func (c *Client) Helo(name string) Reply { return c.Cmd("HELO " + name) }

// MailFrom sends MAIL FROM:<addr>.
func (c *Client) MailFrom(addr string) Reply { return c.Cmd("MAIL FROM:<" + addr + ">") }

// RcptTo sends RCPT TO:<addr>.
func (c *Client) RcptTo(addr string) Reply { return c.Cmd("RCPT TO:<" + addr + ">") }

// Rset sends RSET.
func (c *Client) Rset() Reply { return c.Cmd("RSET") }

// Quit sends QUIT.
func (c *Client) Quit() Reply { return c.Cmd("QUIT") }

// Data sends DATA and, if the server answers 354, the message (LF or CRLF
// line ends, dot-stuffed here) and the final dot; it returns the reply to
// the final dot, or the reply to DATA if that was not 354.
func (c *Client) Data(msg []byte) Reply {
	c.t.Helper()
	if r := c.Cmd("DATA"); r.Code != 354 {
		return r
	}
	c.write(dataBytes(msg), "message")
	return c.read("end of data")
}

// Cmd sends line plus CRLF as it is (it may contain anything, bare CR or LF
// included, for tests of hostile clients) and reads one reply.
func (c *Client) Cmd(line string) Reply {
	c.t.Helper()
	c.write([]byte(line+"\r\n"), line)
	return c.read(line)
}

// Close closes the connection without QUIT.
func (c *Client) Close() { c.conn.Close() }

func (c *Client) write(b []byte, what string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(c.Timeout))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("smtp: sending %.60q: %v", what, err)
	}
}

func (c *Client) read(what string) Reply {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(c.Timeout))
	r, err := readReply(c.r)
	if err != nil {
		c.t.Fatalf("smtp: reply to %.60q: %v", what, err)
	}
	return r
}

// dataBytes converts a message to its DATA transmission: CRLF line ends,
// leading dots doubled (RFC 5321 §4.5.2), a final CRLF if missing, and the
// terminating ".\r\n".
func dataBytes(msg []byte) []byte {
	var b bytes.Buffer
	rest := msg
	for len(rest) > 0 {
		line, next, found := bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 && line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
		if found || len(line) > 0 {
			b.WriteString("\r\n")
		}
		rest = next
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}
