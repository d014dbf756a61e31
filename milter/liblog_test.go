package milter

import (
	"bytes"
	"log"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/milter/metrics"
)

// panicky is a go-milter backend that panics at HELO, outside any guard
// of vouch's: go-milter recovers it and logs its own line.
type panicky struct{ gomilter.NoOpMilter }

func (panicky) Helo(string, *gomilter.Modifier) (gomilter.Response, error) { panic("boom") }

// TestLibraryLogLines pins the go-milter line LibraryLog still has to
// classify by its text (issue 13 item 6): a go-milter release that words
// it otherwise fails here rather than miscounting panics as protocol
// errors.
func TestLibraryLogLines(t *testing.T) {
	buf := &checktest.LogBuffer{} // go-milter writes from its goroutine
	prev, prevFlags := log.Writer(), log.Flags()
	log.SetOutput(buf)
	log.SetFlags(0)
	defer func() { log.SetOutput(prev); log.SetFlags(prevFlags) }()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &gomilter.Server{NewMilter: func() gomilter.Milter { return panicky{} }}
	go srv.Serve(ln)
	defer ln.Close()
	s, err := gomilter.NewClientWithOptions("tcp", ln.Addr().String(), gomilter.ClientOptions{
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
	}).Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Helo("x") // the connection dies with the panic
	for deadline := time.Now().Add(5 * time.Second); buf.String() == "" && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	line := buf.String()
	if !strings.HasPrefix(line, libraryPanicPrefix+"boom") {
		t.Fatalf("go-milter's panic line is %q, want it to start %q", line, libraryPanicPrefix)
	}

	m := metrics.New(prometheus.NewRegistry(), "test")
	var out bytes.Buffer
	LibraryLog(slog.New(slog.NewTextHandler(&out, nil)), m).Write([]byte(line))
	if got := testutil.ToFloat64(m.MilterErrors.WithLabelValues("panic")); got != 1 {
		t.Errorf("panic line counted %v times as a panic", got)
	}
	if strings.Contains(out.String(), "goroutine") || !strings.Contains(out.String(), "component=go-milter") {
		t.Errorf("logged %q: want the first line only, as go-milter's", out.String())
	}
}

func TestRateLimit(t *testing.T) {
	var out bytes.Buffer
	h := RateLimit(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}), 3, time.Second)
	now := time.Unix(1000, 0)
	st := h.(*rateLimited).s
	st.now = func() time.Time { return now }
	var timers []func()
	st.after = func(d time.Duration, f func()) {
		if d != time.Second {
			t.Errorf("report scheduled in %v, want at the window's end (1s)", d)
		}
		timers = append(timers, f)
	}
	l := slog.New(h)
	// Loggers derived per connection share the counts.
	for i := range 10 {
		l.With("conn", i).Warn("too many milter connections; answering without checks")
		l.Info("decision", "n", i)
	}
	l.Error("other warning")
	lines := func(msg string) []string {
		var got []string
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.Contains(line, msg) {
				got = append(got, line)
			}
		}
		return got
	}
	if got := lines("too many"); len(got) != 3 {
		t.Errorf("%d warnings in the first second, want 3:\n%s", len(got), out.String())
	}
	if got := lines("decision"); len(got) != 10 {
		t.Errorf("info lines held back: %d of 10", len(got))
	}
	if got := lines("other warning"); len(got) != 1 {
		t.Errorf("another message's line held back")
	}
	if len(timers) != 1 {
		t.Fatalf("%d reports scheduled, want 1", len(timers))
	}
	// At the window's end: the last line held back, with the count.
	now = now.Add(time.Second)
	timers[0]()
	got := lines("too many")
	if len(got) != 4 || !strings.Contains(got[3], "conn=9") || !strings.HasSuffix(got[3], "suppressed=7") {
		t.Errorf("the report does not give the last line held back and the 7:\n%s", out.String())
	}
	// A new window: lines pass again, without a count.
	l.Warn("too many milter connections; answering without checks")
	if got := lines("too many"); len(got) != 5 || strings.Contains(got[4], "suppressed") {
		t.Errorf("after the report:\n%s", out.String())
	}
}
