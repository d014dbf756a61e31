package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter/explain"
)

// The world of the check tests:
//
//	127.0.0.10  mail.good.test: PTR and A agree; good.test's SPF allows it
//	            through an include
//	127.0.0.11  no PTR at all
//	127.0.0.12  PTR liar.test, whose A is elsewhere (unconfirmed)
//	127.0.0.13  mail.other.test, confirmed; not allowed by good.test's SPF
//	::10        mail6.good.test, confirmed over IPv6
var checkZone = `
$ORIGIN test.
$TTL 300
@           SOA   ns.test. hostmaster.test. 1 3600 600 86400 60
mail.good   A     127.0.0.10
mail6.good  AAAA  ::10
good        TXT   "v=spf1 include:_spf.good.test -all"
_spf.good   TXT   "v=spf1 ip4:127.0.0.10 ip6:::10 ~all"
mail.good   TXT   "v=spf1 a -all"
mail6.good  TXT   "v=spf1 a -all"
liar        A     192.0.2.1
mail.other  A     127.0.0.13
other       TXT   "v=spf1 a:mail.other.test -all"
mail.other  TXT   "v=spf1 a -all"
soft        TXT   "v=spf1 ~all"
redir       TXT   "v=spf1 redirect=good.test"
10.0.0.127.in-addr.arpa. PTR mail.good.test.
12.0.0.127.in-addr.arpa. PTR liar.test.
13.0.0.127.in-addr.arpa. PTR mail.other.test.
` + dnstest.ReverseName("::10") + ` PTR mail6.good.test.
`

// checkEnv is a dnstest server with checkZone and a config file pointing
// at it, loopback not trusted (so 127.x clients are checked).
type checkEnv struct {
	t   *testing.T
	dns *dnstest.Server
	cfg string
}

func newCheckEnv(t *testing.T, extraYAML string) *checkEnv {
	t.Helper()
	e := &checkEnv{t: t, dns: dnstest.New(t, checkZone)}
	e.cfg = filepath.Join(t.TempDir(), "vouch.yaml")
	data := fmt.Sprintf("dns:\n  servers: [%q]\n  timeout: 2s\npolicy:\n  trusted_networks: []\n%s", e.dns.Addr, extraYAML)
	if err := os.WriteFile(e.cfg, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// check runs "vouch check" in-process with the env's config.
func (e *checkEnv) check(args ...string) (int, string, string) {
	e.t.Helper()
	return runVouch(e.t, append([]string{"check", "-config", e.cfg, "--mta-name", "mx.vouch.test"}, args...)...)
}

func runVouch(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// lineWith returns the output line starting with prefix, "" if none.
func lineWith(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// The examples docs/tools.md shows, byte for byte, are golden files in
// testdata/ (go test -update rewrites them).
const (
	checkAcceptArgs = "--ip 127.0.0.10 --helo mail.good.test --from alice@good.test"
	checkRejectArgs = "--ip 127.0.0.13 --helo mail.other.test --from alice@good.test"
)

func TestCheckExactOutput(t *testing.T) {
	e := newCheckEnv(t, "")
	for _, tc := range []struct {
		name, args, want string
		code             int
	}{
		{"accept", checkAcceptArgs, "check-accept.txt", exitOK},
		{"reject", checkRejectArgs, "check-reject.txt", exitReject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := e.check(strings.Fields(tc.args)...)
			if code != tc.code || errOut != "" {
				t.Errorf("exit %d (want %d), stderr %q", code, tc.code, errOut)
			}
			checktest.Golden(t, filepath.Join("testdata", tc.want), out)
		})
	}
}

// TestCheckOutcomes covers each kind of outcome by the lines that say it.
func TestCheckOutcomes(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string // added to the config
		args   string
		code   int
		lines  []string // whole lines the output must have
		absent []string // line prefixes it must not have
	}{
		{"tempfail: no PTR", "", "--ip 127.0.0.11 --helo mail.x.test --from bob@nospf.test", exitTempFail, []string{
			"iprev    no-ptr      127.0.0.11 has no PTR record",
			"helo     mismatch    mail.x.test -> no address; no confirmed rDNS name",
			"action   tempfail (iprev)",
			"reply    450 4.7.25 Client address 127.0.0.11 has no reverse DNS (PTR) record  (to RCPT TO)",
			"headers  none: the message is refused",
		}, nil},
		{"unconfirmed PTR is accepted by standard", "", "--ip 127.0.0.12 --helo liar.test --from bob@soft.test", exitOK, []string{
			"iprev    unconfirmed 127.0.0.12 -> liar.test -> 192.0.2.1 (does not lead back)",
			"helo     mismatch    liar.test -> 192.0.2.1; no confirmed rDNS name",
			"spf      softfail    soft.test: ~all matched (mailfrom bob@soft.test)",
			`                     soft.test "v=spf1 ~all"`,
			"spf_helo none        liar.test: no SPF record (helo postmaster@liar.test)",
			"                     liar.test: no TXT records (NODATA)",
			"action   accept",
			"	iprev=fail (HELO liar.test: mismatch) policy.iprev=127.0.0.12;",
		}, nil},
		{"null sender as ''", "", "--ip 127.0.0.10 --helo mail.good.test --from ''", exitOK, []string{
			"client   127.0.0.10  helo mail.good.test  from <>",
			"spf      pass        mail.good.test: a matched (helo postmaster@mail.good.test)",
			"	spf=pass smtp.helo=mail.good.test",
		}, []string{"spf_helo", "	spf=pass smtp.mailfrom"}},
		{"null sender as <>", "", "--ip 127.0.0.13 --helo mail.good.test --from <>", exitReject, []string{
			"spf      fail        mail.good.test: -all matched (helo postmaster@mail.good.test)",
			"action   reject (spf)",
			"reply    550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from mail.good.test  (to RCPT TO)",
		}, []string{"spf_helo"}},
		{"exempt recipient", "", "--ip 127.0.0.13 --helo mail.other.test --from alice@good.test --rcpt <postmaster@vouch.test>", exitOK, []string{
			"action   reject (spf), but postmaster@vouch.test is an exempt recipient: accepted",
			"reply    none: accepted",
			"	spf=fail smtp.mailfrom=alice@good.test;",
		}, nil},
		{"dry run", "  dry_run: [spf]\n", "--ip 127.0.0.13 --helo mail.other.test --from alice@good.test", exitOK, []string{
			"policy   standard, decided at rcpt, dry run: spf",
			"action   accept (dry run: would reject because of spf)",
			"reply    none: accepted (dry run; would be 550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test)",
			"headers  added at the top of the message:",
		}, nil},
		{"quarantine under strict", "  preset: strict\n", "--ip 127.0.0.10 --helo mail.good.test --from bob@soft.test", exitOK, []string{
			"policy   strict, decided at rcpt",
			"action   quarantine (spf): accepted into the MTA's hold queue",
			"headers  added at the top of the message:",
		}, nil},
		{"decided at MAIL FROM", "  decide_at: mail\n", checkRejectArgs, exitReject, []string{
			"policy   standard, decided at mail",
			"reply    550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test  (to MAIL FROM)",
		}, nil},
		{"decided at HELO", "  preset: strict\n  decide_at: helo\n", "--ip 127.0.0.10 --helo mail.other.test --from alice@good.test", exitReject, []string{
			"helo     mismatch    mail.other.test -> 127.0.0.13; rDNS name mail.good.test",
			"spf      -           not checked: refused before MAIL FROM",
			"spf_helo fail        mail.other.test: -all matched (helo postmaster@mail.other.test)",
			"action   reject (helo, spf_helo)",
			"reply    550 5.7.26 Multiple authentication checks failed: helo, spf_helo  (to HELO)",
		}, nil},
		{"SPF off", "checks:\n  spf:\n    enabled: false\n", checkAcceptArgs, exitOK, []string{
			"spf      -           not checked (checks.spf.enabled is off)",
		}, []string{"spf_helo"}},
		{"several checks reject", "  preset: strict\n", "--ip 127.0.0.12 --helo liar.test --from alice@good.test", exitReject, []string{
			"action   reject (iprev, helo, spf)",
			"reply    550 5.7.26 Multiple authentication checks failed: iprev, helo, spf  (to RCPT TO)",
		}, nil},
		{"allowlisted sender domain", "  preset: strict\n  allow_sender_domains: [soft.test]\n", "--ip 127.0.0.10 --helo mail.good.test --from bob@soft.test", exitOK, []string{
			"allowed  sender domain soft.test is in policy.allow_sender_domains (unless SPF fails)",
			"action   accept",
		}, nil},
		{"redirect", "", "--ip 127.0.0.10 --helo mail.good.test --from x@redir.test", exitOK, []string{
			"spf      pass        redir.test: include:_spf.good.test matched (mailfrom x@redir.test)",
			`                     redir.test "v=spf1 redirect=good.test"`,
			`                       redirect good.test "v=spf1 include:_spf.good.test -all"`,
			`                         include _spf.good.test "v=spf1 ip4:127.0.0.10 ip6:::10 ~all"`,
		}, nil},
		{"IPv6", "", "--ip ::10 --helo mail6.good.test --from alice@good.test", exitOK, []string{
			"client   ::10  helo mail6.good.test  from alice@good.test",
			"iprev    pass        ::10 -> mail6.good.test -> ::10 (confirmed)",
			"helo     match       mail6.good.test is the confirmed rDNS name",
			`	iprev=pass (HELO mail6.good.test: match) policy.iprev="::10";`,
		}, nil},
		{"authenticated client", "", "--ip 127.0.0.11 --helo laptop --from alice@good.test --auth alice", exitOK, []string{
			"client   127.0.0.11  helo laptop  from alice@good.test  auth alice",
			"exempt   the client authenticated (policy.skip_authenticated): no checks, no headers",
			"headers  none: exempt messages are not checked",
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newCheckEnv(t, tc.yaml)
			code, out, errOut := e.check(splitArgs(tc.args)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			for _, l := range tc.lines {
				if !strings.Contains("\n"+out, "\n"+l+"\n") {
					t.Errorf("no line %q", l)
				}
			}
			for _, p := range tc.absent {
				if l := lineWith(out, p); l != "" {
					t.Errorf("unexpected line %q", l)
				}
			}
			if t.Failed() {
				t.Logf("stderr %q, output:\n%s", errOut, out)
			}
		})
	}
}

// splitArgs splits on spaces; ” is an empty argument.
func splitArgs(s string) []string {
	f := strings.Fields(s)
	for i := range f {
		if f[i] == "''" {
			f[i] = ""
		}
	}
	return f
}

// TestCheckTrustedClient: loopback is trusted by default; check says so
// and asks no DNS at all, as the daemon would.
func TestCheckTrustedClient(t *testing.T) {
	d := dnstest.New(t, checkZone)
	code, out, _ := runVouch(t, "check", "--dns", d.Addr, "--mta-name", "mx.vouch.test",
		"--ip", "127.0.0.13", "--helo", "mail.other.test", "--from", "alice@good.test")
	if code != exitOK {
		t.Errorf("exit %d", code)
	}
	checktest.Golden(t, filepath.Join("testdata", "check-trusted.txt"), out)
	if n := d.TotalQueries(); n != 0 {
		t.Errorf("%d DNS queries for a trusted client: %v", n, d.QueryLog())
	}
}

func TestCheckDNSFailureIsTempfail(t *testing.T) {
	e := newCheckEnv(t, "checks:\n  deadline: 3s\n")
	e.dns.SetFault("good.test", dnstest.Fault{Rcode: 2}) // SERVFAIL
	code, out, _ := e.check("--ip", "127.0.0.10", "--helo", "mail.good.test", "--from", "alice@good.test")
	for _, l := range []string{
		"spf      temperror   good.test: DNS error looking up TXT good.test: server misbehaving (SERVFAIL) (mailfrom alice@good.test)",
		"                     good.test: DNS error: server misbehaving (SERVFAIL)",
		"reply    451 4.7.24 SPF: temporary DNS failure checking good.test  (to RCPT TO)",
	} {
		if !strings.Contains(out, l+"\n") {
			t.Errorf("no line %q", l)
		}
	}
	if code != exitTempFail || t.Failed() {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
}

func TestCheckJSON(t *testing.T) {
	e := newCheckEnv(t, "  dry_run: [spf]\n")
	code, out, _ := e.check("--json", "--ip", "127.0.0.13", "--helo", "mail.other.test", "--from", "<alice@good.test>")
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	// The documented field names and what they hold.
	want := map[string]any{
		"client.ip":                "127.0.0.13",
		"client.from":              "alice@good.test",
		"client.rcpt":              "",
		"client.mta_name":          "mx.vouch.test",
		"exempt":                   "",
		"iprev.result":             "pass",
		"iprev.ptr.0.name":         "mail.other.test",
		"iprev.ptr.0.addresses.0":  "127.0.0.13",
		"iprev.ptr.0.confirmed":    true,
		"helo.result":              "match",
		"helo.name":                "mail.other.test",
		"spf.identity":             "mailfrom",
		"spf.sender":               "alice@good.test",
		"spf.domain":               "good.test",
		"spf.result":               "fail",
		"spf.mechanism":            "-all",
		"spf.records.0.domain":     "good.test",
		"spf.records.0.txt.0":      "v=spf1 include:_spf.good.test -all",
		"spf.records.1.via":        "include",
		"spf.records.1.depth":      1.0,
		"spf_helo.result":          "pass",
		"policy.preset":            "standard",
		"policy.decide_at":         "rcpt",
		"policy.dry_run.0":         "spf",
		"decision.stage":           "rcpt",
		"decision.action":          "accept",
		"decision.would":           "reject",
		"decision.dry_run":         true,
		"decision.triggered.0":     "spf",
		"decision.would_reply":     "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test",
		"exempt_recipient":         false,
		"reply":                    "",
		"headers.0.name":           "Authentication-Results",
		"headers.1.name":           "Received-SPF",
		"exit_status":              0.0,
		"allowed":                  []any{},
		"client.auth":              "",
		"client.helo":              "mail.other.test",
		"spf_helo.records.0.txt.0": "v=spf1 a -all",
		"spf_helo.sender":          "postmaster@mail.other.test",
		"iprev.ptr.0.addresses.1":  nil,
		"headers.0.value":          "mx.vouch.test;\n\tiprev=pass (HELO mail.other.test: match) policy.iprev=127.0.0.13;\n\tspf=fail smtp.mailfrom=alice@good.test;\n\tspf=pass smtp.helo=mail.other.test",
		"decision.triggered.1":     nil,
		"spf.records.2":            nil,
		"spf.problem":              nil,
		"spf_helo.records.0.depth": 0.0,
		"spf.records.0.via":        nil,
		"spf_helo.identity":        "helo",
		"spf_helo.domain":          "mail.other.test",
		"spf_helo.mechanism":       "a",
		"helo.addresses":           []any{},
		"iprev.error":              nil,
		"spf.records.0.error":      nil,
		"decision.triggered":       []any{"spf"},
		"policy.dry_run":           []any{"spf"},
		"spf.records.1.txt":        []any{"v=spf1 ip4:127.0.0.10 ip6:::10 ~all"},
		"spf.records.1.domain":     "_spf.good.test",
		"headers.2":                nil,
	}
	for path, w := range want {
		if g := jsonPath(got, path); fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s = %#v, want %#v", path, g, w)
		}
	}
	if code != exitOK {
		t.Errorf("exit %d", code)
	}
	if t.Failed() {
		t.Log(out)
	}

	// Exit statuses are in the JSON too, and null results for exempt clients.
	_, out, _ = runVouch(t, "check", "--json", "--dns", e.dns.Addr, "--ip", "127.0.0.1", "--helo", "x", "--from", "")
	got = nil
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	for key, w := range map[string]any{"exempt": "trusted_network", "iprev": nil, "helo": nil, "spf": nil, "spf_helo": nil,
		"headers": []any{}, "exit_status": 0.0} {
		if g, ok := got[key]; !ok {
			t.Errorf("field %s missing", key)
		} else if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s = %#v, want %#v", key, g, w)
		}
	}
}

// jsonPath walks a decoded JSON value along "a.0.b"; nil when absent.
func jsonPath(v any, path string) any {
	for _, p := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// TestCheckUntrustedStrings: what the client sent and what DNS holds
// cannot break the output's lines or reach the terminal raw.
func TestCheckUntrustedStrings(t *testing.T) {
	e := newCheckEnv(t, "")
	e.dns.AddZone(`evil.test. TXT "v=spf1 include:x\027[2J.test ip4:127.0.0.10 -all"`)
	long := strings.Repeat("a", 1200)
	heloName := "evil\r\nX-Injected: 1 %s; \"\xff\x1b[31m" + long
	code, out, _ := e.check("--ip", "127.0.0.10", "--helo", heloName, "--from", "x%y@evil.test")
	if code != exitOK {
		t.Errorf("exit %d", code)
	}
	for i, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		for j := 0; j < len(l); j++ {
			if (l[j] < ' ' || l[j] > '~') && l[j] != '\t' {
				t.Fatalf("line %d has byte %#x: %q", i+1, l[j], l)
			}
		}
		if strings.HasPrefix(l, "X-Injected") {
			t.Errorf("client text started a line: %q", l)
		}
	}
	for _, want := range []string{
		`helo     invalid     "evil\r\nX-Injected: 1 %s; \"\xff\x1b[31m` + long + `" is not a host name or address literal`,
		`spf      permerror   evil.test: syntax error: term 'include:x?[2J.test': control character in the record (mailfrom x%y@evil.test)`,
		`                     evil.test "v=spf1 include:x\x1b[2J.test ip4:127.0.0.10 -all"`,
		`                     evil.test: syntax error: term 'include:x?[2J.test': control character in the record`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no line %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}

	// JSON carries the client's text as sent (escaped by JSON).
	_, out, _ = e.check("--json", "--ip", "127.0.0.10", "--helo", "evil\r\nX: 1", "--from", "x%y@evil.test")
	var rep explain.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Client.HELO != "evil\r\nX: 1" || rep.Client.From != "x%y@evil.test" {
		t.Errorf("client = %+v", rep.Client)
	}
}

func TestCheckUsage(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no flags", nil, exitUsage, "vouch check: missing --ip, --helo, --from\n"},
		{"no from", []string{"--ip", "192.0.2.1", "--helo", "a.test"}, exitUsage, "vouch check: missing --from\n"},
		{"bad ip", []string{"--ip", "192.0.2.300", "--helo", "a.test", "--from", ""}, exitUsage, `vouch check: --ip "192.0.2.300" is not an IP address` + "\n"},
		{"extra argument", []string{"--ip", "192.0.2.1", "--helo", "a.test", "--from", "", "more"}, exitUsage, `vouch check: unexpected arguments: ["more"]` + "\n"},
		{"unknown flag", []string{"--sender", "x"}, exitUsage, "flag provided but not defined: -sender\n"},
		{"missing config", []string{"-config", "/nonexistent/vouch.yaml", "--ip", "192.0.2.1", "--helo", "a.test", "--from", ""}, exitError, "/nonexistent/vouch.yaml"},
		{"bad --dns", []string{"--dns", "not a server", "--ip", "192.0.2.1", "--helo", "a.test", "--from", ""}, exitError, "command line: dns.servers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runVouch(t, append([]string{"check"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.stderr) || out != "" {
				t.Errorf("exit %d (want %d), stdout %q, stderr %q (want %q)", code, tc.code, out, errOut, tc.stderr)
			}
		})
	}
	// -h documents the exit statuses and every flag.
	code, _, errOut := runVouch(t, "check", "-h")
	for _, want := range []string{"Exit status:", "  3  tempfail", "  4  reject", "-json", "-rcpt", "-mta-name", "-dns"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if code != exitOK {
		t.Errorf("-h: exit %d", code)
	}
}

// TestToolsDoc keeps docs/tools.md true: its examples are the outputs the
// tests above assert, and it names every finding and JSON field.
func TestToolsDoc(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "tools.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for name, example := range map[string]string{
		"check accept":  "--from alice@good.test\n" + golden(t, "check-accept.txt") + "```",
		"check reject":  "--from alice@good.test\n" + golden(t, "check-reject.txt") + "```",
		"check trusted": "```\n" + golden(t, "check-trusted.txt") + "```",
		"audit":         auditDNSArgs + "\n" + golden(t, "audit-dns.txt") + "```",
	} {
		if !strings.Contains(doc, example) {
			t.Errorf("docs/tools.md lacks the %s example as the test sees it:\n%s", name, example)
		}
	}
	for _, id := range []string{"ptr", "fcrdns", "helo_rdns", "helo_resolves", "spf", "spf_helo",
		"smtp_connect", "smtp_banner", "smtp_ehlo", "smtp_starttls", "smtp_vrfy", "smtp_expn"} {
		if !strings.Contains(doc, "| `"+id+"` |") {
			t.Errorf("docs/tools.md has no row for finding %s", id)
		}
	}
	for _, typ := range []reflect.Type{reflect.TypeOf(explain.Report{}), reflect.TypeOf(auditReport{})} {
		for _, field := range jsonFields(typ) {
			if !strings.Contains(doc, "`"+field+"`") && !strings.Contains(doc, "."+field+"`") && !strings.Contains(doc, "`"+field+".") {
				t.Errorf("docs/tools.md does not document JSON field %s of %s", field, typ.Name())
			}
		}
	}
}

// jsonFields lists the JSON names of t's fields and of its nested structs.
func jsonFields(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" && t.Field(i).Anonymous {
			// encoding/json promotes an untagged embedded struct's fields.
			out = append(out, jsonFields(t.Field(i).Type)...)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		out = append(out, name)
		out = append(out, jsonFields(t.Field(i).Type)...)
	}
	return out
}

// golden reads a golden file of testdata/.
func golden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
