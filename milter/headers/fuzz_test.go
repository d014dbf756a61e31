package headers

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"

	"github.com/vouch-mail/vouch/checks/spf"
)

var allVerdicts = []spf.Verdict{spf.Pass, spf.Fail, spf.SoftFail, spf.Neutral, spf.None, spf.TempError, spf.PermError}

// hostile are the client and DNS strings the seeds start from.
var hostile = []string{
	"mail.example.com",
	"",
	"[192.0.2.10]",
	"a@b.example.com",
	"\"john doe\"@example.com",
	"x\r\nX-Injected: yes",
	"x\nspf=pass",
	"a; spf=pass smtp.mailfrom=paypal.com",
	"(comment) \"quoted\" \\back\\slash",
	"100%% %s %d",
	"caf\xc3\xa9.example.com",
	"\xff\xfe\x00\x7f",
	strings.Repeat("a", 1000),
	strings.Repeat("a.", 600) + "com",
	strings.Repeat("x@", 300),
	"ip4:192.0.2.0/24",
	"exists:%{i}._spf.example.com",
}

// heloVerdicts are checks/helo's verdicts; fuzzInput also tries a
// hostile string and none.
var heloVerdicts = []string{"match", "resolves", "literal", "mismatch", "invalid", "literal-mismatch", "temperror"}

func fuzzHeloResult(problem string, v uint8) string {
	switch k := int(v) % (len(heloVerdicts) + 2); {
	case k < len(heloVerdicts):
		return heloVerdicts[k]
	case k == len(heloVerdicts):
		return problem
	}
	return ""
}

func fuzzInput(authServID, helo, sender, mech, problem string, v uint8, six bool) Input {
	ip := client4
	if six {
		ip = client6
	}
	return Input{
		HeloResult:  fuzzHeloResult(problem, v),
		AuthServID:  authServID,
		ClientIP:    ip,
		HELO:        helo,
		Iprev:       &IprevInfo{Result: "fail", IP: ip},
		SPFMailFrom: &spf.Result{Identity: spf.MailFrom, Sender: sender, Verdict: allVerdicts[int(v)%len(allVerdicts)], Mechanism: mech, Problem: problem},
		SPFHelo:     &spf.Result{Identity: spf.Helo, Sender: "postmaster@" + helo, Domain: helo, Verdict: allVerdicts[int(v/8)%len(allVerdicts)], Mechanism: mech, Problem: problem},
		Receiver:    "mx.example.org",
	}
}

func addSeeds(f *testing.F) {
	for i, s := range hostile {
		f.Add("mx.example.org", s, hostile[(i+3)%len(hostile)], hostile[(i+5)%len(hostile)], hostile[(i+7)%len(hostile)], uint8(i), i%2 == 0)
	}
	f.Add("mx example; spf=pass", "mail.example.com", "a@example.com", "-all", "", uint8(0), false)
	// Bare values authres would leave unquoted although invalid.
	f.Add("0", "a/b", "@", "0", "0", uint8(0), true)
	f.Add("mx.example.org", "x@y", "a..b@example.com", "0", "0", uint8(9), false)
}

// FuzzAuthenticationResults: whatever the client and DNS sent, the value
// is printable ASCII folded only with "\n\t", no line reaches 998 octets,
// it follows RFC 8601 (and authres.Parse reads it), and it holds exactly
// the three results that went in, with nothing injected.
func FuzzAuthenticationResults(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, id, helo, sender, mech, problem string, v uint8, six bool) {
		in := fuzzInput(id, helo, sender, mech, problem, v, six)
		out := AuthenticationResults(in)
		if err := layout(AuthenticationResultsField, out, false); err != nil {
			t.Fatalf("%v\n%q", err, out)
		}
		gotID, results, err := parseAR(out)
		if err != nil {
			t.Fatalf("not RFC 8601: %v\n%q", err, out)
		}
		wantID := id
		if id == "" {
			wantID = "mx.example.org"
		} else if !ValidAuthServID(id) {
			wantID = sanitiseID(id)
		}
		if gotID != wantID {
			t.Fatalf("authserv-id %q, want %q", gotID, wantID)
		}
		if len(results) != 3 || results[0].method != "iprev" || results[1].method != "spf" || results[2].method != "spf" {
			t.Fatalf("results %+v, want iprev, spf, spf\n%q", results, out)
		}
		if results[1].result != string(in.SPFMailFrom.Verdict) || results[2].result != string(in.SPFHelo.Verdict) {
			t.Fatalf("results %+v, want spf=%s and spf=%s", results, in.SPFMailFrom.Verdict, in.SPFHelo.Verdict)
		}
		if mf, ok := results[1].props["smtp.mailfrom"]; ok && mf != sender && !strings.HasSuffix(sender, "@"+mf) {
			t.Fatalf("smtp.mailfrom=%q from sender %q", mf, sender)
		}
		if h, ok := results[2].props["smtp.helo"]; ok && h != helo {
			t.Fatalf("smtp.helo=%q from HELO %q", h, helo)
		}
		// The HELO verdict: one comment on iprev for a real verdict, with
		// the client's HELO exactly as sent or not at all; none otherwise.
		var comments []string
		for _, c := range results[0].comments {
			comments = append(comments, strings.Join(strings.Fields(c), " "))
		}
		if slices.Contains(heloVerdicts, in.HeloResult) {
			named, anonymous := "HELO "+helo+": "+in.HeloResult, "HELO: "+in.HeloResult
			if len(comments) != 1 || (comments[0] != named && comments[0] != anonymous) {
				t.Fatalf("iprev comments %q for HELO %q, verdict %q\n%q", comments, helo, in.HeloResult, out)
			}
		} else if len(comments) != 0 {
			t.Fatalf("iprev comments %q for verdict %q", comments, in.HeloResult)
		}
		for _, r := range results[1:] {
			if len(r.comments) != 0 {
				t.Fatalf("comments %q on %s", r.comments, r.method)
			}
		}
		aid, ares, err := authres.Parse(out)
		if err != nil || len(ares) != 3 || strings.Trim(aid, `"`) != wantID {
			t.Fatalf("authres.Parse: %q, %d results, %v\n%q", aid, len(ares), err, out)
		}
		if id != "" && ValidAuthServID(id) && !ClaimsAuthServID(out, id) {
			t.Fatalf("our own header not recognised as ours: %q", out)
		}
	})
}

// FuzzReceivedSPF: the same guarantees for Received-SPF (RFC 7208 §9.1).
func FuzzReceivedSPF(f *testing.F) {
	addSeeds(f)
	allowed := map[string]bool{"client-ip": true, "envelope-from": true, "helo": true, "identity": true, "receiver": true, "mechanism": true, "problem": true}
	f.Fuzz(func(t *testing.T, receiver, helo, sender, mech, problem string, v uint8, six bool) {
		in := fuzzInput("mx.example.org", helo, sender, mech, problem, v, six)
		in.Receiver = receiver
		if v%3 == 0 {
			in.SPFMailFrom = nil // the null sender: HELO decides
		}
		out, ok := ReceivedSPF(in)
		if !ok {
			t.Fatal("no Received-SPF with a result")
		}
		if err := layout(ReceivedSPFField, out, false); err != nil {
			t.Fatalf("%v\n%q", err, out)
		}
		result, _, pairs, err := parseReceivedSPF(out)
		if err != nil {
			t.Fatalf("not RFC 7208 §9.1: %v\n%q", err, out)
		}
		decided := in.SPFMailFrom
		if decided == nil {
			decided = in.SPFHelo
		}
		if result != string(decided.Verdict) {
			t.Fatalf("result %q, want %q", result, decided.Verdict)
		}
		for k := range pairs {
			if !allowed[k] {
				t.Fatalf("unexpected key %q in %q", k, out)
			}
		}
		if pairs["identity"] != string(decided.Identity) || net.ParseIP(pairs["client-ip"]) == nil {
			t.Fatalf("identity %q client-ip %q in %q", pairs["identity"], pairs["client-ip"], out)
		}
		if ef, ok := pairs["envelope-from"]; ok && ef != decided.Sender {
			t.Fatalf("envelope-from=%q from %q", ef, decided.Sender)
		}
		if h, ok := pairs["helo"]; ok && h != helo {
			t.Fatalf("helo=%q from %q", h, helo)
		}
	})
}

// FuzzClaimsAuthServID: never panics, ignores case, recognises every
// header carrying the id first and none carrying a longer one.
func FuzzClaimsAuthServID(f *testing.F) {
	for _, s := range []struct{ value, id string }{
		{"mx.example.org; spf=pass", "mx.example.org"},
		{"MX.EXAMPLE.ORG 1; none", "mx.example.org"},
		{"(c (nested) \\) x) mx.example.org; none", "mx.example.org"},
		{"\"mx.example.org\"; none", "mx.example.org"},
		{"\"unterminated", "unterminated"},
		{"((((", "x"},
		{"mx.example.org\xff; spf=pass", "mx.example.org"},
		{"", ""},
		{"(\\", "0"}, // a quoted-pair at the very end
		{".; none", "."},
	} {
		f.Add(s.value, s.id)
	}
	f.Fuzz(func(t *testing.T, value, id string) {
		got := ClaimsAuthServID(value, id)
		if got != ClaimsAuthServID(value, swapCase(id)) {
			t.Fatalf("case matters: %q vs %q in %q", id, swapCase(id), value)
		}
		if got && id == "" {
			t.Fatal("the empty id claimed")
		}
		if !ValidAuthServID(id) {
			return
		}
		for _, v := range []string{id + "; none", swapCase(id) + " 1; spf=pass", "(x) " + id + " (y); none", "\r\n\t" + id + ";\r\n\tnone"} {
			if !ClaimsAuthServID(v, id) {
				t.Fatalf("%q not recognised as claiming %q", v, id)
			}
		}
		if longer := strings.TrimSuffix(id, ".") + "x"; ClaimsAuthServID(longer+"; none", id) {
			t.Fatalf("%q taken for %q", longer, id)
		}
	})
}

func swapCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}
