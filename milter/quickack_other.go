//go:build !linux

package milter

import "net"

// quickAck is Linux's TCP_QUICKACK; elsewhere delayed ACKs stay.
func quickAck(net.Conn) {}
