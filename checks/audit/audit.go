// Package audit is the postmaster's self-check of their own outgoing mail
// server, the checks a picky receiver makes of it: the PTR of its IP,
// that the PTR name resolves back (FCrDNS), that its HELO name is that
// name and resolves to the IP, SPF for the sender domain and for the HELO
// name; and, when asked, what its SMTP server shows a client (banner and
// EHLO names, STARTTLS, VRFY, EXPN). Each finding is pass, warn or fail,
// with what was seen and a one-line fix.
//
// It runs the daemon's own checks (checks/iprev, checks/helo, checks/spf).
// Texts that quote names or replies from DNS or the server quote them with
// Quote, so a report is safe to print.
package audit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/helo"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
)

// Options say what to audit and how.
type Options struct {
	IP   net.IP // the server's outgoing address
	HELO string // the HELO/EHLO name it sends
	// Domain is the envelope sender domain, checked as MAIL FROM
	// postmaster@Domain.
	Domain string
	// SMTP is the HOST:PORT of the server to talk SMTP to; "" for none.
	SMTP string
	// Timeout bounds each DNS check and each SMTP step; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Iprev and SPF are the daemon's settings for those checks.
	Iprev iprev.Options
	SPF   spf.Options
}

// DefaultTimeout is Options.Timeout when it is zero, and vouch audit's
// --timeout default.
const DefaultTimeout = 10 * time.Second

// Status is a finding's verdict.
type Status string

const (
	Pass Status = "pass"
	Warn Status = "warn" // a receiver may penalise it
	Fail Status = "fail" // a picky receiver refuses or penalises the mail
)

// Finding is one line of the audit. ID and Status are stable words.
type Finding struct {
	ID     string `json:"id"`
	Status Status `json:"status"`
	Seen   string `json:"seen"`
	Fix    string `json:"fix,omitempty"`
}

// Report is what Run found. Its JSON field names are vouch audit's,
// documented in docs/tools.md and stable.
type Report struct {
	IP       string         `json:"ip"`
	HELO     string         `json:"helo"`
	Domain   string         `json:"domain"`
	SMTP     string         `json:"smtp,omitempty"`
	Findings []Finding      `json:"findings"`
	Dialogue []Step         `json:"smtp_dialogue,omitempty"`
	Summary  map[Status]int `json:"summary"`
}

// Failed reports whether any finding failed.
func (r Report) Failed() bool { return r.Summary[Fail] > 0 }

func (r *Report) add(id string, status Status, seen, fix string) {
	if status == Pass {
		fix = ""
	}
	r.Findings = append(r.Findings, Finding{ID: id, Status: status, Seen: seen, Fix: fix})
}

// auditor holds what the findings share.
type auditor struct {
	o     Options
	res   dns.Lookuper
	ip    net.IP
	ipStr string
	// rr is "ip4:" or "ip6:"; a is "A" or "AAAA": the IP's family in an
	// SPF term and a DNS record.
	rr, a string
	rep   Report
}

// Run audits the server o describes, asking r. Each DNS check and each
// SMTP step is bounded by o.Timeout; ctx bounds the whole.
func Run(ctx context.Context, r dns.Lookuper, o Options) Report {
	ip := o.IP
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	o.Domain = strings.TrimSuffix(o.Domain, ".")
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	a := &auditor{o: o, res: r, ip: ip, ipStr: ip.String(), rr: "ip4:", a: "A"}
	if ip.To4() == nil {
		a.rr, a.a = "ip6:", "AAAA"
	}
	a.rep = Report{IP: a.ipStr, HELO: o.HELO, Domain: o.Domain, SMTP: o.SMTP, Findings: []Finding{}}

	dctx, cancel := context.WithTimeout(ctx, o.Timeout)
	rev := iprev.Check(dctx, r, ip, o.Iprev)
	cancel()
	a.ptr(rev)
	a.fcrdns(rev)
	dctx, cancel = context.WithTimeout(ctx, o.Timeout)
	h := helo.Check(dctx, r, o.HELO, ip, rev)
	cancel()
	a.heloRDNS(rev, h)
	a.heloResolves(ctx)
	dctx, cancel = context.WithTimeout(ctx, o.Timeout)
	a.spfDomain(dctx, spf.CheckMailFrom(dctx, r, ip, o.HELO, "postmaster@"+o.Domain, o.SPF))
	cancel()
	dctx, cancel = context.WithTimeout(ctx, o.Timeout)
	a.spfHelo(dctx, spf.CheckHelo(dctx, r, ip, o.HELO, o.SPF))
	cancel()
	if o.SMTP != "" {
		a.smtpFindings(rev, probe(ctx, o.SMTP, o.Timeout, probeCommands))
	}

	a.rep.Summary = map[Status]int{Pass: 0, Warn: 0, Fail: 0}
	for _, f := range a.rep.Findings {
		a.rep.Summary[f.Status]++
	}
	return a.rep
}

// wantName is the host name the fixes suggest: the HELO name when it is
// one, since that is the name the server calls itself.
func (a *auditor) wantName() string {
	if kind, name, _ := helo.Parse(a.o.HELO); kind == helo.FQDN {
		return name
	}
	return "your server's host name"
}

// rdnsName is the name a receiver sees for the IP: the first confirmed
// PTR name, else the first PTR name, else "".
func rdnsName(rev iprev.Result) string {
	if len(rev.Confirmed) > 0 {
		return rev.Confirmed[0]
	}
	if len(rev.PTRNames) > 0 {
		return rev.PTRNames[0]
	}
	return ""
}

func (a *auditor) ptr(rev iprev.Result) {
	set := fmt.Sprintf("ask your provider (whoever owns the IP block) to set the PTR of %s to %s", a.ipStr, a.wantName())
	switch {
	case rev.Verdict == iprev.NoPTR:
		a.rep.add("ptr", Fail, a.ipStr+" has no PTR record", set)
	case len(rev.PTRNames) == 0:
		a.rep.add("ptr", Fail, "PTR lookup of "+a.ipStr+" failed: "+errText(rev.Err),
			"make the reverse zone of "+a.ipStr+" answer with one PTR record; "+set)
	case len(rev.PTRNames) > 1:
		a.rep.add("ptr", Warn, a.ipStr+" has several PTR names: "+strings.Join(rev.PTRNames, ", ")+"; receivers may use any",
			"keep one PTR record: "+set)
	default:
		a.rep.add("ptr", Pass, a.ipStr+" has PTR "+rev.PTRNames[0], "")
	}
}

func (a *auditor) fcrdns(rev iprev.Result) {
	if len(rev.PTRNames) == 0 {
		a.rep.add("fcrdns", Fail, "no PTR name to resolve back",
			fmt.Sprintf("set the PTR first (see ptr), and an %s record %s -> %s", a.a, a.wantName(), a.ipStr))
		return
	}
	var seen []string
	for _, n := range rev.PTRNames {
		addrs := joinIPs(rev.Forward[n])
		switch {
		case slices.Contains(rev.Confirmed, n):
			seen = append(seen, n+" -> "+addrs)
		case addrs == "":
			seen = append(seen, n+" has no address")
		default:
			seen = append(seen, n+" -> "+addrs+" (not "+a.ipStr+")")
		}
	}
	switch rev.Verdict {
	case iprev.Pass:
		a.rep.add("fcrdns", Pass, strings.Join(seen, "; "), "")
	case iprev.Unconfirmed:
		a.rep.add("fcrdns", Fail, strings.Join(seen, "; "),
			fmt.Sprintf("add an %s record %s -> %s", a.a, rev.PTRNames[0], a.ipStr))
	default:
		a.rep.add("fcrdns", Fail, strings.Join(seen, "; ")+": "+errText(rev.Err),
			fmt.Sprintf("make the DNS of %s answer, with an %s record -> %s", rev.PTRNames[0], a.a, a.ipStr))
	}
}

func (a *auditor) heloRDNS(rev iprev.Result, h helo.Result) {
	name := rdnsName(rev)
	fix := "set your MTA's HELO name (Postfix: smtp_helo_name / myhostname) to " + name
	if name == "" {
		fix = fmt.Sprintf("set the PTR of %s (see ptr), then your MTA's HELO name (Postfix: smtp_helo_name / myhostname) to that name", a.ipStr)
	}
	shown := Quote(a.o.HELO)
	switch h.Verdict {
	case helo.Match:
		a.rep.add("helo_rdns", Pass, "HELO "+shown+" is the forward-confirmed rDNS name", "")
	case helo.Invalid:
		a.rep.add("helo_rdns", Fail, "HELO "+shown+" is not a fully qualified host name", fix)
	case helo.LiteralMismatch:
		a.rep.add("helo_rdns", Fail, "HELO "+shown+" is an address literal of another IP", fix)
	case helo.Literal:
		a.rep.add("helo_rdns", Warn, "HELO "+shown+" is an address literal, not the rDNS name", fix)
	case helo.TempError:
		a.rep.add("helo_rdns", Fail, "HELO "+shown+" could not be checked: "+errText(h.Err), "retry; the DNS of the names involved must answer")
	default:
		switch {
		case name == "":
			a.rep.add("helo_rdns", Warn, "HELO "+shown+": "+a.ipStr+" has no rDNS name to match", fix)
		case len(rev.Confirmed) == 0 && strings.EqualFold(h.Name, name):
			a.rep.add("helo_rdns", Warn, "HELO "+shown+" is the PTR name, but that name does not resolve back (see fcrdns)",
				fmt.Sprintf("add an %s record %s -> %s", a.a, name, a.ipStr))
		default:
			a.rep.add("helo_rdns", Warn, "HELO "+shown+" is not the rDNS name "+name, fix)
		}
	}
}

func (a *auditor) heloResolves(ctx context.Context) {
	kind, name, _ := helo.Parse(a.o.HELO)
	shown := Quote(a.o.HELO)
	fix := fmt.Sprintf("add an %s record %s -> %s", a.a, name, a.ipStr)
	switch kind {
	case helo.AddressLiteral:
		a.rep.add("helo_resolves", Warn, "HELO "+shown+" is an address literal: no name to resolve",
			"send a host name as HELO (Postfix: smtp_helo_name), one that resolves to "+a.ipStr)
		return
	case helo.Bad:
		a.rep.add("helo_resolves", Fail, "HELO "+shown+" is not a host name: receivers cannot resolve it",
			"send a fully qualified host name as HELO (Postfix: smtp_helo_name), one that resolves to "+a.ipStr)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, a.o.Timeout)
	defer cancel()
	addrs, err := a.res.LookupIPAddr(dctx, name)
	var ips []string
	for _, ad := range addrs {
		if ad.IP.Equal(a.ip) {
			a.rep.add("helo_resolves", Pass, name+" -> "+ad.IP.String(), "")
			return
		}
		ips = append(ips, ad.IP.String())
	}
	var de *net.DNSError
	switch {
	case len(ips) > 0:
		a.rep.add("helo_resolves", Fail, name+" -> "+strings.Join(ips, ", ")+" (not "+a.ipStr+")", fix)
	case errors.As(err, &de) && de.IsNotFound:
		a.rep.add("helo_resolves", Fail, name+" does not resolve ("+de.Err+")", fix)
	default:
		a.rep.add("helo_resolves", Fail, name+" could not be resolved: "+errText(err), fix)
	}
}

// spfSeen describes an SPF result with the record that gave it, quoted
// like a zone file's TXT.
func spfSeen(ctx context.Context, r dns.Lookuper, s spf.Result) string {
	var what string
	switch {
	case s.Mechanism == "default":
		what = s.Domain + ": " + string(s.Verdict) + ", no term matched"
	case s.Mechanism != "":
		what = s.Domain + ": " + string(s.Verdict) + ", " + s.Mechanism + " matched"
	case s.Domain == "":
		return string(s.Verdict) + ": " + s.Problem
	default:
		what = s.Domain + ": " + string(s.Verdict) + ", " + s.Problem
	}
	if chain := spf.Chain(ctx, r, s.Domain); len(chain) > 0 && len(chain[0].Records) == 1 {
		what += "; record " + strconv.QuoteToASCII(chain[0].Records[0])
	}
	return what
}

func (a *auditor) spfDomain(ctx context.Context, s spf.Result) {
	d := a.o.Domain
	seen := spfSeen(ctx, a.res, s)
	add := fmt.Sprintf("add %s%s to the SPF record of %s", a.rr, a.ipStr, d)
	switch s.Verdict {
	case spf.Pass:
		a.rep.add("spf", Pass, seen, "")
	case spf.Fail, spf.SoftFail:
		a.rep.add("spf", Fail, seen, add)
	case spf.Neutral:
		a.rep.add("spf", Warn, seen, add)
	case spf.None:
		fix := fmt.Sprintf("publish an SPF record listing every server that sends for %s, e.g. %s TXT \"v=spf1 %s%s -all\"", d, d, a.rr, a.ipStr)
		if s.Domain == "" {
			fix = "give --domain your envelope sender domain, e.g. example.com"
		}
		a.rep.add("spf", Fail, seen, fix)
	case spf.PermError:
		a.rep.add("spf", Fail, seen, "correct the SPF record of "+d+" ("+s.Problem+")")
	default:
		a.rep.add("spf", Fail, seen, "the DNS servers of "+d+" must answer ("+s.Problem+")")
	}
}

func (a *auditor) spfHelo(ctx context.Context, s spf.Result) {
	h := s.Domain
	if h == "" {
		a.rep.add("spf_helo", Warn, "HELO "+Quote(a.o.HELO)+" is not a domain name: no SPF to check",
			"send a fully qualified host name as HELO (Postfix: smtp_helo_name)")
		return
	}
	seen := spfSeen(ctx, a.res, s)
	add := fmt.Sprintf("add %s%s to the SPF record of %s", a.rr, a.ipStr, h)
	switch s.Verdict {
	case spf.Pass:
		a.rep.add("spf_helo", Pass, seen, "")
	case spf.None:
		a.rep.add("spf_helo", Warn, seen, fmt.Sprintf("publish %s TXT \"v=spf1 %s%s -all\" (SPF for bounces, which have no sender domain)", h, a.rr, a.ipStr))
	case spf.Neutral:
		a.rep.add("spf_helo", Warn, seen, add)
	case spf.Fail, spf.SoftFail:
		a.rep.add("spf_helo", Fail, seen, add)
	case spf.PermError:
		a.rep.add("spf_helo", Fail, seen, "correct the SPF record of "+h+" ("+s.Problem+")")
	default:
		a.rep.add("spf_helo", Fail, seen, "the DNS servers of "+h+" must answer ("+s.Problem+")")
	}
}

func errText(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

// joinIPs lists addresses as "a, b".
func joinIPs(ips []net.IP) string {
	var b strings.Builder
	for i, ip := range ips {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(ip.String())
	}
	return b.String()
}
