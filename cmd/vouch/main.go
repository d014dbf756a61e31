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
	cfg, err := config.Load(args[1])
	if err != nil {
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
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	fmt.Fprintf(stdout, "%s: OK\n", args[1])
	return exitOK
}

// flagOverrides are the command-line settings that win over the file:
// each flag is named after its configuration key.
type flagOverrides struct {
	configFile string
	values     map[string]*string // by configuration key
	set        []string           // the keys given, in command-line order
}

func parseServeFlags(args []string, stderr io.Writer) (*flagOverrides, error) {
	fs := flag.NewFlagSet("vouch serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := flagOverrides{values: map[string]*string{}}
	fs.StringVar(&f.configFile, "config", "", "configuration `file` (YAML); without it, the embedded defaults")
	for _, fl := range []struct{ key, usage string }{
		{"milter.listen", "milter `socket`: inet:PORT@HOST, inet6:PORT@HOST, unix:/path (default inet:8895@127.0.0.1)"},
		{"metrics.listen", "metrics and health `address` HOST:PORT (default 127.0.0.1:9895)"},
		{"log.format", "log `format`: text or json (default text)"},
		{"log.level", "log `level`: debug, info, warn, error (default info)"},
	} {
		f.values[fl.key] = fs.String(fl.key, "", fl.usage)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	fs.Visit(func(fl *flag.Flag) {
		if _, ok := f.values[fl.Name]; ok {
			f.set = append(f.set, fl.Name)
		}
	})
	return &f, nil
}

// load reads the configuration (file or defaults) and applies the flags.
func (f *flagOverrides) load() (*config.Config, error) {
	c, err := loadFile(f.configFile)
	if err != nil {
		return nil, err
	}
	// Flags are decoded and checked like the file's keys.
	for _, key := range f.set {
		if err := c.Set("command line", key, *f.values[key]); err != nil {
			return nil, err
		}
	}
	if err := c.Validate("command line"); err != nil {
		return nil, err
	}
	return c, nil
}

// usageError reports a tool's flag error the same way for every tool:
// -h is no error; anything else says how to get help.
func usageError(tool string, err error, stderr io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "vouch %s: %v\nRun 'vouch %s -h' for help.\n", tool, err, tool)
	return exitUsage
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
type textReport interface{ WriteText(io.Writer) }

// printReport writes rep as indented JSON for scripts, or as text.
func printReport(rep textReport, asJSON bool, w io.Writer) error {
	if !asJSON {
		rep.WriteText(w)
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
