package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-milter"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/metrics"
	"github.com/vouch-mail/vouch/milter/policy"
)

// Options are what a server is built with besides its configuration.
type Options struct {
	Logger  *slog.Logger
	Metrics *metrics.Metrics
}

// Resolver is what the checks look names up with. CacheOnly returns a
// view that answers only from the cache (nil: the resolver has no cache),
// for the checks a warm cache can answer at once in the callback.
type Resolver interface {
	dns.Lookuper
	CacheOnly() *dns.CacheView
}

// generation is one loaded configuration as sessions use it: a reload
// builds a new one, which applies to SMTP sessions that start afterwards.
type generation struct {
	cfg      *config.Config
	policy   *policy.Policy
	resolver Resolver
}

func newGeneration(cfg *config.Config, r Resolver) (*generation, error) {
	p, err := cfg.Policy.Compile()
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return &generation{cfg: cfg, policy: p, resolver: r}, nil
}

// Server serves milter connections.
type Server struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	// listener is the milter section of the configuration the server
	// started with: a reload does not change it.
	listener config.Milter
	gen      atomic.Pointer[generation]
	hostname string
	nextID   atomic.Uint64
	active   atomic.Int64

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*wire]struct{}
	shutdown  bool
	wg        sync.WaitGroup
}

// NewServer returns a server that checks as cfg says, over r, until
// Update replaces them.
func NewServer(cfg *config.Config, r Resolver, o Options) (*Server, error) {
	gen, err := newGeneration(cfg, r)
	if err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	srv := &Server{
		log:       o.Logger,
		metrics:   o.Metrics,
		listener:  cfg.Milter,
		hostname:  host,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*wire]struct{}{},
	}
	srv.gen.Store(gen)
	return srv, nil
}

// Update makes cfg and r apply to SMTP sessions that start from now on;
// sessions under way finish with what they started with. The milter
// section is read only at start.
func (srv *Server) Update(cfg *config.Config, r Resolver) error {
	gen, err := newGeneration(cfg, r)
	if err != nil {
		return err
	}
	srv.gen.Store(gen)
	return nil
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("milter server closed")

// Serve accepts milter connections on ln until Shutdown.
func (srv *Server) Serve(ln net.Listener) error {
	srv.mu.Lock()
	if srv.shutdown {
		srv.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	srv.listeners[ln] = struct{}{}
	srv.mu.Unlock()
	defer func() {
		srv.mu.Lock()
		delete(srv.listeners, ln)
		srv.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			srv.mu.Lock()
			closed := srv.shutdown
			srv.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTemporaryAccept(err) {
				// Out of file descriptors and the like: wait, don't spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				srv.log.Warn("milter accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("milter accept: %w", err)
		}
		backoff = 0
		srv.serveConn(c)
	}
}

func isTemporaryAccept(err error) bool {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return true // EMFILE, ENFILE, ECONNABORTED, ...
	}
	return false
}

// symList asks the MTA for the macros vouch reads (go-milter only reads it).
var symList = map[milter.Stage][]string{
	milter.StageConnect:  {"j", "_", "{daemon_name}", "{client_addr}", "{client_name}", "{client_resolve}"},
	milter.StageMailFrom: {"i", "{auth_type}", "{auth_authen}", "{mail_addr}"},
	milter.StageRcptTo:   {"i", "{rcpt_addr}"},
	milter.StageEOM:      {"i"},
}

// serveConn starts one milter connection and returns; its negotiation
// is read in a goroutine of its own (handshake). go-milter's Server
// serves a listener, so each connection gets its own go-milter Server over
// a one-connection listener: its NewMilter then always refers to this
// connection's state. That listener's second Accept fails at once, so
// go-milter's Serve returns as soon as it has started the connection's
// goroutine, and no goroutine of vouch's waits beside it; the end of the
// connection is handled when go-milter closes it (wire.onClose).
func (srv *Server) serveConn(raw net.Conn) {
	tc := newWire(raw, srv.listener.IdleTimeout, srv.listener.PacketTimeout)
	id := srv.nextID.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{srv: srv, gen: srv.gen.Load(), ctx: ctx,
		log: srv.log.With("conn", id), wire: tc}
	tc.conn, tc.id = c, id
	tc.onClose = func() {
		cancel() // stops the session's lookups when the MTA hangs up
		c.log.Debug("milter connection closed")
		srv.mu.Lock()
		tc.closed = true
		if tc.counted {
			srv.active.Add(-1)
			srv.metrics.SessionsActive.Dec()
		}
		delete(srv.conns, tc)
		srv.mu.Unlock()
		srv.wg.Done()
	}
	// Registered once onClose is set: Shutdown may close it from now on.
	srv.mu.Lock()
	if srv.shutdown {
		srv.mu.Unlock()
		cancel()
		raw.Close()
		return
	}
	srv.conns[tc] = struct{}{}
	srv.wg.Add(1)
	srv.mu.Unlock()
	go srv.handshake(c)
}

// handshake reads the connection's negotiation, within packet_timeout of
// the accept, and only then takes one of the max_connections places: a
// connection that never completes its first packet (a slow-loris client)
// holds no place that an MTA's session could use. Past the cap, the wire
// answers the connection itself, without go-milter.
func (srv *Server) handshake(c *conn) {
	tc := c.wire
	if err := tc.next(false); err != nil {
		tc.end(err)
		tc.Close()
		return
	}
	srv.mu.Lock()
	if tc.closed {
		srv.mu.Unlock()
		return
	}
	n := srv.active.Add(1)
	tc.counted = true
	srv.metrics.SessionsActive.Inc()
	srv.mu.Unlock()
	srv.metrics.SessionsTotal.Inc()

	if max := srv.listener.MaxConnections; max > 0 && n > int64(max) && !srv.evictStalled() {
		srv.metrics.SessionsRefused.WithLabelValues("overload").Inc()
		c.log.Warn("too many milter connections; answering without checks",
			"active", n, "max_connections", max, "overload_action", srv.listener.OverloadAction.String())
		tc.serveOverloaded(srv.listener.OverloadAction == policy.Accept)
		return
	}
	const actions = milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine | milter.OptSetSymList
	// Connections past the cap are answered by the wire alone, at
	// version 2; the others negotiate version 6 (negotiate.go).
	tc.neg = newNegotiation(c.gen.cfg, actions, c.log)
	tc.neg.packet(tc) // the negotiation, read above
	ms := &milter.Server{
		NewMilter: func() milter.Milter { return session{c} },
		Actions:   actions,
		// No body: vouch never reads it, so the MTA need not send it.
		Protocol: milter.OptNoBody,
		SymList:  symList,
	}
	ms.Serve(&oneConnListener{conn: tc})
}

// stallGrace is how long a session may be inside one packet before a
// connection past the cap may take its place: an MTA sends each packet
// whole, in one write, so its sessions are never inside one for long.
const stallGrace = time.Second

// evictStalled closes the session that has been inside one packet the
// longest, if longer than stallGrace, so that the connection past the cap
// takes its place: a client that negotiates and then trickles holds a
// place no longer than another needs it. It reports whether it closed one.
func (srv *Server) evictStalled() bool {
	limit := time.Now().Add(-stallGrace).UnixNano()
	var victim *wire
	var oldest int64
	srv.mu.Lock()
	for w := range srv.conns {
		if t := w.stalledSince.Load(); w.counted && !w.closed && t != 0 && t < limit && (victim == nil || t < oldest) {
			victim, oldest = w, t
		}
	}
	srv.mu.Unlock()
	if victim == nil {
		return false
	}
	srv.metrics.MilterErrors.WithLabelValues("timeout").Inc()
	// The session's own logger is its goroutine's to change (CONNECT).
	srv.log.Warn("milter session stalled inside a packet; closed to make room for a new one",
		"conn", victim.id, "stalled", time.Since(time.Unix(0, oldest)).Round(time.Millisecond))
	victim.Close()
	return true
}

// Active returns the number of open milter connections.
func (srv *Server) Active() int { return int(srv.active.Load()) }

// Shutdown stops accepting connections and waits for open ones to end (the
// MTA closes each at the end of its SMTP session). When ctx ends first, the
// remaining connections are closed, the MTA applies its default action to
// them, and ctx's error is returned.
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.mu.Lock()
	srv.shutdown = true
	for ln := range srv.listeners {
		ln.Close()
	}
	srv.mu.Unlock()

	done := make(chan struct{})
	go func() {
		srv.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	// Closed outside the lock: closing runs the connection's onClose,
	// which takes it.
	srv.mu.Lock()
	open := make([]*wire, 0, len(srv.conns))
	for tc := range srv.conns {
		open = append(open, tc)
	}
	srv.mu.Unlock()
	for _, tc := range open {
		tc.Close()
	}
	<-done
	return ctx.Err()
}
