package mta

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests of the harness's own parsers and config writers; no MTA needed
// except in TestPortInUse.

func TestParseMilterAddr(t *testing.T) {
	for _, tc := range []struct {
		in                string
		postfix, sendmail string // "" means an error is expected
	}{
		{"inet:8895@127.0.0.1", "inet:127.0.0.1:8895", "inet:8895@127.0.0.1"},
		{"inet:127.0.0.1:8895", "inet:127.0.0.1:8895", "inet:8895@127.0.0.1"},
		{"inet:8895@localhost", "inet:localhost:8895", "inet:8895@localhost"},
		{"inet6:8895@[::1]", "inet:[::1]:8895", "inet6:8895@::1"},
		{"inet6:8895@::1", "inet:[::1]:8895", "inet6:8895@::1"},
		{"inet:[::1]:8895", "inet:[::1]:8895", "inet6:8895@::1"},
		{"unix:/run/vouch/milter.sock", "unix:/run/vouch/milter.sock", "local:/run/vouch/milter.sock"},
		{"local:/run/vouch/milter.sock", "unix:/run/vouch/milter.sock", "local:/run/vouch/milter.sock"},
		{"/run/vouch/milter.sock", "unix:/run/vouch/milter.sock", "local:/run/vouch/milter.sock"},
		{"inet:0@127.0.0.1", "", ""},
		{"inet:65536@127.0.0.1", "", ""},
		{"inet:x@127.0.0.1", "", ""},
		{"inet:8895@bad host", "", ""},
		{"inet:8895@a,F=R", "", ""},
		{"unix:relative/path", "", ""},
		{"unix:/path with space", "", ""},
		{"local:/a,F=R", "", ""},
		{"tcp:127.0.0.1:8895", "", ""},
		{"", "", ""},
		{"inet:", "", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			a, err := parseMilterAddr(tc.in)
			if tc.postfix == "" {
				if err == nil {
					t.Fatalf("parsed as %+v, want an error", a)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := a.postfix(); got != tc.postfix {
				t.Errorf("postfix() = %q, want %q", got, tc.postfix)
			}
			if got := a.sendmail(); got != tc.sendmail {
				t.Errorf("sendmail() = %q, want %q", got, tc.sendmail)
			}
		})
	}
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		code     int
		text     string
		err      bool
	}{
		{"single", "250 2.1.0 Ok\r\n", 250, "2.1.0 Ok", false},
		{"multi", "250-mx.example.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n", 250, "mx.example.test\nPIPELINING\nCHUNKING", false},
		{"code only", "250\r\n", 250, "", false},
		{"bare LF", "550 5.7.1 no\n", 550, "5.7.1 no", false},
		{"percent and 8-bit kept", "550 5.7.1 100% sure \xff\r\n", 550, "5.7.1 100% sure \xff", false},
		{"code changes mid-reply", "250-a\r\n251 b\r\n", 0, "", true},
		{"bad separator", "250xOk\r\n", 0, "", true},
		{"short", "25\r\n", 0, "", true},
		{"not a code", "abc Ok\r\n", 0, "", true},
		{"code out of range", "999 Ok\r\n", 0, "", true},
		{"truncated", "250-a\r\n250 b", 0, "", true},
		{"empty", "", 0, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := readReply(bufio.NewReader(strings.NewReader(tc.in)))
			if tc.err {
				if err == nil {
					t.Fatalf("got %+v, want an error", r)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != tc.code || r.Text != tc.text || r.Raw != tc.in {
				t.Errorf("got %+v, want code %d text %q raw %q", r, tc.code, tc.text, tc.in)
			}
		})
	}
	t.Run("reads one reply at a time", func(t *testing.T) {
		br := bufio.NewReader(strings.NewReader("220 hi\r\n250 ok\r\n"))
		for _, want := range []string{"220 hi", "250 ok"} {
			r, err := readReply(br)
			if err != nil || r.String() != want {
				t.Fatalf("got %q, %v; want %q", r.String(), err, want)
			}
		}
		if _, err := readReply(br); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last reply: %v, want EOF", err)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		in := strings.Repeat("250-x\r\n", maxReplyLines+5) + "250 x\r\n"
		if _, err := readReply(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Fatal("an endless reply was accepted")
		}
	})
}

func TestDataBytes(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"LF to CRLF", "a: b\n\nbody\n", "a: b\r\n\r\nbody\r\n.\r\n"},
		{"CRLF kept", "a: b\r\n\r\nbody\r\n", "a: b\r\n\r\nbody\r\n.\r\n"},
		{"no final line end", "a: b\n\nbody", "a: b\r\n\r\nbody\r\n.\r\n"},
		{"dots stuffed", "a: b\n\n.\n..x\n.y\nz.\n", "a: b\r\n\r\n..\r\n...x\r\n..y\r\nz.\r\n.\r\n"},
		{"empty", "", ".\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(dataBytes([]byte(tc.in))); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseMessage(t *testing.T) {
	raw := "Return-Path: <s@x.test>\n" +
		"X-Fixture: client=127.0.0.1\n" +
		"Received: from a (b [127.0.0.1])\n\tby mx.example.test with ESMTP id X;\n\tSun, 1 Jan 2026 00:00:00 +0000\n" +
		"Subject:  spaced  \n" +
		"Empty:\n" +
		"not a field\n" +
		"\n" +
		"body\nSubject: not a header\n"
	m := ParseMessage([]byte(raw))
	var names []string
	for _, f := range m.Fields {
		names = append(names, f.Name)
	}
	if want := []string{"Return-Path", "X-Fixture", "Received", "Subject", "Empty", ""}; !slices.Equal(names, want) {
		t.Fatalf("field names %q, want %q", names, want)
	}
	for _, tc := range []struct{ name, want string }{
		{"return-path", "<s@x.test>"},
		{"RECEIVED", "from a (b [127.0.0.1])\tby mx.example.test with ESMTP id X;\tSun, 1 Jan 2026 00:00:00 +0000"},
		{"Subject", "spaced"},
		{"Empty", ""},
		{"Absent", ""},
	} {
		if got := m.Get(tc.name); got != tc.want {
			t.Errorf("Get(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := m.Fields[2].Raw; got != "Received: from a (b [127.0.0.1])\n\tby mx.example.test with ESMTP id X;\n\tSun, 1 Jan 2026 00:00:00 +0000" {
		t.Errorf("Received raw = %q", got)
	}
	if got := m.Header.Get("X-Fixture"); got != "client=127.0.0.1" {
		t.Errorf("Header.Get = %q", got)
	}
	if got := string(m.Body); got != "body\nSubject: not a header\n" {
		t.Errorf("body = %q", got)
	}
	if m.Index("x-fixture") != 1 || m.Index("nope") != -1 {
		t.Errorf("Index: %d, %d", m.Index("x-fixture"), m.Index("nope"))
	}
	crlf := ParseMessage([]byte("A: 1\r\n folded\r\n\r\nb\r\n"))
	if got := crlf.Get("A"); got != "1 folded" || string(crlf.Body) != "b\r\n" {
		t.Errorf("CRLF message: A=%q body=%q", got, crlf.Body)
	}
}

func TestReadMaildirOrder(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(-time.Hour)
	// Names sort opposite to delivery order; mtime decides.
	for i, f := range []string{"new/c", "cur/b", "new/a"} {
		p := filepath.Join(dir, f)
		if err := os.WriteFile(p, []byte("Subject: "+f+"\n\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		at := base.Add(time.Duration(i) * time.Second)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := readMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, m.Get("Subject"))
	}
	if want := []string{"new/c", "cur/b", "new/a"}; !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
	if msgs, err := readMaildir(filepath.Join(dir, "absent")); err != nil || len(msgs) != 0 {
		t.Errorf("absent maildir: %d messages, %v", len(msgs), err)
	}
}

func TestValidUser(t *testing.T) {
	for u, want := range map[string]bool{
		"alice": true, "a.b+c_d-e": true, "0": true,
		"": false, ".hidden": false, "../x": false, "a/b": false, "Alice": false, "a b": false,
		strings.Repeat("a", 65): false,
	} {
		if got := validUser(u); got != want {
			t.Errorf("validUser(%q) = %v, want %v", u, got, want)
		}
	}
}

func TestConfigRejectsInjection(t *testing.T) {
	if _, err := renderMainCF(map[string]string{"smtpd_milters": "inet:127.0.0.1:1\nmynetworks = 0.0.0.0/0"}); err == nil {
		t.Error("main.cf value with a newline accepted")
	}
	if _, err := renderMainCF(map[string]string{"bad name": "x"}); err == nil {
		t.Error("main.cf parameter name with a space accepted")
	}
	ps := &postfixServer{instance: instance{o: Options{PostfixSMTPD: map[string]string{"smtpd_milters": "} -o {x=y"}}}}
	if _, err := ps.masterCF(); err == nil {
		t.Error("master.cf option with braces accepted")
	}
	ss := &sendmailServer{instance: instance{dir: "/tmp/x", o: Options{Macros: Macros{Connect: []string{"{a}')dnl"}}}}, root: "/opt/x"}
	if _, err := ss.mc(); err == nil {
		t.Error("macro name with m4 quotes accepted")
	}
	ss = &sendmailServer{instance: instance{dir: "/tmp/x", o: Options{MilterAddr: "inet:1@127.0.0.1", SendmailFilterFlags: "T, S=inet:2@evil"}}, root: "/opt/x"}
	if _, err := ss.mc(); err == nil {
		t.Error("filter flags with a comma accepted")
	}
	for _, o := range []Options{{Domain: "a b"}, {Hostname: "x\nDj"}, {DefaultAction: "discard"}} {
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

// TestPortInUse: start-up recognises a taken port, so retryPorts can pick
// another instead of failing the test or waiting for the timeout.
func TestPortInUse(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			taken := ln.Addr().(*net.TCPAddr).Port
			// A normal start first: it skips or fails the test as the
			// environment demands and gives a prepared instance, which
			// is then restarted on the taken port (cleanup stops it).
			s := Start(t, name, Options{})
			begin := time.Now()
			switch s := s.(type) {
			case *postfixServer:
				if err := s.proc.stop(5 * time.Second); err != nil {
					t.Fatal(err)
				}
				s.proc, s.port = nil, taken
				err = s.start()
			case *sendmailServer:
				if err := s.proc.stop(5 * time.Second); err != nil {
					t.Fatal(err)
				}
				s.proc, s.port = nil, taken
				err = s.start()
			}
			if !errors.Is(err, errAddrInUse) {
				t.Fatalf("start on a taken port: %v, want errAddrInUse", err)
			}
			t.Logf("%s: port clash noticed after %v", name, time.Since(begin).Round(time.Millisecond))
		})
	}
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"250 ok\r\n", "250-a\r\n250 b\r\n", "250\r\n", "550 5.7.1 <a@b>... 100% sure\r\n",
		"250-a\r\n251 b\r\n", "2", "\r\n", "250 \xff\x00\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := readReply(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return
		}
		if r.Code < 100 || r.Code > 599 {
			t.Fatalf("code %d accepted", r.Code)
		}
		if !strings.HasPrefix(in, r.Raw) || !strings.HasSuffix(r.Raw, "\n") {
			t.Fatalf("Raw %q is not a line-complete prefix of %q", r.Raw, in)
		}
		if n := strings.Count(r.Raw, "\n"); n != strings.Count(r.Text, "\n")+1 {
			t.Fatalf("%d lines but Text %q", n, r.Text)
		}
	})
}

func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		"A: b\n\nbody\n", "A: b\r\n c\r\n\r\nx", "no colon\n\n", "\n\nbody", " leading\nA:b\n", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := ParseMessage(raw)
		// Header fields and body are pieces of the input, in order.
		var rebuilt strings.Builder
		for _, fl := range m.Fields {
			if strings.ContainsAny(fl.Value, "\n") {
				t.Fatalf("unfolded value %q has a line break", fl.Value)
			}
			if fl.Name != "" && m.Index(fl.Name) < 0 {
				t.Fatalf("Index(%q) = -1", fl.Name)
			}
			rebuilt.WriteString(fl.Raw)
		}
		strip := strings.NewReplacer("\r", "", "\n", "")
		if !strings.HasPrefix(strip.Replace(string(raw)), strip.Replace(rebuilt.String())) {
			t.Fatalf("fields %q are not the start of %q", rebuilt.String(), raw)
		}
		if !strings.HasSuffix(string(raw), string(m.Body)) {
			t.Fatalf("body %q is not the end of %q", m.Body, raw)
		}
	})
}

func FuzzParseMilterAddr(f *testing.F) {
	for _, s := range []string{
		"inet:8895@127.0.0.1", "inet:127.0.0.1:8895", "inet6:1@[::1]", "unix:/a/b", "local:/x", "/x", "inet:@", "inet:[::1]:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		a, err := parseMilterAddr(in)
		if err != nil {
			return
		}
		// Both renderings parse back to the same address, and neither
		// can break out of the config line it is written into.
		for _, s := range []string{a.postfix(), a.sendmail()} {
			if strings.ContainsAny(s, " \t\r\n,'`\"") {
				t.Fatalf("%q renders as %q", in, s)
			}
			b, err := parseMilterAddr(s)
			if err != nil || b != a {
				t.Fatalf("%q -> %q -> %+v, %v; want %+v", in, s, b, err, a)
			}
		}
	})
}
