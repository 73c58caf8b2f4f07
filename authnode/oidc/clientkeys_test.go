package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/iwalb/iwalb/authnode/store"
)

// Client keys of the tests, made once: RSA generation is slow.
var (
	testEC256   = must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	testEC384   = must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	testRSA     = must(rsa.GenerateKey(rand.Reader, 2048))
	_, testEd   = must2(ed25519.GenerateKey(rand.Reader))
	testEC256b  = must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	testP521    = must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader))
	testRSA1024 = must(rsa.GenerateKey(rand.Reader, 1024))
)

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

// jwkJSON is the JWK of key (public or private) with kid and alg.
func jwkJSON(key any, kid, alg string) string {
	return string(must(json.Marshal(jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg})))
}

func jwks(keys ...string) []byte {
	return []byte(`{"keys":[` + strings.Join(keys, ",") + `]}`)
}

func pemPublic(key any) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(key))})
}

// TestParseClientKeys reads JWKS documents and PEM public keys of every
// supported type, and names the algorithms each verifies.
func TestParseClientKeys(t *testing.T) {
	for name, tc := range map[string]struct {
		data []byte
		kids []string
		algs []jose.SignatureAlgorithm
	}{
		"JWKS of four types": {
			jwks(jwkJSON(testEC256.Public(), "ec", ""), jwkJSON(testEC384.Public(), "ec384", ""),
				jwkJSON(testRSA.Public(), "rsa", ""), jwkJSON(testEd.Public(), "ed", "")),
			[]string{"ec", "ec384", "rsa", "ed"},
			[]jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA},
		},
		"JWKS with alg narrowing RSA to PS256": {
			jwks(jwkJSON(testRSA.Public(), "rsa", "PS256")), []string{"rsa"}, []jose.SignatureAlgorithm{jose.PS256},
		},
		"JWK with use and key_ops": {
			jwks(`{"kty":"EC","crv":"P-256","use":"sig","key_ops":["verify"],"kid":"k",` + strings.TrimPrefix(jwkJSON(testEC256.Public(), "", ""), `{"kty":"EC","crv":"P-256",`)),
			[]string{"k"}, []jose.SignatureAlgorithm{jose.ES256},
		},
		"PEM, several": {
			append(append(pemPublic(testEC256.Public()), pemPublic(testEd.Public())...),
				pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&testRSA.PublicKey)})...),
			nil, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.PS256, jose.EdDSA},
		},
	} {
		k, err := ParseClientKeys(tc.data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !slices.Equal(k.algs(), tc.algs) {
			t.Errorf("%s: algs %v, want %v", name, k.algs(), tc.algs)
		}
		if tc.kids != nil && !slices.Equal(k.KeyIDs(), tc.kids) {
			t.Errorf("%s: kids %v, want %v", name, k.KeyIDs(), tc.kids)
		}
		for _, id := range k.KeyIDs() {
			if id == "" {
				t.Errorf("%s: a key without a name", name)
			}
		}
	}
}

// TestParseClientKeysRefusals refuses private keys (with an error that
// says so), symmetric keys, unsupported types and sizes, repeated kids and
// keys, and what is not keys.
func TestParseClientKeysRefusals(t *testing.T) {
	cert := selfSigned(t)
	many := make([]string, maxClientKeys+1)
	for i := range many {
		many[i] = jwkJSON(must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)).Public(), "", "")
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"EC private JWK":       {jwks(jwkJSON(testEC256, "k", "")), "private key"},
		"RSA private JWK":      {jwks(jwkJSON(testRSA, "k", "")), "private key"},
		"Ed25519 private JWK":  {jwks(jwkJSON(testEd, "k", "")), "private key"},
		"PKCS #8 private PEM":  {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(testEC256))}), "private key"},
		"SEC 1 private PEM":    {pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: must(x509.MarshalECPrivateKey(testEC256))}), "private key"},
		"PKCS #1 private PEM":  {pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(testRSA)}), "private key"},
		"public then private":  {append(pemPublic(testEC256.Public()), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(testEC256b))})...), "private key"},
		"symmetric JWK":        {jwks(`{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0","kid":"h"}`), "symmetric"},
		"P-521":                {jwks(jwkJSON(testP521.Public(), "", "")), "P-521"},
		"P-521 PEM":            {pemPublic(testP521.Public()), "P-521"},
		"RSA 1024":             {pemPublic(testRSA1024.Public()), "RSA key of 1024 bits"},
		"kid twice":            {jwks(jwkJSON(testEC256.Public(), "k", ""), jwkJSON(testEC256b.Public(), "k", "")), "used twice"},
		"key twice":            {jwks(jwkJSON(testEC256.Public(), "a", ""), jwkJSON(testEC256.Public(), "b", "")), "same key"},
		"key twice in PEM":     {append(pemPublic(testEd.Public()), pemPublic(testEd.Public())...), "same key"},
		"alg not the key's":    {jwks(jwkJSON(testRSA.Public(), "k", "ES256")), "does not fit"},
		"HS256 alg":            {jwks(jwkJSON(testEC256.Public(), "k", "HS256")), "does not fit"},
		"use enc":              {jwks(strings.Replace(jwkJSON(testEC256.Public(), "k", ""), `"kid"`, `"use":"enc","kid"`, 1)), "use"},
		"key_ops sign only":    {jwks(strings.Replace(jwkJSON(testEC256.Public(), "k", ""), `"kid"`, `"key_ops":["sign"],"kid"`, 1)), "key_ops"},
		"unknown kty":          {jwks(`{"kty":"XYZ","kid":"k"}`), "kty"},
		"no kty":               {jwks(`{"kid":"k"}`), "kty"},
		"no keys array":        {[]byte(`{"kty":"EC"}`), "keys"},
		"empty keys array":     {[]byte(`{"keys":[]}`), "no key"},
		"too many keys":        {jwks(many...), "at most"},
		"certificate":          {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert}), "certificate"},
		"not keys":             {[]byte("hello"), "neither"},
		"empty":                {[]byte("  \n"), "empty"},
		"garbage after PEM":    {append(pemPublic(testEC256.Public()), "trailing"...), "after the last key"},
		"garbage in PEM":       {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}), "PEM block 1"},
		"too large":            {make([]byte, maxClientKeyBytes+1), "bytes"},
		"JSON that is not one": {[]byte(`{"keys":`), "JWKS"},
	} {
		_, err := ParseClientKeys(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
}

// selfSigned is a certificate's DER, which is not a key to register.
func selfSigned(t *testing.T) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, testEC256.Public(), testEC256)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestClientKeysConfig: keys make a client private_key_jwt by default,
// and only such a client has keys, and no secret.
func TestClientKeysConfig(t *testing.T) {
	keys := must(ParseClientKeys(pemPublic(testEC256.Public())))
	base := func() Config {
		return Config{Issuer: "https://sso.example.test", Clients: []Client{{ID: "jwt", Keys: keys, RedirectURIs: []string{appRedirect}}}}
	}
	opts := Options{Store: store.NewMemory(store.Options{}), Keys: NewLocalKeyStore(), Authenticator: &fakeAuth{}}
	p, err := New(base(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if p.clients["jwt"].TokenAuth != AuthPrivateKeyJWT {
		t.Errorf("default token auth with keys: %s", p.clients["jwt"].TokenAuth)
	}
	for want, mod := range map[string]func(*Client){
		"not a secret":       func(c *Client) { c.Secret = appSecret; c.TokenAuth = AuthPrivateKeyJWT },
		"needs the client's": func(c *Client) { c.Keys = ClientKeys{}; c.TokenAuth = AuthPrivateKeyJWT },
		"not client_secret":  func(c *Client) { c.Secret = appSecret },
		"not none":           func(c *Client) { c.TokenAuth = AuthNone },
	} {
		c := base()
		mod(&c.Clients[0])
		if _, err := New(c, opts); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", want, err)
		}
	}
	// A client with refresh tokens needs Confirm.
	c := base()
	c.Clients[0].RefreshTokens = true
	if _, err := New(c, opts); err == nil || !strings.Contains(err.Error(), "Confirm") {
		t.Errorf("refresh tokens without Confirm: %v", err)
	}
	c.RefreshTokenTTL = MaxRefreshTokenTTL + time.Hour
	opts.Confirm = func(_ context.Context, u *User) (*User, error) { return u, nil }
	if _, err := New(c, opts); err == nil || !strings.Contains(err.Error(), "refresh token TTL") {
		t.Errorf("refresh token TTL too long: %v", err)
	}
	c.RefreshTokenTTL = 0
	if p, err := New(c, opts); err != nil || p.cfg.RefreshTokenTTL != DefaultRefreshTokenTTL {
		t.Errorf("refresh token TTL default: %v", err)
	}
}
