package spf

import (
	"net"
	"net/netip"
	"strings"
)

// The term that decided is found by evaluating the parsed records again,
// RFC 7208 §4.6/§5 over the answers the recorder served the library, and
// nothing else: no DNS is asked. The library gives only a verdict; this
// walk gives the term, and is trusted only when it reaches the same
// verdict (else Result.Mechanism stays empty).

// outcome of evaluating a record or a term. known is false when an answer
// the walk needs was never served (the library did not go there, so the
// walk has gone astray).
type outcome struct {
	v     Verdict
	term  *Term // the deciding term; nil for the default
	known bool
}

// maxExplainDepth bounds include/redirect recursion; the library's own
// bound is the §4.6.4 lookup count, which keeps it far below this.
const maxExplainDepth = 32

// explain returns Result.Mechanism for verdict v of the check of domain.
func (c *recorder) explain(domain string, v Verdict) string {
	o := c.eval(domain, 0)
	if !o.known || o.v != v {
		return ""
	}
	if o.term == nil {
		return "default"
	}
	if o.term.Name == "all" {
		return qualifier(v) + "all" // the one term without arguments: one spelling
	}
	return qualifier(v) + o.term.body()
}

func (c *recorder) eval(domain string, depth int) outcome {
	if depth > maxExplainDepth {
		return outcome{}
	}
	a := c.txtFor(domain)
	switch {
	case a == nil:
		return outcome{}
	case a.err != nil:
		if isNotFound(a.err) {
			return outcome{v: None, known: true}
		}
		return outcome{v: TempError, known: true}
	case a.none:
		return outcome{v: None, known: true}
	case a.multiple, a.syntax:
		return outcome{v: PermError, known: true}
	}
	rec := a.rec
	for i := range rec.Terms {
		t := &rec.Terms[i]
		if t.Modifier {
			continue
		}
		matched, errV, known := c.match(t, domain, depth)
		switch {
		case !known:
			return outcome{}
		case errV != "":
			return outcome{v: errV, term: t, known: true}
		case matched:
			return outcome{v: qualVerdict(t.Qualifier), term: t, known: true}
		}
	}
	if rec.Redirect != nil {
		o := c.eval(c.env.expand(rec.Redirect.Domain, domain), depth+1)
		if o.known && o.v == None {
			o.v, o.term = PermError, nil // §6.1
		}
		return o
	}
	return outcome{v: Neutral, known: true}
}

func qualVerdict(q byte) Verdict {
	switch q {
	case '-':
		return Fail
	case '~':
		return SoftFail
	case '?':
		return Neutral
	}
	return Pass
}

// match evaluates one mechanism (§5) over the served answers. errV is a
// temperror or permerror the mechanism ends the evaluation with.
func (c *recorder) match(t *Term, domain string, depth int) (matched bool, errV Verdict, known bool) {
	client, _ := netip.AddrFromSlice(c.ip)
	client = client.Unmap()
	switch t.Name {
	case "all":
		return true, "", true
	case "ip4", "ip6":
		// An IPv4 client (IPv4-mapped too) is matched by ip4 only, an
		// IPv6 client by ip6 only (§5, §5.6).
		if t.Prefix.Addr().Is4() != client.Is4() {
			return false, "", true
		}
		return t.Prefix.Contains(client), "", true
	}
	target := domain
	if t.Domain != "" {
		target = c.env.expand(t.Domain, domain)
	}
	switch t.Name {
	case "include":
		o := c.eval(target, depth+1)
		switch {
		case !o.known:
			return false, "", false
		case o.v == Pass:
			return true, "", true
		case o.v == Fail, o.v == SoftFail, o.v == Neutral:
			return false, "", true
		case o.v == TempError:
			return false, TempError, true
		}
		return false, PermError, true // permerror, none (§5.2)
	case "a":
		a := c.ipFor(target, c.v4)
		if a == nil {
			return false, "", false
		}
		if a.err != nil {
			if isNotFound(a.err) {
				return false, "", true
			}
			return false, TempError, true
		}
		return c.anyInCIDR(a.addrs, t, client), "", true
	case "mx":
		m := c.mxFor(target)
		if m == nil {
			return false, "", false
		}
		if m.err != nil && len(m.mxs) == 0 {
			if isNotFound(m.err) {
				return false, "", true
			}
			return false, TempError, true
		}
		if len(m.mxs) > 10 {
			return false, PermError, true
		}
		for _, mx := range m.mxs {
			a := c.ipFor(mx.Host, c.v4)
			if a == nil {
				return false, "", false
			}
			if a.err != nil {
				if isNotFound(a.err) {
					continue
				}
				return false, TempError, true
			}
			if c.anyInCIDR(a.addrs, t, client) {
				return true, "", true
			}
		}
		return false, "", true
	case "ptr":
		if c.ptr == nil {
			return false, "", false
		}
		if c.ptr.err != nil {
			return false, "", true // §5.5: reverse-zone errors do not match
		}
		names := c.ptr.names
		if len(names) > 10 {
			names = names[:10]
		}
		for _, n := range names {
			a := c.ipFor(n, c.v4)
			if a == nil {
				return false, "", false
			}
			if a.err == nil && containsAddr(a.addrs, client) && isSubdomain(n, target) {
				return true, "", true
			}
		}
		return false, "", true
	case "exists":
		a := c.ipFor(target, true)
		if a == nil {
			return false, "", false
		}
		if a.err != nil {
			if isNotFound(a.err) {
				return false, "", true
			}
			return false, TempError, true
		}
		return len(a.addrs) > 0, "", true
	}
	return false, "", false
}

// anyInCIDR: one of addrs, widened by the term's CIDR length for the
// client's family, holds the client (§5.3).
func (c *recorder) anyInCIDR(addrs []net.IPAddr, t *Term, client netip.Addr) bool {
	for _, ia := range addrs {
		a, _ := netip.AddrFromSlice(ia.IP)
		a = a.Unmap()
		if a.Is4() != client.Is4() {
			continue
		}
		bits := t.CIDR6
		if a.Is4() {
			bits = t.CIDR4
		}
		if bits < 0 {
			if a == client {
				return true
			}
			continue
		}
		if p, err := a.Prefix(bits); err == nil && p.Contains(client) {
			return true
		}
	}
	return false
}

func containsAddr(addrs []net.IPAddr, ip netip.Addr) bool {
	for _, ia := range addrs {
		if a, _ := netip.AddrFromSlice(ia.IP); a.Unmap() == ip {
			return true
		}
	}
	return false
}

func (c *recorder) txtFor(name string) *txtAnswer {
	for i := len(c.txts) - 1; i >= 0; i-- {
		if sameName(c.txts[i].name, name) {
			return &c.txts[i]
		}
	}
	return nil
}

// ipFor finds an address answer. The walk asks for them in the order the
// library made them, so the search starts after the last one found: an
// mx term over 10 hosts of 10 names stays linear, not quadratic.
func (c *recorder) ipFor(name string, v4 bool) *ipAnswer {
	n := c.ips.n
	for k := 0; k < n; k++ {
		i := (c.ipNext + k) % n
		if a := c.ips.at(i); a.v4 == v4 && sameName(a.name, name) {
			c.ipNext = i + 1
			return a
		}
	}
	return nil
}

func (c *recorder) mxFor(name string) *mxAnswer {
	for i := len(c.mxs) - 1; i >= 0; i-- {
		if sameName(c.mxs[i].name, name) {
			return &c.mxs[i]
		}
	}
	return nil
}

func sameName(a, b string) bool {
	if a == b {
		return true
	}
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}
