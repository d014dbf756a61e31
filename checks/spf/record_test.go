package spf

import (
	"errors"
	"net"
	"strings"
	"testing"
)

// TestParseRecord: the grammar of RFC 7208 section 4.6.1, §5, §6, §7.1, §12,
// term by term; the reason a user reads is part of the contract.
func TestParseRecord(t *testing.T) {
	valid := []string{
		"v=spf1",
		"v=spf1 ",
		"V=SPF1 -ALL",
		"v=spf1  ip4:192.0.2.0/24   ~all  ",
		"v=spf1 include:_spf.google.com ~all",
		"v=spf1 ip6:2001:db8::/32 ip6:::ffff:192.0.2.0/120 ip6:::1.1.1.1/0 ip4:0.0.0.0/0 -all",
		"v=spf1 a mx ptr a:mail.example.com/24 mx:example.com//64 a/24//64 a//128 mx/0",
		"v=spf1 exists:%{i}._spf.%{d} exists:%{l1r+-}.%{o}. -all",
		"v=spf1 a:%{d} a:%{D2r.-+,/_=} a:x.%% a:x.%_ a:x.%- a:foo:bar/baz.example.com",
		"v=spf1 redirect=_spf.example.com exp=explain.%{d}",
		"v=spf1 foo=bar moo.cow-far_out=man:dog/cat foo=%{c}%{r}%{t} -all",
		"v=spf1 a:foo.example.xn--zckzah a:foo.1-2 a:example.com. -all",
		"v=spf1 a:%{d}. -all",              // a trailing dot after a macro: see checkDomainSpec
		"v=spf1 a:mail.example...com -all", // empty label: valid domain-spec, RFC 7208 leaves it open
		"v=spf1 include:%{ir}.%{v}.%{h}.%{s}.%{p}.example.com",
	}
	for _, rec := range valid {
		t.Run(rec, func(t *testing.T) {
			if _, err := ParseRecord(rec); err != nil {
				t.Errorf("ParseRecord(%q): %v", rec, err)
			}
		})
	}
	invalid := []struct{ record, err string }{
		{"v=spf1 ip4:192.0.2.1/032 -all", `term 'ip4:192.0.2.1/032': invalid CIDR length /032`},
		{"v=spf1 ip4:192.0.2.1/33", `term 'ip4:192.0.2.1/33': invalid CIDR length /33`},
		{"v=spf1 ip4:2001:db8::1 -all", `term 'ip4:2001:db8::1': ip4 needs an IPv4 address (RFC 7208 section 5.6)`},
		{"v=spf1 ip6:192.0.2.1 -all", `term 'ip6:192.0.2.1': ip6 needs an IPv6 address (RFC 7208 section 5.6)`},
		{"v=spf1 ip4:192.0.2.01", `term 'ip4:192.0.2.01': not an IP address`},
		{"v=spf1 ip6:fe80::1%eth0", `term 'ip6:fe80::1%eth0': not an IP address`},
		{"v=spf1 ip4:1.2.3.4:8080", `term 'ip4:1.2.3.4:8080': not an IP address`},
		{"v=spf1 ip6", `term 'ip6': ip6 needs ':' and an address`},
		{"v=spf1 a:host..", `term 'a:host..': invalid top label '' (RFC 7208 section 7.1)`},
		{"v=spf1 a:host.123", `term 'a:host.123': invalid top label '123' (RFC 7208 section 7.1)`},
		{"v=spf1 a:museum", `term 'a:museum': domain has no '.' before its top label (RFC 7208 section 7.1)`},
		{"v=spf1 a:example.-com", `term 'a:example.-com': invalid top label '-com' (RFC 7208 section 7.1)`},
		{"v=spf1 a:example.com:8080", `term 'a:example.com:8080': invalid top label 'com:8080' (RFC 7208 section 7.1)`},
		{"v=spf1 a:", `term 'a:': empty domain`},
		{"v=spf1 a/24/64", `term 'a/24/64': unexpected '/24' after a`},
		{"v=spf1 a//129", `term 'a//129': invalid IPv6 CIDR length //129`},
		{"v=spf1 mx/33", `term 'mx/33': invalid IPv4 CIDR length /33`},
		{"v=spf1 -all:foo", `term '-all:foo': all takes no argument`},
		{"v=spf1 include:", `term 'include:': empty domain`},
		{"v=spf1 include", `term 'include': include needs ':' and a domain`},
		{"v=spf1 exists:mail.example.com/24", `term 'exists:mail.example.com/24': invalid top label 'com/24' (RFC 7208 section 7.1)`},
		{"v=spf1 ptr/24", `term 'ptr/24': ptr takes no CIDR length`},
		{"v=spf1 frobnicate", `term 'frobnicate': unknown mechanism`},
		{"v=spf1 --all", `term '--all': unknown mechanism`},
		{"v=spf1 redirect:example.com", `term 'redirect:example.com': unknown mechanism`},
		{"v=spf1 redirect=", `term 'redirect=': empty domain`},
		{"v=spf1 redirect=a.example.com redirect=b.example.com", `term 'redirect=b.example.com': redirect appears twice (RFC 7208 section 6)`},
		{"v=spf1 -all exp=a.example.com EXP=b.example.com", `term 'EXP=b.example.com': exp appears twice (RFC 7208 section 6)`},
		{"v=spf1 -all exp=", `term 'exp=': empty domain`},
		{"v=spf1 -all exp=%{r}.example.com", `term 'exp=%{r}.example.com': invalid macro '%{r}': letter allowed only in explanation text (RFC 7208 section 7.1)`},
		{"v=spf1 foo=%{x} ip4:192.0.2.1 -all", `term 'foo=%{x}': invalid macro '%{x}': unknown macro letter (RFC 7208 section 7.1)`},
		{"v=spf1 a:%{d0}.example.com", `term 'a:%{d0}.example.com': invalid macro '%{d0}': the digit transformer must be a nonzero number (RFC 7208 section 7.1)`},
		{"v=spf1 a:%{d}%", `term 'a:%{d}%': '%' at the end (RFC 7208 section 7.1)`},
		{"v=spf1 a:%{d", `term 'a:%{d': unterminated macro (RFC 7208 section 7.1)`},
		{"v=spf1 a:%x.example.com", `term 'a:%x.example.com': invalid macro '%x' (RFC 7208 section 7.1)`},
		{"v=spf1 a:%{d;}.example.com", `term 'a:%{d;}.example.com': invalid macro '%{d;}': invalid delimiter ';' (RFC 7208 section 7.1)`},
		{"v=spf1 a:foo.example.com\x00", `term 'a:foo.example.com?': control character in the record`},
		{"v=spf1 a:m\xc3\xa4il.example.com -all", `term 'a:m??il.example.com': byte outside 7-bit ASCII in the record`},
		{"v=spf1\t-all", `not an SPF record (no v=spf1)`},
		{"v=spf1 ip4:192.0.2.1\t-all", `term 'ip4:192.0.2.1?-all': control character in the record`},
		{"v=spf10", `not an SPF record (no v=spf1)`},
	}
	for _, tc := range invalid {
		t.Run(tc.record, func(t *testing.T) {
			_, err := ParseRecord(tc.record)
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseRecord(%q) = %v\nwant %s", tc.record, err, tc.err)
			}
		})
	}
}

func TestParseTermFields(t *testing.T) {
	rec, err := ParseRecord("v=spf1 ~a:mail.example.com/24//64 -MX//48 ?ip4:192.0.2.7/24 redirect=%{d}.x.example exp=e.example.com")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(rec.Terms))
	for i, tm := range rec.Terms {
		got[i] = strings.Join([]string{qual(tm.Qualifier), tm.Name, tm.Domain, tm.Prefix.String(), itoa(tm.CIDR4), itoa(tm.CIDR6)}, "|")
	}
	want := []string{
		"~|a|mail.example.com|invalid Prefix|24|64",
		"-|mx||invalid Prefix|-1|48",
		"?|ip4||192.0.2.0/24|-1|-1",
		"0|redirect|%{d}.x.example|invalid Prefix|-1|-1",
		"0|exp|e.example.com|invalid Prefix|-1|-1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("terms\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if rec.Redirect != &rec.Terms[3] || rec.Exp != &rec.Terms[4] {
		t.Error("Redirect/Exp do not point at their terms")
	}
}

func itoa(n int) string {
	if n < 0 {
		return "-1"
	}
	return strings.TrimLeft(string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)}), "0")
}

// TestExpand: RFC 7208 section 7.4's own examples, sender strong-bad@email.example.com
// from 192.0.2.3 / 2001:db8::cb01.
func TestExpand(t *testing.T) {
	v4 := &macroEnv{sender: "strong-bad@email.example.com", helo: "mx.example.org", ip: net.ParseIP("192.0.2.3").To4()}
	v6 := &macroEnv{sender: "strong-bad@email.example.com", ip: net.ParseIP("2001:db8::cb01")}
	const d = "email.example.com"
	tests := []struct {
		env       *macroEnv
		spec, out string
	}{
		{v4, "%{s}", "strong-bad@email.example.com"},
		{v4, "%{o}", "email.example.com"},
		{v4, "%{d}", "email.example.com"},
		{v4, "%{d4}", "email.example.com"},
		{v4, "%{d3}", "email.example.com"},
		{v4, "%{d2}", "example.com"},
		{v4, "%{d1}", "com"},
		{v4, "%{dr}", "com.example.email"},
		{v4, "%{d2r}", "example.email"},
		{v4, "%{l}", "strong-bad"},
		{v4, "%{l-}", "strong.bad"},
		{v4, "%{lr}", "strong-bad"},
		{v4, "%{lr-}", "bad.strong"},
		{v4, "%{l1r-}", "strong"},
		{v4, "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"},
		{v4, "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"},
		{v4, "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
		{v4, "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"},
		{v4, "%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"},
		{v4, "%{h}.%%.%_.%-", "mx.example.org.%. .%20"},
		{v4, "%{p}", "unknown"},
		{v6, "%{ir}.%{v}._spf.%{d2}", "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"},
	}
	for _, tc := range tests {
		if got := tc.env.expand(tc.spec, d); got != tc.out {
			t.Errorf("expand(%q) = %q, want %q", tc.spec, got, tc.out)
		}
	}
}

// TestTruncateName: RFC 7208 section 7.3, labels removed from the left until the
// name fits 253 octets.
func TestTruncateName(t *testing.T) {
	long := strings.Repeat("abcdefghi.", 30) + "example.com" // 311 octets
	got := truncateName(long)
	if len(got) > 253 || !strings.HasSuffix(long, "."+got) || len(got) < 253-10 {
		t.Errorf("truncateName: %d octets %q", len(got), got)
	}
	if got := truncateName("short.example.com"); got != "short.example.com" {
		t.Errorf("short name changed: %q", got)
	}
}

// FuzzParseRecord: the record is untrusted DNS text. What the parser
// accepts holds only the grammar's bytes, and its terms are the record's
// own fields.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"v=spf1 include:_spf.google.com ~all",
		"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx ptr -all",
		"v=spf1 redirect=_spf.example.com",
		"v=spf1 -include:%{d}.x.test redirect=%{o}",
		"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all",
		"v=spf1 a:foo:bar/baz.example.com/24//64",
		"v=spf1 +include: include:\x00\xff redirect=a redirect=b",
		"v=spf1\tinclude:a.test\r\ninclude:b.test",
		"v=spf1 foo=%{x} exp=%{r}.example.com",
		"v=spf1 ip4:192.0.2.1/032 ip6:::ffff:1.2.3.4/120",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, record string) {
		rec, err := ParseRecord(record)
		if err != nil {
			var se *SyntaxError
			if !asSyntax(err, &se) || se.Reason == "" {
				t.Fatalf("error %v is not a SyntaxError with a reason", err)
			}
			for _, c := range []byte(err.Error()) {
				if c < 0x20 || c > 0x7e {
					t.Fatalf("error %q holds byte %#x", err, c)
				}
			}
			return
		}
		if !IsRecord(record) {
			t.Fatalf("accepted %q without v=spf1", record)
		}
		redirects := 0
		for _, tm := range rec.Terms {
			if tm.Text == "" || !strings.Contains(record, tm.Text) {
				t.Fatalf("term %q not in %q", tm.Text, record)
			}
			for _, c := range []byte(tm.Text) {
				if c <= 0x20 || c > 0x7e {
					t.Fatalf("term %q holds byte %#x", tm.Text, c)
				}
			}
			if tm.Modifier && tm.Name == "redirect" {
				redirects++
			}
			if tm.Name == "ip4" && !tm.Modifier && !tm.Prefix.Addr().Is4() || tm.Name == "ip6" && !tm.Modifier && !tm.Prefix.Addr().Is6() {
				t.Fatalf("%s term %q holds %v", tm.Name, tm.Text, tm.Prefix)
			}
		}
		if redirects > 1 {
			t.Fatalf("%d redirects accepted in %q", redirects, record)
		}
		// Expansion of what was accepted never panics, and truncation
		// bounds every name.
		env := &macroEnv{sender: "a@b.example", helo: "h.example", ip: net.ParseIP("192.0.2.1").To4()}
		for _, tm := range rec.Terms {
			if n := truncateName(env.expand(tm.Domain, "d.example")); len(n) > 253 && strings.Contains(n, ".") {
				t.Fatalf("name of %d octets after truncation", len(n))
			}
		}
	})
}

func asSyntax(err error, se **SyntaxError) bool { return errors.As(err, se) }

func qual(q byte) string {
	if q == 0 {
		return "0"
	}
	return string(q)
}
