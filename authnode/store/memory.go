// Package store keeps the auth node's one-time SSO tokens and sessions.
//
// Memory is the embedded store of a single node. Keys are opaque strings
// (the auth node passes hashes of the secrets, never the secrets); values
// are opaque bytes. A shared store for several nodes (Redis) implements the
// same methods; the operation that must be atomic across nodes is Take.
package store

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrNotFound means the key is unknown, was already taken, or was deleted.
var ErrNotFound = errors.New("not found")

// ErrExpired means the key existed but its time to live has passed.
var ErrExpired = errors.New("expired")

// Memory is an in-process store whose entries expire. The zero value is not
// usable; call NewMemory.
type Memory struct {
	now func() time.Time

	mu        sync.Mutex
	entries   map[string]entry
	lastSweep time.Time
	expired   uint64 // entries that expired without being taken or deleted
}

type entry struct {
	value   []byte
	expires time.Time
	counted bool // its expiry has been counted
}

// sweepEvery bounds how often Put scans for expired entries, so the map
// cannot grow without bound between explicit Sweep calls.
const sweepEvery = 10 * time.Second

// ExpiredGrace is how long an expired entry is kept (without its value) so
// that Get and Take can still answer ErrExpired rather than ErrNotFound: an
// application is told its token came too late, not that it never existed.
const ExpiredGrace = 10 * time.Minute

// NewMemory returns an empty store. now may be nil (time.Now).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, entries: make(map[string]entry), lastSweep: now()}
}

// Put stores value under key until ttl passes, replacing any earlier value.
func (m *Memory) Put(_ context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("store put: ttl must be positive")
	}
	now := m.now()
	v := append([]byte(nil), value...)
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.lastSweep) >= sweepEvery {
		m.sweepLocked(now)
	}
	m.entries[key] = entry{value: v, expires: now.Add(ttl)}
	return nil
}

// liveLocked returns the entry under key if it has not expired; an expired
// one is counted and answers ErrExpired.
func (m *Memory) liveLocked(key string) (entry, error) {
	e, ok := m.entries[key]
	if !ok {
		return entry{}, ErrNotFound
	}
	if !m.now().Before(e.expires) {
		m.expire(key, e)
		return entry{}, ErrExpired
	}
	return e, nil
}

// expire marks e, expired, as counted and drops its value.
func (m *Memory) expire(key string, e entry) {
	if !e.counted {
		m.expired++
		m.entries[key] = entry{expires: e.expires, counted: true}
	}
}

// Get returns the value under key without removing it.
func (m *Memory) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.liveLocked(key)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), e.value...), nil
}

// Take removes the value under key and returns it. Of any number of
// concurrent Takes of one key, exactly one gets the value.
func (m *Memory) Take(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.liveLocked(key)
	if err != nil {
		return nil, err
	}
	delete(m.entries, key)
	return e.value, nil
}

// Delete removes key; deleting a missing key is not an error.
func (m *Memory) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	delete(m.entries, key)
	m.mu.Unlock()
	return nil
}

// Sweep counts newly expired entries, drops those expired more than
// ExpiredGrace ago, and returns how many entries expired unused (never
// taken or deleted in time) since the previous call to Sweep.
func (m *Memory) Sweep() uint64 {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweepLocked(now)
	n := m.expired
	m.expired = 0
	return n
}

// Len returns the number of entries held, expired ones within their grace
// included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

func (m *Memory) sweepLocked(now time.Time) {
	for k, e := range m.entries {
		switch {
		case !now.Before(e.expires.Add(ExpiredGrace)):
			if !e.counted {
				m.expired++
			}
			delete(m.entries, k)
		case !now.Before(e.expires):
			m.expire(k, e)
		}
	}
	m.lastSweep = now
}
