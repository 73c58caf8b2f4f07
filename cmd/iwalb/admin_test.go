package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/lb"
)

func TestAdminDrainsAndShowsPools(t *testing.T) {
	pool, err := lb.NewPool(lb.Config{Name: "authnodes", Backends: []lb.BackendConfig{
		{Name: "auth1", Addr: "127.0.0.1:8443", FQDN: "auth1.example.test"},
		{Name: "auth2", Addr: "127.0.0.1:8445", FQDN: "auth2.example.test"},
	}}, lb.Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	set, err := lb.NewSet(pool)
	if err != nil {
		t.Fatal(err)
	}
	reloads := 0
	h := adminHandler(func() *lb.Set { return set }, func() (reloadResult, error) {
		reloads++
		return reloadResult{Generation: 2, Hash: "0123456789ab"}, nil
	}, prometheus.NewRegistry(), discardLogger())
	do := func(method, path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		r.Host = "127.0.0.1:9110"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	healthy := func() int {
		w := do("GET", "/pools")
		var pools []adminPool
		if err := json.Unmarshal(w.Body.Bytes(), &pools); err != nil || w.Code != 200 || len(pools) != 1 || len(pools[0].Backends) != 2 {
			t.Fatalf("GET /pools: %d %s", w.Code, w.Body)
		}
		return pools[0].Healthy
	}
	if n := healthy(); n != 2 {
		t.Fatalf("%d healthy before draining, want 2", n)
	}

	w := do("POST", "/pools/authnodes/backends/auth2/drain")
	var b adminBackend
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil || w.Code != 200 || !b.Drained || b.Name != "auth2" {
		t.Fatalf("drain: %d %s", w.Code, w.Body)
	}
	if n := healthy(); n != 1 {
		t.Fatalf("%d healthy after draining auth2, want 1", n)
	}
	for i := range 50 {
		got, err := pool.Choose(netip.AddrFrom4([4]byte{10, 0, byte(i), 1}), nil)
		if err != nil || got.Name != "auth1" {
			t.Fatalf("pick %d went to %v (%v) while auth2 is drained", i, got, err)
		}
	}
	if w := do("POST", "/pools/authnodes/backends/auth2/undrain"); w.Code != 200 || healthy() != 2 {
		t.Fatalf("undrain: %d %s", w.Code, w.Body)
	}

	for path, want := range map[string]int{
		"/pools/nope/backends/auth1/drain":      http.StatusNotFound,
		"/pools/authnodes/backends/nope/drain":  http.StatusNotFound,
		"/pools/authnodes/backends/auth1/reset": http.StatusNotFound,
	} {
		if w := do("POST", path); w.Code != want {
			t.Errorf("POST %s: %d, want %d", path, w.Code, want)
		}
	}
	if w := do("GET", "/pools/authnodes/backends/auth1/drain"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET on drain: %d, want 405", w.Code)
	}

	// What a web page in a browser on the same host could send.
	rebound := httptest.NewRequest("GET", "/pools", nil)
	rebound.Host = "attacker.example:9110"
	w = httptest.NewRecorder()
	h.ServeHTTP(w, rebound)
	if w.Code != http.StatusMisdirectedRequest {
		t.Errorf("GET /pools for a rebound host name: %d, want 421", w.Code)
	}
	csrf := httptest.NewRequest("POST", "/pools/authnodes/backends/auth1/drain", nil)
	csrf.Host = "127.0.0.1:9110"
	csrf.Header.Set("Sec-Fetch-Site", "cross-site")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, csrf)
	if w.Code != http.StatusForbidden || pool.Backend("auth1").Drained() {
		t.Errorf("cross-site POST: %d, drained %v; want 403 and no change", w.Code, pool.Backend("auth1").Drained())
	}
}
