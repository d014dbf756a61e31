// Package prometheus holds vouch's Prometheus alert rules, their unit
// tests and an example scrape configuration; its Go tests run a real vouch
// (built with the Dockerfile's command) and a real Prometheus against it.
package prometheus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"go.yaml.in/yaml/v3"
)

// TestObservability drives a known sequence of SMTP sessions through a
// vouch daemon and checks what a postmaster's monitoring sees of it: the
// exact counts on /metrics, a lint-clean exposition, the health endpoints,
// a real Prometheus scraping it, and that every metric the alert rules
// and the Grafana dashboard use is one vouch exports.
func TestObservability(t *testing.T) {
	v := startVouch(t)

	// Before any traffic: the decision counters a ratio divides by exist.
	fresh := scrape(t, v.metrics+"/metrics")
	if n, ok := fresh.value("vouch_decisions_total", "action=tempfail,dry_run=false,stage=rcpt"); !ok || n != 0 {
		t.Errorf("fresh vouch: vouch_decisions_total{stage=rcpt,action=tempfail} = %v (present %v), want 0", n, ok)
	}

	driveSessions(t, v)
	exp := scrape(t, v.metrics+"/metrics")

	t.Run("values", func(t *testing.T) { checkValues(t, exp) })
	t.Run("decision log", func(t *testing.T) { checkDecisionLog(t, v) })
	t.Run("health", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body, err := httpGet(v.metrics + path); err != nil || code != 200 {
				t.Errorf("GET %s: %d %q %v, want 200", path, code, body, err)
			}
		}
	})
	t.Run("promlint", func(t *testing.T) {
		problems, err := promlint.New(bytes.NewReader(exp.raw)).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	})
	t.Run("promtool check metrics", func(t *testing.T) {
		promtool := tool(t, "promtool", "/usr/bin/promtool")
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(exp.raw)
		if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	})
	t.Run("names in rules and dashboard", func(t *testing.T) { checkNames(t, exp) })
	t.Run("metrics documented", func(t *testing.T) { checkDocumented(t, exp) })
	t.Run("real prometheus", func(t *testing.T) { checkRealPrometheus(t, v) })
}

// checkValues asserts the counts the sequence of driveSessions produces.
func checkValues(t *testing.T, e *exposition) {
	exact := []struct {
		name, labels string
		want         float64
	}{
		// 4 SMTP sessions, 2 held + 1 past the cap; the malformed
		// connection never negotiated, so it is no session.
		{"vouch_milter_sessions_total", "", 7},
		{"vouch_milter_sessions_active", "", 0},
		{"vouch_milter_sessions_refused_total", "reason=overload", 1},
		{"vouch_milter_errors_total", "kind=protocol", 1},
		{"vouch_transactions_total", "", 4},
		{"vouch_exempt_recipients_total", "", 1},
		{"vouch_exemptions_total", "reason=authenticated", 1},
		{"vouch_headers_added_total", "header=Authentication-Results", 2},
		{"vouch_headers_added_total", "header=Received-SPF", 2},
		{"vouch_forged_headers_removed_total", "", 1},
		{"vouch_dns_queries_in_flight", "", 0},
		{"vouch_config_last_reload_successful", "", 1},
		{"vouch_config_reloads_total", "result=success", 1},
		{"vouch_config_reloads_total", "result=failure", 0},
		{"vouch_config_info", "decide_at=rcpt,preset=standard", 1},
	}
	for _, c := range exact {
		got, ok := e.value(c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s{%s} = %v (present: %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}

	// Every decision series, not only the non-zero ones: nothing else was
	// decided, at no other stage.
	wantDecisions := map[string]float64{}
	for _, stage := range []string{"connect", "helo", "mail", "rcpt", "eom"} {
		for _, action := range []string{"accept", "quarantine", "tempfail", "reject"} {
			wantDecisions["action="+action+",dry_run=false,stage="+stage] = 0
		}
	}
	wantDecisions["action=accept,dry_run=false,stage=rcpt"] = 1
	wantDecisions["action=reject,dry_run=false,stage=rcpt"] = 1
	wantDecisions["action=tempfail,dry_run=false,stage=rcpt"] = 1
	compareSeries(t, e, "vouch_decisions_total", wantDecisions)

	// Sessions 1 and 2 confirm their rDNS and HELO; 3 and 4 (127.0.0.11)
	// have no PTR and a HELO that does not resolve. The authenticated
	// message (4) skips its MAIL FROM check.
	compareSeries(t, e, "vouch_check_results_total", map[string]float64{
		"check=iprev,result=pass":        2,
		"check=iprev,result=no-ptr":      2,
		"check=helo,result=match":        2,
		"check=helo,result=mismatch":     2,
		"check=spf_helo,result=pass":     2,
		"check=spf_helo,result=none":     2,
		"check=spf_mailfrom,result=pass": 1,
		"check=spf_mailfrom,result=fail": 1,
		"check=spf_mailfrom,result=none": 1,
	})
	compareSeries(t, e, "vouch_check_duration_seconds", map[string]float64{
		"check=iprev": 4, "check=helo": 4, "check=spf_helo": 4, "check=spf_mailfrom": 3,
	})

	if v, _ := e.value("vouch_build_info", "goversion="+goVersion(t, e)+",version="+buildVersion); v != 1 {
		t.Errorf("vouch_build_info lacks version=%q (the Dockerfile's -X main.version): %v", buildVersion, e.series("vouch_build_info"))
	}

	// DNS: the exact numbers depend on caching and coalescing; what must
	// hold is that queries were made, answered, and cached.
	queries := 0.0
	for labels, n := range e.series("vouch_dns_query_duration_seconds") {
		queries += n
		outcome := labels[strings.Index(labels, "outcome=")+len("outcome="):]
		outcome, _, _ = strings.Cut(outcome, ",")
		if outcome != "success" && outcome != "nxdomain" && outcome != "nodata" {
			t.Errorf("DNS query outcome %q (%s) against a healthy server", outcome, labels)
		}
	}
	if queries == 0 {
		t.Error("no DNS queries counted")
	}
	if n, _ := e.value("vouch_dns_cache_requests_total", "result=miss"); n == 0 {
		t.Error("no DNS cache misses counted")
	}
	if n, _ := e.value("vouch_dns_cache_requests_total", "result=hit"); n == 0 {
		t.Error("no DNS cache hits counted, though sessions 3 and 4 ask the same questions")
	}
	if n, _ := e.value("vouch_dns_cache_entries", ""); n == 0 {
		t.Error("vouch_dns_cache_entries is 0 after lookups")
	}
}

func goVersion(t *testing.T, e *exposition) string {
	for labels := range e.series("vouch_build_info") {
		for _, kv := range strings.Split(labels, ",") {
			if v, ok := strings.CutPrefix(kv, "goversion="); ok {
				return v
			}
		}
	}
	return ""
}

// compareSeries checks that name has exactly the series in want, apart
// from series at 0 (pre-initialised label sets are no events).
func compareSeries(t *testing.T, e *exposition, name string, want map[string]float64) {
	t.Helper()
	got := e.series(name)
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, inGot := got[k]
		w, inWant := want[k]
		switch {
		case !inGot:
			t.Errorf("%s{%s}: missing, want %v", name, k, w)
		case !inWant && g != 0:
			t.Errorf("%s{%s} = %v: unexpected series", name, k, g)
		case g != w:
			t.Errorf("%s{%s} = %v, want %v", name, k, g, w)
		}
	}
}

// checkDecisionLog checks the fields docs/operations.md tells a
// postmaster to read in the decision line.
func checkDecisionLog(t *testing.T, v *vouchProc) {
	byQueue := map[string]map[string]any{}
	for _, d := range decisionLines(t, v) {
		if q, ok := d["queue_id"].(string); ok {
			byQueue[q] = d
		}
	}
	want := map[string]map[string]string{
		"QGOOD": {"stage": "rcpt", "action": "accept", "client_ip": "127.0.0.10", "sender": "alice@good.test",
			"helo": "mail.good.test", "iprev": "pass", "rdns": "mail.good.test", "helo_result": "match",
			"spf": "pass", "spf_identity": "mailfrom", "spf_helo": "pass"},
		"QFAIL": {"stage": "rcpt", "action": "reject", "client_ip": "127.0.0.13", "iprev": "pass", "spf": "fail",
			"reply": "550 5.7.23 SPF: 127.0.0.13 is not allowed to send mail from good.test"},
		"QNOPTR": {"stage": "rcpt", "action": "tempfail", "client_ip": "127.0.0.11", "iprev": "no-ptr",
			"helo_result": "mismatch", "spf": "none",
			"reply": "450 4.7.25 Client address 127.0.0.11 has no reverse DNS (PTR) record"},
	}
	for q, fields := range want {
		d, ok := byQueue[q]
		if !ok {
			t.Errorf("no decision line for queue id %s", q)
			continue
		}
		for k, w := range fields {
			if got := fmt.Sprint(d[k]); got != w {
				t.Errorf("decision %s: %s=%q, want %q", q, k, got, w)
			}
		}
	}
	if _, ok := byQueue["QAUTH"]; ok {
		t.Error("a decision was logged for the authenticated message, whose checks are skipped")
	}

	// Each message that reached end of data has a "message accepted" line
	// with its queue id: the line docs/operations.md has postmasters find.
	accepted := map[string]string{}
	for _, l := range v.lines(`"msg":"message accepted"`) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %v: %s", err, l)
		}
		accepted[fmt.Sprint(m["queue_id"])] = fmt.Sprint(m["action"], " ", m["reason"], " ", m["verdict"], " ", m["results"])
	}
	// A message that reached only an exempt recipient is accepted, and
	// the line says why, and what the verdict for others was.
	for q, want := range map[string]string{
		"QGOOD":  "accept <nil> <nil> iprev=pass helo=match spf=pass spf_helo=pass",
		"QNOPTR": "accept exempt_recipient tempfail iprev=no-ptr helo=mismatch spf=none spf_helo=none",
	} {
		if got := accepted[q]; got != want {
			t.Errorf("message accepted %s: %q, want %q", q, got, want)
		}
	}
}

// checkRealPrometheus runs the Debian package's Prometheus with the
// example scrape configuration (pointed at this vouch, 1 s interval) and
// the alert rules, and queries its API.
func checkRealPrometheus(t *testing.T, v *vouchProc) {
	bin := tool(t, "prometheus", "/usr/bin/prometheus")
	dir := t.TempDir()
	target := strings.TrimPrefix(v.metrics, "http://")
	cfg := prometheusConfig(t, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command(promtool, "check", "config", cfgPath).CombinedOutput(); err != nil {
			t.Fatalf("promtool check config: %v\n%s", err, out)
		}
	}
	port := freePort(t)
	api := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := start(t, "prometheus", bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+fmt.Sprintf("127.0.0.1:%d", port),
		"--web.console.templates="+dir, "--web.console.libraries="+dir,
		"--log.level=warn")

	waitFor(t, "prometheus scrapes vouch with up == 1", 60*time.Second, func() error {
		if p.exited() {
			t.Fatalf("prometheus exited:\n%s", p.output())
		}
		v, err := promQuery(api, `up{job="vouch"}`)
		if err != nil {
			return err
		}
		if v != 1 {
			return fmt.Errorf("up = %v", v)
		}
		return nil
	})
	for _, c := range []struct {
		query string
		want  float64
	}{
		{`vouch_decisions_total{stage="rcpt",action="reject",dry_run="false"}`, 1},
		{`vouch_decisions_total{stage="rcpt",action="tempfail",dry_run="false"}`, 1},
		{`sum(vouch_check_results_total{check="iprev"})`, 4},
		{`vouch_milter_sessions_total`, 7},
	} {
		got, err := promQuery(api, c.query)
		if err != nil || got != c.want {
			t.Errorf("prometheus: %s = %v (%v), want %v", c.query, got, err, c.want)
		}
	}

	// The alert rules loaded and evaluate without error against real
	// vouch series.
	waitFor(t, "alert rules evaluated", 30*time.Second, func() error {
		return rulesHealthy(api)
	})
}

// prometheusConfig is the example scrape.yml with its target replaced,
// a 1 s scrape and evaluation interval, and the alert rules.
func prometheusConfig(t *testing.T, target string) []byte {
	t.Helper()
	var cfg map[string]any
	data, err := os.ReadFile("scrape.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("scrape.yml: %v", err)
	}
	jobs, _ := cfg["scrape_configs"].([]any)
	var job map[string]any
	for _, j := range jobs {
		if m, ok := j.(map[string]any); ok && m["job_name"] == "vouch" {
			job = m
		}
	}
	if job == nil {
		t.Fatal(`scrape.yml has no job_name: vouch, the job the alert rules select`)
	}
	job["scrape_interval"] = "1s"
	job["scrape_timeout"] = "1s"
	job["static_configs"] = []any{map[string]any{"targets": []any{target}}}
	rules, err := filepath.Abs("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{
		"global":         map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"},
		"rule_files":     []any{rules},
		"scrape_configs": []any{job},
	}
	b, err := yaml.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// promQuery runs an instant query that must return one sample.
func promQuery(api, q string) (float64, error) {
	code, body, err := httpGet(api + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("HTTP %d: %v: %s", code, err, body)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s: %s", r.Status, r.Error)
	}
	if len(r.Data.Result) != 1 {
		return 0, fmt.Errorf("%d samples, want 1", len(r.Data.Result))
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

// rulesHealthy succeeds when every rule in alerts.yml has been evaluated
// at least once, without error.
func rulesHealthy(api string) error {
	_, body, err := httpGet(api + "/api/v1/rules")
	if err != nil {
		return err
	}
	var r struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name           string `json:"name"`
					Health         string `json:"health"`
					LastError      string `json:"lastError"`
					LastEvaluation string `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return err
	}
	n := 0
	for _, g := range r.Data.Groups {
		for _, rule := range g.Rules {
			n++
			if rule.Health != "ok" {
				return fmt.Errorf("rule %s: health %q %s", rule.Name, rule.Health, rule.LastError)
			}
		}
	}
	if n == 0 {
		return fmt.Errorf("no rules loaded")
	}
	return nil
}

// checkDocumented fails unless docs/operations.md's metrics table lists
// exactly the vouch families vouch exports.
func checkDocumented(t *testing.T, e *exposition) {
	data, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "| `vouch_"); ok {
			name, _, _ = strings.Cut(name, "`")
			documented["vouch_"+name] = true
		}
	}
	for name := range e.families {
		if strings.HasPrefix(name, "vouch_") && !documented[name] {
			t.Errorf("%s is exported but not in docs/operations.md's metrics table", name)
		}
	}
	for name := range documented {
		if e.families[name] == nil {
			t.Errorf("docs/operations.md documents %s, which vouch does not export", name)
		}
	}
}
