package oidc

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

type idClaims struct {
	Sub               string   `json:"sub"`
	AuthTime          int64    `json:"auth_time"`
	AMR               []string `json:"amr"`
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	UPN               string   `json:"upn"`
	Email             string   `json:"email"`
	Groups            []string `json:"groups"`
	GroupSIDs         []string `json:"group_sids"`
}

// TestCodeFlow signs alice in with a relying party no one here wrote:
// go-oidc's discovery, x/oauth2's code flow with PKCE and basic client
// authentication, go-oidc's verification of the ID token (signature,
// issuer, audience, expiry) and of the nonce and at_hash, and /userinfo.
func TestCodeFlow(t *testing.T) {
	e := newEnv(t, 1, nil)
	r := e.rp(appID, appSecret, appRedirect)
	tok, idt, err := r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	if idt.Subject != alice.SID || idt.Issuer != e.issuer || !slices.Equal(idt.Audience, []string{appID}) {
		t.Errorf("sub %q iss %q aud %q", idt.Subject, idt.Issuer, idt.Audience)
	}
	if tok.TokenType != "Bearer" || tok.Expiry.IsZero() {
		t.Errorf("token type %q, expiry %v", tok.TokenType, tok.Expiry)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	want := idClaims{
		Sub: alice.SID, AuthTime: c.AuthTime, AMR: []string{"kerberos"}, Name: alice.DisplayName,
		PreferredUsername: "alice", UPN: alice.UPN, Email: alice.Email, Groups: alice.Groups, GroupSIDs: alice.GroupSIDs,
	}
	if got, _ := json.Marshal(c); string(got) != string(must(json.Marshal(want))) {
		t.Errorf("claims\n%s, want\n%s", got, must(json.Marshal(want)))
	}
	if d := time.Since(time.Unix(c.AuthTime, 0)); d < 0 || d > time.Minute {
		t.Errorf("auth_time %d is %v ago", c.AuthTime, d)
	}
	if d := idt.Expiry.Sub(idt.IssuedAt); d != DefaultIDTokenTTL {
		t.Errorf("ID token lives %v", d)
	}
	ui, err := r.userInfo(tok)
	if err != nil {
		t.Fatal(err)
	}
	var uc idClaims
	if err := ui.Claims(&uc); err != nil {
		t.Fatal(err)
	}
	if ui.Subject != alice.SID || ui.Email != alice.Email || uc.PreferredUsername != "alice" || !slices.Equal(uc.Groups, alice.Groups) {
		t.Errorf("userinfo %+v %+v", ui, uc)
	}
	if got := tok.Extra("scope"); got != "openid profile email groups" {
		t.Errorf("scope %v", got)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "outcome=issued") || !strings.Contains(logs, "outcome=code") {
		t.Errorf("the flow was not logged:\n%s", logs)
	}
}

// TestDiscovery checks the metadata go-oidc does not: every endpoint under
// the issuer and what the provider offers.
func TestDiscovery(t *testing.T) {
	e := newEnv(t, 1, nil)
	d := e.discovery()
	for k, v := range map[string]any{
		"issuer": e.issuer, "authorization_endpoint": e.issuer + "/authorize", "token_endpoint": e.issuer + "/token",
		"userinfo_endpoint": e.issuer + "/userinfo", "jwks_uri": e.issuer + "/jwks", "end_session_endpoint": e.issuer + "/end_session",
		"response_types_supported": []any{"code"}, "subject_types_supported": []any{"public"},
		"id_token_signing_alg_values_supported": []any{"ES256"}, "code_challenge_methods_supported": []any{"S256"},
		"token_endpoint_auth_methods_supported":          []any{"client_secret_basic", "client_secret_post", "none"},
		"scopes_supported":                               []any{"openid", "profile", "email", "groups"},
		"authorization_response_iss_parameter_supported": true,
	} {
		if got, _ := json.Marshal(d[k]); string(got) != string(must(json.Marshal(v))) {
			t.Errorf("%s = %s, want %s", k, got, must(json.Marshal(v)))
		}
	}
	if cs, _ := d["claims_supported"].([]any); !slices.Contains(cs, any("groups")) || !slices.Contains(cs, any("upn")) {
		t.Errorf("claims_supported %v", cs)
	}
}

// TestPublicClientAndPost covers a public client (PKCE, no secret) and a
// client that authenticates with client_secret_post and may have only
// openid and profile, at a redirect URI with a query.
func TestPublicClientAndPost(t *testing.T) {
	e := newEnv(t, 1, nil)
	spa := e.rp(spaID, "", spaRedirect)
	if _, _, err := spa.login(newFlow()); err != nil {
		t.Fatalf("public client: %v", err)
	}
	// Without PKCE a public client is refused, at its redirect URI.
	loc, err := e.browse(spa.oauth.AuthCodeURL("s1"))
	if err != nil || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("state") != "s1" {
		t.Errorf("public client without PKCE: %v %v", loc, err)
	}

	other := e.rp(otherID, otherSecret, otherRedirect)
	tok, idt, err := other.login(newFlow())
	if err != nil {
		t.Fatalf("client_secret_post: %v", err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c.PreferredUsername != "alice" || c.Email != "" || c.Groups != nil {
		t.Errorf("claims beyond the client's scopes: %+v", c)
	}
	if tok.Extra("scope") != "openid profile" {
		t.Errorf("scope %v", tok.Extra("scope"))
	}
	// The same client authenticating with basic is not the client.
	other.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	f := newFlow()
	code, err := other.authorize(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.oauth.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier)); !isOAuthError(err, "invalid_client") {
		t.Errorf("basic for a post client: %v", err)
	}
	// The failed authentication did not spend the code.
	other.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	if _, err := other.oauth.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier)); err != nil {
		t.Errorf("the code after a failed client authentication: %v", err)
	}
	// A wrong secret.
	bad := e.rp(appID, appSecret+"x", appRedirect)
	f = newFlow()
	if code, err = bad.authorize(f); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.oauth.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier)); !isOAuthError(err, "invalid_client") {
		t.Errorf("wrong secret: %v", err)
	}
}

// TestRequiredGroup refuses a user outside the client's group, at the
// relying party with access_denied, and admits one in it.
func TestRequiredGroup(t *testing.T) {
	e := newEnv(t, 1, nil)
	r := e.rp(adminsID, appSecret, adminsRedirect)
	f := newFlow()
	loc, err := e.browse(r.oauth.AuthCodeURL(f.state, oauth2.S256ChallengeOption(f.verifier)))
	if err != nil || loc.Query().Get("error") != "access_denied" || loc.Query().Get("code") != "" || loc.Query().Get("state") != f.state {
		t.Fatalf("alice outside Domain Admins: %v %v", loc, err)
	}
	admin := alice
	admin.Groups = append(slices.Clone(alice.Groups), "domain admins")
	e.auth.setUser(admin)
	if _, _, err := r.login(newFlow()); err != nil {
		t.Errorf("alice in Domain Admins: %v", err)
	}
}

// TestAMR checks the sign-in method's amr and that the Authenticator is told
// the request.
func TestAMR(t *testing.T) {
	e := newEnv(t, 1, nil)
	r := e.rp(appID, appSecret, appRedirect)
	for method, want := range map[string][]string{MethodPassword: {"pwd"}, MethodNTLM: {"ntlm"}, MethodCookie: nil, MethodKerberos: {"kerberos"}} {
		u := alice
		u.Method = method
		e.auth.setUser(u)
		f := newFlow()
		code, err := r.authorize(f, oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "60"), oauth2.SetAuthURLParam("login_hint", "alice"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := r.oauth.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier))
		if err != nil {
			t.Fatal(err)
		}
		idt, err := r.verify(tok)
		if err != nil {
			t.Fatal(err)
		}
		var c idClaims
		if err := idt.Claims(&c); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.AMR, want) {
			t.Errorf("%s: amr %v, want %v", method, c.AMR, want)
		}
	}
	e.auth.mu.Lock()
	last := e.auth.last
	e.auth.mu.Unlock()
	if last.ClientID != appID || !slices.Equal(last.Prompt, []string{"login"}) || last.MaxAge != time.Minute || last.LoginHint != "alice" {
		t.Errorf("the Authenticator was told %+v", last)
	}
	// prompt=none cannot be honoured: login_required, without a sign-in.
	calls := e.auth.calls.Load()
	f := newFlow()
	loc, err := e.browse(r.oauth.AuthCodeURL(f.state, oauth2.S256ChallengeOption(f.verifier), oauth2.SetAuthURLParam("prompt", "none")))
	if err != nil || loc.Query().Get("error") != "login_required" || e.auth.calls.Load() != calls {
		t.Errorf("prompt=none: %v %v", loc, err)
	}
}

// isOAuthError reports whether err is an OAuth error answer with code.
func isOAuthError(err error, code string) bool {
	re, ok := err.(*oauth2.RetrieveError)
	return ok && re.ErrorCode == code
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
