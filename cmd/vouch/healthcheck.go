package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// healthcheckCommand asks a running vouch whether it is ready: GET /readyz
// on its metrics listener, found in the configuration (or the flag).
// Exit 0: ready; 1: not ready or unreachable. It is what Docker's
// HEALTHCHECK and a Kubernetes exec probe run, in an image that has no
// shell and no HTTP client.
func healthcheckCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vouch healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "configuration `file` whose metrics.listen to query; without it, the embedded defaults")
	listen := fs.String("metrics.listen", "", "metrics `address` HOST:PORT to query, overriding the file (default 127.0.0.1:9895)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this `duration`")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vouch healthcheck [-config FILE] [-metrics.listen HOST:PORT] [-timeout 5s]")
		fmt.Fprintln(stderr, "Exit status 0 if vouch answers ready on /readyz, 1 if not or unreachable.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vouch healthcheck: unexpected arguments: %q\n", fs.Args())
		return exitUsage
	}
	addr := *listen
	if addr == "" {
		cfg, err := loadFile(*configFile)
		if err != nil {
			fmt.Fprintln(stderr, "vouch healthcheck: configuration not loaded:")
			fmt.Fprintln(stderr, err)
			return exitError
		}
		addr = cfg.Metrics.Listen
	}
	url, err := readyzURL(addr)
	if err != nil {
		fmt.Fprintln(stderr, "vouch healthcheck:", err)
		return exitError
	}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(stderr, "vouch healthcheck: not reachable:", err)
		return exitError
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "vouch healthcheck: %s: %s\n", url, resp.Status)
		return exitError
	}
	fmt.Fprintf(stdout, "%s: ready\n", url)
	return exitOK
}

// readyzURL is the /readyz URL for a metrics listen address. A wildcard
// host (every address, as in a container) is reached on loopback.
func readyzURL(listen string) (string, error) {
	if listen == "" {
		return "", errors.New("metrics.listen is empty: this vouch has no health endpoint")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("metrics.listen %q: %w", listen, err)
	}
	switch ip := net.ParseIP(host); {
	case host == "":
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz", nil
}
