package config

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/policy"
	"github.com/vouch-mail/vouch/milter/socket"
)

// ParseLevel reads a log level: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("want debug, info, warn or error, not %q", s)
	}
	return l, nil
}

// ResolverConfig is the checks/dns configuration.
func (c *Config) ResolverConfig() dns.Config {
	return dns.Config{
		Servers:        c.DNS.Servers,
		Timeout:        c.DNS.Timeout,
		Attempts:       c.DNS.Attempts,
		CacheSize:      c.DNS.CacheSize,
		MinTTL:         c.DNS.MinTTL,
		MaxTTL:         c.DNS.MaxTTL,
		NegativeMaxTTL: c.DNS.NegativeMaxTTL,
		MaxCNAMEChain:  c.DNS.MaxCNAMEChain,
	}
}

// ListenAddress is the parsed milter socket.
func (c *Config) ListenAddress() socket.Address {
	a, _ := socket.Parse(c.Milter.Listen) // validated
	return a
}

// ListenOptions are the unix socket's permissions.
func (c *Config) ListenOptions() socket.Options {
	m, _ := parseMode(c.Milter.SocketMode) // validated
	return socket.Options{Mode: m, Group: c.Milter.SocketGroup}
}

// ServerOptions are the milter server's fixed settings.
func (c *Config) ServerOptions() milter.Options {
	return milter.Options{
		MaxConnections: c.Milter.MaxConnections,
		OverloadAction: c.Milter.OverloadAction,
		IdleTimeout:    c.Milter.IdleTimeout,
	}
}

// Settings builds what sessions use, over resolver r.
func (c *Config) Settings(r dns.Lookuper) (*milter.Settings, error) {
	s := milter.DefaultSettings(r)
	tbl, err := policy.Preset(c.Policy.Preset)
	if err != nil {
		return nil, err
	}
	for check, results := range c.Policy.Rules {
		for result, spec := range results {
			rule, err := spec.rule(policy.Check(check), result)
			if err != nil {
				return nil, fmt.Errorf("policy.rules.%s.%s: %w", check, result, err)
			}
			if tbl[policy.Check(check)] == nil {
				tbl[policy.Check(check)] = map[string]policy.Rule{}
			}
			tbl[policy.Check(check)][result] = rule
		}
	}
	if err := tbl.Validate(); err != nil {
		return nil, err
	}
	dry := map[policy.Check]bool{}
	for _, d := range c.Policy.DryRun {
		if d == "all" {
			for _, ch := range policy.Checks {
				dry[ch] = true
			}
			continue
		}
		dry[policy.Check(d)] = true
	}
	s.Policy = &policy.Policy{Table: tbl, DryRun: dry}
	s.Preset = c.Policy.Preset
	s.DecideAt = milter.Stage(c.Policy.DecideAt)
	s.Deadline = c.Checks.Deadline
	s.Iprev.Enabled = c.Checks.Iprev.Enabled
	s.Iprev.MaxPTR = c.Checks.Iprev.MaxPTR
	s.Iprev.TrustMTAHostname = c.Checks.Iprev.TrustMTAHostname
	s.HeloEnabled = c.Checks.Helo.Enabled
	s.SPF.Enabled = c.Checks.SPF.Enabled
	s.SPF.CheckHelo = c.Checks.SPF.CheckHelo
	s.SPF.Options.LookupLimit = uint(c.Checks.SPF.LookupLimit)
	s.SPF.Options.VoidLookupLimit = uint(c.Checks.SPF.VoidLookupLimit)
	s.TrustedNetworks = s.TrustedNetworks[:0]
	for _, n := range c.Policy.TrustedNetworks {
		p, err := parsePrefix(n)
		if err != nil {
			return nil, err
		}
		s.TrustedNetworks = append(s.TrustedNetworks, p)
	}
	s.SkipAuthenticated = c.Policy.SkipAuthenticated
	s.ExemptRecipients = lower(c.Policy.ExemptRecipients)
	s.AllowSenderDomains = lower(c.Policy.AllowSenderDomains)
	s.AllowClientNames = lower(c.Policy.AllowClientNames)
	s.AuthServID = c.Headers.AuthServID
	s.AddAuthResults = c.Headers.AuthenticationResults
	s.AddReceivedSPF = c.Headers.ReceivedSPF
	s.RemoveForgedAuthRes = c.Headers.RemoveForged
	return s, nil
}

func lower(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = strings.ToLower(strings.TrimSuffix(s, "."))
	}
	return out
}

// Logger builds the logger the file asks for, writing to w.
func (c *Config) Logger(w *os.File) *slog.Logger {
	level, _ := ParseLevel(c.Log.Level) // validated
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
