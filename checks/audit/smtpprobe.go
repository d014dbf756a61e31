package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// The SMTP client of the audit: it reads the greeting, sends a fixed list
// of commands and records each exchange. The server is untrusted: replies
// are bounded in size, each step in time, and kept as sent (Quote and
// QuoteLine make them safe to print).

// Step is one exchange of the SMTP dialogue: the command sent ("" for the
// greeting) and the reply lines as received (CRLF removed).
type Step struct {
	Command string   `json:"command"`
	Code    int      `json:"code,omitempty"`
	Reply   []string `json:"reply,omitempty"`
	Error   string   `json:"error,omitempty"`
	// text is each reply line's text, after the code.
	text []string
}

// dialogue is what the SMTP probe showed.
type dialogue struct {
	addr    string
	dialErr error
	steps   []Step
}

// step returns the exchange for command, nil if it did not happen.
func (d *dialogue) step(command string) *Step {
	for i := range d.steps {
		if d.steps[i].Command == command {
			return &d.steps[i]
		}
	}
	return nil
}

// probe connects to addr, reads the greeting and, after a 220, sends
// commands in turn (the last should be QUIT); after another greeting it
// only says QUIT. Each step is bounded by timeout, the whole by ctx. It
// stops at the first error or 421 (RFC 5321 §3.8: the server is closing).
func probe(ctx context.Context, addr string, timeout time.Duration, commands []string) *dialogue {
	d := &dialogue{addr: addr}
	dialer := net.Dialer{Timeout: timeout}
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		d.dialErr = err
		return d
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	br := bufio.NewReaderSize(conn, 4096)
	exchange := func(command string) (reply, bool) {
		st := Step{Command: command}
		conn.SetDeadline(time.Now().Add(timeout))
		if command != "" {
			if _, err := io.WriteString(conn, command+"\r\n"); err != nil {
				st.Error = err.Error()
				d.steps = append(d.steps, st)
				return reply{}, false
			}
		}
		rep, err := readReply(br)
		st.Code, st.Reply, st.text = rep.Code, rep.lines(), rep.Text
		if err != nil {
			st.Error = err.Error()
		}
		d.steps = append(d.steps, st)
		return rep, err == nil && rep.Code != 421
	}
	banner, ok := exchange("")
	if !ok || banner.Code != 220 {
		if ok {
			exchange("QUIT")
		}
		return d
	}
	for _, cmd := range commands {
		if _, ok := exchange(cmd); !ok {
			break
		}
	}
	return d
}

// Bounds on a server's reply: RFC 5321 §4.5.3.1.5 allows 512 octets a
// line; the bounds are lenient, but a server cannot make us hold more.
const (
	maxReplyLine  = 2048
	maxReplyLines = 100
)

// reply is one SMTP reply (RFC 5321 §4.2): its code and the text of each
// line, without the code and separator.
type reply struct {
	Code int
	Text []string
}

// lines renders the reply as it was sent.
func (r reply) lines() []string {
	out := make([]string, len(r.Text))
	for i, t := range r.Text {
		sep := "-"
		if i == len(r.Text)-1 {
			sep = " "
		}
		out[i] = strings.TrimRight(strconv.Itoa(r.Code)+sep+t, " ")
	}
	return out
}

// readReply reads one reply: lines "NNN-text" ended by "NNN text" or
// "NNN". Every line must carry the same code, 200 to 599. A bare LF ends
// a line as well as CRLF. Text is kept as sent and sizes are bounded.
func readReply(r *bufio.Reader) (reply, error) {
	var rep reply
	for {
		line, err := readLine(r)
		if err != nil {
			return rep, err
		}
		if len(line) < 3 || !isDigits3(line) || line[0] < '2' || line[0] > '5' {
			return rep, fmt.Errorf("malformed reply line %s", strconv.QuoteToASCII(line))
		}
		code, _ := strconv.Atoi(line[:3])
		sep := byte(' ')
		if len(line) > 3 {
			sep = line[3]
		}
		if sep != ' ' && sep != '-' {
			return rep, fmt.Errorf("malformed reply line %s", strconv.QuoteToASCII(line))
		}
		if rep.Code != 0 && code != rep.Code {
			return rep, fmt.Errorf("reply lines with different codes %d and %d", rep.Code, code)
		}
		rep.Code = code
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		rep.Text = append(rep.Text, text)
		if sep == ' ' {
			return rep, nil
		}
		if len(rep.Text) >= maxReplyLines {
			return rep, fmt.Errorf("reply longer than %d lines", maxReplyLines)
		}
	}
}

func isDigits3(s string) bool {
	return '0' <= s[0] && s[0] <= '9' && '0' <= s[1] && s[1] <= '9' && '0' <= s[2] && s[2] <= '9'
}

// readLine reads up to LF, at most maxReplyLine octets, and drops the
// line end.
func readLine(r *bufio.Reader) (string, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > maxReplyLine+2 {
			return "", fmt.Errorf("reply line longer than %d octets", maxReplyLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		break
	}
	line := strings.TrimSuffix(string(buf), "\n")
	return strings.TrimSuffix(line, "\r"), nil
}
