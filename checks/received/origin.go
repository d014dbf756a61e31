package received

import (
	"errors"
	"fmt"
	"net/netip"
)

// MaxHops bounds how many Received fields Origin examines. A message that
// crossed more trusted relays than this is not walked further.
const MaxHops = 20

// Errors Origin returns besides Parse's; test with errors.Is.
var (
	ErrNoFields   = errors.New("received: no Received field")
	ErrAllTrusted = errors.New("received: every Received field names a trusted client")
	ErrTooMany    = errors.New("received: too many trusted hops")
)

// Origin is the original client behind a chain of trusted relays.
type Origin struct {
	Hop
	// Index is the position of the field that named it among the fields
	// Origin was given (0 is the topmost).
	Index int
}

// FindOrigin walks the message's Received field values, topmost first as
// they stand in the header, to the first hop whose client is not
// trusted: that hop's IP and HELO are the original client's.
//
// Each field was written by the host that received the hop it
// describes. The topmost is our MTA's own (when the caller has it; a
// milter is not shown it) or the trusted relay's; as long as the client a
// field names is a trusted relay, that relay wrote the field below it, so
// the walk steps down. It never steps past an untrusted client: fields
// further down were written by hosts nobody vouches for.
//
// A field that does not parse, or parses only in part (Hop.Complete
// false), ends the walk with an error: the caller must then decide
// without an original client, never reject because of it. So does a chain
// of more than MaxHops trusted hops, or one that is trusted all the way
// down (mail that started inside the trusted network).
func FindOrigin(fields []string, trusted func(netip.Addr) bool) (Origin, error) {
	if len(fields) == 0 {
		return Origin{}, ErrNoFields
	}
	for i, f := range fields {
		if i == MaxHops {
			return Origin{}, fmt.Errorf("%w: more than %d", ErrTooMany, MaxHops)
		}
		h, err := Parse(f)
		if err != nil {
			return Origin{}, fmt.Errorf("Received field %d: %w", i, err)
		}
		if !h.Complete {
			return Origin{}, fmt.Errorf("Received field %d: %w: parsed only in part", i, ErrSyntax)
		}
		if !trusted(h.IP) {
			return Origin{Hop: h, Index: i}, nil
		}
	}
	return Origin{}, fmt.Errorf("%w (%d fields)", ErrAllTrusted, len(fields))
}
