package socket

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		spec, network, addr, err string
	}{
		{"inet:8895@127.0.0.1", "tcp4", "127.0.0.1:8895", ""},
		{"inet:127.0.0.1:8895", "tcp4", "127.0.0.1:8895", ""},
		{"inet:localhost:8895", "tcp4", "localhost:8895", ""},
		{"inet:8895", "tcp4", ":8895", ""},
		{"inet6:8895@[::1]", "tcp6", "[::1]:8895", ""},
		{"inet6:8895@::1", "tcp6", "[::1]:8895", ""},
		{"inet6:[::1]:8895", "tcp6", "[::1]:8895", ""},
		{"unix:/run/vouch/vouch.sock", "unix", "/run/vouch/vouch.sock", ""},
		{"local:/run/vouch/vouch.sock", "unix", "/run/vouch/vouch.sock", ""},
		{"/run/vouch.sock", "unix", "/run/vouch.sock", ""},
		{"127.0.0.1:8895", "tcp", "127.0.0.1:8895", ""},
		{"[::1]:8895", "tcp", "[::1]:8895", ""},
		{"unix:vouch.sock", "", "", "absolute path"},
		{"inet:99999@127.0.0.1", "", "", "bad port"},
		{"inet:x@127.0.0.1", "", "", "bad port"},
		{"inet:25@bad host", "", "", "bad host"},
		{"tcp:25", "", "", "unknown type"},
		{"nonsense", "", "", "want inet:PORT@HOST"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			a, err := Parse(tc.spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseAddress = %v, %v; want error with %q", a, err, tc.err)
				}
				return
			}
			if err != nil || a.Network != tc.network || a.Address != tc.addr {
				t.Fatalf("ParseAddress = %+v, %v; want %s %s", a, err, tc.network, tc.addr)
			}
		})
	}
}

func TestListenUnixSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vouch.sock")
	a := Address{"unix", path}

	ln, err := Listen(a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v mode %v, want a socket with 0660", err, fi.Mode())
	}

	// In use: refused, and the live socket is left alone.
	if _, err := Listen(a, Options{}); err == nil || !strings.Contains(err.Error(), "another process is listening") {
		t.Fatalf("second Listen = %v", err)
	}

	// Stale (nobody listening): removed and reused. Closing a Go listener
	// unlinks its file, so make a stale one by hand.
	ln.Close()
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	ln, err = Listen(a, Options{Mode: 0o600})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln.Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}

	// Not a socket: never removed.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep me"), 0o644)
	if _, err := Listen(Address{"unix", file}, Options{}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a file = %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Error("file was touched")
	}
}

func TestListenUnixSocketGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a socket's group to another group needs root")
	}
	path := filepath.Join(t.TempDir(), "vouch.sock")
	ln, err := Listen(Address{"unix", path}, Options{Group: "2"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if gid := fi.Sys().(*syscall.Stat_t).Gid; gid != 2 {
		t.Errorf("socket group %d, want 2", gid)
	}
	if _, err := Listen(Address{"unix", filepath.Join(t.TempDir(), "x.sock")}, Options{Group: "no-such-group-vouch"}); err == nil {
		t.Error("unknown group accepted")
	}
}
