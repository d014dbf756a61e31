package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter/socket"
)

// serveCommand runs an in-process vouch or the no-op milter in a process
// of its own, so that its memory can be measured apart from the load
// generator's (idle starts one this way).
func serveCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	noop := fs.Bool("noop", false, "serve the no-op milter instead of vouch")
	zone := fs.String("zone", "", "zone `file` for vouch's in-process DNS server")
	listen := fs.String("listen", "inet:0@127.0.0.1", "milter `address` (port 0: any free port)")
	maxConns := fs.Int("max-connections", 0, "vouch's max_connections (0: the daemon's default, 2000)")
	profile := loadFlags{}
	fs.StringVar(&profile.cpuprofile, "cpuprofile", "", "write a CPU profile of the server, until it stops, to `file`")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	stop, err := profile.profile()
	if err != nil {
		return fail(stderr, "serve", err)
	}
	defer stop()
	a, err := socket.Parse(*listen)
	if err != nil {
		return usageErr(stderr, "serve", err)
	}
	var srv server
	switch {
	case *noop && *zone == "":
		srv, err = startNoop(a)
	case !*noop && *zone != "":
		var text string
		if text, err = readZone(*zone); err == nil {
			srv, err = startVouch(text, a, vouchOptions{MaxConnections: *maxConns})
		}
	default:
		return usageErr(stderr, "serve", errors.New("give -noop or -zone FILE"))
	}
	if err != nil {
		return fail(stderr, "serve", err)
	}
	// The first line is read by idle (and scripts): address, then pid.
	fmt.Fprintf(stdout, "listening %s pid %d\n", milterSpec(srv.Address()), os.Getpid())
	if v, ok := srv.(*vouchServer); ok {
		fmt.Fprintf(stdout, "dns %s\n", v.DNS.Addr)
	}
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		return fail(stderr, "serve", err)
	}
	return exitOK
}

// dnsCommand serves a zone file, for running the real daemon against the
// benchmark world (dns.servers in its configuration).
func dnsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	zone := fs.String("zone", "", "zone `file` to serve (required)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *zone == "" {
		return usageErr(stderr, "dns", errors.New("-zone FILE is required"))
	}
	text, err := readZone(*zone)
	if err != nil {
		return fail(stderr, "dns", err)
	}
	d, err := dnstest.Start(text)
	if err != nil {
		return fail(stderr, "dns", err)
	}
	defer d.Close()
	fmt.Fprintf(stdout, "dns %s pid %d\n", d.Addr, os.Getpid())
	<-ctx.Done()
	fmt.Fprintf(stdout, "answered %d queries\n", d.TotalQueries())
	return exitOK
}
