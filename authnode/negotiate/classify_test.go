package negotiate

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/spnego"
)

func TestClassify(t *testing.T) {
	krb := makeBlob(t, ticketSpec{})
	rawKRB := makeBlob(t, ticketSpec{rawKRB5: true})
	msKRB := func() []byte {
		_, inner, err := splitGSS(rawKRB)
		if err != nil {
			t.Fatal(err)
		}
		b, err := wrapGSS(oidMSKRB5, inner[:2], inner[2:])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	negResp, err := (&spnego.NegTokenResp{NegState: asn1.Enumerated(1), SupportedMech: oidKRB5}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ntlmResp, err := (&spnego.NegTokenResp{NegState: asn1.Enumerated(1), ResponseToken: ntlmNegotiate}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	mechsOnly := func(first asn1.ObjectIdentifier) []byte {
		b, err := (&spnego.SPNEGOToken{Init: true, NegTokenInit: spnego.NegTokenInit{MechTypes: []asn1.ObjectIdentifier{first, oidKRB5}}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		blob []byte
		want Kind
	}{
		{"spnego kerberos", krb, KindKerberos},
		{"raw krb5", rawKRB, KindKerberos},
		{"raw ms krb5", msKRB, KindKerberos},
		{"raw ntlm", ntlmNegotiate, KindNTLM},
		{"spnego ntlm", spnegoNTLM(t), KindSPNEGONTLM},
		{"spnego ntlm first, no token", mechsOnly(oidNTLMSSP), KindSPNEGONTLM},
		{"spnego krb5 first, no token", mechsOnly(oidKRB5), KindSPNEGOOther},
		{"negtokenresp", negResp, KindSPNEGOOther},
		{"negtokenresp ntlm", ntlmResp, KindSPNEGONTLM},
		{"empty", nil, KindGarbage},
		{"text", []byte("hello world"), KindGarbage},
		{"truncated spnego", krb[:len(krb)/2], KindGarbage},
		{"truncated raw krb5", rawKRB[:40], KindGarbage},
		{"only app tag", []byte{0x60}, KindGarbage},
		{"huge length", []byte{0x60, 0x84, 0xff, 0xff, 0xff, 0xff}, KindGarbage},
		{"krb5 AP-REP token", func() []byte { b, _ := wrapGSS(oidKRB5, tokIDAPRep, []byte{1, 2}); return b }(), KindGarbage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.blob); got != tc.want {
				t.Errorf("Classify = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNTLMHeaderPrefix(t *testing.T) {
	// Operators recognise NTLM by the header value: "Negotiate TlRMTVNT...".
	if got := base64.StdEncoding.EncodeToString(ntlmNegotiate); !strings.HasPrefix(got, "TlRMTVNT") {
		t.Fatalf("NTLM message encodes as %q", got)
	}
}

func TestKindString(t *testing.T) {
	want := map[Kind]string{
		KindKerberos: "kerberos", KindSPNEGONTLM: "spnego_ntlm", KindNTLM: "ntlm",
		KindSPNEGOOther: "spnego_other", KindGarbage: "garbage", Kind(99): "garbage",
	}
	for k, s := range want {
		if k.String() != s {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), k.String(), s)
		}
	}
}
