package main

import (
	"os"
	"testing"
)

// TestPostfixCommand runs the postfix command for one short round: every
// message passes vouch (smtp-source stops at any refusal), each milter
// has a rate, and Postfix logged no milter warning. Root and Postfix are
// needed; VOUCH_E2E=1 turns their absence into a failure.
func TestPostfixCommand(t *testing.T) {
	for _, need := range []string{smtpSource, "/usr/sbin/postfix"} {
		if _, err := os.Stat(need); err != nil {
			unavailablePostfix(t, need+" not installed (apt-get install postfix)")
		}
	}
	if os.Geteuid() != 0 {
		unavailablePostfix(t, "private Postfix instances need root")
	}
	code, out, errOut := bench(t, "postfix", "-rounds", "1", "-m", "40", "-s", "4", "-d", "-milters", "noop,vouch", "-json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	rep := decode[PostfixReport](t, out)
	var names []string
	for _, r := range rep.Results {
		names = append(names, r.Milter)
		if len(r.Rates) != 1 || r.Rates[0] <= 0 {
			t.Errorf("%s: rates %v", r.Milter, r.Rates)
		}
	}
	if len(names) != 3 || names[0] != "none" || names[1] != "noop" || names[2] != "vouch" {
		t.Errorf("milters %v, want none (added first), noop, vouch", names)
	}
	if rep.MilterWarns != 0 || rep.Results[0].Ratio != 1 {
		t.Errorf("milter warnings %d, none's ratio %v", rep.MilterWarns, rep.Results[0].Ratio)
	}
}

func unavailablePostfix(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("VOUCH_E2E") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
