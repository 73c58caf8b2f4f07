package main

// The demo application's second mode: an OpenID Connect relying party of
// the auth node's provider (authnode/oidc), made of
// github.com/coreos/go-oidc (discovery, ID token verification, userinfo)
// and golang.org/x/oauth2 (the authorization code flow with PKCE), so that
// what it shows is what any application built on them would see. The
// only protocol checks written here are those the libraries leave to
// their caller: state, nonce, the iss of the authorization response (RFC
// 9207) and userinfo's sub.

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Bounds of the relying party's memory. A pending sign-in lives from the
// redirect to the provider until the browser comes back: the provider's
// code lives a minute, but the user may have to type a password first.
// Anyone can start sign-ins, so the pending ones are capped and the
// oldest give way; signed-in sessions are capped likewise.
const (
	pendingTTL  = 10 * time.Minute
	maxPending  = 10000
	sessionTTL  = 8 * time.Hour
	maxSessions = 10000
)

// Cookies of the OIDC mode. demo_session is the token mode's name, for
// the same thing.
const (
	sessionCookie = "demo_session"
	// browserCookie binds pending sign-ins to the browser that started
	// them, so that a callback URL carried to another browser (login
	// CSRF: an attacker's code in the victim's browser) is refused.
	browserCookie = "demo_oidc_browser"
	// signedOutCookie stops "/" from sending a browser that just signed
	// out straight back to the provider, which would sign it in again at
	// once with its Kerberos ticket.
	signedOutCookie = "demo_signed_out"
)

// Paths of the OIDC mode; the callback is the redirect URL's path.
const (
	pathSignIn = "/oidc/login"
	pathLogout = "/logout"
)

// scopes are what the demo asks for: every claim the provider maps.
var scopes = []string{oidc.ScopeOpenID, "profile", "email", "groups"}

// oidcConfig is the OIDC mode's flags.
type oidcConfig struct {
	issuer, clientID, secretFile, tokenAuth, redirectURL, postLogoutURL string
}

func (c *oidcConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.issuer, "oidc-issuer", "", "OpenID Connect mode: the provider's issuer URL, e.g. https://sso.example.test (discovery is read below it)")
	fs.StringVar(&c.clientID, "oidc-client-id", "", "OpenID Connect mode: this application's client_id")
	fs.StringVar(&c.secretFile, "oidc-client-secret-file", "", "OpenID Connect mode: file holding the client secret (none: a public client, PKCE only)")
	fs.StringVar(&c.tokenAuth, "oidc-token-auth", "", "OpenID Connect mode: client authentication at the token endpoint, as registered: client_secret_basic (the default with a secret), client_secret_post, or none (without)")
	fs.StringVar(&c.redirectURL, "oidc-redirect-url", "", "OpenID Connect mode: the registered redirect URI; the callback is served at its path")
	fs.StringVar(&c.postLogoutURL, "oidc-post-logout-url", "", "OpenID Connect mode: the registered post_logout_redirect_uri sent at sign-out (optional)")
}

// oidcAuth is what the signed-in page says of how the sign-in was made.
type oidcAuth struct {
	Issuer     string
	AMR        []string
	Method     string // the amr in words
	ClientAuth string
}

// rpSession is a signed-in browser.
type rpSession struct {
	id      *identity
	auth    *oidcAuth
	idToken string // for id_token_hint at sign-out
}

// pendingAuth is a sign-in on its way through the provider, found by its
// state.
type pendingAuth struct {
	browser  string
	nonce    string
	verifier string
}

type oidcApp struct {
	cfg        oidcConfig
	client     *http.Client // the provider's: -ca and -resolve
	clientAuth string
	secret     string
	callback   string // the redirect URL's path
	log        *slog.Logger
	pending    *boundedMap[pendingAuth]
	sessions   *boundedMap[rpSession]

	mu sync.Mutex
	rp *discovered // nil until discovery succeeded
}

// discovered is what discovery gave: the provider, its verifier and the
// OAuth2 configuration made from its endpoints.
type discovered struct {
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	oauth      oauth2.Config
	endSession string // "" when the provider announces none
}

func newOIDCApp(c oidcConfig, client *http.Client, log *slog.Logger) (*oidcApp, error) {
	if c.clientID == "" || c.redirectURL == "" {
		return nil, errors.New("-oidc-issuer needs -oidc-client-id and -oidc-redirect-url")
	}
	ru, err := url.Parse(c.redirectURL)
	if err != nil || !ru.IsAbs() || ru.Host == "" {
		return nil, fmt.Errorf("-oidc-redirect-url %q: not an absolute URL", c.redirectURL)
	}
	switch p := ru.EscapedPath(); p {
	case "", "/", pathSignIn, pathLogout, "/healthz":
		return nil, fmt.Errorf("-oidc-redirect-url %q: its path must be one of its own, not %q", c.redirectURL, p)
	}
	if strings.ContainsAny(ru.Path, "{}") {
		return nil, fmt.Errorf("-oidc-redirect-url %q: braces in the path", c.redirectURL)
	}
	if c.postLogoutURL != "" {
		if u, err := url.Parse(c.postLogoutURL); err != nil || !u.IsAbs() {
			return nil, fmt.Errorf("-oidc-post-logout-url %q: not an absolute URL", c.postLogoutURL)
		}
	}
	a := &oidcApp{
		cfg: c, client: client, callback: ru.Path, log: log,
		pending:  newBoundedMap[pendingAuth](maxPending, pendingTTL, time.Now),
		sessions: newBoundedMap[rpSession](maxSessions, sessionTTL, time.Now),
	}
	if c.secretFile != "" {
		b, err := os.ReadFile(c.secretFile)
		if err != nil {
			return nil, fmt.Errorf("read client secret: %w", err)
		}
		if a.secret = strings.TrimSpace(string(b)); a.secret == "" {
			return nil, fmt.Errorf("%s is empty", c.secretFile)
		}
	}
	a.clientAuth = c.tokenAuth
	switch {
	case a.clientAuth == "" && a.secret != "":
		a.clientAuth = "client_secret_basic"
	case a.clientAuth == "":
		a.clientAuth = "none"
	case a.clientAuth != "client_secret_basic" && a.clientAuth != "client_secret_post" && a.clientAuth != "none":
		return nil, fmt.Errorf("-oidc-token-auth %q: client_secret_basic, client_secret_post or none", a.clientAuth)
	}
	if (a.clientAuth == "none") != (a.secret == "") {
		return nil, fmt.Errorf("-oidc-token-auth %s: with a secret file, client_secret_basic or client_secret_post; without, none", a.clientAuth)
	}
	// Discovery now, to say early when the provider cannot be read; a
	// provider that is not up yet is read again at the first sign-in.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.discover(ctx); err != nil {
		log.Warn("OpenID Connect discovery failed; retried at the first sign-in", "issuer", c.issuer, "err", err)
	}
	log.Info("OpenID Connect mode", "issuer", c.issuer, "client_id", c.clientID, "client_auth", a.clientAuth, "redirect_url", c.redirectURL)
	return a, nil
}

func (a *oidcApp) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", a.home)
	mux.HandleFunc("GET "+pathSignIn, a.signIn)
	mux.HandleFunc("GET "+a.callback, a.finish)
	mux.HandleFunc("POST "+pathLogout, a.logout)
}

// ctx carries the provider's HTTP client to go-oidc and x/oauth2.
func (a *oidcApp) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, a.client)
}

// discover returns the provider's metadata, reading it once it can:
// go-oidc checks that it names the issuer exactly.
func (a *oidcApp) discover(ctx context.Context) (*discovered, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rp != nil {
		return a.rp, nil
	}
	p, err := oidc.NewProvider(a.ctx(ctx), a.cfg.issuer)
	if err != nil {
		return nil, err
	}
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, err
	}
	ep := p.Endpoint()
	// The registered method only: x/oauth2's auto-detection tries the
	// other after any refusal, which the provider answers invalid_client
	// and so hides the first answer.
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if a.clientAuth != "client_secret_basic" {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	a.rp = &discovered{
		provider:   p,
		verifier:   p.Verifier(&oidc.Config{ClientID: a.cfg.clientID}),
		oauth:      oauth2.Config{ClientID: a.cfg.clientID, ClientSecret: a.secret, Endpoint: ep, RedirectURL: a.cfg.redirectURL, Scopes: scopes},
		endSession: meta.EndSession,
	}
	return a.rp, nil
}

// home shows the signed-in user, or sends the browser to sign in, as an
// application behind single sign-on does; a browser that just signed out
// is shown so instead.
func (a *oidcApp) home(w http.ResponseWriter, r *http.Request) {
	if s, ok := a.session(r); ok {
		render(w, http.StatusOK, page{Title: "Signed in", ID: s.id, Auth: s.auth})
		return
	}
	if _, err := r.Cookie(signedOutCookie); err == nil {
		render(w, http.StatusOK, page{Title: "Signed out", LoginURL: pathSignIn})
		return
	}
	http.Redirect(w, r, pathSignIn, http.StatusFound)
}

func (a *oidcApp) session(r *http.Request) (rpSession, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return rpSession{}, false
	}
	return a.sessions.get(c.Value)
}

// signIn starts the authorization code flow: PKCE S256, a state and a
// nonce kept for this browser, and the redirect to the provider.
func (a *oidcApp) signIn(w http.ResponseWriter, r *http.Request) {
	rp, err := a.discover(r.Context())
	if err != nil {
		a.log.Error("discovery failed", "issuer", a.cfg.issuer, "err", err)
		render(w, http.StatusBadGateway, page{Title: "Sign-in is unavailable", Error: "The sign-in service cannot be reached. Try again shortly.", LoginURL: pathSignIn})
		return
	}
	browser := ""
	if c, err := r.Cookie(browserCookie); err == nil && len(c.Value) >= 26 && len(c.Value) <= 64 {
		browser = c.Value
	} else {
		browser = rand.Text()
		a.setCookie(w, r, browserCookie, browser, 0)
	}
	state, nonce, verifier := rand.Text(), rand.Text(), oauth2.GenerateVerifier()
	if a.pending.put(state, pendingAuth{browser: browser, nonce: nonce, verifier: verifier}) {
		a.log.Warn("too many sign-ins pending: the oldest was dropped", "max", maxPending)
	}
	a.setCookie(w, r, signedOutCookie, "", -1)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, rp.oauth.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

// finish is the callback: the state must be one this browser started;
// then the provider's error is shown, or the code is exchanged, the ID
// token verified (signature, issuer, audience, expiry by go-oidc; nonce
// and at_hash here) and userinfo asked.
func (a *oidcApp) finish(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fail := func(status int, reason, msg string, args ...any) {
		a.log.Warn("sign-in failed", append([]any{"reason", reason, "client", r.RemoteAddr}, args...)...)
		render(w, status, page{Title: "Sign-in failed", Error: msg, LoginURL: pathSignIn})
	}
	// State first: until it matches, nothing in the answer comes from a
	// request of this browser, so not even its error is shown.
	p, ok := a.pending.take(q.Get("state"))
	c, err := r.Cookie(browserCookie)
	if !ok || err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(p.browser)) != 1 {
		fail(http.StatusBadRequest, "state", "This answer is not to a sign-in this browser started (unknown or used state). Sign in again.")
		return
	}
	if e := q.Get("error"); e != "" {
		// Shown as text (html/template escapes it) and cut short: it
		// is what the provider, or whoever made this URL, wrote.
		fail(http.StatusForbidden, "provider_error", fmt.Sprintf("The sign-in service refused: %s: %s", clip(e, 64), clip(q.Get("error_description"), 300)),
			"error", clip(e, 64))
		return
	}
	rp, err := a.discover(r.Context())
	if err != nil {
		fail(http.StatusBadGateway, "discovery", "The sign-in service cannot be reached. Try again shortly.", "err", err)
		return
	}
	// RFC 9207: a provider that names itself in the answer must be the
	// one asked, or another provider's code is being sent to this one.
	if iss, ok := q["iss"]; ok && (len(iss) != 1 || iss[0] != a.cfg.issuer) {
		fail(http.StatusBadRequest, "iss", "The answer names another sign-in service.")
		return
	}
	code := q.Get("code")
	if code == "" {
		fail(http.StatusBadRequest, "no_code", "The answer carries no authorization code.")
		return
	}
	ctx := a.ctx(r.Context())
	tok, err := rp.oauth.Exchange(ctx, code, oauth2.VerifierOption(p.verifier))
	if err != nil {
		fail(http.StatusBadGateway, "exchange", "The authorization code was not accepted: "+exchangeError(err), "err", exchangeError(err))
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		fail(http.StatusBadGateway, "no_id_token", "The sign-in service gave no ID token.")
		return
	}
	idt, err := rp.verifier.Verify(ctx, raw)
	if err != nil {
		fail(http.StatusBadGateway, "id_token", "The ID token is not valid: "+err.Error(), "err", err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(p.nonce)) != 1 {
		fail(http.StatusBadGateway, "nonce", "The ID token is not for this sign-in (nonce).")
		return
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			fail(http.StatusBadGateway, "at_hash", "The access token does not match the ID token.", "err", err)
			return
		}
	}
	var idc struct {
		AMR []string `json:"amr"`
	}
	if err := idt.Claims(&idc); err != nil {
		fail(http.StatusBadGateway, "id_token", "The ID token's claims cannot be read.", "err", err)
		return
	}
	ui, err := rp.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		fail(http.StatusBadGateway, "userinfo", "The user's details could not be read.", "err", err)
		return
	}
	// OpenID Connect Core §5.3.2: userinfo about another subject must not
	// be used.
	if ui.Subject != idt.Subject {
		fail(http.StatusBadGateway, "userinfo_sub", "The user's details are about someone else.")
		return
	}
	var uc struct {
		PreferredUsername string   `json:"preferred_username"`
		Name              string   `json:"name"`
		UPN               string   `json:"upn"`
		Email             string   `json:"email"`
		Groups            []string `json:"groups"`
	}
	if err := ui.Claims(&uc); err != nil {
		fail(http.StatusBadGateway, "userinfo", "The user's details cannot be read.", "err", err)
		return
	}
	id := &identity{SAMAccountName: uc.PreferredUsername, UserPrincipalName: uc.UPN, DisplayName: uc.Name, Mail: uc.Email, Groups: uc.Groups}
	if id.SAMAccountName == "" {
		id.SAMAccountName = idt.Subject // without the profile scope
	}
	// The provider has no realm claim; the UPN's suffix is the Kerberos
	// realm for the accounts it serves.
	if _, realm, ok := strings.Cut(uc.UPN, "@"); ok {
		id.Realm = realm
	}
	sid := rand.Text()
	if a.sessions.put(sid, rpSession{id: id, idToken: raw, auth: &oidcAuth{
		Issuer: idt.Issuer, AMR: idc.AMR, Method: amrWords(idc.AMR), ClientAuth: a.clientAuth,
	}}) {
		a.log.Warn("too many sessions: the oldest was dropped", "max", maxSessions)
	}
	a.setCookie(w, r, sessionCookie, sid, sessionTTL)
	a.log.Info("signed in", "user", id.SAMAccountName, "sub", idt.Subject, "amr", strings.Join(idc.AMR, " "))
	// To "/", so that the code leaves the address bar and the history,
	// and a reload shows the page rather than a spent code's error.
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// logout ends the session here and sends the browser to the provider's
// end_session_endpoint (RP-Initiated Logout 1.0) with the ID token as
// id_token_hint, so that the provider ends its session without asking.
// It is a POST from the page's button: a link on another site cannot
// sign anyone out (the session cookie is SameSite=Lax).
func (a *oidcApp) logout(w http.ResponseWriter, r *http.Request) {
	var hint string
	if c, err := r.Cookie(sessionCookie); err == nil {
		if s, ok := a.sessions.take(c.Value); ok {
			hint = s.idToken
			a.log.Info("signed out", "user", s.id.SAMAccountName)
		}
	}
	a.setCookie(w, r, sessionCookie, "", -1)
	a.setCookie(w, r, signedOutCookie, "1", pendingTTL)
	rp, err := a.discover(r.Context())
	if err != nil || rp.endSession == "" {
		render(w, http.StatusOK, page{Title: "Signed out", LoginURL: pathSignIn})
		return
	}
	u, err := url.Parse(rp.endSession)
	if err != nil {
		render(w, http.StatusOK, page{Title: "Signed out", LoginURL: pathSignIn})
		return
	}
	v := u.Query()
	v.Set("client_id", a.cfg.clientID)
	if hint != "" {
		v.Set("id_token_hint", hint)
	}
	if a.cfg.postLogoutURL != "" {
		v.Set("post_logout_redirect_uri", a.cfg.postLogoutURL)
	}
	u.RawQuery = v.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// setCookie sets (maxAge > 0: for that long; 0: for the browser's
// session) or deletes (maxAge < 0) a cookie of this application.
func (a *oidcApp) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode}
	switch {
	case maxAge < 0:
		c.MaxAge = -1
	case maxAge > 0:
		c.MaxAge = int(maxAge / time.Second)
	}
	http.SetCookie(w, c)
}

// exchangeError says why the token endpoint refused, without the body
// x/oauth2 quotes whole.
func exchangeError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode != "" {
		return clip(re.ErrorCode+": "+re.ErrorDescription, 300)
	}
	return clip(err.Error(), 300)
}

// amrWords says an amr value of the provider (authnode/oidc's table) in
// words.
func amrWords(amr []string) string {
	switch strings.Join(amr, " ") {
	case "kerberos":
		return "Windows sign-on, Kerberos ticket"
	case "pwd":
		return "password"
	case "ntlm":
		return "Windows sign-on, NTLM"
	case "":
		return "method not said"
	}
	return "other method"
}

// clip cuts s to n bytes, on a rune boundary, and drops control
// characters, so that what someone else wrote stays one short line.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// boundedMap is a map whose entries expire after ttl and of which there
// are at most max: the oldest gives way to a new one. All entries live
// equally long, so the oldest is also the first to expire, and a list in
// insertion order finds both.
type boundedMap[V any] struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	now   func() time.Time
	m     map[string]*list.Element
	order *list.List // of *boundedEntry[V], oldest first
}

type boundedEntry[V any] struct {
	key     string
	v       V
	expires time.Time
}

func newBoundedMap[V any](limit int, ttl time.Duration, now func() time.Time) *boundedMap[V] {
	return &boundedMap[V]{max: limit, ttl: ttl, now: now, m: map[string]*list.Element{}, order: list.New()}
}

// put adds v at key (a fresh random key, never one in use) and reports
// whether an entry that had not expired was dropped to make room.
func (b *boundedMap[V]) put(key string, v V) (dropped bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.expire(now)
	for b.order.Len() >= b.max {
		b.remove(b.order.Front())
		dropped = true
	}
	b.m[key] = b.order.PushBack(&boundedEntry[V]{key: key, v: v, expires: now.Add(b.ttl)})
	return dropped
}

// get returns the entry at key unless it expired.
func (b *boundedMap[V]) get(key string) (V, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expire(b.now())
	if el, ok := b.m[key]; ok {
		return el.Value.(*boundedEntry[V]).v, true
	}
	var zero V
	return zero, false
}

// take is get that removes the entry: each can be taken once.
func (b *boundedMap[V]) take(key string) (V, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expire(b.now())
	if el, ok := b.m[key]; ok {
		b.remove(el)
		return el.Value.(*boundedEntry[V]).v, true
	}
	var zero V
	return zero, false
}

func (b *boundedMap[V]) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.order.Len()
}

// expire drops the entries that expired by now, all at the front.
func (b *boundedMap[V]) expire(now time.Time) {
	for el := b.order.Front(); el != nil && !now.Before(el.Value.(*boundedEntry[V]).expires); el = b.order.Front() {
		b.remove(el)
	}
}

func (b *boundedMap[V]) remove(el *list.Element) {
	delete(b.m, el.Value.(*boundedEntry[V]).key)
	b.order.Remove(el)
}
