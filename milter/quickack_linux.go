package milter

import (
	"net"
	"syscall"
)

// quickAck acknowledges what c has received at once (TCP_QUICKACK), for
// data vouch will not answer (negotiate.go). Best effort.
func quickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
