package config

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/milter/policy"
)

func TestDefaults(t *testing.T) {
	c, err := Parse("empty.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Policy.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if c.Milter.Listen.String() != "tcp4:127.0.0.1:8895" || c.Metrics.Listen != "127.0.0.1:9895" {
		t.Errorf("listeners %q %q", c.Milter.Listen, c.Metrics.Listen)
	}
	if c.Policy.Preset != "standard" || c.Policy.DecideAt != policy.StageRcpt || c.Checks.Deadline != 8*time.Second {
		t.Errorf("preset %s decide_at %s deadline %s", c.Policy.Preset, c.Policy.DecideAt, c.Checks.Deadline)
	}
	if got := p.Table[policy.SPF]["fail"]; got.Action != policy.Reject || got.Code != 550 || got.Status != "5.7.23" {
		t.Errorf("standard spf fail rule %+v", got)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if !slices.Equal(c.Policy.TrustedNetworks, want) {
		t.Errorf("trusted networks %v", c.Policy.TrustedNetworks)
	}
	ch := c.Checks
	if !ch.Iprev.Enabled || !ch.Helo.Enabled || !ch.SPF.Enabled || !ch.SPF.CheckHelo || ch.SPF.LookupLimit != 10 || ch.SPF.VoidLookupLimit != 2 || ch.Iprev.MaxPTR != 10 {
		t.Errorf("checks %+v", ch)
	}
	if h := c.Headers; !h.AuthenticationResults || !h.ReceivedSPF || !h.RemoveForged || !c.Policy.SkipAuthenticated {
		t.Errorf("header/auth defaults off")
	}
	if strings.Join(c.Policy.ExemptRecipients, ",") != "postmaster,abuse" {
		t.Errorf("exempt %v", c.Policy.ExemptRecipients)
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
			p, err := c.Policy.Compile()
			if err != nil {
				t.Fatal(err)
			}
			want, _ := policy.Preset(name)
			if !reflect.DeepEqual(p.Table, want) {
				t.Errorf("table %v, want %v", p.Table, want)
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
	p, err := c.Policy.Compile()
	if err != nil {
		t.Fatal(err)
	}
	rules := p.Table
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
	if !p.DryRun[policy.Helo] || p.DryRun[policy.SPF] {
		t.Errorf("dry run %v", p.DryRun)
	}
	if c.Policy.DecideAt != policy.StageMail || c.Checks.Deadline != 5*time.Second || !c.Checks.Iprev.TrustMTAHostname || c.Checks.Iprev.MaxPTR != 3 || c.Checks.SPF.CheckHelo {
		t.Errorf("config %+v", c)
	}
	if len(c.Policy.TrustedNetworks) != 3 || c.Policy.TrustedNetworks[2] != netip.MustParsePrefix("192.0.2.7/32") {
		t.Errorf("trusted %v", c.Policy.TrustedNetworks)
	}
	if a := c.Milter.Listen; a.Network != "unix" || a.Address != "/run/vouch/vouch.sock" {
		t.Errorf("listen %+v", a)
	}
	if c.Milter.SocketMode != 0o600 || c.Milter.OverloadAction != policy.Accept || c.Milter.MaxConnections != 50 {
		t.Errorf("milter %+v", c.Milter)
	}
	if r := c.DNS; len(r.Servers) != 2 || r.Attempts != 3 || r.Timeout != time.Second || r.CacheSize != 100 {
		t.Errorf("resolver %+v", r)
	}
	if h := c.Headers; h.ReceivedSPF || !h.AuthenticationResults || h.AuthServID != "mx.example.com" {
		t.Errorf("headers %+v", c.Headers)
	}
	if c.Log.Format != "json" || c.Log.Level != slog.LevelDebug {
		t.Errorf("log %+v", c.Log)
	}
	if !slices.Equal(p.AllowSenderDomains, policy.Domains{".example.org"}) || !slices.Equal(p.AllowClientNames, policy.Domains{"mx.partner.example"}) {
		t.Errorf("allowlists %v %v", p.AllowSenderDomains, p.AllowClientNames)
	}
}

func TestErrorsNameFileAndLine(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []string // each line of the error output
	}{
		{"unknown key", "milter:\n  listen: inet:1@127.0.0.1\n  lisen: x\n",
			[]string{"bad.yaml:3: milter.lisen: unknown key (want listen, socket_mode, socket_group, max_connections, overload_action, idle_timeout, packet_timeout, shutdown_timeout)"}},
		{"unknown top-level key", "polcy:\n  preset: strict\n",
			[]string{"bad.yaml:1: polcy: unknown key (want milter, metrics, log, dns, checks, policy, headers)"}},
		{"wrong type", "dns:\n  attempts: lots\n",
			[]string{`bad.yaml:2: dns.attempts: want a whole number, not "lots"`}},
		{"duration without unit", "checks:\n  deadline: 5\n",
			[]string{`bad.yaml:2: checks.deadline: want a duration with a unit (30s, 5m, 1h), not "5"`}},
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
			[]string{"bad.yaml:4: policy.rules.spf.fail: unknown key txt in a policy rule (want action, code, status, text)"}},
		{"rule: CRLF text", "policy:\n  rules:\n    spf:\n      fail: {action: reject, text: \"a\\r\\nb\"}\n",
			[]string{"bad.yaml:4: policy.rules.spf.fail: reply text must be printable ASCII without line breaks"}},
		{"deadline beyond the MTA's timeout", "checks:\n  deadline: 45s\n",
			[]string{"bad.yaml:2: checks.deadline: 45s reaches Postfix's milter_command_timeout (30s): the MTA would give up first"}},
		{"dns server not an address", "dns:\n  servers: [dns.example]\n",
			[]string{`bad.yaml:2: dns.servers.0: want IP, IP:PORT or [IPv6]:PORT, not "dns.example"`}},
		{"negative negative_max_ttl", "dns:\n  negative_max_ttl: -1s\n",
			[]string{`bad.yaml:2: dns.negative_max_ttl: must be 0 (no negative caching) or more`}},
		{"a key given twice", "policy:\n  preset: strict\n  preset: lenient\n", []string{"bad.yaml:3: policy.preset: given twice"}},
		{"a list where a value goes", "checks:\n  deadline: [1s]\n", []string{"bad.yaml:2: checks.deadline: want a duration with a unit (30s, 5m, 1h), not a list"}},
		{"two documents", "policy: {}\n---\nmilter: {}\n", []string{"bad.yaml:2: a second YAML document: put all settings in one"}},
		{"every error at once", "milter:\n  max_connections: many\n  lisen: x\nlog:\n  level: loud\ndns:\n  attempts: 0\npolicy:\n  preset: paranoid\n  allow_sender_domains: [\"a b\"]\n",
			[]string{
				`bad.yaml:2: milter.max_connections: want a whole number, not "many"`,
				"bad.yaml:3: milter.lisen: unknown key (want listen, socket_mode, socket_group, max_connections, overload_action, idle_timeout, packet_timeout, shutdown_timeout)",
				`bad.yaml:5: log.level: want debug, info, warn or error, not "loud"`,
				"bad.yaml:7: dns.attempts: must be at least 1",
				`bad.yaml:9: policy.preset: unknown preset "paranoid" (want one of [lenient standard strict])`,
				`bad.yaml:10: policy.allow_sender_domains.0: want a domain (example.com) or a suffix (.example.com), not "a b"`,
			}},
		{"bad socket mode", "milter:\n  socket_mode: rw\n",
			[]string{`bad.yaml:2: milter.socket_mode: want an octal file mode such as "0660", not "rw"`}},
		{"unknown key in a check", "checks:\n  spf:\n    chek_helo: false\n", []string{"bad.yaml:3: checks.spf.chek_helo: unknown key (want enabled, check_helo, lookup_limit, void_lookup_limit)"}},
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
		// Whatever validates must compile.
		if _, err := c.Policy.Compile(); err != nil {
			t.Fatalf("validated config does not build: %v", err)
		}
	})
}

func TestWarnings(t *testing.T) {
	c, err := Parse("w.yaml", []byte("policy:\n  trusted_networks:\n    - 10.1.2.3/8\n    - 192.0.2.0/24\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Warnings.Error(), "w.yaml:3: policy.trusted_networks.0: 10.1.2.3/8 has host bits set: it means 10.0.0.0/8"; got != want {
		t.Errorf("warnings %q, want %q", got, want)
	}
	if c.Policy.TrustedNetworks[0] != netip.MustParsePrefix("10.0.0.0/8") {
		t.Errorf("network %v", c.Policy.TrustedNetworks[0])
	}
}

// A DNS server without a port is asked on port 53, as resolv.conf says.
func TestDNSServerWithoutPort(t *testing.T) {
	c, err := Parse("d.yaml", []byte("dns:\n  servers: [127.0.0.1, \"::1\", \"[::1]:5353\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := dns.New(c.DNS, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Servers(), " "); got != "127.0.0.1:53 [::1]:53 [::1]:5353" {
		t.Errorf("servers %s", got)
	}
}

// negative_max_ttl: 0 stays 0 (no negative caching), not the default.
func TestZeroIsNotTheDefault(t *testing.T) {
	c, err := Parse("z.yaml", []byte("dns:\n  negative_max_ttl: 0s\n  cache_size: 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.DNS.NegativeMaxTTL != 0 || c.DNS.CacheSize != 0 {
		t.Errorf("dns %+v", c.DNS)
	}
}

func TestLoadRefusesWhatIsNotAFile(t *testing.T) {
	if _, err := Load("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Load(/dev/zero) = %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("# x\n"), MaxFileSize/4+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) = %v", err)
	}
}

func TestChanged(t *testing.T) {
	a := Default()
	b, err := Parse("b.yaml", []byte("milter:\n  max_connections: 5\n  shutdown_timeout: 1s\nlog:\n  level: debug\ndns:\n  servers: [127.0.0.1]\npolicy:\n  rules:\n    spf: {softfail: reject}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := Changed(a, b)
	want := []string{"milter.max_connections", "milter.shutdown_timeout", "log.level", "dns.servers", "policy.rules"}
	if !slices.Equal(got, want) {
		t.Errorf("Changed = %q, want %q", got, want)
	}
	var restart []string
	for _, k := range got {
		if RestartOnly(k) {
			restart = append(restart, k)
		}
	}
	if !slices.Equal(restart, []string{"milter.max_connections"}) {
		t.Errorf("restart-only %q", restart)
	}
	if c := Changed(a, Default()); len(c) != 0 {
		t.Errorf("defaults differ from themselves: %q", c)
	}
}

// log.output: syslog sends each line to the local syslog daemon with the
// mail facility (priority = facility*8 + severity), tagged vouch.
func TestSyslogOutput(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	pc, err := net.ListenPacket("unixgram", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	old := syslogSocket
	syslogSocket = sock
	defer func() { syslogSocket = old }()

	c, err := Parse("s.yaml", []byte("log:\n  output: syslog\n"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Log.NewLogger(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.With("conn", 7).Warn("too many milter connections", "active", 3)
	buf := make([]byte, 2048)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	// mail (2) * 8 + warning (4) = 20.
	if !strings.HasPrefix(got, "<20>") || !strings.Contains(got, " vouch[") ||
		!strings.Contains(got, `level=WARN msg="too many milter connections" conn=7 active=3`) {
		t.Errorf("syslog message %q", got)
	}
	if _, err := Parse("s.yaml", []byte("log:\n  output: file\n")); err == nil {
		t.Error("output file accepted")
	}
}
