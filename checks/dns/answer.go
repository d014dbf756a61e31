package dns

import (
	"errors"
	"math"
	"net"
	"slices"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// kind is what a lookup found.
type kind uint8

const (
	kindData     kind = iota // records of the type (possibly all unusable)
	kindNXDomain             // the name does not exist
	kindNoData               // the name exists, without records of the type
	kindFailure              // no answer: see temporary, timeout, msg
)

// entry is the outcome of one (name, type) lookup, shared by coalesced
// callers and held in the cache. It is never modified once built: callers
// get copies of its slices.
type entry struct {
	kind    kind
	server  string        // the server that answered, or was last tried
	ttl     time.Duration // how long it may be cached; 0: not at all
	expires time.Time     // set when cached

	// kindData, by query type.
	ips  []net.IP // A, AAAA
	strs []string // PTR (FQDN with trailing dot), TXT (strings joined)
	mx   []net.MX // sorted by preference
	bad  int      // records dropped as unusable (invalid target names)

	// kindFailure.
	temporary, timeout bool
	msg                string
	cause              error // context error, for errors.Is
}

var (
	errCNAMELoop  = errors.New("CNAME loop")
	errCNAMEChain = errors.New("CNAME chain too long")
)

// chain is a walk through an answer section.
type chain struct {
	rrs    []mdns.RR // records of the type at the end of the chain
	end    string    // the name the chain ended at (FQDN, as in the answer)
	hops   int       // CNAMEs followed in this answer
	minTTL uint32    // lowest TTL among the CNAMEs followed and rrs
}

// follow walks answer from name through CNAMEs to the records of qtype.
// seen holds the lower-case names already visited by earlier answers of the
// same lookup; budget is how many more CNAMEs may be followed. Servers may
// put records in any order and add unrelated ones, so each step searches the
// whole section.
func follow(answer []mdns.RR, name string, qtype uint16, budget int, seen []string) (chain, []string, error) {
	c := chain{end: name, minTTL: math.MaxUint32}
	for {
		var target string
		cnameTTL := uint32(0)
		for _, rr := range answer {
			h := rr.Header()
			if h.Class != mdns.ClassINET || !strings.EqualFold(h.Name, c.end) {
				continue
			}
			switch {
			case h.Rrtype == qtype:
				c.rrs = append(c.rrs, rr)
				c.minTTL = min(c.minTTL, h.Ttl)
			case h.Rrtype == mdns.TypeCNAME && target == "":
				target = rr.(*mdns.CNAME).Target
				cnameTTL = h.Ttl
			}
		}
		if len(c.rrs) > 0 || target == "" {
			return c, seen, nil
		}
		seen = append(seen, strings.ToLower(c.end))
		if c.hops >= budget {
			return c, seen, errCNAMEChain
		}
		if slices.Contains(seen, strings.ToLower(target)) {
			return c, seen, errCNAMELoop
		}
		c.hops++
		c.minTTL = min(c.minTTL, cnameTTL)
		c.end = target
	}
}

// negativeTTL is how long a negative answer may be cached (RFC 2308 §5: the
// smaller of the SOA's TTL and MINIMUM, from the authority section), and
// whether there was an SOA at all.
func negativeTTL(m *mdns.Msg) (uint32, bool) {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*mdns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl), true
		}
	}
	return 0, false
}

// hasSOA reports whether the authority section holds an SOA: the mark of a
// negative answer, as opposed to a referral-less partial CNAME answer.
func hasSOA(m *mdns.Msg) bool {
	_, ok := negativeTTL(m)
	return ok
}

// fill converts the records at the end of a chain into e's typed values.
// Records of an unexpected Go type (say, RFC 3597 unknown-type data) are
// skipped; targets that are not usable host names are dropped and counted.
func (e *entry) fill(rrs []mdns.RR, qtype uint16) {
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *mdns.A:
			if ip4 := v.A.To4(); ip4 != nil && qtype == mdns.TypeA {
				e.ips = append(e.ips, ip4)
			}
		case *mdns.AAAA:
			if ip6 := v.AAAA.To16(); ip6 != nil && qtype == mdns.TypeAAAA {
				e.ips = append(e.ips, ip6)
			}
		case *mdns.PTR:
			if validTarget(v.Ptr) {
				e.strs = append(e.strs, v.Ptr)
			} else {
				e.bad++
			}
		case *mdns.TXT:
			var b strings.Builder
			for _, s := range v.Txt {
				b.WriteString(unescapeTXT(s))
			}
			e.strs = append(e.strs, b.String())
		case *mdns.MX:
			// "." is a null MX (RFC 7505), which net.Resolver also returns.
			if v.Mx == "." || validTarget(v.Mx) {
				e.mx = append(e.mx, net.MX{Host: v.Mx, Pref: v.Preference})
			} else {
				e.bad++
			}
		}
	}
	// net.Resolver shuffles equal preferences; a stable order keeps
	// results and logs reproducible, and SPF looks at every host anyway.
	slices.SortStableFunc(e.mx, func(a, b net.MX) int { return int(a.Pref) - int(b.Pref) })
}

// empty reports whether a data entry holds nothing usable.
func (e *entry) empty() bool {
	return len(e.ips) == 0 && len(e.strs) == 0 && len(e.mx) == 0
}
