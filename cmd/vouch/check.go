package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/explain"
)

// Exit statuses of vouch check, beyond exitOK (accepted), exitError (could
// not run) and exitUsage: what the SMTP client is told.
const (
	exitTempFail = explain.ExitTempFail
	exitReject   = explain.ExitReject
)

const checkHelp = `Usage: vouch check --ip IP --helo NAME --from ADDR [flags]

Explains the decision vouch would take for one SMTP transaction, running
the daemon's own checks and policy, without an MTA: each check's result
and evidence, the action, the SMTP reply, the headers that would be added.
--from '' or --from '<>' is the null sender.

Exit status:
  0  accepted (also quarantined, dry-run and exempt: the client gets 250)
  1  could not run (configuration or resolver error)
  2  usage error
  3  tempfail: the client would get a 4xx reply
  4  reject: the client would get a 5xx reply

Flags (-flag and --flag are the same):
`

// checkOptions are vouch check's flags.
type checkOptions struct {
	ip, helo, from, rcpt string
	configFile, dns      string
	mtaName, auth        string
	json                 bool
}

func parseCheckFlags(args []string, stderr io.Writer) (*checkOptions, error) {
	fs := flag.NewFlagSet("vouch check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o checkOptions
	fs.StringVar(&o.ip, "ip", "", "client `IP` address (required)")
	fs.StringVar(&o.helo, "helo", "", "HELO/EHLO `name` the client sent (required)")
	fs.StringVar(&o.from, "from", "", "envelope sender `address` (required; '' or '<>' is the null sender)")
	fs.StringVar(&o.rcpt, "rcpt", "", "envelope recipient `address` (exempt recipients such as postmaster@ are accepted whatever the verdict)")
	fs.StringVar(&o.configFile, "config", "", "configuration `file` (YAML); without it, the embedded defaults")
	fs.StringVar(&o.dns, "dns", "", "ask the DNS server at `HOST:PORT` instead of dns.servers / resolv.conf")
	fs.StringVar(&o.mtaName, "mta-name", "", "the MTA's host `name` (Postfix myhostname, the j macro); default: this host's name")
	fs.StringVar(&o.auth, "auth", "", "SMTP AUTH `user` the client logged in as (default: none)")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of text")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), checkHelp)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := requireFlags(fs, "ip", "helo", "from"); err != nil {
		return nil, err
	}
	switch {
	case net.ParseIP(o.ip) == nil:
		return nil, fmt.Errorf("--ip %q is not an IP address", o.ip)
	}
	// go-milter hands the daemon addresses without their angle brackets.
	o.from = strings.Trim(o.from, "<>")
	o.rcpt = strings.Trim(o.rcpt, "<>")
	if o.mtaName == "" {
		o.mtaName = localHostname()
	}
	return &o, nil
}

func localHostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// loadConfig reads the file (or the embedded defaults) and points the
// resolver at dnsServer when one is given.
func loadConfig(file, dnsServer string) (*config.Config, *dns.Resolver, error) {
	cfg, err := loadFile(file)
	if err != nil {
		return nil, nil, err
	}
	if dnsServer != "" {
		cfg.DNS.Servers = []string{dnsServer}
		if err := cfg.Validate("command line"); err != nil {
			return nil, nil, err
		}
	}
	res, err := dns.New(cfg.DNS, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("resolver: %w", err)
	}
	return cfg, res, nil
}

func checkCommand(args []string, stdout, stderr io.Writer) int {
	o, err := parseCheckFlags(args, stderr)
	if err != nil {
		return usageError("check", err, stderr)
	}
	cfg, res, err := loadConfig(o.configFile, o.dns)
	if err != nil {
		fmt.Fprintln(stderr, "vouch check: configuration not loaded:")
		fmt.Fprintln(stderr, err)
		return exitError
	}
	req := milter.Request{
		IP: net.ParseIP(o.ip), HELO: o.helo, Sender: o.from, Rcpt: o.rcpt,
		MTAName: o.mtaName, AuthUser: o.auth,
	}
	ctx := context.Background()
	e, err := milter.Explain(ctx, cfg, res, req, nil)
	if err != nil {
		fmt.Fprintln(stderr, "vouch check:", err)
		return exitError
	}
	rep := explain.NewReport(ctx, cfg, res, req, e)
	if err := printReport(rep, o.json, stdout); err != nil {
		fmt.Fprintln(stderr, "vouch check:", err)
		return exitError
	}
	return rep.ExitStatus
}
