package oidc

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestLogout covers RP-initiated logout: with a valid id_token_hint the
// session ends and the browser goes back to a registered address with
// state; without one the user confirms, from this origin only; an
// address that is not registered, exactly, for the client is refused
// without a redirect and without ending anything.
func TestLogout(t *testing.T) {
	e := newEnv(t, 1, nil)
	r := e.rp(appID, appSecret, appRedirect)
	tok, _, err := r.login(newFlow())
	if err != nil {
		t.Fatal(err)
	}
	hint := tok.Extra("id_token").(string)
	type answer struct {
		status   int
		location string
		body     string
		cookie   bool
	}
	do := func(method string, q url.Values, hdr map[string]string) answer {
		t.Helper()
		var req *http.Request
		if method == http.MethodGet {
			req, _ = http.NewRequest(method, e.issuer+PathLogout+"?"+q.Encode(), nil)
		} else {
			req, _ = http.NewRequest(method, e.issuer+PathLogout, strings.NewReader(q.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := e.browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return answer{resp.StatusCode, resp.Header.Get("Location"), string(b), len(resp.Cookies()) > 0}
	}
	ended := func() int64 { return e.sessions.ended.Load() }

	a := do(http.MethodGet, url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {appLogout}, "state": {"st"}}, nil)
	if a.status != http.StatusFound || a.location != appLogout+"?state=st" || ended() != 1 || !a.cookie {
		t.Errorf("hint and address: %+v, ended %d", a, ended())
	}
	a = do(http.MethodGet, url.Values{"id_token_hint": {hint}}, nil)
	if a.status != http.StatusOK || !strings.Contains(a.body, "signed out") || ended() != 2 {
		t.Errorf("hint only: %+v", a)
	}

	// Refused: nothing ends, nothing redirects.
	for name, q := range map[string]url.Values{
		"another client's address":   {"id_token_hint": {hint}, "post_logout_redirect_uri": {appRedirect}},
		"an address one char longer": {"id_token_hint": {hint}, "post_logout_redirect_uri": {appLogout + "x"}},
		"an address with a query":    {"client_id": {appID}, "post_logout_redirect_uri": {appLogout + "?next=https://evil.example/"}},
		"an address without client":  {"post_logout_redirect_uri": {appLogout}},
		"a client not the hint's":    {"id_token_hint": {hint}, "client_id": {otherID}},
		"an unknown client":          {"client_id": {"nobody"}},
		"a hint that is not a token": {"id_token_hint": {"abc.def.ghi"}},
		"a repeated parameter":       {"client_id": {appID, appID}},
	} {
		before := ended()
		a := do(http.MethodGet, q, nil)
		if a.status != http.StatusBadRequest || a.location != "" || ended() != before {
			t.Errorf("%s: %+v", name, a)
		}
	}

	// Without a hint, the user is asked; the form posts back here.
	q := url.Values{"client_id": {appID}, "post_logout_redirect_uri": {appLogout}, "state": {"s2"}}
	a = do(http.MethodGet, q, nil)
	if a.status != http.StatusOK || !strings.Contains(a.body, `name="confirm" value="yes"`) || ended() != 2 {
		t.Fatalf("without a hint: %+v", a)
	}
	q.Set("confirm", "yes")
	for name, hdr := range map[string]map[string]string{
		"cross-site":     {"Sec-Fetch-Site": "cross-site"},
		"another origin": {"Origin": "https://evil.example"},
		"no origin":      nil,
	} {
		if a := do(http.MethodPost, q, hdr); a.status != http.StatusForbidden || ended() != 2 {
			t.Errorf("confirmation from %s: %+v", name, a)
		}
	}
	// A GET cannot confirm.
	if a := do(http.MethodGet, q, nil); a.status != http.StatusOK || ended() != 2 {
		t.Errorf("confirmation by GET: %+v", a)
	}
	a = do(http.MethodPost, q, map[string]string{"Sec-Fetch-Site": "same-origin"})
	if a.status != http.StatusSeeOther || a.location != appLogout+"?state=s2" || ended() != 3 {
		t.Errorf("confirmed: %+v", a)
	}
	host := strings.TrimPrefix(e.srv.URL, "https://")
	if a := do(http.MethodPost, q, map[string]string{"Origin": "https://" + host}); a.status != http.StatusSeeOther || ended() != 4 {
		t.Errorf("confirmed with Origin: %+v", a)
	}

	// A session that cannot be ended is said so, and nobody is sent back
	// as if signed out.
	e.sessions.fail.Store(true)
	if a := do(http.MethodGet, url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {appLogout}}, nil); a.status != http.StatusServiceUnavailable || a.location != "" {
		t.Errorf("session store down: %+v", a)
	}
}
