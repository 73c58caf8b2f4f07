package oidc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/iwalb/iwalb/internal/secret"
)

// TestRedirectURIExact refuses, with a page and without a redirect or a
// sign-in, every redirect_uri that is not exactly one the client
// registered, and an unknown client.
func TestRedirectURIExact(t *testing.T) {
	e := newEnv(t, 1, nil)
	f := newFlow()
	for _, tc := range []struct{ client, redirect string }{
		{appID, "https://app.example.test/callbacK"},        // one character
		{appID, "https://app.example.test/callbacl"},        // one character
		{appID, "https://app.example.test/callback/x"},      // a path suffix
		{appID, "https://app.example.test/callback/"},       // a trailing slash
		{appID, "https://app.example.test/callback?next=/"}, // an added query
		{appID, "https://app.example.test/callback#frag"},   // a fragment
		{appID, "https://app.example.test/callback?"},       // an empty query
		{appID, "http://app.example.test/callback"},         // another scheme
		{appID, "https://APP.example.test/callback"},        // another case
		{appID, "https://app.example.test:443/callback"},    // a port spelled out
		{appID, "https://app.example.test/%63allback"},      // an escape
		{appID, "https://app.example.test.evil/callback"},   // a host suffix
		{appID, "https://evil.example/?https://app.example.test/callback"},
		{appID, ""}, // none
		{otherID, "https://other.example.test/cb?tenant=2"},   // another query value
		{otherID, "https://other.example.test/cb?tenant=1&x"}, // a query added to a query
		{otherID, "https://other.example.test/cb"},            // the query left out
		{spaID, "http://127.0.0.1:7778/cb"},                   // another loopback port
		{spaID, appRedirect},                                  // another client's
		{"nobody", appRedirect},                               // an unknown client
		{"", appRedirect},                                     // no client
	} {
		q := url.Values{
			"client_id": {tc.client}, "redirect_uri": {tc.redirect}, "response_type": {"code"}, "scope": {"openid"},
			"state": {f.state}, "code_challenge": {oauth2.S256ChallengeFromVerifier(f.verifier)}, "code_challenge_method": {"S256"},
		}
		calls := e.auth.calls.Load()
		req, _ := http.NewRequest(http.MethodGet, e.issuer+PathAuthorize+"?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Negotiate ZmFrZQ==")
		resp, err := e.browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || e.auth.calls.Load() != calls {
			t.Errorf("client %q redirect_uri %q: status %d, Location %q, signed in %v",
				tc.client, tc.redirect, resp.StatusCode, resp.Header.Get("Location"), e.auth.calls.Load() != calls)
		}
	}
	// A repeated redirect_uri or client_id, even the right one twice, is
	// refused the same way.
	for _, raw := range []string{
		"client_id=app&redirect_uri=" + url.QueryEscape(appRedirect) + "&redirect_uri=" + url.QueryEscape("https://evil.example/") + "&response_type=code&scope=openid",
		"client_id=app&client_id=app&redirect_uri=" + url.QueryEscape(appRedirect) + "&response_type=code&scope=openid",
		"client_id=app&redirect_uri=" + url.QueryEscape(appRedirect) + "&response_type=code&scope=openid&state=a&state=b",
	} {
		resp, err := e.browser.Get(e.issuer + PathAuthorize + "?" + raw)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("%s: status %d, Location %q", raw, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// TestAuthorizeErrors sends the other errors back to the relying party,
// with the state, and never signs in.
func TestAuthorizeErrors(t *testing.T) {
	e := newEnv(t, 1, nil)
	base := url.Values{
		"client_id": {appID}, "redirect_uri": {appRedirect}, "response_type": {"code"}, "scope": {"openid"}, "state": {"xyz"},
	}
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	for _, tc := range []struct {
		set  map[string]string
		want string
	}{
		{map[string]string{"response_type": "token"}, "unsupported_response_type"},
		{map[string]string{"response_type": "code id_token"}, "unsupported_response_type"},
		{map[string]string{"scope": "profile email"}, "invalid_scope"},
		{map[string]string{"code_challenge": challenge, "code_challenge_method": "plain"}, "invalid_request"},
		{map[string]string{"code_challenge": challenge}, "invalid_request"}, // method absent means plain
		{map[string]string{"code_challenge": "short", "code_challenge_method": "S256"}, "invalid_request"},
		{map[string]string{"code_challenge_method": "S256"}, "invalid_request"},
		{map[string]string{"response_mode": "fragment"}, "invalid_request"},
		{map[string]string{"prompt": "none login"}, "invalid_request"},
		{map[string]string{"max_age": "-1"}, "invalid_request"},
	} {
		q := url.Values{}
		for k, v := range base {
			q[k] = v
		}
		for k, v := range tc.set {
			q.Set(k, v)
		}
		calls := e.auth.calls.Load()
		loc, err := e.browse(e.issuer + PathAuthorize + "?" + q.Encode())
		if err != nil {
			t.Errorf("%v: %v", tc.set, err)
			continue
		}
		got := loc.Query()
		if !strings.HasPrefix(loc.String(), appRedirect+"?") || got.Get("error") != tc.want || got.Get("state") != "xyz" ||
			got.Get("iss") != e.issuer || got.Get("code") != "" || e.auth.calls.Load() != calls {
			t.Errorf("%v: redirected to %s", tc.set, loc)
		}
	}
	// A confidential client may leave PKCE out; the code then redeems
	// without a verifier, and refuses one (a stripped challenge).
	r := e.rp(appID, appSecret, appRedirect)
	for _, withVerifier := range []bool{false, true} {
		loc, err := e.browse(r.oauth.AuthCodeURL("s", oauth2.SetAuthURLParam("nonce", "n")))
		if err != nil {
			t.Fatal(err)
		}
		var opts []oauth2.AuthCodeOption
		if withVerifier {
			opts = append(opts, oauth2.VerifierOption(oauth2.GenerateVerifier()))
		}
		_, err = r.oauth.Exchange(e.ctx(), loc.Query().Get("code"), opts...)
		if withVerifier != (err != nil) || withVerifier && !isOAuthError(err, "invalid_grant") {
			t.Errorf("confidential client without PKCE, verifier sent %v: %v", withVerifier, err)
		}
	}
	// Methods.
	for _, m := range []string{http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(m, e.issuer+PathAuthorize, nil)
		resp, err := e.browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d", m, resp.StatusCode)
		}
	}
}

// TestAuthorizePost accepts the parameters as a form, answering 303 so the
// browser follows with a GET.
func TestAuthorizePost(t *testing.T) {
	e := newEnv(t, 1, nil)
	f := newFlow()
	form := url.Values{
		"client_id": {appID}, "redirect_uri": {appRedirect}, "response_type": {"code"}, "scope": {"openid"},
		"state": {f.state}, "code_challenge": {oauth2.S256ChallengeFromVerifier(f.verifier)}, "code_challenge_method": {"S256"},
	}
	req, _ := http.NewRequest(http.MethodPost, e.issuer+PathAuthorize, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Negotiate ZmFrZQ==")
	resp, err := e.browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Query().Get("code") == "" || loc.Query().Get("state") != f.state {
		t.Errorf("POST: %d %s", resp.StatusCode, loc)
	}
	// A POST with parameters in the query too is refused.
	req, _ = http.NewRequest(http.MethodPost, e.issuer+PathAuthorize+"?client_id=app", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err = e.browser.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST with a query: %d", resp.StatusCode)
	}
}

// TestCodeReplay redeems a code twice: the second use fails and revokes
// the access token of the first, which /userinfo then refuses.
func TestCodeReplay(t *testing.T) {
	e := newEnv(t, 2, nil) // the two uses reach different nodes
	r := e.rp(appID, appSecret, appRedirect)
	f := newFlow()
	code, err := r.authorize(f)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := r.oauth.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.userInfo(tok); err != nil {
		t.Fatalf("userinfo before the replay: %v", err)
	}
	if _, err := r.oauth.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier)); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("second use: %v", err)
	}
	if _, err := r.userInfo(tok); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("userinfo after the replay: %v", err)
	}
	if !strings.Contains(e.logs.String(), "reason=code_reused") {
		t.Error("the replay was not logged")
	}
}

// TestConcurrentRedeem races one code at two nodes: exactly one wins.
func TestConcurrentRedeem(t *testing.T) {
	e := newEnv(t, 2, nil)
	r := e.rp(appID, appSecret, appRedirect)
	f := newFlow()
	code, err := r.authorize(f)
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for range n {
		wg.Go(func() {
			if _, err := r.oauth.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier)); err == nil {
				mu.Lock()
				won++
				mu.Unlock()
			} else if !isOAuthError(err, "invalid_grant") {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d of %d redeemed the code", won, n)
	}
}

// TestCodeOtherClient: a code redeemed by another (authenticated) client
// fails, and is spent for its own client too.
func TestCodeOtherClient(t *testing.T) {
	e := newEnv(t, 1, nil)
	app := e.rp(appID, appSecret, appRedirect)
	f := newFlow()
	code, err := app.authorize(f)
	if err != nil {
		t.Fatal(err)
	}
	thief := e.rp(otherID, otherSecret, appRedirect)
	thief.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	if _, err := thief.oauth.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier)); !isOAuthError(err, "invalid_grant") {
		t.Errorf("another client: %v", err)
	}
	if _, err := app.oauth.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier)); !isOAuthError(err, "invalid_grant") {
		t.Errorf("the code after another client tried it: %v", err)
	}
	// Another redirect_uri than the code's.
	f = newFlow()
	if code, err = app.authorize(f); err != nil {
		t.Fatal(err)
	}
	moved := app.oauth
	moved.RedirectURL = appRedirect + "/x"
	if _, err := moved.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier)); !isOAuthError(err, "invalid_grant") {
		t.Errorf("another redirect_uri: %v", err)
	}
}

// TestWrongVerifier refuses a wrong, a missing and a malformed PKCE
// verifier.
func TestWrongVerifier(t *testing.T) {
	e := newEnv(t, 1, nil)
	r := e.rp(appID, appSecret, appRedirect)
	for name, tc := range map[string]struct {
		opts []oauth2.AuthCodeOption
		want string
	}{
		"wrong":     {[]oauth2.AuthCodeOption{oauth2.VerifierOption(oauth2.GenerateVerifier())}, "invalid_grant"},
		"missing":   {nil, "invalid_grant"},
		"short":     {[]oauth2.AuthCodeOption{oauth2.VerifierOption("abc")}, "invalid_grant"},
		"bad chars": {[]oauth2.AuthCodeOption{oauth2.VerifierOption(strings.Repeat("a", 42) + "/")}, "invalid_grant"},
		"too long":  {[]oauth2.AuthCodeOption{oauth2.VerifierOption(strings.Repeat("a", 129))}, "invalid_request"},
	} {
		code, err := r.authorize(newFlow())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.oauth.Exchange(e.ctx(), code, tc.opts...); !isOAuthError(err, tc.want) {
			t.Errorf("%s verifier: %v", name, err)
		}
	}
}

// TestExpiredCode: a code redeemed after its time fails.
func TestExpiredCode(t *testing.T) {
	e := newEnv(t, 1, nil)
	r := e.rp(appID, appSecret, appRedirect)
	f := newFlow()
	code, err := r.authorize(f)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(DefaultCodeTTL + time.Second)
	_, err = r.oauth.Exchange(e.ctx(), code, oauth2.VerifierOption(f.verifier))
	if !isOAuthError(err, "invalid_grant") || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired code: %v", err)
	}
	// The provider's own check, should a store keep it longer: the
	// store here has a clock of its own that has not moved.
	p := e.providers[0]
	var rec codeRecord
	rec.ClientID, rec.RedirectURI, rec.ExpiresAt = appID, appRedirect, e.clock.Now().Add(-time.Second)
	code2, _ := secret.New()
	_ = p.store.Put(context.Background(), codeSpace+secret.Hash(code2), must(json.Marshal(rec)), time.Hour)
	_, err = r.oauth.Exchange(e.ctx(), code2)
	if !isOAuthError(err, "invalid_grant") || !strings.Contains(err.Error(), "expired") {
		t.Errorf("code past its ExpiresAt: %v", err)
	}
}

// TestTokenRequestErrors covers the token endpoint's refusals (RFC 6749
// §5.2): JSON, no-store, and the code untouched when the request is bad
// before it is taken.
func TestTokenRequestErrors(t *testing.T) {
	e := newEnv(t, 1, nil)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(appID+":"+appSecret))
	for _, tc := range []struct {
		body, auth string
		status     int
		want       string
	}{
		{"grant_type=password&username=a&password=b", basic, 400, "unsupported_grant_type"},
		{"grant_type=authorization_code", basic, 400, "invalid_request"},
		{"grant_type=authorization_code&code=x", basic, 400, "invalid_grant"},
		{"grant_type=authorization_code&code=" + strings.Repeat("A", 43), basic, 400, "invalid_grant"},
		{"grant_type=authorization_code&code=a&code=b", basic, 400, "invalid_request"},
		{"grant_type=authorization_code&code=a&client_secret=" + appSecret, basic, 400, "invalid_request"},
		{"grant_type=authorization_code&code=a&client_id=other", basic, 400, "invalid_request"},
		{"grant_type=authorization_code&code=a", "Bearer x", 400, "invalid_request"},
		{"grant_type=authorization_code&code=a", "Basic !!", 401, "invalid_client"},
		{"grant_type=authorization_code&code=a&client_id=app", "", 401, "invalid_client"}, // no secret
		{"grant_type=authorization_code&code=a&client_id=nobody&client_secret=" + appSecret, "", 401, "invalid_client"},
		{"grant_type=refresh_token&refresh_token=x", basic, 400, "unauthorized_client"}, // app has no RefreshTokens
		{"grant_type=authorization_code&code=a&client_assertion=x", basic, 400, "invalid_request"},
		{strings.Repeat("x=1&", 5000), basic, 400, "invalid_request"},
	} {
		req, _ := http.NewRequest(http.MethodPost, e.issuer+PathToken, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := e.browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || body["error"] != tc.want || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%.60s (%s): %d %v", tc.body, tc.auth, resp.StatusCode, body)
		}
	}
	resp, err := e.browser.Get(e.issuer + PathToken)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /token: %d", resp.StatusCode)
	}
}

// TestUserInfoRefusals refuses missing, malformed, unknown and expired
// access tokens.
func TestUserInfoRefusals(t *testing.T) {
	e := newEnv(t, 1, nil)
	r := e.rp(appID, appSecret, appRedirect)
	tok, _, err := r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	unknown, _ := secret.New()
	for name, auth := range map[string]string{
		"none": "", "basic": "Basic eDp5", "malformed": "Bearer abc", "unknown": "Bearer " + unknown,
	} {
		req, _ := http.NewRequest(http.MethodGet, e.issuer+PathUserInfo, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := e.browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %d %q", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	e.clock.Advance(DefaultAccessTokenTTL)
	if _, err := r.userInfo(tok); err == nil {
		t.Error("an expired access token was accepted")
	}
}
