package negotiate

import (
	"os"
	"testing"
	"time"

	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/asn1tools"
	"github.com/jcmturner/gokrb5/v8/crypto"
	"github.com/jcmturner/gokrb5/v8/iana/adtype"
	"github.com/jcmturner/gokrb5/v8/iana/asnAppTag"
	"github.com/jcmturner/gokrb5/v8/iana/flags"
	"github.com/jcmturner/gokrb5/v8/iana/keyusage"
	"github.com/jcmturner/gokrb5/v8/iana/nametype"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/spnego"
	"github.com/jcmturner/gokrb5/v8/types"
)

// Offline Kerberos: a keytab and tickets made in the test, so that the
// validation path (without a PAC) runs with no KDC.
const (
	testRealm = "TEST.LOCAL"
	testSPN   = "HTTP/node.test.local"
	testPass  = "offline-service-password"
)

func testKeytab(t testing.TB) *keytab.Keytab {
	t.Helper()
	kt := keytab.New()
	if err := kt.AddEntry(testSPN, testRealm, testPass, time.Unix(1700000000, 0), 3, 18); err != nil {
		t.Fatal(err)
	}
	return kt
}

type ticketSpec struct {
	kt      *keytab.Keytab
	sname   string
	srealm  string
	etype   int32
	kvno    int
	user    string
	now     time.Time // authenticator ctime and ticket start
	life    time.Duration
	mutual  bool
	rawKRB5 bool   // bare KRB5 GSS token instead of SPNEGO
	withPAC bool   // put pac in the ticket, as AD does
	pac     []byte // a PAC (AD-WIN2K-PAC in AD-IF-RELEVANT)
}

// makeBlob builds a Negotiate blob for spec, the way a browser would.
func makeBlob(t testing.TB, s ticketSpec) []byte {
	t.Helper()
	b, _ := makeBlobKey(t, s)
	return b
}

// makeBlobKey is makeBlob that also returns the ticket's session key.
func makeBlobKey(t testing.TB, s ticketSpec) ([]byte, types.EncryptionKey) {
	t.Helper()
	if s.kt == nil {
		s.kt = testKeytab(t)
	}
	if s.sname == "" {
		s.sname = testSPN
	}
	if s.srealm == "" {
		s.srealm = testRealm
	}
	if s.etype == 0 {
		s.etype = 18
	}
	if s.kvno == 0 {
		s.kvno = 3
	}
	if s.user == "" {
		s.user = "alice"
	}
	if s.now.IsZero() {
		s.now = time.Now()
	}
	if s.life == 0 {
		s.life = 10 * time.Hour
	}
	now := s.now.UTC().Truncate(time.Second)
	cname := types.NewPrincipalName(nametype.KRB_NT_PRINCIPAL, s.user)
	sname := types.NewPrincipalName(nametype.KRB_NT_SRV_INST, s.sname)
	var tkt messages.Ticket
	var skey types.EncryptionKey
	var err error
	if s.withPAC {
		tkt, skey = ticketWithPAC(t, s, cname, sname, now)
	} else if tkt, skey, err = messages.NewTicket(cname, testRealm, sname, s.srealm, types.NewKrbFlags(), s.kt, s.etype, s.kvno,
		now, now, now.Add(s.life), now.Add(s.life)); err != nil {
		t.Fatalf("make ticket: %v", err)
	}
	auth, err := types.NewAuthenticator(testRealm, cname)
	if err != nil {
		t.Fatal(err)
	}
	auth.CTime = s.now.UTC().Truncate(time.Second)
	auth.Cusec = s.now.Nanosecond() / 1000
	ap, err := messages.NewAPReq(tkt, skey, auth)
	if err != nil {
		t.Fatal(err)
	}
	if s.mutual {
		types.SetFlag(&ap.APOptions, flags.APOptionMutualRequired)
	}
	ab, err := ap.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	krb5, err := wrapGSS(oidKRB5, tokIDAPReq, ab)
	if err != nil {
		t.Fatal(err)
	}
	if s.rawKRB5 {
		return krb5, skey
	}
	tok := spnego.SPNEGOToken{Init: true, NegTokenInit: spnego.NegTokenInit{
		MechTypes:      []asn1OID{oidKRB5, oidMSKRB5},
		MechTokenBytes: krb5,
	}}
	b, err := tok.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b, skey
}

// ticketWithPAC makes the ticket of s, as messages.NewTicket does, with
// s.pac in its authorization data where AD puts it.
func ticketWithPAC(t testing.TB, s ticketSpec, cname, sname types.PrincipalName, now time.Time) (messages.Ticket, types.EncryptionKey) {
	t.Helper()
	et, err := crypto.GetEtype(s.etype)
	if err != nil {
		t.Fatal(err)
	}
	sessionKey, err := types.GenerateEncryptionKey(et)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := asn1.Marshal(types.AuthorizationData{{ADType: adtype.ADWin2KPAC, ADData: s.pac}})
	if err != nil {
		t.Fatal(err)
	}
	part := messages.EncTicketPart{
		Flags: types.NewKrbFlags(), Key: sessionKey, CRealm: testRealm, CName: cname,
		AuthTime: now, StartTime: now, EndTime: now.Add(s.life), RenewTill: now.Add(s.life),
		AuthorizationData: types.AuthorizationData{{ADType: adtype.ADIfRelevant, ADData: inner}},
	}
	b, err := asn1.Marshal(part)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := s.kt.GetEncryptionKey(sname, s.srealm, s.kvno, s.etype)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := crypto.GetEncryptedData(asn1tools.AddASNAppTag(b, asnAppTag.EncTicketPart), key, keyusage.KDC_REP_TICKET, s.kvno)
	if err != nil {
		t.Fatal(err)
	}
	return messages.Ticket{TktVNO: 5, Realm: s.srealm, SName: sname, EncPart: ed}, sessionKey
}

// ntlmNegotiate is an NTLMSSP NEGOTIATE_MESSAGE (type 1) as Windows sends
// it, with a version field: "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAF1YAAAADw==".
var ntlmNegotiate = []byte{
	'N', 'T', 'L', 'M', 'S', 'S', 'P', 0, 1, 0, 0, 0, 0x07, 0x82, 0x08, 0xa2,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0x0a, 0x00, 0x5d, 0x58, 0x00, 0x00, 0x00, 0x0f,
}

func spnegoNTLM(t testing.TB) []byte {
	t.Helper()
	tok := spnego.SPNEGOToken{Init: true, NegTokenInit: spnego.NegTokenInit{
		MechTypes:      []asn1OID{oidNTLMSSP},
		MechTokenBytes: ntlmNegotiate,
	}}
	b, err := tok.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type asn1OID = asn1.ObjectIdentifier

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// relabel rewrites the unencrypted service name of the ticket in blob, as
// anyone on the path can, and returns it as a bare KRB5 token.
func relabel(t testing.TB, blob []byte, sname string) []byte {
	t.Helper()
	var ap messages.APReq
	if err := ap.Unmarshal(parse(blob).apReq); err != nil {
		t.Fatal(err)
	}
	ap.Ticket.SName = types.NewPrincipalName(nametype.KRB_NT_SRV_INST, sname)
	ab, err := ap.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := wrapGSS(oidKRB5, tokIDAPReq, ab)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
