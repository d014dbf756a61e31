package milter_test

import (
	"context"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/answer"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/metrics"
)

// This file drives vouch only through its public constructors and the
// milter protocol, in the world of dnsfaults_test.go (faultZone).

// strayRig is vouch on a loopback socket over its own dnstest server, under
// one preset, with loopback not trusted.
type strayRig struct {
	dns  *dnstest.Server
	addr string
	logs *checktest.LogBuffer
}

func startStrayRig(t *testing.T, preset string) *strayRig {
	t.Helper()
	rig := &strayRig{dns: dnstest.New(t, faultZone), logs: &checktest.LogBuffer{}}
	m := metrics.New(prometheus.NewRegistry(), "test")
	// One attempt of 0.25 s: a fault that hides the answer costs that.
	res := checktest.ResolverFor(t, checktest.Config(rig.dns.Addr, 250*time.Millisecond), m.DNSObserver())
	cfg := config.Default()
	cfg.Policy.Preset = preset
	cfg.Policy.TrustedNetworks = nil
	cfg.Checks.Deadline = 3 * time.Second
	srv, err := milter.NewServer(cfg, res, milter.Options{
		Logger:  slog.New(slog.NewTextHandler(rig.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rig.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-served
		if t.Failed() {
			t.Logf("vouch log:\n%s\nqueries: %q", rig.logs.String(), rig.dns.QueryLog())
		}
	})
	return rig
}

// session runs one SMTP transaction the way Postfix drives a milter:
// connect, HELO, MAIL, RCPT to a user, RCPT to postmaster (exempt, so the
// message goes on whatever the verdict and gets vouch's headers), header,
// end of message. It returns the reply to the user's RCPT and the header
// fields vouch inserted.
func (rig *strayRig) session(t *testing.T, sender string) (rcpt string, fields map[string]string) {
	t.Helper()
	c := gomilter.NewClientWithOptions("tcp", rig.addr, gomilter.ClientOptions{
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
		ActionMask:   gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatalf("milter session: %v", err)
	}
	defer s.Close()
	step := func(stage string, a *gomilter.Action, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
		return answer.Text(a)
	}
	must := func(stage string, a *gomilter.Action, err error) {
		t.Helper()
		if got := step(stage, a, err); got != "continue" {
			t.Fatalf("%s: %q, want continue", stage, got)
		}
	}
	macros := func(code gomilter.Code, kv ...string) {
		t.Helper()
		if err := s.Macros(code, kv...); err != nil {
			t.Fatal(err)
		}
	}
	macros(gomilter.CodeConn, "j", "mx.vouch.test", "{daemon_name}", "smtpd", "_", "[127.0.0.20]")
	a, err := s.Conn("[127.0.0.20]", gomilter.FamilyInet, 40000, "127.0.0.20")
	must("connect", a, err)
	a, err = s.Helo("helo.fault.test")
	must("HELO", a, err)
	macros(gomilter.CodeMail, "i", "QID1")
	a, err = s.Mail("<"+sender+">", nil)
	must("MAIL", a, err)
	macros(gomilter.CodeRcpt, "{rcpt_addr}", "user@vouch.test")
	a, err = s.Rcpt("<user@vouch.test>", nil)
	rcpt = step("RCPT user", a, err)
	macros(gomilter.CodeRcpt, "{rcpt_addr}", "postmaster@vouch.test")
	a, err = s.Rcpt("<postmaster@vouch.test>", nil)
	must("RCPT postmaster", a, err)
	a, err = s.HeaderField("Subject", "hello")
	must("header", a, err)
	a, err = s.HeaderEnd()
	must("end of headers", a, err)
	mods, a, err := s.End()
	must("end of message", a, err)
	fields = map[string]string{}
	for _, m := range mods {
		if m.Code == gomilter.ActInsertHeader {
			fields[m.HeaderName] = m.HeaderValue
		}
	}
	return rcpt, fields
}

// strayFault is one fault of the matrix; recovers says the right answer
// follows the fault within the attempt, so that the mail must pass as if
// nothing had happened.
type strayFault struct {
	name     string
	fault    dnstest.Fault
	recovers bool
}

func strayFaults() []strayFault {
	before := func(ds ...dnstest.Datagram) dnstest.Fault { return dnstest.Fault{Before: ds} }
	only := func(ds ...dnstest.Datagram) dnstest.Fault { return dnstest.Fault{Before: ds, Drop: true} }
	return []strayFault{
		{"FORMERR", dnstest.Fault{Rcode: mdns.RcodeFormatError}, false},
		{"FORMERR, header only", dnstest.Fault{Rcode: mdns.RcodeFormatError, Bare: true}, false},
		{"NOTIMP", dnstest.Fault{Rcode: mdns.RcodeNotImplemented}, false},
		{"NOTIMP, header only", dnstest.Fault{Rcode: mdns.RcodeNotImplemented, Bare: true}, false},
		{"YXDOMAIN", dnstest.Fault{Rcode: mdns.RcodeYXDomain}, false},
		{"FORMERR to EDNS only", dnstest.Fault{FormErrEDNS: true}, true},
		{"FORMERR to EDNS only, header only", dnstest.Fault{FormErrEDNS: true, Bare: true}, true},
		{"truncated, TCP closed", dnstest.Fault{Truncate: true, CloseTCP: true}, false},
		{"garbage, then the answer", before(dnstest.Garbage), true},
		{"short datagram, then the answer", before(dnstest.Short), true},
		{"wrong ID, then the answer", before(dnstest.WrongID), true},
		{"wrong-ID garbage, then the answer", before(dnstest.WrongIDGarbage), true},
		{"forged answer without question, then the answer", before(dnstest.NoQuestion), true},
		{"forged answer to another question, then the answer", before(dnstest.OtherQuestion), true},
		{"echoed query, then the answer", before(dnstest.Echo), true},
		{"oversized datagram, then the answer", before(dnstest.Oversized), true},
		{"garbage only", only(dnstest.Garbage), false},
		{"wrong-ID garbage only", only(dnstest.WrongIDGarbage), false},
		{"forged answer without question only", only(dnstest.NoQuestion), false},
		{"forged answer to another question only", only(dnstest.OtherQuestion), false},
		{"echoed query only", only(dnstest.Echo), false},
		{"40 garbage datagrams, then the answer", before(slices.Repeat([]dnstest.Datagram{dnstest.Garbage}, 40)...), false},
	}
}

// failing matches the results that accuse the sender in
// Authentication-Results (RFC 8601: iprev=fail, spf=fail, permerror).
var failing = regexp.MustCompile(`(?:^|[\s;])(?:iprev|spf)=(?:fail|permerror)\b`)

// TestDNSFaultsNeverAccuse drives DNS faults that are not answers
// (FORMERR, NOTIMP and other codes, a closed TCP retry, and stray UDP
// datagrams: garbage, wrong IDs, forged answers without or to another
// question, echoes, floods) through the milter protocol under every
// preset, at each name a session looks up, and at all of them at once. None may give a 5xx,
// nor fail or permerror in the Authentication-Results vouch inserts, nor
// a fail or permerror Received-SPF: a DNS fault is temperror (RFC 7208
// §4.4, §5; RFC 8601 §2.7.3). When the right answer follows the fault,
// the mail passes as if nothing had happened.
func TestDNSFaultsNeverAccuse(t *testing.T) {
	every := []string{"20.0.0.127.in-addr.arpa.", "ptr.fault.test", "helo.fault.test", "fault.test", "inc.fault.test", "target.fault.test"}
	targets := []struct {
		what   string
		names  []string
		sender string
	}{
		{"PTR", every[:1], "a@fault.test"},
		{"PTR name A/AAAA", every[1:2], "a@fault.test"},
		{"HELO name", every[2:3], "a@fault.test"},
		{"HELO name, null sender", every[2:3], ""},
		{"sender TXT", every[3:4], "a@fault.test"},
		{"include target", every[5:6], "a@inc.fault.test"},
		// A resolver that misbehaves so for every query.
		{"every name", every, "a@inc.fault.test"},
	}
	for _, f := range strayFaults() {
		for _, tg := range targets {
			for _, preset := range []string{"lenient", "standard", "strict"} {
				t.Run(f.name+"/"+tg.what+"/"+preset, func(t *testing.T) {
					t.Parallel()
					rig := startStrayRig(t, preset)
					for _, n := range tg.names {
						rig.dns.SetFault(n, f.fault)
					}
					rcpt, fields := rig.session(t, tg.sender)
					ar, rspf := fields["Authentication-Results"], fields["Received-SPF"]
					t.Logf("RCPT %q; Authentication-Results: %s", rcpt, strings.ReplaceAll(ar, "\n\t", " "))

					if rcpt != "continue" && !strings.HasPrefix(rcpt, "451 4.7.2") {
						t.Errorf("RCPT: %q, want continue or a 451 4.7.2x temporary failure", rcpt)
					}
					if failing.MatchString(ar) {
						t.Errorf("a DNS fault accuses the sender in Authentication-Results:\n%s", ar)
					}
					if strings.HasPrefix(rspf, "fail") || strings.HasPrefix(rspf, "permerror") {
						t.Errorf("a DNS fault accuses the sender in Received-SPF:\n%s", rspf)
					}
					if ar == "" || rspf == "" {
						t.Fatalf("fields %q, want Authentication-Results and Received-SPF", fields)
					}
					if f.recovers {
						if rcpt != "continue" {
							t.Errorf("RCPT: %q, want continue: the answer followed the fault", rcpt)
						}
						want := []string{"iprev=pass", "spf=pass smtp.helo=helo.fault.test"}
						if tg.sender != "" {
							want = append(want, "spf=pass smtp.mailfrom="+tg.sender)
						}
						for _, w := range want {
							if !strings.Contains(ar, w) {
								t.Errorf("Authentication-Results lacks %q:\n%s", w, ar)
							}
						}
						if strings.Contains(ar, "temperror") {
							t.Errorf("temperror although the answer followed the fault:\n%s", ar)
						}
						return
					}
					if !strings.Contains(ar, "temperror") {
						t.Errorf("Authentication-Results does not say temperror:\n%s", ar)
					}
				})
			}
		}
	}
}
