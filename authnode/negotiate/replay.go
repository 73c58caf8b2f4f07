package negotiate

import (
	"container/heap"
	"crypto/sha256"
	"sync"
	"time"
)

// replayKey identifies one authenticator. The service is named by the key
// that decrypted the ticket, not by the ticket's unencrypted sname nor by
// the keytab entry's name: every SPN of an AD account shares the account's
// key, so relabelling a captured ticket from HTTP/auth1 to HTTP/lb still
// decrypts, and must still count as the same authenticator.
type replayKey struct {
	client string // client principal name
	realm  string // client realm
	ctime  int64  // authenticator ctime, Unix seconds
	cusec  int
	key    [sha256.Size]byte // SHA-256 of the decrypting key's type and bytes
}

type replayEntry struct {
	key     replayKey
	expires time.Time
}

// expiryHeap orders entries by expiry so that expired ones are dropped in
// O(log n) each, however they were inserted.
type expiryHeap []replayEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(replayEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// replayCache remembers authenticators for as long as they could be
// accepted. It is bounded: when it is full of entries that have not expired
// it refuses new ones (errCacheFull) instead of evicting, because evicting a
// live entry would let that authenticator be replayed. Expired entries are
// swept lazily on insert, so no goroutine is needed.
type replayCache struct {
	mu       sync.Mutex
	max      int
	seen     map[replayKey]time.Time
	byExpiry expiryHeap
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[replayKey]time.Time)}
}

// insert records k until expires. It returns seen=true if k is already
// present (a replay) and full=true if k could not be recorded.
func (c *replayCache) insert(k replayKey, now, expires time.Time) (seen, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.byExpiry) > 0 && !c.byExpiry[0].expires.After(now) {
		e := heap.Pop(&c.byExpiry).(replayEntry)
		delete(c.seen, e.key)
	}
	if _, ok := c.seen[k]; ok {
		return true, false
	}
	if len(c.seen) >= c.max {
		return false, true
	}
	c.seen[k] = expires
	heap.Push(&c.byExpiry, replayEntry{key: k, expires: expires})
	return false, false
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
