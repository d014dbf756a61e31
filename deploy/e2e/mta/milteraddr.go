package mta

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// milterAddr is a milter socket, parsed from any of the spellings the
// milter world uses, so each MTA's config can get its own.
type milterAddr struct {
	unix bool   // a unix-domain socket at path
	path string // unix only
	host string // inet only: an IP address or host name
	port int    // inet only
}

// parseMilterAddr accepts "inet:PORT@HOST", "inet6:PORT@HOST",
// "inet:HOST:PORT", "inet:[V6]:PORT", "unix:/path", "local:/path" and a bare
// absolute path.
func parseMilterAddr(s string) (milterAddr, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok && strings.HasPrefix(s, "/") {
		kind, rest = "unix", s
	}
	switch kind {
	case "unix", "local":
		if !strings.HasPrefix(rest, "/") || strings.ContainsAny(rest, " \t\r\n,;\"'`\\") {
			return milterAddr{}, fmt.Errorf("milter address %q: want an absolute path without spaces, commas or quotes", s)
		}
		return milterAddr{unix: true, path: rest}, nil
	case "inet", "inet6":
		var host, port string
		if p, h, ok := strings.Cut(rest, "@"); ok {
			host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), p
		} else {
			var err error
			if host, port, err = net.SplitHostPort(rest); err != nil {
				return milterAddr{}, fmt.Errorf("milter address %q: %w", s, err)
			}
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return milterAddr{}, fmt.Errorf("milter address %q: bad port %q", s, port)
		}
		if net.ParseIP(host) == nil && !validHostname(host) {
			return milterAddr{}, fmt.Errorf("milter address %q: bad host %q", s, host)
		}
		return milterAddr{host: host, port: n}, nil
	}
	return milterAddr{}, fmt.Errorf("milter address %q: want inet:PORT@HOST, inet:HOST:PORT, unix:/path or local:/path", s)
}

func (a milterAddr) v6() bool { return strings.Contains(a.host, ":") }

// postfix is the smtpd_milters spelling: inet:HOST:PORT, unix:PATH.
func (a milterAddr) postfix() string {
	if a.unix {
		return "unix:" + a.path
	}
	if a.v6() {
		return "inet:[" + a.host + "]:" + strconv.Itoa(a.port)
	}
	return "inet:" + a.host + ":" + strconv.Itoa(a.port)
}

// sendmail is the S= spelling: inet:PORT@HOST, inet6:PORT@HOST, local:PATH.
func (a milterAddr) sendmail() string {
	if a.unix {
		return "local:" + a.path
	}
	if a.v6() {
		return "inet6:" + strconv.Itoa(a.port) + "@" + a.host
	}
	return "inet:" + strconv.Itoa(a.port) + "@" + a.host
}
