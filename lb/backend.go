package lb

import (
	"sync"
	"sync/atomic"
	"time"
)

// BackendConfig describes one backend as configured.
type BackendConfig struct {
	// Name identifies the backend in logs, metrics and the hash ring; it must
	// be unique within its pool. Hashing uses the name, not the address, so
	// moving a node to a new address keeps its clients.
	Name string
	// Addr is the host:port the front door dials.
	Addr string
	// FQDN is the node's own DNS name, used by probes that need a server name
	// (TLS SNI, HTTP Host). Empty means the host part of Addr.
	FQDN string
	// Weight is the backend's relative share of new connections; 0 means 1.
	Weight int
	// MaxConns caps the backend's active connections; 0 means no cap.
	MaxConns int
}

// State is a backend's health state.
type State int32

// Health states. A backend starts Up so that traffic flows before the first
// check completes; a failing backend is ejected after the fall count.
const (
	StateUp State = iota
	StateDown
)

// String returns "up" or "down".
func (s State) String() string {
	if s == StateUp {
		return "up"
	}
	return "down"
}

// Backend is one live backend of a Pool: its configuration plus the health
// and load state that the pool's checks and picks maintain. The embedded
// BackendConfig must not be modified after NewPool.
type Backend struct {
	BackendConfig

	pool *Pool
	*backendState
}

// backendState is what a backend's checks, leases and drain keep. A
// Registry hands it from a backend to its successor in a reloaded Set, so
// that health, drain, open connections and counters survive the reload.
type backendState struct {
	active  atomic.Int64
	state   atomic.Int32 // State
	drained atomic.Bool

	// Counters exported by the metrics collector.
	picks        atomic.Uint64
	dialFailures atomic.Uint64
	checksOK     atomic.Uint64
	checksFailed atomic.Uint64
	wentUp       atomic.Uint64
	wentDown     atomic.Uint64

	mu            sync.Mutex // guards the fields below
	okStreak      int        // consecutive successful active checks
	failStreak    int        // consecutive failed active checks
	passiveStreak int        // consecutive dial failures; dial successes reset only this
	lastErr       string
	lastCheck     time.Time
	since         time.Time
	retryAt       time.Time // passive ejection without active checks ends here
}

// movedState returns the state of a backend that kept its pool and name
// but moved to another address: what the operator set (drain) and the
// counters carry over; health starts anew, up, since the old address's
// health says nothing about the new one.
func (s *backendState) movedState(now time.Time) *backendState {
	n := &backendState{since: now}
	n.drained.Store(s.drained.Load())
	n.picks.Store(s.picks.Load())
	n.dialFailures.Store(s.dialFailures.Load())
	n.checksOK.Store(s.checksOK.Load())
	n.checksFailed.Store(s.checksFailed.Load())
	n.wentUp.Store(s.wentUp.Load())
	n.wentDown.Store(s.wentDown.Load())
	return n
}

// Active returns the number of connections currently picked and not yet
// released.
func (b *Backend) Active() int { return int(b.active.Load()) }

// State returns the backend's current health state.
func (b *Backend) State() State { return State(b.state.Load()) }

// Drained reports whether the backend is drained.
func (b *Backend) Drained() bool { return b.drained.Load() }

// SetDrained drains (true) or undrains (false) the backend. A drained backend
// takes no new picks; connections already picked run to completion.
func (b *Backend) SetDrained(on bool) {
	if b.drained.Swap(on) != on {
		b.pool.log.Info("backend drain changed", "pool", b.pool.name, "backend", b.Name, "drained", on)
	}
}

// hasRoom reports whether one more connection fits under MaxConns.
func (b *Backend) hasRoom() bool {
	return b.MaxConns <= 0 || b.active.Load() < int64(b.MaxConns)
}

// acquire reserves one connection slot, respecting MaxConns even when many
// picks race for the last slot.
func (b *Backend) acquire() bool {
	for {
		n := b.active.Load()
		if b.MaxConns > 0 && n >= int64(b.MaxConns) {
			return false
		}
		if b.active.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// BackendStatus is a point-in-time view of one backend.
type BackendStatus struct {
	Name      string
	Addr      string
	FQDN      string
	Weight    int
	MaxConns  int
	State     State
	Drained   bool
	Active    int
	LastCheck time.Time // zero until the first active check
	LastError string    // the last check or dial error; empty after a success
	Since     time.Time // when State last changed (or the pool was built)
}

// Status returns a snapshot of the backend.
func (b *Backend) Status() BackendStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BackendStatus{
		Name:      b.Name,
		Addr:      b.Addr,
		FQDN:      b.FQDN,
		Weight:    b.Weight,
		MaxConns:  b.MaxConns,
		State:     b.State(),
		Drained:   b.Drained(),
		Active:    b.Active(),
		LastCheck: b.lastCheck,
		LastError: b.lastErr,
		Since:     b.since,
	}
}
