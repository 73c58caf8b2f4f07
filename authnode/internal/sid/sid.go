// Package sid writes security identifiers in their string form, S-1-5-21-…,
// one way for the whole auth node: the ticket's PAC and the directory's
// objectSid are compared as these strings.
package sid

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// maxAuthorityDecimal is the largest identifier authority written in
// decimal; above it [MS-DTYP] 2.4.2.1 writes 0x and 12 hex digits.
const maxAuthorityDecimal = 1<<32 - 1

// Format returns the string form of the SID with the 48-bit identifier
// authority auth and the sub-authorities subs, as Windows writes it:
// "S-1-5-21-1004336348-1177238915-682003330-513".
func Format(auth uint64, subs []uint32) string {
	return string(Append(make([]byte, 0, maxLen(len(subs))), auth, subs))
}

// Append appends the string form of the SID (see Format) to dst.
func Append(dst []byte, auth uint64, subs []uint32) []byte {
	dst = append(dst, "S-1-"...)
	dst = appendAuthority(dst, auth)
	for _, s := range subs {
		dst = append(dst, '-')
		dst = strconv.AppendUint(dst, uint64(s), 10)
	}
	return dst
}

// appendAuthority writes the identifier authority as [MS-DTYP] 2.4.2.1
// does: decimal up to 2^32-1, else 0x and 12 hex digits.
func appendAuthority(dst []byte, auth uint64) []byte {
	if auth <= maxAuthorityDecimal {
		return strconv.AppendUint(dst, auth, 10)
	}
	const hexDigits = "0123456789ABCDEF"
	dst = append(dst, "0x"...)
	for i := 11; i >= 0; i-- {
		dst = append(dst, hexDigits[(auth>>(4*i))&0xf])
	}
	return dst
}

// Authority returns the identifier authority of a SID's six big-endian
// bytes ([MS-DTYP] 2.4.2.2), as RPC_SID and objectSid carry it.
func Authority(b [6]byte) uint64 {
	var a uint64
	for _, c := range b {
		a = a<<8 | uint64(c)
	}
	return a
}

// FromBinary returns the string form of the binary SID b, as Active
// Directory stores objectSid: revision 1, the count of sub-authorities,
// the authority in six big-endian bytes, then each 32-bit sub-authority
// little-endian ([MS-DTYP] 2.4.2.2).
func FromBinary(b []byte) (string, error) {
	if !ValidBinary(b) {
		return "", errNotBinary
	}
	out, err := AppendBinary(make([]byte, 0, maxLen(int(b[1]))), b)
	return string(out), err
}

// maxLen is the longest string form of a SID with n sub-authorities:
// "S-1-", a 14-character authority, then "-" and 10 digits each.
func maxLen(n int) int { return 4 + 14 + 11*n }

// errNotBinary: the bytes are not a binary SID.
var errNotBinary = errors.New("not a binary SID")

// AppendBinary appends the string form of the binary SID b (see
// FromBinary) to dst. A PAC's RPC_SID, after its conformant count, is laid
// out the same way.
func AppendBinary(dst, b []byte) ([]byte, error) {
	if !ValidBinary(b) {
		return dst, errNotBinary
	}
	dst = append(dst, "S-1-"...)
	dst = appendAuthority(dst, Authority([6]byte(b[2:8])))
	for i := 8; i < len(b); i += 4 {
		dst = append(dst, '-')
		dst = strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint32(b[i:])), 10)
	}
	return dst, nil
}

// ValidBinary reports whether b is a whole binary SID (see FromBinary) of
// revision 1 with at most 15 sub-authorities, and nothing after it.
func ValidBinary(b []byte) bool {
	return len(b) >= 8 && b[0] == 1 && b[1] <= 15 && len(b) == 8+4*int(b[1])
}
