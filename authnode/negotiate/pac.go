package negotiate

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/jcmturner/gokrb5/v8/crypto"
	"github.com/jcmturner/gokrb5/v8/iana/chksumtype"
	"github.com/jcmturner/gokrb5/v8/iana/keyusage"
	"github.com/jcmturner/gokrb5/v8/types"
)

// The PAC ([MS-PAC] 2.3, 2.4): a PACTYPE header (the count of buffers and
// the version), a PAC_INFO_BUFFER per buffer (type, size, offset), then
// the buffers. Types that are not understood are ignored; of each type
// that is, the first buffer counts and later ones are ignored (as the
// specification says of logon info, and as gokrb5 did).
const (
	pacLogonInfo      = 1  // KERB_VALIDATION_INFO, in NDR (2.5)
	pacServerChecksum = 6  // PAC_SIGNATURE_DATA with the service key (2.8)
	pacKDCChecksum    = 7  // PAC_SIGNATURE_DATA with the KDC's key (2.8)
	pacClientInfo     = 10 // PAC_CLIENT_INFO (2.7)

	pacHeaderLen     = 8
	pacInfoBufferLen = 16
	pacAlign         = 8
)

// pacBuffer is one PAC_INFO_BUFFER, its data checked to lie within the PAC.
type pacBuffer struct {
	index    int // in the PAC's list, for messages
	typ      uint32
	off, end int
}

// parsePAC checks the PAC b of a ticket decrypted with key and returns its
// logon info. The buffers must lie after the header, each on an 8-byte
// boundary, within b and apart from each other; the server signature is
// checked before the logon info is decoded. Every error says what is
// wrong with the PAC; none quotes more than a few numbers of it.
func parsePAC(b []byte, key types.EncryptionKey) (logonInfo, error) {
	bufs, err := pacBuffers(b)
	if err != nil {
		return logonInfo{}, err
	}
	var first [pacClientInfo + 1]*pacBuffer
	for i := range bufs {
		if t := bufs[i].typ; t < uint32(len(first)) && first[t] == nil {
			first[t] = &bufs[i]
		}
	}
	for _, t := range []struct {
		typ  uint32
		name string
	}{{pacLogonInfo, "logon info"}, {pacServerChecksum, "server signature"}, {pacKDCChecksum, "KDC signature"}, {pacClientInfo, "client info"}} {
		if first[t.typ] == nil {
			return logonInfo{}, fmt.Errorf("PAC has no %s buffer (type %d)", t.name, t.typ)
		}
	}
	if err := checkClientInfo(b[first[pacClientInfo].off:first[pacClientInfo].end]); err != nil {
		return logonInfo{}, err
	}
	if err := verifyServerSignature(b, *first[pacServerChecksum], *first[pacKDCChecksum], key); err != nil {
		return logonInfo{}, err
	}
	li := first[pacLogonInfo]
	k, err := decodeLogonInfo(b[li.off:li.end])
	if err != nil {
		return logonInfo{}, fmt.Errorf("PAC logon info: %w", err)
	}
	return k, nil
}

// pacBuffers reads the PACTYPE header and its PAC_INFO_BUFFERs, sorted by
// offset, in time linear in len(b) (sorting aside): there can be no more
// entries than fit in b.
func pacBuffers(b []byte) ([]pacBuffer, error) {
	if len(b) < pacHeaderLen {
		return nil, fmt.Errorf("PAC of %d bytes is shorter than its header", len(b))
	}
	n, version := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
	if version != 0 {
		return nil, fmt.Errorf("PAC version %d, want 0", version)
	}
	if n == 0 || uint64(n) > uint64(len(b)-pacHeaderLen)/pacInfoBufferLen {
		return nil, fmt.Errorf("PAC of %d bytes claims %d buffers", len(b), n)
	}
	dataStart := uint64(pacHeaderLen + pacInfoBufferLen*int(n))
	bufs := make([]pacBuffer, n)
	for i := range bufs {
		e := b[pacHeaderLen+pacInfoBufferLen*i:]
		typ, size, off := binary.LittleEndian.Uint32(e), uint64(binary.LittleEndian.Uint32(e[4:])), binary.LittleEndian.Uint64(e[8:])
		if off%pacAlign != 0 {
			return nil, fmt.Errorf("PAC buffer %d (type %d) at offset %d, not on an 8-byte boundary", i, typ, off)
		}
		if off < dataStart || off > uint64(len(b)) || size > uint64(len(b))-off {
			return nil, fmt.Errorf("PAC buffer %d (type %d) of %d bytes at offset %d is not within the %d bytes after the PAC's header", i, typ, size, off, uint64(len(b))-dataStart)
		}
		bufs[i] = pacBuffer{index: i, typ: typ, off: int(off), end: int(off + size)}
	}
	slices.SortFunc(bufs, func(x, y pacBuffer) int { return cmp.Compare(x.off, y.off) })
	for i := 1; i < len(bufs); i++ {
		if p, q := bufs[i-1], bufs[i]; p.end > q.off {
			return nil, fmt.Errorf("PAC buffers %d (type %d) and %d (type %d) overlap", p.index, p.typ, q.index, q.typ)
		}
	}
	return bufs, nil
}

// checkClientInfo checks that PAC_CLIENT_INFO ([MS-PAC] 2.7) holds its
// name: a FILETIME, the name's length in bytes, the UTF-16 name. iwalb
// takes the client's name from the ticket, but a PAC whose client info
// is cut short is refused, as gokrb5 did.
func checkClientInfo(b []byte) error {
	if len(b) < 10 {
		return fmt.Errorf("PAC client info of %d bytes is shorter than its fixed part", len(b))
	}
	if n := int(binary.LittleEndian.Uint16(b[8:])); n%2 != 0 || n > len(b)-10 {
		return fmt.Errorf("PAC client info has a name of %d bytes in %d", n, len(b)-10)
	}
	return nil
}

// errPACSignature: the server signature does not verify with the key that
// decrypted the ticket.
var errPACSignature = errors.New("PAC server signature does not verify with the service key")

// signatureSize is the length of the signature of each checksum type a
// PAC may be signed with ([MS-PAC] 2.8.1).
func signatureSize(typ int32) (int, bool) {
	switch typ {
	case chksumtype.KERB_CHECKSUM_HMAC_MD5:
		return 16, true
	case chksumtype.HMAC_SHA1_96_AES128, chksumtype.HMAC_SHA1_96_AES256:
		return 12, true
	}
	return 0, false
}

// signatureField returns the checksum type of the PAC_SIGNATURE_DATA in
// buf and where in the PAC its signature lies: after the 4-byte type, the
// signature, then, from a read-only DC, a 2-byte RODC identifier.
func signatureField(b []byte, buf pacBuffer, what string) (typ int32, off, end int, err error) {
	if buf.end-buf.off < 4 {
		return 0, 0, 0, fmt.Errorf("PAC %s of %d bytes has no checksum type", what, buf.end-buf.off)
	}
	typ = int32(binary.LittleEndian.Uint32(b[buf.off:]))
	n, ok := signatureSize(typ)
	if !ok {
		return 0, 0, 0, fmt.Errorf("PAC %s has checksum type %d; a PAC is signed with %d, %d or %d", what, typ,
			chksumtype.HMAC_SHA1_96_AES256, chksumtype.HMAC_SHA1_96_AES128, chksumtype.KERB_CHECKSUM_HMAC_MD5)
	}
	if size := buf.end - buf.off; size != 4+n && size != 4+n+2 {
		return 0, 0, 0, fmt.Errorf("PAC %s of checksum type %d is %d bytes, want %d or %d", what, typ, size, 4+n, 4+n+2)
	}
	return typ, buf.off + 4, buf.off + 4 + n, nil
}

// verifyServerSignature checks the PAC's server signature ([MS-PAC]
// 2.8.1, [MS-KILE] 3.4.5.3) as gokrb5 did: the keyed checksum, with the
// service key and key usage 17, of the whole PAC with the signatures of
// the server and KDC signature buffers zeroed. The checksum type must be
// the one of the service key's enctype; the KDC signature (made with the
// KDC's own key) cannot be checked here, but its type must be known, or
// its length would not be.
func verifyServerSignature(b []byte, srv, kdc pacBuffer, key types.EncryptionKey) error {
	typ, sOff, sEnd, err := signatureField(b, srv, "server signature")
	if err != nil {
		return err
	}
	_, kOff, kEnd, err := signatureField(b, kdc, "KDC signature")
	if err != nil {
		return err
	}
	et, err := crypto.GetEtype(key.KeyType)
	if err != nil {
		return fmt.Errorf("PAC server signature: service key of enctype %d: %v", key.KeyType, err)
	}
	if want := et.GetHashID(); typ != want {
		return fmt.Errorf("PAC server signature has checksum type %d; the service key (%s) signs with %d", typ, etypeLabel(key.KeyType), want)
	}
	ck, err := crypto.GetChksumEtype(typ)
	if err != nil {
		return fmt.Errorf("PAC server signature of checksum type %d: %v", typ, err)
	}
	zeroed := bytes.Clone(b)
	clear(zeroed[sOff:sEnd])
	clear(zeroed[kOff:kEnd])
	sum, err := ck.GetChecksumHash(key.KeyValue, zeroed, keyusage.KERB_NON_KERB_CKSUM_SALT)
	if err != nil {
		return fmt.Errorf("PAC server signature of checksum type %d: %v", typ, err)
	}
	if !hmac.Equal(sum, b[sOff:sEnd]) {
		return errPACSignature
	}
	return nil
}
