package l7redirect

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one front door's Prometheus metrics. The front door's name is
// a constant label, so several front doors can register on one registry.
type metrics struct {
	redirects *prometheus.CounterVec
	noHealthy *prometheus.CounterVec
	duration  *prometheus.HistogramVec
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
	}
	if reg != nil {
		var errs []error
		for _, c := range []prometheus.Collector{m.redirects, m.noHealthy, m.duration} {
			errs = append(errs, reg.Register(c))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	return m, nil
}
