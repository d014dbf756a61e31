package milter_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/answer"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/metrics"
	"github.com/vouch-mail/vouch/milter/socket"
)

// The test world. Each client address has its own story:
//
//	127.0.0.10  mail.good.test: PTR and A agree; good.test's SPF allows it
//	127.0.0.11  no PTR at all
//	127.0.0.12  PTR liar.test, whose A is elsewhere (unconfirmed)
//	127.0.0.13  mail.other.test, confirmed; not allowed by good.test's SPF
//	::10        mail6.good.test, confirmed over IPv6
const zone = `
$ORIGIN test.
$TTL 300
@                 SOA ns.test. hostmaster.test. 1 3600 600 86400 60
mail.good         A     127.0.0.10
mail6.good        AAAA  ::10
good              TXT   "v=spf1 ip4:127.0.0.10 ip6:::10 -all"
mail.good         TXT   "v=spf1 a -all"
liar              A     192.0.2.1
mail.other        A     127.0.0.13
other             TXT   "v=spf1 a:mail.other.test -all"
mail.other        TXT   "v=spf1 a -all"
soft              TXT   "v=spf1 ~all"
10.0.0.127.in-addr.arpa. PTR mail.good.test.
12.0.0.127.in-addr.arpa. PTR liar.test.
13.0.0.127.in-addr.arpa. PTR mail.other.test.
0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. PTR mail6.good.test.
`

type env struct {
	t       *testing.T
	dns     *dnstest.Server
	srv     *milter.Server
	metrics *metrics.Metrics
	reg     *prometheus.Registry
	logs    *checktest.LogBuffer
	network string
	addr    string
}

// setup is what an envOption may change before the server starts.
type setup struct {
	cfg      *config.Config
	resolver milter.Resolver
	logger   *slog.Logger // nil: debug text into env.logs
}

type envOption func(*setup)

// testConfig is the daemon's defaults, but with loopback checked like any
// client and a short deadline.
func testConfig() *config.Config {
	c := config.Default()
	c.Policy.TrustedNetworks = nil
	c.Checks.Deadline = 3 * time.Second
	return c
}

// newEnv starts vouch on a loopback TCP port over a dnstest server holding
// zone, with loopback NOT trusted so that 127.x clients are checked.
func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	return newEnvOn(t, "tcp", opts...)
}

func newEnvOn(t *testing.T, network string, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, dns: dnstest.New(t, zone), reg: prometheus.NewRegistry(), logs: &checktest.LogBuffer{}}
	e.metrics = metrics.New(e.reg, "test")
	res := checktest.ResolverFor(t, checktest.Config(e.dns.Addr, 500*time.Millisecond), e.metrics.DNSObserver())
	s := &setup{cfg: testConfig(), resolver: res}
	for _, opt := range opts {
		opt(s)
	}
	if s.logger == nil {
		s.logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := milter.NewServer(s.cfg, s.resolver, milter.Options{Logger: s.logger, Metrics: e.metrics})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv

	var ln net.Listener
	if network == "unix" {
		path := filepath.Join(t.TempDir(), "vouch.sock")
		ln, err = socket.Listen(socket.Address{Network: "unix", Address: path}, socket.Options{})
		e.network, e.addr = "unix", path
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		e.network = "tcp"
		if err == nil {
			e.addr = ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-served
		if t.Failed() {
			t.Logf("vouch log:\n%s", e.logs.String())
		}
	})
	return e
}

// mta drives one milter connection the way Postfix does: macros before
// each stage, Abort after each transaction.
type mta struct {
	t *testing.T
	s *gomilter.ClientSession
}

func (e *env) connect(ip string) *mta {
	e.t.Helper()
	c := gomilter.NewClientWithOptions(e.network, e.addr, gomilter.ClientOptions{
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
		// Protocol version 2 actions, as Postfix offers them.
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		e.t.Fatalf("milter session: %v", err)
	}
	m := &mta{t: e.t, s: s}
	e.t.Cleanup(func() { s.Close() })
	if ip == "" {
		return m
	}
	a := netip.MustParseAddr(ip)
	fam := gomilter.FamilyInet
	if a.Is6() {
		fam = gomilter.FamilyInet6
	}
	m.macros(gomilter.CodeConn, "j", "mx.vouch.test", "{daemon_name}", "smtpd", "_", "["+ip+"]")
	m.expect("connect", m.must(s.Conn("["+ip+"]", fam, 40000, ip)), "continue")
	return m
}

func (m *mta) macros(code gomilter.Code, kv ...string) {
	m.t.Helper()
	if err := m.s.Macros(code, kv...); err != nil {
		m.t.Fatal(err)
	}
}

func (m *mta) must(a *gomilter.Action, err error) *gomilter.Action {
	m.t.Helper()
	if err != nil {
		m.t.Fatal(err)
	}
	return a
}

func (m *mta) expect(stage string, a *gomilter.Action, want string) {
	m.t.Helper()
	if got := answer.Text(a); got != want {
		m.t.Fatalf("%s: got %q, want %q", stage, got, want)
	}
}

func (m *mta) helo(name, want string) {
	m.t.Helper()
	m.expect("HELO "+name, m.must(m.s.Helo(name)), want)
}

func (m *mta) mail(from, want string, macros ...string) {
	m.t.Helper()
	m.macros(gomilter.CodeMail, append([]string{"i", "QID" + strconv.Itoa(len(from)%100+1)}, macros...)...)
	m.expect("MAIL FROM "+from, m.must(m.s.Mail("<"+from+">", nil)), want)
}

func (m *mta) rcpt(to, want string) {
	m.t.Helper()
	m.macros(gomilter.CodeRcpt, "{rcpt_addr}", to)
	m.expect("RCPT TO "+to, m.must(m.s.Rcpt("<"+to+">", nil)), want)
}

// data sends the header fields and ends the message; it returns the
// modifications vouch asked for.
func (m *mta) data(fields ...string) []gomilter.ModifyAction {
	m.t.Helper()
	for i := 0; i+1 < len(fields); i += 2 {
		m.expect("header", m.must(m.s.HeaderField(fields[i], fields[i+1])), "continue")
	}
	m.expect("EOH", m.must(m.s.HeaderEnd()), "continue")
	mods, act, err := m.s.End()
	if err != nil {
		m.t.Fatal(err)
	}
	m.expect("end of message", act, "continue")
	return mods
}

func (m *mta) abort() {
	m.t.Helper()
	if err := m.s.Abort(); err != nil {
		m.t.Fatal(err)
	}
}

// inserted returns the header fields vouch inserted, in the order they
// end up in the message (each insert at index 0 goes on top).
func inserted(mods []gomilter.ModifyAction) []string {
	var out []string
	for _, a := range mods {
		if a.Code == gomilter.ActInsertHeader {
			out = append([]string{a.HeaderName + ": " + a.HeaderValue}, out...)
		}
	}
	return out
}
