package dns

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	r, err := New(Config{Servers: []string{"127.0.0.1:53"}}, nil)
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
		name string
		cfg  Config
		want string // in the error
	}{
		{"negative timeout", Config{Timeout: -time.Second}, "timeout"},
		{"negative attempts", Config{Attempts: -1}, "attempts"},
		{"negative min_ttl", Config{MinTTL: -time.Second}, "min_ttl"},
		{"negative max_ttl", Config{MaxTTL: -time.Second}, "max_ttl"},
		{"min above max", Config{MinTTL: 2 * time.Hour}, "min_ttl 2h0m0s is above max_ttl 1h0m0s"},
		{"negative cname chain", Config{MaxCNAMEChain: -1}, "max_cname_chain"},
		{"host name server", Config{Servers: []string{"dns.example:53"}}, `"dns.example:53"`},
		{"port zero", Config{Servers: []string{"127.0.0.1:0"}}, "port"},
		{"bad port", Config{Servers: []string{"127.0.0.1:dns"}}, "port"},
		{"empty server", Config{Servers: []string{""}}, `server ""`},
		{"IPv6 without brackets and port", Config{Servers: []string{"2001:db8::1:53:x"}}, "2001:db8::1:53:x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.Servers == nil {
				tc.cfg.Servers = []string{"127.0.0.1"}
			}
			_, err := New(tc.cfg, nil)
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
			r, err := New(Config{Servers: []string{tc.in}}, nil)
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
			r, err := newResolver(Config{}, nil, path)
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
