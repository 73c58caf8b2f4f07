package negotiate

// Tests against the real Active Directory started by scripts/ad-up; they
// skip under -short or without IWALB_AD_ENV.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/keytab"
)

func adKeytab(t *testing.T, env map[string]string) *keytab.Keytab {
	t.Helper()
	kt, err := LoadKeytab(env["AD_HTTP_KEYTAB"])
	if err != nil {
		t.Fatal(err)
	}
	return kt
}

func adConfig(t *testing.T, env map[string]string) *config.Config {
	t.Helper()
	conf, err := config.Load(env["KRB5_CONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

func aliceBlob(t *testing.T, env map[string]string, spn string) []byte {
	t.Helper()
	cl := adtest.Login(t, env, env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
	return adtest.NegotiateBlob(t, cl, spn)
}

// realEntryCopy returns the real HTTP/auth1.example.test key of etype from
// the AD keytab, relabelled with kvno.
func realEntryCopy(t *testing.T, env map[string]string, etype int32, kvno uint32) *keytab.Keytab {
	t.Helper()
	src := adKeytab(t, env)
	out := keytab.New()
	for _, e := range src.Entries {
		if strings.Join(e.Principal.Components, "/") == "HTTP/auth1.example.test" && e.Key.KeyType == etype {
			e.KVNO, e.KVNO8 = kvno, uint8(kvno)
			out.Entries = append(out.Entries, e)
		}
	}
	if len(out.Entries) == 0 {
		t.Fatalf("no etype %d entry for HTTP/auth1.example.test in %s", etype, env["AD_HTTP_KEYTAB"])
	}
	return out
}

// rc4Keytab holds only the RC4 key of HTTP/auth1.example.test, made from
// the service password: RC4 needs no salt, so it is the account's real key.
func rc4Keytab(t *testing.T, env map[string]string) *keytab.Keytab {
	t.Helper()
	kt := keytab.New()
	if err := kt.AddEntry("HTTP/auth1.example.test", env["AD_REALM"], env["AD_SVC_PASSWORD"], time.Now(), 2, 23); err != nil {
		t.Fatal(err)
	}
	return kt
}

func TestADValidate(t *testing.T) {
	env := adtest.Env(t)
	kt := adKeytab(t, env)
	for _, spn := range []string{"HTTP/auth1.example.test", "HTTP/lb.example.test", "HTTP/auth2.example.test"} {
		t.Run(spn, func(t *testing.T) {
			v := NewValidator(kt, Options{})
			id, err := v.Validate(aliceBlob(t, env, spn))
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if id.User != "alice" || id.Realm != env["AD_REALM"] || id.SPN != spn+"@"+env["AD_REALM"] {
				t.Fatalf("identity %+v", id)
			}
			if len(id.GroupSIDs) == 0 || !strings.HasPrefix(id.GroupSIDs[0], "S-1-5-21-") {
				t.Fatalf("group SIDs %v", id.GroupSIDs)
			}
			// The PAC's user SID is the account's objectSid.
			if want := adtest.ObjectSID(t, env, "alice"); id.UserSID != want {
				t.Fatalf("user SID %q, want alice's objectSid %q", id.UserSID, want)
			}
			if id.Etype != 18 || id.KVNO != 2 || id.EndTime.Before(time.Now()) || id.AuthTime.After(time.Now()) {
				t.Fatalf("ticket facts: etype %d kvno %d auth %v end %v", id.Etype, id.KVNO, id.AuthTime, id.EndTime)
			}
			if len(id.ResponseToken) == 0 {
				t.Fatal("no response token")
			}
		})
	}
}

func TestADLargePAC(t *testing.T) {
	env := adtest.Env(t)
	cl := adtest.Login(t, env, env["AD_CAROL_USER"], env["AD_CAROL_PASSWORD"])
	blob := adtest.NegotiateBlob(t, cl, "HTTP/auth1.example.test")
	t.Logf("carol's Negotiate blob: %d bytes (%d as base64 in the header)", len(blob), base64.StdEncoding.EncodedLen(len(blob)))
	id, err := NewValidator(adKeytab(t, env), Options{}).Validate(blob)
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if want := adtest.Int(t, env, "AD_CAROL_GROUPS"); id.User != "carol" || len(id.GroupSIDs) < want {
		t.Fatalf("user %s with %d group SIDs, want carol with >= %d", id.User, len(id.GroupSIDs), want)
	}
}

// TestADNestedGroupsInPAC: dave is in lb-ops, which is in lb-users; the
// KDC resolved the nesting, so the PAC carries both groups' SIDs, and his
// primary group's, as the directory writes them.
func TestADNestedGroupsInPAC(t *testing.T) {
	env := adtest.Env(t)
	cl := adtest.Login(t, env, env["AD_DAVE_USER"], env["AD_DAVE_PASSWORD"])
	id, err := NewValidator(adKeytab(t, env), Options{}).Validate(adtest.NegotiateBlob(t, cl, "HTTP/auth1.example.test"))
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	domain := id.UserSID[:strings.LastIndex(id.UserSID, "-")]
	for _, want := range []string{adtest.ObjectSID(t, env, env["AD_NESTED_GROUP"]), adtest.ObjectSID(t, env, env["AD_GROUP"]), domain + "-513"} {
		if !slices.Contains(id.GroupSIDs, want) {
			t.Errorf("dave's group SIDs %v lack %s", id.GroupSIDs, want)
		}
	}
}

func TestADValidateFailures(t *testing.T) {
	env := adtest.Env(t)
	wrongKey := keytab.New()
	if err := wrongKey.AddEntry("HTTP/auth1.example.test", env["AD_REALM"], "Not-The-Passw0rd", time.Now(), 2, 18); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		spn      string
		kt       *keytab.Keytab
		want     error
		contains []string
	}{
		{"spn not in keytab", env["AD_OTHER_SPN"], adKeytab(t, env), ErrWrongSPN, []string{"HTTP/other.example.test@EXAMPLE.TEST", "HTTP/auth1.example.test@EXAMPLE.TEST"}},
		{"rc4-only keytab", "HTTP/auth1.example.test", rc4Keytab(t, env), ErrEnctype, []string{"encryption type not permitted", "aes256-cts-hmac-sha1-96(18)", "rc4-hmac(23)"}},
		{"other kvno", "HTTP/auth1.example.test", realEntryCopy(t, env, 18, 5), ErrKVNO, []string{"kvno 2", "kvno 5"}},
		{"wrong key", "HTTP/auth1.example.test", wrongKey, ErrDecrypt, []string{"kvno 2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewValidator(tc.kt, Options{}).Validate(aliceBlob(t, env, tc.spn))
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			t.Log(err)
		})
	}
}

func TestADClock(t *testing.T) {
	env := adtest.Env(t)
	kt := adKeytab(t, env)
	id, err := NewValidator(kt, Options{}).Validate(aliceBlob(t, env, "HTTP/auth1.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		now  time.Time
		want error
	}{
		{"10m ahead", time.Now().Add(10 * time.Minute), ErrClockSkew},
		{"10m behind", time.Now().Add(-10 * time.Minute), ErrClockSkew},
		{"after ticket end", id.EndTime.Add(6 * time.Minute), ErrTicketExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewValidator(kt, Options{Now: fixedClock(tc.now)}).Validate(aliceBlob(t, env, "HTTP/auth1.example.test"))
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestADReplay(t *testing.T) {
	env := adtest.Env(t)
	v := NewValidator(adKeytab(t, env), Options{})
	blob := aliceBlob(t, env, "HTTP/auth1.example.test")
	if _, err := v.Validate(blob); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(blob); !errors.Is(err, ErrReplay) {
		t.Fatalf("second use: %v, want ErrReplay", err)
	}

	assertOneOfManyWins(t, v, aliceBlob(t, env, "HTTP/lb.example.test"))
}

// TestADCurlMutualAuth runs the real MIT GSSAPI client: curl fails unless
// the server's AP-REP (mutual authentication) verifies.
func TestADCurlMutualAuth(t *testing.T) {
	env := adtest.Env(t)
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	v := NewValidator(adKeytab(t, env), Options{})
	var gotUser atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b64, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Negotiate ")
		if !ok {
			w.Header().Set("WWW-Authenticate", "Negotiate")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		blob, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			http.Error(w, "bad base64", http.StatusBadRequest)
			return
		}
		id, err := v.Validate(blob)
		if err != nil {
			t.Logf("validate: %v", err)
			w.Header().Set("WWW-Authenticate", "Negotiate")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		gotUser.Store(id.User)
		w.Header().Set("WWW-Authenticate", "Negotiate "+base64.StdEncoding.EncodeToString(id.ResponseToken))
		fmt.Fprintf(w, "hello %s\n", id.User)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	// A private ticket cache: the shared one belongs to whoever ran ad-up.
	ccache := "FILE:" + t.TempDir() + "/cc"
	kinit := exec.Command("kinit", env["AD_ALICE_USER"])
	kinit.Env = append(os.Environ(), "KRB5_CONFIG="+env["KRB5_CONFIG"], "KRB5CCNAME="+ccache)
	kinit.Stdin = strings.NewReader(env["AD_ALICE_PASSWORD"] + "\n")
	if out, err := kinit.CombinedOutput(); err != nil {
		t.Skipf("kinit unavailable (%v): %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-sS", "--fail", "--negotiate", "-u", ":",
		"--resolve", "auth1.example.test:"+port+":127.0.0.1", "http://auth1.example.test:"+port+"/")
	cmd.Env = append(os.Environ(), "KRB5_CONFIG="+env["KRB5_CONFIG"], "KRB5CCNAME="+ccache)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl --negotiate failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "hello alice") || gotUser.Load() != "alice" {
		t.Fatalf("curl output %q, user %v", out, gotUser.Load())
	}
}

func TestADSelfTest(t *testing.T) {
	env := adtest.Env(t)
	conf := adConfig(t, env)
	realm := env["AD_REALM"]
	wrongPass := keytab.New()
	if err := wrongPass.AddEntry("HTTP/auth1.example.test", realm, "Not-The-Passw0rd", time.Now(), 2, 18); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		kt   *keytab.Keytab
		spn  string
		want error
	}{
		{"ok", adKeytab(t, env), "HTTP/auth1.example.test", nil},
		{"ok lb", adKeytab(t, env), "HTTP/lb.example.test", nil},
		{"rc4-only keytab", rc4Keytab(t, env), "HTTP/auth1.example.test", ErrEnctype},
		{"other kvno", realEntryCopy(t, env, 18, 7), "HTTP/auth1.example.test", ErrKVNO},
		{"stale key", wrongPass, "HTTP/auth1.example.test", ErrPreauthFailed},
		{"spn unknown", adKeytab(t, env), "HTTP/nosuch.example.test", ErrSPNUnknown},
		{"spn of another account", adKeytab(t, env), env["AD_OTHER_SPN"], ErrWrongSPN},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := SelfTest(ctx, conf, tc.kt, env["AD_SVC_USER"], realm, tc.spn)
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Fatalf("SelfTest = %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestSelfTestKDCUnreachable(t *testing.T) {
	conf, err := config.NewFromString(`[libdefaults]
	default_realm = EXAMPLE.TEST
	dns_lookup_kdc = false
	udp_preference_limit = 1
[realms]
	EXAMPLE.TEST = {
		kdc = 127.0.0.1:1
	}
`)
	if err != nil {
		t.Fatal(err)
	}
	kt := keytab.New()
	if err := kt.AddEntry("HTTP/auth1.example.test", "EXAMPLE.TEST", "x", time.Now(), 2, 18); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err = SelfTest(ctx, conf, kt, "svc_http", "EXAMPLE.TEST", "HTTP/auth1.example.test")
	if !errors.Is(err, ErrKDCUnreachable) {
		t.Fatalf("SelfTest = %v, want ErrKDCUnreachable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v to notice a refusing KDC", d)
	}
	t.Log(err)
}

func TestSelfTestHonoursContext(t *testing.T) {
	// A KDC that accepts the connection but never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	conf, err := config.NewFromString(fmt.Sprintf("[libdefaults]\n default_realm = EXAMPLE.TEST\n udp_preference_limit = 1\n[realms]\n EXAMPLE.TEST = {\n  kdc = %s\n }\n", ln.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	kt := keytab.New()
	if err := kt.AddEntry("HTTP/auth1.example.test", "EXAMPLE.TEST", "x", time.Now(), 2, 18); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = SelfTest(ctx, conf, kt, "svc_http", "EXAMPLE.TEST", "HTTP/auth1.example.test")
	if !errors.Is(err, ErrKDCUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SelfTest = %v, want ErrKDCUnreachable and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("SelfTest returned after %v, past its 300ms deadline", d)
	}
}

// TestADReplayFlood: alice mints thousands of fresh authenticators from one
// ticket, as fast as she can; she is stopped at her quota and dave still
// logs in, during her flood and after. Then carol floods too, until the
// cache is full of the two flooders' quotas and dave's logins: yet another
// user (the proxy account, svc_ldap; erin is disabled now and then by
// another test) still gets in, because a flooder's entry makes room, never
// dave's.
func TestADReplayFlood(t *testing.T) {
	env := adtest.Env(t)
	const spn = "HTTP/auth1.example.test"
	const flood, daveEvery = 3000, 500
	const daveLogins = flood / daveEvery
	alice := adtest.Login(t, env, env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
	carol := adtest.Login(t, env, env["AD_CAROL_USER"], env["AD_CAROL_PASSWORD"])
	dave := adtest.Login(t, env, env["AD_DAVE_USER"], env["AD_DAVE_PASSWORD"])
	third := adtest.Login(t, env, strings.TrimSuffix(env["AD_BIND_UPN"], "@"+env["AD_DNS_DOMAIN"]), env["AD_BIND_PASSWORD"])
	const max = 2*DefaultReplayQuota + daveLogins
	v := NewValidator(adKeytab(t, env), Options{ReplayCacheMax: max})

	deadline := time.Now().Add(2 * time.Minute)
	counts := map[string]int{}
	var daves [][]byte
	start := time.Now()
	for i := 0; i < flood && time.Now().Before(deadline); i++ {
		_, err := v.Validate(adtest.NegotiateBlob(t, alice, spn))
		switch {
		case err == nil:
			counts["ok"]++
		case errors.Is(err, ErrReplayQuota):
			counts["quota"]++
			if ra := RetryAfter(err); ra <= 0 || ra > DefaultMaxClockSkew {
				t.Fatalf("RetryAfter %s", ra)
			}
		default:
			t.Fatalf("alice's authenticator %d: %v", i, err)
		}
		if i%daveEvery == 0 {
			blob := adtest.NegotiateBlob(t, dave, spn)
			if _, err := v.Validate(blob); err != nil {
				t.Fatalf("dave during alice's flood (after %d): %v", i, err)
			}
			daves = append(daves, blob)
		}
	}
	t.Logf("alice's flood of %d in %s: %v", flood, time.Since(start).Round(time.Millisecond), counts)
	// The deadline only cuts the flood short on a very slow machine.
	if counts["ok"] != DefaultReplayQuota || counts["quota"] < 1000 {
		t.Fatalf("alice's flood: %v; want %d accepted and the rest (at least 1000) refused over quota", counts, DefaultReplayQuota)
	}
	for i := range DefaultReplayQuota {
		if _, err := v.Validate(adtest.NegotiateBlob(t, carol, spn)); err != nil {
			t.Fatalf("carol's authenticator %d: %v", i, err)
		}
	}
	if live, _ := v.replay.stats(); live != max {
		t.Fatalf("%d live entries, want the cache full (%d)", live, max)
	}
	for i := range 2 {
		if _, err := v.Validate(adtest.NegotiateBlob(t, third, spn)); err != nil {
			t.Fatalf("svc_ldap's login %d with the cache full: %v", i, err)
		}
	}
	if live, evicted := v.replay.stats(); live != max || evicted != 2 {
		t.Fatalf("%d live entries and %d evicted, want %d and 2 (one of each flooder)", live, evicted, max)
	}
	// dave's entries were not evicted: each of his authenticators is
	// still known.
	for i, blob := range daves {
		if _, err := v.Validate(blob); !errors.Is(err, ErrReplay) {
			t.Fatalf("dave's authenticator %d again: %v, want ErrReplay", i, err)
		}
	}
}
