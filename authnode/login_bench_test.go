package authnode

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/asn1tools"
	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/crypto"
	"github.com/jcmturner/gokrb5/v8/iana"
	"github.com/jcmturner/gokrb5/v8/iana/adtype"
	"github.com/jcmturner/gokrb5/v8/iana/asnAppTag"
	"github.com/jcmturner/gokrb5/v8/iana/chksumtype"
	"github.com/jcmturner/gokrb5/v8/iana/keyusage"
	"github.com/jcmturner/gokrb5/v8/iana/nametype"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/test/testdata"
	"github.com/jcmturner/gokrb5/v8/types"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/negotiate"
	"github.com/iwalb/iwalb/authnode/store"
)

// The login handler's cost without the directory: a real Validator (AES256
// ticket with a PAC, fresh authenticators made outside the timer, a replay
// cache large enough never to refuse), the directory stubbed at the
// userDirectory interface, the one-time token stored, the redirect written.
// Every iteration must answer 302, or the benchmark fails: it never times
// refusals.
//
//	go test -run '^$' -bench LoginHandler -benchmem ./authnode/
//
// With IWALB_AD_ENV the ad-carol case runs on tickets the test domain's KDC
// issued to carol (1,101 group SIDs in her PAC).

// stubDirectory answers every look-up with one user, as a warm directory
// would: one search, no refusal.
type stubDirectory struct{ user *directory.User }

func (s stubDirectory) Lookup(context.Context, directory.Principal) (*directory.User, int, error) {
	return s.user, 1, nil
}
func (stubDirectory) Check(context.Context) error                   { return nil }
func (stubDirectory) ServerTime(context.Context) (time.Time, error) { return time.Now(), nil }

// blobSource makes fresh Negotiate headers, each with an authenticator
// never sent before.
type blobSource func(b testing.TB, n int) []string

func BenchmarkLoginHandler(b *testing.B) {
	b.Run("offline-pac-39-groups", func(b *testing.B) {
		kt := offlineKeytab(b)
		tkt, skey := offlinePACTicket(b, kt, "lzhu")
		v := negotiate.NewValidator(kt, benchValidatorOptions)
		id := benchIdentity(b, v, offlineAuthzFor(b, tkt, skey, "lzhu", time.Now(), 0))
		benchLogin(b, v, id, func(b testing.TB, n int) []string {
			now := time.Now()
			out := make([]string, n)
			for i := range out {
				out[i] = offlineAuthzFor(b, tkt, skey, "lzhu", now, i)
			}
			return out
		})
	})
	b.Run("ad-carol-1101-groups", func(b *testing.B) {
		env := adtest.Env(b)
		kt, err := negotiate.LoadKeytab(env["AD_HTTP_KEYTAB"])
		if err != nil {
			b.Fatal(err)
		}
		cl := adtest.Login(b, env, env["AD_CAROL_USER"], env["AD_CAROL_PASSWORD"])
		v := negotiate.NewValidator(kt, benchValidatorOptions)
		id := benchIdentity(b, v, adAuthz(b, cl))
		benchLogin(b, v, id, func(b testing.TB, n int) []string {
			out := make([]string, n)
			for i := range out {
				out[i] = adAuthz(b, cl)
			}
			return out
		})
	})
}

// benchValidatorOptions keep every authenticator of the benchmark: one
// user's thousands of logins would otherwise meet the replay quota.
var benchValidatorOptions = negotiate.Options{ReplayCacheMax: 10_000_000, ReplayQuota: 10_000_000}

// benchIdentity validates one header to learn the PAC's SIDs, so that the
// stub directory answers with as many groups as the ticket has.
func benchIdentity(b testing.TB, v *negotiate.Validator, authz string) *negotiate.Identity {
	b.Helper()
	raw, err := base64.StdEncoding.DecodeString(authz[len("Negotiate "):])
	if err != nil {
		b.Fatal(err)
	}
	id, err := v.Validate(raw)
	if err != nil {
		b.Fatalf("Validate: %v", err)
	}
	return id
}

func benchLogin(b *testing.B, v *negotiate.Validator, id *negotiate.Identity, fresh blobSource) {
	user := &directory.User{SAMAccountName: id.User, UserPrincipalName: id.User + "@example.test",
		DisplayName: "Bench User", Mail: id.User + "@example.test", GroupSIDs: id.GroupSIDs}
	for i := range id.GroupSIDs {
		user.Groups = append(user.Groups, fmt.Sprintf("group-%04d", i))
	}
	n := newTestNode(b, v, stubDirectory{user: user}, io.Discard)
	n.edit(func(s *settings) { s.cfg.Realm = id.Realm })
	h := n.Handler()
	const batch = 1000
	var authz []string
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(authz) == 0 {
			b.StopTimer()
			authz = fresh(b, min(batch, b.N-i))
			// A fresh token store per batch: the benchmark's tokens are
			// never redeemed, and would fill the store's budget.
			n.tokens = store.NewMemory(store.Options{})
			b.StartTimer()
		}
		r := httptest.NewRequest("GET", "https://auth1.example.test/sso", nil)
		r.Header.Set("Authorization", authz[0])
		authz = authz[1:]
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusFound {
			b.Fatalf("login %d: %d %s", i, w.Code, w.Body)
		}
	}
}

// offlinePACTicket makes a ticket for offlineSPN, encrypted with kt, whose
// PAC is the logon info of [MS-PAC]'s example user (26 groups and 13 extra
// SIDs: a typical user), signed with the service key.
func offlinePACTicket(b testing.TB, kt *keytab.Keytab, user string) (messages.Ticket, types.EncryptionKey) {
	b.Helper()
	return offlinePACTicketKVNO(b, kt, user, 2)
}

// offlinePACTicketKVNO is offlinePACTicket with the key of version kvno.
func offlinePACTicketKVNO(b testing.TB, kt *keytab.Keytab, user string, kvno int) (messages.Ticket, types.EncryptionKey) {
	b.Helper()
	skey, _, err := kt.GetEncryptionKey(types.NewPrincipalName(nametype.KRB_NT_SRV_INST, offlineSPN), "EXAMPLE.TEST", kvno, 18)
	if err != nil {
		b.Fatal(err)
	}
	pac := signedPAC(b, skey, mustHex(b, testdata.MarshaledPAC_Kerb_Validation_Info_MS), mustHex(b, testdata.MarshaledPAC_Client_Info))
	inner, err := asn1.Marshal(types.AuthorizationData{{ADType: adtype.ADWin2KPAC, ADData: pac}})
	if err != nil {
		b.Fatal(err)
	}
	et, err := crypto.GetEtype(18)
	if err != nil {
		b.Fatal(err)
	}
	sessionKey, err := types.GenerateEncryptionKey(et)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	cname := types.NewPrincipalName(nametype.KRB_NT_PRINCIPAL, user)
	etp := messages.EncTicketPart{
		Flags: types.NewKrbFlags(), Key: sessionKey, CRealm: "EXAMPLE.TEST", CName: cname,
		AuthTime: now, StartTime: now, EndTime: now.Add(10 * time.Hour), RenewTill: now.Add(10 * time.Hour),
		AuthorizationData: types.AuthorizationData{{ADType: adtype.ADIfRelevant, ADData: inner}},
	}
	eb, err := asn1.Marshal(etp)
	if err != nil {
		b.Fatal(err)
	}
	ed, err := crypto.GetEncryptedData(asn1tools.AddASNAppTag(eb, asnAppTag.EncTicketPart), skey, keyusage.KDC_REP_TICKET, kvno)
	if err != nil {
		b.Fatal(err)
	}
	return messages.Ticket{TktVNO: iana.PVNO, Realm: "EXAMPLE.TEST",
		SName: types.NewPrincipalName(nametype.KRB_NT_SRV_INST, offlineSPN), EncPart: ed}, sessionKey
}

// signedPAC lays out a PAC ([MS-PAC] 2.3) of the logon info, the client
// info and the two signatures (HMAC-SHA1-96-AES256, 12 bytes each), each
// buffer 8-aligned, and signs it with the service key as a KDC does. The
// KDC signature is left zero: only the KDC could check it.
func signedPAC(b testing.TB, key types.EncryptionKey, logonInfo, clientInfo []byte) []byte {
	b.Helper()
	sig := func() []byte {
		s := make([]byte, 4+12)
		binary.LittleEndian.PutUint32(s, uint32(chksumtype.HMAC_SHA1_96_AES256))
		return s
	}
	bufs := []struct {
		typ  uint32
		data []byte
	}{{1, logonInfo}, {10, clientInfo}, {6, sig()}, {7, sig()}}
	align := func(n int) int { return (n + 7) &^ 7 }
	off := 8 + 16*len(bufs)
	pac := make([]byte, off)
	binary.LittleEndian.PutUint32(pac[0:], uint32(len(bufs)))
	var serverSig int
	for i, bf := range bufs {
		h := pac[8+16*i:]
		binary.LittleEndian.PutUint32(h[0:], bf.typ)
		binary.LittleEndian.PutUint32(h[4:], uint32(len(bf.data)))
		binary.LittleEndian.PutUint64(h[8:], uint64(len(pac)))
		if bf.typ == 6 {
			serverSig = len(pac) + 4
		}
		pac = append(pac, bf.data...)
		pac = append(pac, make([]byte, align(len(pac))-len(pac))...)
	}
	et, err := crypto.GetChksumEtype(chksumtype.HMAC_SHA1_96_AES256)
	if err != nil {
		b.Fatal(err)
	}
	mac, err := et.GetChecksumHash(key.KeyValue, pac, keyusage.KERB_NON_KERB_CKSUM_SALT)
	if err != nil {
		b.Fatal(err)
	}
	copy(pac[serverSig:], mac)
	return pac
}

// offlineAuthzFor returns a Negotiate header with a fresh authenticator
// for tkt: made at base plus i microseconds, so that no two repeat.
func offlineAuthzFor(b testing.TB, tkt messages.Ticket, skey types.EncryptionKey, user string, base time.Time, i int) string {
	b.Helper()
	cname := types.NewPrincipalName(nametype.KRB_NT_PRINCIPAL, user)
	auth, err := types.NewAuthenticator("EXAMPLE.TEST", cname)
	if err != nil {
		b.Fatal(err)
	}
	at := base.Add(time.Duration(i) * time.Microsecond).UTC()
	auth.CTime, auth.Cusec = at.Truncate(time.Second), at.Nanosecond()/1000
	ap, err := messages.NewAPReq(tkt, skey, auth)
	if err != nil {
		b.Fatal(err)
	}
	apb, err := ap.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	oid, err := asn1.Marshal(asn1.ObjectIdentifier{1, 2, 840, 113554, 1, 2, 2})
	if err != nil {
		b.Fatal(err)
	}
	tok := asn1tools.AddASNAppTag(append(append(oid, 0x01, 0x00), apb...), 0) // KRB5 AP-REQ token
	return "Negotiate " + base64.StdEncoding.EncodeToString(tok)
}

func adAuthz(b testing.TB, cl *client.Client) string {
	return "Negotiate " + base64.StdEncoding.EncodeToString(adtest.NegotiateBlob(b, cl, "HTTP/auth1.example.test"))
}

func mustHex(b testing.TB, s string) []byte {
	b.Helper()
	out, err := hex.DecodeString(s)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// TestOfflinePACTicket keeps the benchmark honest: its offline ticket
// passes the real Validator, PAC signature included, with the example
// PAC's 39 group SIDs, and logs in.
func TestOfflinePACTicket(t *testing.T) {
	kt := offlineKeytab(t)
	tkt, skey := offlinePACTicket(t, kt, "lzhu")
	v := negotiate.NewValidator(kt, benchValidatorOptions)
	id := benchIdentity(t, v, offlineAuthzFor(t, tkt, skey, "lzhu", time.Now(), 0))
	if id.UserSID != "S-1-5-21-397955417-626881126-188441444-2914711" || len(id.GroupSIDs) != 39 {
		t.Fatalf("identity: user SID %s, %d group SIDs; want the example PAC's user and 39", id.UserSID, len(id.GroupSIDs))
	}
	n := newTestNode(t, v, stubDirectory{user: aliceUser}, nil)
	tokenFrom(t, ssoRequest(n, offlineAuthzFor(t, tkt, skey, "lzhu", time.Now(), 1)))
}
