package ntlm

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestVerifyAD runs whole exchanges whose client is Samba's ntlm_auth
// (ntlmssp-client-1) and whose checker is the test domain through
// ntlm_auth ntlm-server-1.
func TestVerifyAD(t *testing.T) {
	env := ntlmEnv(t)
	srv := testServer(env)
	v := newADVerifier(t, env, 2)
	ctx := context.Background()

	t.Run("alice", func(t *testing.T) {
		cl := newClient(t, env, "ntlmssp-client-1", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
		c, a := loginMessages(t, srv, cl)
		t.Logf("AUTHENTICATE flags %#x, NT response %d bytes, MIC %t", a.Flags, len(a.NTResponse), a.MIC != nil)
		id, err := v.Verify(ctx, c, a)
		if err != nil {
			t.Fatal(err)
		}
		if id.User != env["AD_ALICE_USER"] || id.Domain != env["AD_DOMAIN"] {
			t.Fatalf("identity %+v", id)
		}
	})
	t.Run("alice with a MIC", func(t *testing.T) {
		cl := newClient(t, env, "ntlmssp-client-1", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
		cl.features("NTLMSSP_FEATURE_SIGN NTLMSSP_FEATURE_SESSION_KEY")
		c, a := loginMessages(t, srv, cl)
		t.Logf("AUTHENTICATE flags %#x, NT response %d bytes, MIC %t", a.Flags, len(a.NTResponse), a.MIC != nil)
		if a.MIC == nil {
			t.Fatal("no MIC from a client that signs, for a CHALLENGE with a timestamp")
		}
		id, err := v.Verify(ctx, c, a)
		if err != nil {
			t.Fatal(err)
		}
		if key := cl.sessionKey(); !bytes.Equal(key, id.sessionKey) {
			t.Fatalf("exported session key %x, the client's %x", id.sessionKey, key)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		cl := newClient(t, env, "ntlmssp-client-1", env["AD_ALICE_USER"], "not-"+env["AD_ALICE_PASSWORD"])
		c, a := loginMessages(t, srv, cl)
		_, err := v.Verify(ctx, c, a)
		if !errors.Is(err, ErrLogonFailure) {
			t.Fatalf("err = %v, want ErrLogonFailure", err)
		}
		t.Log(err)
	})
	t.Run("bob disabled", func(t *testing.T) {
		cl := newClient(t, env, "ntlmssp-client-1", env["AD_BOB_USER"], env["AD_BOB_PASSWORD"])
		c, a := loginMessages(t, srv, cl)
		_, err := v.Verify(ctx, c, a)
		if !errors.Is(err, ErrAccountDisabled) {
			t.Fatalf("err = %v, want ErrAccountDisabled", err)
		}
		t.Log(err)
	})
	t.Run("another challenge", func(t *testing.T) {
		// The AUTHENTICATE answers c1; the connection kept c2.
		cl := newClient(t, env, "ntlmssp-client-1", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
		c1, a := loginMessages(t, srv, cl)
		neg, _ := ParseNegotiate(sambaNegotiate)
		_, c2, err := srv.Challenge(neg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, c2, a); !errors.Is(err, ErrLogonFailure) {
			t.Fatalf("err = %v, want ErrLogonFailure", err)
		}
		if _, err := v.Verify(ctx, c1, a); err != nil {
			t.Fatalf("its own challenge: %v", err)
		}
	})
	t.Run("MIC over other messages", func(t *testing.T) {
		// Same server challenge, so the domain accepts the response; but
		// the CHALLENGE the client saw was not the one kept (its flags
		// changed on the way): the MIC tells.
		cl := newClient(t, env, "ntlmssp-client-1", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
		cl.features("NTLMSSP_FEATURE_SIGN")
		c, a := loginMessages(t, srv, cl)
		c.challenge = bytes.Clone(c.challenge)
		c.challenge[20] ^= byte(FlagSign)
		if _, err := v.Verify(ctx, c, a); !errors.Is(err, ErrMIC) {
			t.Fatalf("err = %v, want ErrMIC", err)
		}
	})
	t.Run("NTLMv1 client", func(t *testing.T) {
		// Samba's client with NTLMv2 off sends an NTLMv1 (NTLM2 session)
		// response of 24 bytes; a Verifier refuses it without a helper.
		v1 := newADVerifier(t, env, 1)
		cl := newClient(t, env, "ntlmssp-client-1", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"], "--option=client ntlmv2 auth = no")
		c, a := loginMessages(t, srv, cl)
		if len(a.NTResponse) != 24 {
			t.Fatalf("NT response of %d bytes from a client with NTLMv2 off", len(a.NTResponse))
		}
		if _, err := v1.Verify(ctx, c, a); !errors.Is(err, ErrNTLMv1) {
			t.Fatalf("err = %v, want ErrNTLMv1", err)
		}
		if s := v1.Stats(); s.Starts != 0 {
			t.Fatalf("a helper started for NTLMv1: %+v", s)
		}
	})
	t.Run("names in base64", func(t *testing.T) {
		// The helper takes "Username:: <base64>" (used for names that are
		// not plain ASCII): alice so written is accepted...
		cl := newClient(t, env, "ntlmssp-client-1", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
		c, a := loginMessages(t, srv, cl)
		req, err := encodeRequest(c, a)
		if err != nil {
			t.Fatal(err)
		}
		req = bytes.Replace(req, []byte("Username: alice\n"), []byte("Username:: YWxpY2U=\n"), 1)
		ans, err := v.ask(ctx, req)
		if err != nil || !ans.authenticated {
			t.Fatalf("alice in base64: %+v, %v", ans, err)
		}
		// ... and a UTF-8 name goes that way and gets the domain's answer.
		cl = newClient(t, env, "ntlmssp-client-1", "jürgen", "Passw0rd-of-nobody")
		c, a = loginMessages(t, srv, cl)
		if a.User != "jürgen" {
			t.Fatalf("user %q", a.User)
		}
		if _, err := v.Verify(ctx, c, a); !errors.Is(err, ErrLogonFailure) || !strings.Contains(err.Error(), "NO_SUCH_USER") {
			t.Fatalf("err = %v, want ErrLogonFailure (NT_STATUS_NO_SUCH_USER)", err)
		}
	})
	t.Run("UPN", func(t *testing.T) {
		// The domain takes a user name in UPN form, with no domain (as
		// Windows sends what was typed as alice@example.test): the
		// Identity then names the UPN, which callers must resolve as
		// one, not as a sAMAccountName.
		upn := env["AD_ALICE_USER"] + "@" + env["AD_DNS_DOMAIN"]
		cl := newClient(t, env, "ntlmssp-client-1", upn, env["AD_ALICE_PASSWORD"], "--domain=")
		c, a := loginMessages(t, srv, cl)
		id, err := v.Verify(ctx, c, a)
		if err != nil || id.User != upn || id.Domain != "" {
			t.Fatalf("%+v, %v", id, err)
		}
	})
	t.Logf("stats %+v", v.Stats())
}

// TestVerifyADLoad runs 200 logins through a Verifier of two helpers from
// four clients at once (one in five with a wrong password), kills one
// helper half-way, and checks that the checks go on, that no more than two
// helpers ever ran, and that Close leaves no ntlm_auth behind. It logs what
// a check costs.
func TestVerifyADLoad(t *testing.T) {
	env := ntlmEnv(t)
	srv := testServer(env)
	v := newADVerifier(t, env, 2)
	// Sequential first: the cost of one check, without queueing.
	seq := newClient(t, env, "ntlmssp-client-1", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
	var seqTotal time.Duration
	const seqLogins = 50
	for range seqLogins {
		c, a := loginMessages(t, srv, seq)
		t0 := time.Now()
		if _, err := v.Verify(context.Background(), c, a); err != nil {
			t.Fatal(err)
		}
		seqTotal += time.Since(t0)
	}
	t.Logf("%d sequential logins: Verify mean %.2f ms (helper starts so far: %d)", seqLogins, ms(seqTotal)/seqLogins, v.Stats().Starts)

	const workers, logins = 4, 200
	type result struct {
		took time.Duration
		err  error
		bad  bool
	}
	results := make(chan result, logins)
	var killOnce sync.Once
	var killed int
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		good := newClient(t, env, "ntlmssp-client-1", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
		bad := newClient(t, env, "ntlmssp-client-1", env["AD_ALICE_USER"], "wrong-"+env["AD_ALICE_PASSWORD"])
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < logins; i += workers {
				if i == logins/2 {
					killOnce.Do(func() {
						if ps := verifierProcs(t, "ntlm_auth"); len(ps) > 0 {
							killed = ps[0].pid
							_ = syscall.Kill(killed, syscall.SIGKILL)
						}
					})
				}
				cl, isBad := good, i%5 == 4
				if isBad {
					cl = bad
				}
				c, a := loginMessages(t, srv, cl)
				t0 := time.Now()
				_, err := v.Verify(context.Background(), c, a)
				results <- result{time.Since(t0), err, isBad}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	close(results)
	var durs []time.Duration
	var total time.Duration
	for r := range results {
		switch {
		case r.bad && !errors.Is(r.err, ErrLogonFailure):
			t.Errorf("wrong password: err = %v", r.err)
		case !r.bad && r.err != nil:
			t.Errorf("alice: %v", r.err)
		}
		durs = append(durs, r.took)
		total += r.took
	}
	slices.Sort(durs)
	s := v.Stats()
	t.Logf("%d logins, %d clients, MaxHelpers 2: Verify mean %.2f ms, p50 %.2f ms, p99 %.2f ms, max %.2f ms; wall %.0f ms for all (clients included); helper pid %d killed half-way; stats %+v",
		len(durs), workers, ms(total)/float64(len(durs)), ms(durs[len(durs)/2]), ms(durs[len(durs)*99/100]), ms(durs[len(durs)-1]), ms(wall), killed, s)
	if killed == 0 {
		t.Error("no helper to kill half-way")
	}
	if s.Checks != seqLogins+logins || s.Deaths != 1 || s.Kills != 0 || s.Starts > 3 || s.Running > 2 {
		t.Errorf("stats %+v: want %d checks, the one death, at most 2 running and 3 started", s, logins)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	waitNoProcs(t, "ntlm_auth")
	if s := v.Stats(); s.Running != 0 {
		t.Fatalf("after Close: %+v", s)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// TestHelperKilledAD: a helper killed between checks is replaced and the
// next check works.
func TestHelperKilledAD(t *testing.T) {
	env := ntlmEnv(t)
	srv := testServer(env)
	v := newADVerifier(t, env, 1)
	cl := newClient(t, env, "ntlmssp-client-1", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
	for i := range 3 {
		if i == 1 {
			ps := verifierProcs(t, "ntlm_auth")
			if len(ps) != 1 {
				t.Fatalf("helpers %+v", ps)
			}
			if err := syscall.Kill(ps[0].pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
		c, a := loginMessages(t, srv, cl)
		if _, err := v.Verify(context.Background(), c, a); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	if s := v.Stats(); s.Starts != 2 || s.Deaths != 1 || s.Checks != 3 {
		t.Fatalf("stats %+v", s)
	}
}
