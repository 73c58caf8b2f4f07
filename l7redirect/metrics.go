package l7redirect

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
