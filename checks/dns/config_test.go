package dns

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vouch-mail/vouch/checks/dnstest"
)

// testConfig is the default configuration asking only servers.
func testConfig(servers ...string) Config {
	c := DefaultConfig()
	c.Servers = servers
	return c
}

func TestDefaults(t *testing.T) {
	r, err := New(testConfig("127.0.0.1:53"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Servers = []string{"127.0.0.1:53"}
	got := r.cfg
	if !slices.Equal(got.Servers, want.Servers) {
		t.Errorf("servers %q", got.Servers)
	}
	got.Servers, want.Servers = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config %+v, want %+v", got, want)
	}
	if want.Timeout != 2*time.Second || want.Attempts != 2 || want.CacheSize != 10000 ||
		want.MaxTTL != time.Hour || want.NegativeMaxTTL != 5*time.Minute || want.MaxCNAMEChain != 8 {
		t.Errorf("DefaultConfig %+v differs from the documented defaults", want)
	}
	if _, ok := r.obs.(NopObserver); !ok {
		t.Errorf("nil Observer became %T", r.obs)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // in the error
	}{
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, "timeout: must be positive"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "timeout"},
		{"no attempts", func(c *Config) { c.Attempts = 0 }, "attempts: must be at least 1"},
		{"negative cache", func(c *Config) { c.CacheSize = -1 }, "cache_size"},
		{"negative min_ttl", func(c *Config) { c.MinTTL = -time.Second }, "min_ttl"},
		{"negative max_ttl", func(c *Config) { c.MaxTTL = -time.Second }, "max_ttl"},
		{"min above max", func(c *Config) { c.MinTTL = 2 * time.Hour }, "min_ttl: 2h0m0s is above max_ttl 1h0m0s"},
		{"negative negative_max_ttl", func(c *Config) { c.NegativeMaxTTL = -time.Second }, "negative_max_ttl"},
		{"no cname chain", func(c *Config) { c.MaxCNAMEChain = 0 }, "max_cname_chain"},
		{"host name server", func(c *Config) { c.Servers = []string{"dns.example:53"} }, `"dns.example:53"`},
		{"port zero", func(c *Config) { c.Servers = []string{"127.0.0.1:0"} }, `"127.0.0.1:0"`},
		{"bad port", func(c *Config) { c.Servers = []string{"127.0.0.1:dns"} }, `"127.0.0.1:dns"`},
		{"empty server", func(c *Config) { c.Servers = []string{""} }, `servers.0`},
		{"IPv6 without brackets and port", func(c *Config) { c.Servers = []string{"2001:db8::1:53:x"} }, "2001:db8::1:53:x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("127.0.0.1")
			tc.change(&cfg)
			_, err := New(cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestServers(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"127.0.0.1:5353", "127.0.0.1:5353"},
		{"127.0.0.1", "127.0.0.1:53"},
		{"::1", "[::1]:53"},
		{"[::1]", "[::1]:53"},
		{"[2001:db8::53]:5353", "[2001:db8::53]:5353"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := New(testConfig(tc.in), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Servers(); !slices.Equal(got, []string{tc.want}) {
				t.Fatalf("servers %q, want %q", got, tc.want)
			}
		})
	}
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content *string // nil: no file
		want    []string
		wantErr string
	}{
		{"nameservers", ptr("# comment\nsearch example.com\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions timeout:1\n"),
			[]string{"192.0.2.53:53", "[2001:db8::53]:53"}, ""},
		{"no nameserver lines", ptr("search example.com\n"), nil, "no nameserver lines"},
		{"missing file", nil, nil, "set dns.servers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if tc.content != nil {
				if err := os.WriteFile(path, []byte(*tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r, err := newResolver(testConfig(), nil, path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Servers(); !slices.Equal(got, tc.want) {
				t.Fatalf("servers %q, want %q", got, tc.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func withTimeout(c Config, d time.Duration) Config { c.Timeout = d; return c }
func withAttempts(c Config, n int) Config          { c.Attempts = n; return c }
func noCache(c Config) Config                      { c.CacheSize = 0; return c }

// TestNegativeCachingOff: negative_max_ttl 0 turns negative caching off
// (it used to mean "the default, 5m").
func TestNegativeCachingOff(t *testing.T) {
	srv := dnstest.New(t, "$ORIGIN test.\n@ SOA ns.test. hostmaster.test. 1 3600 600 86400 300\nyes A 192.0.2.1\n")
	for _, tc := range []struct {
		negMax time.Duration
		want   int // upstream queries for two lookups of a missing name
	}{{0, 2}, {5 * time.Minute, 1}} {
		t.Run(tc.negMax.String(), func(t *testing.T) {
			cfg := testConfig(srv.Addr)
			cfg.NegativeMaxTTL = tc.negMax
			r, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			name := "no" + strings.ReplaceAll(tc.negMax.String(), "m", "") + ".test"
			for range 2 {
				if _, err := r.LookupTXT(context.Background(), name); err == nil {
					t.Fatal("lookup of a missing name succeeded")
				}
			}
			if got := srv.Queries(name, mdns.TypeTXT); got != tc.want {
				t.Errorf("%d queries for %s, want %d", got, name, tc.want)
			}
		})
	}
}
