package negotiate

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Unix(1700000000, 0)

func rk(client string, i int) replayKey {
	return replayKey{client: client, ctime: 1700000000, cusec: int32(i), key: 1}
}

// mustInsert inserts and fails the test unless the result is want.
func mustInsert(t *testing.T, c *replayCache, k replayKey, now, until time.Time, want replayResult) time.Duration {
	t.Helper()
	res, retry := c.insert(k, now, until)
	if res != want {
		t.Fatalf("insert %s/%d at +%s: result %d, want %d", k.client, k.cusec, now.Sub(t0), res, want)
	}
	checkInvariants(t, c)
	return retry
}

// checkInvariants verifies the cache's bookkeeping: counts, bounds, the
// eviction list and both heaps.
func checkInvariants(t *testing.T, c *replayCache) {
	t.Helper()
	total := 0
	for id, ce := range c.byID {
		if ce.id != id || len(ce.entries) == 0 || len(ce.entries) > c.quota {
			t.Fatalf("client %s: id %s, %d entries (quota %d)", id, ce.id, len(ce.entries), c.quota)
		}
		if c.clients[ce.pos] != ce {
			t.Fatalf("client %s: heap position %d is wrong", id, ce.pos)
		}
		if (len(ce.entries) == c.quota) != (ce.fullPos >= 0) || ce.fullPos >= 0 && c.full[ce.fullPos] != ce {
			t.Fatalf("client %s with %d entries: fullPos %d", id, len(ce.entries), ce.fullPos)
		}
		for i := range ce.entries {
			e := ce.entries[i]
			if _, ok := c.seen[replayKey{client: id, ctime: e.ctime, cusec: e.cusec, key: e.key}]; !ok {
				t.Fatalf("client %s: entry %d not in seen", id, i)
			}
			if i > 0 && ce.entries.Less(i, (i-1)/2) {
				t.Fatalf("client %s: entry heap out of order", id)
			}
		}
		total += len(ce.entries)
	}
	for i := 1; i < len(c.clients); i++ {
		if c.clients.Less(i, (i-1)/2) {
			t.Fatal("client heap out of order")
		}
	}
	if total != c.n || len(c.seen) != c.n || len(c.clients) != len(c.byID) || c.n > c.max {
		t.Fatalf("n %d, entries %d, seen %d, clients %d/%d, max %d", c.n, total, len(c.seen), len(c.clients), len(c.byID), c.max)
	}
}

func TestReplayCacheExpiry(t *testing.T) {
	c := newReplayCache(10, 10)
	k := rk("alice", 0)
	until := t0.Add(5 * time.Minute)
	mustInsert(t, c, k, t0, until, recorded)
	mustInsert(t, c, k, t0.Add(4*time.Minute), until, replayed)
	// Another service's key: not the same authenticator use.
	k2 := k
	k2.key = 2
	mustInsert(t, c, k2, t0, until, recorded)
	// The authenticator is acceptable through until, so it is remembered
	// through until; after it, it can no longer be accepted anyway.
	mustInsert(t, c, k, until, until, replayed)
	mustInsert(t, c, k, until.Add(time.Nanosecond), until.Add(time.Minute), recorded)
	if live, _ := c.stats(); live != 1 {
		t.Fatalf("after expiry the cache holds %d entries, want 1 (the re-inserted one)", live)
	}
}

func TestReplayCacheQuota(t *testing.T) {
	c := newReplayCache(100, 3)
	for i := range 3 {
		mustInsert(t, c, rk("alice", i), t0, t0.Add(time.Duration(i+1)*time.Minute), recorded)
	}
	// alice is at her quota: refused until her oldest entry expires.
	retry := mustInsert(t, c, rk("alice", 3), t0.Add(10*time.Second), t0.Add(5*time.Minute), overQuota)
	if retry != 50*time.Second {
		t.Fatalf("retry after %s, want 50s (when her oldest entry expires)", retry)
	}
	// A replay is still a replay, over quota or not.
	mustInsert(t, c, rk("alice", 1), t0.Add(10*time.Second), t0.Add(2*time.Minute), replayed)
	// Nobody else is affected.
	mustInsert(t, c, rk("bob", 0), t0.Add(10*time.Second), t0.Add(5*time.Minute), recorded)
	// Once her oldest entry has expired she may log in again.
	mustInsert(t, c, rk("alice", 3), t0.Add(61*time.Second), t0.Add(5*time.Minute), recorded)
	mustInsert(t, c, rk("alice", 4), t0.Add(61*time.Second), t0.Add(5*time.Minute), overQuota)
}

// TestReplayCacheFullEvictsOnlyClientsAtQuota: at the global bound, room is
// made by evicting an entry of a client at its quota, never one of a client
// under it (which would let that authenticator be replayed).
func TestReplayCacheFullEvictsOnlyClientsAtQuota(t *testing.T) {
	c := newReplayCache(8, 3)
	until := t0.Add(5 * time.Minute)
	for _, cl := range []string{"flood1", "flood2"} {
		for i := range 3 {
			// The first entry expires soonest: it is the one to evict.
			mustInsert(t, c, rk(cl, i), t0, until.Add(time.Duration(i)*time.Second), recorded)
		}
	}
	mustInsert(t, c, rk("carol", 0), t0, until, recorded)
	mustInsert(t, c, rk("carol", 1), t0, until, recorded) // 8: full
	mustInsert(t, c, rk("dave", 0), t0, until, recorded)
	mustInsert(t, c, rk("erin", 0), t0, until, recorded)
	for _, k := range []replayKey{rk("carol", 0), rk("carol", 1), rk("dave", 0), rk("erin", 0)} {
		mustInsert(t, c, k, t0, until, replayed)
	}
	// Each flooder lost its soonest entry, and only that one.
	for _, cl := range []string{"flood1", "flood2"} {
		mustInsert(t, c, rk(cl, 1), t0, until, replayed)
		mustInsert(t, c, rk(cl, 2), t0, until, replayed)
	}
	if _, evicted := c.stats(); evicted != 2 {
		t.Fatalf("%d evictions, want 2", evicted)
	}
	// Now every client is under its quota and the cache is full of live
	// entries: refuse rather than evict.
	retry := mustInsert(t, c, rk("frank", 0), t0.Add(time.Minute), until, cacheFull)
	if retry != 4*time.Minute {
		t.Fatalf("retry after %s, want 4m", retry)
	}
	// An expired entry anywhere makes room.
	mustInsert(t, c, rk("frank", 0), until.Add(time.Nanosecond), until.Add(5*time.Minute), recorded)
}

// TestReplayCacheRefusals floods a small cache from more clients than it
// has room for at their quota, at random times, with fresh clients now and
// then: a client is refused only over its own quota, or when every entry is
// live and no client is at its quota (so none may be evicted).
func TestReplayCacheRefusals(t *testing.T) {
	const max, quota = 200, 20
	c := newReplayCache(max, quota)
	rng := rand.New(rand.NewPCG(1, 2))
	now := t0
	refusedFull := 0
	for i := range 20000 {
		now = now.Add(time.Duration(rng.IntN(50)) * time.Millisecond)
		client := fmt.Sprintf("flood%d", rng.IntN(12))
		if i%10 == 0 {
			client = fmt.Sprintf("user%d", i)
		}
		// ctime within [now-skew, now+future]: until within [now, now+5.5m].
		until := now.Add(time.Duration(rng.IntN(330)) * time.Second)
		switch res, _ := c.insert(rk(client, i), now, until); res {
		case recorded:
		case overQuota:
			if n := len(c.byID[client].entries); n != quota {
				t.Fatalf("insert %d: %s refused over quota with %d entries", i, client, n)
			}
		case cacheFull:
			refusedFull++
			if len(c.full) != 0 || c.n != max || c.clients[0].entries[0].until < now.UnixNano() {
				t.Fatalf("insert %d: %s refused as full with %d clients at quota, %d entries", i, client, len(c.full), c.n)
			}
		default:
			t.Fatalf("insert %d: result %d", i, res)
		}
		if i%97 == 0 {
			checkInvariants(t, c)
		}
	}
	checkInvariants(t, c)
	t.Logf("%d of 20000 refused as full", refusedFull)
}

// TestReplayCacheFloodDoesNotRefuseOthers: flooders stopped at their quota
// never cause another client's refusal while the cache has room for their
// quotas and the others' logins (max >= quota*flooders + others' live
// logins), which is how it is sized.
func TestReplayCacheFloodDoesNotRefuseOthers(t *testing.T) {
	const max, quota, flooders = 250, 20, 5
	c := newReplayCache(max, quota)
	rng := rand.New(rand.NewPCG(3, 4))
	now := t0
	users, floods := 0, 0
	for i := range 20000 {
		// On average 25 ms apart: a user every 2.5 s, so at most 132 live
		// user entries in the 330 s window, besides the flooders' 100.
		now = now.Add(time.Duration(rng.IntN(50)) * time.Millisecond)
		client := fmt.Sprintf("flood%d", rng.IntN(flooders))
		if i%100 == 0 {
			client = fmt.Sprintf("user%d", i)
		}
		until := now.Add(time.Duration(rng.IntN(330)) * time.Second)
		res, _ := c.insert(rk(client, i), now, until)
		switch {
		case client[:4] == "user" && res != recorded:
			t.Fatalf("insert %d: %s refused (%d) by the flood", i, client, res)
		case client[:4] == "user":
			users++
		case res == overQuota:
			floods++
		}
	}
	checkInvariants(t, c)
	if floods < 10000 {
		t.Fatalf("only %d flood inserts refused over quota: the test does not flood", floods)
	}
	t.Logf("%d users recorded, %d flood inserts refused over quota", users, floods)
}

// TestReplayCacheExpiryIsIncremental: after every entry expired at once,
// one insert removes a few of them, not all: no insert pays for a sweep of
// the whole cache. A full cache still makes room from expired entries.
func TestReplayCacheExpiryIsIncremental(t *testing.T) {
	const max = 10000
	c := newReplayCache(max, 1)
	for i := range max {
		mustInsertQuiet(t, c, rk(fmt.Sprint("u", i), 0), t0, t0.Add(time.Minute))
	}
	later := t0.Add(2 * time.Minute)
	mustInsert(t, c, rk("late", 0), later, later.Add(time.Minute), recorded)
	live, _ := c.stats()
	if live < max-sweepBatch-1 || live > max {
		t.Fatalf("one insert after a mass expiry left %d of %d entries; want at most %d removed", live, max, sweepBatch+1)
	}
	for i := range max - 1 { // with "late", max entries
		res, _ := c.insert(rk(fmt.Sprint("v", i), 0), later, later.Add(time.Minute))
		if res != recorded {
			t.Fatalf("insert %d after the mass expiry: %d", i, res)
		}
	}
	if live, evicted := c.stats(); live != max || evicted != 0 {
		t.Fatalf("%d live, %d evicted; want %d and none evicted", live, evicted, max)
	}
	checkInvariants(t, c)
}

func mustInsertQuiet(t *testing.T, c *replayCache, k replayKey, now, until time.Time) {
	t.Helper()
	if res, _ := c.insert(k, now, until); res != recorded {
		t.Fatalf("insert %s: %d", k.client, res)
	}
}

// BenchmarkReplayCacheInsert measures an insert into a full cache with a
// steady expiry.
func BenchmarkReplayCacheInsert(b *testing.B) {
	c := newReplayCache(100000, DefaultReplayQuota)
	now := t0
	for i := 0; b.Loop(); i++ {
		now = now.Add(time.Millisecond)
		c.insert(rk(fmt.Sprint("u", i%5000), i), now, now.Add(100*time.Second))
	}
}

var _ heap.Interface = (*clientHeap)(nil)
