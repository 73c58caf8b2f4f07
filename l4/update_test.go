package l4

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/lb"
)

// TestUpdateAppliesToNewConnections: a reload's new routes and limits take
// the next connections, while a connection relayed before it stays on its
// backend and keeps working; a listener cannot be renamed.
func TestUpdateAppliesToNewConnections(t *testing.T) {
	a := startTLSBackend(t, "node-a", false)
	b := startTLSBackend(t, "node-b", false)
	routeTo := func(node *tlsBackend, pool string) *Router {
		r, err := NewRouter([]Route{{Name: "auth", ServerNames: []string{"a.example.test"},
			Pool: newPool(t, pool, "", lb.HealthCheck{}, node.addr)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	srv, err := New(Config{Name: "public", Router: routeTo(a, "pa")}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	defer func() { cancel(); <-done }()
	addr, roots := ln.Addr().String(), rootsOf(a, b)

	// A connection relayed to node-a before the reload.
	old, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "a.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	old.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(old)
	if greeting, err := br.ReadString('\n'); err != nil || strings.TrimSpace(greeting) != "node-a" {
		t.Fatalf("before the reload: %q %v", greeting, err)
	}

	if err := srv.Update(Config{Name: "public", Router: routeTo(b, "pb"), MaxConns: 2}); err != nil {
		t.Fatal(err)
	}
	if cn, _, err := tlsThrough(addr, "a.example.test", roots); err != nil || cn != "node-b" {
		t.Fatalf("a new connection after the reload went to %q (%v), want node-b", cn, err)
	}
	// The old connection still talks to node-a.
	if _, err := io.WriteString(old, "still there\n"); err != nil {
		t.Fatal(err)
	}
	if echo, err := br.ReadString('\n'); err != nil || echo != "still there\n" {
		t.Fatalf("the connection made before the reload: %q %v", echo, err)
	}
	// MaxConns 2: with the old connection and one more open, a third is
	// reset. The connection tlsThrough closed frees its slot when its
	// relay has ended, a moment after the close.
	for deadline := time.Now().Add(5 * time.Second); srv.limit.Open() > 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still counted 5 s after the second one closed", srv.limit.Open())
		}
	}
	second, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "a.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if _, _, err := tlsThrough(addr, "a.example.test", roots); err == nil {
		t.Fatal("a third connection was relayed under the reloaded max_conns 2")
	}

	if err := srv.Update(Config{Name: "other", Router: routeTo(a, "pa2")}); err == nil {
		t.Fatal("Update renamed the listener")
	}
	if err := srv.Update(Config{Name: "public"}); err == nil {
		t.Fatal("Update accepted a configuration without a router")
	}
	// A refused update leaves the running configuration alone.
	if got := srv.cfg.Load().MaxConns; got != 2 {
		t.Fatalf("max_conns after refused updates = %d, want 2", got)
	}
}
