package l7redirect

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/internal/testpki"
	"github.com/iwalb/iwalb/lb"
)

// holdLog is a slog.Handler that holds up the request whose access-log
// line has path /hold until release is closed: that request is then in
// flight, its answer chosen but not yet sent.
type holdLog struct {
	held    chan struct{} // closed when the held request logs
	release chan struct{}
	once    sync.Once
}

func newHoldLog() *holdLog { return &holdLog{held: make(chan struct{}), release: make(chan struct{})} }

func (h *holdLog) Enabled(context.Context, slog.Level) bool { return true }

func (h *holdLog) Handle(_ context.Context, r slog.Record) error {
	hold := false
	r.Attrs(func(a slog.Attr) bool {
		hold = a.Key == "path" && a.Value.String() == "/hold"
		return !hold
	})
	if hold {
		h.once.Do(func() { close(h.held) })
		select {
		case <-h.release:
		case <-time.After(30 * time.Second): // never hang the test
		}
	}
	return nil
}

func (h *holdLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *holdLog) WithGroup(string) slog.Handler      { return h }

// redirectsTo returns the node host (auth1, ...) a 302 sends the browser
// to, or fails.
func redirectsTo(t *testing.T, resp *http.Response) string {
	t.Helper()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d, want 302", resp.StatusCode)
	}
	host, _, _ := strings.Cut(location(t, resp).Hostname(), ".")
	return host
}

// TestUpdateKeepsRequestsInFlight: a request that started before an Update
// is not cut and is answered under the rules it started with; after the
// Update, new requests, on a keep-alive connection opened before it as on
// a new one, get the new rules.
func TestUpdateKeepsRequestsInFlight(t *testing.T) {
	a, b := startNode(t, "auth1"), startNode(t, "auth2")
	pa := newPool(t, "a", lb.PolicyRoundRobin, []*testNode{a})
	pb := newPool(t, "b", lb.PolicyRoundRobin, []*testNode{b})
	hold := newHoldLog()
	fd := startFrontDoor(t, Config{Name: "sso", Rules: []Rule{{Pool: pa}}}, slog.New(hold))
	defer close(hold.release)

	keepAlive := fd.client(nil)
	resp, _ := fd.do(t, keepAlive, "GET", "", "/")
	if got := redirectsTo(t, resp); got != "auth1" {
		t.Fatalf("before the Update: redirected to %s, want auth1", got)
	}

	type answer struct {
		resp *http.Response
		err  error
	}
	inFlight := make(chan answer, 1)
	go func() {
		resp, err := fd.client(nil).Get("https://sso.example.test/hold")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		inFlight <- answer{resp, err}
	}()
	select {
	case <-hold.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the request to hold never reached the handler")
	}

	if err := fd.h.Update(Config{Rules: []Rule{{Pool: pb}}}); err != nil {
		t.Fatal(err)
	}
	var reused bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", "https://sso.example.test/", nil)
	resp, err := keepAlive.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !reused {
		t.Error("the keep-alive connection opened before the Update was not reused")
	}
	if got := redirectsTo(t, resp); got != "auth2" {
		t.Errorf("after the Update, on the connection opened before it: redirected to %s, want auth2", got)
	}
	resp, _ = fd.do(t, fd.client(nil), "GET", "", "/")
	if got := redirectsTo(t, resp); got != "auth2" {
		t.Errorf("after the Update, on a new connection: redirected to %s, want auth2", got)
	}

	hold.release <- struct{}{}
	ans := <-inFlight
	if ans.err != nil {
		t.Fatalf("the request in flight during the Update failed: %v", ans.err)
	}
	if got := redirectsTo(t, ans.resp); got != "auth1" {
		t.Errorf("the request in flight during the Update was redirected to %s, want auth1 (the rules it started with)", got)
	}
}

// TestReloadUnderLoad swaps everything a reload swaps (rules, redirect
// names, certificates, connection caps) many times while clients on new
// and keep-alive connections send requests: every request is answered
// under one configuration or the other, none fails. Run with -race.
func TestReloadUnderLoad(t *testing.T) {
	a, b := startNode(t, "auth1"), startNode(t, "auth2")
	pa := newPool(t, "a", lb.PolicyRoundRobin, []*testNode{a})
	pb := newPool(t, "b", lb.PolicyRoundRobin, []*testNode{b})
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	configs := []Config{{Rules: []Rule{{Pool: pa}}}, {Rules: []Rule{{Pool: pb}}}}
	h, err := New(Config{Name: "sso", Rules: configs[0].Rules}, Options{Logger: quietLogger(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := NewRedirect(RedirectConfig{Name: "sso", Names: []string{"sso.example.test"}}, Options{Logger: quietLogger(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ca1, ca2 := testpki.NewCA(t, "iwalb l7redirect CA 1"), testpki.NewCA(t, "iwalb l7redirect CA 2")
	certs := []*tls.Config{
		{Certificates: []tls.Certificate{ca1.Issue(t, "sso.example.test").TLS()}},
		{Certificates: []tls.Certificate{ca2.Issue(t, "sso.example.test").TLS()}},
	}
	sw, err := NewTLSSwitch(certs[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Name: "sso", Logger: quietLogger(), Metrics: m}
	httpsAddr := serveWith(t, srv, h, sw.Config())
	httpAddr := serveWith(t, srv, plain, nil)
	roots := x509.NewCertPool()
	roots.AddCert(ca1.X509)
	roots.AddCert(ca2.X509)

	const clients, requests = 4, 40
	var wg sync.WaitGroup
	errs := make(chan error, clients*requests)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: roots},
				DisableKeepAlives: i%2 == 1, // half on new connections, half on keep-alive ones
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					var d net.Dialer
					if strings.HasPrefix(addr, "sso.example.test:443") {
						return d.DialContext(ctx, network, httpsAddr)
					}
					return d.DialContext(ctx, network, httpAddr)
				},
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			for j := range requests {
				// Either configuration's answer, and nothing else.
				url, want := "https://sso.example.test/", []string{"302 auth1.example.test", "302 auth2.example.test"}
				if j%4 == 3 {
					url, want = "http://sso.example.test/", []string{"301 sso.example.test", "421 "}
				}
				resp, err := c.Get(url)
				if err != nil {
					errs <- fmt.Errorf("client %d request %d: %w", i, j, err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				host := ""
				if loc, err := resp.Location(); err == nil {
					host = loc.Hostname()
				}
				if got := fmt.Sprintf("%d %s", resp.StatusCode, host); got != want[0] && got != want[1] {
					errs <- fmt.Errorf("client %d request %d to %s: answered %q, want %q or %q", i, j, url, got, want[0], want[1])
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	swaps := 0
	for running := true; running && swaps < 10000; swaps++ {
		select {
		case <-done:
			running = false
		case <-time.After(time.Millisecond):
		}
		k := swaps % 2
		if err := h.Update(configs[k]); err != nil {
			t.Fatal(err)
		}
		if err := sw.Set(certs[k], 0); err != nil {
			t.Fatal(err)
		}
		// The plain listener redirects sso.example.test in one, not in
		// the other (421).
		names := [][]string{{"sso.example.test"}, {"other.example.test"}}[k]
		if err := plain.Update(RedirectConfig{Names: names}); err != nil {
			t.Fatal(err)
		}
		srv.SetLimits(100+k, 50+k, nil)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d swaps during %d requests", swaps, clients*requests)
}
