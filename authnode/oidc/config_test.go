package oidc

import (
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode/store"
)

func TestCheckRedirectURI(t *testing.T) {
	for _, ok := range []string{
		"https://app.example.test/callback", "https://app.example.test:8444/sso/cb?tenant=1",
		"http://127.0.0.1:7777/cb", "http://[::1]/cb", "http://localhost:8080/cb", "https://app.example.test",
	} {
		if err := checkRedirectURI(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", "/callback", "app.example.test/cb", "http://app.example.test/cb", "https://app.example.test/cb#x",
		"https://user@app.example.test/cb", "https://*.example.test/cb", "javascript:alert(1)", "com.example.app:/cb",
		"https://app.example.test/a/../cb", "https://app.example.test/./cb", "https://app.example.test/a b", "http://127.0.0.1.example/cb",
		"https://app.example.test/" + strings.Repeat("a", maxRedirectURI),
	} {
		if err := checkRedirectURI(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

func TestCheckIssuer(t *testing.T) {
	for _, ok := range []string{"https://sso.example.test", "https://sso.example.test:8446/oidc"} {
		if err := checkIssuer(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", "http://sso.example.test", "https://sso.example.test/", "https://sso.example.test?x=1", "https://sso.example.test#x",
		"https://sso.example.test/a/../b", "https://u@sso.example.test", "sso.example.test", "https://sso.example.test/{x}",
		"https://sso.example.test/a b",
	} {
		if err := checkIssuer(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

// TestConfigValidate refuses what would make an unsafe or broken provider,
// with a message that names the field.
func TestConfigValidate(t *testing.T) {
	base := func() Config { return Config{Issuer: "https://sso.example.test", Clients: testClients()} }
	if _, err := New(base(), Options{Store: store.NewMemory(store.Options{}), Keys: NewLocalKeyStore(), Authenticator: &fakeAuth{}}); err != nil {
		t.Fatal(err)
	}
	for want, mod := range map[string]func(*Config){
		"no client":           func(c *Config) { c.Clients = nil },
		"registered twice":    func(c *Config) { c.Clients = append(c.Clients, c.Clients[0]) },
		"must include openid": func(c *Config) { c.Clients[0].Scopes = []string{ScopeProfile} },
		"is not one of":       func(c *Config) { c.Clients[0].Scopes = []string{ScopeOpenID, "offline_access"} },
		"takes no secret":     func(c *Config) { c.Clients[0].TokenAuth = AuthNone },
		"needs a secret":      func(c *Config) { c.Clients[0].Secret = "short" },
		"no redirect URI":     func(c *Config) { c.Clients[0].RedirectURIs = nil },
		"redirect URI":        func(c *Config) { c.Clients[0].PostLogoutRedirectURIs = []string{"http://app.example.test/"} },
		"token auth":          func(c *Config) { c.Clients[0].TokenAuth = "private_key_jwt" },
		"id must be":          func(c *Config) { c.Clients[0].ID = "a b" },
		"code TTL":            func(c *Config) { c.CodeTTL = time.Hour },
		"key rotation":        func(c *Config) { c.KeyRotation = 10 },
		"key grace":           func(c *Config) { c.IDTokenTTL, c.KeyGrace = time.Hour, time.Hour },
		"signing algorithm":   func(c *Config) { c.SigningAlg = "HS256" },
		"issuer":              func(c *Config) { c.Issuer = "https://sso.example.test/" },
	} {
		c := base()
		mod(&c)
		_, err := New(c, Options{Store: store.NewMemory(store.Options{}), Keys: NewLocalKeyStore(), Authenticator: &fakeAuth{}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", want, err)
		}
	}
	// Defaults, and the grace follows a long ID token lifetime.
	c := base()
	c.IDTokenTTL = 24 * time.Hour
	p, err := New(c, Options{Store: store.NewMemory(store.Options{}), Keys: NewLocalKeyStore(), Authenticator: &fakeAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.KeyGrace < c.IDTokenTTL+maxKeyRefresh || p.cfg.CodeTTL != DefaultCodeTTL || p.cfg.SigningAlg != AlgES256 {
		t.Errorf("defaults: %+v", p.cfg)
	}
	if p.clients[spaID].TokenAuth != AuthNone || p.clients[appID].TokenAuth != AuthSecretBasic || len(p.clients[appID].Scopes) != 4 {
		t.Errorf("client defaults: %+v %+v", p.clients[spaID], p.clients[appID])
	}
	// Nothing to sign with.
	if _, err := New(base(), Options{Store: store.NewMemory(store.Options{}), Authenticator: &fakeAuth{}}); err == nil {
		t.Error("neither keys nor a key store was accepted")
	}
}
