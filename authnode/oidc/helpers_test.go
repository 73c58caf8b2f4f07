package oidc

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/iwalb/iwalb/authnode/store"

	"github.com/iwalb/iwalb/internal/secret"
	"github.com/iwalb/iwalb/internal/testkit"
)

// fakeClock is the real clock plus an offset the test moves forward.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// fakeAuth plays the node's sign-in: a request without an Authorization
// header gets the 401 Negotiate challenge, as from the node; one with it
// is alice (or who the test set).
type fakeAuth struct {
	clock *fakeClock
	mu    sync.Mutex
	user  User
	calls atomic.Int64
	last  AuthRequest
}

func (a *fakeAuth) SignIn(w http.ResponseWriter, r *http.Request) (*User, bool) {
	a.calls.Add(1)
	ar, ok := AuthorizationFrom(r.Context())
	if !ok {
		http.Error(w, "no authorization request in the context", http.StatusInternalServerError)
		return nil, false
	}
	if r.Header.Get("Authorization") == "" {
		w.Header().Set("WWW-Authenticate", "Negotiate")
		http.Error(w, "Windows sign-in is needed", http.StatusUnauthorized)
		return nil, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last = ar
	u := a.user
	u.AuthTime = a.clock.Now()
	return &u, true
}

func (a *fakeAuth) setUser(u User) {
	a.mu.Lock()
	a.user = u
	a.mu.Unlock()
}

// fakeDirectory plays Options.Confirm: it answers the sign-in's current
// user (fakeAuth's), or fails while fail is set.
type fakeDirectory struct {
	auth  *fakeAuth
	fail  atomic.Bool
	calls atomic.Int64
	mu    sync.Mutex
	asked []User // the users Confirm was given
}

func (d *fakeDirectory) Confirm(_ context.Context, u *User) (*User, error) {
	d.calls.Add(1)
	d.mu.Lock()
	d.asked = append(d.asked, *u)
	d.mu.Unlock()
	if d.fail.Load() {
		return nil, errors.New("the account is disabled")
	}
	d.auth.mu.Lock()
	defer d.auth.mu.Unlock()
	cur := d.auth.user
	if cur.SID != u.SID {
		return nil, errors.New("no such account")
	}
	cur.AuthTime = time.Now() // the directory's time, which must not become auth_time
	return &cur, nil
}

// fakeSessions plays the node's session end: it clears a cookie, and
// fails while fail is set.
type fakeSessions struct {
	ended atomic.Int64
	fail  atomic.Bool
}

func (s *fakeSessions) EndSession(w http.ResponseWriter, r *http.Request) error {
	if s.fail.Load() {
		return errors.New("store unavailable")
	}
	s.ended.Add(1)
	http.SetCookie(w, &http.Cookie{Name: "iwalb_sso", Value: "", MaxAge: -1, Secure: true, HttpOnly: true})
	return nil
}

var alice = User{
	SID: "S-1-5-21-1111-2222-3333-1104", SAMAccountName: "alice", UPN: "alice@EXAMPLE.TEST",
	Email: "alice@example.test", DisplayName: "Alice Liddell",
	Groups:    []string{"Domain Users", "Engineers"},
	GroupSIDs: []string{"S-1-5-21-1111-2222-3333-513", "S-1-5-21-1111-2222-3333-1200"},
	Method:    MethodKerberos,
}

// Registered clients of the tests.
const (
	appID, appSecret     = "app", "app-secret-0123456789abcdef"
	appRedirect          = "https://app.example.test/callback"
	appLogout            = "https://app.example.test/signed-out"
	otherID, otherSecret = "other", "other-secret-0123456789abcdef"
	otherRedirect        = "https://other.example.test/cb?tenant=1"
	spaID, spaRedirect   = "spa", "http://127.0.0.1:7777/cb"
	adminsID             = "admins"
	adminsRedirect       = "https://admins.example.test/cb"
)

func testClients() []Client {
	return []Client{
		{ID: appID, Secret: appSecret, RedirectURIs: []string{appRedirect}, PostLogoutRedirectURIs: []string{appLogout}, GroupSIDs: true},
		{ID: otherID, Secret: otherSecret, TokenAuth: AuthSecretPost, RedirectURIs: []string{otherRedirect}, Scopes: []string{ScopeOpenID, ScopeProfile}},
		{ID: spaID, RedirectURIs: []string{spaRedirect}},
		{ID: adminsID, Secret: appSecret, RedirectURIs: []string{adminsRedirect}, RequiredGroup: "Domain Admins"},
	}
}

// env is a provider (or several, sharing a store and key store as nodes
// on Redis would) behind one loopback TLS server, taken in turn.
type env struct {
	t         *testing.T
	srv       *httptest.Server
	issuer    string
	clock     *fakeClock
	auth      *fakeAuth
	dir       *fakeDirectory
	sessions  *fakeSessions
	store     *store.Memory
	keys      *LocalKeyStore
	providers []*Provider
	handlers  []http.Handler
	next      atomic.Uint64
	jwksHits  atomic.Int64
	logs      *syncBuffer
	browser   *http.Client
}

// syncBuffer collects log lines from concurrent handlers.
type syncBuffer = testkit.Buffer

// newEnv starts nodes providers; cfg may change the configuration.
func newEnv(t *testing.T, nodes int, cfg func(*Config)) *env {
	t.Helper()
	e := &env{t: t, clock: &fakeClock{}, keys: NewLocalKeyStore(), logs: &syncBuffer{}}
	e.auth = &fakeAuth{clock: e.clock, user: alice}
	e.dir = &fakeDirectory{auth: e.auth}
	e.sessions = &fakeSessions{}
	e.store = store.NewMemory(store.Options{Now: e.clock.Now})
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, PathJWKS) {
			e.jwksHits.Add(1)
		}
		e.handlers[e.next.Add(1)%uint64(len(e.handlers))].ServeHTTP(w, r)
	}))
	e.issuer = "https://" + e.srv.Listener.Addr().String() + "/oidc"
	c := Config{Issuer: e.issuer, Clients: testClients()}
	if cfg != nil {
		cfg(&c)
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for range nodes {
		p, err := New(c, Options{Store: e.store, Keys: e.keys, Authenticator: e.auth, Sessions: e.sessions, Confirm: e.dir.Confirm, Now: e.clock.Now, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		e.providers = append(e.providers, p)
		e.handlers = append(e.handlers, p.Handler())
	}
	e.srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // handshakes cut short at Close
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	e.browser = &http.Client{
		Transport:     e.srv.Client().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	t.Cleanup(func() {
		// No secret may reach a log line: the tests' secrets, and any
		// code or token (43 base64url characters) at all.
		logs := e.logs.String()
		for _, s := range []string{appSecret, otherSecret} {
			if strings.Contains(logs, s) {
				t.Errorf("a client secret is in the log")
			}
		}
		if m := secretLike(logs); m != "" {
			t.Errorf("something like a code or token is in the log: %s", m)
		}
	})
	return e
}

// secretLike returns a run of 43 or more base64url characters in s, other
// than a key ID (kid=…, public).
func secretLike(s string) string {
	run := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			b := s[i]
			if 'A' <= b && b <= 'Z' || 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-' || b == '_' {
				run++
				continue
			}
		}
		if start := i - run; run >= secret.Len && !strings.HasSuffix(s[:start], "kid=") {
			return s[start:i]
		}
		run = 0
	}
	return ""
}

func (e *env) ctx() context.Context {
	return gooidc.ClientContext(e.t.Context(), e.srv.Client())
}

// rp is a relying party made with go-oidc and x/oauth2.
type rp struct {
	e        *env
	provider *gooidc.Provider
	oauth    oauth2.Config
	verifier *gooidc.IDTokenVerifier
}

func (e *env) rp(clientID, secret, redirect string, scopes ...string) *rp {
	e.t.Helper()
	p, err := gooidc.NewProvider(e.ctx(), e.issuer)
	if err != nil {
		e.t.Fatalf("discovery: %v", err)
	}
	if len(scopes) == 0 {
		scopes = []string{gooidc.ScopeOpenID, "profile", "email", "groups"}
	}
	// The client's registered method: x/oauth2's auto-detection retries
	// in the body after any error, which this provider refuses for a
	// client_secret_basic client (invalid_client hides the real error).
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if clientID == otherID || clientID == spaID {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	return &rp{
		e: e, provider: p,
		oauth:    oauth2.Config{ClientID: clientID, ClientSecret: secret, Endpoint: ep, RedirectURL: redirect, Scopes: scopes},
		verifier: p.Verifier(&gooidc.Config{ClientID: clientID, Now: e.clock.Now}),
	}
}

func randomString() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// flow is one authorization request's secrets.
type flow struct{ state, nonce, verifier string }

func newFlow() flow { return flow{randomString(), randomString(), oauth2.GenerateVerifier()} }

// authorize sends the browser through /authorize (the Negotiate challenge,
// then the signed-in request) and returns the code the relying party gets.
func (r *rp) authorize(f flow, opts ...oauth2.AuthCodeOption) (string, error) {
	opts = append([]oauth2.AuthCodeOption{gooidc.Nonce(f.nonce), oauth2.S256ChallengeOption(f.verifier)}, opts...)
	loc, err := r.e.browse(r.oauth.AuthCodeURL(f.state, opts...))
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(loc.String(), r.oauth.RedirectURL) {
		return "", fmt.Errorf("redirected to %s, not to %s", loc, r.oauth.RedirectURL)
	}
	q := loc.Query()
	if q.Get("state") != f.state {
		return "", fmt.Errorf("state %q came back as %q", f.state, q.Get("state"))
	}
	if q.Get("iss") != r.e.issuer {
		return "", fmt.Errorf("iss %q, want %q", q.Get("iss"), r.e.issuer)
	}
	if e := q.Get("error"); e != "" {
		return "", fmt.Errorf("authorization error %s: %s", e, q.Get("error_description"))
	}
	return q.Get("code"), nil
}

// browse does what a browser does at the authorization URL: it answers the
// Negotiate challenge and returns where it is redirected.
func (e *env) browse(authURL string) (*url.URL, error) {
	for _, negotiate := range []string{"", "Negotiate ZmFrZQ=="} {
		req, err := http.NewRequestWithContext(e.t.Context(), http.MethodGet, authURL, nil)
		if err != nil {
			return nil, err
		}
		if negotiate != "" {
			req.Header.Set("Authorization", negotiate)
		}
		resp, err := e.browser.Do(req)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusUnauthorized && negotiate == "":
			continue
		case resp.StatusCode != http.StatusFound:
			return nil, &pageError{resp.StatusCode, string(body)}
		}
		return url.Parse(resp.Header.Get("Location"))
	}
	return nil, errors.New("the challenge was answered and challenged again")
}

// pageError is an answer that was not a redirect.
type pageError struct {
	status int
	body   string
}

func (p *pageError) Error() string { return fmt.Sprintf("status %d: %.200s", p.status, p.body) }

// login is the whole flow: authorize, exchange, verify. It returns the
// tokens and the verified ID token.
func (r *rp) login(f flow) (*oauth2.Token, *gooidc.IDToken, error) {
	code, err := r.authorize(f)
	if err != nil {
		return nil, nil, err
	}
	tok, err := r.oauth.Exchange(r.e.ctx(), code, oauth2.VerifierOption(f.verifier))
	if err != nil {
		return nil, nil, fmt.Errorf("exchange: %w", err)
	}
	idt, err := r.verify(tok)
	if err != nil {
		return tok, nil, err
	}
	if idt.Nonce != f.nonce {
		return tok, idt, fmt.Errorf("nonce %q, want %q", idt.Nonce, f.nonce)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		return tok, idt, fmt.Errorf("at_hash: %w", err)
	}
	return tok, idt, nil
}

func (r *rp) verify(tok *oauth2.Token) (*gooidc.IDToken, error) {
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		return nil, errors.New("no id_token in the token response")
	}
	return r.verifier.Verify(r.e.ctx(), raw)
}

func (r *rp) userInfo(tok *oauth2.Token) (*gooidc.UserInfo, error) {
	return r.provider.UserInfo(r.e.ctx(), oauth2.StaticTokenSource(tok))
}
