// Command vouch is a milter for Postfix and Sendmail that checks whether
// the sending server is who it claims to be: its HELO name against
// forward-confirmed reverse DNS, its envelope sender against SPF.
//
//	vouch [serve] [flags]        run the daemon (embedded defaults without -config)
//	vouch check --ip --helo --from   explain one decision, as the daemon takes it
//	vouch audit --ip --helo --domain check your own outbound mail server
//	vouch config check FILE      validate a configuration file
//	vouch healthcheck            exit 0 if the running vouch is ready (Docker, Kubernetes)
//	vouch version                print the version
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/vouch-mail/vouch/milter/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if len(args) == 1 {
		switch args[0] {
		case "-h", "-help", "--help":
			cmd = "help"
		case "-version", "--version":
			cmd = "version"
		}
	}
	switch cmd {
	case "serve":
		return serveCommand(args, stderr)
	case "config":
		return configCommand(args, stdout, stderr)
	case "check":
		return checkCommand(args, stdout, stderr)
	case "audit":
		return auditCommand(args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "vouch %s %s %s/%s\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "healthcheck":
		return healthcheckCommand(args, stdout, stderr)
	case "help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "vouch: unknown command %q\n\n", cmd)
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  vouch [serve] [flags]       run the milter daemon (embedded defaults without -config)
  vouch config check FILE     validate a configuration file; errors name file and line
  vouch check --ip IP --helo NAME --from ADDR
                              explain the decision vouch would take for one transaction
  vouch audit --ip IP --helo NAME --domain DOMAIN [--smtp HOST:PORT]
                              check your own outgoing mail server as a picky receiver would
  vouch healthcheck [-config FILE]
                              exit 0 if the running vouch answers ready on /readyz, else 1
  vouch version               print the version (also --version)
  vouch help                  print this list (also --help)

Run 'vouch COMMAND -h' for a command's flags and exit statuses.
The manual: man 8 vouch; the configuration file: man 5 vouch.yaml.
`)
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func configCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: vouch config check FILE")
		return exitUsage
	}
	if _, err := config.Load(args[1]); err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(stderr, e)
			}
		} else {
			fmt.Fprintln(stderr, err)
		}
		return exitError
	}
	fmt.Fprintf(stdout, "%s: OK\n", args[1])
	return exitOK
}

// flagOverrides are the command-line settings that win over the file.
type flagOverrides struct {
	configFile    string
	milterListen  string
	metricsListen string
	logFormat     string
	logLevel      string
	set           map[string]bool
}

func parseServeFlags(args []string, stderr io.Writer) (*flagOverrides, error) {
	fs := flag.NewFlagSet("vouch serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f flagOverrides
	fs.StringVar(&f.configFile, "config", "", "configuration `file` (YAML); without it, the embedded defaults")
	fs.StringVar(&f.milterListen, "milter.listen", "", "milter `socket`: inet:PORT@HOST, inet6:PORT@HOST, unix:/path (default inet:8895@127.0.0.1)")
	fs.StringVar(&f.metricsListen, "metrics.listen", "", "metrics and health `address` HOST:PORT (default 127.0.0.1:9895)")
	fs.StringVar(&f.logFormat, "log.format", "", "log `format`: text or json (default text)")
	fs.StringVar(&f.logLevel, "log.level", "", "log `level`: debug, info, warn, error (default info)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	return &f, nil
}

// load reads the configuration (file or defaults) and applies the flags.
func (f *flagOverrides) load() (*config.Config, error) {
	c, err := loadFile(f.configFile)
	if err != nil {
		return nil, err
	}
	if f.set["milter.listen"] {
		c.Milter.Listen = f.milterListen
	}
	if f.set["metrics.listen"] {
		c.Metrics.Listen = f.metricsListen
	}
	if f.set["log.format"] {
		c.Log.Format = f.logFormat
	}
	if f.set["log.level"] {
		c.Log.Level = f.logLevel
	}
	// Flags are checked like the file's keys.
	if err := c.Validate("command line"); err != nil {
		return nil, err
	}
	return c, nil
}

// requireFlags reports the named flags that were not given, and stray
// arguments.
func requireFlags(fs *flag.FlagSet, names ...string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var missing []string
	for _, name := range names {
		if !set[name] {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return nil
}

// textReport is what check and audit print for people.
type textReport interface{ writeText(io.Writer) }

// printReport writes rep as indented JSON for scripts, or as text.
func printReport(rep textReport, asJSON bool, w io.Writer) error {
	if !asJSON {
		rep.writeText(w)
		return nil
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(rep)
}

// loadFile reads a configuration file, or gives the embedded defaults
// when there is none.
func loadFile(file string) (*config.Config, error) {
	if file == "" {
		return config.Default(), nil
	}
	return config.Load(file)
}
