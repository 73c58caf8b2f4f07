package authnode

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode/directory"
)

// cookieRequest is GET /sso with the given cookie and Authorization.
func cookieRequest(n *Node, cookie *http.Cookie, authz string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "https://auth1.example.test/sso", nil)
	if cookie != nil {
		r.AddCookie(cookie)
	}
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	w := httptest.NewRecorder()
	n.Handler().ServeHTTP(w, r)
	return w
}

func ssoCookieOf(t *testing.T, w *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if c.Name == DefaultCookieName {
			return c
		}
	}
	return nil
}

// TestSSOSession: a Kerberos login sets the node's cookie (HttpOnly,
// Secure, SameSite=Lax, host-only); with it, the next visit gets a fresh
// token without any Negotiate, with the identity of the sign-in; the
// session ends when idle, at its lifetime, at GET /logoff, and when the
// directory no longer lets the account sign in.
func TestSSOSession(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, nil)
	n.now = clock
	n.edit(func(s *settings) {
		s.cfg.SSOSession = SSOSessionConfig{Enabled: true, Lifetime: 8 * time.Hour, Idle: time.Hour}
	})

	w := ssoRequest(n, "Negotiate YQ==")
	c := ssoCookieOf(t, w)
	if w.Code != http.StatusFound || c == nil || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Domain != "" || c.Path != "/" {
		t.Fatalf("Kerberos login: %d, cookie %+v", w.Code, c)
	}
	reuse := func(what string, want int) *httptest.ResponseRecorder {
		t.Helper()
		w := cookieRequest(n, &http.Cookie{Name: c.Name, Value: c.Value}, "")
		if w.Code != want {
			t.Fatalf("%s: %d, want %d\n%s", what, w.Code, want, w.Body)
		}
		return w
	}
	w = reuse("the next visit, no Negotiate", http.StatusFound)
	tok := tokenFrom(t, w)
	if rw := redeem(n, testAPIKey, tok); rw.Code != http.StatusOK || !strings.Contains(rw.Body.String(), `"sAMAccountName":"alice"`) {
		t.Fatalf("redeem the cookie's token: %d %s", rw.Code, rw.Body)
	}

	advance(50 * time.Minute)
	reuse("within the idle timeout", http.StatusFound)
	// The store's own clock ends an idle session; here the lifetime,
	// which the node checks, is tested with the node's clock.
	advance(8 * time.Hour)
	w = reuse("past the lifetime", http.StatusUnauthorized)
	if got := ssoCookieOf(t, w); got == nil || got.MaxAge >= 0 {
		t.Errorf("past the lifetime the cookie is not cleared: %+v", got)
	}
	reuse("the same cookie again", http.StatusUnauthorized)

	// A new sign-in, then GET /logoff.
	w = ssoRequest(n, "Negotiate YQ==")
	c = ssoCookieOf(t, w)
	r := httptest.NewRequest("GET", "https://auth1.example.test/logoff", nil)
	r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	lw := httptest.NewRecorder()
	n.Handler().ServeHTTP(lw, r)
	if got := ssoCookieOf(t, lw); lw.Code != http.StatusOK || got == nil || got.MaxAge >= 0 || !strings.Contains(lw.Body.String(), "You are signed out") {
		t.Fatalf("logoff: %d cookie %+v\n%s", lw.Code, got, lw.Body)
	}
	reuse("after logoff", http.StatusUnauthorized)

	// A disabled account's session ends at its next visit.
	w = ssoRequest(n, "Negotiate YQ==")
	c = ssoCookieOf(t, w)
	n.setDirectory(fakeDirectory{err: directory.ErrDisabled})
	reuse("account disabled since", http.StatusForbidden)
	n.setDirectory(fakeDirectory{user: aliceUser})
	reuse("the ended session", http.StatusUnauthorized)
}
