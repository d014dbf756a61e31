package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/vouch-mail/vouch/milter/policy"
)

func TestLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg, "test")
	// Touch every vector so the linter sees each family.
	m.SessionsRefused.WithLabelValues("overload").Inc()
	m.MilterErrors.WithLabelValues("protocol").Inc()
	m.CheckResults.WithLabelValues("iprev", "pass").Inc()
	m.CheckDuration.WithLabelValues("iprev").Observe(0.01)
	m.Exemptions.WithLabelValues("trusted_network").Inc()
	m.HeadersAdded.WithLabelValues("Authentication-Results").Inc()
	m.DNSObserver().Query("A", "success", time.Millisecond)
	m.Reloaded(true, "standard", "rcpt")

	problems, err := promlint.NewWithMetricFamilies(mustGather(t, reg)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	for _, mf := range mustGather(t, reg) {
		name := mf.GetName()
		if !strings.HasPrefix(name, "vouch_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s outside the vouch namespace", name)
		}
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				switch l.GetName() {
				case "ip", "client", "domain", "helo", "sender", "host":
					t.Errorf("metric %s has an unbounded label %s", name, l.GetName())
				}
			}
		}
	}
}

func TestDNSObserver(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, "test")
	o := m.DNSObserver()
	o.Cache(true)
	o.Cache(true)
	o.Cache(false)
	o.CacheEntries(7)
	o.InFlight(1)
	o.InFlight(1)
	o.InFlight(-1)
	if got := testutil.ToFloat64(m.DNSCacheRequests.WithLabelValues("hit")); got != 2 {
		t.Errorf("hits %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.DNSCacheEntries); got != 7 {
		t.Errorf("entries %v, want 7", got)
	}
	if got := testutil.ToFloat64(m.DNSInFlight); got != 1 {
		t.Errorf("in flight %v, want 1", got)
	}
}

func TestReloaded(t *testing.T) {
	m := New(prometheus.NewRegistry(), "test")
	m.Reloaded(true, "strict", "mail")
	m.Reloaded(false, "", "")
	if got := testutil.ToFloat64(m.ReloadSuccess); got != 0 {
		t.Errorf("last reload successful = %v after a failure", got)
	}
	if got := testutil.ToFloat64(m.ConfigInfo.WithLabelValues("strict", "mail")); got != 1 {
		t.Errorf("config info kept the running config: got %v", got)
	}
	if got := testutil.ToFloat64(m.ReloadsTotal.WithLabelValues("failure")); got != 1 {
		t.Errorf("failures %v", got)
	}
}

func mustGather(t *testing.T, g prometheus.Gatherer) []*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// The decision series start at 0 for exactly the policy's stages and
// actions: label values come from the typed vocabulary, not from strings
// written here.
func TestDecisionLabelsFromVocabulary(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, "test")
	want := map[string]bool{}
	for _, s := range policy.Stages {
		for _, a := range policy.Actions {
			want[string(s)+"/"+a.String()+"/false"] = true
		}
	}
	got := map[string]bool{}
	for _, mf := range mustGather(t, reg) {
		if mf.GetName() != "vouch_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			got[l["stage"]+"/"+l["action"]+"/"+l["dry_run"]] = true
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d decision series, want %d", len(got), len(want))
	}
	for k := range want {
		if !got[k] {
			t.Errorf("no series %s", k)
		}
	}
}
