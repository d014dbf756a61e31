package milter

import (
	"encoding/binary"
	"testing"

	"github.com/emersion/go-milter"
)

// FuzzNegotiationObserve: however the MTA's bytes are split into reads,
// observe names the command of the packet last begun, as a plain parse
// of the whole stream does; replies are dropped by that name.
func FuzzNegotiationObserve(f *testing.F) {
	pkt := func(code byte, data string) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(1+len(data))), append([]byte{code}, data...)...)
	}
	var stream []byte
	for _, p := range [][]byte{pkt('D', "Cj\x00mx\x00"), pkt('C', "[1.2.3.4]\x004\x00\x191.2.3.4\x00"), pkt('H', "x\x00"), pkt('L', "a\x00b\x00"), pkt('R', "<a@b>\x00")} {
		stream = append(stream, p...)
	}
	f.Add(stream, []byte{1, 3, 4, 200})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 2, 'M', 'x'}, []byte{5})
	f.Fuzz(func(t *testing.T, stream, splits []byte) {
		// The reference: the code of the last packet whose code byte the
		// stream holds.
		var want byte
		for rest := stream; len(rest) >= 4; {
			l := binary.BigEndian.Uint32(rest)
			rest = rest[4:]
			if l > 0 && len(rest) > 0 {
				want = rest[0]
			}
			if uint64(len(rest)) < uint64(l) {
				break
			}
			rest = rest[l:]
		}
		n := &negotiation{}
		w := &wire{}
		for rest, i := stream, 0; len(rest) > 0; i++ {
			k := len(rest)
			if i < len(splits) {
				k = min(k, int(splits[i])+1)
			}
			n.observe(w, rest[:k])
			rest = rest[k:]
		}
		if n.code != want {
			t.Fatalf("observe says %q, the stream %q", n.code, want)
		}
	})
}

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
