package negotiate

import (
	"container/heap"
	"context"
	"errors"
	"sync"
	"time"
)

// ErrReplayUnavailable: the shared replay cache (Options.ReplayStore) could
// not be reached, so the authenticator could not be recorded; it is refused
// rather than accepted unprotected.
var ErrReplayUnavailable = errors.New("replay cache unavailable")

// ReplayStore remembers accepted authenticators for as long as they could
// be accepted, with a quota of live ones per client. The Validator's own
// in-memory cache is one; a store shared by several nodes (Redis) makes an
// authenticator accepted at any node refused at every other.
type ReplayStore interface {
	// Record remembers k through until (the last instant it could still
	// be accepted) and says how that went at now: ReplayRecorded, or
	// ReplayReplayed when k is remembered already; ReplayOverQuota when
	// k's client has its quota of live entries, and ReplayCacheFull when
	// there is no room at all, each with how long the refusal lasts at
	// most. Nothing is recorded unless the result is ReplayRecorded. An
	// error means the store could not be asked.
	Record(ctx context.Context, k ReplayKey, now, until time.Time) (ReplayResult, time.Duration, error)
}

// ReplayKey identifies one authenticator.
type ReplayKey struct {
	// Client is the client's quota identity: its PAC's user SID, or its
	// principal name in lower case without a PAC.
	Client string
	// CTime (Unix seconds) and Cusec are the authenticator's time.
	CTime int64
	Cusec int32
	// Key names the service key that decrypted the ticket, by its
	// fingerprint: the same on every node holding the key.
	Key uint32
}

// ReplayResult is the outcome of ReplayStore.Record.
type ReplayResult int

// Outcomes of ReplayStore.Record.
const (
	ReplayRecorded  ReplayResult = iota // new authenticator, now remembered
	ReplayReplayed                      // already seen and still live
	ReplayOverQuota                     // the client holds its quota of live entries
	ReplayCacheFull                     // no room without forgetting a protected entry
)

// Record is ReplayStore.Record for the in-memory cache; it never fails.
func (c *replayCache) Record(_ context.Context, k ReplayKey, now, until time.Time) (ReplayResult, time.Duration, error) {
	res, retry := c.insert(replayKey{client: k.Client, ctime: k.CTime, cusec: k.Cusec, key: k.Key}, now, until)
	return res, retry, nil
}

// replayKey identifies one authenticator. The client is named by its quota
// identity (see quotaID), so that case variants of one account's name are
// one client. The service is named by the key that decrypted the ticket,
// not by the ticket's unencrypted sname nor by the keytab entry's name:
// every SPN of an AD account shares the account's key, so relabelling a
// captured ticket from HTTP/auth1 to HTTP/lb still decrypts, and must still
// count as the same authenticator.
type replayKey struct {
	client string // quota identity of the client
	ctime  int64  // authenticator ctime, Unix seconds
	cusec  int32
	key    uint32 // which of the keytab's distinct keys decrypted the ticket
}

// replayEntry is one recorded authenticator of a client. until (Unix
// nanoseconds) is the last instant at which the authenticator could still
// be accepted (its ctime plus the skew), so the entry is kept through it.
// It is small on purpose: the cache holds up to a million or more.
type replayEntry struct {
	until int64
	ctime int64
	cusec int32
	key   uint32
}

// entryHeap is one client's entries, soonest until first.
type entryHeap []replayEntry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].until < h[j].until }
func (h entryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *entryHeap) Push(x any)        { *h = append(*h, x.(replayEntry)) }
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// clientEntries holds one client's live authenticators: at most the quota.
type clientEntries struct {
	id      string
	entries entryHeap
	pos     int // index in replayCache.clients
	fullPos int // index in replayCache.full, -1 when under quota
}

// clientHeap orders clients by their soonest-expiring entry, so that the
// next entry to expire anywhere is found in O(1).
type clientHeap []*clientEntries

func (h clientHeap) Len() int { return len(h) }
func (h clientHeap) Less(i, j int) bool {
	return h[i].entries[0].until < h[j].entries[0].until
}
func (h clientHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *clientHeap) Push(x any) {
	c := x.(*clientEntries)
	c.pos = len(*h)
	*h = append(*h, c)
}
func (h *clientHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return c
}

// replayResult is the outcome of replayCache.insert.
type replayResult = ReplayResult

const (
	recorded  = ReplayRecorded
	replayed  = ReplayReplayed
	overQuota = ReplayOverQuota
	cacheFull = ReplayCacheFull
)

// sweepBatch is how many expired entries each insert removes besides its
// own client's: enough to keep up with any insert rate (each insert adds
// one), few enough that an insert stays O(log n) after a mass expiry.
const sweepBatch = 4

// replayCache remembers authenticators for as long as they could be
// accepted, within two bounds:
//
//   - quota: live entries per client. A client at its quota is refused
//     (overQuota) until its oldest entry expires; its flood never costs
//     another client anything.
//   - max: live entries in all, which bounds memory. When it is reached, an
//     entry of a client at its quota is evicted (the one expiring soonest)
//     to make room. Evicting a live entry would let that authenticator be
//     replayed, so entries of clients under their quota are never evicted:
//     when no client is at its quota the insert is refused (cacheFull).
//     Flooders are stopped at their quota, so that takes max/(quota-1)
//     clients each holding quota-1 live authenticators at once.
//
// Expired entries are removed incrementally: a few on every insert
// (sweepBatch), all of the inserting client's, and one more whenever the
// cache is full. Every operation is O(log n) (the inserting client's own
// clean-up, at most quota entries, is amortised: each entry goes once), so
// no goroutine and no stop-the-world sweep is needed.
type replayCache struct {
	mu        sync.Mutex
	max       int
	quota     int
	n         int // live entries in all
	seen      map[replayKey]struct{}
	byID      map[string]*clientEntries
	clients   clientHeap
	full      []*clientEntries // clients at their quota: eviction candidates
	evictions uint64
}

func newReplayCache(max, quota int) *replayCache {
	return &replayCache{
		max: max, quota: min(quota, max),
		seen: make(map[replayKey]struct{}),
		byID: make(map[string]*clientEntries),
	}
}

// insert records k through until and says how that went. For overQuota and
// cacheFull, retry is how long the entry that frees a slot still lives.
func (c *replayCache) insert(k replayKey, tnow, tuntil time.Time) (res replayResult, retry time.Duration) {
	now, until := tnow.UnixNano(), tuntil.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep(now, sweepBatch)
	ce := c.byID[k.client]
	if ce != nil {
		for len(ce.entries) > 0 && ce.entries[0].until < now {
			c.dropSoonest(ce)
		}
	}
	if _, ok := c.seen[k]; ok {
		return replayed, 0
	}
	if ce != nil && len(ce.entries) >= c.quota {
		return overQuota, time.Duration(ce.entries[0].until - now)
	}
	if c.n >= c.max {
		c.sweep(now, 1)
	}
	if c.n >= c.max {
		if len(c.full) == 0 {
			return cacheFull, time.Duration(c.clients[0].entries[0].until - now)
		}
		c.dropSoonest(c.full[len(c.full)-1])
		c.evictions++
	}
	ce = c.byID[k.client]
	isNew := ce == nil
	if isNew {
		ce = &clientEntries{id: k.client, fullPos: -1}
		c.byID[k.client] = ce
	}
	k.client = ce.id // one copy of the name for all the client's keys
	heap.Push(&ce.entries, replayEntry{until: until, ctime: k.ctime, cusec: k.cusec, key: k.key})
	if isNew {
		heap.Push(&c.clients, ce)
	} else {
		heap.Fix(&c.clients, ce.pos)
	}
	c.seen[k] = struct{}{}
	c.n++
	if len(ce.entries) == c.quota {
		ce.fullPos = len(c.full)
		c.full = append(c.full, ce)
	}
	return recorded, 0
}

// sweep drops up to most expired entries, soonest first.
func (c *replayCache) sweep(now int64, most int) {
	for i := 0; i < most && len(c.clients) > 0; i++ {
		ce := c.clients[0]
		if ce.entries[0].until >= now {
			return
		}
		c.dropSoonest(ce)
	}
}

// dropSoonest removes ce's soonest-expiring entry, and ce itself when that
// was its last.
func (c *replayCache) dropSoonest(ce *clientEntries) {
	e := heap.Pop(&ce.entries).(replayEntry)
	delete(c.seen, replayKey{client: ce.id, ctime: e.ctime, cusec: e.cusec, key: e.key})
	c.n--
	if ce.fullPos >= 0 {
		last := c.full[len(c.full)-1]
		c.full[ce.fullPos], last.fullPos = last, ce.fullPos
		c.full[len(c.full)-1] = nil
		c.full = c.full[:len(c.full)-1]
		ce.fullPos = -1
	}
	if len(ce.entries) == 0 {
		heap.Remove(&c.clients, ce.pos)
		delete(c.byID, ce.id)
		return
	}
	heap.Fix(&c.clients, ce.pos)
}

// stats returns the number of live entries and of entries evicted so far.
func (c *replayCache) stats() (live int, evicted uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, c.evictions
}

// record asks the replay store (Options.ReplayStore, else the in-memory
// cache) about k. Validate takes no context; a shared store bounds each
// call by its own timeouts.
func (v *Validator) record(k ReplayKey, now, until time.Time) (ReplayResult, time.Duration, error) {
	if v.seen != nil {
		return v.seen.Record(context.Background(), k, now, until)
	}
	return v.replay.Record(context.Background(), k, now, until)
}
