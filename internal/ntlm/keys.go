package ntlm

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rc4"
	"fmt"
	"strings"
)

// policy refuses, before the domain is asked, what this package never
// accepts: anonymous logins, NTLMv1 and LM-only responses, and anything
// not parsed by ParseAuthenticate.
func (a *Authenticate) policy() error {
	lmEmpty := len(a.LMResponse) == 0 || (len(a.LMResponse) == 1 && a.LMResponse[0] == 0)
	switch {
	case a.Flags&FlagAnonymous != 0:
		return fmt.Errorf("%w: the AUTHENTICATE sets NTLMSSP_NEGOTIATE_ANONYMOUS", ErrAnonymous)
	case a.User == "":
		return fmt.Errorf("%w: no user name", ErrAnonymous)
	case len(a.NTResponse) == 0 && lmEmpty:
		return fmt.Errorf("%w: no response", ErrAnonymous)
	case len(a.NTResponse) == 0:
		return fmt.Errorf("%w: an LM response only", ErrNTLMv1)
	case len(a.NTResponse) == 24:
		return fmt.Errorf("%w: a 24-byte NTLMv1 response", ErrNTLMv1)
	case a.v2 == nil:
		return fmt.Errorf("%w: an NTLMv2 response not read by ParseAuthenticate", ErrMalformed)
	case strings.ContainsRune(a.User, '\\'):
		// winbind would split DOMAIN\user itself, and check a user of
		// another domain than the one the caller sees in a.Domain.
		return fmt.Errorf("%w: a backslash in the user name", ErrMalformed)
	}
	return nil
}

// exportedSessionKey derives the key the client signs with from the
// NTLMv2 session base key the domain returns ([MS-NLMP] 3.4.5.1,
// 3.2.5.1.2): for NTLMv2 the key exchange key is the session base key,
// and with NTLMSSP_NEGOTIATE_KEY_EXCH the client's random key comes
// encrypted under it.
func exportedSessionKey(c Challenge, a *Authenticate, sessionBaseKey []byte) ([]byte, error) {
	if c.Flags&a.Flags&FlagKeyExch == 0 {
		return sessionBaseKey, nil
	}
	if len(a.EncryptedSessionKey) != 16 {
		return nil, fmt.Errorf("%w: key exchange negotiated, but the AUTHENTICATE has no encrypted session key", ErrMalformed)
	}
	ciph, err := rc4.NewCipher(sessionBaseKey)
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	k := make([]byte, 16)
	ciph.XORKeyStream(k, a.EncryptedSessionKey)
	return k, nil
}

// checkMIC verifies the AUTHENTICATE's MIC: HMAC-MD5 under the exported
// session key of NEGOTIATE, CHALLENGE and AUTHENTICATE with its MIC
// zeroed ([MS-NLMP] 3.1.5.1.2). It binds the flags and target info the
// server sent to the response the domain accepted.
func checkMIC(c Challenge, a *Authenticate, key []byte) error {
	if len(c.negotiate) == 0 || len(c.challenge) == 0 {
		return fmt.Errorf("%w: the Challenge does not hold the messages the MIC covers (not made by Server.Challenge)", ErrMIC)
	}
	m := hmac.New(md5.New, key)
	m.Write(c.negotiate)
	m.Write(c.challenge)
	m.Write(a.raw[:authMICAt])
	m.Write(make([]byte, authMICEnd-authMICAt))
	m.Write(a.raw[authMICEnd:])
	if !hmac.Equal(m.Sum(nil), a.MIC) {
		return fmt.Errorf("%w: the AUTHENTICATE's MIC does not match the messages", ErrMIC)
	}
	return nil
}

// Magic constants of the key derivation ([MS-NLMP] 3.4.5.2, 3.4.5.3).
const (
	clientSignMagic = "session key to client-to-server signing key magic constant\x00"
	serverSignMagic = "session key to server-to-client signing key magic constant\x00"
	clientSealMagic = "session key to client-to-server sealing key magic constant\x00"
	serverSealMagic = "session key to server-to-client sealing key magic constant\x00"
)

// gssMIC is NTLM's GSS_GetMIC of msg with sequence number 0, the first
// message signed in a direction, as SPNEGO's mechListMIC is
// ([MS-NLMP] 3.4.4.2, with extended session security): version 1, the
// first 8 bytes of HMAC-MD5 under the signing key of seq and msg —
// encrypted with RC4 under the sealing key when the client exchanged
// keys — and seq.
func gssMIC(exportedKey []byte, flags uint32, fromClient bool, msg []byte) ([]byte, error) {
	if flags&FlagExtendedSessionSecurity == 0 {
		return nil, fmt.Errorf("%w: signing without extended session security (NTLMv1-era signing) is not supported", ErrMIC)
	}
	signMagic, sealMagic := serverSignMagic, serverSealMagic
	if fromClient {
		signMagic, sealMagic = clientSignMagic, clientSealMagic
	}
	signKey := md5.Sum(append(append([]byte(nil), exportedKey...), signMagic...))
	const seq = 0
	seqBytes := []byte{seq, 0, 0, 0}
	m := hmac.New(md5.New, signKey[:])
	m.Write(seqBytes)
	m.Write(msg)
	checksum := m.Sum(nil)[:8]
	if flags&FlagKeyExch != 0 {
		// The sealing key is weakened to the negotiated strength
		// ([MS-NLMP] 3.4.5.3).
		k := exportedKey
		switch {
		case flags&Flag128 != 0:
		case flags&Flag56 != 0:
			k = k[:7]
		default:
			k = k[:5]
		}
		sealKey := md5.Sum(append(append([]byte(nil), k...), sealMagic...))
		ciph, err := rc4.NewCipher(sealKey[:])
		if err != nil {
			return nil, fmt.Errorf("sealing key: %w", err)
		}
		ciph.XORKeyStream(checksum, checksum)
	}
	sig := []byte{1, 0, 0, 0}
	sig = append(sig, checksum...)
	return append(sig, seqBytes...), nil
}
