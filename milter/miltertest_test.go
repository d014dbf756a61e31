package milter_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vouch-mail/vouch/milter/socket"
)

// TestMiltertest runs libmilter's own MTA side, miltertest(8), against
// vouch at protocol versions 2 and 6: the script
// (testdata/miltertest/session.lua) asserts what vouch negotiates and
// every reply, the fields it inserts and the forged one it removes.
func TestMiltertest(t *testing.T) {
	bin, err := exec.LookPath("miltertest")
	if err != nil {
		if os.Getenv("VOUCH_E2E") == "1" {
			t.Fatal("miltertest not installed (apt-get install miltertest); required under VOUCH_E2E=1")
		}
		t.Skip("miltertest not installed: apt-get install miltertest")
	}
	for _, version := range []string{"2", "6"} {
		t.Run("version "+version, func(t *testing.T) {
			e := newEnv(t)
			a := socket.Address{Network: "tcp", Address: e.addr}
			spec := "inet:" + a.Address[strings.LastIndex(a.Address, ":")+1:] + "@127.0.0.1"
			out, err := exec.Command(bin, "-v", "-D", "SOCKET="+spec, "-D", "VERSION="+version, "-s", "testdata/miltertest/session.lua").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "session ok") {
				t.Errorf("miltertest at version %s: %v\n%s", version, err, out)
			}
		})
	}
}
