package milter_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vouch-mail/vouch/checks/checktest"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/policy"
)

func TestExplain(t *testing.T) {
	srv := dnstest.New(t, zone)
	res := checktest.Resolver(t, srv.Addr, time.Second)
	cfg := config.Default()
	cfg.Policy.TrustedNetworks = nil
	tests := []struct {
		name   string
		req    milter.Request
		action policy.Action
		stage  policy.Stage
		reply  string
		header string // part of the first header, "" for none
	}{
		{"pass", milter.Request{IP: net.ParseIP("127.0.0.10"), HELO: "mail.good.test", Sender: "alice@good.test", MTAName: "mx.vouch.test"},
			policy.Accept, policy.StageRcpt, "", "mx.vouch.test;"},
		{"spf fail", milter.Request{IP: net.ParseIP("127.0.0.13"), HELO: "mail.other.test", Sender: "x@good.test", MTAName: "mx.vouch.test"},
			policy.Reject, policy.StageRcpt, "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test", ""},
		{"spf fail to postmaster", milter.Request{IP: net.ParseIP("127.0.0.13"), HELO: "mail.other.test", Sender: "x@good.test", Rcpt: "postmaster@vouch.test", MTAName: "mx.vouch.test"},
			policy.Reject, policy.StageRcpt, "", "spf=fail"},
		{"no ptr", milter.Request{IP: net.ParseIP("127.0.0.11"), HELO: "h.nospf.test", Sender: "x@nospf.test", MTAName: "mx.vouch.test"},
			policy.TempFail, policy.StageRcpt, "450 4.7.25 Client address 127.0.0.11 has no reverse DNS (PTR) record", ""},
		{"authenticated", milter.Request{IP: net.ParseIP("127.0.0.11"), HELO: "laptop", Sender: "x@good.test", AuthUser: "x", MTAName: "mx.vouch.test"},
			policy.Accept, policy.StageRcpt, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := milter.Explain(context.Background(), cfg, res, tc.req, nil)
			if err != nil {
				t.Fatal(err)
			}
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
	e, _ := milter.Explain(context.Background(), cfg, res, tests[0].req, nil)
	if r := e.Results; r.Iprev == nil || len(r.Iprev.Confirmed) != 1 || r.Iprev.Confirmed[0] != "mail.good.test" || r.SPF == nil || r.SPF.Verdict != "pass" {
		t.Errorf("evidence missing: %+v", e)
	}
}
