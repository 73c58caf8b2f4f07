package authnode

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/iwalb/iwalb/authnode/oidc"
)

// TestApplyKeepsOIDCKeysAndCodes: the provider's generated keys and the
// codes it issued are the node's, not its settings': a reload that adds a
// client publishes the same keys and redeems a code issued before it; a
// reload that turns the provider off removes its endpoints.
func TestApplyKeepsOIDCKeysAndCodes(t *testing.T) {
	r := newReloadNode(t, withOIDC)
	login := ticketsFor(t, offlineKeytab(t), 2)
	get := func(target, authz string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", target, nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		w := httptest.NewRecorder()
		r.Handler().ServeHTTP(w, req)
		return w
	}
	jwks := func() string { return get(testIssuer+oidc.PathJWKS, "").Body.String() }
	before := jwks()
	if !strings.Contains(before, `"kid"`) {
		t.Fatalf("JWKS: %s", before)
	}
	verifier := "a-pkce-verifier-of-the-test-0123456789abcdefghij"
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"client_id": {"app"}, "redirect_uri": {testRPRedirect}, "response_type": {"code"}, "scope": {"openid"},
		"state": {"s1"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	w := get(testIssuer+oidc.PathAuthorize+"?"+q.Encode(), login())
	loc, _ := url.Parse(w.Header().Get("Location"))
	code := loc.Query().Get("code")
	if w.Code != http.StatusFound || code == "" {
		t.Fatalf("/authorize: %d %s %s", w.Code, w.Header().Get("Location"), w.Body)
	}

	next := r.cfg
	o := *next.OIDC
	o.Clients = append(o.Clients, oidc.Client{ID: "added", Secret: testRPSecret, RedirectURIs: []string{testRPRedirect}})
	next.OIDC = &o
	r.reload(t, next)
	if after := jwks(); after != before {
		t.Errorf("the keys changed on reload:\n%s\n%s", before, after)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRPRedirect}, "code_verifier": {verifier}}
	req := httptest.NewRequest("POST", testIssuer+oidc.PathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("app", testRPSecret)
	tw := httptest.NewRecorder()
	r.Handler().ServeHTTP(tw, req)
	var tok struct {
		IDToken string `json:"id_token"`
	}
	if tw.Code != http.StatusOK || json.Unmarshal(tw.Body.Bytes(), &tok) != nil || tok.IDToken == "" {
		t.Fatalf("the code issued before the reload, redeemed after it: %d %s", tw.Code, tw.Body)
	}
	for _, c := range []struct {
		endpoint, code string
		want           float64
	}{{"jwks", "200", 2}, {"authorize", "302", 1}, {"token", "200", 1}} {
		if got := testutil.ToFloat64(r.metrics.oidcRequests.WithLabelValues(c.endpoint, c.code)); got != c.want {
			t.Errorf("iwalb_authnode_oidc_requests_total{endpoint=%q,code=%q} = %v, want %v", c.endpoint, c.code, got, c.want)
		}
	}
	q.Set("client_id", "added")
	if w := get(testIssuer+oidc.PathAuthorize+"?"+q.Encode(), login()); w.Code != http.StatusFound || !strings.Contains(w.Header().Get("Location"), "code=") {
		t.Errorf("/authorize for the client the reload added: %d %s", w.Code, w.Header().Get("Location"))
	}

	off := r.cfg
	off.OIDC = nil
	r.reload(t, off)
	if w := get(testIssuer+oidc.PathDiscovery, ""); w.Code != http.StatusNotFound {
		t.Errorf("discovery after the provider was turned off: %d, want 404", w.Code)
	}
}
