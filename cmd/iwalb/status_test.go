package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/browser"
	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/lb"
)

// statusFixture is an admin handler over a pool with one node up and one
// down (both health-checked for real), the configuration metrics at
// generation 3, and auth-node login counters the test moves.
type statusFixture struct {
	h      http.Handler
	logins *prometheus.CounterVec
	page   *statusPage
}

func newStatusFixture(t *testing.T) *statusFixture {
	t.Helper()
	up := testkit.StartCloser(t)
	down := testkit.StartCloser(t)
	down.Stop() // its port refuses connections
	reg := prometheus.NewRegistry()
	pools := lb.NewRegistry()
	set, err := pools.NewSet([]lb.Config{{
		Name: "authnodes",
		Backends: []lb.BackendConfig{
			{Name: "auth1", Addr: up.Addr(), FQDN: "auth1.example.test"},
			{Name: "auth2", Addr: down.Addr(), FQDN: "auth2.example.test"},
		},
		Health: lb.HealthCheck{Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 1, Fall: 1},
	}}, lb.Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	pools.Activate(set)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { set.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for set.Pool("authnodes").Backend("auth2").State() != lb.StateDown || set.Pool("authnodes").Backend("auth1").State() != lb.StateUp {
		if time.Now().After(deadline) {
			t.Fatal("health checks did not mark auth1 up and auth2 down within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	newConfigMetrics(reg).loaded(3, "0123456789ab", nil)
	logins := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "iwalb_authnode_logins_total", Help: "test"}, []string{"outcome", "reason"})
	reg.MustRegister(logins)
	logins.WithLabelValues("success", "ok").Add(40)
	logins.WithLabelValues("failure", "bad_token").Add(3)
	logins.WithLabelValues("failure", "ldap_unavailable") // zero: not shown
	f := &statusFixture{logins: logins}
	f.page = newStatusPage(pools.Active, reg)
	f.h = adminHandler(pools.Active, func() (reloadResult, error) { return reloadResult{}, nil }, reg, discardLogger())
	return f
}

func (f *statusFixture) get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	r.Host = "127.0.0.1:9110"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func (f *statusFixture) view(t *testing.T, h http.Handler) statusView {
	t.Helper()
	w := f.get(t, h, "/status.json")
	var v statusView
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil || w.Code != 200 {
		t.Fatalf("GET /status.json: %d %s (%v)", w.Code, w.Body, err)
	}
	return v
}

// TestStatusJSON: what the page shows, from the pools and the metrics:
// the generation, each node's health with the reason it failed, and login
// failures by reason, recent ones counted within the window.
func TestStatusJSON(t *testing.T) {
	f := newStatusFixture(t)
	clock := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	f.page.now = func() time.Time { return clock }
	mux := http.NewServeMux()
	f.page.register(mux)

	v := f.view(t, mux)
	if v.Generation != 3 || v.ConfigHash != "0123456789ab" {
		t.Errorf("generation %d hash %q, want 3 and 0123456789ab", v.Generation, v.ConfigHash)
	}
	if len(v.Pools) != 1 || v.Pools[0].Healthy != 1 || len(v.Pools[0].Backends) != 2 {
		t.Fatalf("pools = %+v, want authnodes with 1 of 2 healthy", v.Pools)
	}
	for _, b := range v.Pools[0].Backends {
		switch b.Name {
		case "auth1":
			if b.State != "up" || b.LastCheck == nil {
				t.Errorf("auth1 = %+v, want up and checked", b)
			}
		case "auth2":
			if b.State != "down" || !strings.Contains(b.LastError, "refused") {
				t.Errorf("auth2 = %+v, want down with the refused connection as its last error", b)
			}
		}
	}
	if len(v.Failures) != 1 || v.Failures[0] != (statusFailure{Reason: "bad_token", Total: 3, Recent: 0}) {
		t.Errorf("failures on first view = %+v, want bad_token 3 in all and none recent (no earlier sample)", v.Failures)
	}

	clock = clock.Add(time.Minute)
	f.logins.WithLabelValues("failure", "bad_token").Add(2)
	f.logins.WithLabelValues("failure", "user_disabled").Inc()
	v = f.view(t, mux)
	want := []statusFailure{{"bad_token", 5, 2}, {"user_disabled", 1, 1}}
	if len(v.Failures) != 2 || v.Failures[0] != want[0] || v.Failures[1] != want[1] {
		t.Errorf("failures a minute later = %+v, want %+v", v.Failures, want)
	}
	if v.Window.Seconds != 60 {
		t.Errorf("window = %+v, want the 60 s since the first sample", v.Window)
	}

	// Past the window, the samples before it no longer count.
	clock = clock.Add(statusWindow)
	v = f.view(t, mux)
	if len(v.Failures) != 2 || v.Failures[0].Recent != 0 || v.Failures[1].Recent != 0 {
		t.Errorf("failures once the window has passed = %+v, want none recent", v.Failures)
	}
	if n := len(f.page.samples); n > 2 {
		t.Errorf("%d samples kept, want the old ones dropped", n)
	}
}

// TestStatusPageHeaders: the page runs only its own script and style, is
// never cached or framed, and names no resource elsewhere.
func TestStatusPageHeaders(t *testing.T) {
	f := newStatusFixture(t)
	w := f.get(t, f.h, "/status")
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /status: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	csp := w.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if body := w.Body.String(); strings.Contains(body, "http:") || strings.Contains(body, "https:") || strings.Contains(body, "<script>") {
		t.Errorf("the page names an outside resource or has inline script:\n%s", body)
	}
	for path, ct := range map[string]string{"/status.js": "text/javascript", "/status.css": "text/css"} {
		if w := f.get(t, f.h, path); w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), ct) || w.Body.Len() == 0 {
			t.Errorf("GET %s: %d %q", path, w.Code, w.Header().Get("Content-Type"))
		}
	}
	r := httptest.NewRequest("GET", "/status", nil)
	r.Host = "evil.example:9110"
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, r)
	if rec.Code != http.StatusMisdirectedRequest {
		t.Errorf("GET /status for another host: %d, want 421", rec.Code)
	}
}

// TestStatusPageInChromium: the page in a real browser fills itself in,
// shows each node's state and the reason it is down, the generation and
// the login failures, updates as they change, and its screenshot shows the
// green and red state badges.
func TestStatusPageInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	f := newStatusFixture(t)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	b := browser.StartT(t, browser.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tab, err := b.Open(ctx, srv.URL+"/status")
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	s, err := tab.Until(ctx, `document.body.dataset.loaded === "1" && document.querySelectorAll("tr.backend").length === 2`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"iwalb status", "generation 3", "0123456789ab", "authnodes", "1 of 2 healthy",
		"auth1.example.test", "auth2.example.test", "up", "down", "refused", "bad_token"} {
		if !strings.Contains(s.Text, want) {
			t.Errorf("the page does not show %q:\n%s", want, s.Text)
		}
	}
	img, err := png.Decode(bytes.NewReader(s.PNG))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if img.Bounds().Dx() < 400 || img.Bounds().Dy() < 300 {
		t.Errorf("screenshot is %v", img.Bounds())
	}
	if !hasColour(img, 0xdc, 0xff, 0xe4) || !hasColour(img, 0xff, 0xdc, 0xe0) {
		t.Error("the screenshot shows no green 'up' badge or no red 'down' badge")
	}

	// It refreshes by itself: a new failure reason appears in the same
	// tab, without a reload.
	f.logins.WithLabelValues("failure", "kdc_unreachable").Inc()
	s, err = tab.Until(ctx, `document.querySelector('tr.failure[data-reason="kdc_unreachable"]') !== null`)
	if err != nil {
		t.Fatalf("the new failure reason never showed: %v", err)
	}
	if !strings.Contains(s.Text, "kdc_unreachable") {
		t.Errorf("page text lacks the new reason:\n%s", s.Text)
	}
}

// hasColour reports whether some pixel of img is the colour r, g, b.
func hasColour(img image.Image, r, g, b uint8) bool {
	bd := img.Bounds()
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			pr, pg, pb, _ := img.At(x, y).RGBA()
			if uint8(pr>>8) == r && uint8(pg>>8) == g && uint8(pb>>8) == b {
				return true
			}
		}
	}
	return false
}
