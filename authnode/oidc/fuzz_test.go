package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/iwalb/iwalb/authnode/store"
	"github.com/iwalb/iwalb/internal/testkit"

	"github.com/iwalb/iwalb/internal/secret"
)

// The parameter parser's work budget: it decodes its input into a map of
// strings, a few bytes allocated per byte read, and it refuses more than
// maxParamBytes before decoding anything.
var paramAlloc = testkit.AllocBudget{PerByte: 24, Fixed: 16 << 10}

func FuzzParseParams(f *testing.F) {
	f.Add("client_id=app&redirect_uri=https%3A%2F%2Fapp.example.test%2Fcallback&response_type=code&scope=openid+profile&state=x")
	f.Add("grant_type=authorization_code&code=abc&code_verifier=" + strings.Repeat("a", 43))
	f.Add("a=1&a=2")
	f.Add("a=%zz;b")
	f.Add("request=x&state=")
	f.Add(strings.Repeat("x=1&", maxParamCount))
	f.Fuzz(func(t *testing.T, raw string) {
		for _, known := range []map[string]int{authorizeParams, tokenParams, logoutParams} {
			var q map[string]string
			var err error
			paramAlloc.Within(t, "parseParams", len(raw), func() { q, err = parseParams(raw, known) })
			if err != nil {
				if len(err.Error()) > 200 {
					t.Fatalf("an error of %d bytes", len(err.Error()))
				}
				continue
			}
			if len(raw) > maxParamBytes {
				t.Fatalf("accepted %d bytes", len(raw))
			}
			size := 0
			for k, v := range q {
				bound, ok := known[k]
				if !ok || bound == 0 || v == "" || len(v) > bound {
					t.Fatalf("parameter %q of %d bytes (bound %d, known %v)", k, len(v), bound, ok)
				}
				size += len(k) + len(v)
			}
			if size > len(raw) {
				t.Fatalf("%d bytes of parameters from %d", size, len(raw))
			}
			// Nothing given twice was accepted.
			vals, _ := url.ParseQuery(raw)
			for k, vs := range vals {
				if len(vs) > 1 {
					t.Fatalf("%q was given %d times and accepted", k, len(vs))
				}
			}
		}
	})
}

// fuzzProvider is a provider on a fresh store, signing with a fixed key.
func fuzzProvider(t testing.TB, key SigningKey) (*Provider, *store.Memory) {
	st := store.NewMemory(store.Options{})
	p, err := New(Config{Issuer: "https://sso.example.test", Clients: testClients(), SigningKeys: []SigningKey{key}},
		Options{Store: st, Authenticator: &fakeAuth{clock: &fakeClock{}, user: alice}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return p, st
}

func fuzzKey(f *testing.F) SigningKey {
	k, err := newSigningKey(must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)))
	if err != nil {
		f.Fatal(err)
	}
	return k
}

// FuzzAuthorize sends any query to /authorize as a signed-in browser: it
// redirects only to an address the named client registered, exactly (with
// its own parameters after it), and otherwise answers with a page.
func FuzzAuthorize(f *testing.F) {
	f.Add("client_id=app&redirect_uri=https%3A%2F%2Fapp.example.test%2Fcallback&response_type=code&scope=openid&state=x")
	f.Add("client_id=other&redirect_uri=https%3A%2F%2Fother.example.test%2Fcb%3Ftenant%3D1&response_type=code&scope=openid&code_challenge=" +
		oauth2.S256ChallengeFromVerifier(strings.Repeat("v", 43)) + "&code_challenge_method=S256")
	f.Add("client_id=spa&redirect_uri=http%3A%2F%2F127.0.0.1%3A7777%2Fcb&response_type=code&scope=openid")
	f.Add("client_id=app&redirect_uri=https%3A%2F%2Fapp.example.test%2Fcallback%2F&response_type=code")
	p, _ := fuzzProvider(f, fuzzKey(f))
	h := p.Authorize()
	registered := map[string][]string{}
	for _, c := range testClients() {
		registered[c.ID] = c.RedirectURIs
	}
	f.Fuzz(func(t *testing.T, raw string) {
		req := httptest.NewRequest(http.MethodGet, "https://sso.example.test/authorize", nil)
		req.URL.RawQuery = raw
		req.Header.Set("Authorization", "Negotiate ZmFrZQ==")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		loc := rec.Header().Get("Location")
		switch rec.Code {
		case http.StatusFound:
		case http.StatusBadRequest:
			if loc != "" {
				t.Fatalf("a 400 with Location %q", loc)
			}
			return
		default:
			t.Fatalf("status %d", rec.Code)
		}
		if len(raw) > maxParamBytes {
			t.Fatalf("redirected for %d bytes of query", len(raw))
		}
		q, _ := url.ParseQuery(raw)
		ok := slices.ContainsFunc(registered[q.Get("client_id")], func(r string) bool {
			return r == q.Get("redirect_uri") && (strings.HasPrefix(loc, r+"?") || strings.HasPrefix(loc, r+"&"))
		})
		if !ok {
			t.Fatalf("redirected to %q for client %q, redirect_uri %q", loc, q.Get("client_id"), q.Get("redirect_uri"))
		}
		u, err := url.Parse(loc)
		if err != nil || u.Query().Get("iss") != p.cfg.Issuer || u.Query().Get("state") != q.Get("state") {
			t.Fatalf("redirect %q lost iss or state", loc)
		}
	})
}

// FuzzToken sends any body to /token as the client app, with one valid
// code in the store: only a body with that code, its verifier and its
// redirect URI gets tokens.
func FuzzToken(f *testing.F) {
	verifier := strings.Repeat("v", 43)
	code := strings.Repeat("c", secret.Len)
	good := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {appRedirect}}
	f.Add(good.Encode())
	f.Add(good.Encode() + "&code=x")
	f.Add("grant_type=authorization_code&code=" + code)
	f.Add("grant_type=authorization_code&code=" + code + "&code_verifier=" + verifier + "&redirect_uri=https%3A%2F%2Fapp.example.test%2Fcallbac")
	f.Add("grant_type=client_credentials")
	key := fuzzKey(f)
	rec := must(json.Marshal(codeRecord{
		ClientID: appID, RedirectURI: appRedirect, Challenge: oauth2.S256ChallengeFromVerifier(verifier),
		Scopes: []string{ScopeOpenID}, Claims: userClaims{Sub: alice.SID}, ExpiresAt: time.Now().Add(time.Hour),
	}))
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(appID+":"+appSecret))
	f.Fuzz(func(t *testing.T, body string) {
		p, st := fuzzProvider(t, key)
		if err := st.Put(context.Background(), codeSpace+secret.Hash(code), rec, time.Hour); err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "https://sso.example.test/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", basic)
		w := httptest.NewRecorder()
		p.Token().ServeHTTP(w, req)
		if w.Header().Get("Cache-Control") != "no-store" {
			t.Fatal("an answer without Cache-Control: no-store")
		}
		var ans map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil {
			t.Fatalf("status %d, not JSON: %q", w.Code, w.Body.String())
		}
		if w.Code != http.StatusOK {
			if w.Code != http.StatusBadRequest && w.Code != http.StatusUnauthorized || ans["error"] == "" {
				t.Fatalf("status %d: %v", w.Code, ans)
			}
			return
		}
		q, err := url.ParseQuery(body)
		if err != nil || len(body) > maxParamBytes || q.Get("code") != code || q.Get("code_verifier") != verifier ||
			q.Get("redirect_uri") != appRedirect || q.Get("grant_type") != "authorization_code" {
			t.Fatalf("tokens for %q", body)
		}
	})
}
