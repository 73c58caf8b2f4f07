package negotiate

import (
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/pac"
	"github.com/jcmturner/gokrb5/v8/test/testdata"
	"github.com/jcmturner/rpc/v2/mstypes"
)

func kerbValidationInfo(t *testing.T, hexPAC string) *pac.KerbValidationInfo {
	t.Helper()
	b, err := hex.DecodeString(hexPAC)
	if err != nil {
		t.Fatal(err)
	}
	var k pac.KerbValidationInfo
	if err := k.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	return &k
}

func domainSID(subs ...uint32) mstypes.RPCSID {
	return mstypes.RPCSID{Revision: 1, SubAuthorityCount: uint8(len(subs)), IdentifierAuthority: [6]byte{0, 0, 0, 0, 0, 5}, SubAuthority: subs}
}

func TestPACGroupSIDs(t *testing.T) {
	t.Run("groups, an extra SID and resource groups", func(t *testing.T) {
		// A PAC from a domain trusting another ([MS-PAC] test vector of
		// gokrb5): S-1-18-1 among the extra SIDs, two resource groups.
		k := kerbValidationInfo(t, testdata.MarshaledPAC_Kerb_Validation_Info_Trust)
		want := []string{
			"S-1-5-21-2284869408-3503417140-1141177250-1110",
			"S-1-5-21-2284869408-3503417140-1141177250-513",
			"S-1-5-21-2284869408-3503417140-1141177250-1109",
			"S-1-18-1",
			"S-1-5-21-3062750306-1230139592-1973306805-1107",
			"S-1-5-21-3062750306-1230139592-1973306805-1108",
		}
		if got := pacGroupSIDs(k); !slices.Equal(got, want) {
			t.Errorf("pacGroupSIDs = %v\nwant %v", got, want)
		}
		if got := pacUserSID(k); got != "S-1-5-21-2284869408-3503417140-1141177250-1106" {
			t.Errorf("pacUserSID = %q", got)
		}
	})
	t.Run("26 groups and 13 extra SIDs, as gokrb5 reads them", func(t *testing.T) {
		k := kerbValidationInfo(t, testdata.MarshaledPAC_Kerb_Validation_Info_MS)
		got := pacGroupSIDs(k)
		if want := k.GetGroupMembershipSIDs(); !slices.Equal(got, want) || len(got) != 26+13 {
			t.Errorf("pacGroupSIDs = %d SIDs %v\nwant gokrb5's %d %v", len(got), got, len(want), want)
		}
	})
	t.Run("duplicates and absent SIDs", func(t *testing.T) {
		dom := domainSID(21, 1, 2, 3)
		k := &pac.KerbValidationInfo{
			LogonDomainID: dom, UserID: 1103,
			GroupIDs: []mstypes.GroupMembership{{RelativeID: 513}, {RelativeID: 1104}, {RelativeID: 513}},
			ExtraSIDs: []mstypes.KerbSidAndAttributes{
				{SID: domainSID(21, 1, 2, 3, 1104)}, // a group listed twice
				{SID: mstypes.RPCSID{}},             // absent
				{SID: mstypes.RPCSID{Revision: 1, SubAuthorityCount: 1, IdentifierAuthority: [6]byte{0, 0, 0, 0, 0, 18}, SubAuthority: []uint32{1}}},
			},
			// Resource group RIDs without a domain SID name nothing.
			ResourceGroupIDs: []mstypes.GroupMembership{{RelativeID: 7}},
		}
		want := []string{"S-1-5-21-1-2-3-513", "S-1-5-21-1-2-3-1104", "S-1-18-1"}
		if got := pacGroupSIDs(k); !slices.Equal(got, want) {
			t.Errorf("pacGroupSIDs = %v, want %v", got, want)
		}
		if got := pacUserSID(k); got != "S-1-5-21-1-2-3-1103" {
			t.Errorf("pacUserSID = %q", got)
		}
		if got := pacUserSID(&pac.KerbValidationInfo{UserID: 1103}); got != "" {
			t.Errorf("pacUserSID without a logon domain = %q, want none", got)
		}
	})
}

// TestPACGroupSIDsLinear holds pacGroupSIDs to linear work: ten times the
// groups cost about ten times the CPU (a quadratic dedupe would cost a
// hundred times). The best of several runs is compared, so that a loaded
// machine does not make it flaky.
func TestPACGroupSIDsLinear(t *testing.T) {
	big := func(n int) *pac.KerbValidationInfo {
		k := &pac.KerbValidationInfo{LogonDomainID: domainSID(21, 1, 2, 3), UserID: 1103}
		for i := range n {
			k.GroupIDs = append(k.GroupIDs, mstypes.GroupMembership{RelativeID: uint32(1000 + i)})
			k.ExtraSIDs = append(k.ExtraSIDs, mstypes.KerbSidAndAttributes{SID: domainSID(21, 4, 5, 6, uint32(i))})
		}
		return k
	}
	best := func(k *pac.KerbValidationInfo) time.Duration {
		b := time.Duration(1 << 62)
		for range 7 {
			start := time.Now()
			if got := pacGroupSIDs(k); len(got) != 2*len(k.GroupIDs) {
				t.Fatalf("%d SIDs, want %d", len(got), 2*len(k.GroupIDs))
			}
			b = min(b, time.Since(start))
		}
		return b
	}
	small, large := best(big(2000)), best(big(20000))
	if ratio := float64(large) / float64(small); ratio > 40 {
		t.Errorf("20,000 groups took %s, 2,000 took %s: %.0f times, want about 10 (linear)", large, small, ratio)
	}
	t.Logf("2,000 groups: %s; 20,000: %s", small, large)
}
