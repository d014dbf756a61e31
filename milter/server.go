package milter

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-milter"

	"github.com/vouch-mail/vouch/milter/metrics"
)

// Options are the server's fixed settings (a reload does not change them).
type Options struct {
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	// MaxConnections caps concurrent milter connections (0: no cap). Past
	// it, a connection gets OverloadAction at connect and no checks.
	MaxConnections int
	// OverloadAction is "tempfail" (default: the client retries later,
	// nothing is lost) or "accept" (mail flows unchecked).
	OverloadAction string
	// IdleTimeout closes a connection whose MTA sends nothing for this
	// long, or up to an eighth (at most a second) longer (0: never). The
	// MTA then applies its default action.
	IdleTimeout time.Duration
}

// Server serves milter connections.
type Server struct {
	log      *slog.Logger
	metrics  *metrics.Metrics
	opts     Options
	settings atomic.Pointer[Settings]
	hostname string
	nextID   atomic.Uint64
	active   atomic.Int64

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*trackedConn]struct{}
	shutdown  bool
	wg        sync.WaitGroup
}

// NewServer returns a server that checks with s until Update replaces it.
func NewServer(s *Settings, o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	srv := &Server{
		log:       o.Logger,
		metrics:   o.Metrics,
		opts:      o,
		hostname:  host,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*trackedConn]struct{}{},
	}
	srv.settings.Store(s)
	return srv
}

// Update makes s apply to SMTP sessions that start from now on; sessions
// under way finish with the settings they started with.
func (srv *Server) Update(s *Settings) { srv.settings.Store(s) }

// Settings returns the settings new sessions get.
func (srv *Server) Settings() *Settings { return srv.settings.Load() }

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

// serveConn starts one milter connection and returns. go-milter's Server
// serves a listener, so each connection gets its own go-milter Server over
// a one-connection listener: its NewMilter then always refers to this
// connection's state. That listener's second Accept fails at once, so
// go-milter's Serve returns as soon as it has started the connection's
// goroutine, and no goroutine of vouch's waits beside it; the end of the
// connection is handled when go-milter closes it (trackedConn.onClose).
func (srv *Server) serveConn(raw net.Conn) {
	tc := newTrackedConn(raw, srv.opts.IdleTimeout)
	n := srv.active.Add(1)
	srv.metrics.SessionsActive.Inc()
	id := srv.nextID.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{srv: srv, set: srv.settings.Load(), ctx: ctx, id: id,
		log: srv.log.With("conn", id), wire: tc}
	tc.onClose = func() {
		cancel() // stops the session's lookups when the MTA hangs up
		if err := tc.timeoutErr(); err != nil {
			srv.metrics.MilterErrors.WithLabelValues("timeout").Inc()
			c.log.Info("milter connection idle too long; closed", "idle_timeout", srv.opts.IdleTimeout)
		}
		c.log.Debug("milter connection closed")
		srv.active.Add(-1)
		srv.metrics.SessionsActive.Dec()
		srv.mu.Lock()
		delete(srv.conns, tc)
		srv.mu.Unlock()
		srv.wg.Done()
	}
	// Registered once onClose is set: Shutdown may close it from now on.
	srv.mu.Lock()
	if srv.shutdown {
		srv.mu.Unlock()
		cancel()
		srv.active.Add(-1)
		srv.metrics.SessionsActive.Dec()
		raw.Close()
		return
	}
	srv.conns[tc] = struct{}{}
	srv.wg.Add(1)
	srv.mu.Unlock()
	srv.metrics.SessionsTotal.Inc()

	var backend milter.Milter = session{c}
	if max := srv.opts.MaxConnections; max > 0 && n > int64(max) {
		srv.metrics.SessionsRefused.WithLabelValues("overload").Inc()
		backend = overloaded{accept: srv.opts.OverloadAction == "accept"}
		c.log.Warn("too many milter connections; answering without checks",
			"active", n, "max_connections", max, "overload_action", srv.opts.OverloadAction)
	}
	ms := &milter.Server{
		NewMilter: func() milter.Milter { return backend },
		Actions:   milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine | milter.OptSetSymList,
		// No body: vouch never reads it, so the MTA need not send it.
		Protocol: milter.OptNoBody,
		SymList:  symList,
	}
	ms.Serve(&oneConnListener{conn: tc})
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
	open := make([]*trackedConn, 0, len(srv.conns))
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

// trackedConn is a milter connection: it enforces the idle timeout and
// ends the connection's state when go-milter (or Shutdown) closes it.
type trackedConn struct {
	net.Conn
	// in buffers reads: go-milter reads each packet's length, then its
	// body, two system calls a packet unbuffered.
	in *bufio.Reader
	// out holds what go-milter writes until it next reads: an answer at
	// end of message is a packet per header change and then the reply,
	// each its own write system call otherwise. The MTA waits for the
	// reply before it sends more, so nothing is held back from it. Only
	// the connection's goroutine writes and reads.
	out       []byte
	idle      time.Duration
	deadline  time.Time // the read deadline last set; only Read uses it
	closeOnce sync.Once
	onClose   func() // run once, after the first Close
	timedOut  atomic.Bool
}

// readBufferSize holds the common packets (macros, commands, a header
// field) whole; a longer one is read in parts or straight into go-milter's
// buffer. Idle connections keep it, so it stays small.
const readBufferSize = 512

func newTrackedConn(c net.Conn, idle time.Duration) *trackedConn {
	tc := &trackedConn{Conn: c, idle: idle}
	tc.in = bufio.NewReaderSize(rawReader{tc}, readBufferSize)
	return tc
}

// idleSlack is how far past IdleTimeout a read deadline is set, so that
// it needs moving about once per slack of activity rather than on every
// read (two a milter packet), each move being a runtime timer update.
func idleSlack(idle time.Duration) time.Duration { return min(idle/8, time.Second) }

// maxHeldOutput bounds the output buffer a connection keeps between
// answers; a larger one (many header changes) is dropped after use.
const maxHeldOutput = 2048

func (c *trackedConn) Write(p []byte) (int, error) {
	if c.out == nil {
		c.out = make([]byte, 0, 256) // most answers fit
	}
	c.out = append(c.out, p...)
	return len(p), nil
}

// Read sends what was written since the last read, then reads. A failed
// send fails the read: go-milter then closes the connection, as it does
// after a failed write.
func (c *trackedConn) Read(p []byte) (int, error) {
	if len(c.out) > 0 {
		_, err := c.Conn.Write(c.out)
		if cap(c.out) > maxHeldOutput {
			c.out = nil
		} else {
			c.out = c.out[:0]
		}
		if err != nil {
			return 0, err
		}
	}
	return c.in.Read(p)
}

// writePacket queues a milter packet: its length, code and data, as
// go-milter writes one.
func (c *trackedConn) writePacket(code byte, data []byte) {
	if c.out == nil {
		c.out = make([]byte, 0, 256)
	}
	c.out = binary.BigEndian.AppendUint32(c.out, uint32(len(data)+1))
	c.out = append(c.out, code)
	c.out = append(c.out, data...)
}

// insertHeader queues SMFIR_INSHEADER, as go-milter's
// Modifier.InsertHeader encodes it (length, 'i', index, name NUL, value
// with CRLF as LF, NUL), without the buffers go-milter allocates for each
// packet it writes: an answer at end of message carries two.
func (c *trackedConn) insertHeader(index int, name, value string) {
	if c.out == nil {
		c.out = make([]byte, 0, 256)
	}
	start := len(c.out)
	c.out = append(c.out, 0, 0, 0, 0, 'i')
	c.out = binary.BigEndian.AppendUint32(c.out, uint32(index))
	c.out = append(c.out, name...)
	c.out = append(c.out, 0)
	for {
		i := strings.Index(value, "\r\n")
		if i < 0 {
			break
		}
		c.out = append(c.out, value[:i]...)
		c.out = append(c.out, '\n')
		value = value[i+2:]
	}
	c.out = append(c.out, value...)
	c.out = append(c.out, 0)
	binary.BigEndian.PutUint32(c.out[start:], uint32(len(c.out)-start-4))
}

// rawReader reads from the connection itself, under the idle deadline.
type rawReader struct{ c *trackedConn }

func (r rawReader) Read(p []byte) (int, error) { return r.c.read(p) }

func (c *trackedConn) read(p []byte) (int, error) {
	if c.idle > 0 {
		if now := time.Now(); c.deadline.Sub(now) < c.idle {
			c.deadline = now.Add(c.idle + idleSlack(c.idle))
			c.Conn.SetReadDeadline(c.deadline)
		}
	}
	n, err := c.Conn.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.timedOut.Store(true)
	}
	return n, err
}

func (c *trackedConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

func (c *trackedConn) timeoutErr() error {
	if c.timedOut.Load() {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// oneConnListener hands go-milter a single connection; the next Accept
// fails, which ends go-milter's Serve (not the connection).
type oneConnListener struct {
	conn *trackedConn
	used bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.used {
		l.used = true
		return l.conn, nil
	}
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// overloaded answers a connection past MaxConnections at connect, with no
// checks: the MTA stops asking for the rest of the session.
type overloaded struct {
	milter.NoOpMilter
	accept bool
}

func (o overloaded) Connect(string, string, uint16, net.IP, *milter.Modifier) (milter.Response, error) {
	if o.accept {
		return respAccept, nil
	}
	return respTempFail, nil
}
