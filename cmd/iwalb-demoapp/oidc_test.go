package main

import (
	"context"
	"crypto/tls"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authoidc "github.com/iwalb/iwalb/authnode/oidc"
	"github.com/iwalb/iwalb/authnode/store"
	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/internal/testpki"
)

// The provider's clients for the demo application.
const (
	demoID, demoSecret = "demo", "demo-oidc-secret-0123456789"
	postID             = "demo-post"
	adminsID           = "admins" // requires Domain Admins, which alice is not in
)

var alice = authoidc.User{
	SID: "S-1-5-21-1111-2222-3333-1104", SAMAccountName: "alice", UPN: "alice@EXAMPLE.TEST",
	Email: "alice@example.test", DisplayName: "Alice Liddell",
	Groups: []string{"Domain Users", "Engineers"}, Method: authoidc.MethodKerberos,
}

// fakeAuth plays the node's sign-in: every browser is alice, signed in
// with her Kerberos ticket.
type fakeAuth struct{ calls atomic.Int64 }

func (a *fakeAuth) SignIn(http.ResponseWriter, *http.Request) (*authoidc.User, bool) {
	a.calls.Add(1)
	u := alice
	u.AuthTime = time.Now()
	return &u, true
}

// syncBuffer collects the app's log lines from its handlers.
type syncBuffer = testkit.Buffer

// rpEnv is the auth node's provider behind a TLS server named
// sso.example.test (a name only -resolve knows), the demo application in
// its OIDC mode as its client, and a browser with a cookie jar.
type rpEnv struct {
	t        *testing.T
	issuer   string
	appURL   string
	auth     *fakeAuth
	appLog   *syncBuffer
	browser  *http.Client // follows redirects
	noFollow *http.Client // the same browser, one step at a time
	jar      http.CookieJar
}

// newRPEnv starts the provider and the app, configured as client with
// the extra flags.
func newRPEnv(t *testing.T, client string, extra ...string) *rpEnv {
	t.Helper()
	e := &rpEnv{t: t, auth: &fakeAuth{}, appLog: &syncBuffer{}}
	app := httptest.NewUnstartedServer(nil)
	e.appURL = "http://" + app.Listener.Addr().String()
	redirect := e.appURL + "/oidc/callback"

	ca := testpki.NewCA(t, "demoapp test CA")
	var h http.Handler
	idp := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	idp.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "sso.example.test").TLS()}, MinVersion: tls.VersionTLS12}
	idp.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // handshakes cut short at Close
	_, port, _ := net.SplitHostPort(idp.Listener.Addr().String())
	e.issuer = "https://sso.example.test:" + port
	reg := func(id string) authoidc.Client {
		return authoidc.Client{ID: id, Secret: demoSecret, RedirectURIs: []string{redirect}, PostLogoutRedirectURIs: []string{e.appURL + "/"}}
	}
	post, admins := reg(postID), reg(adminsID)
	post.TokenAuth = authoidc.AuthSecretPost
	admins.RequiredGroup = "Domain Admins"
	p, err := authoidc.New(authoidc.Config{Issuer: e.issuer, Clients: []authoidc.Client{reg(demoID), post, admins}}, authoidc.Options{
		Store: store.NewMemory(store.Options{}), Keys: authoidc.NewLocalKeyStore(), Authenticator: e.auth,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	h = p.Handler()
	idp.StartTLS()
	t.Cleanup(idp.Close)

	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(demoSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-ca", ca.CertFile(t), "-resolve", "sso.example.test:" + port + ":127.0.0.1",
		"-oidc-issuer", e.issuer, "-oidc-client-id", client, "-oidc-client-secret-file", secretFile,
		"-oidc-redirect-url", redirect, "-oidc-post-logout-url", e.appURL + "/"}, extra...)
	handler, _, err := newServer(args, slog.New(slog.NewTextHandler(e.appLog, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	app.Config.Handler = handler
	app.Start()
	t.Cleanup(app.Close)
	t.Cleanup(func() {
		// Neither the secret nor a token (a JWT starts eyJ) reaches the
		// app's log.
		if l := e.appLog.String(); strings.Contains(l, demoSecret) || strings.Contains(l, "eyJ") {
			t.Errorf("a secret or a token is in the app's log:\n%s", l)
		}
	})

	e.jar, _ = cookiejar.New(nil)
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == "sso.example.test:"+port {
				addr = "127.0.0.1:" + port
			}
			return d.DialContext(ctx, network, addr)
		},
	}
	e.browser = &http.Client{Transport: tr, Jar: e.jar, Timeout: 10 * time.Second}
	e.noFollow = &http.Client{Transport: tr, Jar: e.jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

// answer is a response read whole.
type answer struct {
	status int
	url    *url.URL // where the browser ended
	loc    string   // Location, when not followed
	body   string
}

func (e *rpEnv) do(c *http.Client, method, u string) answer {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, u, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Request.URL, resp.Header.Get("Location"), string(b)}
}

// callback takes the browser through sign-in one step at a time and
// returns the callback URL the provider redirected to, not yet visited.
func (e *rpEnv) callback() string {
	e.t.Helper()
	a := e.do(e.noFollow, http.MethodGet, e.appURL+"/oidc/login")
	if a.status != http.StatusFound || !strings.HasPrefix(a.loc, e.issuer+"/authorize?") {
		e.t.Fatalf("sign-in: %d to %q", a.status, a.loc)
	}
	a = e.do(e.noFollow, http.MethodGet, a.loc)
	if a.status != http.StatusFound || !strings.HasPrefix(a.loc, e.appURL+"/oidc/callback?") {
		e.t.Fatalf("authorize: %d to %q: %.300s", a.status, a.loc, a.body)
	}
	return a.loc
}

// withParam returns u with its query parameter k set to v.
func withParam(u, k, v string) string {
	p, _ := url.Parse(u)
	q := p.Query()
	q.Set(k, v)
	p.RawQuery = q.Encode()
	return p.String()
}

// TestOIDCSignIn: "/" sends a new browser through the provider, and it
// lands back on "/" signed in as alice, with her groups and how she
// signed in, with either client authentication; then sign-out goes
// through the provider's end_session_endpoint and back.
func TestOIDCSignIn(t *testing.T) {
	for _, c := range []struct {
		client, auth string
		extra        []string
	}{
		{demoID, "client_secret_basic", nil},
		{postID, "client_secret_post", []string{"-oidc-token-auth", "client_secret_post"}},
	} {
		t.Run(c.auth, func(t *testing.T) {
			e := newRPEnv(t, c.client, c.extra...)
			a := e.do(e.browser, http.MethodGet, e.appURL+"/")
			if a.status != http.StatusOK || a.url.String() != e.appURL+"/" {
				t.Fatalf("ended at %s with %d:\n%s", a.url, a.status, a.body)
			}
			for _, want := range []string{
				`<p id="who">Signed in as alice</p>`, "Alice Liddell &lt;alice@EXAMPLE.TEST&gt;, realm EXAMPLE.TEST",
				"<li>Domain Users</li><li>Engineers</li>", `amr <span id="amr">kerberos</span> (Windows sign-on, Kerberos ticket)`,
				"at " + e.issuer + ":", "authenticated to the provider with " + c.auth, `action="/logout"`,
			} {
				if !strings.Contains(a.body, want) {
					t.Errorf("the page lacks %q:\n%s", want, a.body)
				}
			}
			// The session holds: no second trip to the provider.
			if a := e.do(e.noFollow, http.MethodGet, e.appURL+"/"); a.status != http.StatusOK || !strings.Contains(a.body, "Signed in as alice") {
				t.Errorf("the second visit: %d %s", a.status, a.body)
			}
			if n := e.auth.calls.Load(); n != 1 {
				t.Errorf("the provider signed the user in %d times", n)
			}

			a = e.do(e.noFollow, http.MethodPost, e.appURL+"/logout")
			end, _ := url.Parse(a.loc)
			if a.status != http.StatusSeeOther || end == nil || !strings.HasPrefix(a.loc, e.issuer+"/end_session?") {
				t.Fatalf("sign-out: %d to %q", a.status, a.loc)
			}
			q := end.Query()
			if strings.Count(q.Get("id_token_hint"), ".") != 2 || q.Get("client_id") != c.client || q.Get("post_logout_redirect_uri") != e.appURL+"/" {
				t.Errorf("end_session request %s", end)
			}
			// The provider takes the hint without asking and sends the
			// browser back, where it stays signed out rather than being
			// sent to sign in again.
			a = e.do(e.browser, http.MethodGet, a.loc)
			if a.status != http.StatusOK || a.url.Host != strings.TrimPrefix(e.appURL, "http://") ||
				!strings.Contains(a.body, `<p id="who">Signed out</p>`) || !strings.Contains(a.body, `href="/oidc/login"`) {
				t.Fatalf("after the provider's sign-out: %s %d:\n%s", a.url, a.status, a.body)
			}
			// Signing in again is a click away.
			if a := e.do(e.browser, http.MethodGet, e.appURL+"/oidc/login"); !strings.Contains(a.body, "Signed in as alice") {
				t.Errorf("signing in again: %d %s", a.status, a.body)
			}
		})
	}
}

// TestOIDCState: a callback whose state was tampered with is refused, and
// spends nothing (the genuine one still signs in); a genuine callback in
// another browser is refused.
func TestOIDCState(t *testing.T) {
	e := newRPEnv(t, demoID)
	cb := e.callback()
	state, _ := url.Parse(cb)
	a := e.do(e.noFollow, http.MethodGet, withParam(cb, "state", state.Query().Get("state")+"x"))
	if a.status != http.StatusBadRequest || !strings.Contains(a.body, "Sign-in failed") || !strings.Contains(a.body, "state") {
		t.Errorf("tampered state: %d %s", a.status, a.body)
	}
	if a := e.do(e.browser, http.MethodGet, cb); !strings.Contains(a.body, "Signed in as alice") {
		t.Errorf("the genuine callback after a tampered one: %d %s", a.status, a.body)
	}

	// The state of a sign-in this browser started, in another browser:
	// login CSRF, an attacker's sign-in planted on a victim.
	cb = e.callback()
	other := &http.Client{Transport: e.noFollow.Transport, CheckRedirect: e.noFollow.CheckRedirect}
	other.Jar, _ = cookiejar.New(nil)
	if a := e.do(other, http.MethodGet, cb); a.status != http.StatusBadRequest || strings.Contains(a.body, "Signed in") {
		t.Errorf("another browser's callback: %d %s", a.status, a.body)
	}
}

// TestOIDCProviderError: the provider's error (or what someone made to
// look like it) is shown as text only for a sign-in this browser
// started, and never as markup.
func TestOIDCProviderError(t *testing.T) {
	e := newRPEnv(t, demoID)
	a := e.do(e.noFollow, http.MethodGet, e.appURL+"/oidc/login")
	authz, _ := url.Parse(a.loc)
	state := authz.Query().Get("state")
	cb := e.appURL + "/oidc/callback?" + url.Values{
		"error": {"access_denied"}, "error_description": {`<script>alert(1)</script>"`}, "state": {state},
	}.Encode()
	a = e.do(e.noFollow, http.MethodGet, cb)
	if a.status != http.StatusForbidden || !strings.Contains(a.body, "access_denied: &lt;script&gt;alert(1)&lt;/script&gt;&#34;") ||
		strings.Contains(a.body, "<script>") {
		t.Errorf("provider error: %d %s", a.status, a.body)
	}
	// Without a state of this browser nothing of it is shown.
	a = e.do(e.noFollow, http.MethodGet, e.appURL+"/oidc/callback?error=access_denied&error_description=Call+0800+now&state=forged")
	if a.status != http.StatusBadRequest || strings.Contains(a.body, "0800") || strings.Contains(a.body, "access_denied") {
		t.Errorf("an error without this browser's state: %d %s", a.status, a.body)
	}

	// The provider's own refusal: alice is not in the group the client
	// requires.
	e = newRPEnv(t, adminsID)
	a = e.do(e.browser, http.MethodGet, e.appURL+"/")
	if a.status != http.StatusForbidden || !strings.Contains(a.body, "access_denied") || !strings.Contains(a.body, "group") {
		t.Errorf("a refused sign-in: %d %s", a.status, a.body)
	}
}

// TestOIDCCodeReplay: a callback visited twice fails the second time (its
// state is spent), and its code under a fresh state is refused by the
// provider (a code redeems once).
func TestOIDCCodeReplay(t *testing.T) {
	e := newRPEnv(t, demoID)
	cb := e.callback()
	if a := e.do(e.noFollow, http.MethodGet, cb); a.status != http.StatusSeeOther || a.loc != "/" {
		t.Fatalf("the first callback: %d to %q: %s", a.status, a.loc, a.body)
	}
	if a := e.do(e.noFollow, http.MethodGet, cb); a.status != http.StatusBadRequest || !strings.Contains(a.body, "Sign-in failed") {
		t.Errorf("the callback again: %d %s", a.status, a.body)
	}
	a := e.do(e.noFollow, http.MethodGet, e.appURL+"/oidc/login")
	authz, _ := url.Parse(a.loc)
	a = e.do(e.noFollow, http.MethodGet, withParam(cb, "state", authz.Query().Get("state")))
	if a.status != http.StatusBadGateway || !strings.Contains(a.body, "invalid_grant") {
		t.Errorf("the spent code under a fresh state: %d %s", a.status, a.body)
	}
}

// TestOIDCFlags: the OIDC mode needs neither -node nor -api-key-file, and
// refuses what cannot work.
func TestOIDCFlags(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(demoSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	// Nothing listens on port 1: discovery fails, which only warns.
	base := []string{"-oidc-issuer", "https://127.0.0.1:1", "-oidc-client-id", "demo", "-oidc-redirect-url", "https://app.example.test/oidc/callback"}
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"public client", base, true},
		{"secret", append(base, "-oidc-client-secret-file", secret), true},
		{"secret, post", append(base, "-oidc-client-secret-file", secret, "-oidc-token-auth", "client_secret_post"), true},
		{"no client id", []string{"-oidc-issuer", "https://127.0.0.1:1", "-oidc-redirect-url", "https://app.example.test/cb"}, false},
		{"no redirect URL", []string{"-oidc-issuer", "https://127.0.0.1:1", "-oidc-client-id", "demo"}, false},
		{"redirect URL at /", append(base[:4:4], "-oidc-redirect-url", "https://app.example.test/"), false},
		{"with -node", append(base, "-node", "https://auth1.example.test"), false},
		{"basic without a secret", append(base, "-oidc-token-auth", "client_secret_basic"), false},
		{"none with a secret", append(base, "-oidc-client-secret-file", secret, "-oidc-token-auth", "none"), false},
		{"unknown auth", append(base, "-oidc-client-secret-file", secret, "-oidc-token-auth", "private_key_jwt"), false},
		{"token mode without -node", []string{"-api-key-file", secret}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, _, err := newServer(c.args, log)
			if (err == nil) != c.ok {
				t.Fatalf("newServer: %v", err)
			}
			if err != nil {
				return
			}
			for path, status := range map[string]int{"/healthz": http.StatusOK, "/": http.StatusFound, "/oidc/login": http.StatusBadGateway} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
				if rec.Code != status {
					t.Errorf("%s: %d, want %d", path, rec.Code, status)
				}
			}
		})
	}
}

// TestBoundedMap: entries expire, and past the bound the oldest gives
// way.
func TestBoundedMap(t *testing.T) {
	now := time.Unix(1e9, 0)
	m := newBoundedMap[int](3, time.Minute, func() time.Time { return now })
	for i, k := range []string{"a", "b", "c"} {
		if m.put(k, i) {
			t.Fatalf("put %s dropped an entry", k)
		}
	}
	if !m.put("d", 3) || m.len() != 3 {
		t.Fatalf("a fourth entry dropped none, or there are %d", m.len())
	}
	if _, ok := m.get("a"); ok {
		t.Error("the oldest entry stayed")
	}
	if v, ok := m.take("b"); !ok || v != 1 {
		t.Errorf("take b: %v %v", v, ok)
	}
	if _, ok := m.take("b"); ok {
		t.Error("b was taken twice")
	}
	now = now.Add(30 * time.Second)
	m.put("e", 4)
	now = now.Add(30 * time.Second) // c and d expire; e has 30 s left
	if _, ok := m.get("c"); ok || m.len() != 1 {
		t.Errorf("after expiry: c is there, or %d entries", m.len())
	}
	if v, ok := m.get("e"); !ok || v != 4 {
		t.Errorf("e: %v %v", v, ok)
	}
}

// TestClip: what others wrote stays one short line of whole characters.
func TestClip(t *testing.T) {
	for in, want := range map[string]string{
		"abc": "abc", "a\nb\r\x00c": "abc", "ééé": "éé…", "aééé": "aé…", "abcdef": "abcd…",
	} {
		if got := clip(in, 4); got != want {
			t.Errorf("clip(%q) = %q, want %q", in, got, want)
		}
	}
}
