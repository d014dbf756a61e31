package spf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/vouch-mail/vouch/checks/dns"
)

// recorder sits between the library and the resolver. It remembers the
// last failed lookup, to name it in Result.Problem, and hands the library
// errors in the only form it classifies: a bare *net.DNSError (it uses a
// type assertion, so a wrapped one, or a context error, would turn a
// timeout into a permerror).
type recorder struct {
	r dns.Lookuper

	mu       sync.Mutex
	lastType string
	lastName string
	lastErr  *net.DNSError
}

func (c *recorder) LookupTXT(ctx context.Context, name string) ([]string, error) {
	v, err := c.r.LookupTXT(ctx, name)
	return v, c.note("TXT", name, err)
}

func (c *recorder) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	v, err := c.r.LookupMX(ctx, name)
	return v, c.note("MX", name, err)
}

func (c *recorder) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	v, err := c.r.LookupIPAddr(ctx, host)
	return v, c.note("A/AAAA", host, err)
}

func (c *recorder) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	v, err := c.r.LookupAddr(ctx, addr)
	return v, c.note("PTR", addr, err)
}

// note normalises err to a *net.DNSError and remembers it unless it only
// says the name has no such records.
func (c *recorder) note(qtype, name string, err error) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if !errors.As(err, &de) {
		// Not the resolver's own kind of error: a cancelled or expired
		// context, or something unforeseen. Either way the answer may come
		// another time, so it is temporary.
		de = &net.DNSError{
			Err:         err.Error(),
			Name:        name,
			IsTimeout:   errors.Is(err, context.DeadlineExceeded),
			IsTemporary: true,
		}
	}
	if !de.IsNotFound {
		c.mu.Lock()
		c.lastType, c.lastName, c.lastErr = qtype, name, de
		c.mu.Unlock()
	}
	return de
}

// problem describes the last failed lookup, "" if none failed.
func (c *recorder) problem(what string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastErr == nil {
		return ""
	}
	name := strings.TrimSuffix(c.lastName, ".")
	if c.lastErr.IsTimeout {
		return fmt.Sprintf("DNS timeout looking up %s %s", c.lastType, name)
	}
	return fmt.Sprintf("%s looking up %s %s: %s", what, c.lastType, name, c.lastErr.Err)
}
