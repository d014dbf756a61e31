// Package socket opens the milter socket in the spellings of the milter
// world (inet:PORT@HOST, inet6:PORT@[::1], unix:/path, local:/path) with the
// permissions a unix socket needs for the MTA to reach it.
package socket

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vouch-mail/vouch/checks/dnsname"
)

// Address is a parsed milter socket specification.
type Address struct {
	Network string // "tcp", "tcp4", "tcp6" or "unix"
	Address string // "host:port" or a path
}

func (a Address) String() string {
	if a.Network == "unix" {
		return "unix:" + a.Address
	}
	return a.Network + ":" + a.Address
}

// Parse reads a socket in the spellings of the milter world:
// inet:PORT@HOST, inet:HOST:PORT, inet6:PORT@[::1], inet6:PORT@::1,
// unix:/path, local:/path. A bare /path is a unix socket, a bare
// HOST:PORT is TCP.
func Parse(spec string) (Address, error) {
	scheme, rest, found := strings.Cut(spec, ":")
	if !found || strings.HasPrefix(spec, "/") || strings.HasPrefix(spec, "[") || net.ParseIP(scheme) != nil {
		scheme, rest = "", spec
	}
	switch strings.ToLower(scheme) {
	case "unix", "local":
		if !strings.HasPrefix(rest, "/") {
			return Address{}, fmt.Errorf("socket %q: a unix socket needs an absolute path", spec)
		}
		return Address{"unix", rest}, nil
	case "inet", "inet6":
		network := "tcp4"
		if strings.EqualFold(scheme, "inet6") {
			network = "tcp6"
		}
		var host, port string
		if p, h, ok := strings.Cut(rest, "@"); ok {
			port, host = p, strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		} else if i := strings.LastIndexByte(rest, ':'); i >= 0 {
			host, port = strings.TrimSuffix(strings.TrimPrefix(rest[:i], "["), "]"), rest[i+1:]
		} else {
			port = rest // all addresses, as Sendmail reads "inet:PORT"
		}
		if err := checkPort(port); err != nil {
			return Address{}, fmt.Errorf("socket %q: %w", spec, err)
		}
		if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
			return Address{}, fmt.Errorf("socket %q: bad host %q", spec, host)
		}
		return Address{network, net.JoinHostPort(host, port)}, nil
	case "":
		if strings.HasPrefix(rest, "/") {
			return Address{"unix", rest}, nil
		}
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return Address{}, fmt.Errorf("socket %q: want inet:PORT@HOST, inet6:PORT@HOST, unix:/path or HOST:PORT", spec)
		}
		if err := checkPort(port); err != nil {
			return Address{}, fmt.Errorf("socket %q: %w", spec, err)
		}
		return Address{"tcp", net.JoinHostPort(host, port)}, nil
	}
	return Address{}, fmt.Errorf("socket %q: unknown type %q (want inet, inet6, unix or local)", spec, scheme)
}

func checkPort(p string) error {
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("bad port %q", p)
	}
	return nil
}

func validHostname(h string) bool { return dnsname.Valid(h, dnsname.Rules{}) }

// Options are the unix socket's permissions.
type Options struct {
	// Mode of a unix socket file (default 0660: the MTA's group may connect).
	Mode os.FileMode
	// Group that owns a unix socket file ("" keeps the process's group).
	Group string
}

// Listen opens the milter socket. A leftover unix socket file is removed
// only when nothing answers on it; a socket another process serves, or a
// file that is not a socket, is an error.
func Listen(a Address, o Options) (net.Listener, error) {
	if a.Network != "unix" {
		ln, err := net.Listen(a.Network, a.Address)
		if err != nil {
			return nil, fmt.Errorf("milter listen %s: %w", a, err)
		}
		return ln, nil
	}
	if err := removeStaleSocket(a.Address); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", a.Address)
	if err != nil {
		return nil, fmt.Errorf("milter listen %s: %w", a, err)
	}
	mode := o.Mode
	if mode == 0 {
		mode = 0o660
	}
	if err := os.Chmod(a.Address, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("milter socket %s: %w", a.Address, err)
	}
	if o.Group != "" {
		gid, err := lookupGroup(o.Group)
		if err == nil {
			err = os.Chown(a.Address, -1, gid)
		}
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("milter socket %s: group %s: %w", a.Address, o.Group, err)
		}
	}
	return ln, nil
}

func lookupGroup(g string) (int, error) {
	if id, err := strconv.Atoi(g); err == nil {
		return id, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(grp.Gid)
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("milter socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("milter socket %s: exists and is not a socket; not removing it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("milter socket %s: another process is listening on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("milter socket %s: cannot tell whether it is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("milter socket %s: removing stale socket: %w", path, err)
	}
	return nil
}
