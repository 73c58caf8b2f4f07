package authnode

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/authnode/oidc"
	"github.com/iwalb/iwalb/authnode/store"
	"github.com/iwalb/iwalb/authnode/store/redistest"
)

// These tests sign alice in to relying parties through the node's OpenID
// Connect provider, against the real test domain: the relying party is
// github.com/coreos/go-oidc with golang.org/x/oauth2 (discovery, the code
// flow with PKCE, the ID token's signature, issuer, audience, expiry and
// nonce checked by the library), the browser a client that sends
// Negotiate tokens of a real ticket, or posts the form.

const (
	testIssuer      = "https://lb.example.test" // the front door's name, in the test certificate
	testRPRedirect  = "https://app.example.test/oidc/callback"
	testRPLoggedOut = "https://app.example.test/bye"
	testRPSecret    = "rp-secret-0123456789abcdef"
)

// withOIDC configures the provider with two clients: "app", and "admins",
// which requires a group alice is not in.
func withOIDC(c *Config) {
	c.OIDC = &oidc.Config{
		Issuer: testIssuer,
		Clients: []oidc.Client{
			{ID: "app", Secret: testRPSecret, RedirectURIs: []string{testRPRedirect}, PostLogoutRedirectURIs: []string{testRPLoggedOut}},
			{ID: "admins", Secret: testRPSecret, RedirectURIs: []string{testRPRedirect}, RequiredGroup: "Domain Admins"},
		},
	}
}

// rp is a relying party of a's provider, built on go-oidc; tokens are
// asked for at tokenNode (a, or another node sharing its store).
type rp struct {
	t        *testing.T
	ctx      context.Context
	conf     oauth2.Config
	verifier *gooidc.IDTokenVerifier
	provider *gooidc.Provider
}

func newRP(t *testing.T, tokenNode *adNode, clientID string) *rp {
	t.Helper()
	ctx := gooidc.ClientContext(context.Background(), tokenNode.client())
	p, err := gooidc.NewProvider(ctx, testIssuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	// client_secret_basic, the clients' method, said: x/oauth2 would
	// otherwise try the other method after any refusal, and see
	// invalid_client instead of the refusal's reason.
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	return &rp{
		t: t, ctx: ctx, provider: p,
		conf: oauth2.Config{
			ClientID: clientID, ClientSecret: testRPSecret, Endpoint: ep, RedirectURL: testRPRedirect,
			Scopes: []string{gooidc.ScopeOpenID, "profile", "email", "groups"},
		},
		verifier: p.Verifier(&gooidc.Config{ClientID: clientID}),
	}
}

// flow is one authorization request of the relying party.
type flow struct {
	state, nonce, verifier string
	url                    string
}

func (r *rp) start(extra ...oauth2.AuthCodeOption) flow {
	f := flow{state: adtest.UniqueName("st"), nonce: adtest.UniqueName("n"), verifier: oauth2.GenerateVerifier()}
	opts := append([]oauth2.AuthCodeOption{gooidc.Nonce(f.nonce), oauth2.S256ChallengeOption(f.verifier)}, extra...)
	f.url = r.conf.AuthCodeURL(f.state, opts...)
	return f
}

// finish checks the redirect the browser got back and redeems its code:
// the ID token verified by go-oidc, its nonce, and its claims.
func (r *rp) finish(f flow, location string) (map[string]any, *oauth2.Token) {
	r.t.Helper()
	u, err := url.Parse(location)
	if err != nil || !strings.HasPrefix(location, testRPRedirect+"?") {
		r.t.Fatalf("redirect %q is not to the registered redirect URI", location)
	}
	q := u.Query()
	if q.Get("state") != f.state || q.Get("iss") != testIssuer || q.Get("code") == "" {
		r.t.Fatalf("redirect %q: want code, state %q and iss %q", location, f.state, testIssuer)
	}
	tok, err := r.conf.Exchange(r.ctx, q.Get("code"), oauth2.VerifierOption(f.verifier))
	if err != nil {
		r.t.Fatalf("token: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	id, err := r.verifier.Verify(r.ctx, raw)
	if err != nil {
		r.t.Fatalf("ID token: %v", err)
	}
	if id.Nonce != f.nonce {
		r.t.Fatalf("ID token nonce %q, want %q", id.Nonce, f.nonce)
	}
	var claims map[string]any
	if err := id.Claims(&claims); err != nil {
		r.t.Fatal(err)
	}
	return claims, tok
}

// browser is a's browser-like client: cookies kept, redirects not followed.
func (a *adNode) browser() *http.Client {
	c := a.client()
	c.Jar, _ = cookiejar.New(nil)
	return c
}

// visit GETs target (on a, whatever its host) with authz, if any, and
// returns the status, the Location and the page.
func visit(t *testing.T, c *http.Client, target, authz string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", target, nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

func aliceNegotiate(t *testing.T, env map[string]string) func() string {
	cl := adtest.Login(t, env, "alice", env["AD_ALICE_PASSWORD"])
	return func() string {
		return "Negotiate " + base64.StdEncoding.EncodeToString(adtest.NegotiateBlob(t, cl, "HTTP/auth1.example.test"))
	}
}

// TestADOIDCKerberos: alice signs in to a go-oidc relying party with her
// Kerberos ticket at /authorize: the ID token names her by her SID, with
// her names, groups and amr kerberos, and /userinfo agrees; a client that
// requires a group she is not in gets access_denied at its redirect URI,
// with its state; the sign-in is logged and counted as the node's others.
func TestADOIDCKerberos(t *testing.T) {
	env := adtest.Env(t)
	a := startADNode(t, env, func(c *Config, _ *Options) { withOIDC(c) })
	negotiate := aliceNegotiate(t, env)
	r := newRP(t, a, "app")
	browser := a.browser()

	// Without a ticket: the 401 Negotiate challenge, as at /sso.
	f := r.start()
	status, _, _ := visit(t, browser, f.url, "")
	if status != http.StatusUnauthorized {
		t.Fatalf("/authorize without Negotiate: %d, want 401", status)
	}
	status, loc, body := visit(t, browser, f.url, negotiate())
	if status != http.StatusFound {
		t.Fatalf("/authorize with alice's ticket: %d %s\nlog:\n%s", status, body, a.logs)
	}
	claims, tok := r.finish(f, loc)
	sid := adtest.ObjectSID(t, env, "alice")
	group := strings.TrimPrefix(strings.Split(env["AD_GROUP_DN"], ",")[0], "CN=")
	if claims["sub"] != sid || claims["preferred_username"] != "alice" || claims["iss"] != testIssuer {
		t.Errorf("ID token sub %v preferred_username %v iss %v; want %s alice %s", claims["sub"], claims["preferred_username"], claims["iss"], sid, testIssuer)
	}
	if fmt.Sprint(claims["amr"]) != "[kerberos]" {
		t.Errorf("amr %v, want [kerberos]", claims["amr"])
	}
	groups, _ := claims["groups"].([]any)
	if !slices.ContainsFunc(groups, func(g any) bool { return strings.EqualFold(fmt.Sprint(g), group) }) {
		t.Errorf("groups %v lack %s", groups, group)
	}
	info, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok))
	if err != nil || info.Subject != sid {
		t.Errorf("userinfo: %v, sub %v", err, info)
	}
	if !regexp.MustCompile(`msg=login .*for=oidc client_id=app .*outcome=success`).MatchString(a.logs.String()) {
		t.Errorf("the OIDC sign-in is not logged as a login:\n%s", a.logs)
	}

	admins := newRP(t, a, "admins")
	f = admins.start()
	status, loc, _ = visit(t, browser, f.url, negotiate())
	u, _ := url.Parse(loc)
	if status != http.StatusFound || u.Query().Get("error") != "access_denied" || u.Query().Get("state") != f.state {
		t.Errorf("client requiring Domain Admins: %d %s, want access_denied with the state", status, loc)
	}
}

var oidcResumeField = regexp.MustCompile(`name="oidc" value="([^"]+)"`)

// TestADOIDCFormCookieAndLogout: a browser without Kerberos gets the form
// at /authorize, carrying the request; alice's password signs her in to
// the relying party (amr pwd) and starts the node's session; the next
// /authorize is answered by the cookie at once, with the first sign-in's
// auth_time, unless the relying party asks prompt=login; RP-initiated
// logout ends the session, and /authorize asks again.
func TestADOIDCFormCookieAndLogout(t *testing.T) {
	env := adtest.Env(t)
	a := startADNode(t, env, func(c *Config, _ *Options) {
		withOIDC(c)
		c.Form = FormConfig{Enabled: true}
		c.SSOSession = SSOSessionConfig{Enabled: true}
	})
	r := newRP(t, a, "app")
	browser := a.browser()
	f := r.start()
	status, _, page := visit(t, browser, f.url, "")
	m := oidcResumeField.FindStringSubmatch(page)
	csrf := csrfField.FindStringSubmatch(page)
	if status != http.StatusUnauthorized || m == nil || csrf == nil {
		t.Fatalf("/authorize without Negotiate, form enabled: %d, want 401 and the form with the request in it:\n%s", status, page)
	}
	resume := html.UnescapeString(m[1])
	post := func(resume string) (int, string) {
		// The form's page was the front door's (the issuer's host),
		// and so is its action.
		req, _ := http.NewRequest("POST", testIssuer+"/login", strings.NewReader(url.Values{
			"csrf": {csrf[1]}, "username": {"alice"}, "password": {env["AD_ALICE_PASSWORD"]}, "oidc": {resume},
		}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", testIssuer)
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}
	// The request as it came back is checked again: one that names
	// another redirect URI is refused with a page, never followed.
	if status, loc := post(strings.Replace(resume, url.QueryEscape(testRPRedirect), url.QueryEscape("https://evil.example.test/cb"), 1)); status != http.StatusBadRequest || loc != "" {
		t.Errorf("form post with a changed redirect_uri: %d %q, want 400 and no redirect", status, loc)
	}
	_, _, page = visit(t, browser, f.url, "") // a fresh anti-forgery token
	csrf = csrfField.FindStringSubmatch(page)
	status, loc := post(resume)
	if status != http.StatusSeeOther {
		t.Fatalf("form post: %d %q, want 303 to the relying party\nlog:\n%s", status, loc, a.logs)
	}
	claims, _ := r.finish(f, loc)
	if fmt.Sprint(claims["amr"]) != "[pwd]" || claims["preferred_username"] != "alice" {
		t.Errorf("form sign-in: amr %v user %v, want [pwd] alice", claims["amr"], claims["preferred_username"])
	}
	first := claims["auth_time"]

	// The cookie: a code at once, the sign-in's auth_time.
	time.Sleep(1100 * time.Millisecond) // a later second than the sign-in
	f = r.start()
	status, loc, _ = visit(t, browser, f.url, "")
	if status != http.StatusFound {
		t.Fatalf("/authorize with the node's cookie: %d, want 302 with a code", status)
	}
	claims, tok := r.finish(f, loc)
	if claims["auth_time"] != first {
		t.Errorf("auth_time by the cookie %v, want the sign-in's %v", claims["auth_time"], first)
	}
	// prompt=login: the cookie is not enough.
	f = r.start(oauth2.SetAuthURLParam("prompt", "login"))
	if status, _, _ = visit(t, browser, f.url, ""); status != http.StatusUnauthorized {
		t.Errorf("/authorize prompt=login with the cookie: %d, want 401 and the form", status)
	}

	// RP-initiated logout with the ID token as hint.
	var end struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := r.provider.Claims(&end); err != nil || end.EndSession != testIssuer+oidc.PathLogout {
		t.Fatalf("end_session_endpoint %q (%v)", end.EndSession, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	q := url.Values{"id_token_hint": {raw}, "post_logout_redirect_uri": {testRPLoggedOut}, "state": {"bye"}}
	status, loc, _ = visit(t, browser, end.EndSession+"?"+q.Encode(), "")
	if status != http.StatusFound || loc != testRPLoggedOut+"?state=bye" {
		t.Fatalf("logout: %d %q, want 302 to %s?state=bye", status, loc, testRPLoggedOut)
	}
	f = r.start()
	if status, _, _ = visit(t, browser, f.url, ""); status != http.StatusUnauthorized {
		t.Errorf("/authorize after logout: %d, want 401 (the session ended)", status)
	}
}

// TestADOIDCFormLongRequest: the form carries an authorization request of
// the largest state a client may send, of characters that each grow to
// five when the request is escaped into the form and the form into its
// body, and the sign-in still ends at the relying party with that state.
func TestADOIDCFormLongRequest(t *testing.T) {
	env := adtest.Env(t)
	a := startADNode(t, env, func(c *Config, _ *Options) {
		withOIDC(c)
		c.Form = FormConfig{Enabled: true}
	})
	r := newRP(t, a, "app")
	browser := a.browser()
	f := flow{state: strings.Repeat("/", 2048), nonce: adtest.UniqueName("n"), verifier: oauth2.GenerateVerifier()}
	f.url = r.conf.AuthCodeURL(f.state, gooidc.Nonce(f.nonce), oauth2.S256ChallengeOption(f.verifier))
	status, _, page := visit(t, browser, f.url, "")
	m := oidcResumeField.FindStringSubmatch(page)
	csrf := csrfField.FindStringSubmatch(page)
	if status != http.StatusUnauthorized || m == nil || csrf == nil {
		t.Fatalf("/authorize: %d, want 401 and the form with the request in it", status)
	}
	body := url.Values{
		"csrf": {csrf[1]}, "username": {"alice"}, "password": {env["AD_ALICE_PASSWORD"]}, "oidc": {html.UnescapeString(m[1])},
	}.Encode()
	req, _ := http.NewRequest("POST", testIssuer+"/login", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", testIssuer)
	resp, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("form post of %d bytes: %d %q, want 303 to the relying party", len(body), resp.StatusCode, resp.Header.Get("Location"))
	}
	r.finish(f, resp.Header.Get("Location"))
}

// TestADOIDCSharedAcrossNodes: two nodes on one Redis publish the same
// keys; a code made at one redeems at the other, once; a second
// redemption there is refused and revokes the first's access token.
func TestADOIDCSharedAcrossNodes(t *testing.T) {
	env := adtest.Env(t)
	renv := redistest.Env(t)
	n1, n2 := startRedisNodes(t, env, nodeRedis(redistest.Config(t, renv)), withOIDC)
	jwks := func(a *adNode) string {
		_, _, body := visit(t, a.client(), testIssuer+oidc.PathJWKS, "")
		return body
	}
	if k1, k2 := jwks(n1), jwks(n2); k1 != k2 || !strings.Contains(k1, `"kid"`) {
		t.Fatalf("the nodes publish different keys:\n%s\n%s", k1, k2)
	}
	negotiate := aliceNegotiate(t, env)
	r := newRP(t, n2, "app")
	f := r.start()
	status, loc, body := visit(t, n1.browser(), f.url, negotiate())
	if status != http.StatusFound {
		t.Fatalf("/authorize at node 1: %d %s", status, body)
	}
	_, tok := r.finish(f, loc)
	if _, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok)); err != nil {
		t.Fatalf("userinfo at node 2: %v", err)
	}
	code := func() string { u, _ := url.Parse(loc); return u.Query().Get("code") }()
	r1 := newRP(t, n1, "app")
	if _, err := r1.conf.Exchange(r1.ctx, code, oauth2.VerifierOption(f.verifier)); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("the code again, at node 1: %v, want invalid_grant", err)
	}
	if _, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok)); err == nil {
		t.Error("the first redemption's access token still works after the code was replayed")
	}
}

// TestADOIDCNTLM: a browser that falls back to NTLM signs in at /authorize
// too, its two legs on one connection as at /sso: the ID token says amr
// ntlm.
func TestADOIDCNTLM(t *testing.T) {
	env := ntlmEnv(t)
	a := startNTLMNode(t, env, func(c *Config, _ *Options) { withOIDC(c) })
	r := newRP(t, a, "app")
	f := r.start()
	cl := newNTLMClient(t, env, "alice", env["AD_ALICE_PASSWORD"])
	c := a.oneConn()
	get := func(msg []byte) (int, []byte, string) {
		req, _ := http.NewRequest("GET", f.url, nil)
		req.Header.Set("Authorization", "NTLM "+base64.StdEncoding.EncodeToString(msg))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		var token []byte
		if s, b, ok := strings.Cut(resp.Header.Get("WWW-Authenticate"), " "); ok && s == "NTLM" {
			token, _ = base64.StdEncoding.DecodeString(b)
		}
		return resp.StatusCode, token, resp.Header.Get("Location")
	}
	status, chal, _ := get(cl.negotiate())
	if status != http.StatusUnauthorized || len(chal) == 0 {
		t.Fatalf("/authorize with an NTLM NEGOTIATE: %d, challenge of %d bytes", status, len(chal))
	}
	status, _, loc := get(cl.authenticate(chal))
	if status != http.StatusFound {
		t.Fatalf("/authorize with the NTLM AUTHENTICATE: %d\nlog:\n%s", status, a.logs)
	}
	claims, _ := r.finish(f, loc)
	if fmt.Sprint(claims["amr"]) != "[ntlm]" || claims["preferred_username"] != "alice" {
		t.Errorf("NTLM sign-in: amr %v user %v, want [ntlm] alice", claims["amr"], claims["preferred_username"])
	}
}

// TestADOIDCRefreshConfirmsTheUser: a client with refresh tokens gets one;
// a refresh looks the user up again by SID (the new ID token has the same
// auth_time); once the account is disabled in the directory, the refresh
// is refused and the access token of the family stops working.
func TestADOIDCRefreshConfirmsTheUser(t *testing.T) {
	env := adtest.Env(t)
	admin := adtest.NewAdmin(t, env)
	u := newTestUser(t, admin)
	admin.Modify(env["AD_GROUP_DN"], "add", "member", u.dn)
	a := startADNode(t, env, func(c *Config, _ *Options) {
		withOIDC(c)
		c.OIDC.Clients[0].RefreshTokens = true
	})
	cl := adtest.Login(t, env, u.name, u.password)
	r := newRP(t, a, "app")
	f := r.start()
	status, loc, body := visit(t, a.browser(), f.url,
		"Negotiate "+base64.StdEncoding.EncodeToString(adtest.NegotiateBlob(t, cl, "HTTP/auth1.example.test")))
	if status != http.StatusFound {
		t.Fatalf("/authorize: %d %s", status, body)
	}
	claims, tok := r.finish(f, loc)
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for a client that has them")
	}
	refresh := func(tok *oauth2.Token) (*oauth2.Token, error) {
		old := *tok
		old.Expiry = time.Now().Add(-time.Minute) // due: the source refreshes
		return r.conf.TokenSource(r.ctx, &old).Token()
	}
	next, err := refresh(tok)
	if err != nil {
		t.Fatalf("refresh: %v\nlog:\n%s", err, a.logs)
	}
	raw, _ := next.Extra("id_token").(string)
	id, err := r.verifier.Verify(r.ctx, raw)
	if err != nil {
		t.Fatalf("refreshed ID token: %v", err)
	}
	var again map[string]any
	if err := id.Claims(&again); err != nil {
		t.Fatal(err)
	}
	if again["sub"] != claims["sub"] || again["auth_time"] != claims["auth_time"] || again["preferred_username"] != u.name {
		t.Errorf("refreshed claims %v; want the sign-in's sub and auth_time, user %s", again, u.name)
	}

	admin.SetDisabled(u.dn, true)
	if _, err := refresh(next); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("refresh of a disabled account: %v, want invalid_grant", err)
	}
	if _, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(next)); err == nil {
		t.Error("the family's access token still works after the refresh was refused")
	}
}

// TestADOIDCRedisStopsAndComesBack: with the shared store stopped, a
// sign-in at /authorize fails as at /sso (503 store_unavailable, a page,
// no code), the token endpoint answers 503 temporarily_unavailable for a
// code issued before, and nothing hangs; once Redis is back, the same
// nodes sign in and redeem again, with the keys they had.
func TestADOIDCRedisStopsAndComesBack(t *testing.T) {
	env := adtest.Env(t)
	renv := redistest.Env(t)
	srv := redistest.StartServer(t, renv, "pw-oidc-down")
	a, _ := startRedisNodes(t, env, &RedisConfig{RedisConfig: store.RedisConfig{Addrs: []string{srv.Addr()}, Password: "pw-oidc-down",
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second}}, withOIDC)
	negotiate := aliceNegotiate(t, env)
	r := newRP(t, a, "app")
	jwks := func() (int, string) {
		status, _, body := visit(t, a.client(), testIssuer+oidc.PathJWKS, "")
		return status, body
	}
	_, keysBefore := jwks()
	pending := r.start()
	status, pendingLoc, _ := visit(t, a.browser(), pending.url, negotiate())
	if status != http.StatusFound {
		t.Fatalf("/authorize with Redis up: %d", status)
	}

	srv.Stop()
	// The sign-in fails as at /sso (the replay cache is in Redis too):
	// the node's page says why, and no code leaves.
	f := r.start()
	status, loc, body := visit(t, a.browser(), f.url, negotiate())
	if status != http.StatusServiceUnavailable || loc != "" || !strings.Contains(body, "store_unavailable") {
		t.Fatalf("/authorize with Redis stopped: %d %q, want 503 store_unavailable and no redirect\n%s", status, loc, body)
	}
	code := func() string { u, _ := url.Parse(pendingLoc); return u.Query().Get("code") }()
	_, err := r.conf.Exchange(r.ctx, code, oauth2.VerifierOption(pending.verifier))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusServiceUnavailable || re.ErrorCode != "temporarily_unavailable" {
		t.Fatalf("token with Redis stopped: %v, want 503 temporarily_unavailable", err)
	}

	srv.Start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f = r.start()
		status, loc, _ = visit(t, a.browser(), f.url, negotiate())
		if status == http.StatusFound && strings.Contains(loc, "code=") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/authorize 30 s after Redis came back: %d %q\nlog:\n%s", status, loc, a.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if claims, _ := r.finish(f, loc); claims["preferred_username"] != "alice" {
		t.Errorf("after Redis came back: %v", claims)
	}
	if _, keysAfter := jwks(); keysAfter != keysBefore {
		t.Errorf("the keys changed across Redis's restart:\n%s\n%s", keysBefore, keysAfter)
	}
}
