package ntlm

import (
	"bytes"
	"crypto/hmac"
	"errors"
	"fmt"

	"github.com/iwalb/iwalb/internal/der"
)

// SPNEGO ([RFC 4178]) as browsers use it for NTLM under
// "Authorization: Negotiate": the first token is a NegTokenInit listing
// the client's mechanisms with, optimistically, the NEGOTIATE for the first
// one; the server answers a NegTokenResp carrying the CHALLENGE; the client
// a NegTokenResp carrying the AUTHENTICATE and, when integrity is wanted,
// a mechListMIC over the list of mechanisms it first sent (so that nobody
// can strike Kerberos from it on the way); the server ends with an
// accept-completed NegTokenResp and its own mechListMIC.
//
// The tokens are read here, not with gokrb5's spnego package, whose
// decoder re-encodes the mechanism list: the MIC covers the bytes the
// client sent.

// MaxSPNEGOSize is the largest SPNEGO token ParseSPNEGO reads. It is larger
// than MaxMessageSize so that a Kerberos token (which can carry a large
// PAC) is still told apart from NTLM, not refused.
const MaxSPNEGOSize = 64 << 10

var (
	oidSPNEGO  = []byte{0x2b, 0x06, 0x01, 0x05, 0x05, 0x02}                         // 1.3.6.1.5.5.2
	oidNTLMSSP = []byte{0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a} // 1.3.6.1.4.1.311.2.2.10
)

// NegState values of a NegTokenResp.
const (
	NegAcceptCompleted  = 0
	NegAcceptIncomplete = 1
	NegReject           = 2
	NegRequestMIC       = 3
)

// SPNEGO is what ParseSPNEGO reads of a client's SPNEGO token.
type SPNEGO struct {
	// Init says the token is a NegTokenInit (the client's first);
	// otherwise it is a NegTokenResp.
	Init bool
	// MechTypes is the DER MechTypeList of a NegTokenInit, as sent: what
	// the mechListMICs cover.
	MechTypes []byte
	// NTLMPreferred says NTLMSSP is the first mechanism of MechTypes;
	// NTLMOffered that it is one of them.
	NTLMPreferred, NTLMOffered bool
	// Token is the mechToken of a NegTokenInit or the responseToken of a
	// NegTokenResp, nil when absent: for NTLM, an NTLMSSP message.
	Token []byte
	// MechListMIC is the client's mechListMIC, nil when absent.
	MechListMIC []byte
	// NegState is the negState of a NegTokenResp, -1 when absent.
	NegState int
}

// ParseSPNEGO reads a SPNEGO token from a client: a NegTokenInit in its
// GSS-API framing, or a NegTokenResp. It checks every length and refuses
// trailing bytes, fields out of order and tokens over MaxSPNEGOSize with
// ErrMalformed. It does not look inside Token.
func ParseSPNEGO(b []byte) (*SPNEGO, error) {
	if len(b) > MaxSPNEGOSize {
		return nil, fmt.Errorf("%w: SPNEGO token of %d bytes, more than %d", ErrMalformed, len(b), MaxSPNEGOSize)
	}
	tag, content, rest, err := der.ReadTLV(b)
	if err != nil {
		return nil, fmt.Errorf("%w: SPNEGO: %w", ErrMalformed, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: SPNEGO: %d bytes after the token", ErrMalformed, len(rest))
	}
	s := &SPNEGO{NegState: -1}
	switch tag {
	case 0x60: // [APPLICATION 0] { thisMech OID, NegotiationToken }
		otag, oid, inner, err := der.ReadTLV(content)
		if err != nil || otag != 0x06 || !bytes.Equal(oid, oidSPNEGO) {
			return nil, fmt.Errorf("%w: a GSS-API token that is not SPNEGO", ErrMalformed)
		}
		itag, icontent, irest, err := der.ReadTLV(inner)
		if err != nil || itag != 0xa0 || len(irest) != 0 {
			return nil, fmt.Errorf("%w: SPNEGO: the initial token holds no NegTokenInit", ErrMalformed)
		}
		err = s.parseInit(icontent)
		return s, err
	case 0xa0:
		err = s.parseInit(content)
		return s, err
	case 0xa1:
		err = s.parseResp(content)
		return s, err
	}
	return nil, fmt.Errorf("%w: not a SPNEGO token (tag 0x%02x)", ErrMalformed, tag)
}

// fields reads a SEQUENCE of context-tagged fields [0]..[max], each at
// most once and in order, calling fn with each field's number and its
// single inner element.
func fields(b []byte, max int, fn func(n int, tag byte, content, full []byte) error) error {
	tag, seq, rest, err := der.ReadTLV(b)
	if err != nil {
		return err
	}
	if tag != 0x30 || len(rest) != 0 {
		return errors.New("not a single SEQUENCE")
	}
	last := -1
	for len(seq) > 0 {
		ftag, fcontent, frest, err := der.ReadTLV(seq)
		if err != nil {
			return err
		}
		n := int(ftag) - 0xa0
		if n <= last || n > max {
			return fmt.Errorf("field tag 0x%02x out of order or unknown", ftag)
		}
		last = n
		itag, icontent, irest, err := der.ReadTLV(fcontent)
		if err != nil {
			return fmt.Errorf("field [%d]: %w", n, err)
		}
		if len(irest) != 0 {
			return fmt.Errorf("field [%d]: bytes after its value", n)
		}
		if err := fn(n, itag, icontent, fcontent); err != nil {
			return fmt.Errorf("field [%d]: %w", n, err)
		}
		seq = frest
	}
	return nil
}

// parseInit reads NegTokenInit ::= SEQUENCE { mechTypes [0] MechTypeList,
// reqFlags [1] ContextFlags OPTIONAL, mechToken [2] OCTET STRING OPTIONAL,
// mechListMIC [3] OCTET STRING OPTIONAL }.
func (s *SPNEGO) parseInit(b []byte) error {
	s.Init = true
	err := fields(b, 3, func(n int, tag byte, content, full []byte) error {
		switch n {
		case 0:
			if tag != 0x30 {
				return errors.New("mechTypes is not a SEQUENCE")
			}
			for i, rest := 0, content; len(rest) > 0; i++ {
				otag, oid, r, err := der.ReadTLV(rest)
				if err != nil || otag != 0x06 || len(oid) == 0 {
					return errors.New("mechTypes holds something else than OIDs")
				}
				if bytes.Equal(oid, oidNTLMSSP) {
					s.NTLMOffered = true
					s.NTLMPreferred = s.NTLMPreferred || i == 0
				}
				rest = r
			}
			if len(content) == 0 {
				return errors.New("no mechTypes")
			}
			s.MechTypes = bytes.Clone(full)
		case 1:
			if tag != 0x03 {
				return errors.New("reqFlags is not a BIT STRING")
			}
		case 2, 3:
			return s.tokenOrMIC(n, tag, content)
		}
		return nil
	})
	if err == nil && s.MechTypes == nil {
		err = errors.New("no mechTypes")
	}
	if err != nil {
		return fmt.Errorf("%w: SPNEGO NegTokenInit: %w", ErrMalformed, err)
	}
	return nil
}

// parseResp reads NegTokenResp ::= SEQUENCE { negState [0] ENUMERATED
// OPTIONAL, supportedMech [1] MechType OPTIONAL, responseToken [2] OCTET
// STRING OPTIONAL, mechListMIC [3] OCTET STRING OPTIONAL }.
func (s *SPNEGO) parseResp(b []byte) error {
	err := fields(b, 3, func(n int, tag byte, content, _ []byte) error {
		switch n {
		case 0:
			if tag != 0x0a || len(content) != 1 || content[0] > NegRequestMIC {
				return errors.New("negState is not an ENUMERATED of 0 to 3")
			}
			s.NegState = int(content[0])
		case 1:
			if tag != 0x06 {
				return errors.New("supportedMech is not an OID")
			}
		case 2, 3:
			return s.tokenOrMIC(n, tag, content)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: SPNEGO NegTokenResp: %w", ErrMalformed, err)
	}
	return nil
}

// tokenOrMIC reads field 2 (the mechanism's token) or 3 (mechListMIC),
// both OCTET STRINGs, of a NegTokenInit or a NegTokenResp.
func (s *SPNEGO) tokenOrMIC(n int, tag byte, content []byte) error {
	if tag != 0x04 {
		return errors.New("not an OCTET STRING")
	}
	if n == 2 {
		s.Token = bytes.Clone(content)
	} else {
		s.MechListMIC = bytes.Clone(content)
	}
	return nil
}

// UnwrapSPNEGO returns the NTLMSSP message a SPNEGO token carries, or nil
// (and no error) when it carries none, such as a Kerberos token, or a
// NegTokenInit that only lists NTLMSSP after another mechanism.
func UnwrapSPNEGO(b []byte) ([]byte, error) {
	s, err := ParseSPNEGO(b)
	if err != nil {
		return nil, err
	}
	if !IsMessage(s.Token) {
		return nil, nil
	}
	return s.Token, nil
}

// UseSPNEGO records, in the Challenge of an exchange wrapped in SPNEGO, the
// client's NegTokenInit: its mechanism list, which the mechListMICs of
// AcceptSPNEGO cover, and whether NTLMSSP came first (if not, RFC 4178
// requires those MICs).
func (c *Challenge) UseSPNEGO(init *SPNEGO) {
	c.spnego = true
	c.mechTypes = bytes.Clone(init.MechTypes)
	c.ntlmPreferred = init.NTLMPreferred
}

// WrapChallenge wraps a CHALLENGE message in the server's first
// NegTokenResp: accept-incomplete, supportedMech NTLMSSP.
func WrapChallenge(chal []byte) []byte {
	return negTokenResp(NegAcceptIncomplete, oidNTLMSSP, chal, nil)
}

// WrapSelectNTLM returns the server's first NegTokenResp for a
// NegTokenInit that offers NTLMSSP but whose optimistic token is for
// another mechanism the server does not take (Kerberos for a name it has no
// key of): request-mic (RFC 4178 §4.2.2: the MICs are due, as NTLMSSP was
// not the client's first choice), supportedMech NTLMSSP, no token. The
// client answers with an NTLM NEGOTIATE in a NegTokenResp; keep the
// NegTokenInit for Challenge.UseSPNEGO.
func WrapSelectNTLM() []byte {
	return negTokenResp(NegRequestMIC, oidNTLMSSP, nil, nil)
}

// WrapAccept returns the final NegTokenResp, accept-completed, without a
// mechListMIC: for an exchange whose client needs none. AcceptSPNEGO knows
// when one is needed; use it.
func WrapAccept() []byte {
	return negTokenResp(NegAcceptCompleted, nil, nil, nil)
}

// AcceptSPNEGO ends an exchange wrapped in SPNEGO once Verify accepted the
// AUTHENTICATE that resp carried: it checks the client's mechListMIC and
// returns the final NegTokenResp (accept-completed) with the server's.
//
// As Samba's server does, it requires the MICs when NTLM signing was
// negotiated (without it no MIC can be made) and either NTLMSSP was not the
// client's first mechanism (RFC 4178 §5) or the AUTHENTICATE carried a MIC
// (such a client checks the server's); a client that sends one anyway gets
// it checked and answered. A missing or wrong MIC is ErrMIC: the mechanism
// list was changed on the way. c must have been given the client's
// NegTokenInit (Challenge.UseSPNEGO).
func (id Identity) AcceptSPNEGO(c Challenge, resp *SPNEGO) ([]byte, error) {
	if !c.spnego {
		return nil, errors.New("SPNEGO accept for an exchange whose NegTokenInit was not recorded (Challenge.UseSPNEGO)")
	}
	var clientMIC []byte
	if resp != nil {
		clientMIC = resp.MechListMIC
	}
	signing := id.flags&FlagSign != 0
	needed := signing && (!c.ntlmPreferred || id.authMIC)
	if clientMIC == nil && !needed {
		return WrapAccept(), nil
	}
	if clientMIC == nil {
		why := "the AUTHENTICATE had a MIC"
		if !c.ntlmPreferred {
			why = "NTLMSSP was not the client's first mechanism"
		}
		return nil, fmt.Errorf("%w: no mechListMIC from a signing client, required as %s", ErrMIC, why)
	}
	if id.sessionKey == nil {
		return nil, fmt.Errorf("%w: no session key to check the mechListMIC with", ErrMIC)
	}
	want, err := gssMIC(id.sessionKey, id.flags, true, c.mechTypes)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(clientMIC, want) {
		return nil, fmt.Errorf("%w: the client's mechListMIC does not match the mechanism list the server received", ErrMIC)
	}
	mic, err := gssMIC(id.sessionKey, id.flags, false, c.mechTypes)
	if err != nil {
		return nil, err
	}
	return negTokenResp(NegAcceptCompleted, nil, nil, mic), nil
}

// negTokenResp encodes a NegTokenResp: [1] SEQUENCE { [0] negState,
// [1] supportedMech, [2] responseToken, [3] mechListMIC }, the last three
// when not nil.
func negTokenResp(state int, mech, token, mic []byte) []byte {
	var seq []byte
	seq = der.AppendTLV(seq, 0xa0, der.AppendTLV(nil, 0x0a, []byte{byte(state)}))
	if mech != nil {
		seq = der.AppendTLV(seq, 0xa1, der.AppendTLV(nil, 0x06, mech))
	}
	if token != nil {
		seq = der.AppendTLV(seq, 0xa2, der.AppendTLV(nil, 0x04, token))
	}
	if mic != nil {
		seq = der.AppendTLV(seq, 0xa3, der.AppendTLV(nil, 0x04, mic))
	}
	return der.AppendTLV(nil, 0xa1, der.AppendTLV(nil, 0x30, seq))
}
