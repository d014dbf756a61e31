package prometheus

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// selector is a metric name in a PromQL expression and the label names
// its matchers use.
type selector struct {
	name   string
	labels []string
}

// metricPrefixes are the families vouch exports: its own, and the Go and
// process collectors'. Other identifiers in an expression (functions,
// keywords, label names, up) are not metric names vouch must export.
var metricPrefixes = []string{"vouch_", "go_", "process_"}

// selectors extracts the metric selectors of the vouch families from a
// PromQL expression: enough of PromQL for our own rules and dashboard
// (strings, durations, label matchers and grouping), not a full parser.
func selectors(expr string) ([]selector, error) {
	var out []selector
	i := 0
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			// Numbers and durations (5m, 1.5e3) are not names.
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			j := i
			for j < len(expr) && isIdent(expr[j], false) {
				j++
			}
			name := expr[i:j]
			i = j
			s := selector{name: name}
			k := skipSpace(expr, i)
			if k < len(expr) && expr[k] == '{' {
				labels, end, err := matcherLabels(expr, k)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				s.labels, i = labels, end
			}
			if hasMetricPrefix(name) {
				out = append(out, s)
			}
		case c == '{':
			// A selector without a metric name, {__name__=...}: not used
			// here, and a name hidden in a string would escape the check.
			return nil, fmt.Errorf("selector without a metric name at %q", expr[i:])
		default:
			i++
		}
	}
	return out, nil
}

func hasMetricPrefix(name string) bool {
	for _, p := range metricPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string literal starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at %q", s[i:])
}

// matcherLabels reads {l="v", l2=~"v"} at i and returns the label names
// and the index after the closing brace.
func matcherLabels(s string, i int) ([]string, int, error) {
	var labels []string
	i++ // {
	for {
		i = skipSpace(s, i)
		if i >= len(s) {
			return nil, 0, fmt.Errorf("unterminated label matchers")
		}
		if s[i] == '}' {
			return labels, i + 1, nil
		}
		if s[i] == ',' {
			i++
			continue
		}
		j := i
		for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		if j == i {
			return nil, 0, fmt.Errorf("bad label matcher at %q", s[i:])
		}
		labels = append(labels, s[i:j])
		i = skipSpace(s, j)
		for i < len(s) && strings.IndexByte("=!~", s[i]) >= 0 {
			i++
		}
		i = skipSpace(s, i)
		if i >= len(s) || (s[i] != '"' && s[i] != '\'' && s[i] != '`') {
			return nil, 0, fmt.Errorf("label %s: want a quoted value", labels[len(labels)-1])
		}
		var err error
		if i, err = skipString(s, i); err != nil {
			return nil, 0, err
		}
	}
}

func TestSelectors(t *testing.T) {
	cases := []struct {
		expr string
		want []selector
		err  bool
	}{
		{`up{job="vouch"} == 0`, nil, false},
		{`rate(vouch_decisions_total{action="tempfail"}[15m])`,
			[]selector{{"vouch_decisions_total", []string{"action"}}}, false},
		{`histogram_quantile(0.99, sum by (le, check) (rate(vouch_check_duration_seconds_bucket[5m])))`,
			[]selector{{"vouch_check_duration_seconds_bucket", nil}}, false},
		{`sum(vouch_a{x=~"vouch_b|c", y!="}"}) / vouch_c offset 1h`,
			[]selector{{"vouch_a", []string{"x", "y"}}, {"vouch_c", nil}}, false},
		{"process_resident_memory_bytes{job=\"vouch\"}\n# vouch_comment\n + go_goroutines",
			[]selector{{"process_resident_memory_bytes", []string{"job"}}, {"go_goroutines", nil}}, false},
		{`label_values(vouch_build_info, instance)`, []selector{{"vouch_build_info", nil}}, false},
		{`vouch_a {x = "1"}`, []selector{{"vouch_a", []string{"x"}}}, false},
		{`1e3 * vouch_x[5m:1m]`, []selector{{"vouch_x", nil}}, false},
		{`{__name__="vouch_hidden"}`, nil, true},
		{`vouch_a{x="1`, nil, true},
		{`vouch_a{x=1}`, nil, true},
	}
	for _, c := range cases {
		t.Run(c.expr, func(t *testing.T) {
			got, err := selectors(c.expr)
			if (err != nil) != c.err {
				t.Fatalf("error %v, want error: %v", err, c.err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// ruleExprs returns alerts.yml's expressions by alert or record name.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out["alerts.yml "+r.Alert+r.Record] = r.Expr
		}
	}
	if len(out) == 0 {
		t.Fatal("alerts.yml has no rules")
	}
	return out
}

// dashboardExprs returns the Grafana dashboard's queries: panel targets'
// expr and templating queries, wherever they are nested.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../grafana/vouch.json")
	if err != nil {
		t.Fatal(err)
	}
	var d any
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("vouch.json: %v", err)
	}
	out := map[string]string{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			title, _ := v["title"].(string)
			if title == "" {
				title, _ = v["name"].(string)
			}
			if title != "" {
				path += "/" + title
			}
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query" || k == "definition") && s != "" {
					out[fmt.Sprintf("vouch.json %s %s#%d", path, k, len(out))] = s
					continue
				}
				walk(path, x)
			}
		case []any:
			for _, x := range v {
				walk(path, x)
			}
		}
	}
	walk("", d)
	if len(out) == 0 {
		t.Fatal("vouch.json has no queries")
	}
	return out
}

// checkNames fails for a rule or dashboard query that uses a metric name,
// or a label on it, that the running vouch does not export: such a query
// is silently empty, and an alert on it never fires.
func checkNames(t *testing.T, e *exposition) {
	names := e.names()
	exprs := ruleExprs(t)
	for k, v := range dashboardExprs(t) {
		exprs[k] = v
	}
	used := map[string]bool{}
	var keys []string
	for k := range exprs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, where := range keys {
		sels, err := selectors(exprs[where])
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		for _, s := range sels {
			f, ok := names[s.name]
			if !ok {
				t.Errorf("%s: %s is not exported by vouch", where, s.name)
				continue
			}
			used[f.GetName()] = true
			known := labelNames(s.name, f)
			for _, l := range s.labels {
				if !known[l] {
					t.Errorf("%s: %s has no label %q", where, s.name, l)
				}
			}
		}
	}
	// The dashboard should show every vouch family; say which it misses.
	for name := range e.families {
		if strings.HasPrefix(name, "vouch_") && !used[name] {
			t.Logf("note: %s is in neither the rules nor the dashboard", name)
		}
	}
}

// TestAlertRules checks alerts.yml and scrape.yml with promtool and runs
// the rules' unit tests.
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "promtool", "/usr/bin/promtool")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "config", "scrape.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestAlertAnnotations: each alert tells the postmaster what is wrong and
// what to do, and says how bad it is.
func TestAlertAnnotations(t *testing.T) {
	data, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	tested, err := os.ReadFile("alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			seen[r.Alert] = true
			t.Run(r.Alert, func(t *testing.T) {
				if s := r.Labels["severity"]; s != "warning" && s != "critical" {
					t.Errorf("severity %q, want warning or critical", s)
				}
				for _, a := range []string{"summary", "description"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						t.Errorf("no %s annotation", a)
					}
				}
				// Fired and not fired: the unit tests name it at least twice.
				if n := strings.Count(string(tested), "alertname: "+r.Alert+"\n"); n < 2 {
					t.Errorf("alerts_test.yml names it %d times; want a case that fires and one that does not", n)
				}
			})
		}
	}
	for _, want := range []string{"VouchDown", "VouchTempfailRatioHigh", "VouchDNSTemperrorRatioHigh", "VouchConfigReloadFailed"} {
		if !seen[want] {
			t.Errorf("alerts.yml lacks %s", want)
		}
	}
}
