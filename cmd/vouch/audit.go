package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/vouch-mail/vouch/checks/audit"
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
	fs.DurationVar(&o.timeout, "timeout", audit.DefaultTimeout, "bound on each DNS check and each SMTP step")
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
	if o.smtp != "" {
		if _, _, err := net.SplitHostPort(o.smtp); err != nil {
			o.smtp = net.JoinHostPort(strings.Trim(o.smtp, "[]"), "25")
		}
	}
	return &o, nil
}

func auditCommand(args []string, stdout, stderr io.Writer) int {
	o, err := parseAuditFlags(args, stderr)
	if err != nil {
		return usageError("audit", err, stderr)
	}
	cfg, res, err := loadConfig(o.configFile, o.dns)
	if err != nil {
		fmt.Fprintln(stderr, "vouch audit: configuration not loaded:")
		fmt.Fprintln(stderr, err)
		return exitError
	}
	rep := auditReport{Report: audit.Run(context.Background(), res, audit.Options{
		IP: net.ParseIP(o.ip), HELO: o.helo, Domain: o.domain, SMTP: o.smtp, Timeout: o.timeout,
		Iprev: cfg.Checks.Iprev.Options,
		SPF:   cfg.Checks.SPF.Options,
	})}
	if rep.Failed() {
		rep.ExitStatus = exitFindings
	}
	if err := printReport(rep, o.json, stdout); err != nil {
		fmt.Fprintln(stderr, "vouch audit:", err)
		return exitError
	}
	return rep.ExitStatus
}

// auditReport is what vouch audit prints: the audit's report and the
// status it exits with. Its JSON field names are documented in
// docs/tools.md and stable.
type auditReport struct {
	audit.Report
	ExitStatus int `json:"exit_status"`
}

func (r auditReport) WriteText(w io.Writer) {
	head := fmt.Sprintf("audit of %s  helo %s  domain %s", r.IP, audit.Quote(r.HELO), audit.Quote(r.Domain))
	if r.SMTP != "" {
		head += "  smtp " + audit.Quote(r.SMTP)
	}
	fmt.Fprintln(w, head)
	for _, f := range r.Findings {
		fmt.Fprintf(w, "%-4s  %-13s  %s\n", f.Status, f.ID, audit.QuoteLine(f.Seen))
		if f.Fix != "" {
			fmt.Fprintf(w, "%-4s  %-13s  fix: %s\n", "", "", audit.QuoteLine(f.Fix))
		}
	}
	if len(r.Dialogue) > 0 {
		fmt.Fprintf(w, "smtp dialogue with %s:\n", audit.Quote(r.SMTP))
		for _, st := range r.Dialogue {
			if st.Command != "" {
				fmt.Fprintf(w, "  -> %s\n", audit.QuoteLine(st.Command))
			}
			for _, l := range st.Reply {
				fmt.Fprintf(w, "  <- %s\n", audit.QuoteLine(l))
			}
			if st.Error != "" {
				fmt.Fprintf(w, "  !! %s\n", audit.QuoteLine(st.Error))
			}
		}
	}
	fmt.Fprintf(w, "result: %d pass, %d warn, %d fail\n", r.Summary[audit.Pass], r.Summary[audit.Warn], r.Summary[audit.Fail])
}
