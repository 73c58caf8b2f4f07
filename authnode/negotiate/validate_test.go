package negotiate

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/crypto"
	"github.com/jcmturner/gokrb5/v8/iana/keyusage"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/spnego"
)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func TestValidateOffline(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
	good := testKeytab(t)
	rc4 := keytab.New()
	if err := rc4.AddEntry(testSPN, testRealm, testPass, t0, 3, 23); err != nil {
		t.Fatal(err)
	}
	otherKVNO := keytab.New()
	if err := otherKVNO.AddEntry(testSPN, testRealm, testPass, t0, 4, 18); err != nil {
		t.Fatal(err)
	}
	wrongKey := keytab.New()
	if err := wrongKey.AddEntry(testSPN, testRealm, "not-the-password", t0, 3, 18); err != nil {
		t.Fatal(err)
	}
	otherSPN := keytab.New()
	if err := otherSPN.AddEntry("HTTP/elsewhere.test.local", testRealm, testPass, t0, 3, 18); err != nil {
		t.Fatal(err)
	}
	// A keytab as it looks after a password change: the old key (kvno 2,
	// another password), the current one (kvno 3) in two enctypes, and
	// another SPN of the same account.
	rotated := keytab.New()
	for _, e := range []struct {
		spn, pass string
		kvno      uint8
		etype     int32
	}{
		{testSPN, "the-old-password", 2, 18},
		{testSPN, testPass, 3, 23},
		{"HTTP/lb.test.local", testPass, 3, 18},
		{testSPN, testPass, 3, 17},
		{testSPN, testPass, 3, 18},
	} {
		if err := rotated.AddEntry(e.spn, testRealm, e.pass, t0, e.kvno, e.etype); err != nil {
			t.Fatal(err)
		}
	}
	otherRealm := keytab.New()
	if err := otherRealm.AddEntry(testSPN, "OTHER.LOCAL", testPass, t0, 3, 18); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		spec     ticketSpec
		kt       *keytab.Keytab
		now      time.Time
		want     error
		contains []string
	}{
		{name: "ok", spec: ticketSpec{now: t0}, kt: good, now: t0},
		{name: "ok among several SPNs, enctypes and KVNOs", spec: ticketSpec{now: t0}, kt: rotated, now: t0},
		{name: "ok raw krb5", spec: ticketSpec{now: t0, rawKRB5: true}, kt: good, now: t0},
		{name: "ok 4m skew", spec: ticketSpec{now: t0}, kt: good, now: t0.Add(4 * time.Minute)},
		{name: "wrong spn", spec: ticketSpec{now: t0, kt: otherSPN, sname: "HTTP/elsewhere.test.local"}, kt: good, now: t0,
			want: ErrWrongSPN, contains: []string{"HTTP/elsewhere.test.local@TEST.LOCAL", testSPN + "@" + testRealm}},
		{name: "other realm", spec: ticketSpec{now: t0, kt: otherRealm, srealm: "OTHER.LOCAL"}, kt: good, now: t0,
			want: ErrWrongSPN, contains: []string{"OTHER.LOCAL"}},
		{name: "enctype", spec: ticketSpec{now: t0}, kt: rc4, now: t0,
			want: ErrEnctype, contains: []string{"encryption type not permitted", "aes256-cts-hmac-sha1-96(18)", "rc4-hmac(23)"}},
		{name: "kvno", spec: ticketSpec{now: t0}, kt: otherKVNO, now: t0,
			want: ErrKVNO, contains: []string{"kvno 3", "kvno 4"}},
		{name: "decrypt", spec: ticketSpec{now: t0}, kt: wrongKey, now: t0, want: ErrDecrypt},
		{name: "skew ahead", spec: ticketSpec{now: t0}, kt: good, now: t0.Add(10 * time.Minute), want: ErrClockSkew},
		{name: "skew behind", spec: ticketSpec{now: t0, life: time.Hour}, kt: good, now: t0.Add(-6 * time.Minute), want: ErrClockSkew,
			contains: []string{"not yet valid"}},
		{name: "expired", spec: ticketSpec{now: t0, life: time.Hour}, kt: good, now: t0.Add(time.Hour + 6*time.Minute), want: ErrTicketExpired},
		{name: "ntlm", spec: ticketSpec{}, kt: good, now: t0, want: ErrNTLM, contains: []string{"SPN", "intranet zone"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var blob []byte
			if tc.name == "ntlm" {
				blob = ntlmNegotiate
			} else {
				blob = makeBlob(t, tc.spec)
			}
			v := NewValidator(tc.kt, Options{Now: fixedClock(tc.now)})
			id, err := v.Validate(blob)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if id.User != "alice" || id.Realm != testRealm || id.SPN != testSPN+"@"+testRealm || id.Etype != 18 || id.KVNO != 3 {
					t.Fatalf("identity = %+v", id)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Validate error = %v, want %v", err, tc.want)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

func TestValidateMalformed(t *testing.T) {
	v := NewValidator(testKeytab(t), Options{})
	blob := makeBlob(t, ticketSpec{})
	for name, b := range map[string][]byte{
		"empty": nil, "garbage": []byte("\x00\x01garbage"), "truncated": blob[:len(blob)-7],
		"negtokenresp": {0xa1, 0x07, 0x30, 0x05, 0xa0, 0x03, 0x0a, 0x01, 0x00},
	} {
		if _, err := v.Validate(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := v.Validate(spnegoNTLM(t)); !errors.Is(err, ErrNTLM) {
		t.Errorf("SPNEGO-NTLM: error = %v, want ErrNTLM", err)
	}
}

func TestValidateReplay(t *testing.T) {
	v := NewValidator(testKeytab(t), Options{})
	blob := makeBlob(t, ticketSpec{})
	if _, err := v.Validate(blob); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(blob); !errors.Is(err, ErrReplay) {
		t.Fatalf("second use: %v, want ErrReplay", err)
	}
	// A fresh authenticator (new ctime/cusec) of the same client is fine.
	if _, err := v.Validate(makeBlob(t, ticketSpec{now: time.Now().Add(time.Millisecond)})); err != nil {
		t.Fatalf("fresh authenticator: %v", err)
	}
}

func TestValidateReplayQuota(t *testing.T) {
	now := time.Now().Truncate(time.Microsecond) // an authenticator's precision
	v := NewValidator(testKeytab(t), Options{ReplayQuota: 2, Now: fixedClock(now)})
	for i := range 2 {
		if _, err := v.Validate(makeBlob(t, ticketSpec{now: now.Add(-time.Duration(i) * time.Second)})); err != nil {
			t.Fatal(err)
		}
	}
	_, err := v.Validate(makeBlob(t, ticketSpec{now: now.Add(-5 * time.Millisecond)}))
	if !errors.Is(err, ErrReplayQuota) || !strings.Contains(err.Error(), "alice@TEST.LOCAL") {
		t.Fatalf("third of alice's: %v, want ErrReplayQuota naming her", err)
	}
	// Her oldest authenticator (1 s ago) stays acceptable, hence
	// remembered, for the skew less 1 s.
	if ra := RetryAfter(err); ra != DefaultMaxClockSkew-time.Second {
		t.Fatalf("RetryAfter = %s, want %s", ra, DefaultMaxClockSkew-time.Second)
	}
	if spn := TicketSPN(err); spn != testSPN+"@"+testRealm {
		t.Fatalf("TicketSPN = %q", spn)
	}
	if _, err := v.Validate(makeBlob(t, ticketSpec{now: now, user: "bob"})); err != nil {
		t.Fatalf("bob, while alice is over her quota: %v", err)
	}
}

func TestValidateReplayCacheFull(t *testing.T) {
	now := time.Now().Truncate(time.Microsecond)
	v := NewValidator(testKeytab(t), Options{ReplayCacheMax: 2, ReplayQuota: 2, Now: fixedClock(now)})
	for _, user := range []string{"alice", "bob"} {
		if _, err := v.Validate(makeBlob(t, ticketSpec{now: now, user: user})); err != nil {
			t.Fatal(err)
		}
	}
	_, err := v.Validate(makeBlob(t, ticketSpec{now: now, user: "carol"}))
	if !errors.Is(err, ErrReplayCacheFull) || RetryAfter(err) != DefaultMaxClockSkew {
		t.Fatalf("carol: %v (retry after %s), want ErrReplayCacheFull", err, RetryAfter(err))
	}
}

func TestValidateConcurrentReplay(t *testing.T) {
	assertOneOfManyWins(t, NewValidator(testKeytab(t), Options{}), makeBlob(t, ticketSpec{}))
}

// assertOneOfManyWins validates blob from 100 goroutines at once: exactly
// one must be accepted and the other 99 refused as replays.
func assertOneOfManyWins(t *testing.T, v *Validator, blob []byte) {
	t.Helper()
	var ok, replays atomic.Int32
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			_, err := v.Validate(blob)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrReplay):
				replays.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || replays.Load() != 99 {
		t.Fatalf("%d succeeded and %d were replays, want 1 and 99", ok.Load(), replays.Load())
	}
}

// TestMutualResponseToken checks the AP-REP a client verifies: it must
// decrypt with the session key and echo the authenticator's time.
func TestMutualResponseToken(t *testing.T) {
	t0 := time.Now().Truncate(time.Microsecond)
	for _, raw := range []bool{false, true} {
		blob, skey := makeBlobKey(t, ticketSpec{now: t0, mutual: true, rawKRB5: raw})
		id, err := NewValidator(testKeytab(t), Options{}).Validate(blob)
		if err != nil {
			t.Fatal(err)
		}
		krb := id.ResponseToken
		if !raw {
			var resp spnego.NegTokenResp
			if err := resp.Unmarshal(id.ResponseToken); err != nil {
				t.Fatalf("response is not a NegTokenResp: %v", err)
			}
			if resp.State() != spnego.NegStateAcceptCompleted || !resp.SupportedMech.Equal(oidKRB5) {
				t.Fatalf("negState %d supportedMech %v", resp.State(), resp.SupportedMech)
			}
			krb = resp.ResponseToken
		}
		mech, inner, err := splitGSS(krb)
		if err != nil || !mech.Equal(oidKRB5) || !bytes.Equal(inner[:2], tokIDAPRep) {
			t.Fatalf("response token is not a KRB5 AP-REP token: %v %v %x", err, mech, inner[:2])
		}
		var rep messages.APRep
		if err := rep.Unmarshal(inner[2:]); err != nil {
			t.Fatal(err)
		}
		plain, err := crypto.DecryptEncPart(rep.EncPart, skey, keyusage.AP_REP_ENCPART)
		if err != nil {
			t.Fatalf("AP-REP does not decrypt with the session key: %v", err)
		}
		var part messages.EncAPRepPart
		if err := part.Unmarshal(plain); err != nil {
			t.Fatal(err)
		}
		if !part.CTime.Equal(t0.UTC().Truncate(time.Second)) || part.Cusec != t0.Nanosecond()/1000 {
			t.Fatalf("AP-REP ctime %v cusec %d, want %v %d", part.CTime, part.Cusec, t0.Truncate(time.Second), t0.Nanosecond()/1000)
		}
	}
	// Without mutual-required: accept-completed and no AP-REP.
	id, err := NewValidator(testKeytab(t), Options{}).Validate(makeBlob(t, ticketSpec{}))
	if err != nil {
		t.Fatal(err)
	}
	var resp spnego.NegTokenResp
	if err := resp.Unmarshal(id.ResponseToken); err != nil || resp.State() != spnego.NegStateAcceptCompleted || len(resp.ResponseToken) != 0 {
		t.Fatalf("non-mutual response: %v state %d token %d bytes", err, resp.State(), len(resp.ResponseToken))
	}
}

func TestSummarizeAndLoadKeytab(t *testing.T) {
	kt := testKeytab(t)
	got := Summarize(kt)
	want := KeyInfo{Principal: testSPN, Realm: testRealm, KVNO: 3, Etype: 18, EtypeName: "aes256-cts-hmac-sha1-96", Timestamp: kt.Entries[0].Timestamp}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("Summarize = %+v", got)
	}
	dir := t.TempDir()
	if _, err := LoadKeytab(dir + "/missing"); err == nil || !strings.Contains(err.Error(), dir+"/missing") {
		t.Fatalf("missing keytab: %v", err)
	}
	empty := dir + "/empty.keytab"
	writeFile(t, empty, []byte{5, 2, 0, 0, 0, 0}) // version 2 header, no entries
	if _, err := LoadKeytab(empty); err == nil || !strings.Contains(err.Error(), "no keys") {
		t.Fatalf("empty keytab: %v", err)
	}
	b, err := kt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	full := dir + "/http.keytab"
	writeFile(t, full, b)
	if got, err := LoadKeytab(full); err != nil || len(got.Entries) != 1 {
		t.Fatalf("LoadKeytab: %v", err)
	}
}

// TestReplayByRelabellingTheSPN: every SPN of an AD account shares its key,
// so a captured ticket whose unencrypted sname is rewritten to another SPN
// of the keytab still decrypts. It is still the same authenticator.
func TestReplayByRelabellingTheSPN(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	kt := testKeytab(t)
	lb := kt.Entries[0]
	lb.Principal.Components = []string{"HTTP", "lb.test.local"}
	kt.Entries = append(kt.Entries, lb)

	blob := makeBlob(t, ticketSpec{now: t0, kt: kt})
	relabelled := relabel(t, blob, "HTTP/lb.test.local")

	v := NewValidator(kt, Options{Now: fixedClock(t0)})
	if _, err := v.Validate(blob); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if id, err := v.Validate(relabelled); !errors.Is(err, ErrReplay) {
		t.Fatalf("the same authenticator relabelled to HTTP/lb: %+v, %v; want ErrReplay", id, err)
	}
}

// TestHugeSPNIsClipped: the service name travels in clear, so anyone can
// send a ticket naming a 90 KB SPN. The error quotes at most clip.Max bytes
// of it and names no keytab SPN.
func TestHugeSPNIsClipped(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	huge := "HTTP/" + strings.Repeat("a", 90<<10)
	blob := relabel(t, makeBlob(t, ticketSpec{now: t0}), huge)
	_, err := NewValidator(testKeytab(t), Options{Now: fixedClock(t0)}).Validate(blob)
	if !errors.Is(err, ErrWrongSPN) {
		t.Fatalf("Validate: %v, want ErrWrongSPN", err)
	}
	if n := len(err.Error()); n > 1024 || !strings.Contains(err.Error(), "…(truncated, 92176 bytes)") {
		t.Fatalf("error is %d bytes, want under 1 KiB with the SPN marked truncated: %.400s", n, err)
	}
	if spn := TicketSPN(err); spn != "" {
		t.Fatalf("TicketSPN = %q for an SPN the keytab lacks, want \"\"", spn)
	}
}

// TestTicketSPNNamesTheKeytabEntry: failures of a ticket for an SPN the
// keytab holds are labelled with the keytab's spelling of it, whatever case
// the ticket used, so that the label stays bounded.
func TestTicketSPNNamesTheKeytabEntry(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	otherKVNO := keytab.New()
	if err := otherKVNO.AddEntry(testSPN, testRealm, testPass, t0, 4, 18); err != nil {
		t.Fatal(err)
	}
	blob := relabel(t, makeBlob(t, ticketSpec{now: t0}), "http/NODE.Test.Local")
	_, err := NewValidator(otherKVNO, Options{Now: fixedClock(t0)}).Validate(blob)
	if !errors.Is(err, ErrKVNO) || TicketSPN(err) != testSPN+"@"+testRealm {
		t.Fatalf("Validate: %v (TicketSPN %q), want ErrKVNO for %s@%s", err, TicketSPN(err), testSPN, testRealm)
	}
	// Past decryption too: a replay names the keytab entry.
	v := NewValidator(testKeytab(t), Options{Now: fixedClock(t0)})
	blob = makeBlob(t, ticketSpec{now: t0})
	if _, err := v.Validate(blob); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(blob); !errors.Is(err, ErrReplay) || TicketSPN(err) != testSPN+"@"+testRealm {
		t.Fatalf("replay: %v (TicketSPN %q)", err, TicketSPN(err))
	}
}

// TestClockAhead: an authenticator from the node's future is accepted up to
// MaxFutureSkew ahead; beyond, within the skew, it is refused with its own
// error; beyond the skew it is clock skew as before.
func TestClockAhead(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		ahead time.Duration
		want  error
	}{
		{0, nil},
		{DefaultMaxFutureSkew, nil},
		{DefaultMaxFutureSkew + time.Second, ErrClockAhead},
		{4 * time.Minute, ErrClockAhead},
		{DefaultMaxClockSkew + time.Second, ErrClockSkew},
	} {
		// The ticket starts when the authenticator was made; start times
		// have their own (skew-wide) check.
		_, err := NewValidator(testKeytab(t), Options{Now: fixedClock(t0.Add(-tc.ahead))}).Validate(makeBlob(t, ticketSpec{now: t0}))
		if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
			t.Errorf("authenticator %s ahead: %v, want %v", tc.ahead, err, tc.want)
		}
		if errors.Is(err, ErrClockAhead) && !strings.Contains(err.Error(), "at most 30s ahead") {
			t.Errorf("error does not say how far ahead is allowed: %v", err)
		}
	}
	// A node that allows more.
	_, err := NewValidator(testKeytab(t), Options{MaxFutureSkew: 2 * time.Minute, Now: fixedClock(t0.Add(-time.Minute))}).Validate(makeBlob(t, ticketSpec{now: t0}))
	if err != nil {
		t.Fatalf("1m ahead with MaxFutureSkew 2m: %v", err)
	}
}

// TestReplayQuotaIgnoresCase: without a PAC the client is its principal
// name, case-folded, so "ALICE" does not get a second quota.
func TestReplayQuotaIgnoresCase(t *testing.T) {
	now := time.Now().Truncate(time.Microsecond)
	v := NewValidator(testKeytab(t), Options{ReplayQuota: 1, Now: fixedClock(now)})
	if _, err := v.Validate(makeBlob(t, ticketSpec{now: now, user: "alice"})); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(makeBlob(t, ticketSpec{now: now.Add(-time.Second), user: "ALICE"})); !errors.Is(err, ErrReplayQuota) {
		t.Fatalf("ALICE after alice with a quota of 1: %v, want ErrReplayQuota", err)
	}
}
