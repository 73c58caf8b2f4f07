package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/iwalb/iwalb/authnode"
	"github.com/iwalb/iwalb/cmd/iwalb/internal/config"
)

// shutdownTimeout bounds a graceful shutdown of the metrics server.
const shutdownTimeout = 5 * time.Second

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
// refused before any role starts.
func buildRoles(f *config.File, logger *slog.Logger, reg *prometheus.Registry) ([]role, error) {
	var roles []role
	if cfg, ok := f.AuthNode(); ok {
		// authnode.New adds role=authnode to the logger itself.
		node, err := authnode.New(cfg, authnode.Options{Logger: logger, Registerer: reg})
		if err != nil {
			return nil, fmt.Errorf("authnode: %w", err)
		}
		roles = append(roles, role{name: "authnode", run: node.Run})
	}
	// The metrics listener comes last: nothing after it can fail and leave
	// it bound.
	if addr := f.MetricsListen(); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		log := logger.With("role", "metrics")
		roles = append(roles, role{name: "metrics", run: func(ctx context.Context) error {
			return serveMetrics(ctx, ln, reg, log)
		}})
	}
	return roles, nil
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

// serveMetrics serves the Prometheus registry on ln at /metrics until ctx
// is cancelled, then shuts down gracefully.
func serveMetrics(ctx context.Context, ln net.Listener, reg *prometheus.Registry, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go serveHTTP(srv, ln, served)
	log.Info("serving metrics", "addr", ln.Addr().String())
	select {
	case err := <-served:
		return fmt.Errorf("serve metrics on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down metrics on %s: %w", ln.Addr(), err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics on %s: %w", ln.Addr(), err)
	}
	return nil
}

// serveHTTP is srv.Serve as a named goroutine, so stack dumps read well.
func serveHTTP(srv *http.Server, ln net.Listener, done chan<- error) {
	done <- srv.Serve(ln)
}
