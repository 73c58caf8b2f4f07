package negotiate

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/keytab"
)

// rotatedKeytab is testKeytab after a password change: kvno 4, another key.
func rotatedKeytab(t testing.TB) *keytab.Keytab {
	t.Helper()
	kt := keytab.New()
	if err := kt.AddEntry(testSPN, testRealm, testPass+"-2", time.Unix(1700000100, 0), 4, 18); err != nil {
		t.Fatal(err)
	}
	return kt
}

// TestKeyRingKeepsThePreviousKey: after a rotation, a ticket for the old
// key version still validates, one for the new validates too, and the old
// is refused (kvno) once its time is up; the refusal names both versions.
func TestKeyRingKeepsThePreviousKey(t *testing.T) {
	old, cur := testKeytab(t), rotatedKeytab(t)
	ring := NewKeyRing(old)
	base := NewValidator(nil, Options{})
	t0 := time.Now()
	retired, dropped := ring.Rotate(cur, t0)
	if len(retired) != 1 || retired[0].KVNO != 3 || len(dropped) != 0 {
		t.Fatalf("Rotate retired %v, dropped %v; want the kvno 3 key retired", retired, dropped)
	}
	v := base.WithKeytab(ring.Keytab())
	if _, err := v.Validate(makeBlob(t, ticketSpec{kt: old, kvno: 3})); err != nil {
		t.Fatalf("old-kvno ticket after the rotation: %v", err)
	}
	if _, err := v.Validate(makeBlob(t, ticketSpec{kt: cur, kvno: 4})); err != nil {
		t.Fatalf("new-kvno ticket: %v", err)
	}
	const ttl = 10 * time.Hour
	if next := ring.NextExpiry(ttl); !next.Equal(t0.Add(ttl)) {
		t.Fatalf("NextExpiry %s, want %s", next, t0.Add(ttl))
	}
	if got := ring.Expire(t0.Add(ttl-time.Second), ttl); len(got) != 0 {
		t.Fatalf("expired early: %v", got)
	}
	if got := ring.Expire(t0.Add(ttl), ttl); len(got) != 1 || got[0].KVNO != 3 {
		t.Fatalf("Expire at the ttl dropped %v; want the kvno 3 key", got)
	}
	if !ring.NextExpiry(ttl).IsZero() || len(ring.Retired()) != 0 {
		t.Fatal("keys still retired after they expired")
	}
	v = base.WithKeytab(ring.Keytab())
	_, err := v.Validate(makeBlob(t, ticketSpec{kt: old, kvno: 3}))
	if !errors.Is(err, ErrKVNO) || !strings.Contains(err.Error(), "kvno 3 but the keytab has kvno 4") {
		t.Fatalf("old-kvno ticket after previous_keys_ttl: %v; want ErrKVNO naming 3 and 4", err)
	}
	if _, err := v.Validate(makeBlob(t, ticketSpec{kt: cur, kvno: 4})); err != nil {
		t.Fatalf("new-kvno ticket after the old key went: %v", err)
	}
}

// TestKeyRingReplayAcrossRotation: a key keeps its name in the replay
// cache whichever keytab holds it, so an authenticator accepted before a
// rotation is a replay after it, with the key current or retired.
func TestKeyRingReplayAcrossRotation(t *testing.T) {
	old := testKeytab(t)
	ring := NewKeyRing(old)
	base := NewValidator(nil, Options{})
	blob := makeBlob(t, ticketSpec{kt: old})
	if _, err := base.WithKeytab(ring.Keytab()).Validate(blob); err != nil {
		t.Fatal(err)
	}
	ring.Rotate(rotatedKeytab(t), time.Now())
	if _, err := base.WithKeytab(ring.Keytab()).Validate(blob); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay with the key retired: %v, want ErrReplay", err)
	}
	// The old key back in the keytab (an older export restored) is current
	// again, and keeps its name too.
	if ring.Rotate(old, time.Now()); len(ring.Retired()) != 1 || ring.Retired()[0].KVNO != 4 {
		t.Fatalf("retired after restoring the old keytab: %v; want kvno 4 only", ring.Retired())
	}
	if _, err := base.WithKeytab(ring.Keytab()).Validate(blob); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay with the key current again: %v, want ErrReplay", err)
	}
}

// TestKeyRingSameContentRetiresNothing: a keytab exported again (new
// timestamps, another order, duplicates) retires none of the keys it holds.
func TestKeyRingSameContentRetiresNothing(t *testing.T) {
	kt := testKeytab(t)
	if err := kt.AddEntry(testSPN, testRealm, testPass, time.Unix(1700000000, 0), 3, 17); err != nil {
		t.Fatal(err)
	}
	ring := NewKeyRing(kt)
	again := keytab.New()
	for i := len(kt.Entries) - 1; i >= 0; i-- {
		e := kt.Entries[i]
		e.Timestamp = time.Now()
		again.Entries = append(again.Entries, e, e)
	}
	if retired, _ := ring.Rotate(again, time.Now()); len(retired) != 0 {
		t.Fatalf("re-export retired %v", retired)
	}
}

// TestKeyRingBoundsRetiredKeys: a keytab rewritten with new keys over and
// over keeps MaxRetiredKeys at most, the longest retired dropped first.
func TestKeyRingBoundsRetiredKeys(t *testing.T) {
	base := testKeytab(t)
	ring := NewKeyRing(base)
	now := time.Now()
	var dropped []RetiredKey
	for i := range MaxRetiredKeys + 10 {
		next := keytab.New()
		e := base.Entries[0]
		e.KVNO = uint32(i + 10)
		next.Entries = append(next.Entries, e)
		_, d := ring.Rotate(next, now.Add(time.Duration(i)*time.Millisecond))
		dropped = append(dropped, d...)
	}
	if n := len(ring.Retired()); n != MaxRetiredKeys {
		t.Fatalf("%d keys retired, want %d", n, MaxRetiredKeys)
	}
	if len(dropped) != 10 || dropped[0].KVNO != 3 {
		t.Fatalf("dropped %d keys, the first kvno %d; want 10, the first the kvno 3 key", len(dropped), dropped[0].KVNO)
	}
}

// TestParseKeytabRefusesPartialFiles: a file being written (cut anywhere
// inside an entry), empty or garbage is an error, never a panic; cut at an
// entry's end it is the entries before.
func TestParseKeytabRefusesPartialFiles(t *testing.T) {
	kt := testKeytab(t)
	if err := kt.AddEntry(testSPN, testRealm, testPass, time.Unix(1700000000, 0), 3, 17); err != nil {
		t.Fatal(err)
	}
	full, err := kt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	one, _ := testKeytab(t).Marshal()
	for cut := range len(full) {
		got, err := ParseKeytab(full[:cut])
		switch {
		case cut == len(one):
			if err != nil || len(got.Entries) != 1 {
				t.Fatalf("cut after the first entry: %v, %v", got, err)
			}
		case err == nil:
			t.Fatalf("cut at byte %d of %d parsed: %d entries", cut, len(full), len(got.Entries))
		}
	}
	if got, err := ParseKeytab(full); err != nil || len(got.Entries) != 2 {
		t.Fatalf("whole file: %v, %v", got, err)
	}
	if _, err := ParseKeytab([]byte("not a keytab at all")); err == nil {
		t.Fatal("garbage parsed")
	}
	p := filepath.Join(t.TempDir(), "kt")
	writeFile(t, p, full)
	if got, sum, err := ReadKeytab(p); err != nil || len(got.Entries) != 2 || sum == [32]byte{} {
		t.Fatalf("ReadKeytab: %v %x %v", got, sum, err)
	}
	if _, _, err := ReadKeytab(p + ".missing"); err == nil {
		t.Fatal("ReadKeytab of a missing file succeeded")
	}
}

func TestTicketKVNO(t *testing.T) {
	kt := keytab.New()
	if err := kt.AddEntry(testSPN, testRealm, testPass, time.Now(), 7, 18); err != nil {
		t.Fatal(err)
	}
	if kvno, ok := TicketKVNO(makeBlob(t, ticketSpec{kt: kt, kvno: 7})); !ok || kvno != 7 {
		t.Fatalf("TicketKVNO = %d, %v; want 7", kvno, ok)
	}
	if _, ok := TicketKVNO(spnegoNTLM(t)); ok {
		t.Fatal("TicketKVNO of NTLM")
	}
}

// TestParseKeytabErrorsQuoteNoKey: whatever byte of a keytab is damaged,
// the error says so without the file's bytes (gokrb5's own errors print
// them, key included), and nothing panics.
func TestParseKeytabErrorsQuoteNoKey(t *testing.T) {
	kt := testKeytab(t)
	full, err := kt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	key := string(kt.Entries[0].Key.KeyValue)
	for i := range full {
		for _, b := range []byte{0x00, 0x7f, 0xff} {
			bad := append([]byte(nil), full...)
			bad[i] = b
			if _, err := ParseKeytab(bad); err != nil && (strings.Contains(err.Error(), key) || len(err.Error()) > 200) {
				t.Fatalf("byte %d set to %#x: error quotes the content: %q", i, b, err)
			}
		}
	}
}

// FuzzParseKeytab: any content parses or is refused, within a work budget
// linear in its size, with an error that quotes none of it.
func FuzzParseKeytab(f *testing.F) {
	full, err := testKeytab(f).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Add([]byte{5, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		var kt *keytab.Keytab
		var err error
		fuzzAlloc.Within(t, "ParseKeytab", len(data), func() { kt, err = ParseKeytab(data) })
		if err != nil {
			if len(err.Error()) > 200 || len(data) >= 8 && strings.Contains(err.Error(), string(data[2:])) {
				t.Fatalf("error quotes the content: %q", err)
			}
			return
		}
		if len(kt.Entries) == 0 {
			t.Fatal("parsed without entries and without an error")
		}
	})
}
