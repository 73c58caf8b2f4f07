package ntlm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"unicode/utf16"
	"unicode/utf8"
)

// Type is the MessageType field of an NTLMSSP message.
type Type uint32

// The three NTLMSSP message types.
const (
	TypeNegotiate    Type = 1
	TypeChallenge    Type = 2
	TypeAuthenticate Type = 3
)

// Negotiate flags ([MS-NLMP] 2.2.2.5) this package reads or sets.
const (
	FlagUnicode                 uint32 = 0x00000001
	FlagOEM                     uint32 = 0x00000002
	FlagRequestTarget           uint32 = 0x00000004
	FlagSign                    uint32 = 0x00000010
	FlagSeal                    uint32 = 0x00000020
	FlagLMKey                   uint32 = 0x00000080
	FlagNTLM                    uint32 = 0x00000200
	FlagAnonymous               uint32 = 0x00000800
	FlagOEMDomainSupplied       uint32 = 0x00001000
	FlagOEMWorkstationSupplied  uint32 = 0x00002000
	FlagAlwaysSign              uint32 = 0x00008000
	FlagTargetTypeDomain        uint32 = 0x00010000
	FlagExtendedSessionSecurity uint32 = 0x00080000
	FlagTargetInfo              uint32 = 0x00800000
	FlagVersion                 uint32 = 0x02000000
	Flag128                     uint32 = 0x20000000
	FlagKeyExch                 uint32 = 0x40000000
	Flag56                      uint32 = 0x80000000
)

// MaxMessageSize is the largest NTLMSSP message accepted. Real AUTHENTICATE
// messages are well under 2 KiB (their NTLMv2 response repeats the
// CHALLENGE's target info and adds a few fields); anything larger is refused
// before it is parsed.
const MaxMessageSize = 16 << 10

// maxNameBytes bounds a user, domain or workstation name: 256 UTF-16 code
// units, more than any account name, UPN or DNS name.
const maxNameBytes = 512

var signature = []byte("NTLMSSP\x00")

// ErrMalformed is returned for a message that is not a well-formed NTLMSSP
// message of the expected type: bad signature, a field outside the message,
// a name with control characters or invalid UTF-16, or more than
// MaxMessageSize bytes.
var ErrMalformed = errors.New("malformed NTLM message")

// IsMessage reports whether b starts like an NTLMSSP message (signature
// and message type), whatever its type.
func IsMessage(b []byte) bool {
	return len(b) >= 12 && bytes.Equal(b[:8], signature)
}

// MessageType returns the type of the NTLMSSP message b, or 0 when b is not
// one.
func MessageType(b []byte) Type {
	if !IsMessage(b) {
		return 0
	}
	return Type(binary.LittleEndian.Uint32(b[8:12]))
}

// header checks the size, signature and type of b.
func header(b []byte, want Type, minLen int) error {
	if len(b) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, more than the %d accepted", ErrMalformed, len(b), MaxMessageSize)
	}
	if !IsMessage(b) {
		return fmt.Errorf("%w: no NTLMSSP signature", ErrMalformed)
	}
	if t := MessageType(b); t != want {
		return fmt.Errorf("%w: message type %d, want %d", ErrMalformed, t, want)
	}
	if len(b) < minLen {
		return fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrMalformed, len(b), minLen)
	}
	return nil
}

// field reads the (length, max length, offset) triple at b[at:] and returns
// the bytes it points to. A field of length 0 is empty whatever its offset
// says; a non-empty one must lie wholly after the fixed header (hdr bytes)
// and inside b.
func field(b []byte, at, hdr int, name string) ([]byte, error) {
	n := int(binary.LittleEndian.Uint16(b[at:]))
	off := int(binary.LittleEndian.Uint32(b[at+4:]))
	if n == 0 {
		return nil, nil
	}
	if off < hdr || off > len(b) || n > len(b)-off {
		return nil, fmt.Errorf("%w: %s field (%d bytes at offset %d) outside the %d-byte message", ErrMalformed, name, n, off, len(b))
	}
	return b[off : off+n], nil
}

// span is where a field of a message lies: bytes [from, to).
type span struct {
	from, to int
	name     string
}

// disjoint refuses fields that share bytes. Clients lay them out one after
// the other; overlapping ones would let a message of n bytes carry fields
// of several times n bytes, each copied and checked.
func disjoint(spans []span) error {
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.to > a.from && b.to > b.from && a.from < b.to && b.from < a.to {
				return fmt.Errorf("%w: %s field (offset %d to %d) overlaps %s field (offset %d to %d)", ErrMalformed, a.name, a.from, a.to, b.name, b.from, b.to)
			}
		}
	}
	return nil
}

// decodeString converts a name of a message to UTF-8: UTF-16LE when the
// message says Unicode, else the client's OEM code page. The OEM code page
// is not known here, so only ASCII is accepted in it: guessing one would
// send the domain another name than the client hashed. Control characters
// (including NUL, CR and LF) and unpaired surrogates are refused: a name
// goes on a line of the helper's protocol and into logs.
func decodeString(b []byte, unicode bool, name string) (string, error) {
	if len(b) > maxNameBytes {
		return "", fmt.Errorf("%w: %s of %d bytes, more than %d", ErrMalformed, name, len(b), maxNameBytes)
	}
	if !unicode {
		for _, c := range b {
			if c < 0x20 || c >= 0x7f {
				return "", fmt.Errorf("%w: %s in the OEM character set has byte 0x%02x (only printable ASCII is accepted there)", ErrMalformed, name, c)
			}
		}
		return string(b), nil
	}
	if len(b)%2 != 0 {
		return "", fmt.Errorf("%w: %s in UTF-16 has an odd length %d", ErrMalformed, name, len(b))
	}
	buf := make([]byte, 0, len(b)/2)
	for i := 0; i < len(b); i += 2 {
		r := rune(binary.LittleEndian.Uint16(b[i:]))
		if utf16.IsSurrogate(r) {
			if r >= 0xdc00 || i+4 > len(b) {
				return "", fmt.Errorf("%w: %s has an unpaired UTF-16 surrogate", ErrMalformed, name)
			}
			r2 := rune(binary.LittleEndian.Uint16(b[i+2:]))
			r = utf16.DecodeRune(r, r2)
			if r == utf8.RuneError {
				return "", fmt.Errorf("%w: %s has an unpaired UTF-16 surrogate", ErrMalformed, name)
			}
			i += 2
		}
		if r < 0x20 || (r >= 0x7f && r < 0xa0) {
			return "", fmt.Errorf("%w: %s has the control character U+%04X", ErrMalformed, name, r)
		}
		buf = utf8.AppendRune(buf, r)
	}
	return string(buf), nil
}

// encodeString is decodeString's inverse for the names this package writes
// (which are checked to be printable beforehand).
func encodeString(s string, unicode bool) []byte {
	if !unicode {
		return []byte(s)
	}
	return utf16le(s)
}

func utf16le(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// Negotiate is a parsed NEGOTIATE message ([MS-NLMP] 2.2.1.1): the flags
// the client asks for and, rarely sent, its domain and workstation.
type Negotiate struct {
	Flags       uint32
	Domain      string
	Workstation string

	raw []byte // the message as received, for the MIC
}

// ParseNegotiate parses a NEGOTIATE message. It accepts the short forms old
// clients send (16 bytes: flags only).
func ParseNegotiate(b []byte) (*Negotiate, error) {
	if err := header(b, TypeNegotiate, 16); err != nil {
		return nil, err
	}
	n := &Negotiate{Flags: binary.LittleEndian.Uint32(b[12:]), raw: bytes.Clone(b)}
	if len(b) < 32 {
		return n, nil
	}
	// The names are OEM whatever the flags say ([MS-NLMP] 2.2.1.1), and
	// only read when their flag says they were supplied.
	var err error
	if n.Flags&FlagOEMDomainSupplied != 0 {
		if n.Domain, err = readName(b, 16, 32, false, "NEGOTIATE domain"); err != nil {
			return nil, err
		}
	}
	if n.Flags&FlagOEMWorkstationSupplied != 0 {
		if n.Workstation, err = readName(b, 24, 32, false, "NEGOTIATE workstation"); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func readName(b []byte, at, hdr int, unicode bool, name string) (string, error) {
	f, err := field(b, at, hdr, name)
	if err != nil {
		return "", err
	}
	return decodeString(f, unicode, name)
}

// Authenticate is a parsed AUTHENTICATE message ([MS-NLMP] 2.2.1.3). Its
// byte slices are copies, not views of the caller's buffer.
type Authenticate struct {
	User        string
	Domain      string
	Workstation string
	Flags       uint32

	LMResponse []byte
	NTResponse []byte
	// EncryptedSessionKey is the client's random session key encrypted
	// with the key exchange key (NTLMSSP_NEGOTIATE_KEY_EXCH), or empty.
	EncryptedSessionKey []byte
	// MIC is the message integrity code over the three messages, present
	// when the NTLMv2 response's MsvAvFlags says so; nil otherwise.
	MIC []byte

	// v2 is what was read from an NTLMv2 response, nil for anything else.
	v2  *ntlmv2Response
	raw []byte // the message as received, MIC included, for the MIC check
}

// String describes a without its responses and keys, which must never
// reach a log: an NTLMv2 response can be cracked offline.
func (a *Authenticate) String() string {
	return fmt.Sprintf("AUTHENTICATE for %q in domain %q from %q (flags %#x, NT response of %d bytes, MIC %t)",
		a.User, a.Domain, a.Workstation, a.Flags, len(a.NTResponse), a.MIC != nil)
}

// LogValue logs the names and flags only.
func (a *Authenticate) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", a.User), slog.String("domain", a.Domain),
		slog.String("workstation", a.Workstation), slog.String("flags", fmt.Sprintf("%#x", a.Flags)))
}

// Offsets in the AUTHENTICATE message.
const (
	authFixedLen = 64 // up to and with NegotiateFlags
	authMICAt    = 72 // after the 8-byte Version
	authMICEnd   = authMICAt + 16
)

// ParseAuthenticate parses an AUTHENTICATE message. It checks structure
// only: which responses are acceptable is Verify's policy.
func ParseAuthenticate(b []byte) (*Authenticate, error) {
	if err := header(b, TypeAuthenticate, authFixedLen); err != nil {
		return nil, err
	}
	a := &Authenticate{Flags: binary.LittleEndian.Uint32(b[60:])}
	unicode := a.Flags&FlagUnicode != 0
	var lm, nt, dom, user, ws, key []byte
	lowest := len(b) // where the payload starts: no field may lie before it
	var spans [6]span
	for _, f := range []struct {
		at   int
		dst  *[]byte
		name string
	}{
		{12, &lm, "LmChallengeResponse"},
		{20, &nt, "NtChallengeResponse"},
		{28, &dom, "DomainName"},
		{36, &user, "UserName"},
		{44, &ws, "Workstation"},
		{52, &key, "EncryptedRandomSessionKey"},
	} {
		v, err := field(b, f.at, authFixedLen, f.name)
		if err != nil {
			return nil, err
		}
		*f.dst = v
		if len(v) > 0 {
			off := int(binary.LittleEndian.Uint32(b[f.at+4:]))
			lowest = min(lowest, off)
			spans[(f.at-12)/8] = span{off, off + len(v), f.name}
		}
	}
	if err := disjoint(spans[:]); err != nil {
		return nil, err
	}
	var err error
	if a.Domain, err = decodeString(dom, unicode, "domain"); err != nil {
		return nil, err
	}
	if a.User, err = decodeString(user, unicode, "user name"); err != nil {
		return nil, err
	}
	if a.Workstation, err = decodeString(ws, unicode, "workstation"); err != nil {
		return nil, err
	}
	if len(key) != 0 && len(key) != 16 {
		return nil, fmt.Errorf("%w: encrypted session key of %d bytes, want 16", ErrMalformed, len(key))
	}
	a.LMResponse = bytes.Clone(lm)
	a.NTResponse = bytes.Clone(nt)
	a.EncryptedSessionKey = bytes.Clone(key)
	if len(nt) > 24 {
		if a.v2, err = parseNTLMv2(nt); err != nil {
			return nil, err
		}
		if a.v2.avFlags&avFlagMIC != 0 {
			// The MIC sits after the Version field, before the payload.
			if lowest < authMICEnd {
				return nil, fmt.Errorf("%w: MsvAvFlags announces a MIC, but the payload starts at offset %d", ErrMalformed, lowest)
			}
			a.MIC = bytes.Clone(b[authMICAt:authMICEnd])
		}
	}
	a.raw = bytes.Clone(b)
	return a, nil
}

// AV pair identifiers ([MS-NLMP] 2.2.2.1).
const (
	avEOL             = 0
	avNbComputerName  = 1
	avNbDomainName    = 2
	avDNSComputerName = 3
	avDNSDomainName   = 4
	avDNSTreeName     = 5
	avFlags           = 6
	avTimestamp       = 7
	avTargetName      = 9
	avChannelBindings = 10

	avFlagMIC = 0x2 // MsvAvFlags: the AUTHENTICATE carries a MIC
)

// ntlmv2Response is what Verify needs of an NTLMv2 response
// ([MS-NLMP] 2.2.2.8): the flags the client set in the AV pairs it signed.
type ntlmv2Response struct {
	avFlags uint32
}

// parseNTLMv2 checks the structure of an NTLMv2 response: the 16-byte
// NTProofStr, then the client's blob (version 1, timestamp, client
// challenge) and its AV pairs up to MsvAvEOL. The domain verifies the
// proof; this only makes sure the pairs Verify reads are well formed.
func parseNTLMv2(nt []byte) (*ntlmv2Response, error) {
	const blobAt = 16
	const pairsAt = blobAt + 28
	if len(nt) < pairsAt+4 {
		return nil, fmt.Errorf("%w: NT response of %d bytes is neither NTLMv1 (24) nor NTLMv2 (at least %d)", ErrMalformed, len(nt), pairsAt+4)
	}
	if nt[blobAt] != 1 || nt[blobAt+1] != 1 {
		return nil, fmt.Errorf("%w: NTLMv2 response version %d.%d, want 1.1", ErrMalformed, nt[blobAt], nt[blobAt+1])
	}
	r := &ntlmv2Response{}
	seenFlags := false
	p := nt[pairsAt:]
	for {
		if len(p) < 4 {
			return nil, fmt.Errorf("%w: NTLMv2 AV pairs end without MsvAvEOL", ErrMalformed)
		}
		id := binary.LittleEndian.Uint16(p)
		n := int(binary.LittleEndian.Uint16(p[2:]))
		if n > len(p)-4 {
			return nil, fmt.Errorf("%w: NTLMv2 AV pair %d of %d bytes overruns the response", ErrMalformed, id, n)
		}
		v := p[4 : 4+n]
		p = p[4+n:]
		switch id {
		case avEOL:
			if n != 0 {
				return nil, fmt.Errorf("%w: MsvAvEOL with %d bytes", ErrMalformed, n)
			}
			return r, nil
		case avFlags:
			if n != 4 || seenFlags {
				return nil, fmt.Errorf("%w: MsvAvFlags of %d bytes or twice", ErrMalformed, n)
			}
			seenFlags = true
			r.avFlags = binary.LittleEndian.Uint32(v)
		}
	}
}
