package ntlm

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Server is the identity a node's CHALLENGE messages announce. Its zero
// value is not usable: Domain and Computer are required. It holds no state between
// calls, so one Server serves every connection.
type Server struct {
	// Domain is the NetBIOS name of the domain (EXAMPLE): the target name,
	// and MsvAvNbDomainName.
	Domain string
	// DNSDomain is the DNS name of the domain (example.test).
	DNSDomain string
	// Computer is this server's NetBIOS name (AUTH1), at most 15
	// characters; required.
	Computer string
	// DNSComputer is this server's DNS name (auth1.example.test).
	DNSComputer string
	// Rand is the source of server challenges; nil means crypto/rand.
	Rand io.Reader
	// Now is the clock of the CHALLENGE's timestamp; nil means time.Now.
	Now func() time.Time
}

// Challenge is what a server must remember between the CHALLENGE it sent
// on a connection and the AUTHENTICATE that answers it: the random server
// challenge, the flags it agreed to, and the two messages, over which the
// client computes its MIC. It is a value: keep it with the connection,
// use it once.
type Challenge struct {
	// ServerChallenge is the 8 random bytes the client's response proves
	// knowledge of the password against.
	ServerChallenge [8]byte
	// Flags are the negotiate flags of the CHALLENGE.
	Flags uint32

	negotiate []byte
	challenge []byte

	// Of the NegTokenInit, when the exchange is wrapped in SPNEGO.
	spnego        bool
	mechTypes     []byte
	ntlmPreferred bool
}

// Flags the server agrees to when the client asks for them. Not LM_KEY
// (LM is refused), not DATAGRAM or IDENTIFY (not used over HTTP).
const echoedFlags = FlagRequestTarget | FlagSign | FlagSeal | FlagAlwaysSign |
	FlagExtendedSessionSecurity | FlagVersion | Flag128 | FlagKeyExch | Flag56

// serverVersion is the Version field of the CHALLENGE ([MS-NLMP] 2.2.2.10):
// 10.0 build 20348 (Windows Server 2022), NTLMSSP revision 15. Clients only
// read it for debugging.
var serverVersion = []byte{10, 0, 0x4c, 0x4f, 0, 0, 0, 15}

// Challenge returns a CHALLENGE message answering neg, with a fresh server
// challenge, and the Challenge to keep for the AUTHENTICATE.
func (s *Server) Challenge(neg *Negotiate) (msg []byte, c Challenge, err error) {
	if neg == nil {
		return nil, Challenge{}, errors.New("NTLM challenge without a NEGOTIATE message")
	}
	if err := s.check(); err != nil {
		return nil, Challenge{}, err
	}
	r := s.Rand
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, c.ServerChallenge[:]); err != nil {
		return nil, Challenge{}, fmt.Errorf("NTLM server challenge: %w", err)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}

	flags := FlagNTLM | FlagTargetInfo | FlagTargetTypeDomain | neg.Flags&echoedFlags
	// Unicode when the client can; OEM otherwise ([MS-NLMP] 3.2.5.1.1).
	if neg.Flags&FlagUnicode != 0 {
		flags |= FlagUnicode
	} else {
		flags |= FlagOEM
	}
	c.Flags = flags

	target := encodeString(s.Domain, flags&FlagUnicode != 0)
	info := s.targetInfo(now())
	const hdr = 56
	msg = make([]byte, hdr, hdr+len(target)+len(info))
	copy(msg, signature)
	binary.LittleEndian.PutUint32(msg[8:], uint32(TypeChallenge))
	putField(msg[12:], len(target), hdr)
	binary.LittleEndian.PutUint32(msg[20:], flags)
	copy(msg[24:32], c.ServerChallenge[:])
	putField(msg[40:], len(info), hdr+len(target))
	if flags&FlagVersion != 0 {
		copy(msg[48:56], serverVersion)
	}
	msg = append(msg, target...)
	msg = append(msg, info...)

	c.negotiate = neg.raw
	c.challenge = msg
	return bytes.Clone(msg), c, nil
}

// check refuses names that cannot go into a CHALLENGE: the target name
// may be sent in the OEM character set, where only ASCII is meaningful.
func (s *Server) check() error {
	// [MS-NLMP] 2.2.2.1: the NetBIOS names MUST be in the target info.
	if s.Domain == "" || s.Computer == "" {
		return errors.New("NTLM server: the NetBIOS domain and computer names are required")
	}
	for _, f := range []struct{ name, v string }{
		{"domain", s.Domain}, {"DNS domain", s.DNSDomain}, {"computer", s.Computer}, {"DNS computer", s.DNSComputer},
	} {
		if len(f.v) > 255 {
			return fmt.Errorf("NTLM server: %s name of %d bytes, more than 255", f.name, len(f.v))
		}
		for _, c := range []byte(f.v) {
			if c <= 0x20 || c >= 0x7f {
				return fmt.Errorf("NTLM server: %s name %q is not printable ASCII", f.name, f.v)
			}
		}
	}
	return nil
}

// targetInfo returns the AV pairs of the CHALLENGE. The timestamp makes
// clients compute a MIC over the three messages ([MS-NLMP] 3.1.5.1.2),
// which Verify checks.
func (s *Server) targetInfo(now time.Time) []byte {
	var b []byte
	add := func(id uint16, v []byte) {
		b = binary.LittleEndian.AppendUint16(b, id)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
		b = append(b, v...)
	}
	addName := func(id uint16, s string) {
		if s != "" {
			add(id, utf16le(s))
		}
	}
	addName(avNbDomainName, s.Domain)
	addName(avNbComputerName, s.Computer)
	addName(avDNSDomainName, s.DNSDomain)
	addName(avDNSComputerName, s.DNSComputer)
	addName(avDNSTreeName, s.DNSDomain)
	add(avTimestamp, binary.LittleEndian.AppendUint64(nil, fileTime(now)))
	add(avEOL, nil)
	return b
}

// fileTime is t as a Windows FILETIME: 100 ns ticks since 1601-01-01 UTC.
func fileTime(t time.Time) uint64 {
	const epochDelta = 116444736000000000 // 1601 to 1970 in 100 ns ticks
	return uint64(t.UnixNano()/100 + epochDelta)
}

// putField writes a (length, max length, offset) triple.
func putField(b []byte, n, off int) {
	binary.LittleEndian.PutUint16(b, uint16(n))
	binary.LittleEndian.PutUint16(b[2:], uint16(n))
	binary.LittleEndian.PutUint32(b[4:], uint32(off))
}
