package oidc

import (
	"context"
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

	"golang.org/x/oauth2"

	"github.com/iwalb/iwalb/authnode/store"
)

// Clients of the tests with refresh tokens.
const (
	refID, refRedirect       = "refresher", "https://refresher.example.test/cb"
	ref2ID, ref2Redirect     = "refresher2", "https://refresher2.example.test/cb"
	refAdmID, refAdmRedirect = "ref-admins", "https://ref-admins.example.test/cb"
)

func withRefreshClients(c *Config) {
	c.Clients = append(c.Clients,
		Client{ID: refID, Secret: appSecret, RedirectURIs: []string{refRedirect}, RefreshTokens: true},
		Client{ID: ref2ID, Secret: appSecret, RedirectURIs: []string{ref2Redirect}, RefreshTokens: true},
		Client{ID: refAdmID, Secret: appSecret, RedirectURIs: []string{refAdmRedirect}, RefreshTokens: true, RequiredGroup: "Domain Admins"})
}

// refresh uses x/oauth2's refresh of an expired token.
func (r *rp) refresh(rt string) (*oauth2.Token, error) {
	return r.oauth.TokenSource(r.e.ctx(), &oauth2.Token{RefreshToken: rt}).Token()
}

// refreshForm is the refresh_token grant for rt.
func refreshForm(rt string, kv ...string) url.Values {
	return withParams(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, kv...)
}

// userInfoOK says whether /userinfo accepts tok's access token.
func (r *rp) userInfoOK(tok *oauth2.Token) bool {
	r.e.t.Helper()
	_, err := r.userInfo(tok)
	if err != nil && !strings.Contains(err.Error(), "401") {
		r.e.t.Fatalf("userinfo: %v", err)
	}
	return err == nil
}

// TestRefreshOffByDefault: a client without RefreshTokens gets no refresh
// token, and may not use the grant, even with another client's token
// (which stays good for its own client).
func TestRefreshOffByDefault(t *testing.T) {
	e := newEnv(t, 1, withRefreshClients)
	app := e.rp(appID, appSecret, appRedirect)
	tok, _, err := app.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "" {
		t.Fatal("a refresh token for a client without RefreshTokens")
	}
	ref := e.rp(refID, appSecret, refRedirect)
	rtok, _, err := ref.login(newFlow())
	if err != nil || rtok.RefreshToken == "" {
		t.Fatalf("no refresh token for a client with RefreshTokens: %v", err)
	}
	if status, body := e.postToken(refreshForm(rtok.RefreshToken), appID, appSecret); status != http.StatusBadRequest || body["error"] != "unauthorized_client" {
		t.Errorf("the grant by a client without RefreshTokens: %d %v", status, body)
	}
	if _, err := ref.refresh(rtok.RefreshToken); err != nil {
		t.Errorf("the token after another client was refused it: %v", err)
	}
	if e.dir.calls.Load() != 1 {
		t.Errorf("Confirm was called %d times", e.dir.calls.Load())
	}
}

// TestRefreshRotation refreshes with x/oauth2 at two nodes: each refresh
// answers a new refresh token, access token and ID token (verified by
// go-oidc, with the original auth_time and the directory's current
// claims), and the old refresh token is spent.
func TestRefreshRotation(t *testing.T) {
	e := newEnv(t, 2, withRefreshClients)
	r := e.rp(refID, appSecret, refRedirect)
	tok1, idt1, err := r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	var c1 idClaims
	if err := idt1.Claims(&c1); err != nil {
		t.Fatal(err)
	}
	// The directory changes: the name, a group.
	renamed := alice
	renamed.DisplayName, renamed.Groups = "Alice Hargreaves", []string{"Domain Users"}
	e.auth.setUser(renamed)
	e.clock.Advance(2 * time.Minute)

	tok2, err := r.refresh(tok1.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if tok2.RefreshToken == "" || tok2.RefreshToken == tok1.RefreshToken || tok2.AccessToken == tok1.AccessToken {
		t.Fatal("the refresh did not rotate the tokens")
	}
	idt2, err := r.verify(tok2)
	if err != nil {
		t.Fatalf("refreshed ID token: %v", err)
	}
	if err := idt2.VerifyAccessToken(tok2.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	var c2 idClaims
	if err := idt2.Claims(&c2); err != nil {
		t.Fatal(err)
	}
	if idt2.Subject != alice.SID || idt2.Nonce != "" || c2.AuthTime != c1.AuthTime || !slices.Equal(c2.AMR, []string{"kerberos"}) {
		t.Errorf("refreshed ID token: sub %s nonce %q auth_time %d (was %d) amr %v", idt2.Subject, idt2.Nonce, c2.AuthTime, c1.AuthTime, c2.AMR)
	}
	if c2.Name != renamed.DisplayName || !slices.Equal(c2.Groups, renamed.Groups) {
		t.Errorf("refreshed claims are not the directory's: %+v", c2)
	}
	if !idt2.IssuedAt.After(idt1.IssuedAt) {
		t.Error("the refreshed ID token was not issued anew")
	}
	if tok2.Extra("scope") != "openid profile email groups" {
		t.Errorf("scope %v", tok2.Extra("scope"))
	}
	if !r.userInfoOK(tok2) || !r.userInfoOK(tok1) {
		t.Error("an access token of the family does not work")
	}
	// Confirm was given the user as the grant knew it, with the
	// original sign-in's time.
	e.dir.mu.Lock()
	asked := e.dir.asked[len(e.dir.asked)-1]
	e.dir.mu.Unlock()
	if asked.SID != alice.SID || asked.SAMAccountName != "alice" || asked.AuthTime.Unix() != c1.AuthTime || asked.Method != MethodKerberos {
		t.Errorf("Confirm was given %+v", asked)
	}
	// The next rotation works from the new token.
	tok3, err := r.refresh(tok2.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if !r.userInfoOK(tok3) {
		t.Error("the third access token does not work")
	}
	if logs := e.logs.String(); strings.Count(logs, "outcome=refreshed") != 2 {
		t.Errorf("the refreshes were not logged")
	}
}

// TestRefreshReuse presents a rotated-out refresh token: it is refused,
// and revokes the family: the current refresh token and every access
// token issued from it.
func TestRefreshReuse(t *testing.T) {
	e := newEnv(t, 2, withRefreshClients)
	r := e.rp(refID, appSecret, refRedirect)
	tok1, _, err := r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := r.refresh(tok1.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	// Another sign-in of the same user and client is another family.
	other, _, err := r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.refresh(tok1.RefreshToken); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("reuse: %v", err)
	}
	if _, err := r.refresh(tok2.RefreshToken); !isOAuthError(err, "invalid_grant") {
		t.Errorf("the current token after a reuse: %v", err)
	}
	if r.userInfoOK(tok1) || r.userInfoOK(tok2) {
		t.Error("an access token of a revoked family still works")
	}
	if !r.userInfoOK(other) {
		t.Error("another family was revoked")
	}
	if _, err := r.refresh(other.RefreshToken); err != nil {
		t.Errorf("another family's refresh: %v", err)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "reason=refresh_reused") || !strings.Contains(logs, "revoke_family=") {
		t.Error("the reuse was not logged")
	}
}

// TestRefreshConcurrentUse presents one refresh token many times at
// once: at most one use succeeds, and the family is revoked, as for any
// reuse.
func TestRefreshConcurrentUse(t *testing.T) {
	e := newEnv(t, 2, withRefreshClients)
	r := e.rp(refID, appSecret, refRedirect)
	tok, _, err := r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []*oauth2.Token
	for range n {
		wg.Go(func() {
			got, err := r.refresh(tok.RefreshToken)
			switch {
			case err == nil:
				mu.Lock()
				won = append(won, got)
				mu.Unlock()
			case !isOAuthError(err, "invalid_grant"):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(won) > 1 {
		t.Fatalf("%d of %d concurrent uses succeeded", len(won), n)
	}
	for _, w := range won {
		if _, err := r.refresh(w.RefreshToken); !isOAuthError(err, "invalid_grant") {
			t.Errorf("the winner's token after the race: %v", err)
		}
	}
}

// TestRefreshConfirm: a user the directory no longer confirms, or who left
// the client's required group, is refused at refresh, and the family is
// revoked.
func TestRefreshConfirm(t *testing.T) {
	e := newEnv(t, 1, withRefreshClients)
	r := e.rp(refID, appSecret, refRedirect)
	tok, _, err := r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	e.dir.fail.Store(true)
	if _, err := r.refresh(tok.RefreshToken); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("a disabled user: %v", err)
	}
	e.dir.fail.Store(false)
	if _, err := r.refresh(tok.RefreshToken); !isOAuthError(err, "invalid_grant") {
		t.Errorf("the token after the refusal: %v", err)
	}
	if r.userInfoOK(tok) {
		t.Error("the access token of a user the directory refused still works")
	}
	if !strings.Contains(e.logs.String(), "reason=user_not_confirmed") {
		t.Error("the refusal was not logged")
	}

	// The required group, checked again on the confirmed user.
	admin := alice
	admin.Groups = append(slices.Clone(alice.Groups), "Domain Admins")
	e.auth.setUser(admin)
	adm := e.rp(refAdmID, appSecret, refAdmRedirect)
	tok, _, err = adm.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	if tok, err = adm.refresh(tok.RefreshToken); err != nil {
		t.Fatalf("an admin's refresh: %v", err)
	}
	e.auth.setUser(alice) // removed from Domain Admins
	if _, err := adm.refresh(tok.RefreshToken); !isOAuthError(err, "invalid_grant") {
		t.Errorf("a user who left the required group: %v", err)
	}
	if adm.userInfoOK(tok) {
		t.Error("the access token of a user who left the group still works")
	}
	// A directory that answers another account.
	e.auth.setUser(alice)
	tok, _, err = r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	bob := alice
	bob.SID = "S-1-5-21-1111-2222-3333-1105"
	e.auth.setUser(bob)
	if _, err := r.refresh(tok.RefreshToken); !isOAuthError(err, "invalid_grant") {
		t.Errorf("the directory answered another account: %v", err)
	}
}

// TestRefreshScope: a refresh may narrow the scope, and its tokens then
// carry only the narrower claims; it may not widen it, nor leave openid
// out, and such a request does not spend the token. The refresh token
// keeps the scope granted at sign-in.
func TestRefreshScope(t *testing.T) {
	e := newEnv(t, 1, withRefreshClients)
	r := e.rp(refID, appSecret, refRedirect, "openid", "profile")
	tok, _, err := r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	rt := tok.RefreshToken
	for _, scope := range []string{"openid profile email", "openid groups", "profile", "openid offline_access"} {
		if status, body := e.postToken(refreshForm(rt, "scope", scope), refID, appSecret); status != http.StatusBadRequest || body["error"] != "invalid_scope" {
			t.Errorf("scope %q: %d %v", scope, status, body)
		}
	}
	status, body := e.postToken(refreshForm(rt, "scope", "openid"), refID, appSecret)
	if status != http.StatusOK || body["scope"] != "openid" {
		t.Fatalf("narrowed to openid: %d %v", status, body)
	}
	narrow := &oauth2.Token{AccessToken: body["access_token"].(string), TokenType: "Bearer"}
	idt, err := r.verifier.Verify(e.ctx(), body["id_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	ui, err := r.userInfo(narrow)
	if err != nil {
		t.Fatal(err)
	}
	var uc idClaims
	if err := ui.Claims(&uc); err != nil {
		t.Fatal(err)
	}
	if c.PreferredUsername != "" || c.Name != "" || uc.PreferredUsername != "" || c.Sub != alice.SID {
		t.Errorf("claims beyond openid: ID token %+v, userinfo %+v", c, uc)
	}
	// The next refresh, without scope, has the sign-in's scope again.
	status, body = e.postToken(refreshForm(body["refresh_token"].(string)), refID, appSecret)
	if status != http.StatusOK || body["scope"] != "openid profile" {
		t.Errorf("after a narrowed refresh: %d %v", status, body)
	}
	// Malformed requests.
	for name, form := range map[string]url.Values{
		"no refresh_token":     {"grant_type": {"refresh_token"}},
		"a malformed token":    refreshForm("abc"),
		"an unknown token":     refreshForm(strings.Repeat("r", 43)),
		"a token given twice":  {"grant_type": {"refresh_token"}, "refresh_token": {rt, rt}},
		"a code in its place":  refreshForm(strings.Repeat("c", 43), "code", strings.Repeat("c", 43)),
		"an oversized refresh": refreshForm(strings.Repeat("r", 65)),
	} {
		if status, body := e.postToken(form, refID, appSecret); status != http.StatusBadRequest || body["error"] != "invalid_request" && body["error"] != "invalid_grant" {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
}

// TestRefreshAbsoluteLifetime: rotation does not extend a family beyond
// RefreshTokenTTL after the sign-in.
func TestRefreshAbsoluteLifetime(t *testing.T) {
	e := newEnv(t, 1, func(c *Config) { withRefreshClients(c); c.RefreshTokenTTL = time.Hour })
	r := e.rp(refID, appSecret, refRedirect)
	tok, _, err := r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(40 * time.Minute)
	if tok, err = r.refresh(tok.RefreshToken); err != nil {
		t.Fatalf("within the lifetime: %v", err)
	}
	e.clock.Advance(25 * time.Minute) // 65 minutes after the sign-in, 25 after the rotation
	if _, err := r.refresh(tok.RefreshToken); !isOAuthError(err, "invalid_grant") {
		t.Errorf("past the family's lifetime: %v", err)
	}
	// A sign-in already older than the lifetime (a node cookie's) gets
	// no refresh token at all.
	p := e.providers[0]
	now := e.clock.Now()
	rec := &codeRecord{ClientID: refID, Scopes: []string{ScopeOpenID}, AuthTime: now.Add(-2 * time.Hour), Claims: userClaims{Sub: alice.SID}}
	if rt := p.startFamily(t.Context(), slog.New(slog.DiscardHandler), p.clients[refID], "f", rec, now); rt != "" {
		t.Error("a refresh token for a sign-in older than the lifetime")
	}
}

// TestRefreshAfterCodeReplay: a code redeemed twice revokes the refresh
// tokens its first use started, as well as its access token.
func TestRefreshAfterCodeReplay(t *testing.T) {
	e := newEnv(t, 2, withRefreshClients)
	r := e.rp(refID, appSecret, refRedirect)
	f := newFlow()
	code, err := r.authorize(f)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := r.oauth.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier))
	if err != nil || tok.RefreshToken == "" {
		t.Fatalf("exchange: %v", err)
	}
	if _, err := r.oauth.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier)); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("second use: %v", err)
	}
	if _, err := r.refresh(tok.RefreshToken); !isOAuthError(err, "invalid_grant") {
		t.Errorf("the refresh token of a replayed code: %v", err)
	}
}

// TestRefreshOtherClient: a refresh token presented by another client
// with refresh tokens is refused, and its family revoked: it leaked.
func TestRefreshOtherClient(t *testing.T) {
	e := newEnv(t, 1, withRefreshClients)
	r := e.rp(refID, appSecret, refRedirect)
	tok, _, err := r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	if status, body := e.postToken(refreshForm(tok.RefreshToken), ref2ID, appSecret); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("another client: %d %v", status, body)
	}
	if _, err := r.refresh(tok.RefreshToken); !isOAuthError(err, "invalid_grant") {
		t.Errorf("the token after another client presented it: %v", err)
	}
}

// failingStore is a Store whose Puts fail while fail is set.
type failingStore struct {
	Store
	fail atomic.Bool
}

func (s *failingStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if s.fail.Load() && strings.HasPrefix(key, accessSpace) {
		return store.ErrUnavailable
	}
	return s.Store.Put(ctx, key, value, ttl)
}

// TestRefreshRestoredAfterFailure: a refresh that fails on the provider's
// side (the store refuses the new access token) answers 503 and puts the
// refresh token back, so that the client's retry succeeds.
func TestRefreshRestoredAfterFailure(t *testing.T) {
	st := &failingStore{Store: store.NewMemory(store.Options{})}
	cfg := Config{Issuer: "https://sso.example.test", Clients: testClients()}
	withRefreshClients(&cfg)
	p, err := New(cfg, Options{
		Store: st, Keys: NewLocalKeyStore(), Authenticator: &fakeAuth{}, Logger: slog.New(slog.DiscardHandler),
		Confirm: func(_ context.Context, u *User) (*User, error) { return u, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rt, err := p.putRefresh(t.Context(), &refreshRecord{
		ClientID: refID, Family: "f1", Scopes: []string{ScopeOpenID}, AuthTime: now, Claims: userClaims{Sub: alice.SID}, ExpiresAt: now.Add(time.Hour),
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	post := func() int {
		req := httptest.NewRequest(http.MethodPost, "https://sso.example.test/token", strings.NewReader(refreshForm(rt).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(refID, appSecret)
		w := httptest.NewRecorder()
		p.Token().ServeHTTP(w, req)
		return w.Code
	}
	st.fail.Store(true)
	if code := post(); code != http.StatusServiceUnavailable {
		t.Fatalf("with the store failing: %d", code)
	}
	st.fail.Store(false)
	if code := post(); code != http.StatusOK {
		t.Errorf("the retry: %d", code)
	}
	if code := post(); code != http.StatusBadRequest {
		t.Errorf("a third use: %d", code)
	}
}
