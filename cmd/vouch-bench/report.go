package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// Latency summarises durations, in milliseconds.
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func latency(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	// Nearest rank: the smallest value with at least p of the sample at
	// or below it.
	rank := func(p float64) float64 {
		i := int(p*float64(len(s))+0.999999) - 1
		i = max(0, min(i, len(s)-1))
		return ms(s[i])
	}
	return Latency{N: len(s), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Max: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Report is one run's figures.
type Report struct {
	Target         string  `json:"target"`
	Concurrency    int     `json:"concurrency"`
	Rate           float64 `json:"rate,omitempty"` // sessions started a second; 0: closed loop
	Messages       int     `json:"messages_per_session"`
	Seconds        float64 `json:"seconds"`
	Sessions       int     `json:"sessions"`
	Transactions   int     `json:"transactions"`
	SessionsPerSec float64 `json:"sessions_per_sec"`
	// CPUPerSession is this process's CPU time per session, in
	// microseconds: the load generator's alone for an external target,
	// with the server's for an in-process one.
	CPUPerSession float64 `json:"cpu_us_per_session"`
	// ServerCPUPerSession is the server process's CPU time per session,
	// in microseconds, when it runs as a child of this one (-spawn).
	ServerCPUPerSession float64        `json:"server_cpu_us_per_session,omitempty"`
	Session             Latency        `json:"session_latency"`
	Rcpt                Latency        `json:"rcpt_latency"`
	Verdicts            map[string]int `json:"verdicts"`
	ProtocolErrors      int            `json:"protocol_errors"`
	ErrorSamples        map[string]int `json:"error_samples,omitempty"`
	// DNSQueries counts upstream queries the in-process DNS server
	// answered during the run (-1: unknown, an external target).
	DNSQueries           int     `json:"dns_queries"`
	DNSQueriesPerSession float64 `json:"dns_queries_per_session"`
}

func report(target string, l Load, s *sample, dnsQueries int) Report {
	r := Report{
		Target:         target,
		Concurrency:    l.Concurrency,
		Rate:           l.Rate,
		Messages:       max(l.Messages, 1),
		Seconds:        s.elapsed.Seconds(),
		Sessions:       s.sessions,
		Transactions:   s.messages,
		Session:        latency(s.sessLat),
		Rcpt:           latency(s.rcptLat),
		Verdicts:       s.verdicts,
		ProtocolErrors: s.errors,
		DNSQueries:     dnsQueries,
	}
	if len(s.errText) > 0 {
		r.ErrorSamples = s.errText
	}
	if s.elapsed > 0 {
		r.SessionsPerSec = float64(s.sessions) / s.elapsed.Seconds()
	}
	if s.sessions > 0 {
		r.CPUPerSession = float64(s.cpu) / float64(s.sessions) / float64(time.Microsecond)
		r.ServerCPUPerSession = float64(s.serverCPU) / float64(s.sessions) / float64(time.Microsecond)
	}
	if dnsQueries >= 0 && s.sessions > 0 {
		r.DNSQueriesPerSession = float64(dnsQueries) / float64(s.sessions)
	}
	return r
}

func (r Report) writeText(w io.Writer) {
	fmt.Fprintf(w, "target        %s\n", r.Target)
	rate := ""
	if r.Rate > 0 {
		rate = fmt.Sprintf(", started at %g/s", r.Rate)
	}
	fmt.Fprintf(w, "load          %d concurrent%s, %d message(s)/session, %.2fs\n", r.Concurrency, rate, r.Messages, r.Seconds)
	fmt.Fprintf(w, "sessions      %d (%.1f/s), %d transactions, %d protocol errors\n",
		r.Sessions, r.SessionsPerSec, r.Transactions, r.ProtocolErrors)
	fmt.Fprintf(w, "cpu/session   %.1f us (this process)\n", r.CPUPerSession)
	if r.ServerCPUPerSession > 0 {
		fmt.Fprintf(w, "server cpu    %.1f us/session (the server process)\n", r.ServerCPUPerSession)
	}
	fmt.Fprintf(w, "session ms    %s\n", r.Session)
	fmt.Fprintf(w, "rcpt ms       %s\n", r.Rcpt)
	fmt.Fprintf(w, "verdicts      %s\n", verdictText(r.Verdicts))
	if r.DNSQueries >= 0 {
		fmt.Fprintf(w, "dns queries   %d (%.4f/session)\n", r.DNSQueries, r.DNSQueriesPerSession)
	}
	for _, k := range slices.Sorted(maps.Keys(r.ErrorSamples)) {
		fmt.Fprintf(w, "error         %dx %s\n", r.ErrorSamples[k], k)
	}
}

func (l Latency) String() string {
	return fmt.Sprintf("p50 %.3f  p90 %.3f  p99 %.3f  max %.3f", l.P50, l.P90, l.P99, l.Max)
}

func verdictText(v map[string]int) string {
	keys := slices.Collect(maps.Keys(v))
	sort.Slice(keys, func(i, j int) bool {
		if v[keys[i]] != v[keys[j]] {
			return v[keys[i]] > v[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%q: %d", k, v[k]))
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, ", ")
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
