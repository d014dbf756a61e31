// Package audittest holds what the tests of checks/audit and of vouch
// audit share: the DNS world of the audited servers and the comparison of
// findings.
package audittest

import (
	"strings"
	"testing"

	"github.com/vouch-mail/vouch/checks/audit"
	"github.com/vouch-mail/vouch/checks/dnstest"
)

// Zone is the world of the audit tests: the outgoing servers audited.
//
//	127.0.0.20  mail.good.test: PTR, A, SPF of good.test and of the HELO
//	127.0.0.21  no PTR
//	127.0.0.22  PTR liar.test, whose A is elsewhere
//	127.0.0.23  two PTR names, both confirmed
//	127.0.0.24  its reverse zone answers SERVFAIL (NewDNS sets the fault)
//	127.0.0.30  mx.postfix.test, the private Postfix's name
//	127.0.0.31  mx.sendmail.test, the private Sendmail's name
//	::20        mail6.good.test
var Zone = `
$ORIGIN test.
$TTL 300
@             SOA   ns.test. hostmaster.test. 1 3600 600 86400 60
mail.good     A     127.0.0.20
mail.good     TXT   "v=spf1 a -all"
alias.good    A     127.0.0.20
elsewhere     A     192.0.2.7
good          TXT   "v=spf1 ip4:127.0.0.20 ip6:::20 -all"
liar          A     192.0.2.1
a.multi       A     127.0.0.23
b.multi       A     127.0.0.23
other         TXT   "v=spf1 ip4:192.0.2.0/24 -all"
soft          TXT   "v=spf1 ~all"
neutral       TXT   "v=spf1 ?all"
broken        TXT   "v=spf1 frobnicate -all"
softhelo      A     127.0.0.20
softhelo      TXT   "v=spf1 ~all"
mx.postfix    A     127.0.0.30
mx.sendmail   A     127.0.0.31
mail6.good    AAAA  ::20
mail6.good    TXT   "v=spf1 a -all"
20.0.0.127.in-addr.arpa. PTR mail.good.test.
22.0.0.127.in-addr.arpa. PTR liar.test.
23.0.0.127.in-addr.arpa. PTR a.multi.test.
23.0.0.127.in-addr.arpa. PTR b.multi.test.
30.0.0.127.in-addr.arpa. PTR mx.postfix.test.
31.0.0.127.in-addr.arpa. PTR mx.sendmail.test.
` + dnstest.ReverseName("::20") + ` PTR mail6.good.test.
`

// NewDNS serves Zone on loopback, with the reverse zone of 127.0.0.24
// answering SERVFAIL.
func NewDNS(tb testing.TB) *dnstest.Server {
	tb.Helper()
	d := dnstest.New(tb, Zone)
	d.SetFault(dnstest.ReverseName("127.0.0.24"), dnstest.Fault{Rcode: 2}) // SERVFAIL
	return d
}

// Finding returns the finding id of rep.
func Finding(rep audit.Report, id string) (audit.Finding, bool) {
	for _, f := range rep.Findings {
		if f.ID == id {
			return f, true
		}
	}
	return audit.Finding{}, false
}

// Want holds findings as expected, by id: "status", "status|seen" or
// "status|seen|fix"; a missing seen or fix is not compared.
type Want map[string]string

// Check reports each finding of w that rep lacks or has otherwise.
func Check(t testing.TB, rep audit.Report, w Want) {
	t.Helper()
	for id, spec := range w {
		parts := strings.SplitN(spec, "|", 3)
		f, ok := Finding(rep, id)
		if !ok {
			t.Errorf("%s: no finding", id)
			continue
		}
		if string(f.Status) != parts[0] {
			t.Errorf("%s: status %s, want %s (seen %q)", id, f.Status, parts[0], f.Seen)
		}
		if len(parts) > 1 && f.Seen != parts[1] {
			t.Errorf("%s: seen\n\t%q\nwant\n\t%q", id, f.Seen, parts[1])
		}
		if len(parts) > 2 && f.Fix != parts[2] {
			t.Errorf("%s: fix\n\t%q\nwant\n\t%q", id, f.Fix, parts[2])
		}
	}
}
