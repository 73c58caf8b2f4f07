package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/iwalb/iwalb/authnode"
	"github.com/iwalb/iwalb/cmd/iwalb/internal/config"
	"github.com/iwalb/iwalb/internal/connlimit"
	"github.com/iwalb/iwalb/l4"
	"github.com/iwalb/iwalb/l7redirect"
	"github.com/iwalb/iwalb/lb"
)

// shutdownTimeout bounds a graceful shutdown of the metrics server.
const shutdownTimeout = 5 * time.Second

// l4DrainTimeout bounds how long an L4 listener that stopped accepting lets
// the connections it relays run on. Browsers reconnect; a Negotiate
// handshake in flight needs only a moment.
const l4DrainTimeout = 10 * time.Second

// role is one part of the appliance that runs until ctx is cancelled.
// Adding a role means adding one block to buildRoles.
type role struct {
	name string
	run  func(ctx context.Context) error
}

// serve loads the configuration, starts every configured role and waits
// until ctx is cancelled or a role fails.
func serve(ctx context.Context, path string, stderr io.Writer) int {
	f, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
	if w := f.Warnings(); len(w) > 0 {
		fmt.Fprintln(stderr, w)
		fmt.Fprintf(stderr, "%s: refused: files that hold secrets must not be open to group or others\n", path)
		return exitInvalid
	}
	logger := f.Logger(stderr)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	roles, err := buildRoles(f, logger, reg)
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitFailed
	}
	logger.Info("iwalb started", "version", version, "config", path)
	err = runRoles(ctx, roles)
	if err != nil {
		logger.Error("iwalb stopped", "err", err)
		return exitFailed
	}
	logger.Info("iwalb stopped")
	return exitOK
}

// buildRoles makes every configured role ready to run. Anything that can
// fail (a role's New, binding a port) happens here, so that a bad setup is
// refused before any role starts; on failure the ports already bound are
// released.
func buildRoles(f *config.File, logger *slog.Logger, reg *prometheus.Registry) (roles []role, err error) {
	var bound []net.Listener
	defer func() {
		if err != nil {
			for _, ln := range bound {
				ln.Close()
			}
		}
	}()
	listen := func(addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		bound = append(bound, ln)
		return ln, nil
	}

	if cfg, ok := f.AuthNode(); ok {
		// authnode.New adds role=authnode to the logger itself.
		node, err := authnode.New(cfg, authnode.Options{Logger: logger, Registerer: reg})
		if err != nil {
			return nil, fmt.Errorf("authnode: %w", err)
		}
		ln, err := listen(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("authnode: %w", err)
		}
		roles = append(roles, role{name: "authnode", run: func(ctx context.Context) error {
			return node.Serve(ctx, ln)
		}})
	}

	// Pools run their health checks whether or not a front door of this
	// process uses them: their state is on /metrics either way.
	registry := lb.NewRegistry()
	if err := reg.Register(registry); err != nil {
		return nil, fmt.Errorf("pools: register metrics: %w", err)
	}
	pools, err := f.Pools(registry, lb.Options{Logger: logger.With("role", "pools")})
	if err != nil {
		return nil, fmt.Errorf("pools: %w", err)
	}
	registry.Activate(pools)
	if len(pools.Pools()) > 0 {
		roles = append(roles, role{name: "pools", run: pools.Run})
	}

	// The L7 front doors come before the L4 listeners, whose routes may
	// hand connections to them.
	l4Stopped := newStopSignal()
	handed, l7roles, err := buildL7(f, pools, logger, reg, listen, l4Stopped.done)
	if err != nil {
		return nil, err
	}
	roles = append(roles, l7roles...)

	listeners, err := f.L4(pools, handed)
	if err != nil {
		return nil, fmt.Errorf("l4: %w", err)
	}
	if len(listeners) > 0 {
		m, err := l4.NewMetrics(reg)
		if err != nil {
			return nil, fmt.Errorf("l4: metrics: %w", err)
		}
		log := logger.With("role", "l4")
		for _, l := range listeners {
			srv, err := l4.New(l.Config, l4.Options{Logger: log, Metrics: m})
			if err != nil {
				return nil, fmt.Errorf("l4: %w", err)
			}
			ln, err := listen(l.Listen)
			if err != nil {
				return nil, fmt.Errorf("l4 listener %s: %w", l.Config.Name, err)
			}
			llog := log.With("listener", l.Config.Name)
			l4Stopped.add()
			roles = append(roles, role{name: "l4 listener " + l.Config.Name, run: func(ctx context.Context) error {
				defer l4Stopped.finish()
				return serveL4(ctx, srv, ln, l4DrainTimeout, llog)
			}})
		}
	}

	l4Stopped.seal()

	private := newPrivateMetrics(reg)
	if a := f.Admin(); a.Listen != "" {
		ln, err := listen(a.Listen)
		if err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
		log := logger.With("role", "admin")
		srv := privateServer{what: "admin", handler: adminHandler(pools, log), maxConns: a.MaxConns, metrics: private, log: log}
		roles = append(roles, role{name: "admin", run: func(ctx context.Context) error {
			return srv.serve(ctx, ln)
		}})
	}

	// The metrics listener comes last: nothing after it can fail and leave
	// it bound.
	if m := f.Metrics(); m.Listen != "" {
		ln, err := net.Listen("tcp", m.Listen)
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		log := logger.With("role", "metrics")
		srv := privateServer{what: "metrics", handler: metricsHandler(reg), maxConns: m.MaxConns, metrics: private, log: log}
		roles = append(roles, role{name: "metrics", run: func(ctx context.Context) error {
			return srv.serve(ctx, ln)
		}})
	}
	return roles, nil
}

// buildL7 makes the L7 front doors ready: their handlers (metrics on reg),
// their HTTPS and plain-HTTP listeners bound with listen, and, for each, a
// ConnListener that L4 routes hand connections to (handed, by front door
// name). A front door without its own listen address is reached only that
// way.
func buildL7(f *config.File, pools *lb.Set, logger *slog.Logger, reg prometheus.Registerer,
	listen func(string) (net.Listener, error), l4Stopped <-chan struct{}) (handed map[string]l4.ConnHandler, roles []role, err error) {
	doors, err := f.L7Redirect(pools)
	if err != nil {
		return nil, nil, fmt.Errorf("l7redirect: %w", err)
	}
	handed = map[string]l4.ConnHandler{}
	log := logger.With("role", "l7redirect")
	metrics, err := l7redirect.NewMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	for _, d := range doors {
		h, err := l7redirect.New(d.Config, l7redirect.Options{Logger: log, Metrics: metrics})
		if err != nil {
			return nil, nil, fmt.Errorf("l7redirect: %w", err)
		}
		fd := &frontDoor{name: d.Name, handler: h, tls: d.TLS, handed: l7redirect.NewConnListener(nil),
			l4Stopped: l4Stopped, log: log.With("frontdoor", d.Name)}
		fd.server = &l7redirect.Server{Name: d.Name, Logger: fd.log, MaxConns: d.MaxConns, MaxConnsPerSource: d.MaxConnsPerSource, Metrics: metrics}
		if d.ProxyProtocol {
			// Inside the connection caps, which then count the balancer
			// (exempt from the per-source cap) rather than wait for its
			// header in the accept loop.
			trusted := d.ProxyTrusted
			fd.server.ExemptSources = trusted
			fd.server.WrapListener = func(ln net.Listener) net.Listener { return proxyListener(ln, trusted) }
		}
		handed[d.Name] = fd.handed
		if d.HTTPRedirectListen != "" {
			fd.redirect, err = l7redirect.NewRedirect(l7redirect.RedirectConfig{
				Name: d.Name, Names: d.Names, Port: d.HTTPSPort, MaxRequestTarget: d.Config.MaxRequestTarget,
			}, l7redirect.Options{Logger: log, Metrics: metrics})
			if err != nil {
				return nil, nil, fmt.Errorf("l7redirect listener %s: %w", d.Name, err)
			}
		}
		for _, l := range []struct {
			addr string
			ln   *net.Listener
		}{{d.Listen, &fd.https}, {d.HTTPRedirectListen, &fd.plain}} {
			if l.addr == "" {
				continue
			}
			ln, err := listen(l.addr)
			if err != nil {
				return nil, nil, fmt.Errorf("l7redirect listener %s: %w", d.Name, err)
			}
			*l.ln = ln
		}
		roles = append(roles, role{name: "l7redirect listener " + d.Name, run: fd.serve})
	}
	return handed, roles, nil
}

// frontDoor is one L7 front door's role: its HTTPS listener (if it has
// one), the connections L4 routes hand it, and its plain-HTTP listener (if
// any), all served until the context ends.
type frontDoor struct {
	name     string
	server   *l7redirect.Server
	handler  http.Handler
	redirect http.Handler
	tls      *tls.Config
	https    net.Listener
	plain    net.Listener
	handed   *l7redirect.ConnListener
	// l4Stopped is closed when every L4 listener has drained: until then
	// they may still hand over a connection that was in its ClientHello
	// peek when shutdown began, so the handed-over server outlives ctx.
	l4Stopped <-chan struct{}
	log       *slog.Logger
}

// serve runs the front door's servers until ctx is cancelled, then shuts
// them down gracefully; if one fails, it stops the others and returns its
// error.
func (fd *frontDoor) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 3)
	n := 0
	start := func(ln net.Listener, h http.Handler, tlsConfig *tls.Config, what string) {
		n++
		go serveFrontDoor(ctx, fd.server, ln, h, tlsConfig, done)
		fd.log.Info("l7redirect listening", "addr", ln.Addr().String(), "serves", what)
	}
	if fd.https != nil {
		start(fd.https, fd.handler, fd.tls, "https")
	}
	handedCtx, stopHanded := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHanded()
	go stopAfterL4(ctx, fd.l4Stopped, stopHanded)
	n++
	go serveFrontDoor(handedCtx, fd.server, fd.handed, fd.handler, fd.tls, done)
	fd.log.Info("l7redirect listening", "addr", fd.handed.Addr().String(), "serves", "https from l4 routes")
	if fd.plain != nil {
		start(fd.plain, fd.redirect, nil, "http redirect to https")
	}
	var first error
	for range n {
		if err := <-done; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// stopAfterL4 calls stop once ctx has ended and the L4 listeners have
// drained (or, should they hang, after their drain bound and a margin).
func stopAfterL4(ctx context.Context, l4Stopped <-chan struct{}, stop func()) {
	<-ctx.Done()
	select {
	case <-l4Stopped:
	case <-time.After(l4DrainTimeout + shutdownTimeout):
	}
	stop()
}

// stopSignal is closed when the last of the roles counted with add has
// finished; sealed with none, it is closed at once.
type stopSignal struct {
	mu      sync.Mutex
	pending int
	sealed  bool
	done    chan struct{}
}

func newStopSignal() *stopSignal { return &stopSignal{done: make(chan struct{})} }

func (s *stopSignal) add() { s.mu.Lock(); s.pending++; s.mu.Unlock() }

func (s *stopSignal) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending--
	s.closeIfDone()
}

// seal says no more roles will be added.
func (s *stopSignal) seal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealed = true
	s.closeIfDone()
}

func (s *stopSignal) closeIfDone() {
	if s.sealed && s.pending == 0 {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
}

// serveFrontDoor is Server.Serve as a named goroutine, so stack dumps read
// well.
func serveFrontDoor(ctx context.Context, srv *l7redirect.Server, ln net.Listener, h http.Handler, tlsConfig *tls.Config, done chan<- error) {
	done <- srv.Serve(ctx, ln, h, tlsConfig)
}

// proxyListener accepts a PROXY header only from trusted addresses, whose
// header's client address then replaces theirs; from anyone else a header
// is refused, since it would let a client forge its address.
func proxyListener(ln net.Listener, trusted []netip.Prefix) net.Listener {
	policy := func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
		if ap, err := netip.ParseAddrPort(o.Upstream.String()); err == nil {
			for _, p := range trusted {
				if p.Contains(ap.Addr().Unmap()) {
					return proxyproto.USE, nil
				}
			}
		}
		return proxyproto.REJECT, nil
	}
	return &proxyproto.Listener{Listener: ln, ConnPolicy: policy, ReadHeaderTimeout: 10 * time.Second}
}

// serveL4 runs one L4 listener until ctx is cancelled, then stops accepting
// and lets the relayed connections end by themselves for up to drain before
// it closes them.
func serveL4(ctx context.Context, srv *l4.Server, ln net.Listener, drain time.Duration, log *slog.Logger) error {
	// l4.Server.Serve closes its connections when its context ends, so it
	// gets one that outlives ctx by the drain.
	connCtx, closeConns := context.WithCancel(context.WithoutCancel(ctx))
	defer closeConns()
	served := make(chan error, 1)
	go serveL4Conns(connCtx, srv, ln, served)
	log.Info("l4 listening", "addr", ln.Addr().String())
	select {
	case err := <-served:
		return fmt.Errorf("serve l4 on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	// Serve returns once the connections it has accepted have ended; the
	// error it returns then only says that the listener was closed.
	ln.Close()
	start := time.Now()
	log.Info("l4 stopped accepting; draining relayed connections", "addr", ln.Addr().String(), "timeout", drain)
	t := time.NewTimer(drain)
	defer t.Stop()
	select {
	case <-served:
		log.Info("l4 drained", "took", time.Since(start).Round(time.Millisecond))
	case <-t.C:
		log.Warn("l4 drain timed out; closing relayed connections", "timeout", drain)
		closeConns()
		<-served
	}
	return nil
}

// serveL4Conns is srv.Serve as a named goroutine, so stack dumps read well.
func serveL4Conns(ctx context.Context, srv *l4.Server, ln net.Listener, done chan<- error) {
	done <- srv.Serve(ctx, ln)
}

// runRoles runs every role in its own goroutine until ctx is cancelled or
// one of them returns. The first role to return (with an error, or with
// none before shutdown was asked for) cancels the others; runRoles waits
// for all of them and returns that first error.
func runRoles(ctx context.Context, roles []role) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, r := range roles {
		wg.Go(func() {
			if err := runRole(ctx, r); err != nil {
				once.Do(func() { first = err })
			}
			cancel()
		})
	}
	wg.Wait()
	return first
}

// runRole runs one role and names it in its error. A role that returns
// before its context is cancelled has failed, even without an error: the
// appliance would silently run without it.
func runRole(ctx context.Context, r role) error {
	err := r.run(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", r.name, err)
	case ctx.Err() == nil:
		return fmt.Errorf("%s: stopped before shutdown", r.name)
	}
	return nil
}

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
// admin).
type privateServer struct {
	what     string // "metrics" or "admin": the role and the metrics' label
	handler  http.Handler
	maxConns int
	// idleTimeout overrides privateIdleTimeout when set (tests).
	idleTimeout time.Duration
	metrics     *privateMetrics
	log         *slog.Logger
}

// serve serves the endpoint on ln, at most maxConns connections at once,
// until ctx is cancelled, then shuts it down gracefully.
func (p privateServer) serve(ctx context.Context, ln net.Listener) error {
	refused := p.metrics.refused.MustCurryWith(prometheus.Labels{"listener": p.what})
	open := p.metrics.open.WithLabelValues(p.what)
	lim := connlimit.New(connlimit.Limits{MaxConns: p.maxConns})
	limited := connlimit.NewListener(ln, lim, func(r connlimit.Reason, from net.Addr) {
		refused.WithLabelValues(string(r)).Inc()
		p.log.Debug("connection refused", "reason", r, "client", from.String(), "max_conns", p.maxConns)
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
	p.log.Info("serving "+p.what, "addr", ln.Addr().String(), "max_conns", p.maxConns)
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
