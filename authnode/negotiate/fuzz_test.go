package negotiate

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/testkit"
)

// fuzzTime is the clock of FuzzValidate; the offline seeds in testdata were
// made at this time with testKeytab, so mutations of them reach the
// cryptographic checks and response building (and, in offline-spnego-pac,
// alice's PAC signed again with testKeytab's key, the PAC decoder).
var fuzzTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var sentinels = []error{ErrNTLM, ErrMalformed, ErrWrongSPN, ErrEnctype, ErrKVNO, ErrDecrypt,
	ErrAuthenticator, ErrPAC, ErrClockSkew, ErrClockAhead, ErrTicketExpired, ErrReplay, ErrReplayQuota, ErrReplayCacheFull}

// Work budgets of FuzzValidate: the bytes Validate may allocate, per byte of
// blob and in all, and the length of its error (which goes into a log
// line whatever the blob's size).
const fuzzMaxErrBytes = 2048

var fuzzAlloc = testkit.AllocBudget{PerByte: 64, Fixed: 1 << 20}

func FuzzClassify(f *testing.F) {
	f.Add([]byte{})
	f.Add(ntlmNegotiate)
	f.Fuzz(func(t *testing.T, blob []byte) {
		var k Kind
		fuzzAlloc.Within(t, "Classify", len(blob), func() { k = Classify(blob) })
		if s := k.String(); s == "" {
			t.Fatalf("empty label for %d", k)
		}
	})
}

func FuzzValidate(f *testing.F) {
	kt := testKeytab(f)
	f.Add(ntlmNegotiate)
	f.Add(spnegoNTLM(f))
	f.Fuzz(func(t *testing.T, blob []byte) {
		kind := Classify(blob)
		v := NewValidator(kt, Options{Now: fixedClock(fuzzTime.Add(time.Second))})
		var id *Identity
		var err error
		fuzzAlloc.Within(t, "Validate", len(blob), func() { id, err = v.Validate(blob) })
		if err == nil {
			if id == nil || id.User == "" || id.SPN == "" {
				t.Fatalf("accepted without an identity: %+v", id)
			}
			if kind != KindKerberos {
				t.Fatalf("accepted a %v blob", kind)
			}
			if _, err := v.Validate(blob); !errors.Is(err, ErrReplay) {
				t.Fatalf("replay of an accepted blob: %v", err)
			}
			return
		}
		if n := len(err.Error()); n > fuzzMaxErrBytes {
			t.Fatalf("error of %d bytes for a %d-byte blob: %.300s", n, len(blob), err)
		}
		known := false
		for _, s := range sentinels {
			known = known || errors.Is(err, s)
		}
		if !known {
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		if (kind == KindNTLM || kind == KindSPNEGONTLM) != errors.Is(err, ErrNTLM) {
			t.Fatalf("kind %v but error %v", kind, err)
		}
	})
}

// FuzzPAC decodes PACs as readPAC does. Its seeds (testdata/fuzz/FuzzPAC)
// are real PACs of the test domain of scripts/ad-up, decrypted from
// tickets of alice, dave (nested groups) and carol (1,100 groups), and
// gokrb5's test PAC. Each input is signed again with the fuzz key first,
// so that changes reach the decoding behind the signature check. Decoding
// and writing the SIDs must keep to the allocation budget, refuse with a
// short error, and accept only what makes well-formed SIDs, no more of
// them than the input could hold.
func FuzzPAC(f *testing.F) {
	key := fuzzPACKey(f)
	vector, _ := gokrb5VectorPAC(f)
	f.Add(vector)
	f.Fuzz(func(t *testing.T, b []byte) {
		b = resign(b, key)
		var info pacInfo
		var err error
		fuzzAlloc.Within(t, "pacIdentity", len(b), func() { info, err = pacIdentity(b, key) })
		if err != nil {
			if n := len(err.Error()); n > 300 {
				t.Fatalf("error of %d bytes for a %d-byte PAC: %.300s", n, len(b), err)
			}
			return
		}
		if len(info.groupSIDs) > len(b)/groupMembershipLen {
			t.Fatalf("%d group SIDs from a PAC of %d bytes", len(info.groupSIDs), len(b))
		}
		seen := make(map[string]bool)
		for _, s := range append([]string{info.userSID}, info.groupSIDs...) {
			if !wellFormedSID(s) {
				t.Fatalf("accepted with the SID %q", s)
			}
			if seen[s] && s != info.userSID {
				t.Fatalf("group SID %s twice", s)
			}
			seen[s] = true
		}
	})
}

// wellFormedSID reports whether s is S-1-, an authority and 1 to 16
// decimal sub-authorities (a domain's 15 and a RID).
func wellFormedSID(s string) bool {
	rest, ok := strings.CutPrefix(s, "S-1-")
	parts := strings.Split(rest, "-")
	if !ok || len(parts) < 2 || len(parts) > 17 {
		return false
	}
	for i, p := range parts {
		if i == 0 && strings.HasPrefix(p, "0x") && len(p) == 14 {
			continue
		}
		if _, err := strconv.ParseUint(p, 10, 32+32*btoi(i == 0)); err != nil {
			return false
		}
	}
	return true
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
