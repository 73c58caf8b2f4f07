package l7redirect

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/testpki"
	"github.com/iwalb/iwalb/lb"
)

// TestConnListener hands connections to a front door the way package l4
// does (accept, then ServeConn, then close): the client gets the front
// door's certificate and a redirect, ServeConn returns once the server is
// done with the connection, and after shutdown a handed connection is
// refused at once.
func TestConnListener(t *testing.T) {
	node := startNode(t, "auth1")
	pool := newPool(t, "nodes", "", []*testNode{node})
	waitState(t, pool, "auth1", lb.StateUp)
	h, err := New(Config{Name: "sso", Rules: []Rule{{Host: "sso.example.test", Pool: pool}}}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ca := testpki.NewCA(t, "iwalb l7redirect test CA")
	cert := ca.Issue(t, "sso.example.test").TLS()

	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	cl := NewConnListener(tcp.Addr())
	if cl.Addr() != tcp.Addr() {
		t.Errorf("Addr() = %v, want %v", cl.Addr(), tcp.Addr())
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	srv := &Server{Logger: quietLogger(), ShutdownTimeout: time.Second}
	go func() { served <- srv.Serve(ctx, cl, h, &tls.Config{Certificates: []tls.Certificate{cert}}) }()

	// The "L4 door": one goroutine per accepted connection, closing it when
	// ServeConn returns.
	returned := make(chan struct{}, 4)
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				cl.ServeConn(t.Context(), c)
				returned <- struct{}{}
			}()
		}
	}()

	conn, err := tls.Dial("tcp", tcp.Addr().String(), &tls.Config{ServerName: "sso.example.test", RootCAs: ca.Pool()})
	if err != nil {
		t.Fatalf("TLS through the handed connection: %v", err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /app?x=1 HTTP/1.1\r\nHost: sso.example.test\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := "https://" + node.hostPort() + "/app?x=1"; resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Errorf("answer = %d %q, want 302 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return after the server closed the connection")
	}
	conn.Close()

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	// After shutdown, a handed connection is closed at once.
	c, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn on a closed ConnListener did not return")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes from a connection handed to a closed listener, want EOF", n)
	}
}
