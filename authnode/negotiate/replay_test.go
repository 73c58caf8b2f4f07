package negotiate

import (
	"testing"
	"time"
)

func TestReplayCacheExpiry(t *testing.T) {
	c := newReplayCache(10)
	t0 := time.Unix(1700000000, 0)
	k := replayKey{client: "alice", realm: "R", ctime: 1, key: [32]byte{1}}
	if seen, full := c.insert(k, t0, t0.Add(5*time.Minute)); seen || full {
		t.Fatalf("first insert: seen=%v full=%v", seen, full)
	}
	if seen, _ := c.insert(k, t0.Add(4*time.Minute), t0.Add(9*time.Minute)); !seen {
		t.Fatal("second insert within the window was not seen as a replay")
	}
	// Another service's key: not the same authenticator use.
	k2 := k
	k2.key = [32]byte{2}
	if seen, _ := c.insert(k2, t0, t0.Add(5*time.Minute)); seen {
		t.Fatal("same authenticator for another service counted as a replay")
	}
	if seen, _ := c.insert(k, t0.Add(5*time.Minute), t0.Add(10*time.Minute)); seen {
		t.Fatal("entry did not expire at its expiry time")
	}
	if n := c.len(); n != 1 {
		t.Fatalf("after sweep the cache holds %d entries, want 1 (the re-inserted one)", n)
	}
}

func TestReplayCacheBound(t *testing.T) {
	c := newReplayCache(3)
	t0 := time.Unix(1700000000, 0)
	for i := range 3 {
		if _, full := c.insert(replayKey{client: "u", cusec: i}, t0, t0.Add(time.Minute)); full {
			t.Fatalf("insert %d refused as full", i)
		}
	}
	// Full of live entries: refuse rather than evict (evicting would let the
	// evicted authenticator be replayed).
	if seen, full := c.insert(replayKey{client: "u", cusec: 99}, t0.Add(time.Second), t0.Add(time.Minute)); seen || !full {
		t.Fatalf("insert into full cache: seen=%v full=%v, want full", seen, full)
	}
	// A replay of a live entry is still reported as a replay when full.
	if seen, _ := c.insert(replayKey{client: "u", cusec: 0}, t0.Add(time.Second), t0.Add(time.Minute)); !seen {
		t.Fatal("replay not detected in a full cache")
	}
	// Once they expire there is room again.
	if seen, full := c.insert(replayKey{client: "u", cusec: 99}, t0.Add(time.Minute), t0.Add(2*time.Minute)); seen || full {
		t.Fatalf("insert after expiry: seen=%v full=%v", seen, full)
	}
	if n := c.len(); n != 1 {
		t.Fatalf("cache holds %d entries after expiry, want 1", n)
	}
}
