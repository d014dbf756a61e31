package spf

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/dnstest"
)

func TestChain(t *testing.T) {
	d := dnstest.New(t, `
$ORIGIN test.
loop1   TXT "v=spf1 include:loop2.test -all"
loop2   TXT "v=spf1 include:loop1.test redirect=loop1.test"
macro   TXT "v=spf1 include:%{d}.spf.test exists:%{i}.x.test ~all"
two     TXT "v=spf1 -all"
two     TXT "v=spf1 +all"
notspf  TXT "v=spf10 -all"
notspf  TXT "some verification token"
broken  TXT "v=spf1 include:ok.test ip4:192.0.2.1/032 -all"
inner   TXT "v=spf1 include:broken.test ~all"
deep    TXT "v=spf1 include:d1.test include:d2.test include:d3.test include:d4.test include:d5.test include:d6.test include:d7.test include:d8.test include:d9.test include:d10.test include:d11.test include:d12.test -all"
`)
	res := newResolver(t, d.Addr, 2*time.Second)
	render := func(chain []ChainEntry) string {
		var b strings.Builder
		for _, r := range chain {
			fmt.Fprintf(&b, "%d %s %s %q %s\n", r.Depth, r.Via, r.Domain, r.Records, r.Error)
		}
		return b.String()
	}
	tests := []struct{ domain, want string }{
		{"loop1.test", `0  loop1.test ["v=spf1 include:loop2.test -all"] 
1 include loop2.test ["v=spf1 include:loop1.test redirect=loop1.test"] 
`},
		{"macro.test", `0  macro.test ["v=spf1 include:%{d}.spf.test exists:%{i}.x.test ~all"] 
1 include %{d}.spf.test [] contains macros: not expanded here
`},
		{"two.test", `0  two.test ["v=spf1 -all" "v=spf1 +all"] more than one SPF record
`},
		{"notspf.test", `0  notspf.test [] no SPF record
`},
		{"nx.test", `0  nx.test [] no such host (NXDOMAIN)
`},
		// A record with a syntax error says so, and nothing it names is
		// followed: the evaluation would not go there either.
		{"broken.test", `0  broken.test ["v=spf1 include:ok.test ip4:192.0.2.1/032 -all"] syntax error: term 'ip4:192.0.2.1/032': invalid CIDR length /032
`},
		{"inner.test", `0  inner.test ["v=spf1 include:broken.test ~all"] 
1 include broken.test ["v=spf1 include:ok.test ip4:192.0.2.1/032 -all"] syntax error: term 'ip4:192.0.2.1/032': invalid CIDR length /032
`},
	}
	for _, tc := range tests {
		t.Run(tc.domain, func(t *testing.T) {
			if got := render(Chain(context.Background(), res, tc.domain)); got != tc.want {
				t.Errorf("got\n%swant\n%s", got, tc.want)
			}
		})
	}
	if chain := Chain(context.Background(), res, "deep.test"); len(chain) != MaxChain {
		t.Errorf("deep chain has %d entries, want the cap %d", len(chain), MaxChain)
	}
}

func TestTargets(t *testing.T) {
	tests := []struct{ record, want string }{
		{"v=spf1 -all", ""},
		{"v=spf1 include:a.test ~include:b.test -INCLUDE:c.test ?include:d.test +include:e.test all", "include a.test,include b.test,include c.test,include d.test,include e.test"},
		{"v=spf1 redirect=r.test include:a.test", "include a.test,redirect r.test"},
		{"v=spf1 include:%{d}.x.test redirect=%{o}", "include %{d}.x.test,redirect %{o}"},
		// Records that break the grammar name nothing: the chain shows
		// the syntax error instead.
		{"v=spf1 redirect=r.test REDIRECT=s.test", "syntax"},
		{"v=spf1 include: redirect= exists:x.test", "syntax"},
		{"v=spf1 --include:a.test", "syntax"},
	}
	for _, tc := range tests {
		rec, err := ParseRecord(tc.record)
		var got []string
		if err != nil {
			got = []string{"syntax"}
		} else {
			for _, x := range targets(rec) {
				got = append(got, x.via+" "+x.domain)
			}
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("targets(%q) = %q, want %q", tc.record, got, tc.want)
		}
	}
}
