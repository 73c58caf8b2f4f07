package l4

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the balancer's Prometheus metrics. One Metrics serves every
// listener of a process; listeners are told apart by the "listener" label.
// Backend health and per-backend load are exported by package lb.
type Metrics struct {
	accepted *prometheus.CounterVec
	routed   *prometheus.CounterVec
	active   *prometheus.GaugeVec
	open     *prometheus.GaugeVec
	bytes    *prometheus.CounterVec
	dialErrs *prometheus.CounterVec
	rejected *prometheus.CounterVec
	duration *prometheus.HistogramVec
	parked   *prometheus.GaugeVec
}

// Reasons a connection is refused, as counted in iwalb_l4_rejected_total.
const (
	RejectPeekTimeout = "peek_timeout"
	RejectNotTLS      = "not_tls"
	RejectTooLarge    = "hello_too_large"
	RejectMalformed   = "malformed_hello"
	RejectClientGone  = "client_closed"
	RejectProxyHeader = "bad_proxy_header"
	RejectNoRoute     = "no_route"
	RejectNoBackend   = "no_backend"
	RejectShutdown    = "shutdown"   // the listener stopped while dialing a backend
	RejectOverLimit   = "over_limit" // the listener already had MaxConns connections open
	// RejectOverSourceLimit: the client's address already had
	// MaxConnsPerSource connections open.
	RejectOverSourceLimit = "over_source_limit"
	// RejectTooManyRecords: the ClientHello was split into more than
	// MaxHelloRecords TLS records.
	RejectTooManyRecords = "too_many_records"
)

// NewMetrics creates the metrics and registers them with reg; a nil reg
// yields working but unexported metrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iwalb_l4_connections_accepted_total", Help: "Connections accepted, by listener.",
		}, []string{"listener"}),
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iwalb_l4_connections_routed_total", Help: "Connections routed, by listener and route.",
		}, []string{"listener", "route"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "iwalb_l4_connections_active", Help: "Connections being relayed or handled, by listener and route.",
		}, []string{"listener", "route"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "iwalb_l4_connections_open",
			Help: "Connections accepted and not yet closed, whether still sending their ClientHello or relayed, by listener; max_conns bounds it.",
		}, []string{"listener"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iwalb_l4_bytes_total", Help: "Bytes relayed, by direction (client_to_backend, backend_to_client).",
		}, []string{"listener", "route", "direction"}),
		dialErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iwalb_l4_dial_errors_total", Help: "Failed dials to backends (or first writes to them).",
		}, []string{"listener", "pool", "backend"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iwalb_l4_rejected_total", Help: "Connections closed before relaying, by reason (peek_timeout, not_tls, no_route, ...).",
		}, []string{"listener", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "iwalb_l4_connection_duration_seconds",
			Help:    "Lifetime of relayed connections.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 15, 60, 300, 900, 3600},
		}, []string{"listener", "route"}),
		parked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "iwalb_l4_relay_directions_parked",
			Help: "Directions of relayed connections that had no bytes for 100ms and now wait without a goroutine of their own, by listener; an idle connection counts 2.",
		}, []string{"listener"}),
	}
	if reg != nil {
		var errs []error
		for _, c := range []prometheus.Collector{m.accepted, m.routed, m.active, m.open, m.bytes, m.dialErrs, m.rejected, m.duration, m.parked} {
			errs = append(errs, reg.Register(c))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	return m, nil
}
