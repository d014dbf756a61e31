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

// Config is the resolver's settings, as the dns section of the
// configuration file spells them. docs/dns.md explains each for
// postmasters. A value is used as given: DefaultConfig holds the defaults,
// Problems says what cannot work.
type Config struct {
	// Servers are "ip:port" addresses ("[ipv6]:port"; a bare IP means port
	// 53). Each query goes first to the server that last answered, then to
	// the next ones in order. Empty: the nameservers of /etc/resolv.conf
	// (New fails if it is missing or lists none).
	Servers []string `yaml:"servers"`
	// Timeout bounds one query attempt to one server (and, separately, its
	// retry over TCP when the UDP answer was truncated).
	Timeout time.Duration `yaml:"timeout"`
	// Attempts is how many times each query is tried in total, each time
	// at the next server, before it is a temporary failure.
	Attempts int `yaml:"attempts"`
	// CacheSize bounds the cache in entries (LRU); 0 disables it.
	CacheSize int `yaml:"cache_size"`
	// MinTTL and MaxTTL clamp the TTLs of positive answers.
	MinTTL time.Duration `yaml:"min_ttl"`
	MaxTTL time.Duration `yaml:"max_ttl"`
	// NegativeMaxTTL caps how long NXDOMAIN/NODATA are cached (RFC 2308:
	// the SOA's MINIMUM and TTL, whichever is smaller, then this cap); 0
	// disables negative caching.
	NegativeMaxTTL time.Duration `yaml:"negative_max_ttl"`
	// MaxCNAMEChain bounds how many CNAMEs are followed for one lookup.
	MaxCNAMEChain int `yaml:"max_cname_chain"`
}

// DefaultConfig returns the embedded defaults:
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
		Servers:        []string{},
		Timeout:        2 * time.Second,
		Attempts:       2,
		CacheSize:      10000,
		MinTTL:         0,
		MaxTTL:         time.Hour,
		NegativeMaxTTL: 5 * time.Minute,
		MaxCNAMEChain:  8,
	}
}

// Problem is one setting of a Config that cannot work; Key is its name in
// the configuration file's dns section.
type Problem struct{ Key, Msg string }

// Problems lists every setting of c that cannot work.
func (c Config) Problems() []Problem {
	var ps []Problem
	add := func(key, format string, a ...any) { ps = append(ps, Problem{key, fmt.Sprintf(format, a...)}) }
	for i, s := range c.Servers {
		if _, err := serverAddr(s); err != nil {
			add(fmt.Sprintf("servers.%d", i), "want IP, IP:PORT or [IPv6]:PORT, not %q", s)
		}
	}
	if c.Timeout <= 0 {
		add("timeout", "must be positive")
	}
	if c.Attempts < 1 {
		add("attempts", "must be at least 1")
	}
	if c.CacheSize < 0 {
		add("cache_size", "must be 0 (no cache) or more")
	}
	if c.MinTTL < 0 {
		add("min_ttl", "must not be negative")
	}
	if c.MaxTTL < 0 {
		add("max_ttl", "must not be negative")
	}
	if c.MinTTL > c.MaxTTL {
		add("min_ttl", "%s is above max_ttl %s", c.MinTTL, c.MaxTTL)
	}
	if c.NegativeMaxTTL < 0 {
		add("negative_max_ttl", "must be 0 (no negative caching) or more")
	}
	if c.MaxCNAMEChain < 1 {
		add("max_cname_chain", "must be at least 1")
	}
	return ps
}

func (c Config) validate() error {
	var errs []error
	for _, p := range c.Problems() {
		errs = append(errs, fmt.Errorf("%s: %s", p.Key, p.Msg))
	}
	return errors.Join(errs...)
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
