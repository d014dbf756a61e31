// Command vouch is a milter that checks whether the sending server is who
// it claims to be: HELO against forward-confirmed reverse DNS, and the
// envelope sender against SPF.
package main

import (
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("vouch", version)
		return
	}
	fmt.Fprintln(os.Stderr, "vouch: the daemon is not built yet; only 'vouch version' works")
	os.Exit(2)
}
