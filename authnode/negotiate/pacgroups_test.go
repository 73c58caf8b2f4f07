package negotiate

import (
	"encoding/binary"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/pac"
	"github.com/jcmturner/gokrb5/v8/test/testdata"
)

// vectorLogonInfo decodes one of gokrb5's KERB_VALIDATION_INFO test
// vectors with decodeLogonInfo, and with gokrb5 for reference.
func vectorLogonInfo(t *testing.T, hexPAC string) (logonInfo, *pac.KerbValidationInfo) {
	t.Helper()
	b, err := hex.DecodeString(hexPAC)
	if err != nil {
		t.Fatal(err)
	}
	k, err := decodeLogonInfo(b)
	if err != nil {
		t.Fatalf("decodeLogonInfo: %v", err)
	}
	var ref pac.KerbValidationInfo
	if err := ref.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	return k, &ref
}

// binSID is the binary SID S-1-auth-subs….
func binSID(auth byte, subs ...uint32) []byte {
	b := []byte{1, byte(len(subs)), 0, 0, 0, 0, 0, auth}
	for _, s := range subs {
		b = binary.LittleEndian.AppendUint32(b, s)
	}
	return b
}

func groupArray(rids ...uint32) []byte {
	var b []byte
	for _, r := range rids {
		b = binary.LittleEndian.AppendUint32(b, r)
		b = binary.LittleEndian.AppendUint32(b, 7)
	}
	return b
}

func TestPACGroupSIDs(t *testing.T) {
	t.Run("groups, an extra SID and resource groups", func(t *testing.T) {
		// A PAC from a domain trusting another ([MS-PAC] test vector of
		// gokrb5): S-1-18-1 among the extra SIDs, two resource groups.
		k, ref := vectorLogonInfo(t, testdata.MarshaledPAC_Kerb_Validation_Info_Trust)
		want := []string{
			"S-1-5-21-2284869408-3503417140-1141177250-1110",
			"S-1-5-21-2284869408-3503417140-1141177250-513",
			"S-1-5-21-2284869408-3503417140-1141177250-1109",
			"S-1-18-1",
			"S-1-5-21-3062750306-1230139592-1973306805-1107",
			"S-1-5-21-3062750306-1230139592-1973306805-1108",
		}
		if got := k.groupSIDs(); !slices.Equal(got, want) || !slices.Equal(refGroupSIDs(ref), want) {
			t.Errorf("groupSIDs = %v\nwant %v (gokrb5: %v)", got, want, refGroupSIDs(ref))
		}
		if got := k.userSID(); got != "S-1-5-21-2284869408-3503417140-1141177250-1106" {
			t.Errorf("userSID = %q", got)
		}
	})
	t.Run("26 groups and 13 extra SIDs, as gokrb5 reads them", func(t *testing.T) {
		k, ref := vectorLogonInfo(t, testdata.MarshaledPAC_Kerb_Validation_Info_MS)
		got := k.groupSIDs()
		if want := ref.GetGroupMembershipSIDs(); !slices.Equal(got, want) || len(got) != 26+13 {
			t.Errorf("groupSIDs = %d SIDs %v\nwant gokrb5's %d %v", len(got), got, len(want), want)
		}
		if got, want := k.userSID(), refUserSID(ref); got != want {
			t.Errorf("userSID = %q, gokrb5's %q", got, want)
		}
	})
	t.Run("duplicates across the lists", func(t *testing.T) {
		k := &logonInfo{
			logonDomain: binSID(5, 21, 1, 2, 3), userID: 1103,
			groups: groupArray(513, 1104, 513),
			extraSIDs: []sidAndAttributes{
				{sid: binSID(5, 21, 1, 2, 3, 1104)}, // a group listed twice
				{sid: binSID(18, 1)},
				{sid: binSID(5, 21, 4, 5, 6, 7)},
			},
			resourceDomain: binSID(5, 21, 4, 5, 6),
			resourceGroups: groupArray(7, 8),
		}
		want := []string{"S-1-5-21-1-2-3-513", "S-1-5-21-1-2-3-1104", "S-1-18-1", "S-1-5-21-4-5-6-7", "S-1-5-21-4-5-6-8"}
		if got := k.groupSIDs(); !slices.Equal(got, want) {
			t.Errorf("groupSIDs = %v, want %v", got, want)
		}
		if got := k.userSID(); got != "S-1-5-21-1-2-3-1103" {
			t.Errorf("userSID = %q", got)
		}
		if got := (&logonInfo{logonDomain: binSID(5, 21, 1, 2, 3)}).userSID(); got != "" {
			t.Errorf("userSID without a user RID = %q, want none", got)
		}
	})
}

// bigLogonInfo is a logon info of n groups and n extra SIDs, all distinct.
func bigLogonInfo(n int) *logonInfo {
	k := &logonInfo{logonDomain: binSID(5, 21, 1, 2, 3), userID: 1103}
	for i := range n {
		k.groups = append(k.groups, groupArray(uint32(1000+i))...)
		k.extraSIDs = append(k.extraSIDs, sidAndAttributes{sid: binSID(5, 21, 4, 5, 6, uint32(i))})
	}
	return k
}

// TestPACGroupSIDsLinear holds groupSIDs to linear work: ten times the
// groups cost about ten times the CPU (a quadratic dedupe would cost a
// hundred times). The best of several runs is compared, so that a loaded
// machine does not make it flaky.
func TestPACGroupSIDsLinear(t *testing.T) {
	best := func(k *logonInfo) time.Duration {
		b := time.Duration(1 << 62)
		for range 7 {
			start := time.Now()
			if got := k.groupSIDs(); len(got) != 2*len(k.extraSIDs) {
				t.Fatalf("%d SIDs, want %d", len(got), 2*len(k.extraSIDs))
			}
			b = min(b, time.Since(start))
		}
		return b
	}
	small, large := best(bigLogonInfo(2000)), best(bigLogonInfo(20000))
	if ratio := float64(large) / float64(small); ratio > 40 {
		t.Errorf("20,000 groups took %s, 2,000 took %s: %.0f times, want about 10 (linear)", large, small, ratio)
	}
	t.Logf("2,000 groups: %s; 20,000: %s", small, large)
}

// TestPACGroupSIDsAllocations: a SID's string is the only allocation made
// for it; the set and the list are made once.
func TestPACGroupSIDsAllocations(t *testing.T) {
	k := bigLogonInfo(1000)
	allocs := testing.AllocsPerRun(10, func() { k.groupSIDs() })
	if n := 2 * len(k.extraSIDs); allocs > float64(n)+20 {
		t.Errorf("groupSIDs of %d SIDs made %.0f allocations, want at most one per SID and 20 more", n, allocs)
	}
}
