package milter

import (
	"encoding/binary"
	"testing"

	"github.com/emersion/go-milter"
)

// TestNegotiationHoldsAFailureAtAnUnansweredStage: a tempfail vouch
// answers where the MTA waits for nothing (a callback that panicked) is
// given at the next stage the MTA waits at, instead of that stage's
// answer; continue is just dropped.
func TestNegotiationHoldsAFailureAtAnUnansweredStage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		atHelo *reply
		want   string
	}{
		{"continue dropped", respContinue, "c"},
		{"tempfail held for RCPT", respInternal, "y451 4.3.0 Temporary local error in the mail filter\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &negotiation{protocol: milter.OptNoHeloReply}
			n.noReply['H'] = true
			w := &wire{neg: n}
			n.code = 'H'
			w.answer(tc.atHelo)
			if len(w.out) != 0 {
				t.Fatalf("wrote %q at HELO", w.out)
			}
			n.code = 'R'
			w.answer(respContinue)
			if got := string(w.out[4:]); got != tc.want || int(binary.BigEndian.Uint32(w.out)) != len(w.out)-4 {
				t.Errorf("RCPT answered %q, want %q", w.out, tc.want)
			}
			w.out = w.out[:0]
			w.answer(respContinue)
			if string(w.out[4:]) != "c" {
				t.Errorf("the next answer %q, want continue", w.out)
			}
		})
	}
}
