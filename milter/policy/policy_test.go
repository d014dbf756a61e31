package policy

import (
	"strconv"
	"strings"
	"testing"
)

func mustPreset(t *testing.T, name string) *Policy {
	t.Helper()
	tbl, err := Preset(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.Validate(); err != nil {
		t.Fatalf("preset %s does not validate: %v", name, err)
	}
	return &Policy{Table: tbl}
}

var vars = Vars{IP: "192.0.2.1", HELO: "mail.example.com", Sender: "a@example.com", Domain: "example.com"}

func TestPresets(t *testing.T) {
	type want struct {
		action Action
		reply  string // "code status text", "" for no reply
	}
	tests := []struct {
		preset   string
		findings []Finding
		want     want
	}{
		{"standard", []Finding{{Iprev, "pass"}, {Helo, "match"}, {SPF, "pass"}}, want{Accept, ""}},
		{"standard", []Finding{{Iprev, "no-ptr"}}, want{TempFail, "450 4.7.25 Client address 192.0.2.1 has no reverse DNS (PTR) record"}},
		{"standard", []Finding{{Iprev, "temperror"}}, want{TempFail, "451 4.7.25 Temporary DNS failure verifying reverse DNS of 192.0.2.1"}},
		{"standard", []Finding{{Iprev, "unconfirmed"}, {Helo, "mismatch"}}, want{Accept, ""}},
		{"standard", []Finding{{Helo, "invalid"}, {Helo, "literal-mismatch"}}, want{Accept, ""}},
		{"standard", []Finding{{SPF, "fail"}}, want{Reject, "550 5.7.23 SPF: 192.0.2.1 is not allowed to send mail from example.com"}},
		{"standard", []Finding{{SPF, "temperror"}}, want{TempFail, "451 4.7.24 SPF: temporary DNS failure checking example.com"}},
		{"standard", []Finding{{SPF, "permerror"}, {SPF, "softfail"}, {SPF, "none"}, {SPFHelo, "fail"}}, want{Accept, ""}},
		// Reject beats tempfail: an SPF fail is certain whatever DNS did for iprev.
		{"standard", []Finding{{Iprev, "temperror"}, {SPF, "fail"}}, want{Reject, "550 5.7.23 SPF: 192.0.2.1 is not allowed to send mail from example.com"}},
		{"lenient", []Finding{{Iprev, "no-ptr"}, {Helo, "invalid"}, {SPF, "fail"}, {SPF, "temperror"}}, want{Accept, ""}},
		{"strict", []Finding{{Iprev, "unconfirmed"}}, want{Reject, "550 5.7.25 Reverse DNS of 192.0.2.1 does not resolve back to 192.0.2.1"}},
		{"strict", []Finding{{Helo, "mismatch"}}, want{Reject, "550 5.7.25 HELO name mail.example.com does not match the reverse DNS of 192.0.2.1"}},
		{"strict", []Finding{{SPF, "permerror"}}, want{Reject, "550 5.7.24 SPF: the SPF record of example.com is invalid"}},
		{"strict", []Finding{{SPF, "softfail"}}, want{Quarantine, ""}},
		{"strict", []Finding{{Iprev, "no-ptr"}, {Helo, "mismatch"}}, want{Reject, "550 5.7.26 Multiple authentication checks failed: iprev, helo"}},
		{"strict", []Finding{{Iprev, "pass"}, {Helo, "match"}, {SPF, "fail"}, {SPFHelo, "fail"}}, want{Reject, "550 5.7.26 Multiple authentication checks failed: spf, spf_helo"}},
	}
	for _, tc := range tests {
		name := tc.preset
		for _, f := range tc.findings {
			name += "/" + string(f.Check) + "=" + string(f.Result)
		}
		t.Run(name, func(t *testing.T) {
			d := mustPreset(t, tc.preset).Decide(Input{Findings: tc.findings, Vars: vars})
			if d.Action != tc.want.action {
				t.Fatalf("action %s, want %s", d.Action, tc.want.action)
			}
			got := ""
			if d.Code != 0 {
				got = strings.Join([]string{itoa(d.Code), d.Status, d.Text}, " ")
			}
			if got != tc.want.reply {
				t.Errorf("reply %q\nwant  %q", got, tc.want.reply)
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestDryRun(t *testing.T) {
	p := mustPreset(t, "standard")
	p.DryRun = map[Check]bool{SPF: true}
	d := p.Decide(Input{Findings: []Finding{{Iprev, "pass"}, {SPF, "fail"}}, Vars: vars})
	if d.Action != Accept || d.Would != Reject || !d.DryRun() {
		t.Fatalf("dry-run decision %+v, want accept that would reject", d)
	}
	if d.Code != 550 || d.Status != "5.7.23" {
		t.Errorf("dry-run should report the reply it would give, got %d %s", d.Code, d.Status)
	}
	// A check not in dry-run still acts.
	d = p.Decide(Input{Findings: []Finding{{Iprev, "no-ptr"}, {SPF, "fail"}}, Vars: vars})
	if d.Action != TempFail || d.Would != Reject || d.Code != 450 {
		t.Fatalf("decision %+v, want tempfail 450 that would reject", d)
	}
}

func TestClientStringsAreSanitised(t *testing.T) {
	p := mustPreset(t, "strict")
	v := Vars{IP: "192.0.2.1", HELO: "evil\r\n250 2.0.0 ok %s \xff" + strings.Repeat("x", 2000), Domain: "100%.example"}
	for _, f := range []Finding{{Helo, "mismatch"}, {SPF, "fail"}} {
		d := p.Decide(Input{Findings: []Finding{f}, Vars: v})
		for i := 0; i < len(d.Text); i++ {
			if c := d.Text[i]; c < 0x20 || c > 0x7e {
				t.Fatalf("reply text has byte %#x: %q", c, d.Text)
			}
		}
		if strings.Contains(strings.ReplaceAll(d.Text, "%%", ""), "%") {
			t.Errorf("lone %% in %q", d.Text)
		}
		if len(d.Text) > 300 {
			t.Errorf("reply text %d bytes long", len(d.Text))
		}
	}
	d := p.Decide(Input{Findings: []Finding{{SPF, "fail"}}, Vars: v})
	if want := "SPF: 192.0.2.1 is not allowed to send mail from 100%%.example"; d.Text != want {
		t.Errorf("text %q, want %q", d.Text, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		table Table
		err   string
	}{
		{"unknown check", Table{"dkim": {"pass": {}}}, `unknown check "dkim"`},
		{"unknown result", Table{SPF: {"nope": {}}}, `spf: unknown result "nope"`},
		{"class mismatch", Table{SPF: {"fail": {Reject, 550, "4.7.23", "x"}}}, "must be 5.X.Y"},
		{"tempfail with 5xx", Table{SPF: {"fail": {TempFail, 550, "5.7.23", "x"}}}, "needs a 4xx reply code"},
		{"bad status", Table{SPF: {"fail": {Reject, 550, "5.7", "x"}}}, "enhanced status"},
		{"CRLF in text", Table{SPF: {"fail": {Reject, 550, "5.7.23", "a\r\nb"}}}, "printable ASCII"},
		{"no text", Table{SPF: {"fail": {Reject, 550, "5.7.23", ""}}}, "needs a reply text"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.table.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.err)
			}
		})
	}
}

func TestDefaultRule(t *testing.T) {
	tests := []struct {
		check  Check
		result Result
		action Action
		want   string
	}{
		{Iprev, "no-ptr", TempFail, "450 4.7.25"},
		{Iprev, "no-ptr", Reject, "550 5.7.25"},
		{Helo, "mismatch", TempFail, "451 4.7.25"},
		{SPF, "softfail", Reject, "550 5.7.23"},
		{SPF, "permerror", TempFail, "451 4.7.24"},
		{SPFHelo, "none", Reject, "550 5.7.23"},
	}
	for _, tc := range tests {
		t.Run(string(tc.check)+"/"+string(tc.result)+"/"+tc.action.String(), func(t *testing.T) {
			r := DefaultRule(tc.check, tc.result, tc.action)
			if got := itoa(r.Code) + " " + r.Status; got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
			if err := (Table{tc.check: {tc.result: r}}).Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestDomainsMatch(t *testing.T) {
	ds := Domains{"example.com", ".example.org"}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"example.com", true}, {"EXAMPLE.com.", true}, {"mail.example.com", false},
		{"example.org", true}, {"mx.Example.ORG", true}, {"badexample.org", false},
		{"", false}, {".", false},
	} {
		if got := ds.Match(tc.name); got != tc.want {
			t.Errorf("Match(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The fixed replies outside the presets follow the same rules as a cell.
func TestFixedRulesValidate(t *testing.T) {
	for name, r := range map[string]Rule{"Multiple": Multiple, "RelayUnknown": RelayUnknown} {
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
