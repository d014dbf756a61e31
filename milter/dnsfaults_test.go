package milter_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter/answer"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/policy"
)

// faultZone is the world of the DNS-fault tests. The client 127.0.0.20
// has the PTR ptr.fault.test (confirmed), says HELO helo.fault.test (whose
// A holds the client: a distinct name, so that its lookup can fail on its
// own) and sends from a@fault.test, whose SPF lists the client.
const faultZone = `
$ORIGIN fault.test.
@        SOA   ns.test. hostmaster.test. 1 3600 600 86400 60
@        TXT   "v=spf1 ip4:127.0.0.20 -all"
ptr      A     127.0.0.20
helo     A     127.0.0.20
helo     TXT   "v=spf1 a -all"
20.0.0.127.in-addr.arpa. PTR ptr.fault.test.
inc      TXT   "v=spf1 include:target.fault.test -all"
target   TXT   "v=spf1 ip4:127.0.0.20 -all"
loop1    CNAME loop2
loop2    CNAME loop1
; RFC 7208 §4.6.4: 10 DNS-querying terms, 2 void lookups.
n        A     192.0.2.1
lookups10 TXT  "v=spf1 a:n.fault.test a:n.fault.test a:n.fault.test a:n.fault.test a:n.fault.test" " a:n.fault.test a:n.fault.test a:n.fault.test a:n.fault.test a:n.fault.test ip4:127.0.0.20 -all"
lookups11 TXT  "v=spf1 a:n.fault.test a:n.fault.test a:n.fault.test a:n.fault.test a:n.fault.test" " a:n.fault.test a:n.fault.test a:n.fault.test a:n.fault.test a:n.fault.test a:n.fault.test ip4:127.0.0.20 -all"
void2    TXT   "v=spf1 a:nx1.fault.test a:nx2.fault.test ip4:127.0.0.20 -all"
void3    TXT   "v=spf1 a:nx1.fault.test a:nx2.fault.test a:nx3.fault.test ip4:127.0.0.20 -all"
`

// bigSPF is an SPF record of n octets in character-strings of at most 255
// octets, which a receiver concatenates (RFC 7208 §3.3); it lists the
// client last.
func bigSPF(name string, n int) string {
	rec := "v=spf1"
	for i := 0; len(rec) < n-len(" ip4:127.0.0.20 -all")-20; i++ {
		rec += fmt.Sprintf(" ip4:192.0.2.%d", i%250)
	}
	rec += " ip4:127.0.0.20 -all"
	var parts []string
	for len(rec) > 0 {
		k := min(len(rec), 200+len(parts)%50) // uneven splits, as publishers do
		parts = append(parts, `"`+rec[:k]+`"`)
		rec = rec[k:]
	}
	return name + " 300 TXT " + strings.Join(parts, " ")
}

// failOpen is the operator's choice to accept mail when DNS is broken:
// every check's temperror accepted.
func failOpen(s *setup) {
	for _, c := range policy.Checks {
		s.cfg.Policy.Rules.Set(c, "temperror", policy.Rule{Action: policy.Accept})
	}
}

// faultCase is one row of the matrix: what breaks, and what vouch answers
// at RCPT under each policy.
type faultCase struct {
	target string // what the fault hits, as in docs/hardening.md
	fault  string
	setup  func(*dnstest.Server)
	sender string
	// Replies at RCPT. "continue" is acceptance.
	standard, strict, failOpen string
	// header is part of the Authentication-Results vouch adds under
	// standard, when it accepts.
	header string
}

const (
	client   = "127.0.0.20"
	faultPTR = "20.0.0.127.in-addr.arpa."

	tempIprev   = "451 4.7.25 Temporary DNS failure verifying reverse DNS of 127.0.0.20"
	tempHelo    = "451 4.7.25 Temporary DNS failure verifying HELO name helo.fault.test"
	tempSPF     = "451 4.7.24 SPF: temporary DNS failure checking fault.test"
	tempSPFInc  = "451 4.7.24 SPF: temporary DNS failure checking inc.fault.test"
	tempSPFNull = "451 4.7.24 SPF: temporary DNS failure checking helo.fault.test"
	permIprev   = "550 5.7.25 Reverse DNS of 127.0.0.20 cannot be verified"
)

func permSPF(domain string) string {
	return "550 5.7.24 SPF: the SPF record of " + domain + " is invalid"
}

func temporaryFaults() []struct {
	name  string
	fault dnstest.Fault
} {
	return []struct {
		name  string
		fault dnstest.Fault
	}{
		{"timeout", dnstest.Fault{Drop: true}},
		{"SERVFAIL", dnstest.Fault{Rcode: mdns.RcodeServerFailure}},
		{"REFUSED", dnstest.Fault{Rcode: mdns.RcodeRefused}},
	}
}

func faultCases() []faultCase {
	var cases []faultCase
	fault := func(name string, f dnstest.Fault) func(*dnstest.Server) {
		return func(s *dnstest.Server) { s.SetFault(name, f) }
	}
	loop := func(name string) func(*dnstest.Server) {
		return func(s *dnstest.Server) {
			s.Remove(name)
			if err := s.AddZone(name + " CNAME loop1.fault.test."); err != nil {
				panic(err)
			}
		}
	}
	for _, f := range temporaryFaults() {
		cases = append(cases,
			faultCase{"PTR", f.name, fault(faultPTR, f.fault), "a@fault.test", tempIprev, tempIprev, "continue", "iprev=temperror"},
			faultCase{"A/AAAA of the PTR name", f.name, fault("ptr.fault.test", f.fault), "a@fault.test", tempIprev, tempIprev, "continue", "iprev=temperror"},
			// RFC 5321 §4.1.4: the HELO name alone never refuses mail
			// under standard, not even for a DNS failure.
			faultCase{"HELO name (A/AAAA, TXT)", f.name, fault("helo.fault.test", f.fault), "a@fault.test", "continue", tempHelo, "continue", "spf=temperror"},
			// For the null sender the HELO identity is the SPF identity.
			faultCase{"HELO name, null sender", f.name, fault("helo.fault.test", f.fault), "", tempSPFNull, tempHelo, "continue", "spf=temperror"},
			faultCase{"SPF TXT of the sender domain", f.name, fault("fault.test", f.fault), "a@fault.test", tempSPF, tempSPF, "continue", "spf=temperror"},
			faultCase{"SPF include target", f.name, fault("target.fault.test", f.fault), "a@inc.fault.test", tempSPFInc, tempSPFInc, "continue", "spf=temperror"},
		)
	}
	// Truncated UDP answers are retried over TCP: the mail passes.
	tc := dnstest.Fault{Truncate: true}
	for _, c := range []struct{ target, name, sender string }{
		{"PTR", faultPTR, "a@fault.test"},
		{"A/AAAA of the PTR name", "ptr.fault.test", "a@fault.test"},
		{"HELO name (A/AAAA, TXT)", "helo.fault.test", "a@fault.test"},
		{"SPF TXT of the sender domain", "fault.test", "a@fault.test"},
		{"SPF include target", "target.fault.test", "a@inc.fault.test"},
	} {
		cases = append(cases, faultCase{c.target, "truncated (TC=1)", fault(c.name, tc), c.sender, "continue", "continue", "continue", "spf=pass"})
	}
	// Permanent faults: permerror, refused only where the policy refuses
	// permerror (strict), never a temporary answer that retries forever;
	// failing open on temperror does not change them.
	cases = append(cases,
		faultCase{"PTR", "CNAME loop", loop(faultPTR), "a@fault.test", "continue", permIprev, permIprev, "iprev=permerror"},
		faultCase{"A/AAAA of the PTR name", "CNAME loop", loop("ptr.fault.test"), "a@fault.test", "continue", permIprev, permIprev, "iprev=permerror"},
		faultCase{"SPF TXT of the sender domain", "CNAME loop", loop("fault.test"), "a@fault.test", "continue",
			permSPF("fault.test"), permSPF("fault.test"), "spf=permerror"},
		faultCase{"SPF TXT of the sender domain", "TXT of 600 octets in 3 strings", addZone(bigSPF("big.fault.test.", 600)), "a@big.fault.test",
			"continue", "continue", "continue", "spf=pass"},
		faultCase{"SPF TXT of the sender domain", "TXT of 3000 octets in 14 strings (TCP)", addZone(bigSPF("big.fault.test.", 3000)), "a@big.fault.test",
			"continue", "continue", "continue", "spf=pass"},
		faultCase{"SPF lookup limit", "10 DNS-querying terms", nil, "a@lookups10.fault.test", "continue", "continue", "continue", "spf=pass"},
		faultCase{"SPF lookup limit", "11 DNS-querying terms", nil, "a@lookups11.fault.test", "continue",
			permSPF("lookups11.fault.test"), permSPF("lookups11.fault.test"), "spf=permerror"},
		faultCase{"SPF void lookup limit", "2 void lookups", nil, "a@void2.fault.test", "continue", "continue", "continue", "spf=pass"},
		faultCase{"SPF void lookup limit", "3 void lookups", nil, "a@void3.fault.test", "continue",
			permSPF("void3.fault.test"), permSPF("void3.fault.test"), "spf=permerror"},
	)
	return cases
}

func addZone(text string) func(*dnstest.Server) {
	return func(s *dnstest.Server) {
		if err := s.AddZone(text); err != nil {
			panic(err)
		}
	}
}

// TestDNSFaults drives each fault through the milter protocol under the
// standard and strict presets and with the operator's fail-open rule.
// Temporary faults give temperror: tempfail (4xx), never a reject, or
// acceptance when the operator chose to fail open; the answer comes well
// within the check deadline.
func TestDNSFaults(t *testing.T) {
	for _, tc := range faultCases() {
		for _, p := range []struct {
			name string
			want string
			opts []envOption
		}{
			{"standard", tc.standard, nil},
			{"strict", tc.strict, []envOption{preset("strict")}},
			{"strict+fail-open", tc.failOpen, []envOption{preset("strict"), failOpen}},
		} {
			t.Run(tc.target+"/"+tc.fault+"/"+p.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, p.opts...)
				if err := e.dns.AddZone(faultZone); err != nil {
					t.Fatal(err)
				}
				if tc.setup != nil {
					tc.setup(e.dns)
				}
				start := time.Now()
				m := e.connect(client)
				m.helo("helo.fault.test", "continue")
				m.mail(tc.sender, "continue")
				m.rcpt("user@vouch.test", p.want)
				// newEnv's deadline is 3 s; a timed-out lookup gives up
				// after 0.5 s. Generous slack for a loaded machine.
				d := time.Since(start)
				if d > 3*time.Second+5*time.Second {
					t.Errorf("answered after %v", d)
				}
				t.Logf("answered %q after %v", p.want, d.Round(time.Millisecond))
				if p.want == "continue" {
					fields := inserted(m.data())
					if p.name == "standard" {
						hasHeader(t, fields, "Authentication-Results", tc.header)
					}
				}
				if p.want != "continue" && p.want[0] == '5' && isTemporaryFault(tc.fault) {
					t.Errorf("a temporary DNS fault was answered with a reject: %s", p.want)
				}
				if strings.HasPrefix(tc.fault, "truncated") || strings.Contains(tc.fault, "(TCP)") {
					if log := strings.Join(e.dns.QueryLog(), "\n"); !strings.Contains(log, "/tcp") {
						t.Errorf("no query over TCP:\n%s", log)
					}
				}
			})
		}
	}
}

func isTemporaryFault(name string) bool {
	for _, f := range temporaryFaults() {
		if f.name == name {
			return true
		}
	}
	return false
}

// TestDNSTimeoutAnsweredByDeadline: when the DNS server never answers and
// the resolver would wait longer than the check deadline, the deadline
// decides: vouch answers tempfail by then, before the MTA gives up on it.
func TestDNSTimeoutAnsweredByDeadline(t *testing.T) {
	const deadline = time.Second
	for _, tc := range []struct{ target, want string }{
		{faultPTR, tempIprev},
		{"ptr.fault.test", tempIprev},
		{"fault.test", tempSPF},
	} {
		t.Run(tc.target, func(t *testing.T) {
			// A fresh server and resolver: a dropped query's flight
			// outlives its test within the resolver.
			slow := dnstest.New(t, faultZone)
			slow.SetFault(tc.target, dnstest.Fault{Drop: true})
			// A resolver that would wait 2 × 5 s for one lookup.
			cfg := checktest.Config(slow.Addr, 5*time.Second)
			cfg.Attempts = 2
			res := checktest.ResolverFor(t, cfg, nil)
			e := newEnv(t, func(s *setup) {
				s.resolver, s.cfg.Checks.Deadline = res, deadline
			})
			start := time.Now()
			m := e.connect(client)
			m.helo("helo.fault.test", "continue")
			m.mail("a@fault.test", "continue")
			act := m.must(m.s.Rcpt("<user@vouch.test>", nil))
			took := time.Since(start)
			if got := answer.Text(act); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			// The checks started at connect; the deadline runs from there.
			// 4 s of slack for a loaded machine, still far below the 10 s
			// the resolver alone would take, and Sendmail's 10 s.
			if took < deadline/2 || took > deadline+4*time.Second {
				t.Errorf("answered after %v with a %v deadline", took, deadline)
			}
			t.Logf("%q after %v with a %v deadline", answer.Text(act), took.Round(time.Millisecond), deadline)
		})
	}
}

// TestDeadlineBelowMTATimeouts: the default check deadline stays below
// Sendmail's default milter read timeout (10 s) and Postfix's
// milter_command_timeout (30 s), in the library defaults and in the
// configuration's, so the MTA hears vouch's answer rather than timing out
// and applying its own default action.
func TestDeadlineBelowMTATimeouts(t *testing.T) {
	const sendmail, postfix = 10 * time.Second, 30 * time.Second
	for name, d := range map[string]time.Duration{
		"config.Default": config.Default().Checks.Deadline,
	} {
		if d <= 0 || d >= sendmail || d >= postfix {
			t.Errorf("%s: deadline %v, want below %v (Sendmail) and %v (Postfix)", name, d, sendmail, postfix)
		}
		// decide waits one second past the deadline for a check that
		// ignores its context: that bound too must beat Sendmail.
		if d+time.Second >= sendmail {
			t.Errorf("%s: deadline %v + 1 s guard reaches Sendmail's %v", name, d, sendmail)
		}
	}
}
