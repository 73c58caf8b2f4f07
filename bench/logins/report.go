package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// report is what one run measured. Times are in seconds or milliseconds as
// the field names say; figures that could not be had are left out.
type report struct {
	URL         string   `json:"url"`
	SPN         string   `json:"spn"`
	Users       []string `json:"users"`
	Concurrency int      `json:"concurrency"`
	Mutual      bool     `json:"mutual"`
	Started     string   `json:"started"`
	Interrupted bool     `json:"interrupted,omitempty"`

	Warmup   *phaseStats `json:"warmup,omitempty"`
	Measured phaseStats  `json:"measured"`
	// LoginsPerSecond counts successful logins (302) of the measured phase.
	LoginsPerSecond float64 `json:"loginsPerSecond"`
	// LatencyMs is over every request of the measured phase, failed ones
	// included: from sending the request to reading the whole answer.
	LatencyMs       latencyMs         `json:"latencyMs"`
	Failures        map[string]int    `json:"failures"`
	FailureExamples map[string]string `json:"failureExamples,omitempty"`
	// Connections is how many connections the workers opened in the whole
	// run: Concurrency when every one was kept alive throughout.
	Connections int64        `json:"connections"`
	Client      clientStats  `json:"client"`
	Node        *nodeStats   `json:"node,omitempty"`
	NodeMetrics *nodeMetrics `json:"nodeMetrics,omitempty"`
}

type phaseStats struct {
	Seconds float64 `json:"seconds"`
	Sent    int     `json:"sent"`
	OK      int     `json:"ok"`
	Failed  int     `json:"failed"`
}

type latencyMs struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

type clientStats struct {
	CPUSeconds    float64  `json:"cpuSeconds"`
	CPUPerLoginMs *float64 `json:"cpuPerLoginMs,omitempty"`
	// HeaderMeanMs is the wall time to make one Negotiate header (a new
	// authenticator, encrypted, and the SPNEGO wrapping).
	HeaderMeanMs *float64 `json:"headerMeanMs,omitempty"`
}

type nodeStats struct {
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpuSeconds"`
	// Cores is the node's CPU time over the wall time: 1 is one core busy.
	Cores         float64  `json:"cores"`
	CPUPerLoginMs *float64 `json:"cpuPerLoginMs,omitempty"`
	// LoginsPerCoreSecond is successful logins per second of node CPU.
	LoginsPerCoreSecond *float64 `json:"loginsPerCoreSecond,omitempty"`
}

type nodeMetrics struct {
	// Logins is the node's own count of the measured phase, by
	// "outcome reason" (iwalb_authnode_logins_total).
	Logins       map[string]float64 `json:"logins"`
	LDAPSource   *ldapSource        `json:"ldapSource,omitempty"`
	LDAPPerLogin *float64           `json:"ldapPerLogin,omitempty"`
	LDAPByLabels map[string]float64 `json:"ldapByLabels,omitempty"`
	LDAPNote     string             `json:"ldapNote,omitempty"`
	// KerberosMeanMs and LDAPMeanMs are the node's mean times
	// (kerberos_validation_seconds, ldap_seconds by op).
	KerberosMeanMs *float64           `json:"kerberosMeanMs,omitempty"`
	LDAPMeanMs     map[string]float64 `json:"ldapMeanMs,omitempty"`
	LDAPCalls      map[string]float64 `json:"ldapCalls,omitempty"`
}

// num is f for JSON, which has no NaN or infinity: nil then.
func num(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func phaseSummary(t *tally, elapsed time.Duration) *phaseStats {
	return &phaseStats{Seconds: elapsed.Seconds(), Sent: t.sent, OK: t.ok, Failed: t.sent - t.ok}
}

// fill computes the report of the measured phase t, which took elapsed,
// between the points before and after.
func (r *report) fill(t *tally, elapsed time.Duration, workers []*worker, before, after point, ldapMetric string) {
	r.Measured = *phaseSummary(t, elapsed)
	r.LoginsPerSecond = float64(t.ok) / elapsed.Seconds()
	l := summarise(t.latencies)
	r.LatencyMs = latencyMs{P50: ms(l.P50), P95: ms(l.P95), P99: ms(l.P99), Max: ms(l.Max)}
	r.Failures, r.FailureExamples = t.failures, t.examples
	for _, w := range workers {
		r.Connections += w.newConns.Load()
	}
	ok := float64(t.ok)
	clientCPU := after.selfCPU - before.selfCPU
	r.Client = clientStats{
		CPUSeconds:    clientCPU.Seconds(),
		CPUPerLoginMs: num(ms(clientCPU) / float64(t.sent)),
		HeaderMeanMs:  num(ms(t.blobTime) / float64(t.sent)),
	}
	if before.nodeCPU >= 0 && after.nodeCPU >= 0 {
		cpu := after.nodeCPU - before.nodeCPU
		wall := after.at.Sub(before.at)
		r.Node = &nodeStats{
			CPUSeconds:          cpu.Seconds(),
			Cores:               cpu.Seconds() / wall.Seconds(),
			CPUPerLoginMs:       num(ms(cpu) / ok),
			LoginsPerCoreSecond: num(ok / cpu.Seconds()),
		}
	}
	if before.metrics != nil && after.metrics != nil {
		answered := t.sent
		for k, n := range t.failures {
			if strings.HasPrefix(k, "error: ") || strings.HasPrefix(k, "client: ") {
				answered -= n
			}
		}
		r.NodeMetrics = nodeFigures(delta(before.metrics, after.metrics), after.metrics, ldapMetric, float64(answered))
	}
}

// nodeFigures reads the node's counts from the delta d of the measured
// phase; answered is the client's count of logins the node answered, used
// when the node does not count its own.
func nodeFigures(d, after snapshot, ldapMetric string, answered float64) *nodeMetrics {
	nm := &nodeMetrics{Logins: make(map[string]float64), LDAPMeanMs: make(map[string]float64), LDAPCalls: make(map[string]float64)}
	var logins float64
	for _, x := range d {
		if x.name == loginsMetric && x.value != 0 {
			nm.Logins[x.labels["outcome"]+" "+x.labels["reason"]] += x.value
			logins += x.value
		}
	}
	if _, found := d.sum(loginsMetric, nil); !found {
		logins = answered
	}
	nm.KerberosMeanMs = num(1000 * d.mean(kerberosFam, nil))
	for _, x := range d {
		if x.name == ldapSecondsFam+"_count" && x.value != 0 {
			op := labelText(x.labels)
			nm.LDAPCalls[op] = x.value
			nm.LDAPMeanMs[op] = 1000 * d.mean(ldapSecondsFam, sameLabels(x.labels))
		}
	}
	src, err := pickLDAPSource(after, ldapMetric)
	if err != nil {
		nm.LDAPNote = err.Error()
		return nm
	}
	nm.LDAPSource = &src
	total, by := ldapPerLogin(d, src, logins)
	nm.LDAPPerLogin, nm.LDAPByLabels = num(total), by
	return nm
}

// print writes the human summary.
func (r *report) print(w io.Writer) {
	p := func(label, format string, a ...any) {
		fmt.Fprintf(w, "  %-13s %s\n", label, fmt.Sprintf(format, a...))
	}
	fmt.Fprintf(w, "iwalb login benchmark: %s (SPN %s)\n", r.URL, r.SPN)
	mutual := ""
	if r.Mutual {
		mutual = ", mutual authentication"
	}
	p("workers", "%d, each on its own keep-alive HTTPS connection (%d opened in the run); accounts %s%s",
		r.Concurrency, r.Connections, strings.Join(r.Users, ", "), mutual)
	if r.Warmup != nil {
		p("warm-up", "%.1f s: %d logins sent, %d failed (not counted)", r.Warmup.Seconds, r.Warmup.Sent, r.Warmup.Failed)
	}
	note := ""
	if r.Interrupted {
		note = " (interrupted)"
	}
	p("measured", "%.1f s%s: %d sent, %d ok, %d failed", r.Measured.Seconds, note, r.Measured.Sent, r.Measured.OK, r.Measured.Failed)
	p("logins/s", "%.1f", r.LoginsPerSecond)
	p("latency", "p50 %.2f ms   p95 %.2f ms   p99 %.2f ms   max %.2f ms", r.LatencyMs.P50, r.LatencyMs.P95, r.LatencyMs.P99, r.LatencyMs.Max)
	if len(r.Failures) == 0 {
		p("failures", "none")
	}
	for i, k := range sortedKeys(r.Failures) {
		label := ""
		if i == 0 {
			label = "failures"
		}
		ex := ""
		if e := r.FailureExamples[k]; e != "" {
			ex = "  e.g. " + e
		}
		p(label, "%-28s %d%s", k, r.Failures[k], ex)
	}
	if n := r.Node; n != nil {
		p("node CPU", "pid %d: %.2f s (%.2f cores): %s per login = %s logins/s per core of node CPU",
			n.PID, n.CPUSeconds, n.Cores, fmtMs(n.CPUPerLoginMs), fmtNum(n.LoginsPerCoreSecond, "%.0f"))
	} else {
		p("node CPU", "not measured (give -node-pid)")
	}
	p("client CPU", "%.2f s: %s per login; %s to make one Negotiate header",
		r.Client.CPUSeconds, fmtMs(r.Client.CPUPerLoginMs), fmtMs(r.Client.HeaderMeanMs))
	nm := r.NodeMetrics
	if nm == nil {
		p("node metrics", "not read (give -metrics)")
		return
	}
	for i, k := range sortedKeys(nm.Logins) {
		label := ""
		if i == 0 {
			label = "node logins"
		}
		p(label, "%-28s %.0f", k, nm.Logins[k])
	}
	if nm.LDAPSource == nil {
		p("LDAP", "%s", nm.LDAPNote)
	} else {
		p("LDAP", "%s operations per login, from %s (%s)", fmtNum(nm.LDAPPerLogin, "%.3f"), nm.LDAPSource.Name, nm.LDAPSource.Note)
		for _, k := range sortedKeys(nm.LDAPByLabels) {
			p("", "  %-26s %.3f", k, nm.LDAPByLabels[k])
		}
	}
	p("node times", "Kerberos validation mean %s", fmtMs(nm.KerberosMeanMs))
	for _, k := range sortedKeys(nm.LDAPCalls) {
		p("", "LDAP %s: %.0f calls, mean %.2f ms", k, nm.LDAPCalls[k], nm.LDAPMeanMs[k])
	}
}

func fmtMs(f *float64) string { return fmtNum(f, "%.3f ms") }

func fmtNum(f *float64, format string) string {
	if f == nil {
		return "n/a"
	}
	return fmt.Sprintf(format, *f)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
