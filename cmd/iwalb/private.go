package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/config"
	"github.com/iwalb/iwalb/internal/connlimit"
)

// metricsHandler serves the Prometheus registry at /metrics.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// Timeouts of the private listeners: a scrape or an admin call is one
// short request, so a connection that sends nothing for privateIdleTimeout
// is closed, however it got there.
const (
	privateReadHeaderTimeout = 10 * time.Second
	privateReadTimeout       = 30 * time.Second
	privateWriteTimeout      = 30 * time.Second
	privateIdleTimeout       = 60 * time.Second
)

// privateMetrics counts what the limits of the private listeners do.
type privateMetrics struct {
	refused *prometheus.CounterVec
	open    *prometheus.GaugeVec
}

func newPrivateMetrics(reg prometheus.Registerer) *privateMetrics {
	m := &privateMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iwalb_private_connections_refused_total",
			Help: "Connections to the metrics or admin listener reset at accept because max_conns were open, by listener and reason.",
		}, []string{"listener", "reason"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "iwalb_private_connections_open",
			Help: "Connections open on the metrics or admin listener, by listener.",
		}, []string{"listener"}),
	}
	reg.MustRegister(m.refused, m.open)
	return m
}

// privateServer is one of the process's own HTTP endpoints (metrics,
// admin), as a role.
type privateServer struct {
	what    string // "metrics" or "admin": the role and the metrics' label
	listen  string
	handler http.Handler
	// limit holds maxConns; a reload sets it in place.
	limit *connlimit.Limiter
	// idleTimeout overrides privateIdleTimeout when set (tests).
	idleTimeout time.Duration
	metrics     *privateMetrics
	log         *slog.Logger
}

// newPrivateServer makes the private endpoint what, serving handler.
func newPrivateServer(what string, l config.PrivateListener, handler http.Handler, m *privateMetrics, log *slog.Logger) *privateServer {
	return &privateServer{what: what, listen: l.Listen, handler: handler,
		limit: connlimit.New(connlimit.Limits{MaxConns: l.MaxConns}), metrics: m, log: log}
}

func (p *process) buildPrivate(what string, l config.PrivateListener, handler http.Handler, log *slog.Logger) role {
	return newPrivateServer(what, l, handler, p.private, log)
}

func (p *privateServer) name() string    { return p.what }
func (p *privateServer) addrs() []string { return []string{p.listen} }
func (p *privateServer) stage() int      { return stageOthers }
func (p *privateServer) update(next role) {
	p.limit.SetLimits(next.(*privateServer).limit.Limits())
}

// serve serves the endpoint on lns[0], at most max_conns connections at
// once, until ctx is cancelled, then shuts it down gracefully.
func (p *privateServer) serve(ctx context.Context, lns []net.Listener) error {
	ln := lns[0]
	refused := p.metrics.refused.MustCurryWith(prometheus.Labels{"listener": p.what})
	open := p.metrics.open.WithLabelValues(p.what)
	limited := connlimit.NewListener(ln, p.limit, func(r connlimit.Reason, from net.Addr) {
		refused.WithLabelValues(string(r)).Inc()
		p.log.Debug("connection refused", "reason", r, "client", from.String(), "max_conns", p.limit.Limits().MaxConns)
	})
	srv := &http.Server{
		Handler:           p.handler,
		ReadHeaderTimeout: privateReadHeaderTimeout,
		ReadTimeout:       privateReadTimeout,
		WriteTimeout:      privateWriteTimeout,
		IdleTimeout:       cmp.Or(p.idleTimeout, privateIdleTimeout),
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				open.Inc()
			case http.StateClosed, http.StateHijacked:
				open.Dec()
			}
		},
	}
	served := make(chan error, 1)
	go serveHTTP(srv, limited, served)
	p.log.Info("serving "+p.what, "addr", ln.Addr().String(), "max_conns", p.limit.Limits().MaxConns)
	select {
	case err := <-served:
		return fmt.Errorf("serve %s on %s: %w", p.what, ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down %s on %s: %w", p.what, ln.Addr(), err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s on %s: %w", p.what, ln.Addr(), err)
	}
	return nil
}

// serveHTTP is srv.Serve as a named goroutine, so stack dumps read well.
func serveHTTP(srv *http.Server, ln net.Listener, done chan<- error) {
	done <- srv.Serve(ln)
}
