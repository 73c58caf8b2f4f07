package negotiate

import (
	"strconv"

	"github.com/jcmturner/gokrb5/v8/pac"
	"github.com/jcmturner/rpc/v2/mstypes"

	"github.com/iwalb/iwalb/authnode/internal/sid"
)

// pacUserSID returns the user's SID of the PAC's logon info (its logon
// domain SID and user RID), or "" when it has none.
func pacUserSID(k *pac.KerbValidationInfo) string {
	dom := k.LogonDomainID
	if !validSID(dom) || k.UserID == 0 {
		return ""
	}
	b := appendRPCSID(nil, dom)
	b = append(b, '-')
	return string(strconv.AppendUint(b, uint64(k.UserID), 10))
}

// pacGroupSIDs returns every group SID of the PAC's logon info, once each,
// in the order the KDC listed them ([MS-PAC] 2.5): the groups (RIDs
// relative to the logon domain), the extra SIDs (other domains' groups,
// well-known SIDs such as S-1-18-1), then the resource groups (RIDs relative
// to the resource group domain). Nesting was resolved by the KDC.
//
// Duplicates are dropped with a set, in time linear in the number of SIDs
// (gokrb5's GetGroupMembershipSIDs compares each with all before it, which
// is quadratic: seconds of CPU for a PAC of thousands of groups).
func pacGroupSIDs(k *pac.KerbValidationInfo) []string {
	n := len(k.GroupIDs) + len(k.ExtraSIDs) + len(k.ResourceGroupIDs)
	out := make([]string, 0, n)
	seen := make(map[string]struct{}, n)
	add := func(b []byte) {
		if _, dup := seen[string(b)]; dup { // no allocation for the lookup
			return
		}
		s := string(b)
		seen[s] = struct{}{}
		out = append(out, s)
	}
	var buf []byte
	withRIDs := func(dom mstypes.RPCSID, groups []mstypes.GroupMembership) {
		if !validSID(dom) {
			return
		}
		prefix := append(appendRPCSID(nil, dom), '-')
		for _, g := range groups {
			buf = strconv.AppendUint(append(buf[:0], prefix...), uint64(g.RelativeID), 10)
			add(buf)
		}
	}
	withRIDs(k.LogonDomainID, k.GroupIDs)
	for _, e := range k.ExtraSIDs {
		if validSID(e.SID) {
			buf = appendRPCSID(buf[:0], e.SID)
			add(buf)
		}
	}
	if len(k.ResourceGroupIDs) > 0 {
		withRIDs(k.ResourceGroupDomainSID, k.ResourceGroupIDs)
	}
	return out
}

// validSID reports whether s is a SID at all: an absent one (a null
// pointer in the PAC) decodes as revision 0 with no sub-authorities.
func validSID(s mstypes.RPCSID) bool {
	return s.Revision == 1 && len(s.SubAuthority) > 0 && len(s.SubAuthority) <= 15
}

func appendRPCSID(dst []byte, s mstypes.RPCSID) []byte {
	return sid.Append(dst, sid.Authority(s.IdentifierAuthority), s.SubAuthority)
}
