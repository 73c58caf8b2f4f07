package negotiate

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// logonInfo is what iwalb reads of a PAC's KERB_VALIDATION_INFO ([MS-PAC]
// 2.5). Its slices are views of the PAC, not copies (the PAC must not
// change while they are used): SIDs in binary form ([MS-DTYP] 2.4.2.2),
// and GROUP_MEMBERSHIP arrays of 8 bytes an entry, RID then attributes,
// little-endian.
type logonInfo struct {
	userID         uint32
	primaryGroupID uint32
	userFlags      uint32
	logonDomain    []byte // the logon domain's SID; nil when absent
	groups         []byte // the groups of the logon domain
	extraSIDs      []sidAndAttributes
	resourceDomain []byte // the resource groups' domain SID; nil when absent
	resourceGroups []byte // the resource groups, relative to resourceDomain
}

// sidAndAttributes is a KERB_SID_AND_ATTRIBUTES ([MS-PAC] 2.2.1).
type sidAndAttributes struct {
	sid   []byte // binary SID
	attrs uint32
}

// groupMembershipLen is the size of a GROUP_MEMBERSHIP ([MS-PAC] 2.2.2).
const groupMembershipLen = 8

// groupAt returns the RID and attributes of entry i of a GROUP_MEMBERSHIP
// array.
func groupAt(groups []byte, i int) (rid, attrs uint32) {
	e := groups[groupMembershipLen*i:]
	return binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])
}

// ndrReader reads NDR ([MS-RPCE] 2.2.5, C706 chapter 14) in little-endian
// byte order, each primitive aligned to its size from the start of b (the
// type serialization header is 16 bytes, so that is also the start of the
// data). The first read past the end, or a check that fails, sets err;
// every read after it returns zero values.
type ndrReader struct {
	b   []byte
	off int
	err error
}

func (r *ndrReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

// take returns the next n bytes after aligning to align (a power of two),
// or nil when they are not there. n may be any count read from the input:
// it is compared with what is left, never allocated.
func (r *ndrReader) take(n uint64, align int) []byte {
	if r.err != nil {
		return nil
	}
	off := (r.off + align - 1) &^ (align - 1)
	if off > len(r.b) || n > uint64(len(r.b)-off) {
		r.fail("NDR data of %d bytes ends before the %d bytes wanted at offset %d", len(r.b), n, off)
		return nil
	}
	r.off = off + int(n)
	return r.b[off:r.off]
}

func (r *ndrReader) u16() uint16 {
	if p := r.take(2, 2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (r *ndrReader) u32() uint32 {
	if p := r.take(4, 4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

// unicodeString is the fixed part of an RPC_UNICODE_STRING ([MS-DTYP]
// 2.3.10): lengths in bytes and a pointer to the characters, which come
// later, deferred.
type unicodeString struct {
	length, maxLength uint16
	ptr               uint32
}

func (r *ndrReader) unicodeString() unicodeString {
	return unicodeString{length: r.u16(), maxLength: r.u16(), ptr: r.u32()}
}

// stringChars reads the deferred characters of s, a conformant varying
// array of UTF-16 units (maximum count, offset, actual count, units), and
// skips them: iwalb takes names from the ticket and the directory.
func (r *ndrReader) stringChars(s unicodeString, field string) {
	if s.ptr == 0 {
		if s.length != 0 {
			r.fail("%s has a length of %d bytes but no characters", field, s.length)
		}
		return
	}
	maxCount, offset, count := r.u32(), r.u32(), r.u32()
	if r.err == nil && (offset != 0 || count > maxCount || uint64(s.length) != 2*uint64(count) || uint64(s.maxLength) != 2*uint64(maxCount)) {
		r.fail("%s of %d bytes (at most %d) is sent as %d characters at offset %d of %d", field, s.length, s.maxLength, count, offset, maxCount)
	}
	r.take(2*uint64(count), 2)
}

// conformantCount reads the maximum count of a conformant array, which
// must equal the count the structure gave for it.
func (r *ndrReader) conformantCount(want uint32, field string) uint32 {
	n := r.u32()
	if r.err == nil && n != want {
		r.fail("%s has %d entries but its count says %d", field, n, want)
	}
	return n
}

// groupArray reads the deferred GROUP_MEMBERSHIP array of count entries
// ptr points to.
func (r *ndrReader) groupArray(ptr, count uint32, field string) []byte {
	if ptr == 0 {
		if count != 0 {
			r.fail("%s is absent but its count says %d", field, count)
		}
		return nil
	}
	n := r.conformantCount(count, field)
	return r.take(groupMembershipLen*uint64(n), 4)
}

// sid reads a deferred RPC_SID ([MS-DTYP] 2.4.2.3): a conformant structure,
// the count of sub-authorities first, then the binary SID. It returns the
// binary SID, nil when ptr is null.
func (r *ndrReader) sid(ptr uint32, field string) []byte {
	if ptr == 0 {
		return nil
	}
	n := r.u32()
	start := r.off
	head := r.take(8, 4)
	if r.err != nil {
		return nil
	}
	if head[0] != 1 || uint32(head[1]) != n || n == 0 || n > 15 {
		r.fail("%s is not a SID (revision %d, %d sub-authorities of %d sent)", field, head[0], head[1], n)
		return nil
	}
	r.take(4*uint64(n), 4)
	if r.err != nil {
		return nil
	}
	return r.b[start:r.off]
}

// sidAndAttributesArray reads the deferred KERB_SID_AND_ATTRIBUTES array of
// count entries ptr points to, then the SIDs its entries point to. Each
// entry takes at least 24 bytes of input, so the slice it returns is
// bounded by the input.
func (r *ndrReader) sidAndAttributesArray(ptr, count uint32, field string) []sidAndAttributes {
	if ptr == 0 {
		if count != 0 {
			r.fail("%s is absent but its count says %d", field, count)
		}
		return nil
	}
	n := r.conformantCount(count, field)
	entries := r.take(8*uint64(n), 4)
	if r.err != nil || n == 0 {
		return nil
	}
	if uint64(n)*16 > uint64(len(r.b)-r.off) { // a SID takes 16 bytes or more
		r.fail("%s has %d entries but only %d bytes follow for their SIDs", field, n, len(r.b)-r.off)
		return nil
	}
	out := make([]sidAndAttributes, n)
	for i := range out {
		p := binary.LittleEndian.Uint32(entries[8*i:])
		if p == 0 {
			r.fail("%s entry %d has no SID", field, i)
			return nil
		}
		out[i] = sidAndAttributes{sid: r.sid(p, field), attrs: binary.LittleEndian.Uint32(entries[8*i+4:])}
		if r.err != nil {
			return nil
		}
	}
	return out
}

// errNoLogonInfo: the logon info's top-level pointer is null.
var errNoLogonInfo = errors.New("null KERB_VALIDATION_INFO pointer")

// decodeLogonInfo decodes the KERB_VALIDATION_INFO of a PAC's logon info
// buffer b: an NDR type serialization, version 1 ([MS-RPCE] 2.2.6), of a
// pointer to the structure. The structure's fixed part comes first, then
// what its pointers point to, in the order of the pointers, each array
// followed by what its entries point to. Every count is checked against
// what is left of b before it is used, so decoding is linear in len(b)
// and allocates one entry per extra SID at most.
func decodeLogonInfo(b []byte) (logonInfo, error) {
	if len(b) < 16 {
		return logonInfo{}, fmt.Errorf("%d bytes, shorter than the NDR headers", len(b))
	}
	// Common header: version 1, little-endian ASCII, 8 bytes, filler.
	// Private header: the length of what follows (padded to 8), filler.
	if b[0] != 1 || b[1] != 0x10 || binary.LittleEndian.Uint16(b[2:]) != 8 {
		return logonInfo{}, fmt.Errorf("not a little-endian NDR type serialization of version 1 (header % x)", b[:4])
	}
	n := binary.LittleEndian.Uint32(b[8:])
	if n%8 != 0 || uint64(n) > uint64(len(b)-16) {
		return logonInfo{}, fmt.Errorf("NDR header says %d bytes follow, %d do", n, len(b)-16)
	}
	b = b[:16+n]
	r := &ndrReader{b: b, off: 16}
	if r.u32() == 0 && r.err == nil {
		return logonInfo{}, errNoLogonInfo
	}

	var k logonInfo
	r.take(6*8, 4) // LogonTime … PasswordMustChange: six FILETIMEs
	var names [6]unicodeString
	for i := range names { // EffectiveName … HomeDirectoryDrive
		names[i] = r.unicodeString()
	}
	r.take(2*2, 2) // LogonCount, BadPasswordCount
	k.userID = r.u32()
	k.primaryGroupID = r.u32()
	groupCount, groupsPtr := r.u32(), r.u32()
	k.userFlags = r.u32()
	r.take(16, 1) // UserSessionKey
	logonServer, logonDomainName := r.unicodeString(), r.unicodeString()
	logonDomainPtr := r.u32()
	// Reserved1[2], UserAccountControl, SubAuthStatus,
	// LastSuccessfulILogon, LastFailedILogon, FailedILogonCount, Reserved3.
	r.take(4*(2+1+1+2+2+1+1), 4)
	sidCount, extraSIDsPtr := r.u32(), r.u32()
	resourceDomainPtr := r.u32()
	resourceCount, resourceGroupsPtr := r.u32(), r.u32()

	for i, field := range [6]string{"EffectiveName", "FullName", "LogonScript", "ProfilePath", "HomeDirectory", "HomeDirectoryDrive"} {
		r.stringChars(names[i], field)
	}
	k.groups = r.groupArray(groupsPtr, groupCount, "GroupIds")
	r.stringChars(logonServer, "LogonServer")
	r.stringChars(logonDomainName, "LogonDomainName")
	k.logonDomain = r.sid(logonDomainPtr, "LogonDomainId")
	k.extraSIDs = r.sidAndAttributesArray(extraSIDsPtr, sidCount, "ExtraSids")
	k.resourceDomain = r.sid(resourceDomainPtr, "ResourceGroupDomainSid")
	k.resourceGroups = r.groupArray(resourceGroupsPtr, resourceCount, "ResourceGroupIds")
	if r.err != nil {
		return logonInfo{}, r.err
	}
	if len(b)-r.off >= 8 {
		return logonInfo{}, fmt.Errorf("%d bytes after the KERB_VALIDATION_INFO, more than padding", len(b)-r.off)
	}
	if k.logonDomain == nil {
		return logonInfo{}, errors.New("no LogonDomainId")
	}
	if len(k.resourceGroups) > 0 && k.resourceDomain == nil {
		return logonInfo{}, errors.New("ResourceGroupIds without a ResourceGroupDomainSid")
	}
	return k, nil
}
