package mta

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// A test that needs the MTA to find a client's reverse name (so its
// Received field reads "from HELO (name [IP])" rather than "unknown" or
// "[IP]") lists it in Options.Hosts. The MTA then reads a private hosts
// file, and only files, for host lookups: no test waits on real DNS.

// hostsLines renders Options.Hosts as hosts(5) lines, refusing anything
// that is not "IP name...".
func (o *Options) hostsLines() (string, error) {
	var b strings.Builder
	for _, l := range o.Hosts {
		f := strings.Fields(l)
		if len(f) < 2 || net.ParseIP(f[0]) == nil {
			return "", fmt.Errorf("Hosts line %q: want \"IP name...\"", l)
		}
		for _, n := range f[1:] {
			if !validHostname(n) {
				return "", fmt.Errorf("Hosts line %q: bad name %q", l, n)
			}
		}
		b.WriteString(strings.Join(f, "\t") + "\n")
	}
	return b.String(), nil
}

// postfixHostsPrologue writes the instance's hosts and nsswitch.conf
// (hosts from files only) when o.Hosts is set, and returns the shell
// lines that bind them over /etc in Postfix's mount namespace ("" when
// o.Hosts is empty, leaving Postfix as it was).
func postfixHostsPrologue(dir string, o Options) (string, error) {
	if len(o.Hosts) == 0 {
		return "", nil
	}
	lines, err := o.hostsLines()
	if err != nil {
		return "", err
	}
	nss, err := privateNSSwitch()
	if err != nil {
		return "", err
	}
	hosts := fmt.Sprintf("127.0.0.1\t%s localhost\n", o.Hostname) + lines
	for name, text := range map[string]string{"hosts": hosts, "nsswitch.conf": nss} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return "", err
		}
	}
	return `mount --bind "$d/hosts" /etc/hosts
mount --bind "$d/nsswitch.conf" /etc/nsswitch.conf
`, nil
}
