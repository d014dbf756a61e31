package mta

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vouch-mail/vouch/checks/checktest"
)

const opendmarcBin = "/usr/sbin/opendmarc"

// OpenDMARCOptions configure a private OpenDMARC (Debian's opendmarc
// package), for tests of vouch in a milter stack: vouch first, OpenDMARC
// after it, OpenDMARC taking its SPF result from vouch's
// Authentication-Results.
type OpenDMARCOptions struct {
	// AuthservID is OpenDMARC's own authserv-id; default "opendmarc.test".
	AuthservID string
	// TrustedAuthservIDs are the authserv-ids whose Authentication-Results
	// OpenDMARC believes: vouch's (the MTA's host name by default).
	TrustedAuthservIDs []string
	// DNS is the "IP:PORT" of the DNS server OpenDMARC is to ask (a
	// checks/dnstest server). OpenDMARC resolves through libresolv, which
	// reads /etc/resolv.conf and only ever asks port 53, so the harness
	// relays 127.53.x.y:53 to DNS and binds a resolv.conf naming that
	// relay over /etc/resolv.conf in OpenDMARC's mount namespace.
	DNS string
	// IgnoreHosts are the clients OpenDMARC leaves alone; default
	// 127.0.0.1 (its own default).
	IgnoreHosts []string
	// Extra are more opendmarc.conf(5) lines.
	Extra []string
}

// OpenDMARC is a running private OpenDMARC milter.
type OpenDMARC struct {
	dir  string
	port int
	proc *process
	log  *checktest.LogBuffer
	sys  *syslogSink
}

// MilterAddr is where it listens, "inet:PORT@127.0.0.1".
func (o *OpenDMARC) MilterAddr() string { return fmt.Sprintf("inet:%d@127.0.0.1", o.port) }

// Log is what OpenDMARC logged so far.
func (o *OpenDMARC) Log() string { return o.log.String() }

// StartOpenDMARC starts opendmarc in the foreground on a free loopback
// port, in its own mount namespace (private /dev/log and resolv.conf),
// and stops it at cleanup. It is skipped (failed under VOUCH_E2E=1)
// without the package or root.
func StartOpenDMARC(t testing.TB, o OpenDMARCOptions) *OpenDMARC {
	t.Helper()
	if _, err := os.Stat(opendmarcBin); err != nil {
		unavailable(t, "opendmarc not installed: apt-get install opendmarc")
	}
	requireRoot(t, "opendmarc")
	if o.AuthservID == "" {
		o.AuthservID = "opendmarc.test"
	}
	for _, id := range append([]string{o.AuthservID}, o.TrustedAuthservIDs...) {
		if !validHostname(id) {
			t.Fatalf("opendmarc: authserv-id %q: want a host name", id)
		}
	}
	if _, _, err := net.SplitHostPort(o.DNS); err != nil {
		t.Fatalf("opendmarc: DNS %q: %v", o.DNS, err)
	}
	relay := startDNSRelay(t, o.DNS)

	d := &OpenDMARC{dir: instanceDir(t, "opendmarc"), log: &checktest.LogBuffer{}}
	t.Cleanup(func() {
		if d.proc != nil {
			// libmilter looks at its stop flag between accept polls, so
			// OpenDMARC takes up to about 5 s to exit on SIGTERM.
			if err := d.proc.stop(15 * time.Second); err != nil {
				t.Errorf("opendmarc: stop: %v", err)
			}
		}
		if d.sys != nil {
			d.sys.Close()
		}
		if t.Failed() {
			t.Logf("opendmarc log (%s):\n%s", d.dir, logTail(d.Log(), 40))
		}
	})
	if !safePath(d.dir) {
		t.Fatalf("opendmarc: instance directory %q unsupported", d.dir)
	}
	sys, err := startSyslog(d.dir, d.log)
	if err != nil {
		t.Fatalf("opendmarc: %v", err)
	}
	d.sys = sys
	if err := os.WriteFile(filepath.Join(d.dir, "resolv.conf"), []byte("nameserver "+relay+"\noptions timeout:2 attempts:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if o.IgnoreHosts == nil {
		o.IgnoreHosts = []string{"127.0.0.1"}
	}
	for _, h := range o.IgnoreHosts {
		if strings.ContainsAny(h, " \t\r\n") {
			t.Fatalf("opendmarc: IgnoreHosts entry %q", h)
		}
	}
	if err := os.WriteFile(filepath.Join(d.dir, "ignore.hosts"), []byte(strings.Join(o.IgnoreHosts, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = retryPorts(func(port int) error {
		d.port = port
		return d.start(o)
	})
	if errors.Is(err, syscall.EPERM) {
		unavailable(t, "opendmarc: cannot run in a private mount namespace: %v", err)
	}
	if err != nil {
		t.Fatalf("opendmarc: %v\nlog:\n%s", err, logTail(d.Log(), 40))
	}
	return d
}

func (d *OpenDMARC) start(o OpenDMARCOptions) error {
	conf := []string{
		"# written by the vouch e2e harness (deploy/e2e/mta)",
		fmt.Sprintf("Socket inet:%d@127.0.0.1", d.port),
		"AuthservID " + o.AuthservID,
		// Believe vouch's spf= result and do no SPF of its own.
		"TrustedAuthservIDs " + strings.Join(o.TrustedAuthservIDs, ","),
		"SPFIgnoreResults false",
		"SPFSelfValidate false",
		// Record only: a DMARC fail must reach the mailbox for the test
		// to read the result.
		"RejectFailures false",
		"FailureReports false",
		"RequiredHeaders false",
		"Background false",
		"Syslog true",
		"PidFile " + filepath.Join(d.dir, "opendmarc.pid"),
		"IgnoreHosts " + filepath.Join(d.dir, "ignore.hosts"),
	}
	for _, l := range o.Extra {
		if strings.ContainsAny(l, "\r\n") {
			return fmt.Errorf("opendmarc.conf line %q", l)
		}
		conf = append(conf, l)
	}
	path := filepath.Join(d.dir, "opendmarc.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	cmd := nsCommand(d.dir, false, `mount --bind "$d/resolv.conf" /etc/resolv.conf
`+devPrologue+`exec "$@"`, opendmarcBin, "-f", "-c", path)
	cmd.SysProcAttr.Setpgid = true
	mark := len(d.log.String())
	p, err := startProcess(cmd, d.log)
	if err != nil {
		return fmt.Errorf("starting opendmarc: %w", err)
	}
	d.proc = p
	inUse := func() bool { return strings.Contains(d.log.String()[mark:], "Address already in use") }
	if err := p.waitListening(d.port, 30*time.Second, inUse); err != nil {
		_ = p.stop(0)
		d.proc = nil
		if errors.Is(err, errAddrInUse) || inUse() {
			return errAddrInUse
		}
		return err
	}
	return nil
}

// startDNSRelay relays DNS on port 53 of a free 127.53.x.y address to
// upstream, UDP and TCP, and returns that address. It forwards each
// query as it came and each answer as it went back; an upstream that
// does not answer gets the client a SERVFAIL.
func startDNSRelay(t testing.TB, upstream string) string {
	t.Helper()
	var (
		pc  net.PacketConn
		ln  net.Listener
		ip  string
		err error
	)
	for range 20 {
		ip = fmt.Sprintf("127.53.%d.%d", rand.IntN(256), 1+rand.IntN(254))
		if pc, err = net.ListenPacket("udp", ip+":53"); err != nil {
			continue
		}
		if ln, err = net.Listen("tcp", ip+":53"); err != nil {
			pc.Close()
			continue
		}
		break
	}
	if err != nil {
		t.Fatalf("dns relay: no free 127.53.x.y:53: %v", err)
	}
	handler := func(proto string) dns.HandlerFunc {
		c := &dns.Client{Net: proto, Timeout: 2 * time.Second}
		return func(w dns.ResponseWriter, r *dns.Msg) {
			resp, _, err := c.Exchange(r, upstream)
			if err != nil {
				resp = new(dns.Msg)
				resp.SetRcode(r, dns.RcodeServerFailure)
			}
			_ = w.WriteMsg(resp)
		}
	}
	udpUp, tcpUp := make(chan struct{}), make(chan struct{})
	udp := &dns.Server{PacketConn: pc, Handler: handler("udp"), NotifyStartedFunc: func() { close(udpUp) }}
	tcp := &dns.Server{Listener: ln, Handler: handler("tcp"), NotifyStartedFunc: func() { close(tcpUp) }}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	<-udpUp
	<-tcpUp
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return ip
}
