// Package milter is vouch's MTA-facing side: it speaks the milter protocol
// (over github.com/emersion/go-milter) to Postfix and Sendmail, keeps the
// state of each SMTP session, runs the checks in the background as the
// dialogue goes on, applies the policy and answers with SMTP replies and
// headers.
package milter

import (
	"net/netip"
	"strings"
	"time"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/spf"
	"github.com/vouch-mail/vouch/milter/policy"
)

// Stage is a point of the SMTP dialogue.
type Stage string

const (
	StageConnect Stage = "connect"
	StageHelo    Stage = "helo"
	StageMail    Stage = "mail"
	StageRcpt    Stage = "rcpt"
	StageEOM     Stage = "eom"
)

// Settings is everything a session needs to know. It is immutable once a
// server uses it; a reload builds a new one, which applies to SMTP sessions
// that start afterwards.
type Settings struct {
	Policy *policy.Policy
	// Preset names the policy preset, for logs and metrics.
	Preset string
	// DecideAt is where the verdict is applied: StageRcpt (default: the
	// only stage that can honour exempt recipients), StageMail or
	// StageHelo.
	DecideAt Stage
	// Deadline bounds each check from its start; it must stay below the
	// MTA's milter timeouts (Sendmail's default is 10 s).
	Deadline time.Duration
	Resolver dns.Lookuper

	Iprev struct {
		Enabled          bool
		MaxPTR           int
		TrustMTAHostname bool
	}
	HeloEnabled bool
	SPF         struct {
		Enabled   bool
		CheckHelo bool
		Options   spf.Options
	}

	TrustedNetworks   []netip.Prefix
	SkipAuthenticated bool
	// ExemptRecipients are local parts ("postmaster") or whole addresses
	// ("abuse@example.com"), lower-case; they are accepted whatever the
	// verdict (RFC 5321 §4.5.1).
	ExemptRecipients []string
	// AllowSenderDomains: "example.com" matches that domain, ".example.com"
	// its subdomains too. Mail from them is accepted unless SPF fails.
	AllowSenderDomains []string
	// AllowClientNames match a forward-confirmed client name the same way;
	// such clients are accepted whatever the other checks say.
	AllowClientNames []string

	// AuthServID names this host in Authentication-Results; "" takes the
	// MTA's j macro.
	AuthServID          string
	AddAuthResults      bool
	AddReceivedSPF      bool
	RemoveForgedAuthRes bool
}

// DefaultSettings are the embedded defaults: the standard preset, decide at
// RCPT, every check on, loopback trusted.
func DefaultSettings(r dns.Lookuper) *Settings {
	tbl, _ := policy.Preset("standard")
	s := &Settings{
		Policy:              &policy.Policy{Table: tbl, DryRun: map[policy.Check]bool{}},
		Preset:              "standard",
		DecideAt:            StageRcpt,
		Deadline:            8 * time.Second,
		Resolver:            r,
		HeloEnabled:         true,
		TrustedNetworks:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		SkipAuthenticated:   true,
		ExemptRecipients:    []string{"postmaster", "abuse"},
		AllowSenderDomains:  []string{},
		AllowClientNames:    []string{},
		AddAuthResults:      true,
		AddReceivedSPF:      true,
		RemoveForgedAuthRes: true,
	}
	s.Iprev.Enabled = true
	s.Iprev.MaxPTR = 10
	s.SPF.Enabled = true
	s.SPF.CheckHelo = true
	s.SPF.Options = spf.Options{LookupLimit: spf.DefaultLookupLimit, VoidLookupLimit: spf.DefaultVoidLookupLimit}
	return s
}

func (s *Settings) trusted(ip netip.Addr) bool {
	for _, p := range s.TrustedNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// exemptRecipient reports whether rcpt (an address, maybe in <>) is exempt.
func (s *Settings) exemptRecipient(rcpt string) bool {
	addr := strings.ToLower(strings.Trim(rcpt, "<> "))
	local, _, _ := strings.Cut(addr, "@")
	for _, e := range s.ExemptRecipients {
		if e == addr || e == local {
			return true
		}
	}
	return false
}

// domainListed matches name against entries: "example.com" exactly,
// ".example.com" that domain and its subdomains.
func domainListed(name string, entries []string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" {
		return false
	}
	for _, e := range entries {
		if strings.HasPrefix(e, ".") {
			if name == e[1:] || strings.HasSuffix(name, e) {
				return true
			}
		} else if name == e {
			return true
		}
	}
	return false
}
