package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/policy"
)

func TestDefaults(t *testing.T) {
	c, err := Parse("empty.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Settings(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Milter.Listen != "inet:8895@127.0.0.1" || c.Metrics.Listen != "127.0.0.1:9895" {
		t.Errorf("listeners %q %q", c.Milter.Listen, c.Metrics.Listen)
	}
	if s.Preset != "standard" || s.DecideAt != milter.StageRcpt || s.Deadline != 8*time.Second {
		t.Errorf("preset %s decide_at %s deadline %s", s.Preset, s.DecideAt, s.Deadline)
	}
	if got := s.Policy.Table[policy.SPF]["fail"]; got.Action != policy.Reject || got.Code != 550 || got.Status != "5.7.23" {
		t.Errorf("standard spf fail rule %+v", got)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if len(s.TrustedNetworks) != 2 || s.TrustedNetworks[0] != want[0] || s.TrustedNetworks[1] != want[1] {
		t.Errorf("trusted networks %v", s.TrustedNetworks)
	}
	if !s.Iprev.Enabled || !s.HeloEnabled || !s.SPF.Enabled || !s.SPF.CheckHelo || s.SPF.Options.LookupLimit != 10 || s.SPF.Options.VoidLookupLimit != 2 {
		t.Errorf("checks %+v %+v", s.Iprev, s.SPF)
	}
	if !s.AddAuthResults || !s.AddReceivedSPF || !s.RemoveForgedAuthRes || !s.SkipAuthenticated {
		t.Errorf("header/auth defaults off")
	}
	if strings.Join(s.ExemptRecipients, ",") != "postmaster,abuse" {
		t.Errorf("exempt %v", s.ExemptRecipients)
	}
	// A file of comments only is the defaults too.
	if _, err := Parse("comments.yaml", []byte("# nothing\n")); err != nil {
		t.Errorf("comment-only file: %v", err)
	}
}

func TestPresets(t *testing.T) {
	for _, name := range []string{"lenient", "standard", "strict"} {
		t.Run(name, func(t *testing.T) {
			c, err := Parse("p.yaml", []byte("policy:\n  preset: "+name+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			s, err := c.Settings(nil)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := policy.Preset(name)
			if len(s.Policy.Table) != len(want) {
				t.Errorf("table %v, want %v", s.Policy.Table, want)
			}
		})
	}
}

func TestFullFile(t *testing.T) {
	data := `
milter:
  listen: unix:/run/vouch/vouch.sock
  socket_mode: "0600"
  max_connections: 50
  overload_action: accept
  idle_timeout: 1m
  shutdown_timeout: 5s
metrics:
  listen: "[::1]:9999"
log: {format: json, level: debug}
dns:
  servers: ["127.0.0.1:53", "[::1]:5353"]
  timeout: 1s
  attempts: 3
  cache_size: 100
checks:
  deadline: 5s
  iprev: {max_ptr: 3, trust_mta_hostname: true}
  spf: {check_helo: false}
policy:
  preset: strict
  decide_at: mail
  dry_run: [helo]
  rules:
    spf:
      softfail: reject
      fail: {action: reject, text: "Go away, {ip}"}
    iprev:
      no-ptr: {action: tempfail, code: 421}
      unconfirmed: accept
  trusted_networks: [10.0.0.0/8, "2001:db8::/32", 192.0.2.7]
  exempt_recipients: [postmaster, abuse@example.com]
  allow_sender_domains: [.example.org]
  allow_client_names: [mx.partner.example]
headers:
  authserv_id: mx.example.com
  received_spf: false
`
	c, err := Parse("full.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Settings(nil)
	if err != nil {
		t.Fatal(err)
	}
	rules := s.Policy.Table
	tests := []struct {
		name string
		got  policy.Rule
		want policy.Rule
	}{
		{"short form takes the preset reply", rules[policy.SPF]["softfail"], policy.Rule{Action: policy.Reject, Code: 550, Status: "5.7.23", Text: "SPF: {ip} is probably not allowed to send mail from {domain} (softfail)"}},
		{"text override", rules[policy.SPF]["fail"], policy.Rule{Action: policy.Reject, Code: 550, Status: "5.7.23", Text: "Go away, {ip}"}},
		{"code override keeps status detail", rules[policy.Iprev]["no-ptr"], policy.Rule{Action: policy.TempFail, Code: 421, Status: "4.7.25", Text: "Client address {ip} has no reverse DNS (PTR) record"}},
		{"accept override", rules[policy.Iprev]["unconfirmed"], policy.Rule{Action: policy.Accept}},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, tc.got, tc.want)
		}
	}
	if !s.Policy.DryRun[policy.Helo] || s.Policy.DryRun[policy.SPF] {
		t.Errorf("dry run %v", s.Policy.DryRun)
	}
	if s.DecideAt != milter.StageMail || s.Deadline != 5*time.Second || !s.Iprev.TrustMTAHostname || s.SPF.CheckHelo {
		t.Errorf("settings %+v", s)
	}
	if len(s.TrustedNetworks) != 3 || s.TrustedNetworks[2] != netip.MustParsePrefix("192.0.2.7/32") {
		t.Errorf("trusted %v", s.TrustedNetworks)
	}
	if a := c.ListenAddress(); a.Network != "unix" || a.Address != "/run/vouch/vouch.sock" {
		t.Errorf("listen %+v", a)
	}
	if o := c.ListenOptions(); o.Mode != 0o600 {
		t.Errorf("mode %o", o.Mode)
	}
	if r := c.ResolverConfig(); len(r.Servers) != 2 || r.Attempts != 3 || r.Timeout != time.Second {
		t.Errorf("resolver %+v", r)
	}
	if s.AddReceivedSPF || !s.AddAuthResults || s.AuthServID != "mx.example.com" {
		t.Errorf("headers %+v", c.Headers)
	}
}

func TestErrorsNameFileAndLine(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []string // each line of the error output
	}{
		{"unknown key", "milter:\n  listen: inet:1@127.0.0.1\n  lisen: x\n",
			[]string{"bad.yaml:3: field lisen is not a known key in milter"}},
		{"unknown top-level key", "polcy:\n  preset: strict\n",
			[]string{"bad.yaml:1: field polcy is not a known key in the top level (want milter, metrics, log, dns, checks, policy, headers)"}},
		{"wrong type", "dns:\n  attempts: lots\n",
			[]string{"bad.yaml:2: cannot unmarshal !!str `lots` into int"}},
		{"duration without unit", "checks:\n  deadline: 5\n",
			[]string{"bad.yaml:2: cannot unmarshal !!int `5` into time.Duration"}},
		{"yaml syntax", "policy:\n  preset: [\n", []string{"bad.yaml:2: did not find expected node content"}},
		{"bad preset", "policy:\n  preset: paranoid\n",
			[]string{`bad.yaml:2: policy.preset: unknown preset "paranoid" (want one of [lenient standard strict])`}},
		{"several problems", "milter:\n  listen: tcp:25\npolicy:\n  decide_at: data\n  trusted_networks:\n    - 10.0.0.0/8\n    - 300.1.1.1/8\n",
			[]string{
				`bad.yaml:2: milter.listen: socket "tcp:25": unknown type "tcp" (want inet, inet6, unix or local)`,
				`bad.yaml:4: policy.decide_at: must be rcpt, mail or helo, not "data"`,
				`bad.yaml:7: policy.trusted_networks.1: want a CIDR network (192.0.2.0/24, 2001:db8::/32) or an address, not "300.1.1.1/8"`,
			}},
		{"rule: class mismatch", "policy:\n  rules:\n    spf:\n      fail: {action: reject, code: 550, status: 4.7.23}\n",
			[]string{`bad.yaml:4: policy.rules.spf.fail: enhanced status "4.7.23" must be 5.X.Y to match 550 (RFC 3463)`}},
		{"rule: unknown result", "policy:\n  rules:\n    helo:\n      missmatch: reject\n",
			[]string{`bad.yaml:4: policy.rules.helo.missmatch: unknown result "missmatch" for helo (want one of match, resolves, literal, mismatch, invalid, literal-mismatch, temperror)`}},
		{"rule: bad action", "policy:\n  rules:\n    spf:\n      fail: bounce\n",
			[]string{`bad.yaml:4: policy.rules.spf.fail: unknown action "bounce" (want one of accept, quarantine, tempfail, reject)`}},
		{"rule: unknown key in rule", "policy:\n  rules:\n    spf:\n      fail: {action: reject, txt: hi}\n",
			[]string{"bad.yaml:4: field txt is not a known key in a policy rule (want action, code, status, text)"}},
		{"rule: CRLF text", "policy:\n  rules:\n    spf:\n      fail: {action: reject, text: \"a\\r\\nb\"}\n",
			[]string{"bad.yaml:4: policy.rules.spf.fail: reply text must be printable ASCII without line breaks"}},
		{"deadline beyond the MTA's timeout", "checks:\n  deadline: 45s\n",
			[]string{"bad.yaml:2: checks.deadline: 45s reaches Postfix's milter_command_timeout (30s): the MTA would give up first"}},
		{"dns server without port", "dns:\n  servers: [127.0.0.1]\n",
			[]string{`bad.yaml:2: dns.servers.0: want IP:PORT or [IPv6]:PORT, not "127.0.0.1"`}},
		{"bad socket mode", "milter:\n  socket_mode: rw\n",
			[]string{`bad.yaml:2: milter.socket_mode: want an octal file mode such as "0660", not "rw"`}},
		{"unknown key in a check", "checks:\n  spf:\n    chek_helo: false\n", []string{"bad.yaml:3: field chek_helo is not a known key in checks.spf"}},
		{"log format", "log:\n  format: xml\n", []string{`bad.yaml:2: log.format: must be text or json, not "xml"`}},
		{"authserv-id", "headers:\n  authserv_id: \"a;b\"\n", []string{`bad.yaml:2: headers.authserv_id: must be a host name or RFC 2045 token, not "a;b"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tc.data))
			if err == nil {
				t.Fatal("accepted")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T %v is not Errors", err, err)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "vouch.yaml")
	if err := os.WriteFile(p, []byte("policy:\n  preset: lenient\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil || c.Policy.Preset != "lenient" {
		t.Fatalf("Load = %v, %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("policy:\n  preset: strict\n"))
	f.Add([]byte("policy:\n  rules:\n    spf:\n      fail: {action: reject, code: 550}\n"))
	f.Add([]byte("dns:\n  servers: ['[::1]:53']\n"))
	f.Add([]byte("milter: [1, 2]\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		// Whatever validates must build.
		if _, err := c.Settings(nil); err != nil {
			t.Fatalf("validated config does not build: %v", err)
		}
	})
}

// The daemon's embedded defaults are said twice, as a file (Default) and
// as settings (milter.DefaultSettings, which tests and tools use): they
// must be the same.
func TestDefaultsAgreeWithMilter(t *testing.T) {
	got, err := Default().Settings(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := milter.DefaultSettings(nil); !reflect.DeepEqual(got, want) {
		t.Errorf("config.Default().Settings() = %+v\nmilter.DefaultSettings() = %+v", got, want)
	}
}
