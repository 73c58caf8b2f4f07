package l7redirect

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/internal/connlimit"
)

// reasonURITooLong is the "reason" label of a request refused with 414.
const reasonURITooLong = "uri_too_long"

// Metrics are the front doors' Prometheus metrics. One Metrics serves
// every front door of a process, across configuration reloads; front doors
// are told apart by the "frontdoor" label and their listeners ("https",
// "http") by the "listener" label:
//
//	iwalb_l7redirect_redirects_total{frontdoor,rule,node,status}
//	iwalb_l7redirect_no_healthy_node_total{frontdoor,rule}
//	iwalb_l7redirect_request_duration_seconds{frontdoor,status}
//	iwalb_l7redirect_requests_refused_total{frontdoor,listener,reason}
//	iwalb_l7redirect_connections_refused_total{frontdoor,listener,reason}
//	iwalb_l7redirect_connections_open{frontdoor,listener}
//
// The connection series count what a Server accepts itself; connections
// handed over by L4 are counted by L4's metrics.
type Metrics struct {
	redirects   *prometheus.CounterVec   // frontdoor, rule, node, status
	noHealthy   *prometheus.CounterVec   // frontdoor, rule
	duration    *prometheus.HistogramVec // frontdoor, status
	refused     *prometheus.CounterVec   // frontdoor, listener, reason
	connRefused *prometheus.CounterVec   // frontdoor, listener, reason
	open        *openConns
}

// NewMetrics creates the metrics and registers them with reg, once per
// process; a nil reg yields working but unexported metrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "iwalb", Subsystem: "l7redirect", Name: "redirects_total",
			Help: "Redirects answered, by rule, node and status (302, 307).",
		}, []string{"frontdoor", "rule", "node", "status"}),
		noHealthy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "iwalb", Subsystem: "l7redirect", Name: "no_healthy_node_total",
			Help: "Requests answered 503 because the rule's pool had no healthy node.",
		}, []string{"frontdoor", "rule"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "iwalb", Subsystem: "l7redirect", Name: "request_duration_seconds",
			Help:    "Time to answer a request, by status.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
		}, []string{"frontdoor", "status"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "iwalb", Subsystem: "l7redirect", Name: "requests_refused_total",
			Help: "Requests refused before routing, by listener (https, http) and reason (uri_too_long: 414).",
		}, []string{"frontdoor", "listener", "reason"}),
		connRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "iwalb", Subsystem: "l7redirect", Name: "connections_refused_total",
			Help: "Connections reset at accept, by listener (https, http) and the limit they were over (over_limit: max_conns, over_source_limit: max_conns_per_source).",
		}, []string{"frontdoor", "listener", "reason"}),
		open: &openConns{
			desc: prometheus.NewDesc("iwalb_l7redirect_connections_open",
				"Connections accepted and not yet closed, by listener (https, http); max_conns bounds each listener's.",
				[]string{"frontdoor", "listener"}, nil),
			limiters: map[*connlimit.Limiter]doorListener{},
		},
	}
	if reg != nil {
		var errs []error
		for _, c := range []prometheus.Collector{m.redirects, m.noHealthy, m.duration, m.refused, m.connRefused, m.open} {
			errs = append(errs, reg.Register(c))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("l7redirect: register metrics: %w", err)
		}
	}
	return m, nil
}

// orPrivate returns m, or a private set of metrics when m is nil.
func orPrivate(m *Metrics) *Metrics {
	if m == nil {
		m, _ = NewMetrics(nil) // registers nothing, so cannot fail
	}
	return m
}

// Forget deletes the series of the front door called frontdoor, for a
// reload that removed it. Call it once that front door's Serve calls have
// returned: a request answered after it would count anew. The
// connections_open series goes by itself when those calls return.
func (m *Metrics) Forget(frontdoor string) {
	l := prometheus.Labels{"frontdoor": frontdoor}
	m.redirects.DeletePartialMatch(l)
	m.noHealthy.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
	m.refused.DeletePartialMatch(l)
	m.connRefused.DeletePartialMatch(l)
}

// handlerMetrics are a Handler's series, with the front door's label
// already set.
type handlerMetrics struct {
	redirects *prometheus.CounterVec // rule, node, status
	noHealthy *prometheus.CounterVec // rule
	duration  prometheus.ObserverVec // status
	refused   *prometheus.CounterVec // reason; listener "https"
}

func (m *Metrics) handler(frontdoor string) handlerMetrics {
	l := prometheus.Labels{"frontdoor": frontdoor}
	return handlerMetrics{
		redirects: m.redirects.MustCurryWith(l),
		noHealthy: m.noHealthy.MustCurryWith(l),
		duration:  m.duration.MustCurryWith(l),
		refused:   m.refusedBy(frontdoor, "https"),
	}
}

// refusedBy counts the requests a front door's listener ("https" for the
// Handler, "http" for the HTTPSRedirect) refuses before routing them, by
// reason.
func (m *Metrics) refusedBy(frontdoor, listener string) *prometheus.CounterVec {
	return m.refused.MustCurryWith(prometheus.Labels{"frontdoor": frontdoor, "listener": listener})
}

// doorListener names one listener of one front door.
type doorListener struct{ frontdoor, listener string }

// openConns is the connections_open gauge, read from the Limiters of the
// listeners being served when the metrics are gathered.
type openConns struct {
	desc *prometheus.Desc

	mu       sync.Mutex
	limiters map[*connlimit.Limiter]doorListener
}

// Describe implements prometheus.Collector.
func (o *openConns) Describe(ch chan<- *prometheus.Desc) { ch <- o.desc }

// Collect implements prometheus.Collector.
func (o *openConns) Collect(ch chan<- prometheus.Metric) {
	o.mu.Lock()
	open := map[doorListener]int{}
	for lim, dl := range o.limiters {
		open[dl] += lim.Open()
	}
	o.mu.Unlock()
	for dl, n := range open {
		ch <- prometheus.MustNewConstMetric(o.desc, prometheus.GaugeValue, float64(n), dl.frontdoor, dl.listener)
	}
}

// track counts lim's open connections as frontdoor's listener's until the
// returned function is called. A nil m tracks nothing.
func (m *Metrics) track(frontdoor, listener string, lim *connlimit.Limiter) (untrack func()) {
	if m == nil {
		return func() {}
	}
	// Every series from the start, at zero.
	m.connRefused.WithLabelValues(frontdoor, listener, string(connlimit.OverLimit))
	m.connRefused.WithLabelValues(frontdoor, listener, string(connlimit.OverSourceLimit))
	m.open.mu.Lock()
	m.open.limiters[lim] = doorListener{frontdoor, listener}
	m.open.mu.Unlock()
	return func() {
		m.open.mu.Lock()
		delete(m.open.limiters, lim)
		m.open.mu.Unlock()
	}
}

// refuse counts a connection refused for reason. A nil m counts nothing.
func (m *Metrics) refuse(frontdoor, listener string, reason connlimit.Reason) {
	if m != nil {
		m.connRefused.WithLabelValues(frontdoor, listener, string(reason)).Inc()
	}
}
