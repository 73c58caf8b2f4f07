package authlibrp

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/iwalb/iwalb/authnode/oidc"
	"github.com/iwalb/iwalb/authnode/store"
	"github.com/iwalb/iwalb/internal/testpki"
)

// The provider's clients: authlib authenticates one with
// client_secret_post and one with client_secret_basic; "other" is another
// relying party whose ID tokens authlib must refuse.
const (
	postID, postSecret   = "authlib-post", "authlib-post-secret-0123456789"
	basicID, basicSecret = "authlib-basic", "authlib-basic-secret-0123456789"
	otherID, otherSecret = "other", "other-secret-0123456789abcdef"
	redirectURI          = "https://rp.example.test/callback"
	otherRedirect        = "https://other.example.test/callback"
)

var alice = oidc.User{
	SID: "S-1-5-21-1111-2222-3333-1104", SAMAccountName: "alice", UPN: "alice@EXAMPLE.TEST",
	Email: "alice@example.test", DisplayName: "Alice Liddell",
	Groups: []string{"Domain Users", "Engineers"}, Method: oidc.MethodKerberos,
}

// aliceSignsIn plays the node's sign-in: every browser is alice, signed
// in with her Kerberos ticket.
type aliceSignsIn struct{}

func (aliceSignsIn) SignIn(http.ResponseWriter, *http.Request) (*oidc.User, bool) {
	u := alice
	u.AuthTime = time.Now()
	return &u, true
}

// env is a provider behind a TLS server whose certificate names
// sso.example.test (a name only the tests' resolve maps know), and a
// browser that trusts its CA and follows no redirect.
type env struct {
	t       *testing.T
	issuer  string
	caFile  string
	resolve map[string]string
	browser *http.Client
	// swapIDToken, when set, replaces the id_token of the next token
	// responses: a token meant for another client, as a man in the
	// middle or a malicious provider would hand it over.
	swapIDToken atomic.Pointer[string]
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if err := Available(t.Context()); err != nil {
		t.Skip(err)
	}
	e := &env{t: t}
	ca := testpki.NewCA(t, "authlibrp test CA")
	leaf := ca.Issue(t, "sso.example.test")
	e.caFile = ca.CertFile(t)

	var h http.Handler
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := e.swapIDToken.Load(); tok != nil && r.URL.Path == oidc.PathToken {
			swapIDToken(w, r, h, *tok)
			return
		}
		h.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS()}, MinVersion: tls.VersionTLS12}
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // handshakes cut short at Close
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	hostPort := "sso.example.test:" + port
	e.issuer = "https://" + hostPort
	e.resolve = map[string]string{hostPort: "127.0.0.1"}

	p, err := oidc.New(oidc.Config{Issuer: e.issuer, Clients: []oidc.Client{
		{ID: postID, Secret: postSecret, TokenAuth: oidc.AuthSecretPost, RedirectURIs: []string{redirectURI}},
		{ID: basicID, Secret: basicSecret, RedirectURIs: []string{redirectURI}},
		{ID: otherID, Secret: otherSecret, RedirectURIs: []string{otherRedirect}},
	}}, oidc.Options{
		Store: store.NewMemory(store.Options{}), Keys: oidc.NewLocalKeyStore(),
		Authenticator: aliceSignsIn{}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	h = p.Handler()
	srv.StartTLS()
	t.Cleanup(srv.Close)

	d := &net.Dialer{Timeout: 5 * time.Second}
	e.browser = &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if ip, ok := e.resolve[addr]; ok {
					addr = net.JoinHostPort(ip, port)
				}
				return d.DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	return e
}

// swapIDToken serves the token request with h and hands over tok as its
// id_token.
func swapIDToken(w http.ResponseWriter, r *http.Request, h http.Handler, tok string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	var body map[string]any
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	body["id_token"] = tok
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(body)
}

func (e *env) params(clientID, secret, method string) Params {
	return Params{Issuer: e.issuer, ClientID: clientID, ClientSecret: secret, AuthMethod: method,
		RedirectURI: redirectURI, CAFile: e.caFile, Resolve: e.resolve}
}

// browse does the browser's part: it follows the authorization URL to
// the redirect the provider answers, and returns where that points.
func (e *env) browse(authURL string) string {
	e.t.Helper()
	resp, err := e.browser.Get(authURL)
	if err != nil {
		e.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("authorization request: %s, not a redirect: %.300s", resp.Status, body)
	}
	return resp.Header.Get("Location")
}

// start starts a flow, and checks the request authlib made.
func (e *env) start(p Params) *Flow {
	e.t.Helper()
	f, err := Start(e.t.Context(), p)
	if err != nil {
		e.t.Fatal(err)
	}
	u, err := url.Parse(f.URL)
	if err != nil {
		e.t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme+"://"+u.Host+u.Path != e.issuer+oidc.PathAuthorize || q.Get("code_challenge_method") != "S256" ||
		q.Get("code_challenge") == "" || q.Get("state") != f.State || q.Get("nonce") != f.Nonce ||
		q.Get("client_id") != p.ClientID || q.Get("redirect_uri") != redirectURI || q.Get("response_type") != "code" {
		e.t.Fatalf("authlib's authorization URL %s (state %q, nonce %q)", f.URL, f.State, f.Nonce)
	}
	return f
}

// TestSignIn signs alice in with authlib with either client
// authentication, and checks what it verified.
func TestSignIn(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ id, secret, method string }{
		{postID, postSecret, oidc.AuthSecretPost},
		{basicID, basicSecret, oidc.AuthSecretBasic},
		{basicID, basicSecret, ""}, // the default with a secret
	} {
		t.Run(c.id+" "+c.method, func(t *testing.T) {
			f := e.start(e.params(c.id, c.secret, c.method))
			res, err := f.Finish(t.Context(), e.browse(f.URL))
			if err != nil {
				t.Fatal(err)
			}
			id := res.IDToken
			want := map[string]any{
				"iss": e.issuer, "aud": c.id, "sub": alice.SID, "nonce": f.Nonce,
				"preferred_username": "alice", "name": alice.DisplayName, "email": alice.Email, "upn": alice.UPN,
			}
			for k, v := range want {
				if fmt.Sprint(id[k]) != fmt.Sprint(v) {
					t.Errorf("ID token %s = %v, want %v", k, id[k], v)
				}
			}
			if fmt.Sprint(id["groups"]) != fmt.Sprint(alice.Groups) || fmt.Sprint(id["amr"]) != "[kerberos]" {
				t.Errorf("ID token groups %v amr %v", id["groups"], id["amr"])
			}
			if _, ok := id["at_hash"]; !ok {
				t.Error("the ID token has no at_hash, so authlib checked none")
			}
			ui := res.UserInfo
			if ui["sub"] != alice.SID || ui["preferred_username"] != "alice" || fmt.Sprint(ui["groups"]) != fmt.Sprint(alice.Groups) {
				t.Errorf("userinfo %v", ui)
			}
		})
	}
}

// finishFails runs f.Finish with callback and wants an error that says
// why.
func finishFails(t *testing.T, f *Flow, callback string, why ...string) {
	t.Helper()
	res, err := f.Finish(t.Context(), callback)
	if err == nil {
		t.Fatalf("authlib accepted %s: %v", callback, res)
	}
	t.Logf("refused: %v", err)
	for _, w := range why {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

// TestRefusals: what authlib must refuse, it refuses, each for its reason.
func TestRefusals(t *testing.T) {
	e := newEnv(t)

	t.Run("wrong client secret", func(t *testing.T) {
		f := e.start(e.params(postID, "not-the-secret-0123456789", oidc.AuthSecretPost))
		finishFails(t, f, e.browse(f.URL), "token request", "invalid_client")
	})

	t.Run("client authentication other than registered", func(t *testing.T) {
		f := e.start(e.params(postID, postSecret, oidc.AuthSecretBasic))
		finishFails(t, f, e.browse(f.URL), "invalid_client")
	})

	t.Run("tampered state", func(t *testing.T) {
		f := e.start(e.params(postID, postSecret, oidc.AuthSecretPost))
		cb, _ := url.Parse(e.browse(f.URL))
		q := cb.Query()
		q.Set("state", q.Get("state")+"x")
		cb.RawQuery = q.Encode()
		finishFails(t, f, cb.String(), "state mismatch")
	})

	t.Run("callback with an error", func(t *testing.T) {
		f := e.start(e.params(postID, postSecret, oidc.AuthSecretPost))
		finishFails(t, f, redirectURI+"?error=access_denied&state="+url.QueryEscape(f.State), "access_denied")
	})

	t.Run("code used twice", func(t *testing.T) {
		f := e.start(e.params(postID, postSecret, oidc.AuthSecretPost))
		cb := e.browse(f.URL)
		if _, err := f.Finish(t.Context(), cb); err != nil {
			t.Fatal(err)
		}
		finishFails(t, f, cb, "invalid_grant")
	})

	t.Run("ID token for another audience", func(t *testing.T) {
		f := e.start(e.params(postID, postSecret, oidc.AuthSecretPost))
		// The provider's own, validly signed ID token with the nonce of
		// authlib's request, but issued to another client: only aud
		// tells it apart.
		e.swapIDToken.Store(new(e.otherIDToken(f.Nonce)))
		defer e.swapIDToken.Store(nil)
		finishFails(t, f, e.browse(f.URL), "ID token", "aud")
	})

	t.Run("discovery at another issuer", func(t *testing.T) {
		p := e.params(postID, postSecret, oidc.AuthSecretPost)
		p.Issuer += "/other"
		if _, err := Start(t.Context(), p); err == nil {
			t.Fatal("started with an issuer the provider is not")
		}
	})

	t.Run("untrusted CA", func(t *testing.T) {
		p := e.params(postID, postSecret, oidc.AuthSecretPost)
		p.CAFile = testpki.NewCA(t, "another CA").CertFile(t)
		if _, err := Start(t.Context(), p); err == nil || !strings.Contains(err.Error(), "CERTIFICATE_VERIFY_FAILED") {
			t.Fatalf("discovery through an untrusted certificate: %v", err)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		// A provider that takes the connection and never answers: the
		// interpreter is killed at the step's timeout, before requests'
		// own.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held := make(chan net.Conn, 16)
		defer func() {
			ln.Close()
			for len(held) > 0 {
				(<-held).Close()
			}
		}()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				select {
				case held <- c:
				default:
					c.Close()
				}
			}
		}()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		p := e.params(postID, postSecret, oidc.AuthSecretPost)
		p.Issuer = "https://hang.example.test:" + port
		p.Resolve = map[string]string{"hang.example.test:" + port: "127.0.0.1"}
		p.Timeout = 2 * time.Second
		begin := time.Now()
		if _, err := Start(t.Context(), p); err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
			t.Fatalf("a step past its timeout: %v", err)
		}
		if d := time.Since(begin); d > 6*time.Second {
			t.Errorf("a step past its timeout took %v to end", d)
		}
	})
}

// otherIDToken signs alice in to the other client with nonce, through
// x/oauth2, and returns the ID token it gets.
func (e *env) otherIDToken(nonce string) string {
	e.t.Helper()
	conf := oauth2.Config{
		ClientID: otherID, ClientSecret: otherSecret, RedirectURL: otherRedirect, Scopes: []string{"openid", "profile"},
		Endpoint: oauth2.Endpoint{AuthURL: e.issuer + oidc.PathAuthorize, TokenURL: e.issuer + oidc.PathToken, AuthStyle: oauth2.AuthStyleInHeader},
	}
	verifier := oauth2.GenerateVerifier()
	loc, err := url.Parse(e.browse(conf.AuthCodeURL("s", oauth2.SetAuthURLParam("nonce", nonce), oauth2.S256ChallengeOption(verifier))))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx := context.WithValue(e.t.Context(), oauth2.HTTPClient, e.browser)
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		e.t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		e.t.Fatal("no id_token for the other client")
	}
	return raw
}

// TestParams covers the arguments made from Params without a provider.
func TestParams(t *testing.T) {
	p := Params{Issuer: "https://sso.example.test", ClientID: "c", RedirectURI: "https://rp.example.test/cb",
		Resolve: map[string]string{"b.example.test:2": "127.0.0.1", "a.example.test:1": "::1"}}
	args, err := p.args()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(args, " "); !strings.Contains(got, "--auth-method none") ||
		!strings.Contains(got, "--resolve a.example.test:1:::1 --resolve b.example.test:2:127.0.0.1") {
		t.Errorf("args %s", got)
	}
	p.ClientSecret = "s"
	if args, _ := p.args(); !slices.Contains(args, "client_secret_basic") {
		t.Errorf("with a secret: %v", args)
	}
	p.Resolve = map[string]string{"no-port": "127.0.0.1"}
	if _, err := p.args(); err == nil {
		t.Error("a resolve entry without a port was taken")
	}
}
