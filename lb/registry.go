package lb

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Registry keeps a process's pools across configuration reloads, as
// Caddy's usage pool keeps its upstreams: NewSet builds the pools of a new
// configuration, and a backend that keeps its pool and name (and address)
// keeps its state (health, drain, open connections, counters) from the
// active Set; Activate makes the new Set the active one. The Registry is
// also the one Prometheus collector of every pool's metrics, registered
// once per process, always showing the active Set.
//
//	reg := lb.NewRegistry()
//	prom.MustRegister(reg)
//	set, err := reg.NewSet(configs, opts) // at start and on each reload
//	reg.Activate(set)
//	go set.Run(ctx) // its health checks; cancel the previous Set's
type Registry struct {
	active atomic.Pointer[Set]
}

// NewRegistry returns a Registry whose active Set is empty.
func NewRegistry() *Registry {
	r := &Registry{}
	r.active.Store(&Set{byName: map[string]*Pool{}})
	return r
}

// NewSet validates cfgs and builds their pools, which take over the state
// of the active Set's backends of the same pool and name. A backend that
// moved to another address keeps its drain and counters, and its health
// starts anew (up). Nothing changes for the active Set until Activate.
// All problems are reported together.
func (r *Registry) NewSet(cfgs []Config, opts Options) (*Set, error) {
	prev := generationOf(r.active.Load())
	var pools []*Pool
	var errs []error
	for _, cfg := range cfgs {
		p, err := newPool(cfg, opts, prev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pools = append(pools, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return NewSet(pools...)
}

// Activate makes s the active Set: the one whose metrics are exported, and
// whose state the next NewSet takes over.
func (r *Registry) Activate(s *Set) { r.active.Store(s) }

// Active returns the active Set.
func (r *Registry) Active() *Set { return r.active.Load() }

// generation is a Set's state by name, for the next Set to take over.
type generation struct {
	pools    map[string]*poolState
	backends map[[2]string]*Backend // by pool and backend name
}

func generationOf(s *Set) *generation {
	g := &generation{pools: map[string]*poolState{}, backends: map[[2]string]*Backend{}}
	for _, p := range s.pools {
		g.pools[p.name] = p.poolState
		for _, b := range p.backends {
			g.backends[[2]string{p.name, b.Name}] = b
		}
	}
	return g
}

// pool returns the state of the pool called name: the previous one's, or
// a new one.
func (g *generation) pool(name string) *poolState {
	if g != nil {
		if s := g.pools[name]; s != nil {
			return s
		}
	}
	return &poolState{}
}

// backend returns the state of backend bc of pool: the previous one's if
// it kept its address, part of it if it moved, or a new one, up since now.
func (g *generation) backend(pool string, bc BackendConfig, now time.Time) *backendState {
	if g != nil {
		if old := g.backends[[2]string{pool, bc.Name}]; old != nil {
			if old.Addr == bc.Addr {
				return old.backendState
			}
			return old.movedState(now)
		}
	}
	return &backendState{since: now}
}

// The descriptions of the pools' metrics.
var (
	descUp = prometheus.NewDesc("iwalb_lb_backend_up",
		"Whether the backend is up (1) or down (0).", []string{"pool", "backend"}, nil)
	descDrained = prometheus.NewDesc("iwalb_lb_backend_drained",
		"Whether the backend is drained (1).", []string{"pool", "backend"}, nil)
	descActive = prometheus.NewDesc("iwalb_lb_backend_active_connections",
		"Connections picked and not yet released.", []string{"pool", "backend"}, nil)
	descPicks = prometheus.NewDesc("iwalb_lb_backend_picks_total",
		"Connections assigned to the backend.", []string{"pool", "backend"}, nil)
	descDialFailures = prometheus.NewDesc("iwalb_lb_backend_dial_failures_total",
		"Dial failures reported by the front doors.", []string{"pool", "backend"}, nil)
	descChecks = prometheus.NewDesc("iwalb_lb_backend_health_checks_total",
		"Active health checks by result.", []string{"pool", "backend", "result"}, nil)
	descChanges = prometheus.NewDesc("iwalb_lb_backend_state_changes_total",
		"Health state changes by new state.", []string{"pool", "backend", "state"}, nil)
	descNone = prometheus.NewDesc("iwalb_lb_no_backend_total",
		"Picks that found no usable backend.", []string{"pool"}, nil)
)

// Describe implements prometheus.Collector.
func (r *Registry) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descDrained, descActive, descPicks, descDialFailures, descChecks, descChanges, descNone} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the active Set's pools, read
// from the counters and gauges kept on the backends at scrape time, so
// there is no second copy to keep in sync.
func (r *Registry) Collect(ch chan<- prometheus.Metric) {
	b2f := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, p := range r.active.Load().pools {
		for _, b := range p.backends {
			gauge(descUp, b2f(b.State() == StateUp), p.name, b.Name)
			gauge(descDrained, b2f(b.Drained()), p.name, b.Name)
			gauge(descActive, float64(b.Active()), p.name, b.Name)
			counter(descPicks, b.picks.Load(), p.name, b.Name)
			counter(descDialFailures, b.dialFailures.Load(), p.name, b.Name)
			counter(descChecks, b.checksOK.Load(), p.name, b.Name, "ok")
			counter(descChecks, b.checksFailed.Load(), p.name, b.Name, "failed")
			counter(descChanges, b.wentUp.Load(), p.name, b.Name, "up")
			counter(descChanges, b.wentDown.Load(), p.name, b.Name, "down")
		}
		counter(descNone, p.noneLeft.Load(), p.name)
	}
}
