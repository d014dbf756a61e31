package spf

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/vouch-mail/vouch/checks/dns"
)

// ChainEntry is one domain of an SPF record chain: the v=spf1 records it
// publishes, and how it was reached from the record above it.
type ChainEntry struct {
	Domain string `json:"domain"`
	// Via is "" for the identity's own domain, else "include" or
	// "redirect".
	Via string `json:"via,omitempty"`
	// Depth is 0 for the identity's domain, 1 for what its record names...
	Depth   int      `json:"depth"`
	Records []string `json:"txt"`
	Error   string   `json:"error,omitempty"`
}

// MaxChain bounds the domains fetched for one chain: RFC 7208 §4.6.4 lets
// an evaluation make at most 10 DNS-querying terms, plus the first lookup.
const MaxChain = 11

// Chain fetches the SPF record of domain and, depth first, of each
// include and redirect it names, for display. Loops and names with macros
// are not followed.
func Chain(ctx context.Context, r dns.Lookuper, domain string) []ChainEntry {
	out := []ChainEntry{}
	seen := map[string]bool{}
	var walk func(domain, via string, depth int)
	walk = func(domain, via string, depth int) {
		key := strings.ToLower(strings.TrimSuffix(domain, "."))
		if len(out) >= MaxChain || seen[key] {
			return
		}
		seen[key] = true
		rec := ChainEntry{Domain: domain, Via: via, Depth: depth, Records: []string{}}
		if strings.Contains(domain, "%") {
			rec.Error = "contains macros: not expanded here"
			out = append(out, rec)
			return
		}
		txts, err := r.LookupTXT(ctx, domain)
		for _, t := range txts {
			if IsRecord(t) {
				rec.Records = append(rec.Records, t)
			}
		}
		switch {
		case err != nil:
			rec.Error = describeDNSError(err)
		case len(rec.Records) == 0:
			rec.Error = "no SPF record"
		case len(rec.Records) > 1:
			rec.Error = "more than one SPF record"
		}
		var parsed *Record
		if len(rec.Records) == 1 {
			var perr error
			parsed, perr = ParseRecord(rec.Records[0])
			if perr != nil {
				rec.Error = "syntax error: " + perr.Error()
			}
		}
		out = append(out, rec)
		if parsed != nil {
			for _, t := range targets(parsed) {
				walk(t.domain, t.via, depth+1)
			}
		}
	}
	walk(domain, "", 0)
	return out
}

// IsRecord reports whether a TXT record is an SPF record: "v=spf1",
// any case, then a space or the end (RFC 7208 §4.5).
func IsRecord(txt string) bool {
	return len(txt) >= 6 && strings.EqualFold(txt[:6], "v=spf1") && (len(txt) == 6 || txt[6] == ' ')
}

type target struct{ via, domain string }

// targets lists the domains a parsed record's include mechanisms and
// redirect modifier name, in record order with the redirect last (it
// applies only when nothing else matched).
func targets(rec *Record) []target {
	var out []target
	for i := range rec.Terms {
		if t := &rec.Terms[i]; !t.Modifier && t.Name == "include" {
			out = append(out, target{"include", t.Domain})
		}
	}
	if rec.Redirect != nil {
		out = append(out, target{"redirect", rec.Redirect.Domain})
	}
	return out
}

// describeDNSError words a lookup error briefly.
func describeDNSError(err error) string {
	var de *net.DNSError
	if errors.As(err, &de) {
		switch {
		case de.IsNotFound:
			return de.Err
		case de.IsTimeout:
			return "DNS timeout"
		}
		return "DNS error: " + de.Err
	}
	return err.Error()
}
