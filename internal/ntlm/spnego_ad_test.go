package ntlm

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// spnegoExchange runs the NTLM legs of a SPNEGO exchange whose client is
// Samba's gss-spnego-client and whose first token was init: the CHALLENGE
// wrapped, the AUTHENTICATE checked by v. It returns what the last leg
// needs.
func spnegoExchange(t *testing.T, srv *Server, v *Verifier, cl *clientHelper, init *SPNEGO, negotiate []byte) (Challenge, *SPNEGO, Identity, error) {
	t.Helper()
	neg, err := ParseNegotiate(negotiate)
	if err != nil {
		t.Fatal(err)
	}
	chal, c, err := srv.Challenge(neg)
	if err != nil {
		t.Fatal(err)
	}
	c.UseSPNEGO(init)
	code, tok := cl.answer(WrapChallenge(chal))
	if code != "KK" {
		t.Fatalf("client answered the CHALLENGE with %s", code)
	}
	resp, err := ParseSPNEGO(tok)
	if err != nil {
		t.Fatalf("client's NegTokenResp: %v", err)
	}
	a, err := ParseAuthenticate(resp.Token)
	if err != nil {
		t.Fatalf("client's AUTHENTICATE: %v", err)
	}
	id, err := v.Verify(context.Background(), c, a)
	return c, resp, id, err
}

// spnegoStart begins an exchange with a client and returns its
// NegTokenInit.
func spnegoStart(t *testing.T, cl *clientHelper) (*SPNEGO, []byte) {
	t.Helper()
	raw := cl.start()
	init, err := ParseSPNEGO(raw)
	if err != nil {
		t.Fatalf("client's NegTokenInit: %v", err)
	}
	if !init.Init || !init.NTLMOffered {
		t.Fatalf("client's NegTokenInit: %+v", init)
	}
	return init, raw
}

// TestSPNEGOAD runs SPNEGO-wrapped NTLM against Samba's gss-spnego-client,
// which checks the server's final token (and its mechListMIC when it sent
// one) before it answers AF.
func TestSPNEGOAD(t *testing.T) {
	env := ntlmEnv(t)
	srv := testServer(env)
	v := newADVerifier(t, env, 2)
	alice := func(t *testing.T, features string, extra ...string) *clientHelper {
		cl := newClient(t, env, "gss-spnego-client", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"], extra...)
		if features != "" {
			cl.features(features)
		}
		return cl
	}

	t.Run("without integrity", func(t *testing.T) {
		cl := alice(t, "")
		init, _ := spnegoStart(t, cl)
		if !init.NTLMPreferred || MessageType(init.Token) != TypeNegotiate {
			t.Fatalf("NegTokenInit %+v", init)
		}
		c, resp, id, err := spnegoExchange(t, srv, v, cl, init, init.Token)
		if err != nil {
			t.Fatal(err)
		}
		if resp.MechListMIC != nil || id.authMIC {
			t.Fatalf("a client that does not sign sent a mechListMIC %x or MIC %t", resp.MechListMIC, id.authMIC)
		}
		final, err := id.AcceptSPNEGO(c, resp)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(final, WrapAccept()) {
			t.Fatalf("final %x, want the plain accept", final)
		}
		if code, _ := cl.answer(final); code != "AF" {
			t.Fatalf("client answered the accept with %s", code)
		}
	})

	t.Run("with mechListMIC", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			final  func(good []byte) []byte
			wantAF bool
		}{
			{"ours", func(good []byte) []byte { return good }, true},
			{"corrupted", func(good []byte) []byte { b := bytes.Clone(good); b[len(b)-5] ^= 1; return b }, false},
			{"missing", func([]byte) []byte { return WrapAccept() }, false},
		} {
			cl := alice(t, "NTLMSSP_FEATURE_SIGN")
			init, _ := spnegoStart(t, cl)
			c, resp, id, err := spnegoExchange(t, srv, v, cl, init, init.Token)
			if err != nil {
				t.Fatal(err)
			}
			if resp.MechListMIC == nil || !id.authMIC {
				t.Fatalf("no mechListMIC (%x) or MIC (%t) from a signing client", resp.MechListMIC, id.authMIC)
			}
			good, err := id.AcceptSPNEGO(c, resp)
			if err != nil {
				t.Fatal(err)
			}
			code, _ := cl.answer(tc.final(good))
			if (code == "AF") != tc.wantAF {
				t.Errorf("%s server mechListMIC: client answered %s", tc.name, code)
			}
		}
	})

	t.Run("mechanism list changed", func(t *testing.T) {
		// Someone on the way struck a mechanism from the list the server
		// got: the client's mechListMIC, over the list it sent, tells.
		cl := alice(t, "NTLMSSP_FEATURE_SIGN")
		init, _ := spnegoStart(t, cl)
		c, resp, id, err := spnegoExchange(t, srv, v, cl, init, init.Token)
		if err != nil {
			t.Fatal(err)
		}
		c.mechTypes = []byte{0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02}
		if _, err := id.AcceptSPNEGO(c, resp); !errors.Is(err, ErrMIC) {
			t.Fatalf("err = %v, want ErrMIC", err)
		}
	})

	t.Run("NTLM not first", func(t *testing.T) {
		// With a Kerberos ticket, the client lists Kerberos first and
		// sends an AP-REQ; the server picks NTLM instead. A client that
		// signs must then send a mechListMIC and gets the server's
		// (RFC 4178 §5); one that does not cannot.
		for _, signing := range []bool{true, false} {
			cl := newClientEnv(t, env, []string{"KRB5_CONFIG=" + env["KRB5_CONFIG"], "KRB5CCNAME=" + env["KRB5CCNAME"]},
				"gss-spnego-client", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"],
				"--target-service=HTTP", "--target-hostname=auth1."+env["AD_DNS_DOMAIN"])
			if signing {
				cl.features("NTLMSSP_FEATURE_SIGN")
			}
			init, raw := spnegoStart(t, cl)
			if init.NTLMPreferred || IsMessage(init.Token) {
				t.Fatalf("NegTokenInit with Kerberos first: %+v", init)
			}
			if m, err := UnwrapSPNEGO(raw); err != nil || m != nil {
				t.Fatalf("UnwrapSPNEGO of a Kerberos NegTokenInit: %x, %v", m, err)
			}
			code, tok := cl.answer(WrapSelectNTLM())
			if code != "KK" {
				t.Fatalf("client answered the choice of NTLM with %s", code)
			}
			next, err := ParseSPNEGO(tok)
			if err != nil || next.Init || MessageType(next.Token) != TypeNegotiate {
				t.Fatalf("client's NEGOTIATE in SPNEGO: %+v, %v", next, err)
			}
			c, resp, id, err := spnegoExchange(t, srv, v, cl, init, next.Token)
			if err != nil {
				t.Fatal(err)
			}
			if (resp.MechListMIC != nil) != signing {
				t.Fatalf("signing %t: mechListMIC %x", signing, resp.MechListMIC)
			}
			if signing {
				noMIC := *resp
				noMIC.MechListMIC = nil
				if _, err := id.AcceptSPNEGO(c, &noMIC); !errors.Is(err, ErrMIC) {
					t.Fatalf("without the client's mechListMIC: err = %v, want ErrMIC", err)
				}
			}
			final, err := id.AcceptSPNEGO(c, resp)
			if err != nil {
				t.Fatal(err)
			}
			if code, _ := cl.answer(final); code != "AF" {
				t.Fatalf("signing %t: client answered the accept with %s", signing, code)
			}
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		cl := newClient(t, env, "gss-spnego-client", env["AD_ALICE_USER"], "no-"+env["AD_ALICE_PASSWORD"])
		init, _ := spnegoStart(t, cl)
		if _, _, _, err := spnegoExchange(t, srv, v, cl, init, init.Token); !errors.Is(err, ErrLogonFailure) {
			t.Fatalf("err = %v, want ErrLogonFailure", err)
		}
	})
}
