package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-mail/vouch/checks/audit/audittest"
	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/deploy/e2e/mta"
)

// auditCLI runs vouch audit with args against d, as text and as --json.
func auditCLI(t *testing.T, d *dnstest.Server, args ...string) (int, auditReport, string) {
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

type want = audittest.Want

// The example docs/tools.md shows, byte for byte.
const (
	auditDNSArgs = "--ip 127.0.0.22 --helo liar.test --domain soft.test"
)

func TestAuditExactOutput(t *testing.T) {
	d := audittest.NewDNS(t)
	code, out, _ := runVouch(t, append([]string{"audit", "--dns", d.Addr}, strings.Fields(auditDNSArgs)...)...)
	if code != exitFindings {
		t.Errorf("exit %d", code)
	}
	checktest.Golden(t, filepath.Join("testdata", "audit-dns.txt"), out)
}

// TestAuditExitStatus: vouch audit exits 4 when a finding fails, 0 when
// they pass or only warn, and says so in --json too.
func TestAuditExitStatus(t *testing.T) {
	d := audittest.NewDNS(t)
	tests := []struct {
		name string
		args string
		code int
	}{
		{"all pass", "--ip 127.0.0.20 --helo mail.good.test --domain good.test", exitOK},
		{"warnings only", "--ip 127.0.0.20 --helo [127.0.0.20] --domain good.test", exitOK},
		{"a failure", "--ip 127.0.0.21 --helo mail.good.test --domain good.test", exitFindings},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, rep, out := auditCLI(t, d, strings.Fields(tc.args)...)
			if code != tc.code || rep.ExitStatus != tc.code {
				t.Errorf("exit %d, JSON exit_status %d, want %d\n%s", code, rep.ExitStatus, tc.code, out)
			}
		})
	}
}

func TestAuditJSON(t *testing.T) {
	d := audittest.NewDNS(t)
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

// TestAuditPostfix talks to a real private Postfix 3.7, with VRFY on and
// off (disable_vrfy_command), with and without STARTTLS, named as its
// rDNS says or not.
func TestAuditPostfix(t *testing.T) {
	d := audittest.NewDNS(t)
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
			code, rep, out := auditCLI(t, d, "--ip", "127.0.0.30", "--helo", "mx.postfix.test", "--domain", "good.test", "--smtp", addr)
			audittest.Check(t, rep.Report, tc.want)
			if f, _ := audittest.Finding(rep.Report, "smtp_connect"); f.Seen != addr+" greets with 220 mx.postfix.test ESMTP Postfix" &&
				f.Seen != addr+" greets with 220 relay.elsewhere.test ESMTP Postfix" {
				t.Errorf("smtp_connect: %+v", f)
			}
			// The outbound server's own findings do not depend on --smtp.
			audittest.Check(t, rep.Report, want{"ptr": "pass", "fcrdns": "pass", "helo_rdns": "pass", "spf": "fail"})
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
	d := audittest.NewDNS(t)
	addr := startPostfix(t, "mx.postfix.test", map[string]string{
		"smtpd_delay_reject":        "no",
		"smtpd_client_restrictions": "reject",
	}, false)
	code, rep, out := auditCLI(t, d, "--ip", "127.0.0.30", "--helo", "mx.postfix.test", "--domain", "good.test", "--smtp", addr)
	audittest.Check(t, rep.Report, want{
		"smtp_connect": "fail|" + addr + " greets with 554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied|" +
			"a 220 greeting is needed for mail to be delivered; check your MTA's client restrictions and logs",
	})
	if _, ok := audittest.Finding(rep.Report, "smtp_banner"); ok || code != exitFindings {
		t.Errorf("exit %d, findings %+v", code, rep.Findings)
	}
	if !strings.Contains(out, "\n  -> QUIT\n  <- 221 2.0.0 Bye\n") {
		t.Errorf("did not quit politely:\n%s", out)
	}
}

// TestAuditSendmail: Sendmail 8.17 answers VRFY and EXPN with 250 unless
// PrivacyOptions forbid them: the fail that Postfix cannot produce.
func TestAuditSendmail(t *testing.T) {
	d := audittest.NewDNS(t)
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
			code, rep, out := auditCLI(t, d, "--ip", "127.0.0.31", "--helo", "mx.sendmail.test", "--domain", "good.test", "--smtp", s.SMTPAddr())
			audittest.Check(t, rep.Report, tc.want)
			if code != exitFindings {
				t.Errorf("exit %d", code)
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
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
		for k, v := range mta.NewTLSFiles(t, hostname).PostfixTLS() {
			main[k] = v
		}
	}
	s := mta.StartPostfix(t, mta.Options{Domain: "postfix.test", Hostname: hostname, PostfixMain: main})
	return s.SMTPAddr()
}
