package negotiate

import (
	"bytes"
	"fmt"

	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/asn1tools"
	"github.com/jcmturner/gokrb5/v8/spnego"

	"github.com/iwalb/iwalb/internal/der"
)

// Object identifiers of the mechanisms a Negotiate blob may name.
var (
	oidSPNEGO  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 2}
	oidKRB5    = asn1.ObjectIdentifier{1, 2, 840, 113554, 1, 2, 2}
	oidMSKRB5  = asn1.ObjectIdentifier{1, 2, 840, 48018, 1, 2, 2}
	oidNTLMSSP = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 2, 10}
	ntlmSig    = []byte("NTLMSSP\x00")
	tokIDAPReq = []byte{0x01, 0x00}
	tokIDAPRep = []byte{0x02, 0x00}
)

func isKRB5(oid asn1.ObjectIdentifier) bool {
	return oid.Equal(oidKRB5) || oid.Equal(oidMSKRB5)
}

// splitGSS parses the RFC 2743 §3.1 InitialContextToken framing
// ([APPLICATION 0] { thisMech OID, innerToken }) and returns the mech and
// the inner token.
func splitGSS(b []byte) (asn1.ObjectIdentifier, []byte, error) {
	tag, content, _, err := der.ReadTLV(b)
	if err != nil {
		return nil, nil, err
	}
	if tag != 0x60 {
		return nil, nil, fmt.Errorf("not a GSS-API token (tag 0x%02x)", tag)
	}
	otag, oidBytes, inner, err := der.ReadTLV(content)
	if err != nil {
		return nil, nil, fmt.Errorf("GSS-API mech OID: %w", err)
	}
	if otag != 0x06 {
		return nil, nil, fmt.Errorf("GSS-API token does not start with an OID (tag 0x%02x)", otag)
	}
	hdrLen := len(content) - len(inner) - len(oidBytes)
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(content[:hdrLen+len(oidBytes)], &oid); err != nil {
		return nil, nil, fmt.Errorf("GSS-API mech OID: %w", err)
	}
	return oid, inner, nil
}

// wrapGSS builds an InitialContextToken-style frame: mech OID, token ID, body.
func wrapGSS(mech asn1.ObjectIdentifier, tokID, body []byte) ([]byte, error) {
	ob, err := asn1.Marshal(mech)
	if err != nil {
		return nil, err
	}
	inner := make([]byte, 0, len(ob)+len(tokID)+len(body))
	inner = append(append(append(inner, ob...), tokID...), body...)
	return asn1tools.AddASNAppTag(inner, 0), nil
}

// token is what parse learns about a blob before any cryptography.
type token struct {
	kind   Kind
	spnego bool                  // the blob was SPNEGO-wrapped
	mech   asn1.ObjectIdentifier // first mech the client proposed (SPNEGO)
	apReq  []byte                // DER AP-REQ when kind is KindKerberos
	detail string                // why the blob is not Kerberos, for error text
}

// parse classifies blob and, for Kerberos, extracts the AP-REQ. It never
// panics: a panic inside the ASN.1 decoder it relies on is turned into
// KindGarbage, because a single crafted header must not take down the node.
func parse(blob []byte) (t token) {
	defer func() {
		if r := recover(); r != nil {
			t = token{kind: KindGarbage, detail: fmt.Sprintf("ASN.1 decoder failed: %v", r)}
		}
	}()
	if len(blob) == 0 {
		return token{kind: KindGarbage, detail: "empty token"}
	}
	if bytes.HasPrefix(blob, ntlmSig) {
		return token{kind: KindNTLM, detail: "raw NTLMSSP message"}
	}
	switch blob[0] {
	case 0x60:
		mech, inner, err := splitGSS(blob)
		if err != nil {
			return token{kind: KindGarbage, detail: err.Error()}
		}
		switch {
		case mech.Equal(oidSPNEGO):
			t := parseNegToken(inner)
			t.spnego = true
			return t
		case isKRB5(mech):
			t := krb5Inner(inner)
			t.mech = mech
			return t
		default:
			return token{kind: KindGarbage, detail: fmt.Sprintf("GSS-API token for unknown mechanism %s", mech)}
		}
	case 0xa1:
		t := parseNegToken(blob)
		t.spnego = true
		return t
	}
	return token{kind: KindGarbage, detail: fmt.Sprintf("neither SPNEGO, Kerberos nor NTLM (first byte 0x%02x)", blob[0])}
}

// krb5Inner looks at the inner token of a KRB5 GSS-API token (RFC 4121
// §4.1): two bytes of token ID, then the Kerberos message.
func krb5Inner(inner []byte) token {
	if len(inner) < 2 || !bytes.Equal(inner[:2], tokIDAPReq) {
		return token{kind: KindGarbage, detail: "KRB5 GSS-API token is not an AP-REQ"}
	}
	return token{kind: KindKerberos, apReq: inner[2:]}
}

func parseNegToken(b []byte) token {
	isInit, nt, err := spnego.UnmarshalNegToken(b)
	if err != nil {
		return token{kind: KindGarbage, detail: "SPNEGO: " + err.Error()}
	}
	if !isInit {
		resp, _ := nt.(spnego.NegTokenResp)
		if bytes.HasPrefix(resp.ResponseToken, ntlmSig) {
			return token{kind: KindSPNEGONTLM, detail: "SPNEGO NegTokenResp carrying NTLMSSP"}
		}
		return token{kind: KindSPNEGOOther, detail: "SPNEGO NegTokenResp (a continuation leg; this server completes in one round)"}
	}
	init, _ := nt.(spnego.NegTokenInit)
	var first asn1.ObjectIdentifier
	if len(init.MechTypes) > 0 {
		first = init.MechTypes[0]
	}
	mt := init.MechTokenBytes
	switch {
	case bytes.HasPrefix(mt, ntlmSig):
		return token{kind: KindSPNEGONTLM, mech: first, detail: "SPNEGO NegTokenInit carrying NTLMSSP"}
	case len(mt) > 0:
		mech, inner, err := splitGSS(mt)
		if err == nil && isKRB5(mech) {
			t := krb5Inner(inner)
			t.mech = first
			if t.kind == KindKerberos {
				return t
			}
		}
		return token{kind: KindSPNEGOOther, mech: first, detail: fmt.Sprintf("SPNEGO mech token is not a Kerberos AP-REQ (first mech %s)", first)}
	case first.Equal(oidNTLMSSP):
		return token{kind: KindSPNEGONTLM, mech: first, detail: "SPNEGO NegTokenInit proposing NTLMSSP first"}
	default:
		return token{kind: KindSPNEGOOther, mech: first, detail: fmt.Sprintf("SPNEGO NegTokenInit without a mech token (first mech %s)", first)}
	}
}
