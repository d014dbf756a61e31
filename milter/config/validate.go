package config

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/vouch-mail/vouch/milter/headers"
	"github.com/vouch-mail/vouch/milter/policy"
)

// postfixMilterTimeout is Postfix's default milter_command_timeout: a
// check deadline at or past it means the MTA gives up before vouch.
const postfixMilterTimeout = 30 * time.Second

// validate checks what decoding cannot: ranges and values that depend on
// each other. Errors carry the key; Parse adds file and line.
func (c *Config) validate() Errors {
	var errs Errors
	add := func(key, format string, a ...any) {
		errs = append(errs, Error{Key: key, Msg: fmt.Sprintf(format, a...)})
	}

	if c.Milter.Listen.Network == "" {
		add("milter.listen", "must name a socket")
	}
	if c.Milter.MaxConnections < 0 {
		add("milter.max_connections", "must be 0 (no cap) or more, not %d", c.Milter.MaxConnections)
	}
	if a := c.Milter.OverloadAction; a != policy.TempFail && a != policy.Accept {
		add("milter.overload_action", "must be tempfail or accept, not %q", a)
	}
	if c.Milter.IdleTimeout < 0 {
		add("milter.idle_timeout", "must not be negative")
	}
	if c.Milter.PacketTimeout < 0 {
		add("milter.packet_timeout", "must not be negative")
	}
	if c.Milter.ShutdownTimeout < 0 {
		add("milter.shutdown_timeout", "must not be negative")
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			add("metrics.listen", "want HOST:PORT or empty to disable: %v", err)
		}
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		add("log.format", "must be text or json, not %q", c.Log.Format)
	}
	if c.Log.Output != "stderr" && c.Log.Output != "syslog" {
		add("log.output", "must be stderr or syslog, not %q", c.Log.Output)
	}
	for _, p := range c.DNS.Problems() {
		add("dns."+p.Key, "%s", p.Msg)
	}
	if c.Checks.Deadline <= 0 {
		add("checks.deadline", "must be positive")
	} else if c.Checks.Deadline >= postfixMilterTimeout {
		add("checks.deadline", "%s reaches Postfix's milter_command_timeout (30s): the MTA would give up first", c.Checks.Deadline)
	}
	if c.Checks.Iprev.MaxPTR < 1 {
		add("checks.iprev.max_ptr", "must be at least 1")
	}
	if c.Checks.SPF.LookupLimit < 1 {
		add("checks.spf.lookup_limit", "must be at least 1 (RFC 7208 says 10)")
	}
	if c.Checks.SPF.VoidLookupLimit < 1 {
		add("checks.spf.void_lookup_limit", "must be at least 1 (RFC 7208 says 2)")
	}
	if _, err := policy.Preset(c.Policy.Preset); err != nil {
		add("policy.preset", "%v", err)
	}
	for key, list := range map[string][]string{"policy.exempt_recipients": c.Policy.ExemptRecipients, "policy.allow_recipients": c.Policy.AllowRecipients} {
		for i, r := range list {
			if r == "" || strings.ContainsAny(r, " <>") || strings.Count(r, "@") > 1 {
				add(fmt.Sprintf("%s.%d", key, i), "want a local part (postmaster) or an address (abuse@example.com), not %q", r)
			}
		}
	}
	for i, d := range c.Policy.AllowSPFDomains {
		if strings.HasPrefix(d, ".") {
			add(fmt.Sprintf("policy.allow_spf_domains.%d", i), "want a domain whose SPF record is checked, not a suffix %q", d)
		}
	}
	if a := c.Policy.RelayUnparsed; a != policy.Accept && a != policy.TempFail {
		add("policy.relay_unparsed", "must be accept or tempfail, not %q", a)
	}
	for entry := range c.Policy.Domains {
		if _, err := parseDomainEntry(entry); err != nil || entry != strings.ToLower(strings.TrimSuffix(entry, ".")) {
			add("policy.domains."+entry, "want a lower-case domain (example.com) or a suffix (.example.com), not %q", entry)
		}
	}
	if id := c.Headers.AuthServID; id != "" && !headers.ValidAuthServID(id) {
		add("headers.authserv_id", "must be a host name or RFC 2045 token, not %q", id)
	}
	return errs
}
