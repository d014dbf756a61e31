package dns

import (
	"net"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
	mdns "github.com/miekg/dns"
	"github.com/vouch-mail/vouch/checks/dnstest"
)

// TestSPFClassification runs blitiri spf, which the SPF check uses, over
// this resolver and dnstest: the errors' flags must turn into the RFC 7208
// results a postmaster expects.
func TestSPFClassification(t *testing.T) {
	const spfZone = `
$ORIGIN spf.test.
$TTL 300
@          SOA  ns hostmaster 1 3600 600 86400 60
pass       TXT  "v=spf1 a:host.spf.test -all"
host       A    192.0.2.1
failing    TXT  "v=spf1 include:broken.spf.test -all"
broken     TXT  "v=spf1 -all"
nospf      TXT  "hello"
loop1      CNAME loop2
loop2      CNAME loop1
voids      TXT  "v=spf1 a:n1.spf.test a:n2.spf.test a:n3.spf.test -all"
`
	servfail := dnstest.Fault{Rcode: mdns.RcodeServerFailure}
	tests := []struct {
		name      string
		domain    string
		faultName string // this name misbehaves as fault says
		fault     dnstest.Fault
		want      spf.Result
	}{
		{"pass", "pass.spf.test", "", dnstest.Fault{}, spf.Pass},
		{"fail", "broken.spf.test", "", dnstest.Fault{}, spf.Fail},
		{"no SPF record", "nospf.spf.test", "", dnstest.Fault{}, spf.None},
		{"NXDOMAIN domain", "absent.spf.test", "", dnstest.Fault{}, spf.None},
		{"SERVFAIL on the record", "pass.spf.test", "pass.spf.test", servfail, spf.TempError},
		{"SERVFAIL on an include", "failing.spf.test", "broken.spf.test", servfail, spf.TempError},
		{"timeout on an a: lookup", "pass.spf.test", "host.spf.test", dnstest.Fault{Drop: true}, spf.TempError},
		{"FORMERR on the record", "pass.spf.test", "pass.spf.test", dnstest.Fault{Rcode: mdns.RcodeFormatError}, spf.TempError},
		{"CNAME loop at the record", "loop1.spf.test", "", dnstest.Fault{}, spf.PermError},
		{"more than 2 void lookups", "voids.spf.test", "", dnstest.Fault{}, spf.PermError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, srv, _, _ := setup(t, func(c *Config) { c.Timeout = 200 * time.Millisecond })
			if err := srv.AddZone(spfZone); err != nil {
				t.Fatal(err)
			}
			if tc.faultName != "" {
				srv.SetFault(tc.faultName, tc.fault)
			}
			got, err := spf.CheckHostWithSender(net.ParseIP("192.0.2.1"), "helo.spf.test", "user@"+tc.domain,
				spf.WithResolver(r), spf.WithContext(ctxT(t)))
			if got != tc.want {
				t.Fatalf("spf %s (%v), want %s", got, err, tc.want)
			}
		})
	}
}
