package l7redirect

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/internal/testpki"
	"github.com/iwalb/iwalb/lb"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testNode is a real TCP listener standing in for an auth node: the pool's
// TCP health checks see it up while it listens and down once it stops.
type testNode struct {
	name, fqdn string
	*testkit.Closer
}

func startNode(t *testing.T, name string) *testNode {
	t.Helper()
	return &testNode{name: name, fqdn: name + ".example.test", Closer: testkit.StartCloser(t)}
}

func (n *testNode) port() int {
	_, p, _ := net.SplitHostPort(n.Addr())
	port, _ := strconv.Atoi(p)
	return port
}

// hostPort is what a redirect to this node names.
func (n *testNode) hostPort() string { return net.JoinHostPort(n.fqdn, strconv.Itoa(n.port())) }

// newPool builds a pool over nodes with fast active health checks that run
// until the test ends. weights, if given, are per node.
func newPool(t *testing.T, name string, policy lb.PolicyName, nodes []*testNode, weights ...int) *lb.Pool {
	t.Helper()
	var bcs []lb.BackendConfig
	for i, n := range nodes {
		bc := lb.BackendConfig{Name: n.name, Addr: n.Addr(), FQDN: n.fqdn}
		if i < len(weights) {
			bc.Weight = weights[i]
		}
		bcs = append(bcs, bc)
	}
	p, err := lb.NewPool(lb.Config{
		Name: name, Policy: policy, Backends: bcs,
		// Three misses in a row take a node out: one slow check on a loaded
		// machine must not.
		Health: lb.HealthCheck{Interval: 50 * time.Millisecond, Rise: 1, Fall: 3},
	}, lb.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

// waitState waits until the pool's backend called name is in state want.
func waitState(t *testing.T, p *lb.Pool, name string, want lb.State) {
	t.Helper()
	b := p.Backend(name)
	deadline := time.Now().Add(5 * time.Second)
	for b.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("backend %s still %v after 5s, want %v", name, b.State(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// frontDoor is a Handler served over real TLS on 127.0.0.1, with its
// certificates in a TLSSwitch as iwalb serves them.
type frontDoor struct {
	h     *Handler
	addr  string
	ca    *testpki.Cert
	reg   *prometheus.Registry
	m     *Metrics
	certs *TLSSwitch
}

// frontDoorNames are the names the test front door has certificates for.
var frontDoorNames = []string{"sso.example.test", "login.example.test"}

func startFrontDoor(t *testing.T, cfg Config, logger *slog.Logger) *frontDoor {
	t.Helper()
	if logger == nil {
		logger = quietLogger()
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(cfg, Options{Logger: logger, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ca := testpki.NewCA(t, "iwalb l7redirect test CA")
	certs, err := NewTLSSwitch(&tls.Config{Certificates: []tls.Certificate{
		ca.Issue(t, frontDoorNames[0]).TLS(),
		ca.Issue(t, frontDoorNames[1]).TLS(),
	}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd := &frontDoor{h: h, ca: ca, reg: reg, m: m, certs: certs}
	fd.addr = serve(t, h, certs.Config())
	return fd
}

// serve runs h on a new 127.0.0.1 listener until the test ends.
func serve(t *testing.T, h http.Handler, tlsConfig *tls.Config) string {
	t.Helper()
	return serveWith(t, &Server{Logger: quietLogger()}, h, tlsConfig)
}

// serveWith is serve with srv's limits.
func serveWith(t *testing.T, srv *Server, h http.Handler, tlsConfig *tls.Config) string {
	t.Helper()
	addr, _ := serveUntil(t, srv, h, tlsConfig)
	return addr
}

// serveUntil is serveWith that also returns a function that stops the
// serving and waits for Serve to return; the end of the test stops it too.
func serveUntil(t *testing.T, srv *Server, h http.Handler, tlsConfig *tls.Config) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln, h, tlsConfig) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// client returns an HTTPS client that trusts the test CA, reaches the front
// door whatever the URL's host, and does not follow redirects.
func (fd *frontDoor) client(jar http.CookieJar) *http.Client {
	return &http.Client{
		Jar:     jar,
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: fd.ca.Pool()},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, fd.addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// get sends method to https://sso.example.test{target} with Host header host
// (empty: the URL's) and returns the response with its body read.
func (fd *frontDoor) do(t *testing.T, c *http.Client, method, host, target string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "https://sso.example.test"+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// raw writes req (a whole HTTP/1.1 request) to the front door over TLS with
// SNI sso.example.test and returns the response.
func (fd *frontDoor) raw(t *testing.T, req string) *http.Response {
	t.Helper()
	conn, err := tls.Dial("tcp", fd.addr, &tls.Config{RootCAs: fd.ca.Pool(), ServerName: "sso.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", req, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// location parses the response's single Location header.
func location(t *testing.T, resp *http.Response) *url.URL {
	t.Helper()
	locs := resp.Header.Values("Location")
	if len(locs) != 1 {
		t.Fatalf("got %d Location headers %q, want 1", len(locs), locs)
	}
	u, err := url.Parse(locs[0])
	if err != nil {
		t.Fatalf("Location %q does not parse: %v", locs[0], err)
	}
	return u
}

// handedListener is a listener whose connections the test hands it, as an
// L4 route's hand-off listener hands the front door the connections L4
// accepted; the server that accepts one closes it.
type handedListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandedListener() *handedListener {
	return &handedListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// hand gives c to the server, or closes it if the listener is closed.
func (l *handedListener) hand(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *handedListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handedListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handedListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
