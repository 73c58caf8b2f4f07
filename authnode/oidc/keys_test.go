package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/iwalb/iwalb/authnode/store"
)

// kidOf returns the kid in a JWS's header.
func kidOf(t *testing.T, raw string) string {
	t.Helper()
	h, _, _ := strings.Cut(raw, ".")
	var hdr struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(must(base64.RawURLEncoding.DecodeString(h)), &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.Kid
}

// logoutStatus sends an id_token_hint to the end-session endpoint and returns the status.
func (e *env) logoutStatus(hint string) int {
	e.t.Helper()
	q := url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {appLogout}}
	resp, err := e.browser.Get(e.issuer + PathLogout + "?" + q.Encode())
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestForgedTokens: alg none, HS256 keyed with the public key (PEM, DER
// and JWK bytes: key confusion), a token of another key under our kid,
// and a payload changed under a valid signature are all refused by
// go-oidc's verifier against our JWKS, and by our own parsing of an
// id_token_hint at logout.
func TestForgedTokens(t *testing.T) {
	for _, alg := range []string{AlgES256, AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, 1, func(c *Config) { c.SigningAlg = alg })
			r := e.rp(appID, appSecret, appRedirect)
			tok, _, err := r.login(newFlow())
			if err != nil {
				t.Fatal(err)
			}
			raw := tok.Extra("id_token").(string)
			if e.logoutStatus(raw) != http.StatusFound {
				t.Fatal("a genuine hint was not accepted")
			}
			kid := kidOf(t, raw)
			parts := strings.Split(raw, ".")
			ks, err := e.providers[0].keys(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			pub := ks.signer.key.Public()
			der := must(x509.MarshalPKIXPublicKey(pub))
			pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			jwkBytes := must(json.Marshal(jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"}))

			forged := map[string]string{}
			hdr := func(a string) string {
				return base64.RawURLEncoding.EncodeToString(must(json.Marshal(map[string]string{"alg": a, "kid": kid, "typ": "JWT"})))
			}
			forged["none"] = hdr("none") + "." + parts[1] + "."
			forged["None"] = hdr("None") + "." + parts[1] + "."
			for name, key := range map[string][]byte{"pem": pemBytes, "der": der, "jwk": jwkBytes} {
				forged["HS256 "+name] = signWith(t, jose.HS256, key, kid, parts[1])
			}
			other := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
			forged["another key"] = signWith(t, jose.ES256, other, kid, parts[1])
			otherRSA := must(rsa.GenerateKey(rand.Reader, 2048))
			forged["another RSA key"] = signWith(t, jose.RS256, otherRSA, kid, parts[1])
			var claims map[string]any
			if err := json.Unmarshal(must(base64.RawURLEncoding.DecodeString(parts[1])), &claims); err != nil {
				t.Fatal(err)
			}
			claims["sub"] = "S-1-5-21-1111-2222-3333-500"
			forged["changed payload"] = parts[0] + "." + base64.RawURLEncoding.EncodeToString(must(json.Marshal(claims))) + "." + parts[2]

			// A relying party that fetches the JWKS afresh, and one whose
			// algorithms are not limited by discovery.
			fresh := e.rp(appID, appSecret, appRedirect)
			lax := gooidc.NewVerifier(e.issuer, gooidc.NewRemoteKeySet(e.ctx(), e.issuer+PathJWKS),
				&gooidc.Config{ClientID: appID, Now: e.clock.Now, SupportedSigningAlgs: []string{"HS256", "none", "ES256", "RS256"}})
			for name, f := range forged {
				if _, err := fresh.verifier.Verify(e.ctx(), f); err == nil {
					t.Errorf("%s: go-oidc accepted it", name)
				}
				if _, err := lax.Verify(e.ctx(), f); err == nil {
					t.Errorf("%s: go-oidc allowing HS256 and none accepted it", name)
				}
				if _, err := e.providers[0].verifyIDToken(t.Context(), f); err == nil {
					t.Errorf("%s: verifyIDToken accepted it", name)
				}
				if s := e.logoutStatus(f); s != http.StatusBadRequest {
					t.Errorf("%s: logout answered %d", name, s)
				}
			}
		})
	}
}

// signWith signs payload (base64url) with key under kid.
func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, kid, payload string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(must(base64.RawURLEncoding.DecodeString(payload)))
	if err != nil {
		t.Fatal(err)
	}
	return must(jws.CompactSerialize())
}

// TestRotatedOutKey follows one key through a rotation: published before
// it signs, the old one published through its grace, then gone, after
// which a token it signed no longer verifies (expiry aside) and its
// id_token_hint is no hint.
func TestRotatedOutKey(t *testing.T) {
	const period, grace = time.Hour, DefaultIDTokenTTL + time.Minute
	e := newEnv(t, 1, func(c *Config) { c.KeyRotation, c.KeyGrace = period, grace })
	p := e.providers[0]
	r := e.rp(appID, appSecret, appRedirect)
	tok1, _, err := r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	old := tok1.Extra("id_token").(string)
	kid1 := kidOf(t, old)
	jwks := func() []string {
		ks, err := p.keys(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var kids []string
		for _, k := range ks.published {
			kids = append(kids, k.KeyID)
		}
		return kids
	}
	// A quarter period before its end, the successor is published but
	// does not sign yet.
	e.clock.Advance(period - period/4 + time.Second)
	kids := jwks()
	if len(kids) != 2 || kids[1] != kid1 {
		t.Fatalf("JWKS %v before the successor signs", kids)
	}
	kid2 := kids[0]
	tok, _, err := r.login(newFlow())
	if err != nil || kidOf(t, tok.Extra("id_token").(string)) != kid1 {
		t.Fatalf("before the end of the period: %v, kid %s", err, kidOf(t, tok.Extra("id_token").(string)))
	}
	// At the end of the period the successor signs, and the relying party
	// (which has cached the old JWKS) fetches it.
	e.clock.Advance(period / 4)
	hits := e.jwksHits.Load()
	tok, _, err = r.login(newFlow())
	if err != nil || kidOf(t, tok.Extra("id_token").(string)) != kid2 {
		t.Fatalf("after the period: %v", err)
	}
	if e.jwksHits.Load() == hits {
		t.Error("the relying party did not fetch the JWKS for the new key")
	}
	lenient := func() *gooidc.IDTokenVerifier {
		return gooidc.NewVerifier(e.issuer, gooidc.NewRemoteKeySet(e.ctx(), e.issuer+PathJWKS),
			&gooidc.Config{ClientID: appID, SkipExpiryCheck: true, SupportedSigningAlgs: []string{"ES256"}})
	}
	// Within the grace, the old key's token still verifies.
	if _, err := lenient().Verify(e.ctx(), old); err != nil {
		t.Errorf("within the grace: %v", err)
	}
	// After the grace the old key is gone, and so is its token's
	// signature's worth.
	e.clock.Advance(grace)
	if kids := jwks(); !slices.Equal(kids, []string{kid2}) {
		t.Fatalf("JWKS %v after the grace, want only %s", kids, kid2)
	}
	if _, err := lenient().Verify(e.ctx(), old); err == nil {
		t.Error("a token of a key past its grace verified")
	}
	if _, err := p.verifyIDToken(t.Context(), old); !errors.Is(err, errHintKeyGone) {
		t.Errorf("verifyIDToken of a token of a retired key: %v", err)
	}
	// As a logout hint it is no hint: the user is asked.
	if s := e.logoutStatus(old); s != http.StatusOK {
		t.Errorf("logout with a hint of a retired key answered %d", s)
	}
}

// TestRotationDuringLogins rotates the keys of two nodes many times while
// relying-party logins run: no login fails, and the relying party fetches
// the JWKS again for new keys. The clock runs a thousand times fast; the
// loop is bounded in time and in count.
func TestRotationDuringLogins(t *testing.T) {
	e := newEnv(t, 2, func(c *Config) {
		c.KeyRotation, c.KeyGrace, c.CodeTTL, c.AccessTokenTTL = MinKeyRotation, DefaultIDTokenTTL+time.Minute, MaxCodeTTL, MaxCodeTTL
	})
	r := e.rp(appID, appSecret, appRedirect)
	deadline := time.Now().Add(5 * time.Second)
	fakeEnd := e.clock.Now().Add(6 * MinKeyRotation)
	const maxLogins = 2000
	stop := make(chan struct{})
	var clockDone sync.WaitGroup
	clockDone.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond) // 2500 times as fast
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				e.clock.Advance(5 * time.Second)
			}
		}
	})
	var mu sync.Mutex
	kids := map[string]int{}
	var logins, failures atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for time.Now().Before(deadline) && e.clock.Now().Before(fakeEnd) && logins.Add(1) <= maxLogins {
				// Time also passes with each login, so that a fast
				// machine rotates as often as a slow one.
				e.clock.Advance(5 * time.Second)
				tok, _, err := r.login(newFlow())
				if err != nil {
					failures.Add(1)
					t.Errorf("login during rotation: %v", err)
					return
				}
				mu.Lock()
				kids[kidOf(t, tok.Extra("id_token").(string))]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	clockDone.Wait()
	t.Logf("%d logins signed by %d keys; the relying party fetched the JWKS %d times", min(logins.Load(), maxLogins), len(kids), e.jwksHits.Load())
	if len(kids) < 3 {
		t.Errorf("only %d keys signed: the keys did not rotate", len(kids))
	}
	if e.jwksHits.Load() < 2 {
		t.Errorf("the relying party fetched the JWKS %d times", e.jwksHits.Load())
	}
}

// TestKeySetAgreement starts eight nodes on one empty key store at once:
// compare-and-swap lets one key set be written, and all sign with and
// publish the same keys.
func TestKeySetAgreement(t *testing.T) {
	e := newEnv(t, 8, nil)
	var wg sync.WaitGroup
	sets := make([]*keySet, len(e.providers))
	for i, p := range e.providers {
		wg.Go(func() {
			var err error
			if sets[i], err = p.keys(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i, s := range sets {
		if s == nil || s.signer.kid != sets[0].signer.kid || string(s.jwks) != string(sets[0].jwks) {
			t.Fatalf("node %d has another key set", i)
		}
	}
}

// flakyKeys is a KeyStore that fails while down is set.
type flakyKeys struct {
	KeyStore
	down atomic.Bool
}

func (f *flakyKeys) Get(ctx context.Context, key string) ([]byte, error) {
	if f.down.Load() {
		return nil, errors.New("connection refused")
	}
	return f.KeyStore.Get(ctx, key)
}

// TestKeyStoreDown keeps signing with the set read last while the key
// store is down, for the grace, and then refuses.
func TestKeyStoreDown(t *testing.T) {
	clock := &fakeClock{}
	ks := &flakyKeys{KeyStore: NewLocalKeyStore()}
	p, err := New(Config{Issuer: "https://sso.example.test", Clients: testClients()},
		Options{Store: store.NewMemory(store.Options{Now: clock.Now}), Keys: ks, Authenticator: &fakeAuth{clock: clock}, Now: clock.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckKeys(t.Context()); err != nil {
		t.Fatal(err)
	}
	ks.down.Store(true)
	clock.Advance(time.Hour)
	if err := p.CheckKeys(t.Context()); err != nil {
		t.Errorf("within the grace: %v", err)
	}
	clock.Advance(DefaultKeyGrace)
	if err := p.CheckKeys(t.Context()); !errors.Is(err, errNoKeys) {
		t.Errorf("after the grace: %v", err)
	}
	rec := httptest.NewRecorder()
	p.JWKS().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/jwks", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("JWKS without keys: %d", rec.Code)
	}
	ks.down.Store(false)
	if err := p.CheckKeys(t.Context()); err != nil {
		t.Errorf("after the store came back: %v", err)
	}
}

// TestSigningKeysFromFiles: keys from PEM files, RS256 first (signing) and
// an ES256 one published; the relying party verifies RS256.
func TestSigningKeysFromFiles(t *testing.T) {
	rsaKey := must(rsa.GenerateKey(rand.Reader, 2048))
	ecKey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(ecKey))})
	k1, err := ParseSigningKey(rsaPEM)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParseSigningKey(ecPEM)
	if err != nil {
		t.Fatal(err)
	}
	if k1.Alg() != AlgRS256 || k2.Alg() != AlgES256 || k1.KeyID() == "" {
		t.Fatalf("algs %s %s", k1.Alg(), k2.Alg())
	}
	e := newEnv(t, 1, func(c *Config) { c.SigningKeys = []SigningKey{k1, k2} })
	r := e.rp(appID, appSecret, appRedirect)
	tok, _, err := r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	if kidOf(t, tok.Extra("id_token").(string)) != k1.KeyID() {
		t.Error("not signed by the first key")
	}
	resp, err := e.browser.Get(e.issuer + PathJWKS)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(set.Keys) != 2 || set.Keys[0].KeyID != k1.KeyID() || set.Keys[1].KeyID != k2.KeyID() {
		t.Errorf("JWKS %+v", set.Keys)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Error("the JWKS holds a private key")
		}
	}
	if _, err := e.keys.Get(t.Context(), keySetKey); err == nil {
		t.Error("keys from files were also generated into the key store")
	}
}

// TestParseSigningKey refuses keys that do not fit ES256 or RS256.
func TestParseSigningKey(t *testing.T) {
	p384 := must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	small := must(rsa.GenerateKey(rand.Reader, 1024))
	p256 := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: must(x509.MarshalECPrivateKey(p256))})
	if k, err := ParseSigningKey(sec1); err != nil || k.Alg() != AlgES256 {
		t.Errorf("SEC 1 P-256: %v", err)
	}
	for name, b := range map[string][]byte{
		"P-384":      pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: must(x509.MarshalECPrivateKey(p384))}),
		"RSA 1024":   pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)}),
		"public key": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(p256.Public()))}),
		"two keys":   append(slices.Clone(sec1), sec1...),
		"not PEM":    []byte("hello"),
		"garbage":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
	} {
		if _, err := ParseSigningKey(b); err == nil {
			t.Errorf("%s was accepted", name)
		}
	}
}
