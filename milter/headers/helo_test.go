package headers

import (
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"

	"github.com/vouch-mail/vouch/checks/spf"
)

// The HELO verdict rides on the iprev result as a comment (docs/headers.md
// says why): exact bytes, the grammar, and what go-msgauth's parser (as
// naive as the downstream filters that split at white space and '=')
// makes of it.
func TestHeloVerdict(t *testing.T) {
	pass := mailFrom(spf.Pass, "alice@example.com", "ip4:192.0.2.0/24", "")
	with := func(helo, verdict string) Input {
		in := base(pass)
		in.HELO, in.HeloResult = helo, verdict
		in.SPFHelo = nil // the HELO identity's own line is not what these test
		return in
	}
	longHelo := strings.Repeat("a", 40) + "." + strings.Repeat("b", 20) + ".example.com" // 73 octets
	tests := []struct {
		name    string
		in      Input
		ar      string
		comment string // what the grammar reader finds, "" for none
	}{
		{
			name: "match",
			in:   with("mail.example.com", "match"),
			ar: "mx.example.org;\n" +
				"\tiprev=pass (HELO mail.example.com: match) policy.iprev=192.0.2.10;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com",
			comment: "HELO mail.example.com: match",
		},
		{
			name: "mismatch, trailing dot kept",
			in:   with("Other.Example.NET.", "mismatch"),
			ar: "mx.example.org;\n" +
				"\tiprev=pass (HELO Other.Example.NET.: mismatch) policy.iprev=192.0.2.10;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com",
			comment: "HELO Other.Example.NET.: mismatch",
		},
		{
			name: "literal",
			in:   with("[192.0.2.10]", "literal"),
			ar: "mx.example.org;\n" +
				"\tiprev=pass (HELO [192.0.2.10]: literal) policy.iprev=192.0.2.10;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com",
			comment: "HELO [192.0.2.10]: literal",
		},
		{
			name: "IPv6 literal of another address",
			in: func() Input {
				in := with("[IPv6:2001:db8::99]", "literal-mismatch")
				in.ClientIP, in.Iprev.IP = client6, client6
				return in
			}(),
			ar: "mx.example.org;\n" +
				"\tiprev=pass (HELO [IPv6:2001:db8::99]: literal-mismatch)\n" +
				"\tpolicy.iprev=\"2001:db8::25\";\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com",
			comment: "HELO [IPv6:2001:db8::99]: literal-mismatch",
		},
		{
			name: "iprev fail, temperror",
			in: func() Input {
				in := with("mail.example.com", "temperror")
				in.Iprev.Result = "temperror"
				return in
			}(),
			ar: "mx.example.org;\n" +
				"\tiprev=temperror (HELO mail.example.com: temperror) policy.iprev=192.0.2.10;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com",
			comment: "HELO mail.example.com: temperror",
		},
		{
			name: "a HELO that would look like a property is left out",
			in:   with("smtp.mailfrom=paypal.com", "invalid"),
			ar: "mx.example.org;\n" +
				"\tiprev=pass (HELO: invalid) policy.iprev=192.0.2.10;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com",
			comment: "HELO: invalid",
		},
		{
			name: "a HELO that would end the comment and the field is left out",
			in:   with("x)\r\nX-Injected: (y", "invalid"),
			ar: "mx.example.org;\n" +
				"\tiprev=pass (HELO: invalid) policy.iprev=192.0.2.10;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com",
			comment: "HELO: invalid",
		},
		{
			name: "a bare word",
			in:   with("localhost", "invalid"),
			ar: "mx.example.org;\n" +
				"\tiprev=pass (HELO: invalid) policy.iprev=192.0.2.10;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com",
			comment: "HELO: invalid",
		},
		{
			name: "an address literal that is no address",
			in:   with("[192.0.2.300]", "invalid"),
			ar: "mx.example.org;\n" +
				"\tiprev=pass (HELO: invalid) policy.iprev=192.0.2.10;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com",
			comment: "HELO: invalid",
		},
		{
			name: "a long HELO folds inside the comment",
			in:   with(longHelo, "resolves"),
			ar: "mx.example.org;\n" +
				"\tiprev=pass (HELO\n" +
				"\t" + longHelo + ":\n" +
				"\tresolves) policy.iprev=192.0.2.10;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com",
			comment: "HELO " + longHelo + ": resolves",
		},
		{
			name: "with the HELO identity's SPF result",
			in: func() Input {
				in := base(pass)
				in.HeloResult = "match"
				return in
			}(),
			ar: "mx.example.org;\n" +
				"\tiprev=pass (HELO mail.example.com: match) policy.iprev=192.0.2.10;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com;\n" +
				"\tspf=pass smtp.helo=mail.example.com",
			comment: "HELO mail.example.com: match",
		},
		{
			name: "an unknown verdict is left out",
			in:   with("mail.example.com", "pass; spf=pass"),
			ar: "mx.example.org;\n" +
				"\tiprev=pass policy.iprev=192.0.2.10;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com",
		},
		{
			name: "no verdict without iprev",
			in: func() Input {
				in := with("mail.example.com", "match")
				in.Iprev = nil
				return in
			}(),
			ar: "mx.example.org;\n" +
				"\tspf=pass smtp.mailfrom=alice@example.com",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ar := AuthenticationResults(tc.in)
			if ar != tc.ar {
				t.Fatalf("Authentication-Results:\ngot  %q\nwant %q\n%s", ar, tc.ar, ar)
			}
			checkLines(t, AuthenticationResultsField, ar)
			_, results, err := parseAR(ar)
			if err != nil {
				t.Fatalf("not RFC 8601: %v", err)
			}
			var comments []string
			for _, r := range results {
				for _, c := range r.comments {
					comments = append(comments, strings.Join(strings.Fields(c), " "))
				}
			}
			if got := strings.Join(comments, "|"); got != tc.comment {
				t.Errorf("comments %q, want %q", got, tc.comment)
			}
			_, ares, err := authres.Parse(ar)
			if err != nil {
				t.Fatalf("authres.Parse: %v", err)
			}
			for _, r := range ares {
				if ip, ok := r.(*authres.IPRevResult); ok && ip.IP != "" && strings.Trim(ip.IP, `"`) != tc.in.Iprev.IP.String() {
					t.Errorf("authres.Parse: policy.iprev=%q", ip.IP)
				}
				if s, ok := r.(*authres.SPFResult); ok && s.From != "" && s.From != "alice@example.com" {
					t.Errorf("authres.Parse: smtp.mailfrom=%q", s.From)
				}
			}
		})
	}
}
