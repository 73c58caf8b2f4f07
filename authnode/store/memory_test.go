package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestMemoryTakeOnce(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(nil)
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
}

func TestMemoryConcurrentTakeExactlyOneWins(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(nil)
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
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	m := NewMemory(c.now)
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
	c.add(time.Second)
	m.Sweep()
	if _, err := m.Take(ctx, "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Take after the grace: %v; want ErrNotFound", err)
	}
	if n := m.Len(); n != 1 {
		t.Fatalf("Len after the grace = %d; want 1 (the live entry)", n)
	}
}

func TestMemoryPutSweepsOldEntries(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	m := NewMemory(c.now)
	for i := range 1000 {
		_ = m.Put(ctx, string(rune('a'+i%26))+time.Duration(i).String(), []byte("value"), time.Second)
	}
	c.add(ExpiredGrace + sweepEvery)
	_ = m.Put(ctx, "fresh", nil, time.Minute)
	if n := m.Len(); n != 1 {
		t.Fatalf("Len = %d after the periodic sweep; want only the fresh entry", n)
	}
	if n := m.Sweep(); n != 1000 {
		t.Fatalf("Sweep counted %d expired; want 1000", n)
	}
}

func TestMemoryRejectsNonPositiveTTL(t *testing.T) {
	if err := NewMemory(nil).Put(context.Background(), "k", nil, 0); err == nil {
		t.Fatal("Put with ttl 0 succeeded; want an error")
	}
}
