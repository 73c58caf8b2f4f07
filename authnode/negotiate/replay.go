package negotiate

import (
	"container/heap"
	"sync"
	"time"
)

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
type replayResult int

const (
	recorded  replayResult = iota // new authenticator, now remembered
	replayed                      // already seen and still live
	overQuota                     // the client holds quota live entries
	cacheFull                     // no room without evicting a protected entry
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
