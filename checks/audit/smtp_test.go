package audit

import (
	"strconv"
	"testing"
)

// TestVRFYFindings is the VRFY/EXPN judgement over the answers RFC 5321
// §3.5.3 allows, beyond those the real Postfix and Sendmail of cmd/vouch's
// tests give (251, a catch-all 250, a connection lost).
func TestVRFYFindings(t *testing.T) {
	step := func(code int, text string) *Step {
		return &Step{Code: code, Reply: []string{strconv.Itoa(code) + " " + text}}
	}
	tests := []struct {
		name           string
		known, unknown *Step
		expn           *Step
		vrfy, expnWant Status
	}{
		{"both confirm", step(250, "2.1.5 Postmaster <postmaster@example.com>"), step(550, "5.1.1 unknown"), step(250, "2.1.5 <root@example.com>"), Fail, Fail},
		{"251 forward", step(251, "2.1.5 user not local; will forward to <x@y>"), step(550, "no"), step(502, "5.5.1 no"), Fail, Pass},
		{"catch-all 250", step(252, "2.0.0 postmaster"), step(250, "2.1.5 ok"), step(500, "no"), Fail, Pass},
		{"252 both", step(252, "2.0.0 postmaster"), step(252, "2.0.0 whatever"), step(502, "no"), Pass, Pass},
		{"252 vs 550", step(252, "2.0.0 postmaster"), step(550, "5.1.1 unknown"), step(502, "no"), Warn, Pass},
		{"disabled", step(502, "5.5.1 VRFY command is disabled"), step(502, "5.5.1 VRFY command is disabled"), step(500, "5.5.2 no"), Pass, Pass},
		{"550 both", step(550, "5.7.1 no"), step(550, "5.7.1 no"), step(550, "no"), Pass, Pass},
		{"connection lost", &Step{Command: "VRFY postmaster", Error: "EOF"}, nil, nil, Warn, Warn},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &auditor{}
			a.vrfy(tc.known, tc.unknown)
			a.expn(tc.expn)
			if a.rep.Findings[0].Status != tc.vrfy || a.rep.Findings[1].Status != tc.expnWant {
				t.Errorf("got %+v, want vrfy %s, expn %s", a.rep.Findings, tc.vrfy, tc.expnWant)
			}
			if a.rep.Findings[0].Status == Fail && a.rep.Findings[0].Fix == "" {
				t.Error("failed without a fix")
			}
		})
	}
}
