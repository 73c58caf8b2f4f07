package authnode

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	krbconfig "github.com/jcmturner/gokrb5/v8/config"

	"github.com/iwalb/iwalb/authnode/negotiate"
)

func TestAccountName(t *testing.T) {
	for typed, want := range map[string][2]string{ // name, upn
		"alice":                      {"alice", ""},
		"  alice ":                   {"alice", ""},
		`EXAMPLE\alice`:              {"alice", ""},
		"alice@EXAMPLE.TEST":         {"alice", ""},
		"alice@example.test":         {"alice", ""},
		"alice.l@corp.example":       {"", "alice.l@corp.example"},
		`EXAMPLE\alice@corp.example`: {"", "alice@corp.example"},
		"":                           {"", ""},
		`EXAMPLE\`:                   {"", ""},
		"al\x00ice":                  {"", ""},
		"HTTP/auth1.example.test":    {"", ""},
		strings.Repeat("a", 400):     {"", ""},
		"alice@example.test@x.y.z":   {"", ""},
		"@example.test":              {"", ""},
		"alice@":                     {"", ""},
	} {
		name, upn, ok := accountName(typed, "EXAMPLE.TEST")
		if name != want[0] || upn != want[1] || ok != (want != [2]string{}) {
			t.Errorf("accountName(%q) = %q, %q, %v; want %q", typed, name, upn, ok, want)
		}
	}
}

func TestFailureCounts(t *testing.T) {
	f := newFailureCounts()
	now := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	for range 3 {
		if blocked, _ := f.blocked("user alice", 3, now); blocked {
			t.Fatal("blocked before the limit")
		}
		f.fail("user alice", 15*time.Minute, now)
	}
	if blocked, wait := f.blocked("user alice", 3, now.Add(time.Minute)); !blocked || wait != 14*time.Minute {
		t.Errorf("after 3 failures: blocked %v for %s; want true for 14m", blocked, wait)
	}
	if blocked, _ := f.blocked("user alice", 3, now.Add(15*time.Minute)); blocked {
		t.Error("still blocked after the window")
	}
	f.forget("user alice")
	if blocked, _ := f.blocked("user alice", 1, now); blocked {
		t.Error("blocked after forget")
	}

	// Full of live windows: a new key cannot be counted (the caller
	// refuses); once the windows end, their room is taken back.
	for i := range maxFailureKeys {
		f.fail("client "+strconv.Itoa(i), time.Minute, now)
	}
	if f.fail("user new", time.Minute, now) {
		t.Error("a full table counted a new key")
	}
	if !f.fail("user new", time.Minute, now.Add(2*time.Minute)) || len(f.keys) != 1 {
		t.Errorf("after the windows ended: %d keys", len(f.keys))
	}
}

func TestClientKey(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:5555":                   "client 192.0.2.7",
		"[::ffff:192.0.2.7]:5555":          "client 192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443":       "client 2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:4:5:6]:443":    "client 2001:db8:1:2::/64",
		"[2001:db8:1:3:3:4:5:6]:443":       "client 2001:db8:1:3::/64",
		"not an address":                   "client ",
		"[2001:db8::1%eth0]:443":           "client 2001:db8::/64",
		"198.51.100.1:1":                   "client 198.51.100.1",
		"[fe80::1]:1":                      "client fe80::/64",
		"[::1]:80":                         "client ::/64",
		"[2001:db8:ffff:ffff::1]:1":        "client 2001:db8:ffff:ffff::/64",
		"[2001:db8:ffff:ffff:1:2:3:4]:123": "client 2001:db8:ffff:ffff::/64",
	} {
		if got := clientKey(addr); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", addr, got, want)
		}
	}
}

// formNode is a test node with the form on, whose KDC refuses every
// connection.
func formNode(t *testing.T) *Node {
	n := newTestNode(t, fakeValidator{}, fakeDirectory{}, nil)
	conf, err := krbconfig.NewFromString("[libdefaults]\n default_realm = EXAMPLE.TEST\n udp_preference_limit = 1\n[realms]\n EXAMPLE.TEST = {\n  kdc = 127.0.0.1:1\n }\n")
	if err != nil {
		t.Fatal(err)
	}
	n.edit(func(s *settings) {
		s.cfg.Form = FormConfig{Enabled: true, UserFailures: 2, ClientFailures: 3, Window: time.Minute}
		s.krb5 = conf
	})
	return n
}

// formPost posts the form to n with the given anti-forgery cookie and
// field, and an Origin.
func formPost(n *Node, cookie, field, origin, user, password string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "https://auth1.example.test/login",
		strings.NewReader(url.Values{"csrf": {field}, "username": {user}, "password": {password}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	if cookie != "" {
		r.AddCookie(&http.Cookie{Name: csrfCookie, Value: cookie})
	}
	w := httptest.NewRecorder()
	n.Handler().ServeHTTP(w, r)
	return w
}

// TestFormPages: with the form on, a request without Negotiate gets the
// form in its 401, with the challenge; NTLM gets the form without one (200,
// as a 401 must carry a challenge); the
// pages set a strict anti-forgery cookie and a CSP that allows only their
// own style. With the form off, /login does not exist and the 401 is the
// plain page.
func TestFormPages(t *testing.T) {
	n := formNode(t)
	w := ssoRequest(n, "")
	if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") != "Negotiate" || !strings.Contains(w.Body.String(), `action="/login"`) {
		t.Fatalf("no Negotiate: %d %q\n%s", w.Code, w.Header().Get("WWW-Authenticate"), w.Body.String())
	}
	c := w.Result().Cookies()
	if len(c) != 1 || c[0].Name != csrfCookie || !c[0].Secure || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode || c[0].Path != "/" {
		t.Errorf("anti-forgery cookie: %+v", c)
	}
	sum := sha256.Sum256([]byte(formStyle))
	csp := w.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") ||
		!strings.Contains(csp, "form-action 'self' https://app.example.test;") ||
		!strings.Contains(w.Body.String(), "<style>"+formStyle+"</style>") {
		t.Errorf("CSP %q does not allow exactly the page's style", csp)
	}

	ntlm := "Negotiate " + base64.StdEncoding.EncodeToString(append([]byte("NTLMSSP\x00"), 1, 0, 0, 0))
	n.setValidator(fakeValidator{err: negotiate.ErrNTLM})
	w = ssoRequest(n, ntlm)
	if w.Code != http.StatusOK || w.Header().Get("WWW-Authenticate") != "" || !strings.Contains(w.Body.String(), `action="/login"`) {
		t.Errorf("NTLM: %d WWW-Authenticate %q; want the form, 200 and no challenge (a 401 must carry one)", w.Code, w.Header().Get("WWW-Authenticate"))
	}

	n.edit(func(s *settings) { s.cfg.Form.Enabled = false })
	r := httptest.NewRequest("GET", "https://auth1.example.test/login", nil)
	w = httptest.NewRecorder()
	n.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusNotFound {
		t.Errorf("GET /login with the form off: %d", w.Code)
	}
	if w := ssoRequest(n, ""); strings.Contains(w.Body.String(), "<form") {
		t.Error("the form off, the 401 still shows it")
	}
}

// TestFormRefusals: a post without the cookie, with another token, or
// from another origin is refused before any KDC exchange; so are a missing
// password and an account past its failures; a KDC that cannot be reached
// is a 503, not a wrong password.
func TestFormRefusals(t *testing.T) {
	n := formNode(t)
	const tok = "0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		name                  string
		cookie, field, origin string
		user, password        string
		status                int
		inPage                string
	}{
		{"no cookie", "", tok, "", "alice", "pw", http.StatusForbidden, formExpired},
		{"token differs", tok, tok + "x", "", "alice", "pw", http.StatusForbidden, formExpired},
		{"another origin", tok, tok, "https://evil.example", "alice", "pw", http.StatusForbidden, formExpired},
		{"no password", tok, tok, "https://auth1.example.test", "alice", "", http.StatusBadRequest, formMissing},
		{"a name with a slash", tok, tok, "", "HTTP/x", "pw", http.StatusBadRequest, formMissing},
		{"KDC unreachable", tok, tok, "https://auth1.example.test", "alice", "pw", http.StatusServiceUnavailable, formUnavailable},
	} {
		w := formPost(n, c.cookie, c.field, c.origin, c.user, c.password)
		if w.Code != c.status || !strings.Contains(w.Body.String(), c.inPage) {
			t.Errorf("%s: %d, want %d with %q\n%s", c.name, w.Code, c.status, c.inPage, w.Body.String())
		}
	}

	now := time.Now()
	n.formFailures.fail("user alice", time.Minute, now)
	n.formFailures.fail("user alice", time.Minute, now)
	w := formPost(n, tok, tok, "", "ALICE", "pw")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Errorf("an account past its failures: %d Retry-After %q; want 429 without a KDC exchange (which would be 503)", w.Code, w.Header().Get("Retry-After"))
	}
	for range 3 {
		n.formFailures.fail("client 192.0.2.1", time.Minute, now)
	}
	if w := formPost(n, tok, tok, "", "carol", "pw"); w.Code != http.StatusTooManyRequests {
		t.Errorf("a client address past its failures: %d, want 429", w.Code)
	}
}
