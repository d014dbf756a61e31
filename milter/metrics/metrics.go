// Package metrics defines vouch's Prometheus metrics on a registry the
// caller owns. Labels are bounded sets (stages, actions, check names and
// results, DNS types and outcomes): never an IP, a domain or a HELO name.
package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vouch-mail/vouch/checks/dns"
	"github.com/vouch-mail/vouch/milter/policy"
)

const namespace = "vouch"

// Metrics holds every collector vouch exports.
type Metrics struct {
	SessionsActive   prometheus.Gauge
	SessionsTotal    prometheus.Counter
	SessionsRefused  *prometheus.CounterVec // by reason: "overload"
	MilterErrors     *prometheus.CounterVec // by kind: protocol, panic, timeout
	Transactions     prometheus.Counter
	Decisions        *prometheus.CounterVec // stage, action, dry_run
	CheckResults     *prometheus.CounterVec // check, result
	CheckDuration    *prometheus.HistogramVec
	ExemptRecipients prometheus.Counter
	Exemptions       *prometheus.CounterVec // reason
	HeadersAdded     *prometheus.CounterVec // header
	ForgedRemoved    prometheus.Counter
	DNSQueryDuration *prometheus.HistogramVec // type, outcome
	DNSCacheRequests *prometheus.CounterVec   // result: hit, miss
	DNSCacheEntries  prometheus.Gauge
	DNSInFlight      prometheus.Gauge
	ReloadSuccess    prometheus.Gauge
	ReloadTimestamp  prometheus.Gauge
	ReloadsTotal     *prometheus.CounterVec // result: success, failure, timeout
	ReloadsBlocked   prometheus.Gauge
	HTTPErrors       prometheus.Counter
	BuildInfo        *prometheus.GaugeVec
	ConfigInfo       *prometheus.GaugeVec // preset, decide_at
}

// New creates the metrics and registers them, with the Go and process
// collectors, on reg.
func New(reg prometheus.Registerer, version string) *Metrics {
	m := &Metrics{
		SessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "milter_sessions_active",
			Help: "Milter connections (one per SMTP session) now open.",
		}),
		SessionsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "milter_sessions_total",
			Help: "Milter connections accepted.",
		}),
		SessionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "milter_sessions_refused_total",
			Help: "Milter connections answered without checks, by reason.",
		}, []string{"reason"}),
		MilterErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "milter_errors_total",
			Help: "Milter connections ended by an error, by kind (protocol, panic, timeout).",
		}, []string{"kind"}),
		Transactions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "transactions_total",
			Help: "SMTP transactions (MAIL FROM) seen.",
		}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "decisions_total",
			Help: "Policy decisions by stage and action; dry_run=\"true\" counts accepts that would have been refused.",
		}, []string{"stage", "action", "dry_run"}),
		CheckResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "check_results_total",
			Help: "Check results by check and result.",
		}, []string{"check", "result"}),
		CheckDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "check_duration_seconds",
			Help:    "Time from a check's start to its result.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20},
		}, []string{"check"}),
		ExemptRecipients: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "exempt_recipients_total",
			Help: "Recipients accepted whatever the verdict (postmaster@, abuse@, ...).",
		}),
		Exemptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "exemptions_total",
			Help: "Sessions or transactions whose checks were skipped, by reason.",
		}, []string{"reason"}),
		HeadersAdded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "headers_added_total",
			Help: "Header fields added to messages, by field name.",
		}, []string{"header"}),
		ForgedRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "forged_headers_removed_total",
			Help: "Incoming Authentication-Results fields claiming our authserv-id, removed (RFC 8601 §5).",
		}),
		DNSQueryDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "dns_query_duration_seconds",
			Help:    "Upstream DNS queries by type and outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20},
		}, []string{"type", "outcome"}),
		DNSCacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "dns_cache_requests_total",
			Help: "Resolver cache lookups by result (hit, miss).",
		}, []string{"result"}),
		DNSCacheEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "dns_cache_entries",
			Help: "Entries in the resolver cache.",
		}),
		DNSInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "dns_queries_in_flight",
			Help: "Upstream DNS queries under way.",
		}),
		ReloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_last_reload_successful",
			Help: "1 if the last configuration load or reload succeeded.",
		}),
		ReloadTimestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful configuration load or reload.",
		}),
		ReloadsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "config_reloads_total",
			Help: "Configuration reloads by result (success, failure, timeout).",
		}, []string{"result"}),
		ReloadsBlocked: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_reloads_blocked",
			Help: "Reads of the configuration file still blocked past the reload timeout.",
		}),
		HTTPErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "metrics_http_errors_total",
			Help: "Errors of the metrics HTTP server's connections (bad requests, TLS handshakes, accept failures).",
		}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "build_info",
			Help: "Always 1; labels give the version and the Go version.",
		}, []string{"version", "goversion"}),
		ConfigInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_info",
			Help: "Always 1 for the running configuration; labels give the preset and decision stage.",
		}, []string{"preset", "decide_at"}),
	}
	reg.MustRegister(
		m.SessionsActive, m.SessionsTotal, m.SessionsRefused, m.MilterErrors,
		m.Transactions, m.Decisions, m.CheckResults, m.CheckDuration,
		m.ExemptRecipients, m.Exemptions, m.HeadersAdded, m.ForgedRemoved,
		m.DNSQueryDuration, m.DNSCacheRequests, m.DNSCacheEntries, m.DNSInFlight,
		m.ReloadSuccess, m.ReloadTimestamp, m.ReloadsTotal, m.ReloadsBlocked, m.HTTPErrors, m.BuildInfo, m.ConfigInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.BuildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	// Zero the label sets an alert or dashboard divides by, so a ratio
	// exists before the first event.
	for _, r := range []string{"hit", "miss"} {
		m.DNSCacheRequests.WithLabelValues(r)
	}
	for _, r := range []string{"success", "failure", "timeout"} {
		m.ReloadsTotal.WithLabelValues(r)
	}
	for _, k := range []string{"protocol", "panic", "timeout"} {
		m.MilterErrors.WithLabelValues(k)
	}
	m.SessionsRefused.WithLabelValues("overload")
	// Label values come from the policy's own vocabulary.
	for _, s := range policy.Stages {
		for _, a := range policy.Actions {
			m.Decisions.WithLabelValues(string(s), a.String(), "false")
		}
	}
	return m
}

// Reloaded records a configuration (re)load.
func (m *Metrics) Reloaded(ok bool, preset, decideAt string) {
	if !ok {
		m.ReloadSuccess.Set(0)
		m.ReloadsTotal.WithLabelValues("failure").Inc()
		return
	}
	m.ReloadSuccess.Set(1)
	m.ReloadTimestamp.Set(float64(time.Now().Unix()))
	m.ReloadsTotal.WithLabelValues("success").Inc()
	m.ConfigInfo.Reset()
	m.ConfigInfo.WithLabelValues(preset, decideAt).Set(1)
}

// ReloadTimedOut records a reload whose read of the file did not end in
// time: it failed, and the running configuration stays.
func (m *Metrics) ReloadTimedOut() {
	m.ReloadSuccess.Set(0)
	m.ReloadsTotal.WithLabelValues("timeout").Inc()
}

// DNSObserver returns the resolver hook that feeds the DNS metrics.
func (m *Metrics) DNSObserver() dns.Observer {
	// Cache hits are the hot path: resolve their counters once.
	return dnsObserver{m: m,
		hit:  m.DNSCacheRequests.WithLabelValues("hit"),
		miss: m.DNSCacheRequests.WithLabelValues("miss")}
}

type dnsObserver struct {
	m         *Metrics
	hit, miss prometheus.Counter
}

func (o dnsObserver) Query(qtype, outcome string, d time.Duration) {
	o.m.DNSQueryDuration.WithLabelValues(qtype, outcome).Observe(d.Seconds())
}

func (o dnsObserver) Cache(hit bool) {
	if hit {
		o.hit.Inc()
	} else {
		o.miss.Inc()
	}
}

func (o dnsObserver) CacheEntries(n int) { o.m.DNSCacheEntries.Set(float64(n)) }
func (o dnsObserver) InFlight(delta int) { o.m.DNSInFlight.Add(float64(delta)) }
