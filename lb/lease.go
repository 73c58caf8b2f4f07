package lb

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"
)

// Lease is one connection's slot on a backend, from Pool.Acquire. The
// connection's dial ends it one of two ways: Failed (the dial did not
// succeed; that is reported to the pool and frees the slot), or Dialed and,
// when the connection ends, Release. Release after Failed, and a second
// Release, do nothing, so a deferred Release is always safe.
type Lease struct {
	b    *Backend
	done atomic.Bool
}

// Acquire chooses a backend for a new connection from client and takes a
// connection slot on it. skip lists backends already tried for this
// connection, so a retry after a failed dial goes elsewhere. When nothing
// can take the connection, the error wraps ErrNoHealthyBackend.
func (p *Pool) Acquire(client netip.Addr, skip ...*Backend) (*Lease, error) {
	now := p.now()
	usable := func(b *Backend) bool {
		for _, s := range skip {
			if s == b {
				return false
			}
		}
		return p.usable(b, now)
	}
	// Another Acquire may take the last slot between Select and acquire;
	// try again a bounded number of times rather than overshoot MaxConns.
	for range 2 * len(p.backends) {
		b := p.policy.Select(client, usable)
		if b == nil {
			break
		}
		if b.acquire() {
			b.picks.Add(1)
			return &Lease{b: b}, nil
		}
	}
	return nil, p.noBackend(skip)
}

// Backend returns the backend the lease is on.
func (l *Lease) Backend() *Backend { return l.b }

// Dialed reports that the connection to the backend was made, which ends
// its run of dial failures. The slot stays taken until Release.
func (l *Lease) Dialed() { l.b.pool.reportDialSuccess(l.b) }

// Failed reports that dialing the backend failed (err says why; it may be
// nil) and frees the slot: after PassiveFall failures in a row the backend
// is marked down.
func (l *Lease) Failed(err error) {
	l.Release()
	l.b.pool.reportDialFailure(l.b, err)
}

// Release frees the slot when the connection ends.
func (l *Lease) Release() {
	if l.done.CompareAndSwap(false, true) {
		l.b.active.Add(-1)
	}
}

// Choose chooses a backend for a client that will connect to it by itself
// (a redirect), without taking a slot: prefer, when it is a usable backend
// of this pool, else the policy's choice. It counts as a pick. When no
// backend is usable, the error wraps ErrNoHealthyBackend.
func (p *Pool) Choose(client netip.Addr, prefer *Backend) (*Backend, error) {
	now := p.now()
	b := prefer
	if b == nil || b.pool != p || !p.usable(b, now) {
		b = p.policy.Select(client, func(b *Backend) bool { return p.usable(b, now) })
	}
	if b == nil {
		return nil, p.noBackend(nil)
	}
	b.picks.Add(1)
	return b, nil
}

// usable reports whether b may take a new connection now: up, not drained,
// below MaxConns.
func (p *Pool) usable(b *Backend, now time.Time) bool {
	return !b.drained.Load() && p.isUp(b, now) && b.hasRoom()
}

// noBackend counts a pick that found no usable backend and says why.
func (p *Pool) noBackend(skip []*Backend) error {
	p.noneLeft.Add(1)
	return fmt.Errorf("pool %s: %w (%s)", p.name, ErrNoHealthyBackend, p.why(skip))
}
