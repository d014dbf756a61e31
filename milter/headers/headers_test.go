package headers

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"

	"github.com/vouch-mail/vouch/checks/spf"
)

var (
	client4 = net.ParseIP("192.0.2.10")
	client6 = net.ParseIP("2001:db8::25")
)

func mailFrom(v spf.Verdict, sender, mech, problem string) *spf.Result {
	domain := ""
	if at := strings.LastIndexByte(sender, '@'); at >= 0 {
		domain = sender[at+1:]
	}
	return &spf.Result{Identity: spf.MailFrom, Sender: sender, Domain: domain, Verdict: v, Mechanism: mech, Problem: problem}
}

func heloResult(v spf.Verdict, helo, mech, problem string) *spf.Result {
	return &spf.Result{Identity: spf.Helo, Sender: "postmaster@" + helo, Domain: helo, Verdict: v, Mechanism: mech, Problem: problem}
}

// base is a typical session: iprev pass, HELO identity pass; tests vary
// the MAIL FROM result.
func base(mf *spf.Result) Input {
	return Input{
		AuthServID:  "mx.example.org",
		ClientIP:    client4,
		HELO:        "mail.example.com",
		Iprev:       &IprevInfo{Result: "pass", IP: client4},
		SPFMailFrom: mf,
		SPFHelo:     heloResult(spf.Pass, "mail.example.com", "a", ""),
		Receiver:    "mx.example.org",
	}
}

func TestHeaders(t *testing.T) {
	tests := []struct {
		name string
		in   Input
		ar   string
		rspf string // "" when ReceivedSPF must report ok=false
	}{
		{
			name: "pass",
			in:   base(mailFrom(spf.Pass, "alice@example.com", "ip4:192.0.2.0/24", "")),
			ar: "mx.example.org;\n" +
				"\tiprev=pass policy.iprev=192.0.2.10;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com;\n" +
				"\tspf=pass smtp.helo=mail.example.com",
			rspf: "pass (mx.example.org: domain of alice@example.com designates\n" +
				"\t192.0.2.10 as permitted sender) client-ip=192.0.2.10;\n" +
				"\tenvelope-from=\"alice@example.com\"; helo=mail.example.com; identity=mailfrom;\n" +
				"\treceiver=mx.example.org; mechanism=\"ip4:192.0.2.0/24\"",
		},
		{
			name: "fail",
			in:   base(mailFrom(spf.Fail, "alice@example.com", "-all", "")),
			ar: "mx.example.org;\n" +
				"\tiprev=pass policy.iprev=192.0.2.10;\n" +
				"\tspf=fail smtp.mailfrom=alice@example.com;\n" +
				"\tspf=pass smtp.helo=mail.example.com",
			rspf: "fail (mx.example.org: domain of alice@example.com does not\n" +
				"\tdesignate 192.0.2.10 as permitted sender) client-ip=192.0.2.10;\n" +
				"\tenvelope-from=\"alice@example.com\"; helo=mail.example.com; identity=mailfrom;\n" +
				"\treceiver=mx.example.org; mechanism=-all",
		},
		{
			name: "softfail",
			in:   base(mailFrom(spf.SoftFail, "alice@example.com", "~all", "")),
			ar: "mx.example.org;\n" +
				"\tiprev=pass policy.iprev=192.0.2.10;\n" +
				"\tspf=softfail smtp.mailfrom=alice@example.com;\n" +
				"\tspf=pass smtp.helo=mail.example.com",
			rspf: "softfail (mx.example.org: domain of transitioning\n" +
				"\talice@example.com does not designate 192.0.2.10 as permitted sender)\n" +
				"\tclient-ip=192.0.2.10; envelope-from=\"alice@example.com\";\n" +
				"\thelo=mail.example.com; identity=mailfrom; receiver=mx.example.org;\n" +
				"\tmechanism=~all",
		},
		{
			name: "neutral",
			in:   base(mailFrom(spf.Neutral, "alice@example.com", "default", "")),
			ar: "mx.example.org;\n" +
				"\tiprev=pass policy.iprev=192.0.2.10;\n" +
				"\tspf=neutral smtp.mailfrom=alice@example.com;\n" +
				"\tspf=pass smtp.helo=mail.example.com",
			rspf: "neutral (mx.example.org: 192.0.2.10 is neither permitted nor\n" +
				"\tdenied by domain of alice@example.com) client-ip=192.0.2.10;\n" +
				"\tenvelope-from=\"alice@example.com\"; helo=mail.example.com; identity=mailfrom;\n" +
				"\treceiver=mx.example.org; mechanism=default",
		},
		{
			name: "none",
			in:   base(mailFrom(spf.None, "alice@example.com", "", "no SPF record")),
			ar: "mx.example.org;\n" +
				"\tiprev=pass policy.iprev=192.0.2.10;\n" +
				"\tspf=none reason=\"no SPF record\" smtp.mailfrom=alice@example.com;\n" +
				"\tspf=pass smtp.helo=mail.example.com",
			rspf: "none (mx.example.org: domain of alice@example.com does not\n" +
				"\tdesignate permitted sender hosts) client-ip=192.0.2.10;\n" +
				"\tenvelope-from=\"alice@example.com\"; helo=mail.example.com; identity=mailfrom;\n" +
				"\treceiver=mx.example.org; problem=\"no SPF record\"",
		},
		{
			name: "temperror",
			in:   base(mailFrom(spf.TempError, "alice@example.com", "", "DNS timeout looking up TXT example.com")),
			ar: "mx.example.org;\n" +
				"\tiprev=pass policy.iprev=192.0.2.10;\n" +
				"\tspf=temperror reason=\"DNS timeout looking up TXT example.com\"\n" +
				"\tsmtp.mailfrom=alice@example.com;\n" +
				"\tspf=pass smtp.helo=mail.example.com",
			rspf: "temperror (mx.example.org: error in processing during lookup\n" +
				"\tof alice@example.com: DNS timeout looking up TXT example.com)\n" +
				"\tclient-ip=192.0.2.10; envelope-from=\"alice@example.com\";\n" +
				"\thelo=mail.example.com; identity=mailfrom; receiver=mx.example.org;\n" +
				"\tproblem=\"DNS timeout looking up TXT example.com\"",
		},
		{
			name: "permerror",
			in:   base(mailFrom(spf.PermError, "alice@example.com", "", "too many DNS lookups")),
			ar: "mx.example.org;\n" +
				"\tiprev=pass policy.iprev=192.0.2.10;\n" +
				"\tspf=permerror reason=\"too many DNS lookups\" smtp.mailfrom=alice@example.com;\n" +
				"\tspf=pass smtp.helo=mail.example.com",
			rspf: "permerror (mx.example.org: permanent error in processing\n" +
				"\tdomain of alice@example.com: too many DNS lookups) client-ip=192.0.2.10;\n" +
				"\tenvelope-from=\"alice@example.com\"; helo=mail.example.com; identity=mailfrom;\n" +
				"\treceiver=mx.example.org; problem=\"too many DNS lookups\"",
		},
		{
			name: "null sender: the HELO identity decides",
			in: func() Input {
				in := base(nil)
				in.SPFHelo = heloResult(spf.Fail, "mail.example.com", "-all", "")
				return in
			}(),
			ar: "mx.example.org;\n" +
				"\tiprev=pass policy.iprev=192.0.2.10;\n" +
				"\tspf=fail smtp.helo=mail.example.com",
			rspf: "fail (mx.example.org: domain of postmaster@mail.example.com\n" +
				"\tdoes not designate 192.0.2.10 as permitted sender) client-ip=192.0.2.10;\n" +
				"\tenvelope-from=\"postmaster@mail.example.com\"; helo=mail.example.com;\n" +
				"\tidentity=helo; receiver=mx.example.org; mechanism=-all",
		},
		{
			name: "IPv6 client",
			in: func() Input {
				in := base(mailFrom(spf.Pass, "alice@example.com", "ip6:2001:db8::/32", ""))
				in.ClientIP, in.Iprev.IP = client6, client6
				return in
			}(),
			ar: "mx.example.org;\n" +
				"\tiprev=pass policy.iprev=\"2001:db8::25\";\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com;\n" +
				"\tspf=pass smtp.helo=mail.example.com",
			rspf: "pass (mx.example.org: domain of alice@example.com designates\n" +
				"\t2001:db8::25 as permitted sender) client-ip=\"2001:db8::25\";\n" +
				"\tenvelope-from=\"alice@example.com\"; helo=mail.example.com; identity=mailfrom;\n" +
				"\treceiver=mx.example.org; mechanism=\"ip6:2001:db8::/32\"",
		},
		{
			name: "no HELO check",
			in: func() Input {
				in := base(mailFrom(spf.Pass, "alice@example.com", "include:_spf.example.net", ""))
				in.SPFHelo = nil
				return in
			}(),
			ar: "mx.example.org;\n" +
				"\tiprev=pass policy.iprev=192.0.2.10;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com",
			rspf: "pass (mx.example.org: domain of alice@example.com designates\n" +
				"\t192.0.2.10 as permitted sender) client-ip=192.0.2.10;\n" +
				"\tenvelope-from=\"alice@example.com\"; helo=mail.example.com; identity=mailfrom;\n" +
				"\treceiver=mx.example.org; mechanism=\"include:_spf.example.net\"",
		},
		{
			name: "HELO an address literal",
			in: func() Input {
				in := base(nil)
				in.HELO = "[192.0.2.10]"
				in.Iprev.Result = "fail"
				in.SPFHelo = &spf.Result{Identity: spf.Helo, Verdict: spf.None, Problem: "HELO is not a domain name"}
				return in
			}(),
			ar: "mx.example.org;\n" +
				"\tiprev=fail policy.iprev=192.0.2.10;\n" +
				"\tspf=none reason=\"HELO is not a domain name\"",
			rspf: "none (mx.example.org: HELO is not a domain name)\n" +
				"\tclient-ip=192.0.2.10; identity=helo; receiver=mx.example.org;\n" +
				"\tproblem=\"HELO is not a domain name\"",
		},
		{
			name: "nothing checked (trusted client)",
			in:   Input{AuthServID: "mx.example.org", ClientIP: client4, HELO: "mail.example.com", Receiver: "mx.example.org"},
			ar:   "mx.example.org; none",
		},
		{
			name: "authserv-id defaults to the receiver",
			in: Input{ClientIP: client4, Receiver: "mx.example.org",
				Iprev: &IprevInfo{Result: "temperror", IP: client4}},
			ar: "mx.example.org;\n" +
				"\tiprev=temperror policy.iprev=192.0.2.10",
		},
		{
			name: "unknown iprev result left out",
			in: Input{AuthServID: "mx.example.org", ClientIP: client4,
				Iprev: &IprevInfo{Result: "pass; spf=pass", IP: client4}},
			ar: "mx.example.org; none",
		},
		{
			name: "hostile HELO and sender",
			in: func() Input {
				in := base(mailFrom(spf.Fail, "\"x;y\"@example.com", "-all", ""))
				in.HELO = "mail.example.com\r\nX-Evil: yes"
				in.SPFHelo = heloResult(spf.None, "mail.example.com", "", "HELO is not a domain name")
				return in
			}(),
			ar: "mx.example.org;\n" +
				"\tiprev=pass policy.iprev=192.0.2.10;\n" +
				"\tspf=fail smtp.mailfrom=example.com;\n" +
				"\tspf=none reason=\"HELO is not a domain name\"",
			rspf: "fail (mx.example.org: domain of example.com does not designate\n" +
				"\t192.0.2.10 as permitted sender) client-ip=192.0.2.10; identity=mailfrom;\n" +
				"\treceiver=mx.example.org; mechanism=-all",
		},
		{
			name: "sender needing quotes, hostile problem text",
			in: base(mailFrom(spf.PermError, "prvs=1234=bob@example.com", "",
				"DNS error looking up TXT x\"y;z\r\n(w).example.com: SERVFAIL")),
			ar: "mx.example.org;\n" +
				"\tiprev=pass policy.iprev=192.0.2.10;\n" +
				"\tspf=permerror\n" +
				"\treason=\"DNS error looking up TXT x?y?z??(w).example.com: SERVFAIL\"\n" +
				"\tsmtp.mailfrom=\"prvs=1234=bob@example.com\";\n" +
				"\tspf=pass smtp.helo=mail.example.com",
			rspf: "permerror (mx.example.org: permanent error in processing\n" +
				"\tdomain of prvs=1234=bob@example.com: DNS error looking up TXT\n" +
				"\tx?y?z???w?.example.com: SERVFAIL) client-ip=192.0.2.10;\n" +
				"\tenvelope-from=\"prvs=1234=bob@example.com\"; helo=mail.example.com;\n" +
				"\tidentity=mailfrom; receiver=mx.example.org;\n" +
				"\tproblem=\"DNS error looking up TXT x?y?z??(w).example.com: SERVFAIL\"",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ar := AuthenticationResults(tc.in)
			if ar != tc.ar {
				t.Errorf("Authentication-Results:\ngot  %q\nwant %q\n%s", ar, tc.ar, ar)
			}
			checkLines(t, AuthenticationResultsField, ar)
			if _, _, err := parseAR(ar); err != nil {
				t.Errorf("Authentication-Results does not follow RFC 8601: %v", err)
			}
			if _, _, err := authres.Parse(ar); err != nil {
				t.Errorf("authres.Parse: %v", err)
			}

			rspf, ok := ReceivedSPF(tc.in)
			if ok != (tc.rspf != "") || rspf != tc.rspf {
				t.Errorf("Received-SPF:\ngot  %q, %v\nwant %q\n%s", rspf, ok, tc.rspf, rspf)
			}
			if ok {
				checkLines(t, ReceivedSPFField, rspf)
				if _, _, _, err := parseReceivedSPF(rspf); err != nil {
					t.Errorf("Received-SPF does not follow RFC 7208 §9.1: %v", err)
				}
			}
		})
	}
}

// checkLines asserts the layout rules: printable ASCII, LF only as the
// "\n\t" fold, no line over 77 characters with the field name, none
// ending in whitespace.
func checkLines(t *testing.T, field, v string) {
	t.Helper()
	if err := layout(field, v, true); err != nil {
		t.Errorf("%s: %v\n%s", field, err, v)
	}
}

func layout(field, v string, short bool) error {
	lines := strings.Split(field+": "+v, Fold)
	for i, l := range lines {
		for j := 0; j < len(l); j++ {
			if l[j] < ' ' || l[j] >= 0x7f {
				return fmt.Errorf("line %d: byte %#x", i+1, l[j])
			}
		}
		limit := 997
		if short {
			limit = maxLine
		}
		if len(l)+btoi(i > 0) > limit {
			return fmt.Errorf("line %d is %d characters: %q", i+1, len(l)+btoi(i > 0), l)
		}
		if strings.HasSuffix(l, " ") || l == "" {
			return fmt.Errorf("line %d is empty or ends in a space: %q", i+1, l)
		}
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// The authserv-id comes from configuration; one that is not a token is
// still written so that it cannot break the header.
func TestAuthServIDNotAToken(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"mx.example.org", "mx.example.org; none"},
		{"mail gateway", `"mail?gateway"; none`},
		{"evil; spf=pass", `"evil??spf?pass"; none`},
		{"x\r\nX-Injected: 1", `"x??X-Injected??1"; none`},
	} {
		got := AuthenticationResults(Input{AuthServID: tc.id})
		if got != tc.want {
			t.Errorf("AuthServID %q: got %q, want %q", tc.id, got, tc.want)
		}
		if ValidAuthServID(tc.id) != (tc.id == "mx.example.org") {
			t.Errorf("ValidAuthServID(%q) = %v", tc.id, !(tc.id == "mx.example.org"))
		}
	}
}

// RFC 8601 §5: an incoming Authentication-Results claiming our authserv-id
// is forged and must go; others' stay.
func TestClaimsAuthServID(t *testing.T) {
	const id = "mx.example.org"
	tests := []struct {
		name, value string
		want        bool
	}{
		{"exact", "mx.example.org; spf=pass smtp.mailfrom=example.com", true},
		{"other case", "MX.Example.ORG; spf=pass smtp.mailfrom=example.com", true},
		{"no results", "mx.example.org; none", true},
		{"no space before ';'", "mx.example.org;spf=pass", true},
		{"version token", "mx.example.org 1; spf=pass smtp.mailfrom=example.com", true},
		{"unsupported version", "mx.example.org 2; spf=pass", true},
		{"trailing comment", "mx.example.org (forged by us); spf=pass", true},
		{"leading comment", "(hello) mx.example.org; spf=pass", true},
		{"nested comment", "(a (b) c)mx.example.org; spf=pass", true},
		{"quoted", `"mx.example.org"; spf=pass`, true},
		{"folded", "\r\n\tmx.example.org;\r\n\tspf=pass smtp.mailfrom=example.com", true},
		{"trailing dot", "mx.example.org.; spf=pass", true},
		{"garbage after our id", "mx.example.org;;; ===(((", true},
		{"unparsable, starts with our id", "mx.example.org\x00 spf=pass", true},
		{"only our id", "mx.example.org", true},
		{"another id", "mx.example.net; spf=pass smtp.mailfrom=example.com", false},
		{"our id as a prefix", "mx.example.org.evil.example; spf=pass", false},
		{"our id longer", "mx.example.orgx; spf=pass", false},
		{"our id later", "gw.example.net; spf=pass smtp.helo=mx.example.org", false},
		{"our id inside a comment", "(mx.example.org) gw.example.net; spf=pass", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClaimsAuthServID(tc.value, id); got != tc.want {
				t.Errorf("ClaimsAuthServID(%q, %q) = %v, want %v", tc.value, id, got, tc.want)
			}
		})
	}
	if ClaimsAuthServID("; spf=pass", "") {
		t.Error("an empty authserv-id claims nothing")
	}
	// What we write, we recognise.
	if v := AuthenticationResults(base(mailFrom(spf.Pass, "a@example.com", "a", ""))); !ClaimsAuthServID(v, id) {
		t.Errorf("our own header %q not recognised", v)
	}
}

// Untrusted property values go out bare only when RFC 8601 allows it,
// quoted when quoting makes them valid, as the sender's domain when the
// address cannot be written, or not at all.
func TestPropertyValues(t *testing.T) {
	tests := []struct{ sender, helo, want string }{
		{"alice@example.com", "mail.example.com", "smtp.mailfrom=alice@example.com smtp.helo=mail.example.com"},
		{"prvs=0123=alice@example.com", "mail_1.example.com", `smtp.mailfrom="prvs=0123=alice@example.com" smtp.helo=mail_1.example.com`},
		{"a/b+c@example.com", "a/b", "smtp.mailfrom=a/b+c@example.com"},
		{"@example.com", "[192.0.2.10]", "smtp.mailfrom=@example.com"},
		{"@", "x,y", ""},
		{"a..b@example.com", "mail.example.com.", "smtp.mailfrom=example.com smtp.helo=mail.example.com."},
		{`"john doe"@example.com`, "mail example.com", "smtp.mailfrom=example.com"},
		{"b\xfcro@example.com", "m\xe4il.example.com", "smtp.mailfrom=example.com"},
		{"alice@example.com\r\nX-Evil: 1", "mail.example.com\n", ""},
		{"alice@" + strings.Repeat("a", 250) + ".com", strings.Repeat("h", 255), "smtp.mailfrom=" + strings.Repeat("a", 250) + ".com"},
		{strings.Repeat("a", 250) + "@" + strings.Repeat("b", 252) + ".com", "h", "smtp.helo=h"},
	}
	for _, tc := range tests {
		t.Run(tc.sender, func(t *testing.T) {
			in := Input{AuthServID: "mx.example.org", HELO: tc.helo,
				SPFMailFrom: &spf.Result{Identity: spf.MailFrom, Sender: tc.sender, Verdict: spf.Pass},
				SPFHelo:     &spf.Result{Identity: spf.Helo, Verdict: spf.Pass}}
			got := AuthenticationResults(in)
			var props []string
			_, results, err := parseAR(got)
			if err != nil {
				t.Fatalf("%q: %v", got, err)
			}
			for _, r := range results {
				for _, k := range []string{"smtp.mailfrom", "smtp.helo"} {
					if _, ok := r.props[k]; ok {
						props = append(props, k+"="+propRaw(got, k))
					}
				}
			}
			if s := strings.Join(props, " "); s != tc.want {
				t.Errorf("got %q, want %q\n%q", s, tc.want, got)
			}
		})
	}
}

// propRaw returns property k as written in v, quotes and all.
func propRaw(v, k string) string {
	i := strings.Index(v, k+"=")
	rest := v[i+len(k)+1:]
	if end := strings.IndexAny(rest, " ;\n"); end >= 0 {
		rest = rest[:end]
	}
	return rest
}

func BenchmarkHeaders(b *testing.B) {
	in := base(mailFrom(spf.Pass, "alice@example.com", "ip4:192.0.2.0/24", ""))
	b.ReportAllocs()
	for b.Loop() {
		AuthenticationResults(in)
		ReceivedSPF(in)
	}
}
