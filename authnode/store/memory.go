// Package store keeps the auth node's one-time SSO tokens and sessions.
//
// Memory is the embedded store of a single node. Keys are opaque strings
// (the auth node passes hashes of the secrets, never the secrets); values
// are opaque bytes. A shared store for several nodes (Redis) implements the
// same methods; the operation that must be atomic across nodes is Take.
//
// A Memory store is bounded: it draws on a Budget of entries and bytes
// (several stores may share one) and refuses a Put with ErrFull rather than
// grow past it. Expiry is incremental: entries wait in buckets by expiry
// time, and each Put, and each batch of a Sweep, handles a bounded number of
// the entries that are due, so no call holds the lock over the whole store
// and no call costs more in a larger store.
package store

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// ErrNotFound means the key is unknown, was already taken, or was deleted.
var ErrNotFound = errors.New("not found")

// ErrExpired means the key existed but its time to live has passed.
var ErrExpired = errors.New("expired")

// ErrFull means the store is at its bound of entries or bytes and stored
// nothing; the caller should answer "try again later".
var ErrFull = errors.New("store full")

// Defaults of Limits: a million entries or 256 MiB, whichever comes first.
// A session of a user in 40 groups is charged about 2.3 KB, so 256 MiB
// holds some 110,000 of them.
const (
	DefaultMaxEntries = 1_000_000
	DefaultMaxBytes   = 256 << 20
)

// EntryOverhead is what an entry costs besides its key and value bytes: the
// entry record and its map slot (measured at about 110 to 145 bytes on
// amd64 with room for map growth). It is charged against Limits.MaxBytes,
// so that the bound is on memory rather than on payload, and an expired
// entry kept for its grace period (key, no value) still counts. Not
// charged: a Go map keeps the slots of its largest size (some 40 bytes per
// entry at the peak) when entries leave, and the buckets (at most
// maxBuckets per distinct ttl).
const EntryOverhead = 192

// ExpiredGrace is how long an expired entry is kept (without its value) so
// that Get and Take can still answer ErrExpired rather than ErrNotFound: an
// application is told its token came too late, not that it never existed.
// When the store is full, the oldest such entries make room for new ones.
const ExpiredGrace = 10 * time.Minute

// Work bounds: a Put takes at most putWork steps of expiry (each entry
// comes due twice, at expiry and at the end of its grace, and each bucket
// once, so four per Put keep up); Sweep takes sweepBatch steps at a time
// and lets other callers in between.
const (
	putWork    = 4
	sweepBatch = 1024
)

// maxTTL is the longest ttl kept; a longer one is cut to it.
const maxTTL = 100 * 365 * 24 * time.Hour

// Limits bound a Budget. Zero fields take the defaults.
type Limits struct {
	// MaxEntries bounds the entries held, expired ones in their grace
	// included (default DefaultMaxEntries).
	MaxEntries int
	// MaxBytes bounds the keys, values and EntryOverhead per entry
	// (default DefaultMaxBytes).
	MaxBytes int64
}

// Budget is a bound on entries and bytes that one or more Memory stores
// draw on; the auth node's token and session stores share one. It is safe
// for concurrent use.
type Budget struct {
	mu      sync.Mutex
	lim     Limits
	entries int
	bytes   int64
}

// NewBudget returns a Budget for lim, with defaults for its zero fields.
func NewBudget(lim Limits) *Budget {
	if lim.MaxEntries <= 0 {
		lim.MaxEntries = DefaultMaxEntries
	}
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultMaxBytes
	}
	return &Budget{lim: lim}
}

// Limits returns the budget's bounds, defaults applied.
func (b *Budget) Limits() Limits {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lim
}

// SetLimits replaces the bounds (defaults for zero fields), for a
// configuration reload. Entries held stay; when they exceed the new bounds,
// new ones are refused until enough have gone.
func (b *Budget) SetLimits(lim Limits) {
	if lim.MaxEntries <= 0 {
		lim.MaxEntries = DefaultMaxEntries
	}
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultMaxBytes
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lim = lim
}

// Entries returns the entries charged to the budget.
func (b *Budget) Entries() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.entries
}

// Bytes returns the bytes charged to the budget.
func (b *Budget) Bytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bytes
}

// charge adds entries and bytes (either may be negative) if the result
// stays within the limits, and says whether it did. Giving back always
// succeeds.
func (b *Budget) charge(entries int, bytes int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if entries > 0 && b.entries+entries > b.lim.MaxEntries || bytes > 0 && b.bytes+bytes > b.lim.MaxBytes {
		return false
	}
	b.entries += entries
	b.bytes += bytes
	return true
}

// Options configure a Memory store.
type Options struct {
	// Now is the store's clock; nil means time.Now.
	Now func() time.Time
	// Budget bounds the store; nil means a budget of its own with the
	// default Limits.
	Budget *Budget
}

// Memory is an in-process store whose entries expire. The zero value is not
// usable; call NewMemory.
type Memory struct {
	now    func() time.Time
	base   time.Time // times are kept as offsets from base: 8 bytes, monotonic
	budget *Budget

	mu      sync.Mutex
	entries map[string]*entry
	buckets map[time.Duration]*bucket // live entries by the time they are checked
	due     bucketHeap                // the same buckets, the earliest first
	grace   list                      // expired entries in their grace, oldest first
	bytes   int64                     // charged to the budget by this store
	expired uint64                    // entries that expired without being taken or deleted
}

// entry is one key. It is live (in a bucket's list) or expired and in its
// grace (in Memory.grace, without its value).
type entry struct {
	key        string
	value      []byte
	expires    time.Duration // since Memory.base
	list       *list         // the list it is in
	prev, next *entry
}

func (e *entry) cost() int64 { return EntryOverhead + int64(len(e.key)+len(e.value)) }

// A bucket holds the live entries that expire by its time at. Each entry
// joins the bucket of its expiry rounded up to a width that keeps any one
// ttl within maxBuckets buckets (1 s for a token's minute, 8 s for an
// 8-hour session), so adding or removing an entry costs the same in a
// store of any size, and expiry visits buckets in order.
type bucket struct {
	at time.Duration
	list
}

// maxBuckets bounds the buckets one ttl spreads its entries over.
const maxBuckets = 4096

// bucketTime is the time of the bucket an entry expiring at expires
// (after a ttl) joins: expires rounded up to the ttl's width.
func bucketTime(expires, ttl time.Duration) time.Duration {
	w := time.Second
	for ttl/w > maxBuckets {
		w *= 2
	}
	r := expires % w
	if r < 0 {
		r += w
	}
	if r == 0 {
		return expires
	}
	return expires - r + w
}

// NewMemory returns an empty store.
func NewMemory(opts Options) *Memory {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Budget == nil {
		opts.Budget = NewBudget(Limits{})
	}
	return &Memory{
		now: opts.Now, base: opts.Now(), budget: opts.Budget,
		entries: make(map[string]*entry), buckets: make(map[time.Duration]*bucket),
	}
}

func (m *Memory) clock() time.Duration { return m.now().Sub(m.base) }

// Put stores value under key until ttl passes, replacing any earlier value.
// It keeps value itself, not a copy (a login's token record is tens of
// kilobytes for a user in many groups): the caller must not change value
// afterwards. It returns an error wrapping ErrFull, and stores nothing,
// when the budget has no room even after dropping expired entries in their
// grace.
func (m *Memory) Put(_ context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("store put: ttl must be positive")
	}
	// Forever, without overflowing the expiry time.
	ttl = min(ttl, maxTTL)
	cost := EntryOverhead + int64(len(key)+len(value))
	if lim := m.budget.Limits(); cost > lim.MaxBytes {
		return fmt.Errorf("store put: an entry of %d bytes exceeds the store's %d: %w", cost, lim.MaxBytes, ErrFull)
	}
	v := value
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock()
	m.reclaimLocked(now, putWork)
	old := m.entries[key]
	if old != nil && old.list == &m.grace {
		// An expired key being reused: its grace ends here.
		m.removeLocked(old)
		old = nil
	}
	entries, bytes := 1, cost
	if old != nil {
		entries, bytes = 0, cost-old.cost()
	}
	// Each grace entry dropped gives back an entry and at least
	// EntryOverhead bytes, so this runs at most len(value)/EntryOverhead+2
	// times (unless a store sharing the budget fills it meanwhile), and
	// never more than the grace list is long.
	for !m.budget.charge(entries, bytes) {
		if m.grace.head == nil {
			lim := m.budget.Limits()
			return fmt.Errorf("store put: at most %d entries and %d bytes: %w", lim.MaxEntries, lim.MaxBytes, ErrFull)
		}
		m.removeLocked(m.grace.head)
	}
	m.bytes += bytes
	e := old
	if e != nil {
		e.list.remove(e)
	} else {
		// Cloned so that the entry cannot pin a larger string of the caller's.
		e = &entry{key: strings.Clone(key)}
		m.entries[e.key] = e
	}
	e.value, e.expires = v, now+ttl
	m.bucketLocked(bucketTime(e.expires, ttl)).pushBack(e)
	return nil
}

// bucketLocked returns the bucket of time at, made if need be.
func (m *Memory) bucketLocked(at time.Duration) *bucket {
	b, ok := m.buckets[at]
	if !ok {
		b = &bucket{at: at}
		m.buckets[at] = b
		heap.Push(&m.due, b)
	}
	return b
}

// liveLocked returns the entry under key if it has not expired. An expired
// one answers ErrExpired and is left for reclaimLocked, which moves entries
// to their grace in order of expiry.
func (m *Memory) liveLocked(key string) (*entry, error) {
	e, ok := m.entries[key]
	if !ok {
		return nil, ErrNotFound
	}
	if e.list == &m.grace || e.expires <= m.clock() {
		return nil, ErrExpired
	}
	return e, nil
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
	v := e.value
	m.removeLocked(e)
	return v, nil
}

// Delete removes key; deleting a missing key is not an error.
func (m *Memory) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[key]; ok {
		m.removeLocked(e)
	}
	return nil
}

// Sweep moves newly expired entries to their grace, drops those whose grace
// has ended, and returns how many entries expired unused (never taken or
// deleted in time) since the previous call to Sweep. It works in batches,
// releasing the lock between them, so Get and Take are not held up by a
// large store.
func (m *Memory) Sweep() uint64 {
	now := m.clock()
	for {
		m.mu.Lock()
		done := m.reclaimLocked(now, sweepBatch)
		m.mu.Unlock()
		if done < sweepBatch {
			break
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
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

// Bytes returns the bytes this store charges to its budget.
func (m *Memory) Bytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes
}

// Budget returns the budget the store draws on.
func (m *Memory) Budget() *Budget { return m.budget }

// reclaimLocked takes up to max steps of expiry due at now: an entry past
// its grace is removed, a live entry in a bucket that is due goes to its
// grace (counted, value dropped), an emptied bucket is dropped. It returns
// the steps taken.
func (m *Memory) reclaimLocked(now time.Duration, max int) int {
	done := 0
	for ; done < max; done++ {
		if g := m.grace.head; g != nil && g.expires+ExpiredGrace <= now {
			m.removeLocked(g)
			continue
		}
		if len(m.due) == 0 || m.due[0].at > now {
			break
		}
		b := m.due[0]
		e := b.head
		if e == nil {
			heap.Pop(&m.due)
			delete(m.buckets, b.at)
			continue
		}
		// A bucket's entries expire by its time, so all are due.
		b.remove(e)
		m.expired++
		m.give(0, int64(len(e.value)))
		e.value = nil
		m.grace.pushBack(e)
	}
	return done
}

// removeLocked forgets e, live or in its grace, and gives back its cost.
// An emptied bucket stays until it is due, so that removal costs O(1).
func (m *Memory) removeLocked(e *entry) {
	e.list.remove(e)
	delete(m.entries, e.key)
	m.give(1, e.cost())
}

func (m *Memory) give(entries int, bytes int64) {
	m.bytes -= bytes
	m.budget.charge(-entries, -bytes)
}

// list is a doubly linked list of entries.
type list struct{ head, tail *entry }

func (l *list) pushBack(e *entry) {
	e.list, e.prev, e.next = l, l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
}

func (l *list) remove(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.list, e.prev, e.next = nil, nil, nil
}

// bucketHeap is a min-heap of buckets by time (container/heap).
type bucketHeap []*bucket

func (h bucketHeap) Len() int           { return len(h) }
func (h bucketHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h bucketHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *bucketHeap) Push(x any)        { *h = append(*h, x.(*bucket)) }
func (h *bucketHeap) Pop() any {
	old := *h
	b := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return b
}
