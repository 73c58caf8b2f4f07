package secret

import (
	"encoding/base64"
	"strings"
	"testing"
)

// TestSecrets: New makes distinct well-formed secrets of 256 bits; junk,
// other lengths and padding are not well formed; the hash is the store key,
// not the secret.
func TestSecrets(t *testing.T) {
	if got := base64.RawURLEncoding.EncodedLen(Bytes); got != Len {
		t.Fatalf("Len = %d, want %d", Len, got)
	}
	a, err := New()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New()
	if a == b || !WellFormed(a) || !WellFormed(b) {
		t.Errorf("New: %q and %q", a, b)
	}
	for _, bad := range []string{"", a[:Len-1], a + "A", strings.Repeat("!", Len), a[:Len-1] + "="} {
		if WellFormed(bad) {
			t.Errorf("WellFormed(%q) = true", bad)
		}
	}
	if h := Hash(a); len(h) != 64 || h == a || Hash(a) != h || Hash(b) == h {
		t.Errorf("Hash(%q) = %q", a, h)
	}
}
