package dns

import (
	"context"
	"errors"
	"net"

	mdns "github.com/miekg/dns"
)

// dnsError turns a non-data entry into the error callers see, named after
// what this caller asked for (coalesced callers may spell it differently).
func (r *Resolver) dnsError(e *entry, name string, qtype uint16) *net.DNSError {
	err := &net.DNSError{Name: name, Server: e.server}
	switch e.kind {
	case kindNXDomain:
		err.Err = "no such host (NXDOMAIN)"
		err.IsNotFound = true
	case kindNoData:
		err.Err = "no " + mdns.TypeToString[qtype] + " records (NODATA)"
		err.IsNotFound = true
	default:
		err.Err = e.msg
		err.IsTemporary = e.temporary
		err.IsTimeout = e.timeout
		err.UnwrapErr = e.cause
	}
	return err
}

// ctxEntry is the failure of a caller whose context ended first:
// temporary, and a timeout when the deadline passed.
func (r *Resolver) ctxEntry(err error) *entry {
	e := &entry{kind: kindFailure, server: r.servers[r.preferred.Load()%uint32(len(r.servers))],
		temporary: true, cause: err}
	if errors.Is(err, context.DeadlineExceeded) {
		e.timeout = true
		e.msg = "i/o timeout"
	} else {
		e.msg = "operation was canceled"
	}
	return e
}

// noSuchHost is the answer for names that cannot exist, as net.Resolver
// gives it: not found, without asking anyone.
func noSuchHost(name string) *net.DNSError {
	return &net.DNSError{Err: "no such host (invalid name)", Name: name, IsNotFound: true}
}

// malformed is the permanent error for answers whose every record was
// unusable.
func malformed(name, server string) *net.DNSError {
	return &net.DNSError{Err: "DNS response contained records which contain invalid names",
		Name: name, Server: server}
}
