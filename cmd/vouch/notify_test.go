package main

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// notification is one sd_notify message as systemd would receive it, and
// what a client found when it tried vouch's listeners right on receipt.
type notification struct {
	state        string
	milterErr    error // negotiating on the milter socket
	readyzStatus int   // GET /readyz
	readyzErr    error
}

// listenNotify is a stand-in for systemd's notification socket: each
// datagram is probed against the listeners at once, before the test goes
// on, so a READY=1 sent before the listeners are up is caught.
func listenNotify(t *testing.T, milterSock, metricsAddr string) <-chan notification {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	out := make(chan notification, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(out)
				return
			}
			no := notification{state: string(buf[:n])}
			if no.state == "READY=1" {
				no.milterErr = negotiate(milterSock)
				if resp, err := http.Get("http://" + metricsAddr + "/readyz"); err != nil {
					no.readyzErr = err
				} else {
					no.readyzStatus = resp.StatusCode
					resp.Body.Close()
				}
			}
			out <- no
		}
	}()
	return out
}

// negotiate opens a milter session on a unix socket: the option
// negotiation only succeeds if vouch is serving it.
func negotiate(sock string) error {
	cl := gomilter.NewClientWithOptions("unix", sock, gomilter.ClientOptions{
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
	})
	s, err := cl.Session()
	if err != nil {
		return err
	}
	return s.Close()
}

func nextNotification(t *testing.T, ch <-chan notification) notification {
	t.Helper()
	select {
	case n, ok := <-ch:
		if !ok {
			t.Fatal("notification socket closed")
		}
		return n
	case <-time.After(20 * time.Second):
		t.Fatal("no sd_notify message within 20s")
	}
	return notification{}
}

// TestNotifySystemd is the Type=notify contract of deploy/systemd's unit:
// READY=1 only once the milter socket accepts sessions and /readyz says
// ready (so Postfix, ordered after vouch, starts into a working milter),
// RELOADING=1 and READY=1 around a SIGHUP, STOPPING=1 on SIGTERM.
func TestNotifySystemd(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "vouch.sock")
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ch := listenNotify(t, sock, metrics)
	c := startChild(t, "-milter.listen", "unix:"+sock, "-metrics.listen", metrics)

	n := nextNotification(t, ch)
	if n.state != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", n.state)
	}
	if n.milterErr != nil {
		t.Errorf("READY=1 sent while the milter socket %s does not negotiate: %v", sock, n.milterErr)
	}
	if n.readyzErr != nil || n.readyzStatus != http.StatusOK {
		t.Errorf("READY=1 sent while /readyz answers %d (%v)", n.readyzStatus, n.readyzErr)
	}

	c.signal(syscall.SIGHUP)
	if n := nextNotification(t, ch); n.state != "RELOADING=1" {
		t.Errorf("on SIGHUP: %q, want RELOADING=1", n.state)
	}
	if n := nextNotification(t, ch); n.state != "READY=1" || n.milterErr != nil {
		t.Errorf("after the reload: %q (milter: %v), want READY=1 and serving", n.state, n.milterErr)
	}

	c.signal(syscall.SIGTERM)
	if n := nextNotification(t, ch); n.state != "STOPPING=1" {
		t.Errorf("on SIGTERM: %q, want STOPPING=1", n.state)
	}
	c.waitLog("vouch stopped")
}
