package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iwalb/iwalb/lb"
)

func testBackend(t *testing.T, addr string) *lb.Backend {
	t.Helper()
	p, err := lb.NewPool(lb.Config{Name: "p", Backends: []lb.BackendConfig{{Name: "n1", Addr: addr, FQDN: "example.com"}}}, lb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Backend("n1")
}

func TestProbes(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	var gotHost atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost.Store(r.Host)
		if r.URL.Path != "/readyz" || !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate()) // httptest's certificate is valid for example.com
	conf := &tls.Config{RootCAs: roots}
	b := testBackend(t, srv.Listener.Addr().String())

	tests := []struct {
		name    string
		probe   lb.Prober
		ready   bool
		wantErr string
	}{
		{"tls ok", TLS(conf), true, ""},
		{"tls untrusted", TLS(&tls.Config{RootCAs: x509.NewCertPool()}), true, "certificate"},
		{"tls wrong name", TLS(&tls.Config{RootCAs: roots, ServerName: "other.test"}), true, "other.test"},
		{"https ok", HTTPS(conf, "/readyz", 0), true, ""},
		{"https not ready", HTTPS(conf, "/readyz", 0), false, "status 503"},
		{"https wrong path", HTTPS(conf, "/nope", 200), true, "status 503"},
		{"https expects 503", HTTPS(conf, "/readyz", 503), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			// Each probe gets its own generous deadline: one shared
			// deadline ran out for the last cases under parallel -race load.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			err := tt.probe.Probe(ctx, b)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("probe failed: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
	if h, _ := gotHost.Load().(string); h != "example.com" {
		t.Errorf("HTTPS probe sent Host %q, want the backend FQDN", h)
	}
}

func TestProbeHonoursTimeout(t *testing.T) {
	// A TCP listener that never answers the handshake.
	srv := httptest.NewUnstartedServer(nil)
	defer srv.Close()
	b := testBackend(t, srv.Listener.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- TLS(nil).Probe(ctx, b) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("handshake with a silent server succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("probe ignored its context")
	}
}
