package mta

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests run real MTAs against the fixture milter (fixture_test.go).
// The expectations are what Postfix 3.7.11 and Sendmail 8.17.1.9 (Debian
// 12) actually do; README.md reports them for the docs.

// mailTimeout bounds waiting for a delivery: an upper bound for a loaded
// CI machine, not a speed requirement.
const mailTimeout = 60 * time.Second

// expected is what one MTA shows a client and a milter.
type expected struct {
	// Replies to RCPT TO the fixture answers; {rcpt} is the recipient.
	blocked, busy, tempfail, reject string
	// Header field names of a delivered message, top down, up to the
	// client's first header.
	topFields []string
	// Macro names in the first SMFIC_MACRO packet of each stage.
	macros map[byte][]string
	// milterDown[DefaultAction]: the greeting's code, EHLO's code and the
	// reply to MAIL FROM when the milter cannot be reached.
	milterDown map[string][3]string
	// hostile[i]: the reply code to hostileInputs()[i] and what the milter
	// got ("-" for nothing: the MTA refused the command itself).
	hostile []hostileResult
}

type hostileResult struct {
	code   int
	milter string
}

// hostileInputs are client-supplied strings vouch must survive; what each
// MTA passes on is recorded in expected.hostile.
func hostileInputs() []struct{ cmd, arg string } {
	return []struct{ cmd, arg string }{
		{"EHLO", `a%b"c;d`},
		{"EHLO", "\xff\xfe.example"},
		{"EHLO", strings.Repeat("x", 1000)},
		{"EHLO", "a\rb"},
		{"EHLO", "[127.0.7.5]"},
		{"MAIL", `"a;b%c"@client.example`},
		{"MAIL", `a%b@client.example`},
		{"MAIL", "caf\xc3\xa9@client.example"},
		{"MAIL", "a\xffb@client.example"},
		{"MAIL", ""},
	}
}

func expectFor(name string) expected {
	switch name {
	case "postfix":
		return expected{
			blocked:   "550 5.7.1 blocked % test",
			busy:      "451 4.7.1 busy % try later",
			tempfail:  "451 4.7.1 Service unavailable - try again later",
			reject:    "550 5.7.1 Command rejected",
			topFields: []string{"Return-Path", "X-Fixture", "Received", "From"},
			macros: map[byte][]string{
				'C': {"j", "{daemon_name}", "{daemon_addr}", "v", "_"},
				'H': nil,
				'M': {"{mail_addr}", "{mail_host}", "{mail_mailer}"},
				'R': {"{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"},
				'L': {"i"},
				'N': {"i"},
				'B': {"i"},
				'E': {"i"},
			},
			milterDown: map[string][3]string{
				"tempfail": {"220", "250", "451 4.7.1 Service unavailable - try again later"},
				"reject":   {"554", "250", "550 5.5.0 Service unavailable"},
				"accept":   {"220", "250", "250 2.1.0 Ok"},
			},
			hostile: []hostileResult{
				{250, `a%b"c;d`},
				{500, "-"}, // bad UTF-8 syntax
				{250, strings.Repeat("x", 1000)},
				{250, "a b"}, // CR became a space
				{250, "[127.0.7.5]"},
				{250, `<"a;b%c"@client.example>`},
				{250, `<a%b@client.example>`},
				{250, "<caf\xc3\xa9@client.example>"},
				{500, "-"},
				{250, "<>"},
			},
		}
	case "sendmail":
		return expected{
			blocked:   "550 5.7.1 <{rcpt}>... blocked % test",
			busy:      "451 4.7.1 busy % try later",
			tempfail:  "451 4.3.2 Please try again later",
			reject:    "550 5.7.1 <{rcpt}>... Command rejected",
			topFields: []string{"Return-Path", "X-Fixture", "Received", "Date", "From"},
			macros: map[byte][]string{
				'C': {"j", "_", "{daemon_name}", "{if_name}", "{client_addr}", "{client_port}", "{client_name}", "{client_ptr}", "{client_resolve}"},
				'H': nil,
				'M': {"i", "{mail_mailer}", "{mail_host}", "{mail_addr}"},
				'R': {"{rcpt_mailer}", "{rcpt_host}", "{rcpt_addr}"},
				'E': {"{msg_id}"},
			},
			milterDown: map[string][3]string{
				"tempfail": {"220", "250", "451 4.3.2 Please try again later"},
				"reject":   {"554", "250", "550 5.0.0 Command rejected"},
				"accept":   {"220", "250", "250 2.1.0 <sender@client.example>... Sender ok"},
			},
			hostile: []hostileResult{
				{501, "-"}, // Invalid domain name
				{501, "-"},
				{501, "-"},
				{501, "-"},
				{250, "[127.0.7.5]"},
				{250, `<"a;b%c"@client.example>`},
				{250, `<a%b@client.example>`},
				{250, "<caf\xc3\xa9@client.example>"},
				{501, "-"}, // non-printable character
				{250, "<>"},
			},
		}
	}
	panic("no expectations for " + name)
}

// TestFixtureMilter runs each MTA against the fixture milter: delivery
// with the milter's headers, the milter's RCPT replies as the client sees
// them, and the macros the MTA sends.
func TestFixtureMilter(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want := expectFor(name)
			fx := startFixtureMilter(t)
			s := Start(t, name, Options{MilterAddr: fx.Addr})
			dom := s.Domain()

			t.Run("delivers with the milter's headers", func(t *testing.T) {
				from := net.IPv4(127, 0, 2, 1)
				c := Dial(t, s.SMTPAddr(), from)
				mustCode(t, c.Greeting(), 220)
				mustCode(t, c.Ehlo("client.example"), 250)
				mustCode(t, c.MailFrom("sender@client.example"), 250)
				mustCode(t, c.RcptTo("alice@"+dom), 250)
				mustCode(t, c.RcptTo("Bob@"+dom), 250)
				msg := SimpleMessage("sender@client.example", "alice@"+dom, "harness test", "hello\n.leading dot\nend")
				mustCode(t, c.Data(msg), 250)
				mustCode(t, c.Quit(), 221)

				for _, user := range []string{"alice", "bob"} {
					got := s.Mailbox(t, user, 1, mailTimeout)
					if len(got) != 1 {
						t.Fatalf("%s: %d messages, want 1", user, len(got))
					}
					m := got[0]
					if v, want := m.Get("X-Fixture"), "client=127.0.2.1 helo=client.example"; v != want {
						t.Errorf("%s: X-Fixture = %q, want %q", user, v, want)
					}
					if v := m.Get("X-Fixture-Added"); v != "yes" {
						t.Errorf("%s: X-Fixture-Added = %q, want yes", user, v)
					}
					if v := m.Get("Subject"); v != "harness test" {
						t.Errorf("%s: Subject = %q", user, v)
					}
					if body := string(m.Body); body != "hello\n.leading dot\nend\n" {
						t.Errorf("%s: body = %q", user, body)
					}
					if v, want := m.Get("Return-Path"), "<sender@client.example>"; v != want {
						t.Errorf("%s: Return-Path = %q, want %q", user, v, want)
					}
					var names []string
					for _, f := range m.Fields[:min(len(want.topFields), len(m.Fields))] {
						names = append(names, f.Name)
					}
					if !slices.Equal(names, want.topFields) {
						t.Errorf("%s: top header fields %q, want %q", user, names, want.topFields)
					}
					// The appended header is the last one.
					if i := m.Index("X-Fixture-Added"); i != len(m.Fields)-1 {
						t.Errorf("%s: X-Fixture-Added at %d of %d fields, want last", user, i, len(m.Fields))
					}
				}
			})

			t.Run("milter replies at RCPT", func(t *testing.T) {
				c := Dial(t, s.SMTPAddr(), net.IPv4(127, 0, 2, 2))
				mustCode(t, c.Ehlo("client.example"), 250)
				mustCode(t, c.MailFrom("sender@client.example"), 250)
				for _, tc := range []struct{ rcpt, want string }{
					{"blocked", want.blocked},
					{"busy", want.busy},
					{"tempfail", want.tempfail},
					{"reject", want.reject},
				} {
					addr := tc.rcpt + "@" + dom
					want := strings.ReplaceAll(tc.want, "{rcpt}", addr)
					if got := c.RcptTo(addr).String(); got != want {
						t.Errorf("RCPT TO:<%s>: got %q, want %q", addr, got, want)
					}
				}
				// A rejected recipient leaves the transaction usable.
				mustCode(t, c.RcptTo("carol@"+dom), 250)
				mustCode(t, c.Rset(), 250)
				mustCode(t, c.Quit(), 221)
			})

			t.Run("hostile client strings", func(t *testing.T) {
				for i, in := range hostileInputs() {
					ip := net.IPv4(127, 0, 7, byte(i+1))
					c := Dial(t, s.SMTPAddr(), ip)
					var r Reply
					if in.cmd == "EHLO" {
						r = c.Cmd("EHLO " + in.arg)
					} else {
						mustCode(t, c.Ehlo("client.example"), 250)
						r = c.Cmd("MAIL FROM:<" + in.arg + ">")
					}
					c.Quit()
					// The MTA talked to the milter before it replied.
					ss := fx.session(t, ip.String())
					got := ss.Helos
					if in.cmd == "MAIL" {
						got = ss.Mails
					}
					w := want.hostile[i]
					if w.milter == "-" && len(got) != 0 || w.milter != "-" && (len(got) != 1 || got[0] != w.milter) || r.Code != w.code {
						t.Errorf("%s %.40q: reply %q, milter got %.60q; want code %d, milter %.60q", in.cmd, in.arg, r, got, w.code, w.milter)
					}
				}
			})

			t.Run("macros", func(t *testing.T) {
				ss := fx.session(t, "127.0.2.1")
				t.Logf("%s sent, delivering session:\n%s", name, ss.report())
				t.Logf("%s sent, rejecting session:\n%s", name, fx.session(t, "127.0.2.2").report())
				if want := "[127.0.2.1]"; ss.Host != want {
					t.Errorf("connect host name %q, want %q", ss.Host, want)
				}
				for stage, names := range want.macros {
					if got := ss.macroNames(stage); !slices.Equal(got, names) {
						t.Errorf("%s macros %q, want %q", stageName(stage), got, names)
					}
				}
				if v, _ := ss.macro('C', "j"); v != s.Hostname() {
					t.Errorf("macro j = %q, want %q", v, s.Hostname())
				}
				if name == "sendmail" {
					if v, _ := ss.macro('C', "{client_addr}"); v != "127.0.2.1" {
						t.Errorf("{client_addr} = %q, want 127.0.2.1", v)
					}
				}
			})
		})
	}
}

// TestMilterDown shows what each MTA answers when the milter cannot be
// reached, per DefaultAction, and that "accept" delivers without it.
func TestMilterDown(t *testing.T) {
	for _, name := range Names() {
		for _, action := range []string{"tempfail", "reject", "accept"} {
			t.Run(name+"/"+action, func(t *testing.T) {
				t.Parallel()
				port, err := freePort() // nothing listens there
				if err != nil {
					t.Fatal(err)
				}
				s := Start(t, name, Options{MilterAddr: fmt.Sprintf("inet:%d@127.0.0.1", port), DefaultAction: action})
				want := expectFor(name).milterDown[action]
				c := Dial(t, s.SMTPAddr(), net.IPv4(127, 0, 3, 1))
				if got := c.Greeting(); fmt.Sprint(got.Code) != want[0] {
					t.Errorf("greeting: got %q, want code %s", got, want[0])
				}
				if got := c.Ehlo("client.example"); fmt.Sprint(got.Code) != want[1] {
					t.Errorf("EHLO: got %q, want code %s", got, want[1])
				}
				if got := c.MailFrom("sender@client.example").String(); got != want[2] {
					t.Errorf("MAIL FROM: got %q, want %q", got, want[2])
				}
				if action != "accept" {
					return
				}
				mustCode(t, c.RcptTo("dave@"+s.Domain()), 250)
				mustCode(t, c.Data(SimpleMessage("sender@client.example", "dave@"+s.Domain(), "no milter", "hi")), 250)
				m := s.Mailbox(t, "dave", 1, mailTimeout)[0]
				if m.Index("X-Fixture") >= 0 || m.Get("Subject") != "no milter" {
					t.Errorf("delivered message:\n%s", m.Raw)
				}
			})
		}
	}
}

// TestStopLeavesNothing: Stop ends every process of the instance, even
// with an SMTP session open, and frees the port.
func TestStopLeavesNothing(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, name, Options{})
			c := Dial(t, s.SMTPAddr(), net.IPv4(127, 0, 4, 1))
			mustCode(t, c.Ehlo("client.example"), 250)
			pgid := leaderPID(s)
			before := processesOf(t, pgid, s.Dir())
			if len(before) < 2 {
				t.Fatalf("want the daemon and a session process, found %v", before)
			}
			start := time.Now()
			if err := s.Stop(); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			t.Logf("%s stopped in %v (%d processes)", name, time.Since(start).Round(time.Millisecond), len(before))
			if left := processesOf(t, pgid, s.Dir()); len(left) > 0 {
				t.Errorf("processes left after Stop: %v", left)
			}
			_, port, _ := net.SplitHostPort(s.SMTPAddr())
			var p int
			fmt.Sscan(port, &p)
			if inodes, err := listenInodes(p); err != nil || len(inodes) > 0 {
				t.Errorf("port %d still listening after Stop (%v, err %v)", p, inodes, err)
			}
			if err := s.Stop(); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		})
	}
}

func leaderPID(s Server) int {
	switch s := s.(type) {
	case *postfixServer:
		return s.proc.cmd.Process.Pid
	case *sendmailServer:
		return s.proc.cmd.Process.Pid
	}
	panic("unknown server")
}

// processesOf lists live processes in process group pgid or whose command
// line names dir, as "pid:comm".
func processesOf(t *testing.T, pgid int, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		s := string(stat)
		rp := strings.LastIndexByte(s, ')')
		if rp < 0 {
			continue
		}
		f := strings.Fields(s[rp+1:])
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		var pg int
		fmt.Sscan(f[2], &pg)
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if pg == pgid || strings.Contains(string(cmdline), dir) {
			found = append(found, fmt.Sprintf("%d:%s", pid, s[strings.IndexByte(s, '(')+1:rp]))
		}
	}
	return found
}

func mustCode(t *testing.T, r Reply, code int) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("got %q, want code %d", r.String(), code)
	}
}

// TestStartSkipsOrFails: without the MTA, Start skips, and fails under
// VOUCH_E2E=1. Checked on Sendmail with a root that does not exist.
func TestStartSkipsOrFails(t *testing.T) {
	t.Setenv("VOUCH_SENDMAIL_ROOT", filepath.Join(t.TempDir(), "absent"))
	for _, e2e := range []string{"", "1"} {
		t.Setenv("VOUCH_E2E", e2e)
		r := runTB(func(tb testing.TB) { StartSendmail(tb, Options{}) })
		if e2e == "1" && (!r.failed || r.skipped) {
			t.Errorf("VOUCH_E2E=1: failed=%v skipped=%v, want a failure", r.failed, r.skipped)
		}
		if e2e == "" && (r.failed || !r.skipped) {
			t.Errorf("VOUCH_E2E unset: failed=%v skipped=%v, want a skip", r.failed, r.skipped)
		}
		if !strings.Contains(r.msg, "sendmail not unpacked") || !strings.Contains(r.msg, "VOUCH_E2E=1") {
			t.Errorf("message %q does not say what is missing and how VOUCH_E2E acts", r.msg)
		}
	}
}

type tbResult struct {
	failed, skipped bool
	msg             string
}

// recordingTB is a testing.TB that records Fatal and Skip instead of
// acting on the real test; both end the calling goroutine, as the real
// ones do.
type recordingTB struct {
	testing.TB
	res *tbResult
}

func (r recordingTB) Helper()                   {}
func (r recordingTB) Cleanup(func())            {}
func (r recordingTB) Logf(string, ...any)       {}
func (r recordingTB) Fatalf(f string, a ...any) { r.end(true, false, f, a) }
func (r recordingTB) Skipf(f string, a ...any)  { r.end(false, true, f, a) }
func (r recordingTB) end(fail, skip bool, f string, a []any) {
	*r.res = tbResult{fail, skip, fmt.Sprintf(f, a...)}
	runtime.Goexit()
}

func runTB(f func(testing.TB)) tbResult {
	var res tbResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(recordingTB{res: &res})
	}()
	<-done
	return res
}
