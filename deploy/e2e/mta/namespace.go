package mta

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vouch-mail/vouch/checks/checktest"
)

// Both MTAs log through syslog(3), and neither can be told to use another
// socket than /dev/log, which the machine may not have (containers) or
// which belongs to the machine's logger. So each instance runs in its own
// mount namespace whose /dev is a directory of the instance: the few
// devices the MTAs open, bound in from the real /dev, and log, a symlink
// to a datagram socket the harness reads. Nothing of the machine changes:
// Go makes the new namespace's mounts private before the shell runs, and
// the binds vanish with the last process of the instance.

// devices are the device nodes the MTAs and the delivery script use.
const devices = "null zero full random urandom"

// devPrologue is shell code that, run in the fresh mount namespace with $d
// set to the instance directory, puts the private /dev in place.
const devPrologue = `for n in ` + devices + `; do mount --bind "/dev/$n" "$d/dev/$n"; done
mount --rbind "$d/dev" /dev
`

// syslogSink is the instance's /dev/log: a datagram socket whose messages
// are appended to a log buffer.
type syslogSink struct {
	conn *net.UnixConn
	log  *checktest.LogBuffer
	done chan struct{} // closed when the reader returned
}

// startSyslog prepares dir/dev and starts reading dir/log.sock into log.
func startSyslog(dir string, log *checktest.LogBuffer) (*syslogSink, error) {
	if err := os.Mkdir(filepath.Join(dir, "dev"), 0o755); err != nil {
		return nil, err
	}
	for _, n := range strings.Fields(devices) {
		// Mount points only; the real devices are bound over them.
		if err := os.WriteFile(filepath.Join(dir, "dev", n), nil, 0o600); err != nil {
			return nil, err
		}
	}
	sock := filepath.Join(dir, "log.sock")
	if err := os.Symlink(sock, filepath.Join(dir, "dev", "log")); err != nil {
		return nil, err
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("syslog socket: %w", err)
	}
	// Postfix daemons log as the postfix user.
	if err := os.Chmod(sock, 0o666); err != nil {
		conn.Close()
		return nil, err
	}
	s := &syslogSink{conn: conn, log: log, done: make(chan struct{})}
	go s.read()
	return s, nil
}

// read appends each datagram to the log as one line, without the
// <priority> prefix.
func (s *syslogSink) read() {
	defer close(s.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			return
		}
		msg := buf[:n]
		if i := bytes.IndexByte(msg, '>'); i > 0 && i < 5 && msg[0] == '<' {
			msg = msg[i+1:]
		}
		msg = bytes.TrimRight(msg, "\n\x00")
		s.log.Write(append(append([]byte{}, msg...), '\n'))
	}
}

// Close stops reading; messages sent later are lost.
func (s *syslogSink) Close() {
	s.conn.Close()
	<-s.done
}

// nsCommand runs script with /bin/sh in fresh mount (and, with uts, UTS)
// namespaces; the script sees the instance directory as $d and args as
// "$@". It must end by exec'ing the MTA, so the process started is the
// MTA itself.
func nsCommand(dir string, uts bool, script string, args ...string) *exec.Cmd {
	cmd := exec.Command("/bin/sh", append([]string{"-c", "set -e\nd=$1\nshift\n" + script, "sh", dir}, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	flags := uintptr(syscall.CLONE_NEWNS)
	if uts {
		flags |= syscall.CLONE_NEWUTS
	}
	// With CLONE_NEWNS in Unshareflags, Go remounts / private (MS_REC)
	// before exec, so the script's binds never reach the machine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: flags}
	return cmd
}

// safePath reports whether p can go unquoted into the MTAs' config files
// and the shell and m4 code the harness writes.
func safePath(p string) bool {
	return filepath.IsAbs(p) && !strings.ContainsAny(p, " \t\r\n,;`'\"\\$#(){}[]*?<>|&")
}
