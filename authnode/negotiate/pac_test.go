package negotiate

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/test/testdata"
	"github.com/jcmturner/gokrb5/v8/types"
)

// Offsets in a logon info buffer: the NDR headers (16 bytes) and the
// top-level pointer (4) come before KERB_VALIDATION_INFO, whose fixed part
// has these fields here ([MS-PAC] 2.5).
const (
	liStruct            = 20
	liEffectiveName     = liStruct + 48 // then five more RPC_UNICODE_STRINGs, 8 bytes each
	liLogonCount        = liStruct + 96
	liUserID            = liStruct + 100
	liPrimaryGroupID    = liStruct + 104
	liGroupCount        = liStruct + 108
	liGroupsPtr         = liStruct + 112
	liUserFlags         = liStruct + 116
	liLogonServer       = liStruct + 136 // then LogonDomainName
	liLogonDomainPtr    = liStruct + 152
	liReserved1         = liStruct + 156
	liSidCount          = liStruct + 196
	liResourceCount     = liStruct + 208
	liFixedEnd          = liStruct + 216
	liResourceDomainPtr = liStruct + 204
)

// gokrb5's test PAC ([MS-PAC]-shaped, from a KDC of its test realm) and
// the key of its service, sysHTTP, that signed it.
func gokrb5VectorPAC(t testing.TB) ([]byte, types.EncryptionKey) {
	t.Helper()
	b, err := hex.DecodeString(testdata.MarshaledPAC_AD_WIN2K_PAC)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := hex.DecodeString(testdata.KEYTAB_SYSHTTP_TEST_GOKRB5)
	if err != nil {
		t.Fatal(err)
	}
	kt := keytab.New()
	if err := kt.Unmarshal(kb); err != nil {
		t.Fatal(err)
	}
	pn, _ := types.ParseSPNString("sysHTTP")
	key, _, err := kt.GetEncryptionKey(pn, "TEST.GOKRB5", 2, 18)
	if err != nil {
		t.Fatal(err)
	}
	return b, key
}

// pacLayout locates in a valid PAC the parts the tests change.
type pacLayout struct {
	logon  refBuffer // the first logon info buffer
	k      logonInfo
	spans  [][2]int // [offset, end) in the PAC of each field decoding does not lay out by
	groups int      // offset of GroupIds' first entry, -1 without groups
}

// offsetIn returns where sub, a slice of b, starts in b.
func offsetIn(b, sub []byte) int { return cap(b) - cap(sub) }

func layoutOf(t testing.TB, b []byte) pacLayout {
	t.Helper()
	bufs, ok := refBuffers(b)
	if !ok {
		t.Fatal("PAC header does not decode")
	}
	li, ok := firstOfType(bufs, pacLogonInfo)
	if !ok {
		t.Fatal("PAC has no logon info")
	}
	k, err := decodeLogonInfo(b[li.off : li.off+li.size])
	if err != nil {
		t.Fatalf("logon info: %v", err)
	}
	base := int(li.off)
	if got := binary.LittleEndian.Uint32(b[base+liUserID:]); got != k.userID {
		t.Fatalf("user RID at the offset the tests use is %d, decoded %d", got, k.userID)
	}
	l := pacLayout{logon: li, k: k, groups: -1}
	span := func(off, n int) { l.spans = append(l.spans, [2]int{off, off + n}) }
	// The fixed part but its pointers; gokrb5 reads its counts and
	// lengths but lays out by the NDR counts of what follows.
	span(base+liStruct, 48) // times
	for i := range 6 {      // string lengths
		span(base+liEffectiveName+8*i, 4)
	}
	span(base+liLogonCount, liGroupsPtr-liLogonCount) // counts, RIDs
	span(base+liUserFlags, liLogonServer-liUserFlags) // flags, session key
	span(base+liLogonServer, 4)
	span(base+liLogonServer+8, 4)
	span(base+liReserved1, liSidCount+4-liReserved1)
	span(base+liResourceCount, 4)
	if len(k.groups) > 0 {
		l.groups = offsetIn(b, k.groups)
		span(l.groups, len(k.groups))
	}
	if len(k.resourceGroups) > 0 {
		span(offsetIn(b, k.resourceGroups), len(k.resourceGroups))
	}
	for _, s := range [][]byte{k.logonDomain, k.resourceDomain} {
		if s != nil {
			span(offsetIn(b, s), len(s))
		}
	}
	if n := len(k.extraSIDs); n > 0 {
		entries := offsetIn(b, k.extraSIDs[0].sid) - 4 - 8*n // the array comes before its first SID's count
		for i, e := range k.extraSIDs {
			span(entries+8*i+4, 4) // attributes
			span(offsetIn(b, e.sid), len(e.sid))
		}
	}
	return l
}

// stricterChecks are the refusals of parsePAC that gokrb5 did not make:
// checks of [MS-PAC], [MS-DTYP] and NDR that the mutations of the tests can
// fail while gokrb5 accepts. Any other disagreement fails the tests.
var stricterChecks = []string{
	"PAC version",                       // MUST be 0
	"not on an 8-byte boundary",         // MUST be
	"overlap",                           // buffers apart
	"not within",                        // a buffer in the header
	"checksum type",                     // the server key's type; a known type for the KDC's
	"bytes, want",                       // signature data of its type's length
	"client info has a name of",         // odd name length
	"entries but its count says",        // conformant count = the structure's count
	"is absent but its count says",      // a count without its array
	"is not a SID",                      // revision 1, count = conformant count, 1 to 15
	"is sent as",                        // string counts = its lengths
	"but no characters",                 // a string's length without characters
	"ResourceGroupIds without",          // resource RIDs of no domain
	"more than padding",                 // nothing after the structure
	"NDR header says",                   // the NDR length within the buffer
	"not a little-endian NDR",           // gokrb5 also read big-endian
	"null KERB_VALIDATION_INFO pointer", // gokrb5 skipped the pointer
}

// stricterCheck returns the entry of stricterChecks err is, or "".
func stricterCheck(err error) string {
	for _, s := range stricterChecks {
		if strings.Contains(err.Error(), s) {
			return s
		}
	}
	return ""
}

// verdicts counts how the two decoders judged a set of PACs.
type verdicts struct {
	bothAccept, bothRefuse, stricter, notRun int
	checks                                   map[string]int // stricter, by check
}

// compareDecoders decodes b with parsePAC and gokrb5 and fails t unless
// they agree: the same view, or both refuse, or parsePAC refuses by one of
// stricterChecks. parsePAC must never accept what gokrb5 refuses.
func compareDecoders(t *testing.T, name string, b []byte, key types.EncryptionKey, v *verdicts) {
	t.Helper()
	ours, oerr := ourView(b, key)
	ref, rerr := gokrb5View(b, key)
	switch {
	case oerr == nil && rerr == nil:
		v.bothAccept++
		if d := ours.diff(ref); d != "" {
			t.Errorf("%s: decoders disagree: %s", name, d)
		}
	case oerr == nil:
		t.Errorf("%s: accepted what gokrb5 refuses (%v): user %s, %d group SIDs", name, rerr, ours.UserSID, len(ours.GroupSIDs))
	case rerr == nil:
		c := stricterCheck(oerr)
		if c == "" {
			t.Errorf("%s: refused what gokrb5 accepts, for no check gokrb5 lacked: %v", name, oerr)
		}
		if v.checks == nil {
			v.checks = make(map[string]int)
		}
		v.checks[c]++
		v.stricter++
	default:
		v.bothRefuse++
	}
}

// mutateLogonInfo changes 1 to 3 bytes of b's logon info among the spans
// of l: fields gokrb5 reads but does not lay the rest out by, so that it
// allocates no more than for the real PAC.
func mutateLogonInfo(rng *rand.Rand, b []byte, l pacLayout) ([]byte, string) {
	out := bytes.Clone(b)
	var what []string
	total := 0
	for _, s := range l.spans {
		total += s[1] - s[0]
	}
	for range 1 + rng.IntN(3) {
		off := rng.IntN(total) // a byte of the spans, each as likely
		for _, s := range l.spans {
			if off < s[1]-s[0] {
				off += s[0]
				break
			}
			off -= s[1] - s[0]
		}
		x := byte(1 + rng.IntN(255))
		if rng.IntN(4) == 0 {
			x = 1 << rng.IntN(8)
		}
		out[off] ^= x
		what = append(what, fmt.Sprintf("[%d]^=%#x", off, x))
	}
	return out, strings.Join(what, " ")
}

// mutateHeader changes 1 or 2 bytes of b's PAC header or of its buffers
// other than the logon info.
func mutateHeader(rng *rand.Rand, b []byte, l pacLayout) ([]byte, string) {
	out := bytes.Clone(b)
	var what []string
	for range 1 + rng.IntN(2) {
		off := rng.IntN(len(b) - int(l.logon.size))
		if off >= int(l.logon.off) {
			off += int(l.logon.size)
		}
		x := byte(1 + rng.IntN(255))
		out[off] ^= x
		what = append(what, fmt.Sprintf("[%d]^=%#x", off, x))
	}
	return out, strings.Join(what, " ")
}

// gokrb5Safe reports whether gokrb5 may be given the changed PAC b, made
// from the PAC orig: it finds the logon info where it was (changed, if
// at all, only in the spans of pacLayout), the same UPN_DNS_INFO, and no
// other buffer in NDR (whose counts it would allocate as they say). ok
// reports whether it would get as far as decoding at all.
//
// gokrb5 is no reference for UPN_DNS_INFO, which iwalb does not read: it
// means to log and skip one it cannot decode, but panics on some (offsets
// past the buffer), and Validate's recover then refused the login.
func gokrb5Safe(b, orig []byte) (safe, ok bool) {
	bufs, ok := refBuffers(b)
	if !ok {
		return true, false
	}
	origBufs, _ := refBuffers(orig)
	for _, typ := range []uint32{pacLogonInfo, 12} {
		x, found := firstOfType(bufs, typ)
		y, origFound := firstOfType(origBufs, typ)
		if found != origFound || x != y {
			return false, true
		}
		if typ == 12 && found && !bytes.Equal(b[x.off:x.off+x.size], orig[y.off:y.off+y.size]) {
			return false, true
		}
	}
	for _, x := range bufs {
		switch x.typ {
		case 11, 13, 14, 15: // S4U delegation, claims, device info: NDR
			return false, true
		}
	}
	return true, true
}

// differential changes the valid PAC b in n ways, re-signs each with key,
// and compares the decoders on it. It returns the verdicts.
func differential(t *testing.T, name string, b []byte, key types.EncryptionKey, n int, rng *rand.Rand) verdicts {
	t.Helper()
	l := layoutOf(t, b)
	var v verdicts
	for i := range n {
		var m []byte
		var what string
		if i%4 == 3 {
			m, what = mutateHeader(rng, b, l)
		} else {
			m, what = mutateLogonInfo(rng, b, l)
		}
		m = resign(m, key)
		label := fmt.Sprintf("%s %s", name, what)
		switch safe, ok := gokrb5Safe(m, b); {
		case !ok: // gokrb5 fails on the header, or panics
			if _, err := parsePAC(m, key); err == nil {
				t.Errorf("%s: accepted a PAC whose buffers are outside it", label)
			}
			v.bothRefuse++
		case !safe: // ours alone: it must not fail other than with an error
			_, _ = parsePAC(m, key)
			v.notRun++
		default:
			compareDecoders(t, label, m, key, &v)
		}
	}
	return v
}

func TestParsePACSeeds(t *testing.T) {
	key := fuzzPACKey(t)
	seeds := seedPACs(t)
	atLeast := map[string]int{"ad-alice": 3, "ad-dave": 4, "ad-carol": 1100} // group SIDs
	for name, b := range seeds {
		t.Run(name, func(t *testing.T) {
			signed := resign(b, key)
			var v verdicts
			compareDecoders(t, name, signed, key, &v)
			if v.bothAccept != 1 {
				t.Fatalf("not accepted by both decoders: %+v", v)
			}
			got, _ := ourView(signed, key)
			if !strings.HasPrefix(got.UserSID, "S-1-5-21-") || len(got.GroupSIDs) < atLeast[name] {
				t.Errorf("user %s with %d group SIDs; want a domain user's SID and at least %d", got.UserSID, len(got.GroupSIDs), atLeast[name])
			}
			if _, err := parsePAC(b, key); !errors.Is(err, errPACSignature) {
				t.Errorf("signed by the test domain, checked with another key: %v, want %v", err, errPACSignature)
			}
		})
	}
	t.Run("gokrb5's vector", func(t *testing.T) {
		b, key := gokrb5VectorPAC(t)
		var v verdicts
		compareDecoders(t, "gokrb5's vector", b, key, &v)
		if v.bothAccept != 1 {
			t.Fatalf("not accepted by both decoders: %+v", v)
		}
	})
}

// TestParsePACTampered: one byte of a group RID changed, the PAC fails its
// server signature, in both decoders.
func TestParsePACTampered(t *testing.T) {
	key := fuzzPACKey(t)
	pacs := seedPACs(t)
	for name, b := range pacs {
		signed := resign(b, key)
		l := layoutOf(t, signed)
		if l.groups < 0 {
			t.Fatalf("%s has no groups", name)
		}
		for _, off := range []int{l.groups, l.groups + len(l.k.groups) - 8} { // first and last RID
			tampered := bytes.Clone(signed)
			tampered[off] ^= 1
			if _, err := parsePAC(tampered, key); !errors.Is(err, errPACSignature) {
				t.Errorf("%s with a RID changed at %d: %v, want %v", name, off, err, errPACSignature)
			}
			if _, err := gokrb5View(tampered, key); err == nil {
				t.Errorf("%s with a RID changed at %d: gokrb5 accepts it", name, off)
			}
		}
	}
}

// TestParsePACDifferential changes the seed PACs at random, re-signs them
// and holds parsePAC to gokrb5's verdict (see compareDecoders).
func TestParsePACDifferential(t *testing.T) {
	key := fuzzPACKey(t)
	rng := rand.New(rand.NewPCG(8, 1))
	seeds := seedPACs(t)
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range seeds {
			if !yield(k) {
				return
			}
		}
	})
	stricter := 0
	for _, name := range names {
		n := 400
		if len(seeds[name]) > 4096 {
			n = 100 // carol's: gokrb5 takes a millisecond each
		}
		v := differential(t, name, resign(seeds[name], key), key, n, rng)
		t.Logf("%s: %+v", name, v)
		if v.bothAccept < n/5 || v.bothRefuse == 0 {
			t.Errorf("%s: %+v; the mutations should leave a fifth of the PACs acceptable and make some unacceptable", name, v)
		}
		stricter += v.stricter
	}
	b, vkey := gokrb5VectorPAC(t)
	v := differential(t, "gokrb5's vector", b, vkey, 400, rng)
	t.Logf("gokrb5's vector: %+v", v)
	if stricter+v.stricter == 0 {
		t.Error("no mutation failed a check gokrb5 lacks: the mutations miss the fields of those checks")
	}
}

// entryOf returns where in b's header the entry of the first buffer of
// type typ is.
func entryOf(t testing.TB, b []byte, typ uint32) int {
	t.Helper()
	for i := range int(binary.LittleEndian.Uint32(b)) {
		if binary.LittleEndian.Uint32(b[8+16*i:]) == typ {
			return 8 + 16*i
		}
	}
	t.Fatalf("no buffer of type %d", typ)
	return 0
}

func putU32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
func putU16(b []byte, off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }

// withLogonInfo returns b with its logon info replaced by li, every buffer
// laid out again on 8-byte boundaries in the order of their offsets.
func withLogonInfo(t testing.TB, b, li []byte) []byte {
	t.Helper()
	n := int(binary.LittleEndian.Uint32(b))
	out := bytes.Clone(b[:8+16*n])
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		return int(binary.LittleEndian.Uint64(b[8+16*i+8:])) - int(binary.LittleEndian.Uint64(b[8+16*j+8:]))
	})
	for _, i := range order {
		e := 8 + 16*i
		off, size := binary.LittleEndian.Uint64(b[e+8:]), binary.LittleEndian.Uint32(b[e+4:])
		data := b[off : off+uint64(size)]
		if binary.LittleEndian.Uint32(b[e:]) == pacLogonInfo {
			data = li
		}
		for len(out)%8 != 0 {
			out = append(out, 0)
		}
		binary.LittleEndian.PutUint64(out[e+8:], uint64(len(out)))
		putU32(out, e+4, uint32(len(data)))
		out = append(out, data...)
	}
	return out
}

// TestParsePACMalformed: each way a PAC can be wrong is refused with an
// error that says which, and without allocating what its counts claim.
func TestParsePACMalformed(t *testing.T) {
	key := fuzzPACKey(t)
	base := resign(seedPACs(t)["ad-alice"], key)
	l := layoutOf(t, base)
	li := int(l.logon.off) // where the logon info buffer starts
	logon, server, kdc, client := entryOf(t, base, pacLogonInfo), entryOf(t, base, pacServerChecksum), entryOf(t, base, pacKDCChecksum), entryOf(t, base, pacClientInfo)
	srvOff := int(binary.LittleEndian.Uint64(base[server+8:]))
	kdcOff := int(binary.LittleEndian.Uint64(base[kdc+8:]))
	clientOff := int(binary.LittleEndian.Uint64(base[client+8:]))
	groupsCount := l.groups - 4 // the conformant count before GroupIds' entries
	domain := offsetIn(base, l.k.logonDomain)
	extraEntries := offsetIn(base, l.k.extraSIDs[0].sid) - 4 - 8*len(l.k.extraSIDs)
	if got := binary.LittleEndian.Uint32(base[li+liGroupCount:]); got != 2 || len(l.k.extraSIDs) != 1 || binary.LittleEndian.Uint16(base[li+liEffectiveName:]) != 10 {
		t.Fatalf("alice's PAC is not as the cases expect: %d groups, %d extra SIDs", got, len(l.k.extraSIDs))
	}

	tests := []struct {
		name     string
		change   func(b []byte) []byte
		noResign bool   // keep the signature as it was
		want     string // in the error; "" for errPACSignature
	}{
		{"version 1", func(b []byte) []byte { putU32(b, 4, 1); return b }, false, "PAC version 1, want 0"},
		{"no buffers", func(b []byte) []byte { putU32(b, 0, 0); return b }, false, "claims 0 buffers"},
		{"more buffers than bytes", func(b []byte) []byte { putU32(b, 0, 1<<32-1); return b }, false, "claims 4294967295 buffers"},
		{"offset not on 8 bytes", func(b []byte) []byte { putU32(b, logon+8, uint32(li+4)); return b }, false, "not on an 8-byte boundary"},
		{"buffer in the header", func(b []byte) []byte { putU32(b, logon+8, 8); return b }, false, "is not within"},
		{"buffer past the end", func(b []byte) []byte { putU32(b, logon+4, uint32(len(b))); return b }, false, "is not within"},
		{"offset past 4 GiB", func(b []byte) []byte { putU32(b, logon+12, 1); return b }, false, "is not within"},
		{"buffers overlap", func(b []byte) []byte { putU32(b, client+8, uint32(li+8)); return b }, false, "overlap"},
		{"no logon info", func(b []byte) []byte { putU32(b, logon, 99); return b }, false, "no logon info buffer"},
		{"no server signature", func(b []byte) []byte { putU32(b, server, 99); return b }, true, "no server signature buffer"},
		{"no KDC signature", func(b []byte) []byte { putU32(b, kdc, 99); return b }, true, "no KDC signature buffer"},
		{"no client info", func(b []byte) []byte { putU32(b, client, 99); return b }, false, "no client info buffer"},
		{"client name past its buffer", func(b []byte) []byte { putU16(b, clientOff+8, 0xffff); return b }, false, "client info has a name of 65535 bytes"},
		{"unknown server checksum type", func(b []byte) []byte { putU32(b, srvOff, 1); return b }, false, "server signature has checksum type 1;"},
		{"server checksum of another key type", func(b []byte) []byte { putU32(b, srvOff, 15); return b }, false, "the service key (aes256-cts-hmac-sha1-96(18)) signs with 16"},
		{"unknown KDC checksum type", func(b []byte) []byte { putU32(b, kdcOff, 1); return b }, false, "KDC signature has checksum type 1;"},
		{"server signature cut short", func(b []byte) []byte { putU32(b, server+4, 14); return b }, false, "is 14 bytes, want 16 or 18"},
		{"a group RID changed after signing", func(b []byte) []byte { b[l.groups] ^= 1; return b }, true, ""},
		{"the server signature changed", func(b []byte) []byte { b[srvOff+4] ^= 1; return b }, true, ""},
		{"big-endian NDR", func(b []byte) []byte { b[li+1] = 0x00; return b }, false, "not a little-endian NDR"},
		{"NDR longer than its buffer", func(b []byte) []byte { putU32(b, li+8, 1<<16); return b }, false, "NDR header says 65536 bytes follow"},
		{"NDR length not padded", func(b []byte) []byte { putU32(b, li+8, 12); return b }, false, "NDR header says 12 bytes follow"},
		{"null top-level pointer", func(b []byte) []byte { putU32(b, li+16, 0); return b }, false, "null KERB_VALIDATION_INFO pointer"},
		{"group count off by one", func(b []byte) []byte { putU32(b, li+liGroupCount, 3); return b }, false, "GroupIds has 2 entries but its count says 3"},
		{"groups claimed past the input", func(b []byte) []byte {
			putU32(b, li+liGroupCount, 1<<32-1)
			putU32(b, groupsCount, 1<<32-1)
			return b
		}, false, "ends before the 34359738360 bytes"},
		{"groups absent", func(b []byte) []byte { putU32(b, li+liGroupsPtr, 0); return b }, false, "GroupIds is absent but its count says 2"},
		{"extra SIDs claimed past the input", func(b []byte) []byte {
			putU32(b, li+liSidCount, 1<<28)
			putU32(b, extraEntries-4, 1<<28)
			return b
		}, false, "ends before the 2147483648 bytes"},
		{"string length not its characters", func(b []byte) []byte { putU16(b, li+liEffectiveName, 12); return b }, false, "EffectiveName of 12 bytes (at most 10) is sent as 5 characters"},
		{"string length without characters", func(b []byte) []byte {
			putU16(b, li+liEffectiveName+16, 2) // LogonScript
			putU32(b, li+liEffectiveName+16+4, 0)
			return b
		}, false, "LogonScript has a length of 2 bytes but no characters"},
		{"SID of revision 2", func(b []byte) []byte { b[domain] = 2; return b }, false, "LogonDomainId is not a SID (revision 2"},
		{"SID count not its conformant count", func(b []byte) []byte { b[domain+1]++; return b }, false, "LogonDomainId is not a SID"},
		{"extra SID absent", func(b []byte) []byte { putU32(b, extraEntries, 0); return b }, false, "ExtraSids entry 0 has no SID"},
		{"bytes after the structure", func(b []byte) []byte {
			x := append(bytes.Clone(b[li:li+int(l.logon.size)]), make([]byte, 8)...)
			putU32(x, 8, binary.LittleEndian.Uint32(x[8:])+8)
			return withLogonInfo(t, b, x)
		}, false, "8 bytes after the KERB_VALIDATION_INFO"},
		{"no user RID", func(b []byte) []byte { putU32(b, li+liUserID, 0); return b }, false, "no user RID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.change(bytes.Clone(base))
			if !tc.noResign {
				b = resign(b, key)
			}
			var err error
			fuzzAlloc.Within(t, "pacIdentity", len(b), func() { _, err = pacIdentity(b, key) })
			switch {
			case err == nil:
				t.Fatal("accepted")
			case tc.want == "" && !errors.Is(err, errPACSignature):
				t.Fatalf("error %q, want %v", err, errPACSignature)
			case !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
	if _, err := pacIdentity(base, key); err != nil {
		t.Fatalf("the unchanged PAC: %v", err)
	}
}

// TestParsePACTruncated: a PAC cut anywhere, or a logon info whose NDR
// ends early, is refused.
func TestParsePACTruncated(t *testing.T) {
	key := fuzzPACKey(t)
	base := resign(seedPACs(t)["ad-alice"], key)
	for n := range len(base) {
		if _, err := parsePAC(resign(base[:n], key), key); err == nil {
			t.Fatalf("accepted the first %d of %d bytes", n, len(base))
		}
	}
	li := int(layoutOf(t, base).logon.off)
	full := binary.LittleEndian.Uint32(base[li+8:])
	for n := uint32(0); n < full; n += 8 {
		b := bytes.Clone(base)
		putU32(b, li+8, n)
		if _, err := parsePAC(resign(b, key), key); err == nil {
			t.Fatalf("accepted the logon info's first %d of %d NDR bytes", n, full)
		}
	}
}

// TestValidateWithPAC: Validate reads the PAC of a ticket, here alice's
// real PAC signed again with the offline key: her SIDs come back. A PAC
// changed after signing, or an empty one, is ErrPAC.
func TestValidateWithPAC(t *testing.T) {
	key := fuzzPACKey(t)
	pac := resign(seedPACs(t)["ad-alice"], key)
	want, err := ourView(pac, key)
	if err != nil {
		t.Fatal(err)
	}
	v := NewValidator(testKeytab(t), Options{})
	id, err := v.Validate(makeBlob(t, ticketSpec{withPAC: true, pac: pac}))
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if id.UserSID != want.UserSID || !slices.Equal(id.GroupSIDs, want.GroupSIDs) {
		t.Errorf("identity %s %v, want %s %v", id.UserSID, id.GroupSIDs, want.UserSID, want.GroupSIDs)
	}
	tampered := bytes.Clone(pac)
	tampered[layoutOf(t, pac).groups] ^= 1
	for name, p := range map[string][]byte{"changed": tampered, "empty": {}} {
		_, err := v.Validate(makeBlob(t, ticketSpec{withPAC: true, pac: p}))
		if !errors.Is(err, ErrPAC) {
			t.Errorf("%s PAC: %v, want %v", name, err, ErrPAC)
		}
		t.Logf("%s PAC: %v", name, err)
	}
}
