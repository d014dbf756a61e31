package milter_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/policy"
)

func TestExplain(t *testing.T) {
	srv := dnstest.New(t, zone)
	res, err := dns.New(dns.Config{Servers: []string{srv.Addr}, Timeout: time.Second, Attempts: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := milter.DefaultSettings(res)
	s.TrustedNetworks = nil
	tests := []struct {
		name   string
		req    milter.Request
		action policy.Action
		stage  milter.Stage
		reply  string
		header string // part of the first header, "" for none
	}{
		{"pass", milter.Request{IP: net.ParseIP("127.0.0.10"), HELO: "mail.good.test", Sender: "alice@good.test", MTAName: "mx.vouch.test"},
			policy.Accept, milter.StageRcpt, "", "mx.vouch.test;"},
		{"spf fail", milter.Request{IP: net.ParseIP("127.0.0.13"), HELO: "mail.other.test", Sender: "x@good.test", MTAName: "mx.vouch.test"},
			policy.Reject, milter.StageRcpt, "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test", ""},
		{"spf fail to postmaster", milter.Request{IP: net.ParseIP("127.0.0.13"), HELO: "mail.other.test", Sender: "x@good.test", Rcpt: "postmaster@vouch.test", MTAName: "mx.vouch.test"},
			policy.Reject, milter.StageRcpt, "", "spf=fail"},
		{"no ptr", milter.Request{IP: net.ParseIP("127.0.0.11"), HELO: "h.nospf.test", Sender: "x@nospf.test", MTAName: "mx.vouch.test"},
			policy.TempFail, milter.StageRcpt, "450 4.7.25 Client address 127.0.0.11 has no reverse DNS (PTR) record", ""},
		{"authenticated", milter.Request{IP: net.ParseIP("127.0.0.11"), HELO: "laptop", Sender: "x@good.test", AuthUser: "x", MTAName: "mx.vouch.test"},
			policy.Accept, milter.StageRcpt, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := milter.Explain(context.Background(), s, tc.req, nil)
			if e.Decision.Action != tc.action || e.Stage != tc.stage || e.Reply != tc.reply {
				t.Fatalf("got %s at %s %q, want %s at %s %q", e.Decision.Action, e.Stage, e.Reply, tc.action, tc.stage, tc.reply)
			}
			if tc.header == "" && tc.reply == "" && len(e.Headers) != 0 && e.Exempt != "" {
				t.Errorf("exempt transaction got headers %v", e.Headers)
			}
			if tc.header != "" && (len(e.Headers) == 0 || !strings.Contains(e.Headers[0].Value, tc.header)) {
				t.Errorf("headers %v lack %q", e.Headers, tc.header)
			}
		})
	}
	e := milter.Explain(context.Background(), s, tests[0].req, nil)
	if e.Iprev == nil || len(e.Iprev.Confirmed) != 1 || e.Iprev.Confirmed[0] != "mail.good.test" || e.SPF == nil || e.SPF.Verdict != "pass" {
		t.Errorf("evidence missing: %+v", e)
	}
}
