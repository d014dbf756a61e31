package spf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/vouch-mail/vouch/checks/dns"
)

// recorder is the resolver handed to the library for one check. Through
// it vouch corrects the library where RFC 7208 says otherwise, and
// remembers every answer it served, so that explain.go can tell which
// term decided without asking DNS again.
//
//   - Every SPF record fetched (top level, include, redirect) goes
//     through ParseRecord; see LookupTXT for what the library is given
//     when it fails.
//   - Address lookups ask only the client's family: A for an IPv4 client,
//     AAAA for IPv6 (RFC 7208 §5.3, §5.4, §5.5), so a name holding only the
//     other family's addresses is a void lookup (§4.6.4). exists always
//     asks A (§5.7).
//   - A name over 253 octets, built by macro expansion, is truncated from
//     the left (§7.3).
//   - %{p} is the client's validated name (§7.3), not "unknown".
//   - A '/' in a domain-spec is looked up, not read as a CIDR length
//     (§7.1; see slashMarker), and no ip6 term matches an IPv4 client.
//
// It also remembers the last failed lookup, to name it in Result.Problem,
// and hands the library errors in the only form it classifies: a bare
// *net.DNSError (it uses a type assertion, so a wrapped one, or a context
// error, would turn a timeout into a permerror).
type recorder struct {
	r dns.Lookuper
	// ip is the client as the library sees it (4 bytes for IPv4, also
	// for an IPv4-mapped IPv6 address, RFC 7208 §5 last paragraph).
	ip  net.IP
	v4  bool
	env macroEnv

	mu       sync.Mutex
	lastType string
	lastName string
	lastErr  *net.DNSError
	syntax   *syntaxFound

	txts []txtAnswer
	ips  answers
	// ipNext is where explain.go's next search of ips starts.
	ipNext int
	mxs    []mxAnswer
	ptr    *ptrAnswer
	// pNames are the client's validated names for %{p}, once looked up.
	pNames  []string
	pLooked bool

	// Room for the answers of a usual check, allocated with the recorder.
	txtBuf [4]txtAnswer
	ipBuf  [8]ipAnswer
}

// answers holds the address answers in chunks that never move: an mx
// term asks for up to 10 hosts, 10 terms up to 100, and growing one slice
// would copy them again and again.
type answers struct {
	chunks [][]ipAnswer
	n      int
}

const answerChunk = 32

func (a *answers) add(x ipAnswer, first []ipAnswer) {
	if a.n == 0 && len(a.chunks) == 0 {
		a.chunks = append(a.chunks, first[:0])
	}
	last := &a.chunks[len(a.chunks)-1]
	if len(*last) == cap(*last) {
		a.chunks = append(a.chunks, make([]ipAnswer, 0, answerChunk))
		last = &a.chunks[len(a.chunks)-1]
	}
	*last = append(*last, x)
	a.n++
}

// at returns answer i; chunk 0 holds len(first) answers, the others
// answerChunk each.
func (a *answers) at(i int) *ipAnswer {
	c0 := cap(a.chunks[0])
	if i < c0 {
		return &a.chunks[0][i]
	}
	i -= c0
	return &a.chunks[1+i/answerChunk][i%answerChunk]
}

// syntaxFound is the first record that failed ParseRecord.
type syntaxFound struct {
	domain string
	err    *SyntaxError
}

type txtAnswer struct {
	name     string // as the library asked
	rec      *Record
	err      error // the lookup failed
	none     bool  // no SPF record
	multiple bool  // more than one SPF record
	syntax   bool  // the record failed ParseRecord
}

type ipAnswer struct {
	name  string
	v4    bool
	addrs []net.IPAddr // as served to the library, which only reads them
	err   error
}

type mxAnswer struct {
	name string
	mxs  []*net.MX // as served to the library, which only reads them
	err  error
}

type ptrAnswer struct {
	names []string
	err   error
}

// familyLookuper is a resolver that can ask one address family, as
// *net.Resolver does. A Lookuper without it is asked for both families
// and its answer filtered: the verdict is the same, the queries twice.
type familyLookuper interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

func newRecorder(r dns.Lookuper, ip net.IP, helo, sender string) *recorder {
	c := &recorder{r: r, ip: ip, v4: ip.To4() != nil}
	c.txts = c.txtBuf[:0]
	c.env = macroEnv{sender: sender, helo: helo, ip: ip, p: c.pValue}
	return c
}

// permErrorRecord is what the library is handed in place of a record that
// fails ParseRecord. Its only term is no mechanism or modifier the
// library knows, and the library answers permerror for an unknown term
// wherever the record is read: at the top, through include (§5.2) and
// through redirect (§6.1). TestLibraryPermErrorRecord pins that.
const permErrorRecord = "v=spf1 vouch-syntax-error"

// existsMarker prefixes the domain-spec of exists terms handed to the
// library for an IPv6 client, so that LookupIPAddr knows to ask A, as
// RFC 7208 §5.7 wants, and not the client's AAAA. A control byte cannot be
// in a record that passed ParseRecord, and a prefix survives the
// library's macro expansion unchanged.
const existsMarker = "\x01a."

// slashMarker stands for '/' in the domain-specs handed to the library,
// which reads any '/' in an a or mx term as a CIDR length and refuses one
// in any expanded domain (RFC 7208 §7.1 allows it: macro-literal is every
// visible character but '%'). The recorder turns it back into '/' in the
// names the library asks for.
const slashMarker = "\x02"

// libName is the name the library asked for, with the recorder's markers
// undone.
func libName(name string) string {
	if strings.Contains(name, slashMarker) {
		return strings.ReplaceAll(name, slashMarker, "/")
	}
	return name
}

func (c *recorder) LookupTXT(ctx context.Context, name string) ([]string, error) {
	name = libName(name)
	txts, err := c.r.LookupTXT(ctx, truncateName(name))
	err = c.note("TXT", name, err)
	a := txtAnswer{name: name, err: err}
	var spf string
	if err == nil {
		n := 0
		for _, t := range txts {
			if IsRecord(t) {
				spf = t
				n++
			}
		}
		a.none, a.multiple = n == 0, n > 1
	}
	if err != nil || a.none || a.multiple {
		c.remember(a)
		return txts, err
	}

	// THE place where the strict parser overrules the library: a record
	// that fails it reaches the library as permErrorRecord, which the
	// library evaluates to permerror (RFC 7208 §4.6: the whole record is
	// checked before evaluation; a syntax error anywhere is permerror).
	rec, perr := ParseRecord(spf)
	if perr != nil {
		a.syntax = true
		c.remember(a)
		c.mu.Lock()
		if c.syntax == nil {
			var se *SyntaxError
			errors.As(perr, &se)
			c.syntax = &syntaxFound{domain: strings.TrimSuffix(name, "."), err: se}
		}
		c.mu.Unlock()
		return []string{permErrorRecord}, nil
	}
	a.rec = rec
	c.remember(a)
	if out, changed := c.rewrite(ctx, rec, name); changed {
		return []string{out}, nil
	}
	return txts, nil
}

// rewrite returns the record the library is to evaluate for a client of
// this check when it must differ from rec, which it means the same as by
// RFC 7208 but in terms the library evaluates right:
//   - an ip6 term whose network is IPv4-mapped is left out for an IPv4
//     client: the library's net.IPNet would match it against IPv4
//     addresses, and no ip6 term matches an IPv4 client (§5, §5.6);
//   - exists terms are marked for an IPv6 client (see existsMarker);
//   - a '/' in a domain-spec is handed over as slashMarker;
//   - %{p} in a mechanism or redirect is replaced by its value.
func (c *recorder) rewrite(ctx context.Context, rec *Record, domain string) (string, bool) {
	need := false
	for i := range rec.Terms {
		if c.needsRewrite(&rec.Terms[i]) {
			need = true
			break
		}
	}
	if !need {
		return "", false
	}
	var b strings.Builder
	b.WriteString("v=spf1")
	for i := range rec.Terms {
		t := &rec.Terms[i]
		if !t.Modifier && t.Name == "ip6" && c.v4 {
			continue
		}
		text := t.Text
		if (!t.Modifier || t.Name == "redirect") && (hasPMacro(t.Domain) || strings.Contains(t.Domain, "/")) {
			spec := t.Domain
			if hasPMacro(spec) {
				spec = c.expandP(ctx, spec, domain)
			}
			spec = strings.ReplaceAll(spec, "/", slashMarker)
			pos := strings.IndexAny(text, ":=") + 1
			text = text[:pos] + spec + text[pos+len(t.Domain):]
		}
		if !t.Modifier && t.Name == "exists" && !c.v4 {
			pos := strings.IndexByte(text, ':') + 1
			text = text[:pos] + existsMarker + text[pos:]
		}
		b.WriteByte(' ')
		b.WriteString(text)
	}
	return b.String(), true
}

func (c *recorder) needsRewrite(t *Term) bool {
	switch {
	case t.Modifier:
		return t.Name == "redirect" && (hasPMacro(t.Domain) || strings.Contains(t.Domain, "/"))
	case t.Name == "ip6":
		return c.v4 && t.Prefix.Masked().Addr().Is4In6()
	case t.Name == "exists" && !c.v4:
		return true
	}
	return hasPMacro(t.Domain) || strings.Contains(t.Domain, "/")
}

func hasPMacro(s string) bool {
	return strings.Contains(s, "%{p") || strings.Contains(s, "%{P")
}

// expandP replaces the %{p} macros of a domain-spec by their values,
// escaped as macro-string literal text.
func (c *recorder) expandP(ctx context.Context, spec, domain string) string {
	c.lookupPNames(ctx)
	var b strings.Builder
	for i := 0; i < len(spec); i++ {
		if spec[i] != '%' || i+1 >= len(spec) {
			b.WriteByte(spec[i])
			continue
		}
		if spec[i+1] != '{' {
			b.WriteString(spec[i : i+2])
			i++
			continue
		}
		end := strings.IndexByte(spec[i:], '}')
		m, _ := parseMacro(spec[i+2:i+end], true)
		if m.letter != 'p' {
			b.WriteString(spec[i : i+end+1])
		} else {
			v := c.env.value(m, domain)
			v = strings.ReplaceAll(v, "%", "%%")
			b.WriteString(strings.ReplaceAll(v, " ", "%_"))
		}
		i += end
	}
	return b.String()
}

// lookupPNames finds the client's validated names (RFC 7208 §7.3 by way
// of §5.5): its PTR names, at most 10, whose addresses of the client's
// family include the client. Once per check: one PTR query and up to 10
// address queries, outside the §4.6.4 term count (the macro is not a
// term); any failure leaves the names empty, and %{p} "unknown".
func (c *recorder) lookupPNames(ctx context.Context) {
	if c.pLooked {
		return
	}
	c.pLooked = true
	names, err := c.LookupAddr(ctx, c.ip.String())
	if err != nil {
		return
	}
	if len(names) > 10 {
		names = names[:10]
	}
	for _, n := range names {
		addrs, err := c.LookupIPAddr(ctx, n)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if a.IP.Equal(c.ip) {
				c.pNames = append(c.pNames, strings.TrimSuffix(n, "."))
				break
			}
		}
	}
}

// pValue is %{p} for the record of domain: the validated name equal to
// domain, else one of its subdomains, else any, else "unknown" (§7.3).
func (c *recorder) pValue(domain string) string {
	d := strings.TrimSuffix(domain, ".")
	for _, n := range c.pNames {
		if strings.EqualFold(n, d) {
			return n
		}
	}
	for _, n := range c.pNames {
		if isSubdomain(n, d) {
			return n
		}
	}
	if len(c.pNames) > 0 {
		return c.pNames[0]
	}
	return "unknown"
}

func (c *recorder) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	name = libName(name)
	v, err := c.r.LookupMX(ctx, truncateName(name))
	err = c.note("MX", name, err)
	c.mu.Lock()
	c.mxs = append(c.mxs, mxAnswer{name: name, mxs: v, err: err})
	c.mu.Unlock()
	return v, err
}

// LookupIPAddr answers with the addresses of one family: A for an IPv4
// client (and for an exists term, marked by existsMarker), AAAA for IPv6.
// No address of that family is a not-found answer, which the library
// counts as a void lookup.
func (c *recorder) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	v4 := c.v4
	if h, ok := strings.CutPrefix(host, existsMarker); ok {
		host, v4 = h, true
	}
	host = libName(host)
	qtype := "AAAA"
	if v4 {
		qtype = "A"
	}
	addrs, err := c.lookupFamily(ctx, truncateName(host), v4)
	if err == nil && len(addrs) == 0 {
		err = &net.DNSError{Err: "no " + qtype + " record", Name: host, IsNotFound: true}
	}
	err = c.note(qtype, host, err)
	if err != nil {
		addrs = nil
	}
	c.mu.Lock()
	c.ips.add(ipAnswer{name: host, v4: v4, addrs: addrs, err: err}, c.ipBuf[:])
	c.mu.Unlock()
	return addrs, err
}

// lookupFamily returns host's addresses of one family.
func (c *recorder) lookupFamily(ctx context.Context, host string, v4 bool) ([]net.IPAddr, error) {
	if fl, ok := c.r.(familyLookuper); ok {
		network := "ip6"
		if v4 {
			network = "ip4"
		}
		addrs, err := fl.LookupNetIP(ctx, network, host)
		out := make([]net.IPAddr, 0, len(addrs))
		for _, a := range addrs {
			out = append(out, net.IPAddr{IP: net.IP(a.Unmap().AsSlice())})
		}
		return out, err
	}
	all, err := c.r.LookupIPAddr(ctx, host)
	// Filter in place: the slice is ours (the resolver returns a copy).
	out := all[:0]
	for _, a := range all {
		if (a.IP.To4() != nil) == v4 {
			if v4 {
				a.IP = a.IP.To4()
			}
			out = append(out, a)
		}
	}
	if len(out) > 0 {
		// Our family answered; a failure can only be the other's.
		return out, nil
	}
	return nil, err
}

func (c *recorder) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	v, err := c.r.LookupAddr(ctx, addr)
	err = c.note("PTR", addr, err)
	c.mu.Lock()
	c.ptr = &ptrAnswer{names: v, err: err}
	c.mu.Unlock()
	return v, err
}

func (c *recorder) remember(a txtAnswer) {
	c.mu.Lock()
	c.txts = append(c.txts, a)
	c.mu.Unlock()
}

// note normalises err to a *net.DNSError and remembers it unless it only
// says the name has no such records.
func (c *recorder) note(qtype, name string, err error) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if !errors.As(err, &de) {
		// Not the resolver's own kind of error: a cancelled or expired
		// context, or something unforeseen. Either way the answer may come
		// another time, so it is temporary.
		de = &net.DNSError{
			Err:         err.Error(),
			Name:        name,
			IsTimeout:   errors.Is(err, context.DeadlineExceeded),
			IsTemporary: true,
		}
	}
	if !de.IsNotFound {
		c.mu.Lock()
		c.lastType, c.lastName, c.lastErr = qtype, name, de
		c.mu.Unlock()
	}
	return de
}

// problem describes the last failed lookup, "" if none failed.
func (c *recorder) problem(what string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastErr == nil {
		return ""
	}
	name := strings.TrimSuffix(c.lastName, ".")
	if c.lastErr.IsTimeout {
		return fmt.Sprintf("DNS timeout looking up %s %s", c.lastType, name)
	}
	return fmt.Sprintf("%s looking up %s %s: %s", what, c.lastType, name, c.lastErr.Err)
}

// isSubdomain reports whether name is domain or below it, on label
// boundaries, ASCII case-insensitively, trailing dots ignored.
func isSubdomain(name, domain string) bool {
	name, domain = strings.TrimSuffix(name, "."), strings.TrimSuffix(domain, ".")
	if len(name) < len(domain) || !strings.EqualFold(name[len(name)-len(domain):], domain) {
		return false
	}
	return len(name) == len(domain) || name[len(name)-len(domain)-1] == '.'
}
