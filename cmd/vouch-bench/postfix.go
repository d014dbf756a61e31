package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/vouch-mail/vouch/deploy/e2e/mta"
	"github.com/vouch-mail/vouch/milter/config"
	"github.com/vouch-mail/vouch/milter/socket"
)

// The postfix command measures what a postmaster sees (issue 18): how many
// messages a second a real Postfix accepts with a milter attached, as a
// ratio of the same Postfix with none, in alternating rounds of one run.
// Each milter gets its own private Postfix (deploy/e2e/mta, queue on a
// private tmpfs, delivery to discard(8)), loaded by Postfix's own
// smtp-source from one sender that passes iprev, HELO and SPF.

const smtpSource = "/usr/sbin/smtp-source"

// postfixZone is the sender's world: smtp-source connects from 127.0.0.1,
// which is mail.sender.test, confirmed; sender.test's SPF allows it.
const postfixZone = `
$ORIGIN test.
$TTL 3600
@            SOA ns.test. hostmaster.test. 1 3600 600 86400 3600
mail.sender  A   127.0.0.1
mail.sender  TXT "v=spf1 a -all"
sender       TXT "v=spf1 a:mail.sender.test -all"
1.0.0.127.in-addr.arpa. PTR mail.sender.test.
`

const (
	benchHelo   = "mail.sender.test"
	benchSender = "bench@sender.test"
	benchDomain = "bench.test"
)

// postfixMilters are the milters the command can put behind Postfix.
var postfixMilters = []struct{ name, about string }{
	{"none", "Postfix alone"},
	{"noop", "go-milter v0.5.0 NoOpMilter negotiating what vouch negotiated before protocol 6 (version 2, no body)"},
	{"noop-min", "the same no-op also negotiating away HELO, MAIL, headers and end of headers (version 2)"},
	{"vouch", "vouch, daemon defaults, warm DNS cache"},
	{"vouch-cold", "vouch with its DNS cache off (cache_size 0): every check asks the DNS server"},
}

// PostfixResult is one milter's figures over the rounds.
type PostfixResult struct {
	Milter string    `json:"milter"`
	About  string    `json:"about"`
	Rates  []float64 `json:"messages_per_second"` // one per round
	Median float64   `json:"median_messages_per_second"`
	// Ratio is the median over rounds of the rate divided by Postfix
	// alone's in the same round.
	Ratio    float64 `json:"ratio_to_none"`
	RatioMin float64 `json:"ratio_min"`
	RatioMax float64 `json:"ratio_max"`
	// Pooled is the mean rate over the rounds divided by Postfix
	// alone's: a slow spell of the machine weighs on both.
	Pooled float64 `json:"pooled_ratio_to_none"`
}

// PostfixReport is the postfix command's output.
type PostfixReport struct {
	Postfix     string          `json:"postfix"`
	Command     string          `json:"command"`
	Rounds      int             `json:"rounds"`
	CPUs        int             `json:"cpus"`
	LoadBefore  string          `json:"loadavg_before"`
	LoadAfter   string          `json:"loadavg_after"`
	Results     []PostfixResult `json:"results"`
	MilterWarns int             `json:"postfix_milter_warnings"`
}

func postfixCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postfix", flag.ContinueOnError)
	rounds := fs.Int("rounds", 5, "rounds; each runs every milter once, in an order that rotates")
	messages := fs.Int("m", 2000, "messages per run (smtp-source -m)")
	sessions := fs.Int("s", 16, "parallel SMTP sessions (smtp-source -s)")
	length := fs.Int("l", 1000, "message length in bytes (smtp-source -l)")
	reuse := fs.Bool("d", false, "several messages per SMTP connection (smtp-source -d): about -m/-s each")
	list := fs.String("milters", "none,noop,noop-min,vouch", "comma-separated milters: none, noop, noop-min, vouch, vouch-cold")
	jsonOut := fs.Bool("json", false, "print JSON")
	var external []string
	fs.Func("external", "`NAME=ADDR`: also a milter already listening at ADDR (e.g. another build of vouch, \"vouch-bench serve -zone\" with -print-zone's zone); repeatable",
		func(v string) error {
			name, addr, ok := strings.Cut(v, "=")
			if !ok || name == "" || addr == "" {
				return errors.New("want NAME=ADDR")
			}
			external = append(external, v)
			return nil
		})
	printZone := fs.Bool("print-zone", false, "print the zone the sender passes in, and exit")
	profile := loadFlags{}
	fs.StringVar(&profile.cpuprofile, "cpuprofile", "", "write a CPU profile of this process (the milters it serves) to `file`")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *printZone {
		fmt.Fprint(stdout, postfixZone)
		return exitOK
	}
	stop, err := profile.profile()
	if err != nil {
		return fail(stderr, "postfix", err)
	}
	defer stop()
	names := strings.Split(*list, ",")
	if !slices.Contains(names, "none") {
		names = append([]string{"none"}, names...)
	}
	for _, n := range names {
		if slices.ContainsFunc(external, func(e string) bool { return strings.HasPrefix(e, n+"=") }) {
			continue
		}
		if !slices.ContainsFunc(postfixMilters, func(m struct{ name, about string }) bool { return m.name == n }) {
			return usageErr(stderr, "postfix", fmt.Errorf("unknown milter %q", n))
		}
	}
	if *rounds < 1 || *messages < 1 || *sessions < 1 || *length < 1 {
		return usageErr(stderr, "postfix", errors.New("-rounds, -m, -s and -l must be at least 1"))
	}
	if _, err := os.Stat(smtpSource); err != nil {
		return fail(stderr, "postfix", fmt.Errorf("%s: %w (Debian: apt-get install postfix)", smtpSource, err))
	}
	if os.Geteuid() != 0 {
		return fail(stderr, "postfix", errors.New("private Postfix instances need root"))
	}
	srcArgs := []string{"-s", strconv.Itoa(*sessions), "-l", strconv.Itoa(*length), "-m", strconv.Itoa(*messages)}
	if *reuse {
		srcArgs = append(srcArgs, "-d")
	}
	srcArgs = append(srcArgs, "-M", benchHelo, "-f", benchSender, "-t", "user@"+benchDomain)

	b := &postfixBench{tb: &harnessTB{log: stderr}, stderr: stderr, external: map[string]string{}}
	for _, e := range external {
		name, addr, _ := strings.Cut(e, "=")
		b.external[name] = addr
		names = append(names, name)
	}
	defer b.close()
	if err := b.start(names); err != nil {
		return fail(stderr, "postfix", err)
	}
	rep := PostfixReport{
		Postfix: postfixVersion(), Command: "smtp-source " + strings.Join(srcArgs, " ") + " 127.0.0.1:PORT",
		Rounds: *rounds, CPUs: runtime.NumCPU(), LoadBefore: loadavg(),
	}
	// Warm-up: Postfix's process pools, vouch's cache.
	for _, u := range b.under {
		warm := []string{"-s", strconv.Itoa(*sessions), "-l", strconv.Itoa(*length), "-m", strconv.Itoa(4 * *sessions),
			"-M", benchHelo, "-f", benchSender, "-t", "user@" + benchDomain}
		if _, err := b.source(ctx, u, warm); err != nil {
			return fail(stderr, "postfix", fmt.Errorf("warm-up, %s: %w", u.name, err))
		}
	}
	rates := make([][]float64, len(b.under))
	for r := 0; r < *rounds; r++ {
		for k := range b.under {
			i := (r + k) % len(b.under)
			u := b.under[i]
			d, err := b.source(ctx, u, srcArgs)
			if err != nil {
				return fail(stderr, "postfix", fmt.Errorf("round %d, %s: %w", r+1, u.name, err))
			}
			rate := float64(*messages) / d.Seconds()
			rates[i] = append(rates[i], rate)
			fmt.Fprintf(stderr, "round %d/%d %-10s %7.1f msg/s\n", r+1, *rounds, u.name, rate)
		}
	}
	rep.LoadAfter = loadavg()
	for i, u := range b.under {
		res := PostfixResult{Milter: u.name, About: u.about, Rates: rates[i], Median: median(rates[i])}
		var ratios []float64
		for r := range rates[i] {
			ratios = append(ratios, rates[i][r]/rates[0][r])
		}
		res.Ratio, res.RatioMin, res.RatioMax = median(ratios), slices.Min(ratios), slices.Max(ratios)
		res.Pooled = mean(rates[i]) / mean(rates[0])
		rep.Results = append(rep.Results, res)
		rep.MilterWarns += strings.Count(u.pf.Log(), "warning: milter")
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.writeText(stdout)
	}
	if rep.MilterWarns > 0 {
		fmt.Fprintf(stderr, "vouch-bench postfix: Postfix logged %d milter warnings\n", rep.MilterWarns)
		return exitError
	}
	return exitOK
}

func (r PostfixReport) writeText(w io.Writer) {
	fmt.Fprintf(w, "Postfix %s, %d CPUs, load average %s before, %s after\n", r.Postfix, r.CPUs, r.LoadBefore, r.LoadAfter)
	fmt.Fprintf(w, "%s, %d rounds\n\n", r.Command, r.Rounds)
	fmt.Fprintf(w, "%-11s %10s %8s %15s %8s\n", "milter", "msg/s", "ratio", "ratio range", "pooled")
	for _, res := range r.Results {
		fmt.Fprintf(w, "%-11s %10.1f %8.2f %7.2f-%.2f %8.2f\n", res.Milter, res.Median, res.Ratio, res.RatioMin, res.RatioMax, res.Pooled)
	}
	fmt.Fprintln(w)
	for _, res := range r.Results {
		fmt.Fprintf(w, "%-11s %s\n", res.Milter, res.About)
	}
}

func mean(v []float64) float64 {
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// underTest is one Postfix and the milter behind it.
type underTest struct {
	name, about string
	pf          mta.Server
}

type postfixBench struct {
	tb       *harnessTB
	stderr   io.Writer
	tmpfs    string // the private tmpfs the instances live on
	oldTmp   string
	closers  []func()
	under    []*underTest
	external map[string]string // name: milter address
}

// start mounts the tmpfs, starts the milters and one Postfix for each.
func (b *postfixBench) start(names []string) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(harnessFatal); !ok {
				panic(v)
			}
			err = errors.New("starting Postfix failed (see above)")
		}
	}()
	dir, err := os.MkdirTemp("", "vouch-bench-postfix-")
	if err != nil {
		return err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1g,mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		os.Remove(dir)
		return fmt.Errorf("mounting a tmpfs for the queues: %v: %s", err, out)
	}
	b.tmpfs, b.oldTmp = dir, os.Getenv("TMPDIR")
	os.Setenv("TMPDIR", dir) // the harness makes its instances under $TMPDIR
	for _, n := range names {
		u := &underTest{name: n}
		if addr, ok := b.external[n]; ok {
			u.about = "the milter at " + addr
		}
		for _, m := range postfixMilters {
			if m.name == n {
				u.about = m.about
			}
		}
		spec, err := b.startMilter(n)
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		u.pf = mta.StartPostfix(b.tb, mta.Options{
			MilterAddr: spec,
			Domain:     benchDomain,
			PostfixMain: map[string]string{
				"virtual_transport": "discard",
			},
		})
		b.under = append(b.under, u)
	}
	return nil
}

// startMilter starts the milter called name and returns its address.
func (b *postfixBench) startMilter(name string) (string, error) {
	var srv server
	var err error
	if addr, ok := b.external[name]; ok {
		return addr, nil
	}
	switch name {
	case "none":
		return "", nil
	case "noop":
		srv, err = startNoop(loopback)
	case "noop-min":
		srv, err = startNoopProtocol(loopback, gomilter.OptNoBody|gomilter.OptNoHelo|gomilter.OptNoMailFrom|gomilter.OptNoHeaders|gomilter.OptNoEOH)
	case "vouch":
		srv, err = startVouch(postfixZone, loopback, vouchOptions{})
	case "vouch-cold":
		srv, err = startVouch(postfixZone, loopback, vouchOptions{Configure: func(c *config.Config) {
			c.DNS.CacheSize, c.DNS.NegativeMaxTTL = 0, 0
		}})
	}
	if err != nil {
		return "", err
	}
	b.closers = append(b.closers, func() { srv.Close() })
	return milterSpec(srv.Address()), nil
}

// startNoopProtocol is startNoop's no-op asking the MTA for less.
func startNoopProtocol(a socket.Address, p gomilter.OptProtocol) (*noopServer, error) {
	ln, a, err := listenAt(a)
	if err != nil {
		return nil, err
	}
	s := &noopServer{addr: a, done: make(chan struct{}), srv: &gomilter.Server{
		NewMilter: func() gomilter.Milter { return gomilter.NoOpMilter{} },
		Actions:   gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine | gomilter.OptSetSymList,
		Protocol:  p,
		SymList: map[gomilter.Stage][]string{ // as startNoop's
			gomilter.StageConnect:  {"j", "_", "{daemon_name}", "{client_addr}", "{client_name}", "{client_resolve}"},
			gomilter.StageMailFrom: {"i", "{auth_type}", "{auth_authen}", "{mail_addr}"},
			gomilter.StageRcptTo:   {"i", "{rcpt_addr}"},
			gomilter.StageEOM:      {"i"},
		},
	}}
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	return s, nil
}

// source runs smtp-source against u's Postfix and waits until its queue
// is empty, so a round does not pay for the last one's deliveries.
func (b *postfixBench) source(ctx context.Context, u *underTest, args []string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, smtpSource, append(slices.Clone(args), u.pf.SMTPAddr())...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil || strings.TrimSpace(out.String()) != "" {
		return 0, fmt.Errorf("smtp-source: %v: %s", err, strings.TrimSpace(out.String()))
	}
	q := filepath.Join(u.pf.Dir(), "queue")
	for deadline := time.Now().Add(time.Minute); ; {
		if n := queued(q); n == 0 {
			return d, nil
		} else if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d messages still queued a minute after the run", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// queued counts the messages in a Postfix queue.
func queued(q string) int {
	n := 0
	for _, sub := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		filepath.WalkDir(filepath.Join(q, sub), func(_ string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
	}
	return n
}

func (b *postfixBench) close() {
	b.tb.close()
	for _, c := range slices.Backward(b.closers) {
		c()
	}
	if b.tmpfs != "" {
		os.Setenv("TMPDIR", b.oldTmp)
		if out, err := exec.Command("umount", "-l", b.tmpfs).CombinedOutput(); err != nil {
			fmt.Fprintf(b.stderr, "vouch-bench postfix: umount %s: %v: %s\n", b.tmpfs, err, out)
			return
		}
		os.Remove(b.tmpfs)
	}
}

func postfixVersion() string {
	out, err := exec.Command("/usr/sbin/postconf", "-h", "mail_version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
