package milter

import (
	"encoding/binary"
	"testing"
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
