package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode/oidc"
)

// TestAuthNodeOIDC: the provider is off without the section; enabled, its
// clients are read with their secrets from files and the defaults filled
// by the provider; a bad issuer, a wildcard or http redirect URI, an
// inline secret, a duplicate client, an issuer whose endpoints take the
// node's own paths, and lifetimes that do not fit together are each
// reported at their lines.
func TestAuthNodeOIDC(t *testing.T) {
	dir := fixture(t)
	at := "  application_url: https://app.example.test/sso/callback\n"
	line := strings.Count(base[:strings.Index(base, at)+len(at)], "\n")
	if err := os.WriteFile(filepath.Join(dir, "grafana.secret"), []byte("grafana-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(t *testing.T, section string) *oidc.Config {
		t.Helper()
		f, err := Load(writeConfig(t, dir, strings.Replace(base, at, at+section, 1)))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := f.AuthNode()
		return cfg.OIDC
	}
	if got := load(t, ""); got != nil {
		t.Errorf("without an oidc section: %+v, want no provider", got)
	}
	got := load(t, `  oidc:
    enabled: true
    issuer: https://sso.example.test
    backchannel_url: https://lb.example.test
    id_token_ttl: 2m
    clients:
      - id: grafana
        secret_file: grafana.secret
        redirect_uris: [https://grafana.example.test/login/generic_oauth]
        required_group: Grafana-Users
`)
	if got == nil || got.Issuer != "https://sso.example.test" || got.BackchannelURL != "https://lb.example.test" || got.IDTokenTTL != 2*time.Minute || len(got.Clients) != 1 {
		t.Fatalf("oidc = %+v", got)
	}
	if cl := got.Clients[0]; cl.ID != "grafana" || cl.Secret != "grafana-secret-0123456789" || cl.RequiredGroup != "Grafana-Users" ||
		len(cl.RedirectURIs) != 1 || cl.RedirectURIs[0] != "https://grafana.example.test/login/generic_oauth" {
		t.Errorf("client = %+v", cl)
	}
	if err := got.Check(); err != nil {
		t.Errorf("the loaded configuration does not pass the provider's checks: %v", err)
	}
	// In memory, codes and keys are one node's: said, not refused.
	f, err := Load(writeConfig(t, dir, strings.Replace(base, at, at+"  oidc: {enabled: true, issuer: \"https://sso.example.test\", clients: [{id: a, redirect_uris: [\"https://a.example.test/cb\"]}]}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if w := f.Warnings(); w == nil || !strings.Contains(w.Error(), strconv.Itoa(line+1)+": warning: authnode.oidc: with store.type memory") {
		t.Errorf("warnings %v; want the in-memory provider's at line %d", w, line+1)
	}

	path := writeConfig(t, dir, strings.Replace(base, at, at+`  oidc:
    enabled: true
    issuer: https://sso.example.test/
    backchannel_url: https://lb.example.test/other
    clients:
      - id: a
        secret: inline-secret-0123456789
        redirect_uris:
          - https://*.example.test/cb
          - http://app.example.test/cb
      - id: b
        redirect_uris: [https://b.example.test/cb#frag]
      - id: b
        redirect_uris: [https://b.example.test/cb]
`, 1))
	_, err = Load(path)
	assertProblems(t, path, err, []string{
		strconv.Itoa(line+1) + `: warning: authnode.oidc: with store.type memory`,
		strconv.Itoa(line+3) + `: authnode.oidc.issuer: "https://sso.example.test/" may not end with a slash`,
		strconv.Itoa(line+4) + `: authnode.oidc.backchannel_url: "https://lb.example.test/other" must have the issuer's path`,
		strconv.Itoa(line+7) + `: authnode.oidc.clients[0].secret: inline secrets are not allowed; use secret_file or secret_env`,
		strconv.Itoa(line+9) + `: authnode.oidc.clients[0].redirect_uris[0]: redirect URI "https://*.example.test/cb": must name a host by a DNS name or an IP address (no wildcards)`,
		strconv.Itoa(line+10) + `: authnode.oidc.clients[0].redirect_uris[1]: redirect URI "http://app.example.test/cb": must be https (http only to a loopback address)`,
		strconv.Itoa(line+12) + `: authnode.oidc.clients[1].redirect_uris[0]: redirect URI "https://b.example.test/cb#frag": may not have a fragment`,
		strconv.Itoa(line+13) + `: authnode.oidc.clients[2].id: "b" is registered twice (first at line ` + strconv.Itoa(line+11) + `)`,
	})

	// A private_key_jwt client with refresh tokens; a keys file holding a
	// private key by mistake.
	var key *ecdsa.PrivateKey
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	priv, _ := x509.MarshalPKCS8PrivateKey(key)
	for name, block := range map[string]*pem.Block{"rp.pub": {Type: "PUBLIC KEY", Bytes: pub}, "rp.key": {Type: "PRIVATE KEY", Bytes: priv}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got = load(t, `  oidc:
    enabled: true
    issuer: https://sso.example.test
    refresh_token_ttl: 24h
    clients:
      - id: jwt
        token_auth: private_key_jwt
        keys_file: rp.pub
        refresh_tokens: true
        redirect_uris: [https://jwt.example.test/cb]
`)
	if cl := got.Clients[0]; got.RefreshTokenTTL != 24*time.Hour || cl.TokenAuth != oidc.AuthPrivateKeyJWT || cl.Keys.Len() != 1 || !cl.RefreshTokens {
		t.Errorf("private_key_jwt client: ttl %v, %+v", got.RefreshTokenTTL, cl)
	}
	path = writeConfig(t, dir, strings.Replace(base, at, at+`  oidc:
    enabled: true
    issuer: https://sso.example.test
    clients:
      - id: jwt
        token_auth: private_key_jwt
        keys_file: rp.key
        redirect_uris: [https://jwt.example.test/cb]
`, 1))
	_, err = Load(path)
	assertProblems(t, path, err, []string{
		strconv.Itoa(line+1) + `: warning: authnode.oidc: with store.type memory`,
		strconv.Itoa(line+7) + `: authnode.oidc.clients[0].keys_file: "rp.key" (` + filepath.Join(dir, "rp.key") + `): client keys: PEM block 1 is a private key`,
	})
	if !strings.Contains(err.Error(), "the private key stays with the client") {
		t.Errorf("a private key as the client's keys: %v; want the hint", err)
	}

	// The node's own paths, and lifetimes that do not fit.
	path = writeConfig(t, dir, strings.Replace(base, at, at+`  oidc:
    enabled: true
    issuer: https://sso.example.test/api
    clients: [{id: a, redirect_uris: [https://a.example.test/cb]}]
`, 1))
	_, err = Load(path)
	assertProblems(t, path, err, []string{
		strconv.Itoa(line+1) + `: warning: authnode.oidc: with store.type memory`,
		strconv.Itoa(line+3) + `: authnode.oidc.issuer: "https://sso.example.test/api": its endpoint /api/.well-known/openid-configuration is a path of the node's own`,
	})
	path = writeConfig(t, dir, strings.Replace(base, at, at+`  oidc:
    enabled: true
    issuer: https://sso.example.test
    id_token_ttl: 2h
    key_grace: 1h
    clients: [{id: a, redirect_uris: [https://a.example.test/cb]}]
`, 1))
	_, err = Load(path)
	assertProblems(t, path, err, []string{
		strconv.Itoa(line+1) + `: warning: authnode.oidc: with store.type memory`,
		strconv.Itoa(line+1) + `: authnode.oidc: key grace 1h0m0s is out of range`,
	})

	path = writeConfig(t, dir, strings.Replace(base, at, at+"  oidc:\n    issuer: https://sso.example.test\n", 1))
	f, err = Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if w := f.Warnings(); w == nil || !strings.Contains(w.Error(), strconv.Itoa(line+1)+": warning: authnode.oidc: ignored: the OpenID Connect provider is not enabled") {
		t.Errorf("warnings %v; want the ignored oidc section at line %d", w, line+1)
	}
}
