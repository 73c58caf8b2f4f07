package authnode

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/iwalb/iwalb/l4"
	"github.com/iwalb/iwalb/lb"
)

// TestNegotiateNetworksThroughL4: behind the L4 balancer with PROXY v2,
// the node decides on the client's real address: a client from outside
// form.negotiate_networks gets the form at once (200, no challenge), one
// from inside gets the Negotiate challenge. The balancer learns the
// inside address from a PROXY header of its own trusted upstream, and
// passes it on.
func TestNegotiateNetworksThroughL4(t *testing.T) {
	r := newReloadNode(t, func(c *Config) {
		c.ProxyProtocol = true
		c.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.Form = FormConfig{Enabled: true, NegotiateNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	})
	nodeAddr := r.serve(t)
	pool, err := lb.NewPool(lb.Config{Name: "nodes", Backends: []lb.BackendConfig{{Name: "auth1", Addr: nodeAddr}}}, lb.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	router, err := l4.NewRouter([]l4.Route{{Name: "nodes", ServerNames: []string{"auth1.example.test"}, Pool: pool, ProxyProtocol: 2}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := l4.New(l4.Config{Name: "public", Router: router, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}, l4.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	lbLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lbDone := make(chan error, 1)
	go func() { lbDone <- srv.Serve(ctx, lbLn) }()
	t.Cleanup(func() {
		cancel()
		<-lbDone
	})

	pem, err := os.ReadFile(r.pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	// visit GETs /sso through the balancer, as the client at from (none:
	// the balancer sees loopback) and returns the status and challenge.
	visit := func(from string) (int, string, string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", lbLn.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if from != "" {
			h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(from), Port: 50000}, lbLn.Addr())
			if _, err := h.WriteTo(c); err != nil {
				t.Fatal(err)
			}
		}
		tc := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "auth1.example.test"})
		req, _ := http.NewRequest("GET", "https://auth1.example.test/sso", nil)
		if err := req.Write(tc); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(tc), req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(body)
	}

	if status, challenge, body := visit(""); status != http.StatusOK || challenge != "" || !strings.Contains(body, `action="/login"`) {
		t.Errorf("a client outside the networks (127.0.0.1): %d %q; want the form at once, no challenge\n%s", status, challenge, body)
	}
	if status, challenge, _ := visit("10.1.2.3"); status != http.StatusUnauthorized || challenge != "Negotiate" {
		t.Errorf("a client inside them (10.1.2.3, by PROXY v2 through the balancer): %d %q; want 401 Negotiate", status, challenge)
	}
	if status, _, _ := visit("203.0.113.9"); status != http.StatusOK {
		t.Errorf("a client outside them (203.0.113.9): %d, want the form", status)
	}
}
