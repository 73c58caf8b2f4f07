package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/config"
	"github.com/iwalb/iwalb/l4"
	"github.com/iwalb/iwalb/l7redirect"
	"github.com/iwalb/iwalb/lb"
)

// shutdownTimeout bounds a graceful shutdown of the private listeners.
const shutdownTimeout = 5 * time.Second

// serve runs the roles that the configuration at path enables until ctx
// ends, and loads the file again each time reload delivers (SIGHUP). A
// role that fails stops the process.
func serve(ctx context.Context, path string, reload <-chan struct{}, stderr io.Writer) int {
	f, err := loadForRun(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
	p := newProcess(path, f, stderr)
	if err := p.start(f); err != nil {
		p.log.Error("cannot start", "err", err)
		return exitFailed
	}
	p.log.Info("iwalb started", "version", version, "config", path, "config_hash", f.Hash())
	for {
		select {
		case <-ctx.Done():
			p.stop()
			p.log.Info("iwalb stopped")
			return exitOK
		case <-reload:
			p.reload()
		case err := <-p.failed:
			p.log.Error("iwalb stopped", "err", err)
			p.stop()
			return exitFailed
		}
	}
}

// loadForRun loads the file at path for `iwalb run`, which refuses its
// warnings (secrets open to others) too.
func loadForRun(path string) (*config.File, error) {
	f, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if w := f.Warnings(); len(w) > 0 {
		return nil, fmt.Errorf("%w\n%s: refused: files that hold secrets must not be open to group or others", w, path)
	}
	return f, nil
}

// process is a running iwalb: the configuration generation it serves, the
// roles serving it on their bound listeners, and the pools' health checks.
// start binds and starts; reload builds the next generation beside the
// running one and swaps it in; stop drains. One of them runs at a time.
type process struct {
	path     string
	log      *slog.Logger
	logLevel *slog.LevelVar
	reg      *prometheus.Registry
	pools    *lb.Registry
	l4m      *l4.Metrics
	l7m      *l7redirect.Metrics
	private  *privateMetrics
	configm  *configMetrics
	// failed receives the error of a role that stopped on its own.
	failed chan error

	mu         sync.Mutex
	file       *config.File
	gen        int
	roles      map[string]*liveRole // by role name
	stopHealth context.CancelFunc
	healthDone chan struct{}
	stopping   bool
}

// liveRole is a role serving its listeners.
type liveRole struct {
	role
	lns    []net.Listener
	cancel context.CancelFunc
	done   chan struct{} // closed when serve has returned
}

// newProcess makes the process's logger and its metrics, registered once
// for its whole life.
func newProcess(path string, f *config.File, logs io.Writer) *process {
	p := &process{
		path:     path,
		logLevel: new(slog.LevelVar),
		reg:      prometheus.NewRegistry(),
		pools:    lb.NewRegistry(),
		failed:   make(chan error, 1),
		roles:    map[string]*liveRole{},
	}
	p.logLevel.Set(f.LogLevel())
	p.log = f.Logger(logs, p.logLevel)
	p.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		p.pools,
		buildInfo(),
	)
	// A new registry: none of these can be refused.
	p.l4m, _ = l4.NewMetrics(p.reg)
	p.l7m, _ = l7redirect.NewMetrics(p.reg)
	p.private = newPrivateMetrics(p.reg)
	p.configm = newConfigMetrics(p.reg)
	return p
}

// start builds f's roles, binds every listener (all or none) and starts
// them.
func (p *process) start(f *config.File) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	next, err := p.build(f)
	if err != nil {
		return err
	}
	lns, err := bindAll(next.roles, nil)
	if err != nil {
		return err
	}
	p.activate(f, next)
	for _, r := range next.roles {
		p.startRole(r, lns[r.name()])
	}
	return nil
}

// generation is what a configuration builds, without sockets: the pools
// (not yet active) and the roles.
type generation struct {
	pools *lb.Set
	roles []role
}

// activate makes f's pools the ones picked from and health-checked (their
// state carried over by the registry), and f the running configuration.
func (p *process) activate(f *config.File, next generation) {
	p.pools.Activate(next.pools)
	if p.stopHealth != nil {
		p.stopHealth()
		<-p.healthDone
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go runHealthChecks(ctx, next.pools, done)
	p.stopHealth, p.healthDone = cancel, done
	p.file = f
	p.gen++
	p.logLevel.Set(f.LogLevel())
	p.configm.loaded(p.gen, f.Hash(), f.Certificates())
}

// runHealthChecks is set.Run as a named goroutine, so stack dumps read
// well.
func runHealthChecks(ctx context.Context, set *lb.Set, done chan<- struct{}) {
	defer close(done)
	set.Run(ctx)
}

// bindAll opens the listeners of roles, keyed by role name, except those
// that live already holds for the same role on the same address. On
// failure it closes what it opened.
func bindAll(roles []role, live map[string]*liveRole) (map[string][]net.Listener, error) {
	out := map[string][]net.Listener{}
	var opened []net.Listener
	for _, r := range roles {
		if l := live[r.name()]; l != nil && slices.Equal(l.addrs(), r.addrs()) {
			continue
		}
		var lns []net.Listener
		for _, addr := range r.addrs() {
			if addr == "" {
				lns = append(lns, nil)
				continue
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				for _, o := range opened {
					o.Close()
				}
				return nil, fmt.Errorf("%s: %w", r.name(), err)
			}
			opened = append(opened, ln)
			lns = append(lns, ln)
		}
		out[r.name()] = lns
	}
	return out, nil
}

// startRole runs r on lns until its context ends. A role that returns
// before it was told to stop has failed: the process stops, rather than
// run silently without it.
func (p *process) startRole(r role, lns []net.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	l := &liveRole{role: r, lns: lns, cancel: cancel, done: make(chan struct{})}
	p.roles[r.name()] = l
	go runRole(ctx, l, p.failed)
}

// runRole is a role's serve as a named goroutine, so stack dumps read
// well; it reports the role's failure on failed.
func runRole(ctx context.Context, l *liveRole, failed chan<- error) {
	defer close(l.done)
	err := l.serve(ctx, l.lns)
	switch {
	case err != nil:
		err = fmt.Errorf("%s: %w", l.name(), err)
	case ctx.Err() == nil:
		err = fmt.Errorf("%s: stopped before shutdown", l.name())
	default:
		return
	}
	select {
	case failed <- err:
	default: // another failure is being reported already
	}
}

// reload loads the file again and, if it is sound and its listeners can
// be bound, swaps it in: listeners on unchanged addresses keep accepting,
// roles take their new configuration for new connections and requests,
// and connections in flight keep what they started with. A file that
// cannot be loaded, built or bound leaves the running generation as it
// is. It returns the outcome, which is also logged and counted.
func (p *process) reload() (reloadResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	res := reloadResult{Generation: p.gen, Hash: p.file.Hash()}
	fail := func(err error) (reloadResult, error) {
		p.configm.failed()
		p.log.Error("reload refused; the running configuration keeps serving", "config", p.path,
			"generation", p.gen, "err", err)
		return res, err
	}
	if p.stopping {
		return fail(errors.New("the process is stopping"))
	}
	f, err := loadForRun(p.path)
	if err != nil {
		return fail(err)
	}
	next, err := p.build(f)
	if err != nil {
		return fail(err)
	}
	lns, err := bindAll(next.roles, p.roles)
	if err != nil {
		return fail(err)
	}
	// Nothing can fail from here: every role was built (and so checked)
	// and every new listener is bound.
	p.activate(f, next)
	keep := map[string]bool{}
	for _, r := range next.roles {
		keep[r.name()] = true
		live := p.roles[r.name()]
		if _, rebound := lns[r.name()]; !rebound && live != nil {
			live.update(r)
			continue
		}
		if live != nil {
			// Same role, another address: the new listener takes over,
			// the old one drains.
			go drainRole(live)
		}
		p.startRole(r, lns[r.name()])
	}
	for name, live := range p.roles {
		if !keep[name] {
			delete(p.roles, name)
			go retireRole(live)
		}
	}
	res = reloadResult{Generation: p.gen, Hash: f.Hash()}
	p.log.Info("configuration reloaded", "config", p.path, "generation", p.gen, "config_hash", f.Hash())
	return res, nil
}

// reloadResult says which configuration runs after a reload.
type reloadResult struct {
	Generation int    `json:"generation"`
	Hash       string `json:"configHash"`
}

// drainRole stops a role that a reload removed or moved: it stops
// accepting and lets what it serves finish, as at shutdown.
func drainRole(l *liveRole) {
	l.cancel()
	<-l.done
}

// retireRole drains a role that a reload removed, then lets it forget what
// it kept for the process (its metrics' series).
func retireRole(l *liveRole) {
	drainRole(l)
	if r, ok := l.role.(interface{ retire() }); ok {
		r.retire()
	}
}

// stop shuts every role down gracefully: the L4 listeners first, since
// until they have drained they may still hand a connection to an L7 front
// door; then the others; then the health checks.
func (p *process) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopping = true
	for stage := range stages {
		var wg sync.WaitGroup
		for _, l := range p.roles {
			if l.stage() == stage {
				wg.Go(func() { drainRole(l) })
			}
		}
		wg.Wait()
	}
	if p.stopHealth != nil {
		p.stopHealth()
		<-p.healthDone
	}
}

// The stop order of the roles.
const (
	stageL4 = iota // stopped first: they hand connections to the L7 front doors
	stageOthers
	stages
)

// configMetrics show which configuration runs and how reloads went.
type configMetrics struct {
	generation prometheus.Gauge
	info       *prometheus.GaugeVec
	reloads    *prometheus.CounterVec
	certs      *prometheus.GaugeVec
}

func newConfigMetrics(reg prometheus.Registerer) *configMetrics {
	m := &configMetrics{
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "iwalb_config_generation",
			Help: "The configuration generation running: 1 at start, one more for each reload that took effect.",
		}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "iwalb_config_info",
			Help: "1 for the hash of the configuration file running (the first 12 hex digits of its SHA-256).",
		}, []string{"hash"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iwalb_config_reloads_total",
			Help: "Reloads of the configuration by result: ok, or failed (the running configuration kept serving).",
		}, []string{"result"}),
		certs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "iwalb_tls_certificate_expiry_timestamp_seconds",
			Help: "When each server certificate of the running configuration expires (its NotAfter, Unix seconds), by server (authnode, or l7redirect/<listener>) and the first name it covers.",
		}, []string{"server", "name"}),
	}
	reg.MustRegister(m.generation, m.info, m.reloads, m.certs)
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")
	return m
}

// loaded records that generation gen runs: the file with hash, serving
// certs.
func (m *configMetrics) loaded(gen int, hash string, certs []config.Certificate) {
	if gen > 1 {
		m.reloads.WithLabelValues("ok").Inc()
	}
	m.generation.Set(float64(gen))
	m.info.Reset()
	m.info.WithLabelValues(hash).Set(1)
	m.certs.Reset()
	for _, c := range certs {
		m.certs.WithLabelValues(c.Server, c.Name).Set(float64(c.NotAfter.Unix()))
	}
}

func (m *configMetrics) failed() { m.reloads.WithLabelValues("failed").Inc() }
