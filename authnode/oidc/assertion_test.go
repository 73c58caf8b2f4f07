package oidc

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/iwalb/iwalb/authnode/store"
)

// private_key_jwt clients of the tests: one registered by a JWKS of four
// keys (with refresh tokens), one by a PEM key, without a kid.
const (
	jwtID, jwtRedirect = "jwt-app", "https://jwt.example.test/cb"
	pemID, pemRedirect = "jwt-pem", "https://pem.example.test/cb"
)

func withJWTClients(c *Config) {
	keys := must(ParseClientKeys(jwks(
		jwkJSON(testEC256.Public(), "ec1", ""), jwkJSON(testEC384.Public(), "ec384", ""),
		jwkJSON(testRSA.Public(), "rsa1", ""), jwkJSON(testEd.Public(), "ed1", ""))))
	pemKeys := must(ParseClientKeys(pemPublic(testEC256b.Public())))
	c.Clients = append(c.Clients,
		Client{ID: jwtID, Keys: keys, RedirectURIs: []string{jwtRedirect}, RefreshTokens: true},
		Client{ID: pemID, Keys: pemKeys, TokenAuth: AuthPrivateKeyJWT, RedirectURIs: []string{pemRedirect}})
}

// claimsFor makes the claims of a good assertion of client, now.
func (e *env) assertionClaims(client string) map[string]any {
	now := e.clock.Now()
	return map[string]any{
		"iss": client, "sub": client, "aud": e.issuer + PathToken,
		"exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "jti": randomString(),
	}
}

// signAssertion signs claims with key (a private key, or the bytes of an
// HMAC secret) under alg and kid.
func signAssertion(t testing.TB, key any, alg jose.SignatureAlgorithm, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// unsigned is claims as a JWT with alg none.
func unsigned(claims map[string]any, alg string) string {
	h := base64.RawURLEncoding.EncodeToString(must(json.Marshal(map[string]string{"alg": alg, "typ": "JWT", "kid": "ec1"})))
	return h + "." + base64.RawURLEncoding.EncodeToString(must(json.Marshal(claims))) + "."
}

// assertionForm is a token request authenticated by assertion, for a code
// that is well formed but unknown: a request that passes client
// authentication is answered invalid_grant, one that fails it
// invalid_client.
func assertionForm(clientID, assertion string) url.Values {
	f := url.Values{
		"grant_type": {"authorization_code"}, "code": {strings.Repeat("c", 43)}, "redirect_uri": {jwtRedirect},
		"client_assertion_type": {jwtBearer}, "client_assertion": {assertion},
	}
	if clientID != "" {
		f.Set("client_id", clientID)
	}
	return f
}

// postToken posts form to /token, with basic credentials when given, and
// returns the status and the answer.
func (e *env) postToken(form url.Values, basicID, basicSecret string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.issuer+PathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
	}
	resp, err := e.browser.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		e.t.Fatalf("a token answer that is not JSON: %v", err)
	}
	return resp.StatusCode, body
}

// TestPrivateKeyJWTFlow signs in with a private_key_jwt client: x/oauth2
// sends the assertion in the code exchange, go-oidc verifies the ID
// token, and the refresh token refreshes with a new assertion.
func TestPrivateKeyJWTFlow(t *testing.T) {
	e := newEnv(t, 2, withJWTClients)
	r := e.rp(jwtID, "", jwtRedirect)
	r.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	f := newFlow()
	code, err := r.authorize(f)
	if err != nil {
		t.Fatal(err)
	}
	assertion := signAssertion(t, testEC256, jose.ES256, "ec1", e.assertionClaims(jwtID))
	tok, err := r.oauth.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier),
		oauth2.SetAuthURLParam("client_assertion_type", jwtBearer), oauth2.SetAuthURLParam("client_assertion", assertion))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	idt, err := r.verify(tok)
	if err != nil || idt.Subject != alice.SID {
		t.Fatalf("ID token: %v", err)
	}
	if _, err := r.userInfo(tok); err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for a client with RefreshTokens")
	}
	// The refresh authenticates the same way, with a new assertion, by
	// each of the client's keys.
	rt := tok.RefreshToken
	for _, k := range []struct {
		key any
		alg jose.SignatureAlgorithm
		kid string
	}{{testRSA, jose.PS256, "rsa1"}, {testEd, jose.EdDSA, ""}, {testEC384, jose.ES384, "ec384"}} {
		status, body := e.postToken(url.Values{
			"grant_type": {"refresh_token"}, "refresh_token": {rt},
			"client_assertion_type": {jwtBearer}, "client_assertion": {signAssertion(t, k.key, k.alg, k.kid, e.assertionClaims(jwtID))},
		}, "", "")
		if status != http.StatusOK || body["refresh_token"] == nil {
			t.Fatalf("refresh by assertion %s: %d %v", k.alg, status, body)
		}
		rt = body["refresh_token"].(string)
	}
}

// TestPrivateKeyJWTRefusals: only a good assertion, signed by a key of the
// client with an algorithm that fits it, for this endpoint, in its
// lifetime, passes; a client authenticates only by the method it is
// registered for.
func TestPrivateKeyJWTRefusals(t *testing.T) {
	e := newEnv(t, 1, withJWTClients)
	good := func() map[string]any { return e.assertionClaims(jwtID) }
	with := func(k string, v any) map[string]any {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	now := e.clock.Now()
	pub := testEC256.Public()
	der := must(x509.MarshalPKIXPublicKey(pub))
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwkBytes := []byte(jwkJSON(pub, "ec1", ""))
	es := func(c map[string]any) string { return signAssertion(t, testEC256, jose.ES256, "ec1", c) }
	padded := good()
	padded["pad"] = strings.Repeat("x", maxAssertionBytes)

	for _, tc := range []struct {
		name string
		form url.Values
		want string // invalid_grant: authenticated
	}{
		{"good ES256", assertionForm(jwtID, es(good())), "invalid_grant"},
		{"good, no client_id", assertionForm("", es(good())), "invalid_grant"},
		{"good, no kid", assertionForm(jwtID, signAssertion(t, testEC256, jose.ES256, "", good())), "invalid_grant"},
		{"good, unknown kid", assertionForm(jwtID, signAssertion(t, testEC256, jose.ES256, "nope", good())), "invalid_grant"},
		{"good RS256", assertionForm(jwtID, signAssertion(t, testRSA, jose.RS256, "rsa1", good())), "invalid_grant"},
		{"good PS256", assertionForm(jwtID, signAssertion(t, testRSA, jose.PS256, "rsa1", good())), "invalid_grant"},
		{"good EdDSA", assertionForm(jwtID, signAssertion(t, testEd, jose.EdDSA, "ed1", good())), "invalid_grant"},
		{"good ES384", assertionForm(jwtID, signAssertion(t, testEC384, jose.ES384, "ec384", good())), "invalid_grant"},
		{"good, aud the issuer", assertionForm(jwtID, es(with("aud", e.issuer))), "invalid_grant"},
		{"good, aud a list", assertionForm(jwtID, es(with("aud", []string{"https://elsewhere.test", e.issuer + PathToken}))), "invalid_grant"},
		{"good, expired within the leeway", assertionForm(jwtID, es(with("exp", now.Add(-10*time.Second).Unix()))), "invalid_grant"},
		{"good, no iat", assertionForm(jwtID, es(with("iat", nil))), "invalid_grant"},
		{"good, PEM key", assertionForm(pemID, signAssertion(t, testEC256b, jose.ES256, "", e.assertionClaims(pemID))), "invalid_grant"},

		{"another key under the kid", assertionForm(jwtID, signAssertion(t, testEC256b, jose.ES256, "ec1", good())), "invalid_client"},
		{"another client's key", assertionForm(jwtID, signAssertion(t, testEC256b, jose.ES256, "", good())), "invalid_client"},
		{"RS256 under an EC kid", assertionForm(jwtID, signAssertion(t, testRSA, jose.RS256, "ec1", good())), "invalid_client"},
		{"alg none", assertionForm(jwtID, unsigned(good(), "none")), "invalid_client"},
		{"alg None", assertionForm(jwtID, unsigned(good(), "None")), "invalid_client"},
		{"HS256 keyed with the PEM", assertionForm(jwtID, signAssertion(t, pemBytes, jose.HS256, "ec1", good())), "invalid_client"},
		{"HS256 keyed with the DER", assertionForm(jwtID, signAssertion(t, der, jose.HS256, "ec1", good())), "invalid_client"},
		{"HS256 keyed with the JWK", assertionForm(jwtID, signAssertion(t, jwkBytes, jose.HS256, "ec1", good())), "invalid_client"},
		{"expired", assertionForm(jwtID, es(with("exp", now.Add(-2*time.Minute).Unix()))), "invalid_client"},
		{"exp too far ahead", assertionForm(jwtID, es(with("exp", now.Add(maxAssertionLifetime+2*time.Minute).Unix()))), "invalid_client"},
		{"no exp", assertionForm(jwtID, es(with("exp", nil))), "invalid_client"},
		{"exp not a number", assertionForm(jwtID, es(with("exp", "tomorrow"))), "invalid_client"},
		{"nbf ahead", assertionForm(jwtID, es(with("nbf", now.Add(5*time.Minute).Unix()))), "invalid_client"},
		{"iat ahead", assertionForm(jwtID, es(with("iat", now.Add(5*time.Minute).Unix()))), "invalid_client"},
		{"aud another endpoint", assertionForm(jwtID, es(with("aud", e.issuer+PathUserInfo))), "invalid_client"},
		{"aud another server", assertionForm(jwtID, es(with("aud", "https://elsewhere.test/token"))), "invalid_client"},
		{"no aud", assertionForm(jwtID, es(with("aud", nil))), "invalid_client"},
		{"iss not sub", assertionForm(jwtID, es(with("sub", pemID))), "invalid_client"},
		{"sub not iss", assertionForm(jwtID, es(with("iss", appID))), "invalid_client"},
		{"iss and sub another client", assertionForm(jwtID, es(with("iss", pemID))), "invalid_client"},
		{"client_id not the assertion's", assertionForm(pemID, es(good())), "invalid_client"},
		{"no jti", assertionForm(jwtID, es(with("jti", nil))), "invalid_client"},
		{"jti too long", assertionForm(jwtID, es(with("jti", strings.Repeat("j", maxJTI+1)))), "invalid_client"},
		{"oversized", assertionForm(jwtID, es(padded)), "invalid_client"},
		{"not a JWT", assertionForm(jwtID, "abc"), "invalid_client"},
		{"unknown client", assertionForm("nobody", es(with("iss", "nobody"))), "invalid_client"},
		{"no client at all", assertionForm("", unsigned(map[string]any{}, "ES256")), "invalid_client"},
		{"a secret client's assertion", assertionForm(appID, signAssertion(t, testEC256, jose.ES256, "", e.assertionClaims(appID))), "invalid_client"},
		{"a public client's assertion", assertionForm(spaID, signAssertion(t, testEC256, jose.ES256, "", e.assertionClaims(spaID))), "invalid_client"},
		{"another assertion type", func() url.Values {
			f := assertionForm(jwtID, es(good()))
			f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
			return f
		}(), "invalid_request"},
		{"a type without an assertion", func() url.Values { f := assertionForm(jwtID, ""); f.Del("client_assertion"); return f }(), "invalid_request"},
		{"an assertion without a type", func() url.Values { f := assertionForm(jwtID, es(good())); f.Del("client_assertion_type"); return f }(), "invalid_request"},
		{"an assertion and a secret", func() url.Values { f := assertionForm(jwtID, es(good())); f.Set("client_secret", appSecret); return f }(), "invalid_request"},
	} {
		status, body := e.postToken(tc.form, "", "")
		wantStatus := map[string]int{"invalid_grant": 400, "invalid_client": 401, "invalid_request": 400}[tc.want]
		if body["error"] != tc.want || status != wantStatus {
			t.Errorf("%s: %d %v, want %s", tc.name, status, body, tc.want)
		}
	}

	// A private_key_jwt client may not authenticate any other way.
	code := url.Values{"grant_type": {"authorization_code"}, "code": {strings.Repeat("c", 43)}, "redirect_uri": {jwtRedirect}}
	for name, tc := range map[string]struct {
		form         url.Values
		user, secret string
	}{
		"a secret in the body": {withParams(code, "client_id", jwtID, "client_secret", appSecret), "", ""},
		"a secret in Basic":    {code, jwtID, appSecret},
		"nothing":              {withParams(code, "client_id", jwtID), "", ""},
	} {
		if status, body := e.postToken(tc.form, tc.user, tc.secret); status != http.StatusUnauthorized || body["error"] != "invalid_client" {
			t.Errorf("private_key_jwt client with %s: %d %v", name, status, body)
		}
	}
	// Nor a secret client by an assertion in the header's company.
	if status, body := e.postToken(assertionForm("", es(good())), appID, appSecret); status != http.StatusBadRequest || body["error"] != "invalid_request" {
		t.Errorf("Basic and an assertion: %d %v", status, body)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "why=\"assertion: expired\"") || !strings.Contains(logs, "iss and sub must both be the client_id") {
		t.Errorf("the refusals' reasons were not logged")
	}

	// An alg of kilobytes, which the JWT library's error quotes: refused,
	// and logged in a short line without it.
	before := len(e.logs.String())
	if status, body := e.postToken(assertionForm(jwtID, unsigned(good(), strings.Repeat("A", 4000))), "", ""); status != http.StatusUnauthorized || body["error"] != "invalid_client" {
		t.Errorf("an alg of 4,000 bytes: %d %v", status, body)
	}
	if grown := len(e.logs.String()) - before; grown == 0 || grown > 1024 {
		t.Errorf("the refusal of an alg of 4,000 bytes logged %d bytes", grown)
	}
}

func withParams(v url.Values, kv ...string) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}

// TestAssertionReplay: an assertion authenticates once, at whichever node
// it reaches first; the next use, at the other node, is refused, and so
// is another assertion with the same jti. Of concurrent uses, at most one
// passes.
func TestAssertionReplay(t *testing.T) {
	e := newEnv(t, 2, withJWTClients) // consecutive requests reach different nodes
	claims := e.assertionClaims(jwtID)
	a := signAssertion(t, testEC256, jose.ES256, "ec1", claims)
	if _, body := e.postToken(assertionForm(jwtID, a), "", ""); body["error"] != "invalid_grant" {
		t.Fatalf("first use: %v", body)
	}
	if status, body := e.postToken(assertionForm(jwtID, a), "", ""); status != http.StatusUnauthorized || body["error"] != "invalid_client" {
		t.Errorf("replay at the other node: %d %v", status, body)
	}
	claims["exp"] = e.clock.Now().Add(2 * time.Minute).Unix()
	if _, body := e.postToken(assertionForm(jwtID, signAssertion(t, testEd, jose.EdDSA, "ed1", claims)), "", ""); body["error"] != "invalid_client" {
		t.Errorf("another assertion with the same jti: %v", body)
	}
	// The same jti is another client's own.
	pc := e.assertionClaims(pemID)
	pc["jti"] = claims["jti"]
	if _, body := e.postToken(assertionForm(pemID, signAssertion(t, testEC256b, jose.ES256, "", pc)), "", ""); body["error"] != "invalid_grant" {
		t.Errorf("another client's assertion with the same jti: %v", body)
	}
	if !strings.Contains(e.logs.String(), "used before (a replay)") {
		t.Error("the replay was not logged as one")
	}

	const n = 16
	a = signAssertion(t, testEC256, jose.ES256, "ec1", e.assertionClaims(jwtID))
	var passed atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, body := e.postToken(assertionForm(jwtID, a), "", ""); body["error"] == "invalid_grant" {
				passed.Add(1)
			}
		})
	}
	wg.Wait()
	if passed.Load() > 1 {
		t.Errorf("%d of %d concurrent uses of one assertion passed", passed.Load(), n)
	}
	if _, body := e.postToken(assertionForm(jwtID, a), "", ""); body["error"] != "invalid_client" {
		t.Errorf("the assertion after the race: %v", body)
	}
}

// interleavingStore is a Store whose operations pause a random moment
// before they run, so that concurrent callers interleave at every step.
type interleavingStore struct{ Store }

func pause() { time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond) }

func (s interleavingStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	pause()
	return s.Store.Put(ctx, key, value, ttl)
}

func (s interleavingStore) Get(ctx context.Context, key string) ([]byte, error) {
	pause()
	return s.Store.Get(ctx, key)
}

// TestSpendJTI races attempts at one jti at two providers on a shared
// store: at most one wins, one alone always wins, and none wins after a
// win.
func TestSpendJTI(t *testing.T) {
	st := interleavingStore{store.NewMemory(store.Options{})}
	var nodes []*Provider
	for range 2 {
		p, err := New(Config{Issuer: "https://sso.example.test", Clients: testClients()},
			Options{Store: st, Keys: NewLocalKeyStore(), Authenticator: &fakeAuth{}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, p)
	}
	exp := time.Now().Add(time.Minute)
	for round := range 50 {
		jti := randomString()
		var wins atomic.Int64
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				ok, err := nodes[i%2].spendJTI(t.Context(), jwtID, jti, exp)
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() > 1 {
			t.Fatalf("round %d: %d attempts won", round, wins.Load())
		}
		if ok, _ := nodes[0].spendJTI(t.Context(), jwtID, jti, exp); ok {
			t.Fatalf("round %d: a later attempt won", round)
		}
	}
	for range 10 {
		if ok, err := nodes[1].spendJTI(t.Context(), jwtID, randomString(), exp); !ok || err != nil {
			t.Errorf("an attempt alone: %v %v", ok, err)
		}
	}
}

// TestDiscoveryOptIns announces private_key_jwt and its algorithms, and
// the refresh_token grant, only when a client has them.
func TestDiscoveryOptIns(t *testing.T) {
	for _, opted := range []bool{false, true} {
		var cfg func(*Config)
		if opted {
			cfg = withJWTClients
		}
		e := newEnv(t, 1, cfg)
		resp, err := e.browser.Get(e.issuer + PathDiscovery)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Grants   []string `json:"grant_types_supported"`
			Methods  []string `json:"token_endpoint_auth_methods_supported"`
			AuthAlgs []string `json:"token_endpoint_auth_signing_alg_values_supported"`
		}
		err = json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("discovery: %v", err)
		}
		if got := slices.Contains(d.Grants, "refresh_token"); got != opted {
			t.Errorf("opted %v: grant types %v", opted, d.Grants)
		}
		if got := slices.Contains(d.Methods, AuthPrivateKeyJWT); got != opted {
			t.Errorf("opted %v: auth methods %v", opted, d.Methods)
		}
		want := []string(nil)
		if opted {
			want = []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"}
		}
		if !slices.Equal(d.AuthAlgs, want) {
			t.Errorf("opted %v: auth signing algs %v", opted, d.AuthAlgs)
		}
	}
}

// TestAssertionAudienceBackchannel accepts the token endpoint's URL as
// discovery announces it, at the back-channel URL, as the aud.
func TestAssertionAudienceBackchannel(t *testing.T) {
	const back = "https://nodes.example.test:8446/oidc"
	e := newEnv(t, 1, func(c *Config) { withJWTClients(c); c.BackchannelURL = back })
	for aud, want := range map[string]string{back + PathToken: "invalid_grant", e.issuer + PathToken: "invalid_grant", back: "invalid_client"} {
		c := e.assertionClaims(jwtID)
		c["aud"] = aud
		if _, body := e.postToken(assertionForm(jwtID, signAssertion(t, testEC256, jose.ES256, "ec1", c)), "", ""); body["error"] != want {
			t.Errorf("aud %s: %v, want %s", aud, body, want)
		}
	}
}
