package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock               { return &clock{t: time.Unix(1_700_000_000, 0)} }
func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// key is a store key of the length the auth node uses (a hex SHA-256).
func key(i int) string { return fmt.Sprintf("%064d", i) }

// checkInvariants compares what m charges with what it holds, and its
// buckets and grace list with its map.
func checkInvariants(t *testing.T, m *Memory) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	var bytes int64
	for k, e := range m.entries {
		if e.key != k {
			t.Fatalf("entry under %q names %q", k, e.key)
		}
		bytes += e.cost()
	}
	if bytes != m.bytes {
		t.Fatalf("store charges %d bytes, holds %d", m.bytes, bytes)
	}
	listed := 0
	walk := func(l *list, check func(*entry)) {
		var prev *entry
		for e := l.head; e != nil; prev, e = e, e.next {
			if e.list != l || e.prev != prev || m.entries[e.key] != e {
				t.Fatalf("entry %q is not where its links say", e.key)
			}
			check(e)
			listed++
		}
		if l.tail != prev {
			t.Fatal("a list's tail is not its last entry")
		}
	}
	walk(&m.grace, func(e *entry) {
		if e.value != nil {
			t.Fatalf("entry %q in its grace keeps %d value bytes", e.key, len(e.value))
		}
	})
	if len(m.due) != len(m.buckets) {
		t.Fatalf("%d buckets in the heap, %d in the map", len(m.due), len(m.buckets))
	}
	for i, b := range m.due {
		if m.buckets[b.at] != b {
			t.Fatalf("bucket %v in the heap is not the map's", b.at)
		}
		if p := (i - 1) / 2; i > 0 && m.due[p].at > b.at {
			t.Fatalf("bucket heap out of order at %d", i)
		}
		walk(&b.list, func(e *entry) {
			if e.expires > b.at {
				t.Fatalf("entry %q expires at %v, after its bucket's %v", e.key, e.expires, b.at)
			}
		})
	}
	if listed != len(m.entries) {
		t.Fatalf("%d entries in lists, %d in the map", listed, len(m.entries))
	}
}

func TestMemoryTakeOnce(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(Options{})
	if err := m.Put(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	v, err := m.Take(ctx, "k")
	if err != nil || string(v) != "v" {
		t.Fatalf("first Take = %q, %v; want v, nil", v, err)
	}
	if _, err := m.Take(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Take err = %v; want ErrNotFound", err)
	}
	if b := m.Budget(); b.Entries() != 0 || b.Bytes() != 0 {
		t.Fatalf("budget after Take: %d entries, %d bytes; want all given back", b.Entries(), b.Bytes())
	}
}

func TestMemoryConcurrentTakeExactlyOneWins(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(Options{})
	if err := m.Put(ctx, "token", []byte("identity"), time.Minute); err != nil {
		t.Fatal(err)
	}
	var wins, losses atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := m.Take(ctx, "token"); err == nil {
				wins.Add(1)
			} else if errors.Is(err, ErrNotFound) {
				losses.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 || losses.Load() != 99 {
		t.Fatalf("wins=%d losses=%d; want exactly 1 and 99", wins.Load(), losses.Load())
	}
}

func TestMemoryExpiry(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := NewMemory(Options{Now: c.now})
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := m.Put(ctx, k, []byte(k), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Get(ctx, "a"); err != nil {
		t.Fatalf("Get before expiry: %v", err)
	}
	if err := m.Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Take(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	c.add(time.Minute)
	if _, err := m.Get(ctx, "a"); !errors.Is(err, ErrExpired) {
		t.Fatalf("Get after ttl err = %v; want ErrExpired", err)
	}
	if _, err := m.Take(ctx, "a"); !errors.Is(err, ErrExpired) {
		t.Fatalf("Take after ttl err = %v; want ErrExpired", err)
	}
	// "a" and "b" expired unused; "c" was deleted and "d" taken in time.
	if n := m.Sweep(); n != 2 {
		t.Fatalf("Sweep counted %d expired; want 2", n)
	}
	// Within the grace an expired key still says so, even after a sweep
	// and whatever else happens meanwhile.
	c.add(ExpiredGrace - time.Second)
	_ = m.Put(ctx, "e", nil, time.Hour)
	if _, err := m.Take(ctx, "b"); !errors.Is(err, ErrExpired) {
		t.Fatalf("Take of an expired key after a sweep: %v; want ErrExpired", err)
	}
	if n := m.Sweep(); n != 0 {
		t.Fatalf("second Sweep counted %d; want 0 (each expiry counts once)", n)
	}
	// An expired entry keeps its key, not its value.
	if got, want := m.Bytes(), 2*(EntryOverhead+1)+EntryOverhead+1; got != int64(want) {
		t.Fatalf("Bytes with two keys in their grace and one live = %d, want %d", got, want)
	}
	c.add(time.Second)
	m.Sweep()
	if _, err := m.Take(ctx, "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Take after the grace: %v; want ErrNotFound", err)
	}
	if n := m.Len(); n != 1 {
		t.Fatalf("Len after the grace = %d; want 1 (the live entry)", n)
	}
	checkInvariants(t, m)
}

// TestMemoryExpiryIsIncremental: when a thousand entries are due at once, a
// Put handles only a few of them, yet Puts alone keep up with expiry, and a
// Sweep collects the rest.
func TestMemoryExpiryIsIncremental(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := NewMemory(Options{Now: c.now})
	const n = 1000
	for i := range n {
		_ = m.Put(ctx, key(i), []byte("value"), time.Second)
	}
	c.add(ExpiredGrace + time.Minute)
	_ = m.Put(ctx, "fresh", nil, time.Hour)
	if got := m.Len(); got < n+1-putWork {
		t.Fatalf("one Put dropped %d expired entries; want at most %d", n+1-got, putWork)
	}
	// Each entry comes due twice (expiry, end of grace): n/2 Puts of
	// putWork steps handle them all.
	for i := range n / 2 {
		_ = m.Put(ctx, "more"+strconv.Itoa(i), nil, time.Hour)
	}
	if got := m.Len(); got != 1+n/2 {
		t.Fatalf("after %d more Puts, Len = %d; want only the %d live entries", n/2, got, 1+n/2)
	}
	if got := m.Sweep(); got != n {
		t.Fatalf("Sweep counted %d expired; want %d", got, n)
	}
	checkInvariants(t, m)

	// A Sweep alone handles any number of due entries.
	for i := range 3 * sweepBatch {
		_ = m.Put(ctx, key(i), []byte("value"), time.Second)
	}
	c.add(time.Second)
	if got := m.Sweep(); got != 3*sweepBatch {
		t.Fatalf("Sweep counted %d expired; want %d", got, 3*sweepBatch)
	}
	c.add(ExpiredGrace)
	m.Sweep()
	if got := m.Len(); got != 1+n/2 {
		t.Fatalf("after the grace Len = %d; want %d", got, 1+n/2)
	}
	checkInvariants(t, m)
}

func TestMemoryRefusesBeyondItsBounds(t *testing.T) {
	ctx := context.Background()
	value := make([]byte, 100)
	t.Run("entries", func(t *testing.T) {
		m := NewMemory(Options{Budget: NewBudget(Limits{MaxEntries: 10})})
		for i := range 10 {
			if err := m.Put(ctx, key(i), value, time.Hour); err != nil {
				t.Fatalf("Put %d: %v", i, err)
			}
		}
		err := m.Put(ctx, key(10), value, time.Hour)
		if !errors.Is(err, ErrFull) {
			t.Fatalf("Put beyond 10 entries: %v; want ErrFull", err)
		}
		if _, err := m.Get(ctx, key(10)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a refused Put stored something: %v", err)
		}
		// Replacing a key takes no new entry.
		if err := m.Put(ctx, key(3), []byte("new"), time.Hour); err != nil {
			t.Fatalf("replacing a key in a full store: %v", err)
		}
		if _, err := m.Take(ctx, key(0)); err != nil {
			t.Fatal(err)
		}
		if err := m.Put(ctx, key(10), value, time.Hour); err != nil {
			t.Fatalf("Put after a Take made room: %v", err)
		}
		checkInvariants(t, m)
	})
	t.Run("bytes", func(t *testing.T) {
		per := int64(EntryOverhead + 64 + len(value))
		m := NewMemory(Options{Budget: NewBudget(Limits{MaxBytes: 3*per + per/2})})
		for i := range 3 {
			if err := m.Put(ctx, key(i), value, time.Hour); err != nil {
				t.Fatalf("Put %d: %v", i, err)
			}
		}
		if err := m.Put(ctx, key(3), value, time.Hour); !errors.Is(err, ErrFull) {
			t.Fatalf("Put beyond the byte bound: %v; want ErrFull", err)
		}
		// A larger value under an existing key needs the difference only.
		if err := m.Put(ctx, key(0), make([]byte, len(value)+int(per/2)), time.Hour); err != nil {
			t.Fatalf("growing a value within the bound: %v", err)
		}
		if err := m.Put(ctx, key(1), make([]byte, len(value)+int(per/2)), time.Hour); !errors.Is(err, ErrFull) {
			t.Fatalf("growing a value beyond the bound: %v; want ErrFull", err)
		}
		if v, err := m.Get(ctx, key(1)); err != nil || len(v) != len(value) {
			t.Fatalf("a refused replacement changed the old value: %d bytes, %v", len(v), err)
		}
		if err := m.Put(ctx, "huge", make([]byte, 4*per), time.Hour); !errors.Is(err, ErrFull) {
			t.Fatalf("a value larger than the whole store: %v; want ErrFull", err)
		}
		if got, max := m.Budget().Bytes(), m.Budget().Limits().MaxBytes; got > max {
			t.Fatalf("budget holds %d bytes, more than its %d", got, max)
		}
		checkInvariants(t, m)
	})
	t.Run("shared", func(t *testing.T) {
		b := NewBudget(Limits{MaxEntries: 4})
		tokens, sessions := NewMemory(Options{Budget: b}), NewMemory(Options{Budget: b})
		for i := range 3 {
			if err := sessions.Put(ctx, key(i), value, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if err := tokens.Put(ctx, key(0), value, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := tokens.Put(ctx, key(1), value, time.Hour); !errors.Is(err, ErrFull) {
			t.Fatalf("Put beyond a shared budget: %v; want ErrFull", err)
		}
		_ = sessions.Delete(ctx, key(0))
		if err := tokens.Put(ctx, key(1), value, time.Hour); err != nil {
			t.Fatalf("Put after the other store gave back an entry: %v", err)
		}
	})
}

// TestMemoryGraceEntriesCountAndGiveWay: expired keys kept for their grace
// count toward the bound, cost no value bytes, and are the first to go when
// a live entry needs the room.
func TestMemoryGraceEntriesCountAndGiveWay(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := NewMemory(Options{Now: c.now, Budget: NewBudget(Limits{MaxEntries: 3})})
	for _, k := range []string{"a", "b", "c"} {
		_ = m.Put(ctx, k, make([]byte, 1000), time.Minute)
		c.add(time.Second)
	}
	c.add(time.Minute)
	if n := m.Sweep(); n != 3 {
		t.Fatalf("Sweep counted %d expired; want 3", n)
	}
	if got, want := m.Budget().Entries(), 3; got != want {
		t.Fatalf("budget entries with 3 keys in their grace = %d, want %d", got, want)
	}
	if got, want := m.Bytes(), int64(3*(EntryOverhead+1)); got != want {
		t.Fatalf("bytes of 3 keys in their grace = %d, want %d (no values)", got, want)
	}
	if err := m.Put(ctx, "d", []byte("live"), time.Hour); err != nil {
		t.Fatalf("Put into a store full of expired keys: %v", err)
	}
	if _, err := m.Take(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the oldest expired key after it gave way: %v; want ErrNotFound", err)
	}
	for _, k := range []string{"b", "c"} {
		if _, err := m.Take(ctx, k); !errors.Is(err, ErrExpired) {
			t.Fatalf("Take %s: %v; want ErrExpired (still in its grace)", k, err)
		}
	}
	// Reusing a key in its grace replaces it.
	if err := m.Put(ctx, "b", []byte("again"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if v, err := m.Get(ctx, "b"); err != nil || string(v) != "again" {
		t.Fatalf("Get of a reused key: %q, %v", v, err)
	}
	if err := m.Put(ctx, "e", nil, time.Hour); err != nil {
		t.Fatalf("Put with one key in its grace left to give way: %v", err)
	}
	if err := m.Put(ctx, "f", nil, time.Hour); !errors.Is(err, ErrFull) {
		t.Fatalf("Put with only live entries at the bound: %v; want ErrFull", err)
	}
	checkInvariants(t, m)
}

// TestMemoryConcurrentUseKeepsItsAccounts runs Put, Get, Take, Delete and
// Sweep from many goroutines on two stores sharing a small budget while
// the clock moves, then checks that the bound held throughout and that
// every entry and byte is accounted for.
func TestMemoryConcurrentUseKeepsItsAccounts(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	b := NewBudget(Limits{MaxEntries: 50, MaxBytes: 50 * (EntryOverhead + 64 + 50)})
	stores := []*Memory{NewMemory(Options{Now: c.now, Budget: b}), NewMemory(Options{Now: c.now, Budget: b})}
	var full, over atomic.Int64
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // the clock and a watcher of the bound
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.add(time.Second)
			if b.Entries() > b.Limits().MaxEntries || b.Bytes() > b.Limits().MaxBytes {
				over.Add(1)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 3000 {
				m := stores[r.IntN(2)]
				k := key(r.IntN(400))
				switch op := r.IntN(10); {
				case op < 5:
					err := m.Put(ctx, k, make([]byte, r.IntN(100)), time.Duration(60+r.IntN(600))*time.Second)
					if errors.Is(err, ErrFull) {
						full.Add(1)
					} else if err != nil {
						t.Error(err)
						return
					}
				case op < 7:
					_, _ = m.Get(ctx, k)
				case op < 8:
					_, _ = m.Take(ctx, k)
				case op < 9:
					_ = m.Delete(ctx, k)
				default:
					m.Sweep()
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	if over.Load() > 0 {
		t.Fatalf("the budget was exceeded %d times", over.Load())
	}
	t.Logf("%d Puts refused at the bound", full.Load())
	if full.Load() == 0 {
		t.Fatal("no Put was refused; the test did not reach the bound")
	}
	var entries int
	var bytes int64
	for _, m := range stores {
		checkInvariants(t, m)
		entries += m.Len()
		bytes += m.Bytes()
	}
	if entries != b.Entries() || bytes != b.Bytes() {
		t.Fatalf("stores hold %d entries and %d bytes; the budget says %d and %d", entries, bytes, b.Entries(), b.Bytes())
	}
	c.add(11*time.Minute + ExpiredGrace)
	for _, m := range stores {
		m.Sweep()
	}
	if b.Entries() != 0 || b.Bytes() != 0 {
		t.Fatalf("after every entry's grace the budget holds %d entries and %d bytes; want 0", b.Entries(), b.Bytes())
	}
}

func TestMemoryTTLs(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(Options{})
	if err := m.Put(ctx, "k", nil, 0); err == nil {
		t.Fatal("Put with ttl 0 succeeded; want an error")
	}
	if err := m.Put(ctx, "forever", []byte("v"), math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(ctx, "forever"); err != nil {
		t.Fatalf("Get of an entry with the longest ttl: %v", err)
	}
}

// BenchmarkMemory shows that Put, Get and Take cost the same in a store of
// a thousand entries and in one of a million:
//
//	go test -run '^$' -bench Memory -benchmem ./authnode/store/
func BenchmarkMemory(b *testing.B) {
	ctx := context.Background()
	value := make([]byte, 200)
	for _, size := range []int{1_000, 1_000_000} {
		m := NewMemory(Options{Budget: NewBudget(Limits{MaxEntries: 2 * size, MaxBytes: 1 << 40})})
		keys := make([]string, size)
		for i := range keys {
			keys[i] = key(i)
			// Spread expiries so that the heap is not degenerate.
			_ = m.Put(ctx, keys[i], value, time.Hour+time.Duration(i)*time.Millisecond)
		}
		name := func(op string) string { return fmt.Sprintf("%s/size=%d", op, size) }
		b.Run(name("Get"), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := m.Get(ctx, keys[i*7919%size]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name("TakePut"), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				k := keys[i*7919%size]
				if _, err := m.Take(ctx, k); err != nil {
					b.Fatal(err)
				}
				if err := m.Put(ctx, k, value, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name("PutNew"), func(b *testing.B) {
			// A new key each time, and one deleted, so the size holds.
			buf := make([]byte, 0, 64)
			for i := 0; b.Loop(); i++ {
				k := string(strconv.AppendInt(append(buf[:0], "new-"...), int64(i), 10))
				if err := m.Put(ctx, k, value, time.Hour); err != nil {
					b.Fatal(err)
				}
				_ = m.Delete(ctx, k)
			}
		})
	}
}

// BenchmarkMapBaseline is a bare Go map under a mutex at the same sizes
// and access pattern as BenchmarkMemory: what a larger store costs on
// this machine's caches alone, without expiry or accounting.
func BenchmarkMapBaseline(b *testing.B) {
	value := make([]byte, 200)
	for _, size := range []int{1_000, 1_000_000} {
		var mu sync.Mutex
		m := make(map[string][]byte, size)
		keys := make([]string, size)
		for i := range keys {
			keys[i] = key(i)
			m[keys[i]] = append([]byte(nil), value...)
		}
		b.Run(fmt.Sprintf("Get/size=%d", size), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				mu.Lock()
				v := append([]byte(nil), m[keys[i*7919%size]]...)
				mu.Unlock()
				if len(v) != len(value) {
					b.Fatal("missing")
				}
			}
		})
		b.Run(fmt.Sprintf("DeletePut/size=%d", size), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				k := keys[i*7919%size]
				mu.Lock()
				v := m[k]
				delete(m, k)
				m[k] = append([]byte(nil), v...)
				mu.Unlock()
			}
		})
	}
}
