package milter_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/vouch-mail/vouch/checks/dnstest"
)

// vouch must never multiply DNS load: these tests count the queries the
// test server receives while whole sessions go through the milter.

// queryCounts parses dnstest's query log into counts per "name TYPE",
// UDP and TCP together (a retry over TCP is a second query too).
func queryCounts(t *testing.T, d *dnstest.Server) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, line := range d.QueryLog() {
		// "name TYPE/proto xN"
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("query log line %q", line)
		}
		typ, _, _ := strings.Cut(f[1], "/")
		n, err := strconv.Atoi(strings.TrimPrefix(f[2], "x"))
		if err != nil {
			t.Fatalf("query log line %q", line)
		}
		out[f[0]+" "+typ] += n
	}
	return out
}

var dnsStories = []struct {
	name string
	s    benchSession
	want gomilter.ActionCode
}{
	{"pass", benchSession{"127.0.0.10", "mail.good.test", "alice@good.test", "user@vouch.test"}, gomilter.ActContinue},
	{"null sender", benchSession{"127.0.0.10", "mail.good.test", "", "user@vouch.test"}, gomilter.ActContinue},
	{"spf fail", benchSession{"127.0.0.13", "mail.other.test", "mallory@good.test", "user@vouch.test"}, gomilter.ActReplyCode},
	{"helo mismatch", benchSession{"127.0.0.13", "mail.good.test", "carol@other.test", "user@vouch.test"}, gomilter.ActContinue},
	{"no ptr", benchSession{"127.0.0.11", "mail.nospf.test", "alice@nospf.test", "user@vouch.test"}, gomilter.ActReplyCode},
	{"ipv6", benchSession{"::10", "mail6.good.test", "alice@good.test", "user@vouch.test"}, gomilter.ActContinue},
	{"unconfirmed ptr", benchSession{"127.0.0.12", "liar.test", "bob@nospf.test", "user@vouch.test"}, gomilter.ActContinue},
}

// Within one session (two messages, checks for iprev, HELO, SPF of HELO
// and of MAIL FROM overlapping), no name is asked twice for one type: the
// checks share lookups through the cache and the coalescing of in-flight
// queries.
func TestNoDuplicateQueryWithinSession(t *testing.T) {
	for _, st := range dnsStories {
		t.Run(st.name, func(t *testing.T) {
			e := newEnv(t)
			client := benchClient(e.addr)
			code, _, err := st.s.runMessages(client, 1, 2)
			if err != nil {
				t.Fatal(err)
			}
			if code != st.want {
				t.Fatalf("answer %c, want %c", code, st.want)
			}
			counts := queryCounts(t, e.dns)
			if len(counts) == 0 {
				t.Fatal("no DNS queries at all: the checks did not run")
			}
			for q, n := range counts {
				if n != 1 {
					t.Errorf("%s asked %d times in one session", q, n)
				}
			}
			if t.Failed() {
				t.Logf("queries: %q", e.dns.QueryLog())
			}
		})
	}
}

// Sessions from the same client arriving together share the lookups in
// flight: every answer is delayed so that all sessions ask at once, and
// each name and type still reaches the server once.
func TestConcurrentSessionsCoalesceLookups(t *testing.T) {
	const sessions = 16
	e := newEnv(t)
	names := []string{dnstest.ReverseName("127.0.0.10"), "mail.good.test", "good.test"}
	for _, n := range names {
		e.dns.SetFault(n, dnstest.Fault{Delay: 150 * time.Millisecond})
	}
	client := benchClient(e.addr)
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, fields, err := goodSession.run(client, i)
			if err != nil {
				t.Error(err)
				return
			}
			if code != gomilter.ActContinue || fields != 2 {
				t.Errorf("session %d: answer %c with %d fields, want continue with 2", i, code, fields)
			}
		}()
	}
	wg.Wait()
	counts := queryCounts(t, e.dns)
	if len(counts) == 0 {
		t.Fatal("no DNS queries at all")
	}
	for q, n := range counts {
		if n != 1 {
			t.Errorf("%s asked %d times by %d concurrent sessions, want once", q, n, sessions)
		}
	}
	if t.Failed() {
		t.Logf("queries: %q", e.dns.QueryLog())
	}
}

// With a warm cache, a workload of repeat senders costs (almost) no
// upstream queries: the target is under 0.05 a session.
func TestWarmCacheQueriesPerSession(t *testing.T) {
	const sessions = 120
	e := newEnv(t)
	client := benchClient(e.addr)
	run := func(i int) {
		st := dnsStories[i%len(dnsStories)]
		code, _, err := st.s.run(client, i)
		if err != nil {
			t.Fatal(err)
		}
		if code != st.want {
			t.Fatalf("%s: answer %c, want %c", st.name, code, st.want)
		}
	}
	for i := range dnsStories {
		run(i) // warm-up: one pass
	}
	cold := e.dns.TotalQueries()
	e.dns.ResetCounts()
	for i := range sessions {
		run(i)
	}
	n := e.dns.TotalQueries()
	perSession := float64(n) / sessions
	t.Logf("cold pass: %d queries for %d sessions; warm: %d queries for %d sessions (%.4f a session)",
		cold, len(dnsStories), n, sessions, perSession)
	if perSession >= 0.05 {
		t.Errorf("%.4f upstream queries a session with a warm cache, want < 0.05: %q", perSession, e.dns.QueryLog())
	}
}
