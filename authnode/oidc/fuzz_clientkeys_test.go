package oidc

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/iwalb/iwalb/authnode/store"
	"github.com/iwalb/iwalb/internal/testkit"
)

// The client key parser's work budget: it decodes JSON (a map per key),
// PEM (one copy of each block) and the keys' numbers, a few copies of the
// input in all, and refuses more than maxClientKeyBytes before reading
// anything; the fixed part is a key's thumbprint and an RSA modulus.
var clientKeyAlloc = testkit.AllocBudget{PerByte: 48, Fixed: 64 << 10}

func FuzzParseClientKeys(f *testing.F) {
	f.Add(jwks(jwkJSON(testEC256.Public(), "ec", ""), jwkJSON(testRSA.Public(), "rsa", "PS256")))
	f.Add(jwks(jwkJSON(testEd.Public(), "ed", "EdDSA"), jwkJSON(testEC384.Public(), "", "")))
	f.Add(jwks(jwkJSON(testEC256, "priv", "")))
	f.Add(jwks(`{"kty":"oct","k":"c2VjcmV0","kid":"h"}`, `{"kty":"EC","crv":"P-256","x":"","y":""}`))
	f.Add(jwks(jwkJSON(testEC256.Public(), "k", ""), jwkJSON(testEC256.Public(), "k", "")))
	f.Add(append(pemPublic(testEC256.Public()), pemPublic(testEd.Public())...))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&testRSA.PublicKey)}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(testEC256))}))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","x5c":["AAAA"]}]}`))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var k ClientKeys
		var err error
		clientKeyAlloc.Within(t, "ParseClientKeys", len(data), func() { k, err = ParseClientKeys(data) })
		if err != nil {
			if len(err.Error()) > 400 {
				t.Fatalf("an error of %d bytes", len(err.Error()))
			}
			return
		}
		if len(data) > maxClientKeyBytes || k.Len() == 0 || k.Len() > maxClientKeys {
			t.Fatalf("%d keys from %d bytes", k.Len(), len(data))
		}
		kids, thumbs := map[string]bool{}, map[string]bool{}
		for _, ck := range k.keys {
			if ck.kid != "" && kids[ck.kid] || thumbs[ck.thumb] {
				t.Fatalf("a kid or key twice: %q", ck.kid)
			}
			kids[ck.kid], thumbs[ck.thumb] = true, true
			if len(ck.algs) == 0 || slices.ContainsFunc(ck.algs, func(a jose.SignatureAlgorithm) bool { return !slices.Contains(assertionAlgs, a) }) {
				t.Fatalf("algorithms %v", ck.algs)
			}
			if !(&jose.JSONWebKey{Key: ck.key}).IsPublic() {
				t.Fatalf("a key that is not public: %T", ck.key)
			}
		}
		// Parsing is a function of the input.
		again, err := ParseClientKeys(data)
		if err != nil || !slices.Equal(again.KeyIDs(), k.KeyIDs()) {
			t.Fatalf("parsed again: %v, %v", err, again.KeyIDs())
		}
	})
}

// FuzzClientAssertion verifies any string as an assertion of the client
// jwt-app: only claims the client's keys signed can come out, which here
// are those of the one good assertion among the seeds (however its
// encoding is changed), and nothing is parsed past maxAssertionBytes.
func FuzzClientAssertion(f *testing.F) {
	cfg := Config{Issuer: "https://sso.example.test", Clients: testClients(), SigningKeys: []SigningKey{fuzzKey(f)}}
	withJWTClients(&cfg)
	p, err := New(cfg, Options{Store: store.NewMemory(store.Options{}), Authenticator: &fakeAuth{}, Confirm: func(_ context.Context, u *User) (*User, error) { return u, nil }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	const jti = "the-good-jti"
	now := time.Now()
	claims := map[string]any{"iss": jwtID, "sub": jwtID, "aud": cfg.Issuer + PathToken, "exp": now.Add(maxAssertionLifetime).Unix(), "iat": now.Unix(), "jti": jti}
	good := signAssertion(f, testEC256, jose.ES256, "ec1", claims)
	f.Add(good)
	f.Add(signAssertion(f, testRSA, jose.PS256, "rsa1", claims))
	f.Add(signAssertion(f, testEd, jose.EdDSA, "", claims))
	f.Add(signAssertion(f, testEC256b, jose.ES256, "ec1", claims))
	f.Add(unsigned(claims, "none"))
	f.Add(signAssertion(f, []byte(jwkJSON(testEC256.Public(), "ec1", "")), jose.HS256, "ec1", claims))
	parts := strings.Split(good, ".")
	f.Add(parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"jwt-app","sub":"jwt-app","jti":"x"}`)) + "." + parts[2])
	c := p.clients[jwtID]
	f.Fuzz(func(t *testing.T, raw string) {
		if len(raw) > maxAssertionBytes {
			return // refused before parsing, as authenticateAssertion does
		}
		cl, err := p.verifyAssertion(c, raw)
		if err != nil {
			return
		}
		if cl.ID != jti || cl.Issuer != jwtID || cl.Subject != jwtID {
			t.Fatalf("verified claims that no key of the client signed: %+v", cl)
		}
	})
}
