package negotiate

// The reference for the PAC decoder's tests: how iwalb read PACs before it
// had its own decoder (gokrb5's pac.PACType.Unmarshal and
// ProcessPACInfoBuffers, then the SIDs written from gokrb5's structures),
// and a view of a decoded PAC that both decoders fill, to compare them.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jcmturner/gokrb5/v8/crypto"
	"github.com/jcmturner/gokrb5/v8/iana/keyusage"
	"github.com/jcmturner/gokrb5/v8/pac"
	"github.com/jcmturner/gokrb5/v8/types"
	"github.com/jcmturner/rpc/v2/mstypes"

	"github.com/iwalb/iwalb/authnode/internal/sid"
)

// pacView is what a decoder read of a PAC: the logon info fields iwalb
// uses, and the user and group SIDs it makes of them.
type pacView struct {
	UserID, PrimaryGroupID, UserFlags uint32
	LogonDomain                       string
	Groups                            [][2]uint32 // RID, attributes
	ExtraSIDs                         []sidAttrs
	ResourceDomain                    string
	ResourceGroups                    [][2]uint32
	UserSID                           string
	GroupSIDs                         []string
}

type sidAttrs struct {
	SID   string
	Attrs uint32
}

// diff names the first field in which v and w differ, "" when none does.
func (v pacView) diff(w pacView) string {
	for _, f := range []struct {
		name string
		same bool
		x, y any
	}{
		{"UserID", v.UserID == w.UserID, v.UserID, w.UserID},
		{"PrimaryGroupID", v.PrimaryGroupID == w.PrimaryGroupID, v.PrimaryGroupID, w.PrimaryGroupID},
		{"UserFlags", v.UserFlags == w.UserFlags, v.UserFlags, w.UserFlags},
		{"LogonDomain", v.LogonDomain == w.LogonDomain, v.LogonDomain, w.LogonDomain},
		{"Groups", slices.Equal(v.Groups, w.Groups), v.Groups, w.Groups},
		{"ExtraSIDs", slices.Equal(v.ExtraSIDs, w.ExtraSIDs), v.ExtraSIDs, w.ExtraSIDs},
		{"ResourceDomain", v.ResourceDomain == w.ResourceDomain, v.ResourceDomain, w.ResourceDomain},
		{"ResourceGroups", slices.Equal(v.ResourceGroups, w.ResourceGroups), v.ResourceGroups, w.ResourceGroups},
		{"UserSID", v.UserSID == w.UserSID, v.UserSID, w.UserSID},
		{"GroupSIDs", slices.Equal(v.GroupSIDs, w.GroupSIDs), v.GroupSIDs, w.GroupSIDs},
	} {
		if !f.same {
			return fmt.Sprintf("%s: %.300v, other %.300v", f.name, f.x, f.y)
		}
	}
	return ""
}

// ourView decodes b with pacIdentity, as readPAC does, and with parsePAC
// for the fields it reads.
func ourView(b []byte, key types.EncryptionKey) (pacView, error) {
	info, err := pacIdentity(b, key)
	if err != nil {
		return pacView{}, err
	}
	k, err := parsePAC(b, key)
	if err != nil {
		return pacView{}, fmt.Errorf("parsePAC refuses what pacIdentity accepts: %v", err)
	}
	v := pacView{UserID: k.userID, PrimaryGroupID: k.primaryGroupID, UserFlags: k.userFlags,
		LogonDomain: binarySIDString(k.logonDomain), ResourceDomain: binarySIDString(k.resourceDomain),
		Groups: groupPairs(k.groups), ResourceGroups: groupPairs(k.resourceGroups),
		UserSID: info.userSID, GroupSIDs: info.groupSIDs}
	for _, e := range k.extraSIDs {
		v.ExtraSIDs = append(v.ExtraSIDs, sidAttrs{binarySIDString(e.sid), e.attrs})
	}
	return v, nil
}

func binarySIDString(b []byte) string {
	if b == nil {
		return ""
	}
	s, err := sid.FromBinary(b)
	if err != nil {
		return "invalid SID " + err.Error()
	}
	return s
}

func groupPairs(g []byte) [][2]uint32 {
	var out [][2]uint32
	for i := range len(g) / groupMembershipLen {
		rid, attrs := groupAt(g, i)
		out = append(out, [2]uint32{rid, attrs})
	}
	return out
}

// gokrb5View decodes b as readPAC did before this package had its own
// decoder. A panic of gokrb5 (it slices buffers without checking their
// bounds) counts as a refusal, as Validate's recover made it one.
//
// gokrb5 allocates what the counts it reads say, before it finds whether
// the input holds that much; tests call this only on PACs whose counts
// are the real ones (see gokrb5Safe).
func gokrb5View(b []byte, key types.EncryptionKey) (v pacView, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = pacView{}, fmt.Errorf("gokrb5 panicked: %v", r)
		}
	}()
	var p pac.PACType
	if err := p.Unmarshal(b); err != nil {
		return pacView{}, fmt.Errorf("decode PAC: %v", err)
	}
	if err := p.ProcessPACInfoBuffers(key, log.New(io.Discard, "", 0)); err != nil {
		return pacView{}, fmt.Errorf("verify PAC: %v", err)
	}
	k := p.KerbValidationInfo
	v = pacView{UserID: k.UserID, PrimaryGroupID: k.PrimaryGroupID, UserFlags: k.UserFlags,
		UserSID: refUserSID(k), GroupSIDs: refGroupSIDs(k)}
	if v.UserSID == "" {
		return pacView{}, fmt.Errorf("PAC logon info has no user SID (logon domain %s, RID %d)", k.LogonDomainID.String(), k.UserID)
	}
	v.LogonDomain = rpcSIDString(k.LogonDomainID)
	v.ResourceDomain = rpcSIDString(k.ResourceGroupDomainSID)
	for _, g := range k.GroupIDs {
		v.Groups = append(v.Groups, [2]uint32{g.RelativeID, g.Attributes})
	}
	for _, g := range k.ResourceGroupIDs {
		v.ResourceGroups = append(v.ResourceGroups, [2]uint32{g.RelativeID, g.Attributes})
	}
	for _, e := range k.ExtraSIDs {
		v.ExtraSIDs = append(v.ExtraSIDs, sidAttrs{rpcSIDString(e.SID), e.Attributes})
	}
	return v, nil
}

// rpcSIDString writes a SID of gokrb5's, "" for an absent one (a null
// pointer leaves it zero).
func rpcSIDString(s mstypes.RPCSID) string {
	if s.Revision == 0 && len(s.SubAuthority) == 0 {
		return ""
	}
	return sid.Format(sid.Authority(s.IdentifierAuthority), s.SubAuthority)
}

// refUserSID and refGroupSIDs are how iwalb wrote the SIDs of gokrb5's
// structures before (pacUserSID and pacGroupSIDs).
func refUserSID(k *pac.KerbValidationInfo) string {
	dom := k.LogonDomainID
	if !refValidSID(dom) || k.UserID == 0 {
		return ""
	}
	return sid.Format(sid.Authority(dom.IdentifierAuthority), dom.SubAuthority) + "-" + strconv.FormatUint(uint64(k.UserID), 10)
}

func refGroupSIDs(k *pac.KerbValidationInfo) []string {
	var out []string
	seen := make(map[string]bool)
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	withRIDs := func(dom mstypes.RPCSID, groups []mstypes.GroupMembership) {
		if !refValidSID(dom) {
			return
		}
		for _, g := range groups {
			add(sid.Format(sid.Authority(dom.IdentifierAuthority), append(slices.Clone(dom.SubAuthority), g.RelativeID)))
		}
	}
	withRIDs(k.LogonDomainID, k.GroupIDs)
	for _, e := range k.ExtraSIDs {
		if refValidSID(e.SID) {
			add(sid.Format(sid.Authority(e.SID.IdentifierAuthority), e.SID.SubAuthority))
		}
	}
	withRIDs(k.ResourceGroupDomainSID, k.ResourceGroupIDs)
	return out
}

func refValidSID(s mstypes.RPCSID) bool {
	return s.Revision == 1 && len(s.SubAuthority) > 0 && len(s.SubAuthority) <= 15
}

// refBuffer is a PAC_INFO_BUFFER as gokrb5 reads it: no check at all.
type refBuffer struct {
	typ  uint32
	size uint64
	off  uint64
}

// refBuffers reads the PAC's header as gokrb5 does, or returns false when
// gokrb5 would fail on it (too short for its buffer list) or panic (a
// buffer outside the PAC).
func refBuffers(b []byte) ([]refBuffer, bool) {
	if len(b) < 8 {
		return nil, false
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-8)/16 {
		return nil, false
	}
	out := make([]refBuffer, n)
	for i := range out {
		e := b[8+16*i:]
		out[i] = refBuffer{typ: binary.LittleEndian.Uint32(e), size: uint64(binary.LittleEndian.Uint32(e[4:])), off: binary.LittleEndian.Uint64(e[8:])}
		if out[i].off > uint64(len(b)) || out[i].size > uint64(len(b))-out[i].off {
			return nil, false
		}
	}
	return out, true
}

// firstOfType returns the first buffer of type typ, as gokrb5 uses it.
func firstOfType(bufs []refBuffer, typ uint32) (refBuffer, bool) {
	for _, x := range bufs {
		if x.typ == typ {
			return x, true
		}
	}
	return refBuffer{}, false
}

// resign recomputes the server signature of the PAC b with key, so that a
// changed PAC reaches the decoding that follows the signature check. It
// zeroes the server and KDC signatures as the check does and writes the
// checksum of the server signature's own type; it leaves b as it is when
// the PAC is too broken to find them.
func resign(b []byte, key types.EncryptionKey) []byte {
	bufs, ok := refBuffers(b)
	if !ok {
		return b
	}
	srv, ok1 := firstOfType(bufs, pacServerChecksum)
	kdc, ok2 := firstOfType(bufs, pacKDCChecksum)
	if !ok1 || !ok2 || srv.size < 4 || kdc.size < 4 {
		return b
	}
	st := int32(binary.LittleEndian.Uint32(b[srv.off:]))
	sn, ok1 := signatureSize(st)
	kn, ok2 := signatureSize(int32(binary.LittleEndian.Uint32(b[kdc.off:])))
	if !ok1 || !ok2 || srv.size < 4+uint64(sn) || kdc.size < 4+uint64(kn) {
		return b
	}
	out := bytes.Clone(b)
	zeroed := bytes.Clone(b)
	clear(zeroed[srv.off+4 : srv.off+4+uint64(sn)])
	clear(zeroed[kdc.off+4 : kdc.off+4+uint64(kn)])
	ck, err := crypto.GetChksumEtype(st)
	if err != nil {
		return b
	}
	sum, err := ck.GetChecksumHash(key.KeyValue, zeroed, keyusage.KERB_NON_KERB_CKSUM_SALT)
	if err != nil || len(sum) != sn {
		return b
	}
	copy(out[srv.off+4:], sum)
	return out
}

// fuzzPACKey signs and checks the PACs of the offline PAC tests and of
// FuzzPAC: the AES256 key of testKeytab.
func fuzzPACKey(t testing.TB) types.EncryptionKey {
	t.Helper()
	return testKeytab(t).Entries[0].Key
}

// seedPACs returns the PACs saved as FuzzPAC's seeds, by file name: real
// ones from the test domain (alice, dave, carol) and gokrb5's test vector.
func seedPACs(t testing.TB) map[string][]byte {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", "FuzzPAC")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = readCorpusBytes(t, b)
	}
	return out
}

// readCorpusBytes reads a fuzz corpus file of one []byte value.
func readCorpusBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	rest, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte(")
	if !ok {
		t.Fatalf("not a corpus file of one []byte: %.40q", b)
	}
	rest = strings.TrimSpace(rest)
	s, err := strconv.Unquote(strings.TrimSuffix(rest, ")"))
	if err != nil {
		t.Fatalf("corpus value: %v", err)
	}
	return []byte(s)
}
