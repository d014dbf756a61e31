package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/checks/dnstest"
	"github.com/vouch-mail/vouch/milter"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/metrics"
	"github.com/vouch-mail/vouch/milter/socket"
)

// server is a milter served by this process.
type server interface {
	Address() socket.Address
	Close() error
}

// milterSpec renders a as a milter socket spelling ("inet:PORT@HOST").
func milterSpec(a socket.Address) string {
	if a.Network == "unix" {
		return "unix:" + a.Address
	}
	host, port, err := net.SplitHostPort(a.Address)
	if err != nil {
		return a.String()
	}
	if a.Network == "tcp6" {
		return "inet6:" + port + "@[" + host + "]"
	}
	return "inet:" + port + "@" + host
}

// listenAt opens a and returns the listener with its real address (a port
// 0 becomes the one the kernel chose).
func listenAt(a socket.Address) (net.Listener, socket.Address, error) {
	ln, err := socket.Listen(a, socket.Options{})
	if err != nil {
		return nil, socket.Address{}, err
	}
	if a.Network != "unix" {
		a.Address = ln.Addr().String()
	}
	return ln, a, nil
}

// noopServer is the baseline: go-milter with a milter that does nothing
// (continue at every stage, accept at end of message), negotiating what
// vouch negotiates. Its throughput is the protocol's own limit on this
// machine, with this library.
type noopServer struct {
	addr socket.Address
	srv  *gomilter.Server
	done chan struct{}
}

// startNoop serves the no-op milter on a.
func startNoop(a socket.Address) (*noopServer, error) {
	ln, a, err := listenAt(a)
	if err != nil {
		return nil, err
	}
	s := &noopServer{addr: a, done: make(chan struct{}), srv: &gomilter.Server{
		NewMilter: func() gomilter.Milter { return gomilter.NoOpMilter{} },
		Actions:   gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine | gomilter.OptSetSymList,
		Protocol:  gomilter.OptNoBody,
		SymList: map[gomilter.Stage][]string{
			gomilter.StageConnect:  {"j", "_", "{daemon_name}", "{client_addr}", "{client_name}", "{client_resolve}"},
			gomilter.StageMailFrom: {"i", "{auth_type}", "{auth_authen}", "{mail_addr}"},
			gomilter.StageRcptTo:   {"i", "{rcpt_addr}"},
			gomilter.StageEOM:      {"i"},
		},
	}}
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *noopServer) Address() socket.Address { return s.addr }

func (s *noopServer) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

// vouchServer is vouch itself, in this process: the daemon's embedded
// defaults (standard preset, decisions at RCPT, logs at info level,
// metrics), except that no network is trusted and DNS is an in-process
// authoritative server holding a zone file.
type vouchServer struct {
	addr    socket.Address
	DNS     *dnstest.Server
	srv     *milter.Server
	logFile *os.File
	done    chan error
}

// vouchOptions change the in-process vouch from the daemon's defaults.
type vouchOptions struct {
	MaxConnections int // 0: the daemon's default
	// Configure, when set, changes the configuration last (postfix.go).
	Configure func(*config.Config)
}

// startVouch serves vouch on a, resolving through a dnstest server loaded
// with zoneText.
func startVouch(zoneText string, a socket.Address, o vouchOptions) (*vouchServer, error) {
	d, err := dnstest.Start(zoneText)
	if err != nil {
		return nil, err
	}
	v := &vouchServer{DNS: d, done: make(chan error, 1)}
	ok := false
	defer func() {
		if !ok {
			v.closeAux()
		}
	}()

	cfg := config.Default()
	cfg.DNS.Servers = []string{d.Addr}
	cfg.Policy.TrustedNetworks = nil
	if o.MaxConnections > 0 {
		cfg.Milter.MaxConnections = o.MaxConnections
	}
	if o.Configure != nil {
		o.Configure(cfg)
	}
	// Logs are formatted as the daemon formats them, then dropped: the
	// cost of writing them to a terminal is not vouch's.
	if v.logFile, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0); err != nil {
		return nil, err
	}
	m := metrics.New(prometheus.NewRegistry(), "bench")
	res, err := dns.New(cfg.DNS, m.DNSObserver())
	if err != nil {
		return nil, err
	}
	logger, err := cfg.Log.NewLogger(v.logFile, nil)
	if err != nil {
		return nil, err
	}
	if v.srv, err = milter.NewServer(cfg, res, milter.Options{Logger: logger, Metrics: m}); err != nil {
		return nil, err
	}

	ln, a, err := listenAt(a)
	if err != nil {
		return nil, err
	}
	v.addr = a
	go func() { v.done <- v.srv.Serve(ln) }()
	ok = true
	return v, nil
}

func (v *vouchServer) Address() socket.Address { return v.addr }

func (v *vouchServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := v.srv.Shutdown(ctx)
	if serr := <-v.done; !errors.Is(serr, milter.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	v.closeAux()
	return err
}

func (v *vouchServer) closeAux() {
	if v.logFile != nil {
		v.logFile.Close()
	}
	v.DNS.Close()
}

// loopback is where in-process servers listen: loopback TCP, a port the
// kernel picks.
var loopback = socket.Address{Network: "tcp4", Address: "127.0.0.1:0"}

func readZone(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("zone: %w", err)
	}
	return string(b), nil
}
