package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/helo"
	"github.com/vouch-mail/vouch/checks/iprev"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter/config"
)

// exitFindings is vouch audit's status when a finding failed: a picky
// receiver would refuse or penalise this server's mail.
const exitFindings = 4

const auditHelp = `Usage: vouch audit --ip OUTBOUND_IP --helo NAME --domain SENDER_DOMAIN [--smtp HOST:PORT] [flags]

Checks your own outgoing mail server the way a picky receiver would: the
PTR of its IP, that the PTR name resolves back (FCrDNS), that its HELO name
is that name and resolves to the IP, SPF for your sender domain and for
the HELO name. With --smtp it also connects to your server and reports the
banner and EHLO names, the EHLO extensions (STARTTLS), and whether VRFY
and EXPN disclose addresses. Each finding is pass, warn or fail, with what
was seen and a one-line fix.

Exit status:
  0  every finding passed or only warns
  1  could not run (configuration or resolver error)
  2  usage error
  4  at least one finding failed

Flags (-flag and --flag are the same):
`

// auditEHLO is the name vouch audit introduces itself with: a reserved
// name (RFC 6761 .invalid) that says what the connection is.
const auditEHLO = "vouch-audit.invalid"

// auditNoSuchUser is a local part that should not exist anywhere; VRFY
// answering it differently from postmaster tells addresses apart.
const auditNoSuchUser = "vouch-audit-no-such-user"

type auditOptions struct {
	ip, helo, domain, smtp string
	configFile, dns        string
	timeout                time.Duration
	json                   bool
}

func parseAuditFlags(args []string, stderr io.Writer) (*auditOptions, error) {
	fs := flag.NewFlagSet("vouch audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o auditOptions
	fs.StringVar(&o.ip, "ip", "", "your server's outgoing `IP` address (required)")
	fs.StringVar(&o.helo, "helo", "", "the HELO/EHLO `name` your server sends (required)")
	fs.StringVar(&o.domain, "domain", "", "your envelope sender `domain` (required)")
	fs.StringVar(&o.smtp, "smtp", "", "also talk SMTP to your server at `HOST:PORT` (port 25 if left out)")
	fs.StringVar(&o.configFile, "config", "", "configuration `file` (YAML) for the DNS settings; without it, the embedded defaults")
	fs.StringVar(&o.dns, "dns", "", "ask the DNS server at `HOST:PORT` instead of dns.servers / resolv.conf")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "bound on each DNS check and each SMTP step")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of text")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), auditHelp)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := requireFlags(fs, "ip", "helo", "domain"); err != nil {
		return nil, err
	}
	switch {
	case net.ParseIP(o.ip) == nil:
		return nil, fmt.Errorf("--ip %q is not an IP address", o.ip)
	case o.timeout <= 0:
		return nil, fmt.Errorf("--timeout must be positive")
	}
	o.domain = strings.TrimSuffix(o.domain, ".")
	if o.smtp != "" {
		if _, _, err := net.SplitHostPort(o.smtp); err != nil {
			o.smtp = net.JoinHostPort(strings.Trim(o.smtp, "[]"), "25")
		}
	}
	return &o, nil
}

func auditCommand(args []string, stdout, stderr io.Writer) int {
	o, err := parseAuditFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "vouch audit:", err)
		fmt.Fprintln(stderr, "Run 'vouch audit -h' for help.")
		return exitUsage
	}
	cfg, res, err := loadConfig(o.configFile, o.dns)
	if err != nil {
		fmt.Fprintln(stderr, "vouch audit: configuration not loaded:")
		fmt.Fprintln(stderr, err)
		return exitError
	}
	rep := runAudit(context.Background(), o, cfg, res)
	if err := printReport(rep, o.json, stdout); err != nil {
		fmt.Fprintln(stderr, "vouch audit:", err)
		return exitError
	}
	return rep.ExitStatus
}

// finding is one line of the audit. ID and Status are stable words.
type finding struct {
	ID     string `json:"id"`
	Status string `json:"status"` // pass, warn, fail
	Seen   string `json:"seen"`
	Fix    string `json:"fix,omitempty"`
}

const (
	statusPass = "pass"
	statusWarn = "warn"
	statusFail = "fail"
)

type auditReport struct {
	IP       string         `json:"ip"`
	HELO     string         `json:"helo"`
	Domain   string         `json:"domain"`
	SMTP     string         `json:"smtp,omitempty"`
	Findings []finding      `json:"findings"`
	Dialogue []smtpStep     `json:"smtp_dialogue,omitempty"`
	Summary  map[string]int `json:"summary"`
	// ExitStatus is what vouch audit exits with.
	ExitStatus int `json:"exit_status"`
}

func (r *auditReport) add(id, status, seen, fix string) {
	if status == statusPass {
		fix = ""
	}
	r.Findings = append(r.Findings, finding{ID: id, Status: status, Seen: seen, Fix: fix})
}

// auditor holds what the findings share.
type auditor struct {
	o     *auditOptions
	res   dns.Lookuper
	ip    net.IP
	ipStr string
	// rr is "ip4:" or "ip6:"; a is "A" or "AAAA": the IP's family in an
	// SPF term and a DNS record.
	rr, a string
	rep   auditReport
}

func runAudit(ctx context.Context, o *auditOptions, cfg *config.Config, res dns.Lookuper) auditReport {
	ip := net.ParseIP(o.ip)
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	a := &auditor{o: o, res: res, ip: ip, ipStr: ip.String(), rr: "ip4:", a: "A"}
	if ip.To4() == nil {
		a.rr, a.a = "ip6:", "AAAA"
	}
	a.rep = auditReport{IP: a.ipStr, HELO: o.helo, Domain: o.domain, SMTP: o.smtp, Findings: []finding{}}

	dctx, cancel := context.WithTimeout(ctx, o.timeout)
	rev := iprev.Check(dctx, res, ip, iprev.Options{MaxPTR: cfg.Checks.Iprev.MaxPTR})
	cancel()
	a.ptr(rev)
	a.fcrdns(rev)
	dctx, cancel = context.WithTimeout(ctx, o.timeout)
	h := helo.Check(dctx, res, o.helo, ip, rev)
	cancel()
	a.heloRDNS(rev, h)
	a.heloResolves(ctx)
	opts := spf.Options{LookupLimit: uint(cfg.Checks.SPF.LookupLimit), VoidLookupLimit: uint(cfg.Checks.SPF.VoidLookupLimit)}
	dctx, cancel = context.WithTimeout(ctx, o.timeout)
	a.spfDomain(dctx, spf.CheckMailFrom(dctx, res, ip, o.helo, "postmaster@"+o.domain, opts))
	cancel()
	dctx, cancel = context.WithTimeout(ctx, o.timeout)
	a.spfHelo(dctx, spf.CheckHelo(dctx, res, ip, o.helo, opts))
	cancel()
	if o.smtp != "" {
		a.smtpFindings(rev, probeSMTP(o.smtp, o.timeout))
	}

	a.rep.Summary = map[string]int{statusPass: 0, statusWarn: 0, statusFail: 0}
	for _, f := range a.rep.Findings {
		a.rep.Summary[f.Status]++
	}
	if a.rep.Summary[statusFail] > 0 {
		a.rep.ExitStatus = exitFindings
	}
	return a.rep
}

// wantName is the host name the fixes suggest: the HELO name when it is
// one, since that is the name the server calls itself.
func (a *auditor) wantName() string {
	if kind, name, _ := helo.Parse(a.o.helo); kind == helo.FQDN {
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
		a.rep.add("ptr", statusFail, a.ipStr+" has no PTR record", set)
	case len(rev.PTRNames) == 0:
		a.rep.add("ptr", statusFail, "PTR lookup of "+a.ipStr+" failed: "+errText(rev.Err),
			"make the reverse zone of "+a.ipStr+" answer with one PTR record; "+set)
	case len(rev.PTRNames) > 1:
		a.rep.add("ptr", statusWarn, a.ipStr+" has several PTR names: "+strings.Join(rev.PTRNames, ", ")+"; receivers may use any",
			"keep one PTR record: "+set)
	default:
		a.rep.add("ptr", statusPass, a.ipStr+" has PTR "+rev.PTRNames[0], "")
	}
}

func (a *auditor) fcrdns(rev iprev.Result) {
	if len(rev.PTRNames) == 0 {
		a.rep.add("fcrdns", statusFail, "no PTR name to resolve back",
			fmt.Sprintf("set the PTR first (see ptr), and an %s record %s -> %s", a.a, a.wantName(), a.ipStr))
		return
	}
	var seen []string
	for _, n := range rev.PTRNames {
		addrs := ipStrings(rev.Forward[n])
		switch {
		case contains(rev.Confirmed, n):
			seen = append(seen, n+" -> "+strings.Join(addrs, ", "))
		case len(addrs) == 0:
			seen = append(seen, n+" has no address")
		default:
			seen = append(seen, n+" -> "+strings.Join(addrs, ", ")+" (not "+a.ipStr+")")
		}
	}
	switch rev.Verdict {
	case iprev.Pass:
		a.rep.add("fcrdns", statusPass, strings.Join(seen, "; "), "")
	case iprev.Unconfirmed:
		a.rep.add("fcrdns", statusFail, strings.Join(seen, "; "),
			fmt.Sprintf("add an %s record %s -> %s", a.a, rev.PTRNames[0], a.ipStr))
	default:
		a.rep.add("fcrdns", statusFail, strings.Join(seen, "; ")+": "+errText(rev.Err),
			fmt.Sprintf("make the DNS of %s answer, with an %s record -> %s", rev.PTRNames[0], a.a, a.ipStr))
	}
}

func (a *auditor) heloRDNS(rev iprev.Result, h helo.Result) {
	name := rdnsName(rev)
	fix := "set your MTA's HELO name (Postfix: smtp_helo_name / myhostname) to " + name
	if name == "" {
		fix = fmt.Sprintf("set the PTR of %s (see ptr), then your MTA's HELO name (Postfix: smtp_helo_name / myhostname) to that name", a.ipStr)
	}
	shown := show(a.o.helo)
	switch h.Verdict {
	case helo.Match:
		a.rep.add("helo_rdns", statusPass, "HELO "+shown+" is the forward-confirmed rDNS name", "")
	case helo.Invalid:
		a.rep.add("helo_rdns", statusFail, "HELO "+shown+" is not a fully qualified host name", fix)
	case helo.LiteralMismatch:
		a.rep.add("helo_rdns", statusFail, "HELO "+shown+" is an address literal of another IP", fix)
	case helo.Literal:
		a.rep.add("helo_rdns", statusWarn, "HELO "+shown+" is an address literal, not the rDNS name", fix)
	case helo.TempError:
		a.rep.add("helo_rdns", statusFail, "HELO "+shown+" could not be checked: "+errText(h.Err), "retry; the DNS of the names involved must answer")
	default:
		switch {
		case name == "":
			a.rep.add("helo_rdns", statusWarn, "HELO "+shown+": "+a.ipStr+" has no rDNS name to match", fix)
		case len(rev.Confirmed) == 0 && strings.EqualFold(h.Name, name):
			a.rep.add("helo_rdns", statusWarn, "HELO "+shown+" is the PTR name, but that name does not resolve back (see fcrdns)",
				fmt.Sprintf("add an %s record %s -> %s", a.a, name, a.ipStr))
		default:
			a.rep.add("helo_rdns", statusWarn, "HELO "+shown+" is not the rDNS name "+name, fix)
		}
	}
}

func (a *auditor) heloResolves(ctx context.Context) {
	kind, name, _ := helo.Parse(a.o.helo)
	shown := show(a.o.helo)
	fix := fmt.Sprintf("add an %s record %s -> %s", a.a, name, a.ipStr)
	switch kind {
	case helo.AddressLiteral:
		a.rep.add("helo_resolves", statusWarn, "HELO "+shown+" is an address literal: no name to resolve",
			"send a host name as HELO (Postfix: smtp_helo_name), one that resolves to "+a.ipStr)
		return
	case helo.Bad:
		a.rep.add("helo_resolves", statusFail, "HELO "+shown+" is not a host name: receivers cannot resolve it",
			"send a fully qualified host name as HELO (Postfix: smtp_helo_name), one that resolves to "+a.ipStr)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, a.o.timeout)
	defer cancel()
	addrs, err := a.res.LookupIPAddr(dctx, name)
	var ips []string
	for _, ad := range addrs {
		if ad.IP.Equal(a.ip) {
			a.rep.add("helo_resolves", statusPass, name+" -> "+ad.IP.String(), "")
			return
		}
		ips = append(ips, ad.IP.String())
	}
	var de *net.DNSError
	switch {
	case len(ips) > 0:
		a.rep.add("helo_resolves", statusFail, name+" -> "+strings.Join(ips, ", ")+" (not "+a.ipStr+")", fix)
	case errors.As(err, &de) && de.IsNotFound:
		a.rep.add("helo_resolves", statusFail, name+" does not resolve ("+de.Err+")", fix)
	default:
		a.rep.add("helo_resolves", statusFail, name+" could not be resolved: "+errText(err), fix)
	}
}

// spfSeen describes an SPF result with the record that gave it.
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
		what += "; record " + quoteRecord(chain[0].Records[0])
	}
	return what
}

func (a *auditor) spfDomain(ctx context.Context, s spf.Result) {
	d := a.o.domain
	seen := spfSeen(ctx, a.res, s)
	add := fmt.Sprintf("add %s%s to the SPF record of %s", a.rr, a.ipStr, d)
	switch s.Verdict {
	case spf.Pass:
		a.rep.add("spf", statusPass, seen, "")
	case spf.Fail, spf.SoftFail:
		a.rep.add("spf", statusFail, seen, add)
	case spf.Neutral:
		a.rep.add("spf", statusWarn, seen, add)
	case spf.None:
		fix := fmt.Sprintf("publish an SPF record listing every server that sends for %s, e.g. %s TXT \"v=spf1 %s%s -all\"", d, d, a.rr, a.ipStr)
		if s.Domain == "" {
			fix = "give --domain your envelope sender domain, e.g. example.com"
		}
		a.rep.add("spf", statusFail, seen, fix)
	case spf.PermError:
		a.rep.add("spf", statusFail, seen, "correct the SPF record of "+d+" ("+s.Problem+")")
	default:
		a.rep.add("spf", statusFail, seen, "the DNS servers of "+d+" must answer ("+s.Problem+")")
	}
}

func (a *auditor) spfHelo(ctx context.Context, s spf.Result) {
	h := s.Domain
	if h == "" {
		a.rep.add("spf_helo", statusWarn, "HELO "+show(a.o.helo)+" is not a domain name: no SPF to check",
			"send a fully qualified host name as HELO (Postfix: smtp_helo_name)")
		return
	}
	seen := spfSeen(ctx, a.res, s)
	add := fmt.Sprintf("add %s%s to the SPF record of %s", a.rr, a.ipStr, h)
	switch s.Verdict {
	case spf.Pass:
		a.rep.add("spf_helo", statusPass, seen, "")
	case spf.None:
		a.rep.add("spf_helo", statusWarn, seen, fmt.Sprintf("publish %s TXT \"v=spf1 %s%s -all\" (SPF for bounces, which have no sender domain)", h, a.rr, a.ipStr))
	case spf.Neutral:
		a.rep.add("spf_helo", statusWarn, seen, add)
	case spf.Fail, spf.SoftFail:
		a.rep.add("spf_helo", statusFail, seen, add)
	case spf.PermError:
		a.rep.add("spf_helo", statusFail, seen, "correct the SPF record of "+h+" ("+s.Problem+")")
	default:
		a.rep.add("spf_helo", statusFail, seen, "the DNS servers of "+h+" must answer ("+s.Problem+")")
	}
}

func errText(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// smtpStep is one exchange of the SMTP dialogue: the command sent ("" for
// the greeting) and the reply lines as received (CRLF removed).
type smtpStep struct {
	Command string   `json:"command"`
	Code    int      `json:"code,omitempty"`
	Reply   []string `json:"reply,omitempty"`
	Error   string   `json:"error,omitempty"`
	// text is each reply line's text, after the code.
	text []string
}

// smtpProbe is what the SMTP dialogue showed.
type smtpProbe struct {
	addr    string
	dialErr error
	steps   []smtpStep
}

// step returns the exchange for command, nil if it did not happen.
func (p *smtpProbe) step(command string) *smtpStep {
	for i := range p.steps {
		if p.steps[i].Command == command {
			return &p.steps[i]
		}
	}
	return nil
}

// probeSMTP greets the server, sends EHLO, VRFY and EXPN, and quits. Each
// step is bounded by timeout. It stops at the first error or 421.
func probeSMTP(addr string, timeout time.Duration) *smtpProbe {
	p := &smtpProbe{addr: addr}
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		p.dialErr = err
		return p
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 4096)
	exchange := func(command string) (smtpReply, bool) {
		st := smtpStep{Command: command}
		conn.SetDeadline(time.Now().Add(timeout))
		if command != "" {
			if _, err := io.WriteString(conn, command+"\r\n"); err != nil {
				st.Error = err.Error()
				p.steps = append(p.steps, st)
				return smtpReply{}, false
			}
		}
		rep, err := readReply(br)
		st.Code, st.Reply, st.text = rep.Code, rep.lines(), rep.Text
		if err != nil {
			st.Error = err.Error()
		}
		p.steps = append(p.steps, st)
		return rep, err == nil && rep.Code != 421
	}
	banner, ok := exchange("")
	if !ok || banner.Code != 220 {
		if ok {
			exchange("QUIT")
		}
		return p
	}
	for _, cmd := range []string{"EHLO " + auditEHLO, "VRFY postmaster", "VRFY " + auditNoSuchUser, "EXPN postmaster", "QUIT"} {
		if _, ok := exchange(cmd); !ok {
			break
		}
	}
	return p
}

func (a *auditor) smtpFindings(rev iprev.Result, p *smtpProbe) {
	a.rep.Dialogue = p.steps
	if p.dialErr != nil {
		a.rep.add("smtp_connect", statusFail, "cannot connect to "+p.addr+": "+p.dialErr.Error(),
			"check the address, that your MTA listens on it, and that no firewall is in the way")
		return
	}
	banner := p.step("")
	switch {
	case banner == nil || banner.Error != "":
		a.rep.add("smtp_connect", statusFail, "no greeting from "+p.addr+": "+stepError(banner),
			"check that an SMTP server listens on "+p.addr)
		return
	case banner.Code != 220:
		a.rep.add("smtp_connect", statusFail, p.addr+" greets with "+firstLine(banner),
			"a 220 greeting is needed for mail to be delivered; check your MTA's client restrictions and logs")
		return
	}
	a.rep.add("smtp_connect", statusPass, p.addr+" greets with "+firstLine(banner), "")
	names := rev.Confirmed
	if len(names) == 0 {
		names = rev.PTRNames
	}
	a.nameFinding("smtp_banner", "banner", firstWord(banner.text[0]), names,
		"set the banner name (Postfix: myhostname, used by smtpd_banner)")

	ehlo := p.step("EHLO " + auditEHLO)
	switch {
	case ehlo == nil || ehlo.Error != "":
		a.rep.add("smtp_ehlo", statusFail, "no answer to EHLO: "+stepError(ehlo), "check your MTA's logs")
		return
	case ehlo.Code != 250:
		a.rep.add("smtp_ehlo", statusWarn, "EHLO "+auditEHLO+" refused: "+firstLine(ehlo),
			"check your MTA's HELO restrictions (Postfix: smtpd_helo_restrictions)")
	default:
		a.nameFinding("smtp_ehlo", "EHLO", firstWord(ehlo.text[0]), names,
			"set the name your MTA answers EHLO with (Postfix: myhostname)")
		var exts []string
		tls := false
		for _, l := range ehlo.text[1:] {
			exts = append(exts, l)
			if strings.EqualFold(firstWord(l), "STARTTLS") {
				tls = true
			}
		}
		if tls {
			a.rep.add("smtp_starttls", statusPass, "STARTTLS offered; extensions: "+strings.Join(exts, ", "), "")
		} else {
			a.rep.add("smtp_starttls", statusWarn, "no STARTTLS: mail to this server travels in clear; extensions: "+strings.Join(exts, ", "),
				"offer STARTTLS (Postfix: smtpd_tls_cert_file, smtpd_tls_key_file, smtpd_tls_security_level = may; Sendmail: confSERVER_CERT, confSERVER_KEY)")
		}
	}

	a.vrfy(p.step("VRFY postmaster"), p.step("VRFY "+auditNoSuchUser))
	a.expn(p.step("EXPN postmaster"))
}

// nameFinding compares the name a server calls itself with the IP's rDNS.
func (a *auditor) nameFinding(id, what, name string, rdns []string, fix string) {
	shown := show(name)
	switch {
	case len(rdns) == 0:
		a.rep.add(id, statusWarn, fmt.Sprintf("%s name %s; %s has no rDNS name to compare with", what, shown, a.ipStr),
			fmt.Sprintf("set the PTR of %s (see ptr) to %s", a.ipStr, shown))
	case containsFold(rdns, strings.TrimSuffix(name, ".")):
		a.rep.add(id, statusPass, fmt.Sprintf("%s name %s is the rDNS name of %s", what, shown, a.ipStr), "")
	default:
		a.rep.add(id, statusWarn, fmt.Sprintf("%s name %s is not the rDNS name %s of %s", what, shown, rdns[0], a.ipStr),
			fix+" to "+rdns[0])
	}
}

func (a *auditor) vrfy(known, unknown *smtpStep) {
	fix := "disable VRFY (Postfix: disable_vrfy_command = yes; Sendmail: PrivacyOptions novrfy)"
	if known == nil || known.Error != "" {
		a.rep.add("smtp_vrfy", statusWarn, "no answer to VRFY postmaster: "+stepError(known), "")
		return
	}
	seen := "VRFY postmaster: " + firstLine(known)
	if unknown != nil && unknown.Error == "" {
		seen += "; VRFY " + auditNoSuchUser + ": " + firstLine(unknown)
	}
	switch {
	case discloses(known.Code) || unknown != nil && discloses(unknown.Code):
		a.rep.add("smtp_vrfy", statusFail, seen+" (250/251 disclose addresses)", fix)
	case unknown != nil && unknown.Error == "" && known.Code/100 == 2 && unknown.Code/100 == 5:
		a.rep.add("smtp_vrfy", statusWarn, seen+" (VRFY tells existing addresses from unknown ones)", fix)
	default:
		a.rep.add("smtp_vrfy", statusPass, seen, "")
	}
}

func (a *auditor) expn(st *smtpStep) {
	switch {
	case st == nil || st.Error != "":
		a.rep.add("smtp_expn", statusWarn, "no answer to EXPN postmaster: "+stepError(st), "")
	case discloses(st.Code):
		a.rep.add("smtp_expn", statusFail, "EXPN postmaster: "+firstLine(st)+" (discloses list members)",
			"disable EXPN (Sendmail: PrivacyOptions noexpn; Postfix has no EXPN)")
	default:
		a.rep.add("smtp_expn", statusPass, "EXPN postmaster: "+firstLine(st), "")
	}
}

// discloses: 250 and 251 confirm an address (RFC 5321 §3.5.3); 252 is
// "cannot verify, but will try".
func discloses(code int) bool { return code == 250 || code == 251 }

func stepError(st *smtpStep) string {
	if st == nil {
		return "the connection ended before"
	}
	return st.Error
}

func firstLine(st *smtpStep) string {
	if len(st.Reply) == 0 {
		return strconv.Itoa(st.Code)
	}
	return st.Reply[0]
}

// firstWord is the first space-separated word of s (a reply's text).
func firstWord(s string) string {
	s = strings.TrimLeft(s, " ")
	if i := strings.IndexByte(s, ' '); i >= 0 {
		return s[:i]
	}
	return s
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// Bounds on a server's reply: RFC 5321 §4.5.3.1.5 allows 512 octets a
// line; the bounds are lenient, but a server cannot make us hold more.
const (
	maxReplyLine  = 2048
	maxReplyLines = 100
)

// smtpReply is one SMTP reply (RFC 5321 §4.2): its code and the text of
// each line, without the code and separator.
type smtpReply struct {
	Code int
	Text []string
}

// lines renders the reply as it was sent.
func (r smtpReply) lines() []string {
	out := make([]string, len(r.Text))
	for i, t := range r.Text {
		sep := "-"
		if i == len(r.Text)-1 {
			sep = " "
		}
		out[i] = strings.TrimRight(strconv.Itoa(r.Code)+sep+t, " ")
	}
	return out
}

// readReply reads one reply: lines "NNN-text" ended by "NNN text" or
// "NNN". Every line must carry the same code, 200 to 599. A bare LF ends
// a line as well as CRLF. The server is untrusted: text is kept as sent
// (display escapes it) and sizes are bounded.
func readReply(r *bufio.Reader) (smtpReply, error) {
	var rep smtpReply
	for {
		line, err := readLine(r)
		if err != nil {
			return rep, err
		}
		if len(line) < 3 || !isDigits3(line) || line[0] < '2' || line[0] > '5' {
			return rep, fmt.Errorf("malformed reply line %s", strconv.QuoteToASCII(line))
		}
		code, _ := strconv.Atoi(line[:3])
		sep := byte(' ')
		if len(line) > 3 {
			sep = line[3]
		}
		if sep != ' ' && sep != '-' {
			return rep, fmt.Errorf("malformed reply line %s", strconv.QuoteToASCII(line))
		}
		if rep.Code != 0 && code != rep.Code {
			return rep, fmt.Errorf("reply lines with different codes %d and %d", rep.Code, code)
		}
		rep.Code = code
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		rep.Text = append(rep.Text, text)
		if sep == ' ' {
			return rep, nil
		}
		if len(rep.Text) >= maxReplyLines {
			return rep, fmt.Errorf("reply longer than %d lines", maxReplyLines)
		}
	}
}

func isDigits3(s string) bool {
	return '0' <= s[0] && s[0] <= '9' && '0' <= s[1] && s[1] <= '9' && '0' <= s[2] && s[2] <= '9'
}

// readLine reads up to LF, at most maxReplyLine octets, and drops the
// line end.
func readLine(r *bufio.Reader) (string, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > maxReplyLine+2 {
			return "", fmt.Errorf("reply line longer than %d octets", maxReplyLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		break
	}
	line := strings.TrimSuffix(string(buf), "\n")
	return strings.TrimSuffix(line, "\r"), nil
}

// showLine shows a line of our own text mixed with server or DNS text:
// as is when it is printable ASCII, quoted otherwise.
func showLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

func (r auditReport) writeText(w io.Writer) {
	head := fmt.Sprintf("audit of %s  helo %s  domain %s", r.IP, show(r.HELO), show(r.Domain))
	if r.SMTP != "" {
		head += "  smtp " + show(r.SMTP)
	}
	fmt.Fprintln(w, head)
	for _, f := range r.Findings {
		fmt.Fprintf(w, "%-4s  %-13s  %s\n", f.Status, f.ID, showLine(f.Seen))
		if f.Fix != "" {
			fmt.Fprintf(w, "%-4s  %-13s  fix: %s\n", "", "", showLine(f.Fix))
		}
	}
	if len(r.Dialogue) > 0 {
		fmt.Fprintf(w, "smtp dialogue with %s:\n", show(r.SMTP))
		for _, st := range r.Dialogue {
			if st.Command != "" {
				fmt.Fprintf(w, "  -> %s\n", showLine(st.Command))
			}
			for _, l := range st.Reply {
				fmt.Fprintf(w, "  <- %s\n", showLine(l))
			}
			if st.Error != "" {
				fmt.Fprintf(w, "  !! %s\n", showLine(st.Error))
			}
		}
	}
	fmt.Fprintf(w, "result: %d pass, %d warn, %d fail\n", r.Summary[statusPass], r.Summary[statusWarn], r.Summary[statusFail])
}
