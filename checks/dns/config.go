package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
)

// defaultResolvConf is where the servers come from when Config.Servers is
// empty.
const defaultResolvConf = "/etc/resolv.conf"

// DefaultConfig returns the settings used for every zero field of a Config:
//
//	Servers         none: the nameservers of /etc/resolv.conf
//	Timeout         2s per attempt
//	Attempts        2 (in total, moving on to the next server each time)
//	CacheSize       10000 entries
//	MinTTL          0 (publishers' TTLs are respected)
//	MaxTTL          1h
//	NegativeMaxTTL  5m
//	MaxCNAMEChain   8
//
// With these, one lookup waits at most 2 × 2s upstream (8s if both answers
// were truncated and retried over TCP), below Sendmail's 10s milter timeout.
func DefaultConfig() Config {
	return Config{
		Timeout:        2 * time.Second,
		Attempts:       2,
		CacheSize:      10000,
		MinTTL:         0,
		MaxTTL:         time.Hour,
		NegativeMaxTTL: 5 * time.Minute,
		MaxCNAMEChain:  8,
	}
}

// withDefaults fills the zero fields of c from DefaultConfig and rejects
// values that cannot work.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Attempts == 0 {
		c.Attempts = d.Attempts
	}
	if c.CacheSize == 0 {
		c.CacheSize = d.CacheSize
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = d.MaxTTL
	}
	if c.NegativeMaxTTL == 0 {
		c.NegativeMaxTTL = d.NegativeMaxTTL
	}
	if c.MaxCNAMEChain == 0 {
		c.MaxCNAMEChain = d.MaxCNAMEChain
	}
	var errs []error
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %v is negative", c.Timeout))
	}
	if c.Attempts < 0 {
		errs = append(errs, fmt.Errorf("attempts %d is negative", c.Attempts))
	}
	if c.MinTTL < 0 {
		errs = append(errs, fmt.Errorf("min_ttl %v is negative", c.MinTTL))
	}
	if c.MaxTTL < 0 {
		errs = append(errs, fmt.Errorf("max_ttl %v is negative", c.MaxTTL))
	}
	if c.MinTTL > c.MaxTTL {
		errs = append(errs, fmt.Errorf("min_ttl %v is above max_ttl %v", c.MinTTL, c.MaxTTL))
	}
	if c.MaxCNAMEChain < 0 {
		errs = append(errs, fmt.Errorf("max_cname_chain %d is negative", c.MaxCNAMEChain))
	}
	return c, errors.Join(errs...)
}

// serverAddrs turns the configured servers into "ip:port" dial addresses.
// A bare IP means port 53. Host names are refused: resolving the resolver's
// own address would need a resolver.
func serverAddrs(servers []string) ([]string, error) {
	out := make([]string, 0, len(servers))
	for _, s := range servers {
		a, err := serverAddr(s)
		if err != nil {
			return nil, fmt.Errorf("server %q: %w", s, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func serverAddr(s string) (string, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, 53).String(), nil
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if ip, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return netip.AddrPortFrom(ip, 53).String(), nil
		}
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("want IP or IP:port: %w", err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("want an IP address, not a host name: %w", err)
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(ip.String(), port))
	if err != nil || ap.Port() == 0 {
		return "", fmt.Errorf("bad port %q", port)
	}
	return ap.String(), nil
}

// resolvConfServers reads the nameservers of a resolv.conf. A missing file
// or one without nameservers is an error rather than a silent fallback to
// 127.0.0.1: a milter that cannot resolve tempfails all mail, and the
// postmaster should hear why at start-up.
func resolvConfServers(path string) ([]string, error) {
	cc, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading nameservers (set dns.servers to choose them): %w", err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("no nameserver lines in %s (set dns.servers to choose them)", path)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		a, err := serverAddr(net.JoinHostPort(s, cc.Port))
		if err != nil {
			return nil, fmt.Errorf("%s: nameserver %q: %w", path, s, err)
		}
		out = append(out, a)
	}
	return out, nil
}
