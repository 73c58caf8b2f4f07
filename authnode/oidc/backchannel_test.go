package oidc

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/iwalb/iwalb/authnode/store"
)

// TestBackchannelURL: discovery sends relying parties' servers to the
// back-channel URL for the token, userinfo and JWKS endpoints, and
// browsers to the issuer for the others; a back-channel URL with another
// path than the issuer's, or not https, is refused.
func TestBackchannelURL(t *testing.T) {
	const back = "https://lb.example.test:8443/oidc"
	e := newEnv(t, 1, func(c *Config) { c.BackchannelURL = back })
	d := e.discovery()
	for k, want := range map[string]string{
		"issuer": e.issuer, "authorization_endpoint": e.issuer + PathAuthorize, "end_session_endpoint": e.issuer + PathLogout,
		"token_endpoint": back + PathToken, "userinfo_endpoint": back + PathUserInfo, "jwks_uri": back + PathJWKS,
	} {
		if d[k] != want {
			t.Errorf("%s = %v, want %s", k, d[k], want)
		}
	}
	for bad, want := range map[string]string{
		"https://lb.example.test/other": "must have the issuer's path",
		"http://lb.example.test/oidc":   "must be an https URL",
		"https://lb.example.test/oidc/": "may not end with a slash",
	} {
		c := Config{Issuer: "https://sso.example.test/oidc", BackchannelURL: bad, Clients: testClients()}
		_, err := New(c, Options{Store: store.NewMemory(store.Options{}), Keys: NewLocalKeyStore(), Authenticator: &fakeAuth{}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("backchannel %s: %v, want %q", bad, err, want)
		}
	}
}

// discovery fetches and decodes the discovery document.
func (e *env) discovery() map[string]any {
	e.t.Helper()
	resp, err := e.browser.Get(e.issuer + PathDiscovery)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var d map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		e.t.Fatal(err)
	}
	return d
}
