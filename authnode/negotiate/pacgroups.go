package negotiate

import (
	"encoding/binary"
	"strconv"

	"github.com/iwalb/iwalb/authnode/internal/sid"
)

// userSID returns the user's SID of the logon info (its logon domain SID
// and user RID), or "" when it has no user RID.
func (k *logonInfo) userSID() string {
	if k.userID == 0 || k.logonDomain == nil {
		return ""
	}
	b, err := sid.AppendBinary(make([]byte, 0, 80), k.logonDomain)
	if err != nil {
		return ""
	}
	b = append(b, '-')
	return string(strconv.AppendUint(b, uint64(k.userID), 10))
}

// groupSIDs returns every group SID of the logon info, once each, in the
// order the KDC listed them ([MS-PAC] 2.5): the groups (RIDs relative to
// the logon domain), the extra SIDs (other domains' groups, well-known
// SIDs such as S-1-18-1), then the resource groups (RIDs relative to the
// resource group domain). Nesting was resolved by the KDC.
//
// Each domain's SID is written once, and each RID appended to it in one
// buffer. Duplicates are found by number (see sidSet), so that the only
// allocation per SID is its string. Each string is a copy of its own, not
// a slice of one buffer for all: callers keep some of them for long (the
// directory's SID cache keys), and a shared buffer would keep every SID of
// the login alive with any one of them.
func (k *logonInfo) groupSIDs() []string {
	nGroups, nResource := len(k.groups)/groupMembershipLen, len(k.resourceGroups)/groupMembershipLen
	n := nGroups + len(k.extraSIDs) + nResource
	out := make([]string, 0, n)
	set := newSIDSet(n)
	buf := make([]byte, 0, 128)
	withRIDs := func(domain, groups []byte, count int) {
		var err error
		if buf, err = sid.AppendBinary(buf[:0], domain); err != nil {
			return
		}
		buf = append(buf, '-')
		prefix := len(buf)
		d := set.domain(domain[2:])
		for i := range count {
			rid, _ := groupAt(groups, i)
			if set.add(d, rid) {
				buf = strconv.AppendUint(buf[:prefix], uint64(rid), 10)
				out = append(out, string(buf))
			}
		}
	}
	if k.logonDomain != nil {
		withRIDs(k.logonDomain, k.groups, nGroups)
	}
	for _, e := range k.extraSIDs {
		last := len(e.sid) - 4 // a SID has one sub-authority or more
		if last < 8 || !set.add(set.domain(e.sid[2:last]), binary.LittleEndian.Uint32(e.sid[last:])) {
			continue
		}
		var err error
		if buf, err = sid.AppendBinary(buf[:0], e.sid); err == nil {
			out = append(out, string(buf))
		}
	}
	if k.resourceDomain != nil {
		withRIDs(k.resourceDomain, k.resourceGroups, nResource)
	}
	return out
}

// sidSet is a set of SIDs, each taken as a domain and a RID: all but the
// last sub-authority, and the last. A PAC lists most of its SIDs as RIDs
// of one or two domains, so that a SID is two numbers (its domain's, and
// the RID) and the set a set of numbers, cheaper than one of strings; the
// same SID sent as a domain's RID and as an extra SID is one member.
type sidSet struct {
	domains map[string]uint32   // a domain's authority and sub-authorities, binary, to its number
	members map[uint64]struct{} // the domain's number and the RID
}

func newSIDSet(n int) sidSet {
	return sidSet{domains: make(map[string]uint32), members: make(map[uint64]struct{}, n)}
}

// domain returns the number of the domain whose SID, from the identifier
// authority on, is key ([MS-DTYP] 2.4.2.2 without revision and count).
func (s sidSet) domain(key []byte) uint32 {
	if d, ok := s.domains[string(key)]; ok { // no allocation for the lookup
		return d
	}
	d := uint32(len(s.domains))
	s.domains[string(key)] = d
	return d
}

// add adds the SID of domain number d and rid, and reports whether it was
// not in the set yet.
func (s sidSet) add(d, rid uint32) bool {
	n := len(s.members)
	s.members[uint64(d)<<32|uint64(rid)] = struct{}{} // one hash, not a lookup and an insert
	return len(s.members) > n
}
