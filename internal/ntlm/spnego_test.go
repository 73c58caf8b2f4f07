package ntlm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/spnego"
)

// sambaSPNEGOInit is what Samba 4.17's gss-spnego-client sends first
// without Kerberos: mechTypes {NTLMSSP} and the NEGOTIATE.
var sambaSPNEGOInit = mustB64("YEgGBisGAQUFAqA+MDygDjAMBgorBgEEAYI3AgIKoioEKE5UTE1TU1AAAQAAAAWCCGIAAAAAKAAAAAAAAAAoAAAABgEAAAAAAA8=")

var asn1NTLMSSP = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 2, 10}

func TestParseSPNEGO(t *testing.T) {
	s, err := ParseSPNEGO(sambaSPNEGOInit)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Init || !s.NTLMPreferred || !s.NTLMOffered || !bytes.Equal(s.Token, sambaNegotiate) || s.MechListMIC != nil ||
		!bytes.Equal(s.MechTypes, append([]byte{0x30, 12, 6, 10}, oidNTLMSSP...)) {
		t.Fatalf("%+v", s)
	}
	if m, err := UnwrapSPNEGO(sambaSPNEGOInit); err != nil || !bytes.Equal(m, sambaNegotiate) {
		t.Fatalf("UnwrapSPNEGO: %x, %v", m, err)
	}

	// A NegTokenResp as gokrb5 writes one, with an AUTHENTICATE and a MIC.
	auth := validAuth().bytes()
	resp, err := (&spnego.NegTokenResp{NegState: asn1.Enumerated(NegAcceptIncomplete), ResponseToken: auth, MechListMIC: []byte("0123456789abcdef")}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err = ParseSPNEGO(resp)
	if err != nil || s.Init || s.NegState != NegAcceptIncomplete || !bytes.Equal(s.Token, auth) || string(s.MechListMIC) != "0123456789abcdef" {
		t.Fatalf("NegTokenResp: %+v, %v", s, err)
	}

	// NTLMSSP offered second, with a Kerberos token: not ours.
	init, err := (&spnego.NegTokenInit{MechTypes: []asn1.ObjectIdentifier{{1, 2, 840, 113554, 1, 2, 2}, asn1NTLMSSP}, MechTokenBytes: []byte{0x60, 0x00}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err = ParseSPNEGO(init)
	if err != nil || !s.NTLMOffered || s.NTLMPreferred {
		t.Fatalf("Kerberos first: %+v, %v", s, err)
	}
	if m, err := UnwrapSPNEGO(init); m != nil || err != nil {
		t.Fatalf("UnwrapSPNEGO of a Kerberos token: %x, %v", m, err)
	}

	tooBig := append([]byte{0xa1, 0x83, 0x01, 0x00, 0x00}, make([]byte, 0x10000)...)
	bad := map[string][]byte{
		"empty":                  nil,
		"trailing bytes":         append(bytes.Clone(sambaSPNEGOInit), 0),
		"other GSS mech":         append([]byte{0x60, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02}, 0x01, 0x00),
		"truncated":              sambaSPNEGOInit[:len(sambaSPNEGOInit)-1],
		"indefinite":             {0xa1, 0x80, 0x30, 0x00, 0x00, 0x00},
		"5-byte length":          {0xa1, 0x85, 0, 0, 0, 0, 2, 0x30, 0},
		"multi-byte tag":         {0xbf, 0x01, 0x00},
		"not a sequence":         {0xa1, 0x02, 0x04, 0x00},
		"out of order":           {0xa1, 0x0a, 0x30, 0x08, 0xa2, 0x02, 0x04, 0x00, 0xa0, 0x02, 0x0a, 0x00},
		"field twice":            {0xa1, 0x0a, 0x30, 0x08, 0xa2, 0x02, 0x04, 0x00, 0xa2, 0x02, 0x04, 0x00},
		"unknown field":          {0xa1, 0x06, 0x30, 0x04, 0xa5, 0x02, 0x04, 0x00},
		"negState 9":             {0xa1, 0x07, 0x30, 0x05, 0xa0, 0x03, 0x0a, 0x01, 0x09},
		"token not octet":        {0xa1, 0x06, 0x30, 0x04, 0xa2, 0x02, 0x05, 0x00},
		"init without mechTypes": {0xa0, 0x0a, 0x30, 0x08, 0xa2, 0x06, 0x04, 0x04, 'N', 'T', 'L', 'M'},
		"empty mechTypes":        {0xa0, 0x06, 0x30, 0x04, 0xa0, 0x02, 0x30, 0x00},
		"mechType not OID":       {0xa0, 0x08, 0x30, 0x06, 0xa0, 0x04, 0x30, 0x02, 0x04, 0x00},
		"too large":              tooBig,
		"Kerberos tag":           {0x6e, 0x00},
	}
	for name, b := range bad {
		if _, err := ParseSPNEGO(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

// TestWrap checks the server's tokens against gokrb5's encoder and decoder.
func TestWrap(t *testing.T) {
	chal := []byte("NTLMSSP\x00\x02\x00\x00\x00 a challenge")
	for _, tc := range []struct {
		name string
		got  []byte
		want spnego.NegTokenResp
	}{
		{"challenge", WrapChallenge(chal), spnego.NegTokenResp{NegState: NegAcceptIncomplete, SupportedMech: asn1NTLMSSP, ResponseToken: chal}},
		{"select NTLM", WrapSelectNTLM(), spnego.NegTokenResp{NegState: NegRequestMIC, SupportedMech: asn1NTLMSSP}},
		{"accept", WrapAccept(), spnego.NegTokenResp{NegState: NegAcceptCompleted}},
		{"accept with MIC", negTokenResp(NegAcceptCompleted, nil, nil, []byte("sixteen bytes!!!")), spnego.NegTokenResp{NegState: NegAcceptCompleted, MechListMIC: []byte("sixteen bytes!!!")}},
	} {
		want, err := tc.want.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tc.got, want) {
			t.Errorf("%s: %x, gokrb5 encodes %x", tc.name, tc.got, want)
		}
		var back spnego.NegTokenResp
		if err := back.Unmarshal(tc.got); err != nil || back.State() != spnego.NegState(tc.want.NegState) || !bytes.Equal(back.ResponseToken, tc.want.ResponseToken) {
			t.Errorf("%s: gokrb5 reads %+v, %v", tc.name, back, err)
		}
	}
}

func TestAcceptSPNEGO(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 16)
	flags := FlagSign | FlagExtendedSessionSecurity | Flag128 | FlagKeyExch
	init, err := ParseSPNEGO(sambaSPNEGOInit)
	if err != nil {
		t.Fatal(err)
	}
	var c Challenge
	if _, err := (Identity{}).AcceptSPNEGO(c, &SPNEGO{}); err == nil {
		t.Fatal("accept without UseSPNEGO")
	}
	c.UseSPNEGO(init)
	clientMIC, err := gssMIC(key, flags, true, init.MechTypes)
	if err != nil {
		t.Fatal(err)
	}
	serverMIC, _ := gssMIC(key, flags, false, init.MechTypes)
	if bytes.Equal(clientMIC, serverMIC) || len(clientMIC) != 16 || clientMIC[0] != 1 {
		t.Fatalf("MICs %x %x", clientMIC, serverMIC)
	}
	signer := Identity{sessionKey: key, flags: flags, authMIC: true}
	for _, tc := range []struct {
		name    string
		id      Identity
		mic     []byte
		want    []byte
		wantErr error
	}{
		{"no signing, no MIC", Identity{flags: FlagExtendedSessionSecurity}, nil, WrapAccept(), nil},
		{"signing, NTLM first, no MIC in AUTHENTICATE", Identity{sessionKey: key, flags: flags}, nil, WrapAccept(), nil},
		{"MIC required, absent", signer, nil, nil, ErrMIC},
		{"MIC right", signer, clientMIC, negTokenResp(NegAcceptCompleted, nil, nil, serverMIC), nil},
		{"server's MIC sent back", signer, serverMIC, nil, ErrMIC},
		{"MIC sent unasked", Identity{sessionKey: key, flags: flags}, clientMIC, negTokenResp(NegAcceptCompleted, nil, nil, serverMIC), nil},
		{"MIC without a key", Identity{flags: flags}, clientMIC, nil, ErrMIC},
		{"MIC without ESS", Identity{sessionKey: key, flags: FlagSign}, clientMIC, nil, ErrMIC},
	} {
		got, err := tc.id.AcceptSPNEGO(c, &SPNEGO{MechListMIC: tc.mic})
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && !bytes.Equal(got, tc.want)) {
			t.Errorf("%s: %x, %v", tc.name, got, err)
		}
	}
}
