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

// metrics are one front door's Prometheus metrics. The front door's name is
// a constant label, so several front doors can register on one registry.
type metrics struct {
	redirects *prometheus.CounterVec
	noHealthy *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	refused   *prometheus.CounterVec
}

func newMetrics(name string, reg prometheus.Registerer) (*metrics, error) {
	cl := prometheus.Labels{"frontdoor": name}
	m := &metrics{
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "iwalb", Subsystem: "l7redirect", Name: "redirects_total", ConstLabels: cl,
			Help: "Redirects answered, by rule, node and status (302, 307).",
		}, []string{"rule", "node", "status"}),
		noHealthy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "iwalb", Subsystem: "l7redirect", Name: "no_healthy_node_total", ConstLabels: cl,
			Help: "Requests answered 503 because the rule's pool had no healthy node.",
		}, []string{"rule"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "iwalb", Subsystem: "l7redirect", Name: "request_duration_seconds", ConstLabels: cl,
			Help:    "Time to answer a request, by status.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
		}, []string{"status"}),
		refused: newRefused(name, "https"),
	}
	if err := register(reg, m.redirects, m.noHealthy, m.duration, m.refused); err != nil {
		return nil, err
	}
	return m, nil
}

// newRefused counts the requests a front door's listener ("https" for the
// Handler, "http" for the HTTPSRedirect) refuses before routing them.
func newRefused(frontdoor, listener string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "iwalb", Subsystem: "l7redirect", Name: "requests_refused_total",
		ConstLabels: prometheus.Labels{"frontdoor": frontdoor, "listener": listener},
		Help:        "Requests refused before routing, by listener (https, http) and reason (uri_too_long: 414).",
	}, []string{"reason"})
}

// register registers cs on reg, if reg is not nil.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	var errs []error
	for _, c := range cs {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}

// ConnMetrics count one front door's connections for Server.Metrics:
// iwalb_l7redirect_connections_refused_total{frontdoor,listener,reason}
// and iwalb_l7redirect_connections_open{frontdoor,listener}, where listener
// is "https" or "http" and reason is over_limit (MaxConns) or
// over_source_limit (MaxConnsPerSource). Connections handed over by L4 are
// counted by L4's metrics, not here.
type ConnMetrics struct {
	refused *prometheus.CounterVec
	open    *prometheus.Desc

	mu       sync.Mutex
	limiters map[*connlimit.Limiter]string // of the listeners being served, to their listener label
}

// NewConnMetrics returns the connection metrics of the front door called
// frontdoor, registered on reg (nil: not exported).
func NewConnMetrics(frontdoor string, reg prometheus.Registerer) (*ConnMetrics, error) {
	cl := prometheus.Labels{"frontdoor": frontdoor}
	m := &ConnMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "iwalb", Subsystem: "l7redirect", Name: "connections_refused_total", ConstLabels: cl,
			Help: "Connections reset at accept, by listener (https, http) and the limit they were over (over_limit: max_conns, over_source_limit: max_conns_per_source).",
		}, []string{"listener", "reason"}),
		open: prometheus.NewDesc("iwalb_l7redirect_connections_open",
			"Connections accepted and not yet closed, by listener (https, http); max_conns bounds each listener's.",
			[]string{"listener"}, cl),
		limiters: map[*connlimit.Limiter]string{},
	}
	if err := register(reg, m); err != nil {
		return nil, fmt.Errorf("l7redirect %q: register connection metrics: %w", frontdoor, err)
	}
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *ConnMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.refused.Describe(ch)
	ch <- m.open
}

// Collect implements prometheus.Collector.
func (m *ConnMetrics) Collect(ch chan<- prometheus.Metric) {
	m.refused.Collect(ch)
	m.mu.Lock()
	open := map[string]int{}
	for lim, listener := range m.limiters {
		open[listener] += lim.Open()
	}
	m.mu.Unlock()
	for listener, n := range open {
		ch <- prometheus.MustNewConstMetric(m.open, prometheus.GaugeValue, float64(n), listener)
	}
}

// track counts lim's open connections under listener until the returned
// function is called. A nil m tracks nothing.
func (m *ConnMetrics) track(listener string, lim *connlimit.Limiter) (untrack func()) {
	if m == nil {
		return func() {}
	}
	// Every series from the start, at zero.
	m.refused.WithLabelValues(listener, string(connlimit.OverLimit))
	m.refused.WithLabelValues(listener, string(connlimit.OverSourceLimit))
	m.mu.Lock()
	m.limiters[lim] = listener
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.limiters, lim)
		m.mu.Unlock()
	}
}

// refuse counts a connection refused for reason.
func (m *ConnMetrics) refuse(listener string, reason connlimit.Reason) {
	if m != nil {
		m.refused.WithLabelValues(listener, string(reason)).Inc()
	}
}
