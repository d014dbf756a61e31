package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

// Session is one SMTP session of a workload.
type Session struct {
	IP     netip.Addr
	HELO   string
	Sender string // "" is the null sender <>
	Rcpt   string
	Line   int
}

// maxField bounds one field: a workload line is typed by a person, and a
// milter packet must stay far below go-milter's 1 MiB limit.
const maxField = 4096

// ParseWorkload reads sessions, one a line: client IP, HELO name, envelope
// sender (<> for the null sender) and recipient, separated by spaces, tabs
// or commas. Blank lines and lines starting with # are skipped. Errors name
// the file and line.
func ParseWorkload(name string, r io.Reader) ([]Session, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 4*maxField+64)
	var out []Session
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		s, err := parseSession(text)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		s.Line = line
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: line too long", name, line+1)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no sessions", name)
	}
	return out, nil
}

func parseSession(text string) (Session, error) {
	fields := strings.FieldsFunc(text, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t'
	})
	if len(fields) != 4 {
		return Session{}, fmt.Errorf("want 4 fields (client IP, HELO, sender, recipient), got %d", len(fields))
	}
	for _, f := range fields {
		if len(f) > maxField {
			return Session{}, fmt.Errorf("field longer than %d bytes", maxField)
		}
		if strings.ContainsRune(f, 0) {
			// A NUL would end the field early inside the milter packet.
			return Session{}, errors.New("NUL byte in a field")
		}
	}
	ip, err := netip.ParseAddr(fields[0])
	if err != nil || ip.Zone() != "" {
		return Session{}, fmt.Errorf("client IP %q is not an IP address", fields[0])
	}
	s := Session{
		IP:     ip.Unmap(),
		HELO:   fields[1],
		Sender: strings.TrimSuffix(strings.TrimPrefix(fields[2], "<"), ">"),
		Rcpt:   strings.TrimSuffix(strings.TrimPrefix(fields[3], "<"), ">"),
	}
	if s.Rcpt == "" {
		return Session{}, errors.New("empty recipient")
	}
	return s, nil
}

// LoadWorkload parses the workload file at path.
func LoadWorkload(path string) ([]Session, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	defer f.Close()
	return ParseWorkload(path, f)
}
