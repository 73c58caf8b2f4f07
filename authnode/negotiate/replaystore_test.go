package negotiate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/keytab"
)

// TestReplayStoreSharedByNodes: two nodes whose keytabs hold the same key in
// another order share one replay store: an authenticator accepted by one is
// a replay at the other, and a client's quota counts at both.
func TestReplayStoreSharedByNodes(t *testing.T) {
	now := time.Now().Truncate(time.Microsecond)
	shared := newReplayCache(100, 2)
	// Node 2's keytab also holds an older key, listed first: the same key
	// is another entry there.
	kt2 := keytab.New()
	if err := kt2.AddEntry(testSPN, testRealm, "the-old-password", now, 2, 18); err != nil {
		t.Fatal(err)
	}
	kt2.Entries = append(kt2.Entries, testKeytab(t).Entries...)
	n1 := NewValidator(testKeytab(t), Options{ReplayStore: shared, ReplayQuota: 2, Now: fixedClock(now)})
	n2 := NewValidator(kt2, Options{ReplayStore: shared, ReplayQuota: 2, Now: fixedClock(now)})

	blob := makeBlob(t, ticketSpec{now: now})
	if _, err := n1.Validate(blob); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Validate(blob); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed at node 2: %v, want ErrReplay", err)
	}
	if _, err := n2.Validate(makeBlob(t, ticketSpec{now: now.Add(-time.Second)})); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Validate(makeBlob(t, ticketSpec{now: now.Add(-2 * time.Second)})); !errors.Is(err, ErrReplayQuota) {
		t.Fatalf("third login over both nodes with quota 2: %v, want ErrReplayQuota", err)
	}
	// The nodes' own caches were not used.
	if live, _ := n1.ReplayCacheStats(); live != 0 {
		t.Fatalf("node 1's own cache holds %d", live)
	}
}

type failingStore struct{ err error }

func (f failingStore) Record(context.Context, ReplayKey, time.Time, time.Time) (ReplayResult, time.Duration, error) {
	return 0, 0, f.err
}

// TestReplayStoreUnavailable: a valid ticket is refused when its
// authenticator cannot be recorded, never accepted unprotected.
func TestReplayStoreUnavailable(t *testing.T) {
	down := errors.New("connection refused")
	v := NewValidator(testKeytab(t), Options{ReplayStore: failingStore{down}})
	_, err := v.Validate(makeBlob(t, ticketSpec{}))
	if !errors.Is(err, ErrReplayUnavailable) || !errors.Is(err, down) {
		t.Fatalf("Validate with the replay store down: %v, want ErrReplayUnavailable wrapping the store's error", err)
	}
	if TicketSPN(err) != testSPN+"@"+testRealm {
		t.Fatalf("TicketSPN = %q", TicketSPN(err))
	}
}
