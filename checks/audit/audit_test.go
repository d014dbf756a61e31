package audit_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/audit"
	"github.com/vouch-mail/vouch/checks/audit/audittest"
	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
)

type want = audittest.Want

// newResolver is the project's resolver, with its cache, pointed at srv.
func newResolver(t *testing.T, srv *dnstest.Server) *dns.Resolver {
	t.Helper()
	return checktest.ResolverFor(t, checktest.Config(srv.Addr, 2*time.Second), nil)
}

func run(t *testing.T, r dns.Lookuper, ip, heloName, domain, smtp string) audit.Report {
	t.Helper()
	return audit.Run(context.Background(), r, audit.Options{
		IP: net.ParseIP(ip), HELO: heloName, Domain: domain, SMTP: smtp, Timeout: 5 * time.Second,
	})
}

func TestDNSFindings(t *testing.T) {
	r := newResolver(t, audittest.NewDNS(t))
	const (
		heloFix = "set your MTA's HELO name (Postfix: smtp_helo_name / myhostname) to mail.good.test"
	)
	tests := []struct {
		name             string
		ip, helo, domain string
		failed           bool // vouch audit exits 4
		want             want
	}{
		{"all pass", "127.0.0.20", "mail.good.test", "good.test", false, want{
			"ptr":           "pass|127.0.0.20 has PTR mail.good.test|",
			"fcrdns":        "pass|mail.good.test -> 127.0.0.20|",
			"helo_rdns":     "pass|HELO mail.good.test is the forward-confirmed rDNS name|",
			"helo_resolves": "pass|mail.good.test -> 127.0.0.20|",
			"spf":           `pass|good.test: pass, ip4:127.0.0.20 matched; record "v=spf1 ip4:127.0.0.20 ip6:::20 -all"|`,
			"spf_helo":      `pass|mail.good.test: pass, a matched; record "v=spf1 a -all"|`,
		}},
		{"HELO in another case with a dot", "127.0.0.20", "MAIL.Good.Test.", "good.test.", false, want{
			"helo_rdns": "pass|HELO MAIL.Good.Test. is the forward-confirmed rDNS name",
			"spf":       "pass",
		}},
		{"no PTR", "127.0.0.21", "mail.good.test", "good.test", true, want{
			"ptr":    "fail|127.0.0.21 has no PTR record|ask your provider (whoever owns the IP block) to set the PTR of 127.0.0.21 to mail.good.test",
			"fcrdns": "fail|no PTR name to resolve back|set the PTR first (see ptr), and an A record mail.good.test -> 127.0.0.21",
			"helo_rdns": "warn|HELO mail.good.test: 127.0.0.21 has no rDNS name to match|" +
				"set the PTR of 127.0.0.21 (see ptr), then your MTA's HELO name (Postfix: smtp_helo_name / myhostname) to that name",
			"helo_resolves": "fail|mail.good.test -> 127.0.0.20 (not 127.0.0.21)|add an A record mail.good.test -> 127.0.0.21",
			"spf":           "fail|good.test: fail, -all matched; record \"v=spf1 ip4:127.0.0.20 ip6:::20 -all\"|add ip4:127.0.0.21 to the SPF record of good.test",
			"spf_helo":      "fail|mail.good.test: fail, -all matched; record \"v=spf1 a -all\"|add ip4:127.0.0.21 to the SPF record of mail.good.test",
		}},
		{"PTR does not resolve back", "127.0.0.22", "liar.test", "soft.test", true, want{
			"ptr":       "pass",
			"fcrdns":    "fail|liar.test -> 192.0.2.1 (not 127.0.0.22)|add an A record liar.test -> 127.0.0.22",
			"helo_rdns": "warn|HELO liar.test is the PTR name, but that name does not resolve back (see fcrdns)|add an A record liar.test -> 127.0.0.22",
		}},
		{"several PTR names", "127.0.0.23", "a.multi.test", "good.test", true, want{
			"ptr":       "warn|127.0.0.23 has several PTR names: a.multi.test, b.multi.test; receivers may use any|keep one PTR record: ask your provider (whoever owns the IP block) to set the PTR of 127.0.0.23 to a.multi.test",
			"fcrdns":    "pass|a.multi.test -> 127.0.0.23; b.multi.test -> 127.0.0.23|",
			"helo_rdns": "pass",
		}},
		{"PTR lookup fails", "127.0.0.24", "mail.good.test", "good.test", true, want{
			"ptr":    "fail",
			"fcrdns": "fail|no PTR name to resolve back",
		}},
		{"HELO is another name of the server", "127.0.0.20", "alias.good.test", "good.test", false, want{
			"helo_rdns":     "warn|HELO alias.good.test is not the rDNS name mail.good.test|" + heloFix,
			"helo_resolves": "pass|alias.good.test -> 127.0.0.20|",
			"spf_helo":      "warn|alias.good.test: none, no SPF record|publish alias.good.test TXT \"v=spf1 ip4:127.0.0.20 -all\" (SPF for bounces, which have no sender domain)",
		}},
		{"HELO resolves elsewhere", "127.0.0.20", "elsewhere.test", "good.test", true, want{
			"helo_rdns":     "warn|HELO elsewhere.test is not the rDNS name mail.good.test|" + heloFix,
			"helo_resolves": "fail|elsewhere.test -> 192.0.2.7 (not 127.0.0.20)|add an A record elsewhere.test -> 127.0.0.20",
		}},
		{"HELO does not resolve", "127.0.0.20", "nx.good.test", "good.test", true, want{
			"helo_rdns":     "warn|HELO nx.good.test is not the rDNS name mail.good.test|" + heloFix,
			"helo_resolves": "fail|nx.good.test does not resolve (no such host (NXDOMAIN))|add an A record nx.good.test -> 127.0.0.20",
		}},
		{"HELO not a host name", "127.0.0.20", "localhost", "good.test", true, want{
			"helo_rdns":     "fail|HELO localhost is not a fully qualified host name|" + heloFix,
			"helo_resolves": "fail|HELO localhost is not a host name: receivers cannot resolve it|send a fully qualified host name as HELO (Postfix: smtp_helo_name), one that resolves to 127.0.0.20",
			"spf_helo":      "warn|HELO localhost is not a domain name: no SPF to check|send a fully qualified host name as HELO (Postfix: smtp_helo_name)",
		}},
		{"HELO not a host name, quoted", "127.0.0.20", "evil\r\nname", "good.test", true, want{
			"helo_rdns":     `fail|HELO "evil\r\nname" is not a fully qualified host name|` + heloFix,
			"helo_resolves": `fail|HELO "evil\r\nname" is not a host name: receivers cannot resolve it`,
			"spf_helo":      `warn|HELO "evil\r\nname" is not a domain name: no SPF to check`,
		}},
		{"HELO address literal", "127.0.0.20", "[127.0.0.20]", "good.test", false, want{
			"helo_rdns":     "warn|HELO [127.0.0.20] is an address literal, not the rDNS name|" + heloFix,
			"helo_resolves": "warn|HELO [127.0.0.20] is an address literal: no name to resolve",
		}},
		{"HELO literal of another IP", "127.0.0.20", "[192.0.2.1]", "good.test", true, want{
			"helo_rdns": "fail|HELO [192.0.2.1] is an address literal of another IP|" + heloFix,
		}},
		{"SPF fail", "127.0.0.20", "mail.good.test", "other.test", true, want{
			"spf": `fail|other.test: fail, -all matched; record "v=spf1 ip4:192.0.2.0/24 -all"|add ip4:127.0.0.20 to the SPF record of other.test`,
		}},
		{"SPF neutral", "127.0.0.20", "mail.good.test", "neutral.test", false, want{
			"spf": `warn|neutral.test: neutral, ?all matched; record "v=spf1 ?all"|add ip4:127.0.0.20 to the SPF record of neutral.test`,
		}},
		{"no SPF record", "127.0.0.20", "mail.good.test", "nospf.test", true, want{
			"spf": `fail|nospf.test: none, no SPF record|publish an SPF record listing every server that sends for nospf.test, e.g. nospf.test TXT "v=spf1 ip4:127.0.0.20 -all"`,
		}},
		{"SPF permerror", "127.0.0.20", "mail.good.test", "broken.test", true, want{
			"spf": `fail|broken.test: permerror, syntax error: term 'frobnicate': unknown mechanism; record "v=spf1 frobnicate -all"|correct the SPF record of broken.test (syntax error: term 'frobnicate': unknown mechanism)`,
		}},
		{"not a domain", "127.0.0.20", "mail.good.test", "localhost", true, want{
			"spf": "fail|none: sender domain is not a domain name|give --domain your envelope sender domain, e.g. example.com",
		}},
		{"HELO SPF softfail", "127.0.0.20", "softhelo.test", "good.test", true, want{
			"spf_helo": `fail|softhelo.test: softfail, ~all matched; record "v=spf1 ~all"|add ip4:127.0.0.20 to the SPF record of softhelo.test`,
		}},
		{"IPv6", "::20", "mail6.good.test", "good.test", false, want{
			"ptr":      "pass|::20 has PTR mail6.good.test",
			"fcrdns":   "pass|mail6.good.test -> ::20",
			"spf":      "pass",
			"spf_helo": "pass",
		}},
		{"IPv6 fixes", "::21", "mail6.good.test", "good.test", true, want{
			"fcrdns": "fail|no PTR name to resolve back|set the PTR first (see ptr), and an AAAA record mail6.good.test -> ::21",
			"spf":    `fail|good.test: fail, -all matched; record "v=spf1 ip4:127.0.0.20 ip6:::20 -all"|add ip6:::21 to the SPF record of good.test`,
		}},
		{"IPv4-mapped IPv6 is audited as IPv4", "::ffff:127.0.0.20", "mail.good.test", "good.test", false, want{
			"ptr": "pass|127.0.0.20 has PTR mail.good.test|",
			"spf": `pass|good.test: pass, ip4:127.0.0.20 matched; record "v=spf1 ip4:127.0.0.20 ip6:::20 -all"|`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := run(t, r, tc.ip, tc.helo, tc.domain, "")
			if rep.Failed() != tc.failed {
				t.Errorf("failed %v, want %v", rep.Failed(), tc.failed)
			}
			audittest.Check(t, rep, tc.want)
			if len(rep.Findings) != 6 {
				t.Errorf("%d findings, want 6 without an SMTP address", len(rep.Findings))
			}
			sum := map[audit.Status]int{}
			for _, f := range rep.Findings {
				sum[f.Status]++
			}
			if len(rep.Summary) != 3 || rep.Summary[audit.Pass] != sum[audit.Pass] || rep.Summary[audit.Warn] != sum[audit.Warn] || rep.Summary[audit.Fail] != sum[audit.Fail] {
				t.Errorf("summary %v, findings %v", rep.Summary, sum)
			}
			if t.Failed() {
				t.Logf("findings: %+v", rep.Findings)
			}
		})
	}
}

func TestSMTPConnectFails(t *testing.T) {
	r := newResolver(t, audittest.NewDNS(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	rep := run(t, r, "127.0.0.20", "mail.good.test", "good.test", addr)
	audittest.Check(t, rep, want{
		"smtp_connect": "fail|cannot connect to " + addr + ": dial tcp " + addr + ": connect: connection refused|" +
			"check the address, that your MTA listens on it, and that no firewall is in the way",
	})
	if _, ok := audittest.Finding(rep, "smtp_banner"); ok || !rep.Failed() || len(rep.Dialogue) != 0 {
		t.Errorf("findings after a failed connection: %+v, dialogue %+v", rep.Findings, rep.Dialogue)
	}
}

// fakeSMTP is a FAKE SMTP server, for the replies the real Postfix and
// Sendmail of cmd/vouch's tests never give (a 421 in mid-dialogue, a
// hostile greeting, a malformed reply). It sends greeting, answers each
// command line with the reply scripted for it (502 for any other), and
// hangs up after a 421 or QUIT. It returns its address.
func fakeSMTP(t *testing.T, greeting string, replies map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, greeting)
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			cmd := strings.TrimSuffix(sc.Text(), "\r")
			rep, ok := replies[cmd]
			if !ok {
				rep = "502 5.5.2 not scripted\r\n"
			}
			io.WriteString(c, rep)
			if strings.HasPrefix(rep, "421") || cmd == "QUIT" {
				return
			}
		}
	}()
	return ln.Addr().String()
}

func TestSMTPDialogue(t *testing.T) {
	r := newResolver(t, audittest.NewDNS(t))
	tests := []struct {
		name     string
		greeting string
		replies  map[string]string
		want     want
		commands []string // the dialogue's commands, "" the greeting
	}{
		{"421 in mid-dialogue", "220 mail.good.test ESMTP\r\n", map[string]string{
			"EHLO vouch-audit.invalid": "250-mail.good.test\r\n250 STARTTLS\r\n",
			"VRFY postmaster":          "421 4.3.2 closing\r\n",
		}, want{
			"smtp_connect":  "pass",
			"smtp_banner":   "pass|banner name mail.good.test is the rDNS name of 127.0.0.20|",
			"smtp_ehlo":     "pass|EHLO name mail.good.test is the rDNS name of 127.0.0.20|",
			"smtp_starttls": "pass|STARTTLS offered; extensions: STARTTLS|",
			"smtp_vrfy":     "pass|VRFY postmaster: 421 4.3.2 closing|",
			"smtp_expn":     "warn|no answer to EXPN postmaster: the connection ended before|",
		}, []string{"", "EHLO vouch-audit.invalid", "VRFY postmaster"}},
		{"hostile names are quoted", "220 \x1b[2Jmail.good.test ESMTP\r\n", map[string]string{
			"EHLO vouch-audit.invalid": "250 mail.good.test.\r\n",
			"QUIT":                     "221 bye\r\n",
		}, want{
			"smtp_banner": `warn|banner name "\x1b[2Jmail.good.test" is not the rDNS name mail.good.test of 127.0.0.20|` +
				"set the banner name (Postfix: myhostname, used by smtpd_banner) to mail.good.test",
			"smtp_ehlo":     "pass|EHLO name mail.good.test. is the rDNS name of 127.0.0.20|",
			"smtp_starttls": "warn|no STARTTLS: mail to this server travels in clear; extensions: ",
			"smtp_vrfy":     "pass|VRFY postmaster: 502 5.5.2 not scripted; VRFY vouch-audit-no-such-user: 502 5.5.2 not scripted|",
			"smtp_expn":     "pass|EXPN postmaster: 502 5.5.2 not scripted|",
		}, []string{"", "EHLO vouch-audit.invalid", "VRFY postmaster", "VRFY vouch-audit-no-such-user", "EXPN postmaster", "QUIT"}},
		{"malformed EHLO reply", "220 mail.good.test\r\n", map[string]string{
			"EHLO vouch-audit.invalid": "250-a\r\n251 b\r\n",
		}, want{
			"smtp_banner": "pass",
			"smtp_ehlo":   "fail|no answer to EHLO: reply lines with different codes 250 and 251|check your MTA's logs",
		}, []string{"", "EHLO vouch-audit.invalid"}},
		{"421 greeting", "421 4.3.2 too busy\r\n", nil, want{
			"smtp_connect": "fail|" + "%s greets with 421 4.3.2 too busy|a 220 greeting is needed for mail to be delivered; check your MTA's client restrictions and logs",
		}, []string{""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeSMTP(t, tc.greeting, tc.replies)
			for id, spec := range tc.want {
				tc.want[id] = strings.ReplaceAll(spec, "%s", addr)
			}
			rep := run(t, r, "127.0.0.20", "mail.good.test", "good.test", addr)
			audittest.Check(t, rep, tc.want)
			var commands []string
			for _, st := range rep.Dialogue {
				commands = append(commands, st.Command)
			}
			if strings.Join(commands, "|") != strings.Join(tc.commands, "|") {
				t.Errorf("dialogue %q, want %q", commands, tc.commands)
			}
			if t.Failed() {
				t.Logf("findings: %+v\ndialogue: %+v", rep.Findings, rep.Dialogue)
			}
		})
	}
}

// TestOptionsReachTheChecks: the daemon's settings vouch audit passes in
// are the ones the checks use.
func TestOptionsReachTheChecks(t *testing.T) {
	d := audittest.NewDNS(t)
	if err := d.AddZone(`
includes.test. TXT "v=spf1 include:one.test include:two.test -all"
one.test.      TXT "v=spf1 ip4:192.0.2.1 -all"
two.test.      TXT "v=spf1 ip4:127.0.0.23 -all"
`); err != nil {
		t.Fatal(err)
	}
	r := newResolver(t, d)
	o := audit.Options{IP: net.ParseIP("127.0.0.23"), HELO: "a.multi.test", Domain: "includes.test", Timeout: 5 * time.Second}
	audittest.Check(t, audit.Run(context.Background(), r, o), want{
		"ptr": "warn",
		"spf": `pass|includes.test: pass, include:two.test matched; record "v=spf1 include:one.test include:two.test -all"|`,
	})
	o.Iprev = iprev.Options{MaxPTR: 1}
	o.SPF = spf.Options{LookupLimit: 1}
	rep := audit.Run(context.Background(), r, o)
	audittest.Check(t, rep, want{
		"ptr":    "pass|127.0.0.23 has PTR a.multi.test|",
		"fcrdns": "pass|a.multi.test -> 127.0.0.23|",
		"spf":    "fail",
	})
	if f, _ := audittest.Finding(rep, "spf"); !strings.HasPrefix(f.Seen, "includes.test: permerror, ") {
		t.Errorf("spf with a lookup limit of 1: %+v", f)
	}
}
