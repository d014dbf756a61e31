package prometheus

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter/answer"
)

// The test world. Each client address has its story:
//
//	127.0.0.10  mail.good.test: PTR and A agree; good.test's SPF allows it
//	127.0.0.11  no PTR record at all
//	127.0.0.13  mail.other.test, confirmed, but not allowed by good.test's SPF
const zone = `
$ORIGIN test.
$TTL 300
@           SOA ns.test. hostmaster.test. 1 3600 600 86400 60
mail.good   A   127.0.0.10
mail.good   TXT "v=spf1 a -all"
good        TXT "v=spf1 ip4:127.0.0.10 -all"
mail.other  A   127.0.0.13
mail.other  TXT "v=spf1 a -all"
10.0.0.127.in-addr.arpa. PTR mail.good.test.
13.0.0.127.in-addr.arpa. PTR mail.other.test.
`

// buildVersion is what the test binary reports in vouch_build_info.
const buildVersion = "e2e-observability"

// vouchProc is a running vouch daemon.
type vouchProc struct {
	*process
	dns     *dnstest.Server
	milter  string // host:port
	metrics string // http://host:port
}

// startVouch builds and starts vouch over a dnstest server, with loopback
// clients checked (trusted_networks: []) and room for two connections.
func startVouch(t *testing.T) *vouchProc {
	t.Helper()
	bin := buildVouch(t, buildVersion)
	dns := dnstest.New(t, zone)
	cfg := filepath.Join(t.TempDir(), "vouch.yaml")
	conf := fmt.Sprintf(`dns:
  servers: [%q]
checks:
  deadline: 5s
milter:
  max_connections: 2
  overload_action: tempfail
log:
  format: json
policy:
  trusted_networks: []
`, dns.Addr)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	mp, hp := freePort(t), freePort(t)
	v := &vouchProc{
		dns:     dns,
		milter:  fmt.Sprintf("127.0.0.1:%d", mp),
		metrics: fmt.Sprintf("http://127.0.0.1:%d", hp),
	}
	v.process = start(t, "vouch", bin, "serve", "-config", cfg,
		"-milter.listen", fmt.Sprintf("inet:%d@127.0.0.1", mp),
		"-metrics.listen", fmt.Sprintf("127.0.0.1:%d", hp))
	waitFor(t, "vouch ready", 20*time.Second, func() error {
		if v.exited() {
			t.Fatalf("vouch exited:\n%s", v.output())
		}
		code, _, err := httpGet(v.metrics + "/readyz")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("readyz %d", code)
		}
		return nil
	})
	return v
}

// mta drives one milter connection as Postfix does.
type mta struct {
	t *testing.T
	s *gomilter.ClientSession
}

func (v *vouchProc) session(t *testing.T) *mta {
	t.Helper()
	c := gomilter.NewClientWithOptions("tcp", v.milter, gomilter.ClientOptions{
		ReadTimeout:  15 * time.Second,
		WriteTimeout: 15 * time.Second,
		ActionMask:   gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatalf("milter session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &mta{t: t, s: s}
}

func (m *mta) macros(code gomilter.Code, kv ...string) {
	m.t.Helper()
	if err := m.s.Macros(code, kv...); err != nil {
		m.t.Fatal(err)
	}
}

// answerOf renders an action as package answer does, or the error.
func answerOf(a *gomilter.Action, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return answer.Text(a)
}

func (m *mta) expect(stage string, a *gomilter.Action, err error, want string) {
	m.t.Helper()
	if got := answerOf(a, err); got != want {
		m.t.Fatalf("%s: got %q, want %q", stage, got, want)
	}
}

func (m *mta) connect(ip, helo string) {
	m.t.Helper()
	m.macros(gomilter.CodeConn, "j", "mx.vouch.test", "{daemon_name}", "smtpd", "_", "["+ip+"]")
	a, err := m.s.Conn("["+ip+"]", gomilter.FamilyInet, 40000, ip)
	m.expect("connect "+ip, a, err, "continue")
	a, err = m.s.Helo(helo)
	m.expect("HELO "+helo, a, err, "continue")
}

func (m *mta) mail(queueID, from string, macros ...string) {
	m.t.Helper()
	m.macros(gomilter.CodeMail, append([]string{"i", queueID}, macros...)...)
	a, err := m.s.Mail("<"+from+">", nil)
	m.expect("MAIL FROM "+from, a, err, "continue")
}

func (m *mta) rcpt(to, want string) {
	m.t.Helper()
	a, err := m.s.Rcpt("<"+to+">", nil)
	m.expect("RCPT TO "+to, a, err, want)
}

// data sends header fields (name, value pairs), ends the message and
// returns vouch's modifications.
func (m *mta) data(fields ...string) []gomilter.ModifyAction {
	m.t.Helper()
	for i := 0; i+1 < len(fields); i += 2 {
		a, err := m.s.HeaderField(fields[i], fields[i+1])
		m.expect("header", a, err, "continue")
	}
	a, err := m.s.HeaderEnd()
	m.expect("end of headers", a, err, "continue")
	mods, a, err := m.s.End()
	m.expect("end of message", a, err, "continue")
	return mods
}

// close ends the SMTP session and waits until vouch has closed its side,
// so that the next session starts with no connection open.
func (m *mta) close(v *vouchProc) {
	m.t.Helper()
	if err := m.s.Abort(); err != nil {
		m.t.Fatal(err)
	}
	m.s.Close()
	v.waitIdle(m.t)
}

// waitChecks waits until vouch has counted n check results in all.
func (v *vouchProc) waitChecks(t *testing.T, n float64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%v check results counted", n), 20*time.Second, func() error {
		total := 0.0
		for _, c := range scrape(t, v.metrics+"/metrics").series("vouch_check_results_total") {
			total += c
		}
		if total != n {
			return fmt.Errorf("%v counted", total)
		}
		return nil
	})
}

func (v *vouchProc) waitIdle(t *testing.T) {
	t.Helper()
	waitFor(t, "vouch_milter_sessions_active back to 0", 20*time.Second, func() error {
		if n, _ := scrape(t, v.metrics+"/metrics").value("vouch_milter_sessions_active", ""); n != 0 {
			return fmt.Errorf("%v active", n)
		}
		return nil
	})
}

// driveSessions plays the known sequence whose counts the metric tests
// assert: an accepted message (carrying a forged Authentication-Results),
// an SPF fail rejected, a client without PTR tempfailed except for
// postmaster@, an authenticated client, a connection past
// max_connections, and a malformed milter packet.
func driveSessions(t *testing.T, v *vouchProc) {
	// 1. SPF pass, rDNS and HELO match: accepted and stamped; the forged
	// Authentication-Results claiming our authserv-id is removed.
	m := v.session(t)
	m.connect("127.0.0.10", "mail.good.test")
	m.mail("QGOOD", "alice@good.test")
	m.rcpt("user@vouch.test", "continue")
	mods := m.data("Authentication-Results", "mx.vouch.test; spf=pass smtp.mailfrom=forged.test", "Subject", "hi")
	if got := modsSummary(mods); got != "change:Authentication-Results:1 insert:Received-SPF insert:Authentication-Results" {
		t.Errorf("modifications of the accepted message: %s", got)
	}
	m.close(v)

	// 2. SPF fail for the envelope sender: rejected at RCPT.
	m = v.session(t)
	m.connect("127.0.0.13", "mail.other.test")
	m.mail("QFAIL", "bob@good.test")
	m.rcpt("user@vouch.test", "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test")
	m.close(v)

	// 3. No PTR: tempfailed, except postmaster@ (RFC 5321 §4.5.1), whose
	// copy is still stamped.
	m = v.session(t)
	m.connect("127.0.0.11", "mail.nowhere.test")
	m.mail("QNOPTR", "dave@nospf.test")
	m.rcpt("user@vouch.test", "450 4.7.25 Client address 127.0.0.11 has no reverse DNS (PTR) record")
	m.rcpt("postmaster@vouch.test", "continue")
	if got := modsSummary(m.data("Subject", "bounce?")); got != "insert:Received-SPF insert:Authentication-Results" {
		t.Errorf("modifications of the message to postmaster: %s", got)
	}
	m.close(v)

	// 4. An authenticated client: its message is not checked. The checks
	// started at connect and HELO still run; nothing waits for them, so
	// let them finish before hanging up (a session that ends first counts
	// them as temperror).
	m = v.session(t)
	m.connect("127.0.0.11", "mail.nowhere.test")
	m.mail("QAUTH", "carol@nospf.test", "{auth_type}", "PLAIN", "{auth_authen}", "carol")
	m.rcpt("user@vouch.test", "continue")
	v.waitChecks(t, 4+4+4+3)
	m.close(v)

	// 5. Past max_connections (2): the third connection is answered
	// tempfail at connect, with no checks.
	held := []*mta{v.session(t), v.session(t)}
	over := v.session(t)
	over.macros(gomilter.CodeConn, "j", "mx.vouch.test")
	a, err := over.s.Conn("[127.0.0.10]", gomilter.FamilyInet, 40001, "127.0.0.10")
	over.expect("connect past max_connections", a, err, "tempfail")
	over.s.Close()
	for _, h := range held {
		h.s.Close()
	}
	v.waitIdle(t)

	// 6. A malformed packet (length 0): vouch closes that connection.
	c, err := net.Dial("tcp", v.milter)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("after a zero-length packet: read %d bytes, %v; want the connection closed", n, err)
	} else if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after a zero-length packet: %v; want EOF or a reset", err)
	}
	v.waitIdle(t)
}

// modsSummary lists modifications in the order vouch sends them. Each
// insert goes to the top, so the last inserted field ends up first.
func modsSummary(mods []gomilter.ModifyAction) string {
	var out []string
	for _, a := range mods {
		switch a.Code {
		case gomilter.ActChangeHeader:
			out = append(out, fmt.Sprintf("change:%s:%d", a.HeaderName, a.HeaderIndex))
		case gomilter.ActInsertHeader:
			out = append(out, "insert:"+a.HeaderName)
		default:
			out = append(out, "other:"+string(rune(a.Code)))
		}
	}
	return strings.Join(out, " ")
}

// decisionLines are vouch's JSON "decision" log lines.
func decisionLines(t *testing.T, v *vouchProc) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range v.lines(`"msg":"decision"`) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("decision line is not JSON: %v: %s", err, l)
		}
		out = append(out, m)
	}
	return out
}
