package helo

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	// The longest name (253 octets) and one octet more, all labels valid.
	name253 := strings.Join([]string{label63, label63, label63, strings.Repeat("c", 61)}, ".")
	name254 := strings.Join([]string{label63, label63, label63, strings.Repeat("c", 62)}, ".")
	if len(name253) != 253 || len(name254) != 254 {
		t.Fatalf("test names are %d and %d octets", len(name253), len(name254))
	}
	tests := []struct {
		in      string
		kind    Kind
		name    string
		literal string
	}{
		// FQDNs
		{"mail.example.com", FQDN, "mail.example.com", ""},
		{"MAIL.Example.COM", FQDN, "mail.example.com", ""},
		{"mail.example.com.", FQDN, "mail.example.com", ""},
		{"MX1.EXAMPLE.COM.", FQDN, "mx1.example.com", ""},
		{"a.b", FQDN, "a.b", ""},
		{"xn--bcher-kva.example", FQDN, "xn--bcher-kva.example", ""},
		{"mail.xn--p1ai", FQDN, "mail.xn--p1ai", ""},
		{"1-2-3-4.dsl.example.net", FQDN, "1-2-3-4.dsl.example.net", ""},
		{"192.0.2.1.example", FQDN, "192.0.2.1.example", ""},
		{"123.com", FQDN, "123.com", ""},
		{"example.c0m", FQDN, "example.c0m", ""},
		{label63 + ".example", FQDN, label63 + ".example", ""},
		{name253, FQDN, name253, ""},
		{name253 + ".", FQDN, name253, ""},
		// Not FQDNs
		{"", Bad, "", ""},
		{".", Bad, "", ""},
		{"..", Bad, "", ""},
		{"localhost", Bad, "", ""},
		{"localhost.", Bad, "", ""},
		{"mail", Bad, "", ""},
		{".example.com", Bad, "", ""},
		{"mail..example.com", Bad, "", ""},
		{"mail.example.com..", Bad, "", ""},
		{"-mail.example.com", Bad, "", ""},
		{"mail-.example.com", Bad, "", ""},
		{"mail.example.-com", Bad, "", ""},
		{"my_host.example.com", Bad, "", ""},
		{"mail.example.com ", Bad, "", ""},
		{" mail.example.com", Bad, "", ""},
		{"mail example.com", Bad, "", ""},
		{"mail.example.com\r\nRCPT TO:<x@y>", Bad, "", ""},
		{"mail.example.com\n", Bad, "", ""},
		{"100%.example.com", Bad, "", ""},
		{"mail.example.com;", Bad, "", ""},
		{`"mail.example.com"`, Bad, "", ""},
		{"bücher.example", Bad, "", ""},
		{"mail.example.com\x00", Bad, "", ""},
		{"mail\xff.example.com", Bad, "", ""},
		{"192.0.2.1", Bad, "", ""},
		{"example.123", Bad, "", ""},
		{strings.Repeat("a", 64) + ".example", Bad, "", ""},
		{name254, Bad, "", ""},
		{name254 + ".", Bad, "", ""},
		{strings.Repeat("a.", 600) + "com", Bad, "", ""},
		{"mail.example.com/24", Bad, "", ""},
		{"*.example.com", Bad, "", ""},
		// Address literals
		{"[192.0.2.1]", AddressLiteral, "", "192.0.2.1"},
		{"[0.0.0.0]", AddressLiteral, "", "0.0.0.0"},
		{"[255.255.255.255]", AddressLiteral, "", "255.255.255.255"},
		{"[192.000.002.001]", AddressLiteral, "", "192.0.2.1"},
		{"[IPv6:2001:db8::1]", AddressLiteral, "", "2001:db8::1"},
		{"[ipv6:2001:DB8::1]", AddressLiteral, "", "2001:db8::1"},
		{"[IPv6:::1]", AddressLiteral, "", "::1"},
		{"[IPv6:2001:db8:0:0:0:0:0:1]", AddressLiteral, "", "2001:db8::1"},
		{"[IPv6:::ffff:192.0.2.1]", AddressLiteral, "", "192.0.2.1"},
		{"[IPv6:2001:db8::192.0.2.1]", AddressLiteral, "", "2001:db8::c000:201"},
		// Not address literals
		{"[]", Bad, "", ""},
		{"[", Bad, "", ""},
		{"]", Bad, "", ""},
		{"[192.0.2.256]", Bad, "", ""},
		{"[192.0.2]", Bad, "", ""},
		{"[192.0.2.1.5]", Bad, "", ""},
		{"[192.0.2.1", Bad, "", ""},
		{"192.0.2.1]", Bad, "", ""},
		{"[192.0.2.0001]", Bad, "", ""},
		{"[192.0.2.-1]", Bad, "", ""},
		{"[192.0.2.+1]", Bad, "", ""},
		{"[ 192.0.2.1]", Bad, "", ""},
		{"[192.0.2.1 ]", Bad, "", ""},
		{"[2001:db8::1]", Bad, "", ""},
		{"[IPv6:192.0.2.1]", Bad, "", ""},
		{"[IPv6:fe80::1%eth0]", Bad, "", ""},
		{"[IPv6:2001:db8::1::2]", Bad, "", ""},
		{"[IPv6:]", Bad, "", ""},
		{"[IPv6 :2001:db8::1]", Bad, "", ""},
		{"[x-tag:something]", Bad, "", ""},
		{"[mail.example.com]", Bad, "", ""},
		{"[[192.0.2.1]]", Bad, "", ""},
		{"[192.0.2.1]\r\n", Bad, "", ""},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%.60q", tc.in), func(t *testing.T) {
			kind, name, lit := Parse(tc.in)
			if kind != tc.kind || name != tc.name {
				t.Fatalf("Parse = %v, %q, %v; want %v, %q, %s", kind, name, lit, tc.kind, tc.name, tc.literal)
			}
			switch {
			case tc.literal == "" && lit != nil:
				t.Errorf("literal = %v, want nil", lit)
			case tc.literal != "" && !lit.Equal(net.ParseIP(tc.literal)):
				t.Errorf("literal = %v, want %s", lit, tc.literal)
			case tc.literal != "" && strings.Contains(tc.literal, ".") && !strings.Contains(tc.in, "IPv6") && len(lit) != net.IPv4len:
				t.Errorf("IPv4 literal has %d bytes, want 4", len(lit))
			}
		})
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Bad: "bad", FQDN: "fqdn", AddressLiteral: "address-literal", Kind(42): "bad"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

// FuzzParse: HELO arguments are attacker-supplied. Parse must not panic,
// and what it accepts must be safe to put in a header or a log line and
// stable under re-parsing.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"mail.example.com", "MAIL.EXAMPLE.COM.", "[192.0.2.1]", "[IPv6:2001:db8::1]",
		"localhost", "192.0.2.1", "[192.0.2.256]", "a..b", "x\r\ny.example", "100%.example.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		kind, name, lit := Parse(in)
		switch kind {
		case Bad:
			if name != "" || lit != nil {
				t.Fatalf("Bad with name %q, literal %v", name, lit)
			}
			return
		case FQDN:
			if lit != nil {
				t.Fatalf("FQDN with literal %v", lit)
			}
			if len(name) > maxName || !strings.Contains(name, ".") {
				t.Fatalf("accepted %q (%d octets)", name, len(name))
			}
			for i := 0; i < len(name); i++ {
				c := name[i]
				if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
					t.Fatalf("accepted name %q holds byte %q", name, c)
				}
			}
			if k2, n2, _ := Parse(name); k2 != FQDN || n2 != name {
				t.Fatalf("%q re-parses to %v %q", name, k2, n2)
			}
			if k2, n2, _ := Parse(strings.ToUpper(name) + "."); k2 != FQDN || n2 != name {
				t.Fatalf("%q upper-cased with a dot parses to %v %q", name, k2, n2)
			}
			if !strings.EqualFold(strings.TrimSuffix(in, "."), name) {
				t.Fatalf("Parse(%q) = %q: not the input normalised", in, name)
			}
		case AddressLiteral:
			if name != "" || lit == nil {
				t.Fatalf("literal with name %q, literal %v", name, lit)
			}
			re := "[" + lit.String() + "]"
			if len(lit) == net.IPv6len {
				// netip keeps an IPv4-mapped address in IPv6 notation.
				re = "[IPv6:" + netip.AddrFrom16([16]byte(lit)).String() + "]"
			}
			if k2, _, l2 := Parse(re); k2 != AddressLiteral || !l2.Equal(lit) {
				t.Fatalf("%q (from %q) re-parses to %v %v", re, in, k2, l2)
			}
		default:
			t.Fatalf("unknown kind %d", kind)
		}
		// Whatever was accepted, the raw input held nothing dangerous.
		for i := 0; i < len(in); i++ {
			if c := in[i]; c <= ' ' || c >= 0x7f || c == '%' || c == ';' || c == '"' || c == '\\' {
				t.Fatalf("accepted %q, which holds byte %q", in, c)
			}
		}
	})
}
