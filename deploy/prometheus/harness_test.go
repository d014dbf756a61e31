package prometheus

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// e2eRequired is set in CI: a missing tool is then a failure, not a skip.
func e2eRequired() bool { return os.Getenv("VOUCH_E2E") == "1" }

// tool finds an external program, skipping (or, under VOUCH_E2E=1,
// failing) the test when it is absent.
func tool(t *testing.T, name string, paths ...string) string {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (Debian package prometheus; .ci/run installs it)", name)
	if e2eRequired() {
		t.Fatal(msg + " and VOUCH_E2E=1")
	}
	t.Skip(msg + "; skipping")
	return ""
}

// moduleRoot is the directory of vouch's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(goTool(t), "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		t.Fatal("not inside the vouch module")
	}
	return filepath.Dir(mod)
}

func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if r := os.Getenv("GOROOT"); r != "" {
		return filepath.Join(r, "bin", "go")
	}
	t.Fatal("no go command in PATH")
	return ""
}

// dockerBuild is the go build command of the Dockerfile's build stage,
// as arguments after "go", and the environment it sets (ENV lines).
func dockerBuild(t *testing.T, root string) (args []string, env []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, as Docker does.
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "ENV "); ok {
			env = append(env, strings.Fields(v)...)
		}
		if !strings.HasPrefix(line, "RUN ") {
			continue
		}
		i := strings.Index(line, "go build ")
		if i < 0 {
			continue
		}
		cmd := line[i+len("go "):]
		if j := strings.Index(cmd, "&&"); j >= 0 {
			cmd = cmd[:j]
		}
		args, err = shellWords(cmd)
		if err != nil {
			t.Fatalf("Dockerfile build command %q: %v", cmd, err)
		}
		return args, env
	}
	t.Fatal("Dockerfile has no RUN ... go build line")
	return nil, nil
}

// shellWords splits a command the way sh would for the simple quoting the
// Dockerfile uses: blanks separate words, double quotes group them.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// buildVouch builds vouch with the Dockerfile's own command (so the image
// and this test run the same kind of binary), with version as
// main.version, and checks that the result is static.
func buildVouch(t *testing.T, version string) string {
	t.Helper()
	root := moduleRoot(t)
	args, env := dockerBuild(t, root)
	out := filepath.Join(t.TempDir(), "vouch")
	hasOut := false
	for i, a := range args {
		a = strings.ReplaceAll(a, "${VERSION}", version)
		args[i] = strings.ReplaceAll(a, "$VERSION", version)
		if i > 0 && args[i-1] == "-o" {
			args[i], hasOut = out, true
		}
	}
	if !hasOut {
		t.Fatalf("Dockerfile build command %q has no -o", args)
	}
	cmd := exec.Command(goTool(t), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	checkStatic(t, out)
	return out
}

// checkStatic fails unless bin is a statically linked Go binary built with
// CGO_ENABLED=0 and -trimpath, as a distroless/static image needs.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s is dynamically linked (program header %v): the static image cannot run it", bin, p.Type)
		}
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" {
		t.Errorf("built with CGO_ENABLED=%q, want 0", settings["CGO_ENABLED"])
	}
	if settings["-trimpath"] != "true" {
		t.Errorf("built without -trimpath")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// process is a child program whose output is kept for failure reports.
type process struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// lines returns the output lines that contain s.
func (p *process) lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(p.output()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			out = append(out, sc.Text())
		}
	}
	return out
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// start runs a program until the test ends; its output is logged when
// the test fails.
func start(t *testing.T, name, bin string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	return p
}

// waitFor polls cond until it returns nil or the deadline passes; the
// deadline is generous, for a loaded CI machine.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(url string) (int, []byte, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// exposition is one scrape of /metrics.
type exposition struct {
	raw      []byte
	families map[string]*dto.MetricFamily
}

func scrape(t *testing.T, url string) *exposition {
	t.Helper()
	code, body, err := httpGet(url)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, code, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return &exposition{raw: body, families: fams}
}

// value is the value of the series name{labels}, where labels is
// "k=v,k=v" (exact label set); ok is false if there is no such series.
func (e *exposition) value(name, labels string) (float64, bool) {
	f := e.families[name]
	if f == nil {
		return 0, false
	}
	want := map[string]string{}
	if labels != "" {
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			want[k] = v
		}
	}
	for _, m := range f.Metric {
		if len(m.Label) != len(want) {
			continue
		}
		match := true
		for _, l := range m.Label {
			if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// series lists name's series as "k=v,k=v value" lines, labels sorted as
// the exposition sorts them; histograms give their count.
func (e *exposition) series(name string) map[string]float64 {
	out := map[string]float64{}
	f := e.families[name]
	if f == nil {
		return out
	}
	for _, m := range f.Metric {
		var kv []string
		for _, l := range m.Label {
			kv = append(kv, l.GetName()+"="+l.GetValue())
		}
		key := strings.Join(kv, ",")
		v, _ := e.value(name, key)
		out[key] = v
	}
	return out
}

// names are the sample names a query can use: each family's name and,
// for histograms and summaries, the _bucket/_sum/_count series.
func (e *exposition) names() map[string]*dto.MetricFamily {
	out := map[string]*dto.MetricFamily{}
	for name, f := range e.families {
		out[name] = f
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[name+s] = f
			}
		case dto.MetricType_SUMMARY:
			for _, s := range []string{"_sum", "_count"} {
				out[name+s] = f
			}
		}
	}
	return out
}

// labelNames are the label names a query may match on a sample name of f,
// including le for histogram buckets and quantile for summaries.
func labelNames(name string, f *dto.MetricFamily) map[string]bool {
	out := map[string]bool{"job": true, "instance": true}
	for _, m := range f.Metric {
		for _, l := range m.Label {
			out[l.GetName()] = true
		}
	}
	if f.GetType() == dto.MetricType_HISTOGRAM && strings.HasSuffix(name, "_bucket") {
		out["le"] = true
	}
	if f.GetType() == dto.MetricType_SUMMARY && name == f.GetName() {
		out["quantile"] = true
	}
	return out
}
