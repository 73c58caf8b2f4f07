package lb

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// ErrNoHealthyBackend is wrapped by the errors of Acquire and Choose when
// no backend of the pool can take a new connection: all are down, drained,
// at MaxConns or already tried.
var ErrNoHealthyBackend = errors.New("no healthy backend")

// Config is the configuration of one pool. NewPool validates it.
type Config struct {
	// Name identifies the pool in logs and metrics.
	Name string
	// Backends are the pool's members, in order; at least one is required.
	Backends []BackendConfig
	// Policy names the selection policy; empty means PolicyRoundRobin.
	Policy PolicyName
	// Health configures active and passive health checks.
	Health HealthCheck
}

// Options carries what a pool gets from its host process rather than from
// its configuration.
type Options struct {
	// Logger receives state changes; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests inject it.
	Now func() time.Time
}

// Pool is a set of backends behind one selection policy. It is safe for
// concurrent use. Create it with NewPool.
type Pool struct {
	name     string
	backends []*Backend
	byName   map[string]*Backend
	policy   Policy
	health   HealthCheck
	log      *slog.Logger
	now      func() time.Time
	*poolState
}

// poolState is what a pool keeps across a reload besides its backends'
// states.
type poolState struct {
	noneLeft atomic.Uint64 // picks that found no usable backend
}

// NewPool validates cfg and builds a pool whose backends all start up.
// All problems are reported together. Its state is its own; a Registry
// builds pools whose state survives reloads, and exports their metrics.
func NewPool(cfg Config, opts Options) (*Pool, error) {
	return newPool(cfg, opts, nil)
}

// newPool is NewPool with the state of a previous generation: prev, when
// not nil, gives the pool's and each backend's state to keep (nil for a
// new one).
func newPool(cfg Config, opts Options, prev *generation) (*Pool, error) {
	var errs []error
	if cfg.Name == "" {
		errs = append(errs, errors.New("pool name is empty"))
	}
	if len(cfg.Backends) == 0 {
		errs = append(errs, fmt.Errorf("pool %q has no backends", cfg.Name))
	}
	health, err := cfg.Health.withDefaults()
	if err != nil {
		errs = append(errs, fmt.Errorf("pool %q: %w", cfg.Name, err))
	}
	p := &Pool{
		poolState: prev.pool(cfg.Name),
		name:      cfg.Name,
		byName:    make(map[string]*Backend, len(cfg.Backends)),
		health:    health,
		log:       opts.Logger,
		now:       opts.Now,
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	start := p.now()
	for i, bc := range cfg.Backends {
		switch {
		case bc.Name == "":
			errs = append(errs, fmt.Errorf("pool %q backend #%d: name is empty", cfg.Name, i+1))
			continue
		case p.byName[bc.Name] != nil:
			errs = append(errs, fmt.Errorf("pool %q backend %q: duplicate name", cfg.Name, bc.Name))
			continue
		case bc.Addr == "":
			errs = append(errs, fmt.Errorf("pool %q backend %q: address is empty", cfg.Name, bc.Name))
			continue
		case bc.Weight < 0 || bc.MaxConns < 0:
			errs = append(errs, fmt.Errorf("pool %q backend %q: weight and max_conns must not be negative", cfg.Name, bc.Name))
			continue
		}
		if bc.Weight == 0 {
			bc.Weight = 1
		}
		if bc.FQDN == "" {
			if host, _, err := net.SplitHostPort(bc.Addr); err == nil {
				bc.FQDN = host
			}
		}
		b := &Backend{BackendConfig: bc, pool: p, backendState: prev.backend(cfg.Name, bc, start)}
		p.backends = append(p.backends, b)
		p.byName[bc.Name] = b
	}
	if p.policy, err = newPolicy(cfg.Policy, p.backends); err != nil {
		errs = append(errs, fmt.Errorf("pool %q: %w", cfg.Name, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Backends returns the pool's backends in configuration order. The slice
// must not be modified.
func (p *Pool) Backends() []*Backend { return p.backends }

// Backend returns the backend called name, or nil.
func (p *Pool) Backend(name string) *Backend { return p.byName[name] }

// why summarises, for an operator, why no backend was usable.
func (p *Pool) why(skip []*Backend) string {
	var down, drained, full int
	for _, b := range p.backends {
		switch {
		case b.State() == StateDown:
			down++
		case b.Drained():
			drained++
		case !b.hasRoom():
			full++
		}
	}
	return fmt.Sprintf("%d backends: %d down, %d drained, %d at max_conns, %d already tried",
		len(p.backends), down, drained, full, len(skip))
}

// isUp reports whether b may take traffic. A backend ejected passively in a
// pool without active checks comes back on its own after the cooldown, since
// nothing else would ever bring it back. It comes back on probation: one
// more dial failure ejects it again, so a black-holed node costs one dial
// timeout per cooldown rather than PassiveFall of them; its first successful
// dial ends the probation.
func (p *Pool) isUp(b *Backend, now time.Time) bool {
	if b.State() == StateUp {
		return true
	}
	if p.health.Interval > 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.State() == StateDown && !now.Before(b.retryAt) {
		b.passiveStreak = max(p.health.PassiveFall-1, 0)
		p.setState(b, StateUp, "passive cooldown over", now)
	}
	return b.State() == StateUp
}

// reportDialFailure records that dialing b failed. After the pool's
// PassiveFall consecutive dial failures b is marked down. Dial failures are
// counted apart from failed active checks (see reportDialSuccess).
func (p *Pool) reportDialFailure(b *Backend, err error) {
	b.dialFailures.Add(1)
	if p.health.PassiveFall < 0 {
		return
	}
	msg := "dial failed"
	if err != nil {
		msg = err.Error()
	}
	p.record(b, false, true, msg)
}

// reportDialSuccess records that dialing b succeeded, which resets its run
// of dial failures. It does not reset a run of failed active checks: a node
// whose readiness check fails usually still accepts TCP, and its traffic
// must not keep it in the pool. It never brings a down backend up: only
// active checks (or the passive cooldown) do that.
func (p *Pool) reportDialSuccess(b *Backend) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.State() == StateUp {
		b.passiveStreak = 0
	}
}

// record applies one active check result (passive false) or one dial
// failure (passive true) to b and changes its state once a run of results
// reaches the rise or fall count. Active and passive failures run
// separately, each against its own fall count; a successful active check
// ends both runs.
func (p *Pool) record(b *Backend, ok, passive bool, errMsg string) {
	now := p.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok {
		b.okStreak++
		b.failStreak = 0
		b.passiveStreak = 0
		b.lastErr = ""
		if b.State() == StateDown && b.okStreak >= p.health.Rise {
			p.setState(b, StateUp, "", now)
		}
		return
	}
	streak, fall := &b.failStreak, p.health.Fall
	if passive {
		streak, fall = &b.passiveStreak, p.health.PassiveFall
	}
	*streak++
	b.okStreak = 0
	b.lastErr = errMsg
	if b.State() == StateUp && *streak >= fall {
		b.retryAt = now.Add(p.health.PassiveCooldown)
		p.setState(b, StateDown, errMsg, now)
	}
}

// setState changes b's state, logs and counts the change. b.mu must be held.
func (p *Pool) setState(b *Backend, s State, reason string, now time.Time) {
	if State(b.state.Swap(int32(s))) == s {
		return
	}
	b.since = now
	if s == StateUp {
		b.wentUp.Add(1)
		p.log.Info("backend up", "pool", p.name, "backend", b.Name, "addr", b.Addr)
	} else {
		b.wentDown.Add(1)
		p.log.Warn("backend down", "pool", p.name, "backend", b.Name, "addr", b.Addr, "reason", reason)
	}
}

// PoolStatus is a point-in-time view of a pool.
type PoolStatus struct {
	Name     string
	Policy   PolicyName
	Backends []BackendStatus
}

// Healthy returns how many backends are up and not drained.
func (s PoolStatus) Healthy() int {
	n := 0
	for _, b := range s.Backends {
		if b.State == StateUp && !b.Drained {
			n++
		}
	}
	return n
}

// Status returns a snapshot of the pool for health pages and readiness.
func (p *Pool) Status() PoolStatus {
	st := PoolStatus{Name: p.name, Policy: p.policy.Name(), Backends: make([]BackendStatus, len(p.backends))}
	for i, b := range p.backends {
		st.Backends[i] = b.Status()
	}
	return st
}
