package l4

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/internal/testpki"
	"github.com/iwalb/iwalb/lb"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// tlsBackend is a real TLS server on 127.0.0.1. After the handshake it
// writes its name and a newline, then echoes. It records any PROXY header.
type tlsBackend struct {
	name     string
	addr     string
	cert     tls.Certificate
	ca       *testpki.Cert // the backend's own CA, so a client can trust one backend and not another
	proxy    bool          // expect a PROXY header before TLS
	accepted atomic.Int64

	mu      sync.Mutex
	ln      net.Listener
	headers []*proxyproto.Header
	wg      sync.WaitGroup
}

func startTLSBackend(t *testing.T, name string, proxy bool) *tlsBackend {
	t.Helper()
	// The certificate's CN names the backend holding it, so that a client
	// can tell which node completed its handshake.
	ca := testpki.NewCA(t, name+" CA")
	cert := ca.Issue(t, name, "*.example.test", "example.test", "a.example.test", "x.wild.example.test", "deeper.x.wild.example.test")
	b := &tlsBackend{name: name, cert: cert.TLS(), ca: ca, proxy: proxy}
	b.start(t)
	t.Cleanup(b.stop)
	return b
}

func (b *tlsBackend) start(t *testing.T) {
	t.Helper()
	addr := b.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.ln, b.addr = ln, ln.Addr().String()
	b.mu.Unlock()
	conf := &tls.Config{Certificates: []tls.Certificate{b.cert}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.serve(c, conf)
			}()
		}
	}()
}

func (b *tlsBackend) serve(c net.Conn, conf *tls.Config) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var raw net.Conn = c
	if b.proxy {
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil {
			return
		}
		b.mu.Lock()
		b.headers = append(b.headers, h)
		b.mu.Unlock()
		raw = &replayConn{Conn: c, r: br}
	}
	tc := tls.Server(raw, conf)
	if err := tc.Handshake(); err != nil {
		return
	}
	io.WriteString(tc, b.name+"\n")
	io.Copy(tc, tc)
}

func (b *tlsBackend) stop() {
	b.mu.Lock()
	if b.ln != nil {
		b.ln.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *tlsBackend) proxyHeaders() []*proxyproto.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*proxyproto.Header(nil), b.headers...)
}

// rootsOf trusts the given backends' CAs.
func rootsOf(bs ...*tlsBackend) *x509.CertPool {
	p := x509.NewCertPool()
	for _, b := range bs {
		p.AddCert(b.ca.X509)
	}
	return p
}

// tlsThrough connects to the balancer at addr with SNI sni, completes a TLS
// handshake and a round trip, and returns the CommonName of the certificate
// the client saw and the backend's greeting.
func tlsThrough(addr, sni string, roots *x509.CertPool) (cn, greeting string, err error) {
	return tlsThroughFrom(&net.Dialer{Timeout: 5 * time.Second}, addr, sni, roots)
}

// tlsThroughFrom is tlsThrough with the client's dialer d, which may set
// the client's address.
func tlsThroughFrom(d *net.Dialer, addr, sni string, roots *x509.CertPool) (cn, greeting string, err error) {
	conf := &tls.Config{RootCAs: roots, ServerName: sni}
	if sni == "" {
		// Without SNI Go cannot check names; check the chain by hand.
		conf.InsecureSkipVerify = true
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots})
			return err
		}
	}
	c, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	greeting, err = br.ReadString('\n')
	if err != nil {
		return "", "", err
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return "", "", err
	}
	if echo, err := br.ReadString('\n'); err != nil || echo != "ping\n" {
		return "", "", err
	}
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, strings.TrimSpace(greeting), nil
}

// newPool builds a pool over the given backend addresses.
func newPool(t testing.TB, name string, policy lb.PolicyName, health lb.HealthCheck, addrs ...string) *lb.Pool {
	t.Helper()
	var bcs []lb.BackendConfig
	for i, a := range addrs {
		bcs = append(bcs, lb.BackendConfig{Name: name + "-" + string(rune('1'+i)), Addr: a})
	}
	p, err := lb.NewPool(lb.Config{Name: name, Policy: policy, Backends: bcs, Health: health}, lb.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startServer runs an l4 server on 127.0.0.1 until the test ends.
func startServer(t testing.TB, cfg Config) (addr string, reg *prometheus.Registry) {
	t.Helper()
	addr, reg, _ = runServer(t, cfg, quietLogger())
	return addr, reg
}

// runServer runs an l4 server on 127.0.0.1 logging to logger. stop cancels
// its context and waits for Serve to return; the test's end calls it too.
func runServer(t testing.TB, cfg Config, logger *slog.Logger) (addr string, reg *prometheus.Registry, stop func()) {
	t.Helper()
	reg = prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	srv, err := New(cfg, Options{Logger: logger, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		srv.Serve(ctx, ln)
		close(done)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				buf := make([]byte, 1<<20)
				t.Errorf("Serve did not return after cancel; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
			}
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), reg, stop
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// captureHello returns the exact bytes crypto/tls sends as its first flight
// for conf.
func captureHello(t testing.TB, conf *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		tls.Client(a, conf).Handshake()
	}()
	defer a.Close()
	defer b.Close()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// refragment re-frames the single-record ClientHello hello into records of
// at most size payload bytes, as a client may legally send it.
func refragment(hello []byte, size int) []byte {
	msg := hello[5:]
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 22, hello[1], hello[2], byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}
