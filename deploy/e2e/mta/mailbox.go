package mta

import (
	"bytes"
	"fmt"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Message is one delivered message as the MTA wrote it to the mailbox.
type Message struct {
	// Raw is the file as delivered, line ends as the MTA stored them (LF).
	Raw []byte
	// Fields are the header fields in order, top first, including those the
	// MTA's delivery agent prepended (Return-Path, Delivered-To).
	Fields []Field
	// Header holds the same fields by canonical name, values unfolded.
	Header mail.Header
	// Body is everything after the blank line that ends the header.
	Body []byte
	// File is where the message was read from.
	File string
}

// Field is one header field.
type Field struct {
	// Name as written, "" for a line that is no field (no colon).
	Name string
	// Value unfolded: line breaks before continuation lines removed, the
	// leading and trailing white space of the whole value trimmed.
	Value string
	// Raw is the field exactly as stored, continuation lines included,
	// without the final line end.
	Raw string
}

// Get returns the first value of the named field (case-insensitive), "" if
// absent.
func (m Message) Get(name string) string {
	if i := m.Index(name); i >= 0 {
		return m.Fields[i].Value
	}
	return ""
}

// Index returns the position of the first field named name in Fields, -1
// if absent, so tests can assert where an inserted header landed.
func (m Message) Index(name string) int {
	for i, f := range m.Fields {
		if strings.EqualFold(f.Name, name) {
			return i
		}
	}
	return -1
}

// ParseMessage splits a stored message into header fields and body. It
// never fails: a header without a blank line is all header, a line
// without a colon becomes a Field with an empty Name.
func ParseMessage(raw []byte) Message {
	m := Message{Raw: raw, Header: mail.Header{}}
	rest := raw
	for len(rest) > 0 {
		line, next, _ := bytes.Cut(rest, []byte("\n"))
		if len(bytes.TrimRight(line, "\r")) == 0 {
			m.Body = next
			break
		}
		// Continuation lines start with white space (RFC 5322 §2.2.3).
		if (line[0] == ' ' || line[0] == '\t') && len(m.Fields) > 0 {
			f := &m.Fields[len(m.Fields)-1]
			f.Raw += "\n" + string(bytes.TrimRight(line, "\r"))
		} else {
			m.Fields = append(m.Fields, Field{Raw: string(bytes.TrimRight(line, "\r"))})
		}
		rest = next
	}
	for i := range m.Fields {
		f := &m.Fields[i]
		name, value, ok := strings.Cut(f.Raw, ":")
		if !ok || strings.ContainsAny(name, " \t\n") {
			f.Value = strings.TrimSpace(unfold(f.Raw))
			continue
		}
		f.Name = name
		f.Value = strings.TrimSpace(unfold(value))
		key := textproto.CanonicalMIMEHeaderKey(name)
		m.Header[key] = append(m.Header[key], f.Value)
	}
	return m
}

func unfold(s string) string {
	return strings.NewReplacer("\r\n", "", "\n", "").Replace(s)
}

// validUser limits mailbox names to what both MTAs' delivery setups accept
// and what is safe as a path element.
func validUser(u string) bool {
	if u == "" || u[0] == '.' || len(u) > 64 {
		return false
	}
	for _, r := range u {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '+', r == '-':
		default:
			return false
		}
	}
	return true
}

// readMaildir returns the messages in a maildir's new/ and cur/, oldest
// first (by modification time, then name).
func readMaildir(dir string) ([]Message, error) {
	type entry struct {
		path string
		mod  time.Time
	}
	var entries []entry
	for _, sub := range []string{"new", "cur"} {
		des, err := os.ReadDir(filepath.Join(dir, sub))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, de := range des {
			info, err := de.Info()
			if err != nil {
				return nil, err
			}
			entries = append(entries, entry{filepath.Join(dir, sub, de.Name()), info.ModTime()})
		}
	}
	sort.Slice(entries, func(i, j int) bool {
		if !entries[i].mod.Equal(entries[j].mod) {
			return entries[i].mod.Before(entries[j].mod)
		}
		return entries[i].path < entries[j].path
	})
	msgs := make([]Message, 0, len(entries))
	for _, e := range entries {
		raw, err := os.ReadFile(e.path)
		if err != nil {
			return nil, err
		}
		m := ParseMessage(raw)
		m.File = e.path
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// waitMaildir implements Server.Mailbox over a maildir per user under base.
func waitMaildir(t testing.TB, s Server, base, user string, n int, timeout time.Duration) []Message {
	t.Helper()
	u := strings.ToLower(user)
	if !validUser(u) {
		t.Fatalf("mta: mailbox %q: want a local part of a-z 0-9 . _ + - (not starting with '.')", user)
	}
	dir := filepath.Join(base, u)
	deadline := time.Now().Add(timeout)
	for {
		msgs, err := readMaildir(dir)
		if err != nil {
			t.Fatalf("%s: mailbox %s: %v", s.Name(), u, err)
		}
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d message(s) for %s@%s after %v, want %d\n%s log:\n%s",
				s.Name(), len(msgs), u, s.Domain(), timeout, n, s.Name(), logTail(s.Log(), 40))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// SimpleMessage builds a small RFC 5322 message with LF line ends (Data
// converts them to CRLF).
func SimpleMessage(from, to, subject, body string) []byte {
	return fmt.Appendf(nil, "From: <%s>\nTo: <%s>\nSubject: %s\nMessage-ID: <%d.vouch-e2e@%s>\n\n%s\n",
		from, to, subject, time.Now().UnixNano(), "client.test", body)
}

// deliverScript is the local delivery program both MTAs run (Postfix
// through pipe(8), Sendmail as its local mailer) with the recipient's
// local part as argument: one maildir per recipient under mailDir, written
// atomically (tmp/ then rename into new/) so Mailbox never sees a
// half-written message. Exit codes are sysexits: 67 user unknown, 73
// cannot create, 74 I/O error.
func deliverScript(mailDir string) string {
	return `#!/bin/sh
# local delivery of the vouch e2e harness (deploy/e2e/mta)
u=$1
case $u in ''|.*|*[!a-z0-9._+-]*) echo "no mailbox for $u" >&2; exit 67;; esac
d='` + mailDir + `'/$u
mkdir -p "$d/tmp" "$d/new" "$d/cur" || exit 73
f=$(date +%s.%N).$$
cat >"$d/tmp/$f" || exit 74
mv "$d/tmp/$f" "$d/new/$f" || exit 74
`
}
