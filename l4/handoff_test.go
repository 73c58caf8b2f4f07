package l4

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
)

// TestHandoffListener hands connections to an HTTPS server the way an L4
// route does (accept, then ServeConn, then close): the client gets that
// server's certificate and answer, ServeConn returns once the server is
// done with the connection, and after shutdown a handed connection is
// refused at once.
func TestHandoffListener(t *testing.T) {
	ca := testpki.NewCA(t, "iwalb l4 test CA")
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	hl := NewHandoffListener(tcp.Addr())
	if hl.Addr() != tcp.Addr() {
		t.Errorf("Addr() = %v, want %v", hl.Addr(), tcp.Addr())
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "handed "+r.URL.Path)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "sso.example.test").TLS()}},
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(hl, "", "") }()

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
				hl.ServeConn(t.Context(), c)
				returned <- struct{}{}
			}()
		}
	}()

	conn, err := tls.Dial("tcp", tcp.Addr().String(), &tls.Config{ServerName: "sso.example.test", RootCAs: ca.Pool()})
	if err != nil {
		t.Fatalf("TLS through the handed connection: %v", err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /app HTTP/1.1\r\nHost: sso.example.test\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "handed /app" {
		t.Errorf("answer = %d %q, want 200 from the server behind the listener", resp.StatusCode, body)
	}
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return after the server closed the connection")
	}
	conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Errorf("ServeTLS = %v, want ErrServerClosed", err)
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
		t.Fatal("ServeConn on a closed HandoffListener did not return")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes from a connection handed to a closed listener, want EOF", n)
	}
}
