package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/deploy/e2e/mta"
)

// The world of the audit tests: the outgoing servers being audited.
//
//	127.0.0.20  mail.good.test: PTR, A, SPF of good.test and of the HELO
//	127.0.0.21  no PTR
//	127.0.0.22  PTR liar.test, whose A is elsewhere
//	127.0.0.23  two PTR names, both confirmed
//	127.0.0.24  its reverse zone answers SERVFAIL
//	127.0.0.30  mx.postfix.test, the private Postfix's name
//	127.0.0.31  mx.sendmail.test, the private Sendmail's name
//	::20        mail6.good.test
var auditZone = `
$ORIGIN test.
$TTL 300
@             SOA   ns.test. hostmaster.test. 1 3600 600 86400 60
mail.good     A     127.0.0.20
mail.good     TXT   "v=spf1 a -all"
alias.good    A     127.0.0.20
elsewhere     A     192.0.2.7
good          TXT   "v=spf1 ip4:127.0.0.20 ip6:::20 -all"
liar          A     192.0.2.1
a.multi       A     127.0.0.23
b.multi       A     127.0.0.23
other         TXT   "v=spf1 ip4:192.0.2.0/24 -all"
soft          TXT   "v=spf1 ~all"
neutral       TXT   "v=spf1 ?all"
broken        TXT   "v=spf1 frobnicate -all"
softhelo      A     127.0.0.20
softhelo      TXT   "v=spf1 ~all"
mx.postfix    A     127.0.0.30
mx.sendmail   A     127.0.0.31
mail6.good    AAAA  ::20
mail6.good    TXT   "v=spf1 a -all"
20.0.0.127.in-addr.arpa. PTR mail.good.test.
22.0.0.127.in-addr.arpa. PTR liar.test.
23.0.0.127.in-addr.arpa. PTR a.multi.test.
23.0.0.127.in-addr.arpa. PTR b.multi.test.
30.0.0.127.in-addr.arpa. PTR mx.postfix.test.
31.0.0.127.in-addr.arpa. PTR mx.sendmail.test.
` + dnstest.ReverseName("::20") + ` PTR mail6.good.test.
`

func newAuditDNS(t *testing.T) *dnstest.Server {
	t.Helper()
	d := dnstest.New(t, auditZone)
	d.SetFault(dnstest.ReverseName("127.0.0.24"), dnstest.Fault{Rcode: 2}) // SERVFAIL
	return d
}

func audit(t *testing.T, d *dnstest.Server, args ...string) (int, auditReport, string) {
	t.Helper()
	code, out, errOut := runVouch(t, append([]string{"audit", "--dns", d.Addr, "--timeout", "5s"}, args...)...)
	var rep auditReport
	if _, jsonOut, _ := runVouch(t, append([]string{"audit", "--json", "--dns", d.Addr, "--timeout", "5s"}, args...)...); jsonOut != "" {
		if err := json.Unmarshal([]byte(jsonOut), &rep); err != nil {
			t.Fatalf("--json output is not JSON: %v\n%s", err, jsonOut)
		}
	}
	if errOut != "" {
		t.Errorf("stderr: %s", errOut)
	}
	return code, rep, out
}

func findingOf(rep auditReport, id string) (finding, bool) {
	for _, f := range rep.Findings {
		if f.ID == id {
			return f, true
		}
	}
	return finding{}, false
}

// want is a finding as expected: "status", "status|seen" or
// "status|seen|fix"; a missing seen or fix is not compared.
type want map[string]string

func checkFindings(t *testing.T, rep auditReport, w want) {
	t.Helper()
	for id, spec := range w {
		parts := strings.SplitN(spec, "|", 3)
		f, ok := findingOf(rep, id)
		if !ok {
			t.Errorf("%s: no finding", id)
			continue
		}
		if f.Status != parts[0] {
			t.Errorf("%s: status %s, want %s (seen %q)", id, f.Status, parts[0], f.Seen)
		}
		if len(parts) > 1 && f.Seen != parts[1] {
			t.Errorf("%s: seen\n\t%q\nwant\n\t%q", id, f.Seen, parts[1])
		}
		if len(parts) > 2 && f.Fix != parts[2] {
			t.Errorf("%s: fix\n\t%q\nwant\n\t%q", id, f.Fix, parts[2])
		}
	}
}

// The example docs/tools.md shows, byte for byte.
const (
	auditDNSArgs   = "--ip 127.0.0.22 --helo liar.test --domain soft.test"
	auditDNSOutput = `audit of 127.0.0.22  helo liar.test  domain soft.test
pass  ptr            127.0.0.22 has PTR liar.test
fail  fcrdns         liar.test -> 192.0.2.1 (not 127.0.0.22)
                     fix: add an A record liar.test -> 127.0.0.22
warn  helo_rdns      HELO liar.test is the PTR name, but that name does not resolve back (see fcrdns)
                     fix: add an A record liar.test -> 127.0.0.22
fail  helo_resolves  liar.test -> 192.0.2.1 (not 127.0.0.22)
                     fix: add an A record liar.test -> 127.0.0.22
fail  spf            soft.test: softfail, ~all matched; record "v=spf1 ~all"
                     fix: add ip4:127.0.0.22 to the SPF record of soft.test
warn  spf_helo       liar.test: none, no SPF record
                     fix: publish liar.test TXT "v=spf1 ip4:127.0.0.22 -all" (SPF for bounces, which have no sender domain)
result: 1 pass, 2 warn, 3 fail
`
)

func TestAuditDNSFindings(t *testing.T) {
	d := newAuditDNS(t)
	const (
		heloFix = "set your MTA's HELO name (Postfix: smtp_helo_name / myhostname) to mail.good.test"
	)
	tests := []struct {
		name string
		args string
		code int
		want want
	}{
		{"all pass", "--ip 127.0.0.20 --helo mail.good.test --domain good.test", exitOK, want{
			"ptr":           "pass|127.0.0.20 has PTR mail.good.test|",
			"fcrdns":        "pass|mail.good.test -> 127.0.0.20|",
			"helo_rdns":     "pass|HELO mail.good.test is the forward-confirmed rDNS name|",
			"helo_resolves": "pass|mail.good.test -> 127.0.0.20|",
			"spf":           `pass|good.test: pass, ip4:127.0.0.20 matched; record "v=spf1 ip4:127.0.0.20 ip6:::20 -all"|`,
			"spf_helo":      `pass|mail.good.test: pass, a matched; record "v=spf1 a -all"|`,
		}},
		{"HELO in another case with a dot", "--ip 127.0.0.20 --helo MAIL.Good.Test. --domain good.test.", exitOK, want{
			"helo_rdns": "pass|HELO MAIL.Good.Test. is the forward-confirmed rDNS name",
			"spf":       "pass",
		}},
		{"no PTR", "--ip 127.0.0.21 --helo mail.good.test --domain good.test", exitFindings, want{
			"ptr":    "fail|127.0.0.21 has no PTR record|ask your provider (whoever owns the IP block) to set the PTR of 127.0.0.21 to mail.good.test",
			"fcrdns": "fail|no PTR name to resolve back|set the PTR first (see ptr), and an A record mail.good.test -> 127.0.0.21",
			"helo_rdns": "warn|HELO mail.good.test: 127.0.0.21 has no rDNS name to match|" +
				"set the PTR of 127.0.0.21 (see ptr), then your MTA's HELO name (Postfix: smtp_helo_name / myhostname) to that name",
			"helo_resolves": "fail|mail.good.test -> 127.0.0.20 (not 127.0.0.21)|add an A record mail.good.test -> 127.0.0.21",
			"spf":           "fail|good.test: fail, -all matched; record \"v=spf1 ip4:127.0.0.20 ip6:::20 -all\"|add ip4:127.0.0.21 to the SPF record of good.test",
			"spf_helo":      "fail|mail.good.test: fail, -all matched; record \"v=spf1 a -all\"|add ip4:127.0.0.21 to the SPF record of mail.good.test",
		}},
		{"PTR does not resolve back", auditDNSArgs, exitFindings, want{
			"ptr":       "pass",
			"fcrdns":    "fail|liar.test -> 192.0.2.1 (not 127.0.0.22)|add an A record liar.test -> 127.0.0.22",
			"helo_rdns": "warn|HELO liar.test is the PTR name, but that name does not resolve back (see fcrdns)|add an A record liar.test -> 127.0.0.22",
		}},
		{"several PTR names", "--ip 127.0.0.23 --helo a.multi.test --domain good.test", exitFindings, want{
			"ptr":       "warn|127.0.0.23 has several PTR names: a.multi.test, b.multi.test; receivers may use any|keep one PTR record: ask your provider (whoever owns the IP block) to set the PTR of 127.0.0.23 to a.multi.test",
			"fcrdns":    "pass|a.multi.test -> 127.0.0.23; b.multi.test -> 127.0.0.23|",
			"helo_rdns": "pass",
		}},
		{"PTR lookup fails", "--ip 127.0.0.24 --helo mail.good.test --domain good.test", exitFindings, want{
			"ptr":    "fail",
			"fcrdns": "fail|no PTR name to resolve back",
		}},
		{"HELO is another name of the server", "--ip 127.0.0.20 --helo alias.good.test --domain good.test", exitOK, want{
			"helo_rdns":     "warn|HELO alias.good.test is not the rDNS name mail.good.test|" + heloFix,
			"helo_resolves": "pass|alias.good.test -> 127.0.0.20|",
			"spf_helo":      "warn|alias.good.test: none, no SPF record|publish alias.good.test TXT \"v=spf1 ip4:127.0.0.20 -all\" (SPF for bounces, which have no sender domain)",
		}},
		{"HELO resolves elsewhere", "--ip 127.0.0.20 --helo elsewhere.test --domain good.test", exitFindings, want{
			"helo_rdns":     "warn|HELO elsewhere.test is not the rDNS name mail.good.test|" + heloFix,
			"helo_resolves": "fail|elsewhere.test -> 192.0.2.7 (not 127.0.0.20)|add an A record elsewhere.test -> 127.0.0.20",
		}},
		{"HELO does not resolve", "--ip 127.0.0.20 --helo nx.good.test --domain good.test", exitFindings, want{
			"helo_rdns":     "warn|HELO nx.good.test is not the rDNS name mail.good.test|" + heloFix,
			"helo_resolves": "fail|nx.good.test does not resolve (no such host (NXDOMAIN))|add an A record nx.good.test -> 127.0.0.20",
		}},
		{"HELO not a host name", "--ip 127.0.0.20 --helo localhost --domain good.test", exitFindings, want{
			"helo_rdns":     "fail|HELO localhost is not a fully qualified host name|" + heloFix,
			"helo_resolves": "fail|HELO localhost is not a host name: receivers cannot resolve it|send a fully qualified host name as HELO (Postfix: smtp_helo_name), one that resolves to 127.0.0.20",
			"spf_helo":      "warn|HELO localhost is not a domain name: no SPF to check|send a fully qualified host name as HELO (Postfix: smtp_helo_name)",
		}},
		{"HELO address literal", "--ip 127.0.0.20 --helo [127.0.0.20] --domain good.test", exitOK, want{
			"helo_rdns":     "warn|HELO [127.0.0.20] is an address literal, not the rDNS name|" + heloFix,
			"helo_resolves": "warn|HELO [127.0.0.20] is an address literal: no name to resolve",
		}},
		{"HELO literal of another IP", "--ip 127.0.0.20 --helo [192.0.2.1] --domain good.test", exitFindings, want{
			"helo_rdns": "fail|HELO [192.0.2.1] is an address literal of another IP|" + heloFix,
		}},
		{"SPF fail", "--ip 127.0.0.20 --helo mail.good.test --domain other.test", exitFindings, want{
			"spf": `fail|other.test: fail, -all matched; record "v=spf1 ip4:192.0.2.0/24 -all"|add ip4:127.0.0.20 to the SPF record of other.test`,
		}},
		{"SPF neutral", "--ip 127.0.0.20 --helo mail.good.test --domain neutral.test", exitOK, want{
			"spf": `warn|neutral.test: neutral, ?all matched; record "v=spf1 ?all"|add ip4:127.0.0.20 to the SPF record of neutral.test`,
		}},
		{"no SPF record", "--ip 127.0.0.20 --helo mail.good.test --domain nospf.test", exitFindings, want{
			"spf": `fail|nospf.test: none, no SPF record|publish an SPF record listing every server that sends for nospf.test, e.g. nospf.test TXT "v=spf1 ip4:127.0.0.20 -all"`,
		}},
		{"SPF permerror", "--ip 127.0.0.20 --helo mail.good.test --domain broken.test", exitFindings, want{
			"spf": `fail|broken.test: permerror, syntax error: term 'frobnicate': unknown mechanism; record "v=spf1 frobnicate -all"|correct the SPF record of broken.test (syntax error: term 'frobnicate': unknown mechanism)`,
		}},
		{"not a domain", "--ip 127.0.0.20 --helo mail.good.test --domain localhost", exitFindings, want{
			"spf": "fail|none: sender domain is not a domain name|give --domain your envelope sender domain, e.g. example.com",
		}},
		{"HELO SPF softfail", "--ip 127.0.0.20 --helo softhelo.test --domain good.test", exitFindings, want{
			"spf_helo": `fail|softhelo.test: softfail, ~all matched; record "v=spf1 ~all"|add ip4:127.0.0.20 to the SPF record of softhelo.test`,
		}},
		{"IPv6", "--ip ::20 --helo mail6.good.test --domain good.test", exitOK, want{
			"ptr":      "pass|::20 has PTR mail6.good.test",
			"fcrdns":   "pass|mail6.good.test -> ::20",
			"spf":      "pass",
			"spf_helo": "pass",
		}},
		{"IPv6 fixes", "--ip ::21 --helo mail6.good.test --domain good.test", exitFindings, want{
			"fcrdns": "fail|no PTR name to resolve back|set the PTR first (see ptr), and an AAAA record mail6.good.test -> ::21",
			"spf":    `fail|good.test: fail, -all matched; record "v=spf1 ip4:127.0.0.20 ip6:::20 -all"|add ip6:::21 to the SPF record of good.test`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, rep, out := audit(t, d, strings.Fields(tc.args)...)
			if code != tc.code || rep.ExitStatus != tc.code {
				t.Errorf("exit %d, JSON exit_status %d, want %d", code, rep.ExitStatus, tc.code)
			}
			checkFindings(t, rep, tc.want)
			if len(rep.Findings) != 6 {
				t.Errorf("%d findings, want 6 without --smtp", len(rep.Findings))
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

func TestAuditExactOutput(t *testing.T) {
	d := newAuditDNS(t)
	code, out, _ := runVouch(t, append([]string{"audit", "--dns", d.Addr}, strings.Fields(auditDNSArgs)...)...)
	if code != exitFindings || out != auditDNSOutput {
		t.Errorf("exit %d, output:\n%s\nwant:\n%s", code, out, auditDNSOutput)
	}
}

func TestAuditJSON(t *testing.T) {
	d := newAuditDNS(t)
	_, out, _ := runVouch(t, "audit", "--json", "--dns", d.Addr, "--ip", "127.0.0.20", "--helo", "alias.good.test", "--domain", "good.test")
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	// Readable as printed: no HTML escaping of "->".
	if !strings.Contains(out, `"seen": "mail.good.test -> 127.0.0.20"`) {
		t.Errorf("JSON output:\n%s", out)
	}
	for path, w := range map[string]any{
		"ip":                 "127.0.0.20",
		"helo":               "alias.good.test",
		"domain":             "good.test",
		"smtp":               nil,
		"findings.0.id":      "ptr",
		"findings.0.status":  "pass",
		"findings.0.seen":    "127.0.0.20 has PTR mail.good.test",
		"findings.0.fix":     nil,
		"findings.2.id":      "helo_rdns",
		"findings.2.status":  "warn",
		"findings.2.fix":     "set your MTA's HELO name (Postfix: smtp_helo_name / myhostname) to mail.good.test",
		"smtp_dialogue":      nil,
		"summary.pass":       4.0,
		"summary.warn":       2.0,
		"summary.fail":       0.0,
		"exit_status":        0.0,
		"findings.5.id":      "spf_helo",
		"findings.6":         nil,
		"findings.1.id":      "fcrdns",
		"findings.3.id":      "helo_resolves",
		"findings.4.id":      "spf",
		"findings.5.status":  "warn",
		"findings.4.status":  "pass",
		"findings.3.status":  "pass",
		"findings.1.status":  "pass",
		"summary.unexpected": nil,
	} {
		if g := jsonPath(got, path); fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s = %#v, want %#v", path, g, w)
		}
	}
}

func TestAuditUsage(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no flags", nil, exitUsage, "vouch audit: missing --ip, --helo, --domain\n"},
		{"bad ip", []string{"--ip", "mail.example.com", "--helo", "a.test", "--domain", "a.test"}, exitUsage, `vouch audit: --ip "mail.example.com" is not an IP address`},
		{"bad timeout", []string{"--ip", "192.0.2.1", "--helo", "a.test", "--domain", "a.test", "--timeout", "0s"}, exitUsage, "--timeout must be positive"},
		{"extra", []string{"--ip", "192.0.2.1", "--helo", "a.test", "--domain", "a.test", "x"}, exitUsage, "unexpected arguments"},
		{"missing config", []string{"-config", "/nonexistent.yaml", "--ip", "192.0.2.1", "--helo", "a.test", "--domain", "a.test"}, exitError, "/nonexistent.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runVouch(t, append([]string{"audit"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.stderr) || out != "" {
				t.Errorf("exit %d (want %d), stdout %q, stderr %q (want %q)", code, tc.code, out, errOut, tc.stderr)
			}
		})
	}
	code, _, errOut := runVouch(t, "audit", "-h")
	for _, w := range []string{"Exit status:", "  4  at least one finding failed", "-smtp", "-timeout", "-dns", "-json"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("help lacks %q", w)
		}
	}
	if code != exitOK {
		t.Errorf("-h: exit %d", code)
	}
}

func TestAuditSMTPConnectFails(t *testing.T) {
	d := newAuditDNS(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens there
	code, rep, _ := audit(t, d, "--ip", "127.0.0.20", "--helo", "mail.good.test", "--domain", "good.test", "--smtp", addr)
	checkFindings(t, rep, want{
		"smtp_connect": "fail|cannot connect to " + addr + ": dial tcp " + addr + ": connect: connection refused|" +
			"check the address, that your MTA listens on it, and that no firewall is in the way",
	})
	if _, ok := findingOf(rep, "smtp_banner"); ok || code != exitFindings {
		t.Errorf("exit %d; findings after a failed connection: %+v", code, rep.Findings)
	}
}

// TestAuditPostfix talks to a real private Postfix 3.7, with VRFY on and
// off (disable_vrfy_command), with and without STARTTLS, named as its
// rDNS says or not.
func TestAuditPostfix(t *testing.T) {
	d := newAuditDNS(t)
	tests := []struct {
		name     string
		params   map[string]string
		hostname string
		tls      bool
		want     want
		// dialogue holds lines the text output's dialogue must show.
		dialogue []string
	}{
		{"VRFY enabled, named as its rDNS, STARTTLS", map[string]string{
			"disable_vrfy_command": "no",
			// Local delivery for its own name, as Debian's default
			// main.cf has it: local recipients are known.
			"mydestination": "$myhostname",
		}, "mx.postfix.test", true, want{
			"smtp_banner":   "pass|banner name mx.postfix.test is the rDNS name of 127.0.0.30|",
			"smtp_ehlo":     "pass|EHLO name mx.postfix.test is the rDNS name of 127.0.0.30|",
			"smtp_starttls": "pass|STARTTLS offered; extensions: PIPELINING, SIZE 10240000, VRFY, ETRN, STARTTLS, ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8, CHUNKING|",
			// Postfix answers 252 for an address it would accept, 550 for
			// one it would not: VRFY confirms nothing, but tells them apart.
			"smtp_vrfy": "warn|VRFY postmaster: 252 2.0.0 postmaster; VRFY vouch-audit-no-such-user: 550 5.1.1 <vouch-audit-no-such-user>: " +
				"Recipient address rejected: User unknown in local recipient table (VRFY tells existing addresses from unknown ones)|" +
				"disable VRFY (Postfix: disable_vrfy_command = yes; Sendmail: PrivacyOptions novrfy)",
			// Postfix does not implement EXPN at all.
			"smtp_expn": "pass|EXPN postmaster: 500 5.5.2 Error: command not recognized|",
		}, []string{
			"  <- 220 mx.postfix.test ESMTP Postfix",
			"  -> EHLO vouch-audit.invalid",
			"  <- 250-mx.postfix.test",
			"  <- 250-VRFY",
			"  <- 250 CHUNKING",
			"  -> VRFY postmaster",
			"  <- 252 2.0.0 postmaster",
			"  -> QUIT",
			"  <- 221 2.0.0 Bye",
		}},
		{"VRFY enabled on a relay", map[string]string{
			"disable_vrfy_command": "no",
		}, "mx.postfix.test", false, want{
			// No local recipients: every address gets 252.
			"smtp_vrfy": "pass|VRFY postmaster: 252 2.0.0 postmaster; VRFY vouch-audit-no-such-user: 252 2.0.0 vouch-audit-no-such-user|",
		}, nil},
		{"VRFY disabled, another name, no STARTTLS", map[string]string{
			"disable_vrfy_command": "yes",
		}, "relay.elsewhere.test", false, want{
			"smtp_connect":  "pass",
			"smtp_banner":   "warn|banner name relay.elsewhere.test is not the rDNS name mx.postfix.test of 127.0.0.30|set the banner name (Postfix: myhostname, used by smtpd_banner) to mx.postfix.test",
			"smtp_ehlo":     "warn|EHLO name relay.elsewhere.test is not the rDNS name mx.postfix.test of 127.0.0.30|set the name your MTA answers EHLO with (Postfix: myhostname) to mx.postfix.test",
			"smtp_starttls": "warn|no STARTTLS: mail to this server travels in clear; extensions: PIPELINING, SIZE 10240000, ETRN, ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8, CHUNKING|offer STARTTLS (Postfix: smtpd_tls_cert_file, smtpd_tls_key_file, smtpd_tls_security_level = may; Sendmail: confSERVER_CERT, confSERVER_KEY)",
			"smtp_vrfy":     "pass|VRFY postmaster: 502 5.5.1 VRFY command is disabled; VRFY vouch-audit-no-such-user: 502 5.5.1 VRFY command is disabled|",
			"smtp_expn":     "pass|EXPN postmaster: 500 5.5.2 Error: command not recognized|",
		}, []string{
			"  <- 502 5.5.1 VRFY command is disabled",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := startPostfix(t, tc.hostname, tc.params, tc.tls)
			code, rep, out := audit(t, d, "--ip", "127.0.0.30", "--helo", "mx.postfix.test", "--domain", "good.test", "--smtp", addr)
			checkFindings(t, rep, tc.want)
			if f, _ := findingOf(rep, "smtp_connect"); f.Seen != addr+" greets with 220 mx.postfix.test ESMTP Postfix" &&
				f.Seen != addr+" greets with 220 relay.elsewhere.test ESMTP Postfix" {
				t.Errorf("smtp_connect: %+v", f)
			}
			// The outbound server's own findings do not depend on --smtp.
			checkFindings(t, rep, want{"ptr": "pass", "fcrdns": "pass", "helo_rdns": "pass", "spf": "fail"})
			if code != exitFindings {
				t.Errorf("exit %d, want %d (good.test's SPF does not list 127.0.0.30)", code, exitFindings)
			}
			for _, l := range tc.dialogue {
				if !strings.Contains(out, "\n"+l+"\n") {
					t.Errorf("dialogue lacks line %q", l)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// TestAuditPostfixRefusesUs: a server that greets with 554 (Postfix with
// smtpd_delay_reject = no and a client restriction that rejects) cannot
// receive mail; the dialogue stops there.
func TestAuditPostfixRefusesUs(t *testing.T) {
	d := newAuditDNS(t)
	addr := startPostfix(t, "mx.postfix.test", map[string]string{
		"smtpd_delay_reject":        "no",
		"smtpd_client_restrictions": "reject",
	}, false)
	code, rep, out := audit(t, d, "--ip", "127.0.0.30", "--helo", "mx.postfix.test", "--domain", "good.test", "--smtp", addr)
	checkFindings(t, rep, want{
		"smtp_connect": "fail|" + addr + " greets with 554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied|" +
			"a 220 greeting is needed for mail to be delivered; check your MTA's client restrictions and logs",
	})
	if _, ok := findingOf(rep, "smtp_banner"); ok || code != exitFindings {
		t.Errorf("exit %d, findings %+v", code, rep.Findings)
	}
	if !strings.Contains(out, "\n  -> QUIT\n  <- 221 2.0.0 Bye\n") {
		t.Errorf("did not quit politely:\n%s", out)
	}
}

// TestAuditSendmail: Sendmail 8.17 answers VRFY and EXPN with 250 unless
// PrivacyOptions forbid them: the fail that Postfix cannot produce.
func TestAuditSendmail(t *testing.T) {
	d := newAuditDNS(t)
	tests := []struct {
		name string
		mc   []string
		want want
	}{
		{"default privacy options", nil, want{
			"smtp_banner": "pass",
			"smtp_ehlo":   "pass",
			"smtp_vrfy": "fail|VRFY postmaster: 250 2.1.5 <postmaster@mx.sendmail.test>; VRFY vouch-audit-no-such-user: 250 2.1.5 <vouch-audit-no-such-user@mx.sendmail.test> (250/251 disclose addresses)|" +
				"disable VRFY (Postfix: disable_vrfy_command = yes; Sendmail: PrivacyOptions novrfy)",
			"smtp_expn": "fail|EXPN postmaster: 250 2.1.5 <root@mx.sendmail.test> (discloses list members)|" +
				"disable EXPN (Sendmail: PrivacyOptions noexpn; Postfix has no EXPN)",
		}},
		{"novrfy, noexpn", []string{"define(`confPRIVACY_FLAGS', `authwarnings,novrfy,noexpn')dnl"}, want{
			"smtp_vrfy": "pass|VRFY postmaster: 252 2.5.2 Cannot VRFY user; try RCPT to attempt delivery (or try finger); " +
				"VRFY vouch-audit-no-such-user: 252 2.5.2 Cannot VRFY user; try RCPT to attempt delivery (or try finger)|",
			"smtp_expn": "pass|EXPN postmaster: 502 5.7.0 Sorry, we do not allow this operation|",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mta.StartSendmail(t, mta.Options{Domain: "sendmail.test", SendmailMC: tc.mc})
			code, rep, out := audit(t, d, "--ip", "127.0.0.31", "--helo", "mx.sendmail.test", "--domain", "good.test", "--smtp", s.SMTPAddr())
			checkFindings(t, rep, tc.want)
			if code != exitFindings {
				t.Errorf("exit %d", code)
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// TestVRFYFindings is the VRFY/EXPN judgement over the answers RFC 5321
// §3.5.3 allows, beyond those the real Postfix and Sendmail above give
// (251, a catch-all 250, a connection lost).
func TestVRFYFindings(t *testing.T) {
	step := func(code int, text string) *smtpStep {
		return &smtpStep{Code: code, Reply: []string{strconv.Itoa(code) + " " + text}}
	}
	tests := []struct {
		name           string
		known, unknown *smtpStep
		expn           *smtpStep
		vrfy, expnWant string
	}{
		{"both confirm", step(250, "2.1.5 Postmaster <postmaster@example.com>"), step(550, "5.1.1 unknown"), step(250, "2.1.5 <root@example.com>"), statusFail, statusFail},
		{"251 forward", step(251, "2.1.5 user not local; will forward to <x@y>"), step(550, "no"), step(502, "5.5.1 no"), statusFail, statusPass},
		{"catch-all 250", step(252, "2.0.0 postmaster"), step(250, "2.1.5 ok"), step(500, "no"), statusFail, statusPass},
		{"252 both", step(252, "2.0.0 postmaster"), step(252, "2.0.0 whatever"), step(502, "no"), statusPass, statusPass},
		{"252 vs 550", step(252, "2.0.0 postmaster"), step(550, "5.1.1 unknown"), step(502, "no"), statusWarn, statusPass},
		{"disabled", step(502, "5.5.1 VRFY command is disabled"), step(502, "5.5.1 VRFY command is disabled"), step(500, "5.5.2 no"), statusPass, statusPass},
		{"550 both", step(550, "5.7.1 no"), step(550, "5.7.1 no"), step(550, "no"), statusPass, statusPass},
		{"connection lost", &smtpStep{Command: "VRFY postmaster", Error: "EOF"}, nil, nil, statusWarn, statusWarn},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &auditor{}
			a.vrfy(tc.known, tc.unknown)
			a.expn(tc.expn)
			if a.rep.Findings[0].Status != tc.vrfy || a.rep.Findings[1].Status != tc.expnWant {
				t.Errorf("got %+v, want vrfy %s, expn %s", a.rep.Findings, tc.vrfy, tc.expnWant)
			}
			if a.rep.Findings[0].Status == statusFail && a.rep.Findings[0].Fix == "" {
				t.Error("failed without a fix")
			}
		})
	}
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		name, in string
		code     int
		text     []string
		err      string
	}{
		{"one line", "220 mx.example.com ESMTP\r\n", 220, []string{"mx.example.com ESMTP"}, ""},
		{"multi-line", "250-mx.example.com\r\n250-PIPELINING\r\n250 STARTTLS\r\n", 250, []string{"mx.example.com", "PIPELINING", "STARTTLS"}, ""},
		{"bare code", "250\r\n", 250, []string{""}, ""},
		{"bare LF", "221 bye\n", 221, []string{"bye"}, ""},
		{"CR inside kept", "250 a\rb\r\n", 250, []string{"a\rb"}, ""},
		{"8-bit kept", "250 \xff\x1b[2J\r\n", 250, []string{"\xff\x1b[2J"}, ""},
		{"codes differ", "250-a\r\n251 b\r\n", 0, nil, "reply lines with different codes 250 and 251"},
		{"not a code", "hello\r\n", 0, nil, `malformed reply line "hello"`},
		{"code out of range", "199 x\r\n", 0, nil, `malformed reply line "199 x"`},
		{"bad separator", "250_x\r\n", 0, nil, `malformed reply line "250_x"`},
		{"short", "25\r\n", 0, nil, `malformed reply line "25"`},
		{"cut off", "250-a\r\n250-b", 0, nil, "unexpected EOF"},
		{"empty", "", 0, nil, "unexpected EOF"},
		{"line too long", "250 " + strings.Repeat("x", maxReplyLine+1) + "\r\n", 0, nil, "reply line longer than 2048 octets"},
		{"too many lines", strings.Repeat("250-x\r\n", maxReplyLines+1), 0, nil, "reply longer than 100 lines"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := readReply(bufio.NewReaderSize(strings.NewReader(tc.in), 16))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || rep.Code != tc.code || fmt.Sprintf("%q", rep.Text) != fmt.Sprintf("%q", tc.text) {
				t.Fatalf("got %d %q %v, want %d %q", rep.Code, rep.Text, err, tc.code, tc.text)
			}
		})
	}
	// Replies follow one another on the connection.
	r := bufio.NewReader(strings.NewReader("220 hi\r\n250-a\r\n250 b\r\n"))
	if a, _ := readReply(r); a.Code != 220 {
		t.Errorf("first reply %+v", a)
	}
	if b, _ := readReply(r); b.Code != 250 || len(b.Text) != 2 || fmt.Sprint(b.lines()) != "[250-a 250 b]" {
		t.Errorf("second reply %+v, lines %q", b, b.lines())
	}
}

// FuzzReadReply: a server's replies are untrusted.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"220 mx.example.com ESMTP Postfix\r\n",
		"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 CHUNKING\r\n",
		"252 2.0.0 postmaster\r\n",
		"502 5.5.1 VRFY command is disabled\n",
		"250-a\r\n251 b\r\n",
		"250\r\n",
		"2500 x\r\n",
		"250 \x00\xff\x1b[2J\r\r\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rep, err := readReply(bufio.NewReaderSize(strings.NewReader(in), 16))
		if err != nil {
			return
		}
		if rep.Code < 200 || rep.Code > 599 || len(rep.Text) == 0 || len(rep.Text) > maxReplyLines {
			t.Fatalf("accepted %q as %+v", in, rep)
		}
		for i, l := range rep.Text {
			if len(l) > maxReplyLine || strings.Contains(l, "\n") {
				t.Fatalf("line %d of %q: %q", i, in, l)
			}
		}
		// What the text report prints of it is one safe line each.
		for _, l := range rep.lines() {
			s := showLine(l)
			for j := 0; j < len(s); j++ {
				if s[j] < ' ' || s[j] > '~' {
					t.Fatalf("showLine(%q) = %q", l, s)
				}
			}
		}
	})
}

// startPostfix runs a private Postfix (deploy/e2e/mta) named hostname,
// without a milter, with main.cf params on top of the harness's; with tls,
// it offers STARTTLS with a fresh self-signed certificate. It returns the
// smtpd address.
func startPostfix(t *testing.T, hostname string, params map[string]string, tls bool) string {
	t.Helper()
	main := map[string]string{}
	for k, v := range params {
		main[k] = v
	}
	if tls {
		cert, key := selfSigned(t, t.TempDir(), hostname)
		main["smtpd_tls_cert_file"] = cert
		main["smtpd_tls_key_file"] = key
		main["smtpd_tls_security_level"] = "may"
	}
	s := mta.StartPostfix(t, mta.Options{Domain: "postfix.test", Hostname: hostname, PostfixMain: main})
	return s.SMTPAddr()
}

// selfSigned writes a certificate and key for name into dir.
func selfSigned(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
