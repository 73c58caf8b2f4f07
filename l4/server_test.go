package l4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/lb"
)

func TestSNIRoutingIsPassthrough(t *testing.T) {
	a := startTLSBackend(t, "node-a", false)
	b := startTLSBackend(t, "node-b", false)
	w := startTLSBackend(t, "node-wild", false)
	d := startTLSBackend(t, "node-default", false)
	router, err := NewRouter([]Route{
		{Name: "a", ServerNames: []string{"a.example.test"}, Pool: newPool(t, "pa", "", lb.HealthCheck{}, a.addr)},
		{Name: "b", ServerNames: []string{"B.example.test"}, Pool: newPool(t, "pb", "", lb.HealthCheck{}, b.addr)},
		{Name: "wild", ServerNames: []string{"*.wild.example.test"}, Pool: newPool(t, "pw", "", lb.HealthCheck{}, w.addr)},
	}, &Route{Name: "default", Pool: newPool(t, "pd", "", lb.HealthCheck{}, d.addr)})
	if err != nil {
		t.Fatal(err)
	}
	addr, reg := startServer(t, Config{Router: router})
	roots := rootsOf(a, b, w, d)

	tests := []struct {
		sni, want string
	}{
		{"a.example.test", "node-a"},
		{"b.example.test", "node-b"},
		{"x.wild.example.test", "node-wild"},
		{"deeper.x.wild.example.test", "node-default"}, // a wildcard covers one label only
		{"example.test", "node-default"},
		{"", "node-default"},
	}
	for _, tt := range tests {
		t.Run("sni="+tt.sni, func(t *testing.T) {
			cn, greeting, err := tlsThrough(addr, tt.sni, roots)
			if err != nil {
				t.Fatal(err)
			}
			// The certificate is the backend's own: the balancer holds no key,
			// so the TLS session can only have been passed through.
			if cn != tt.want || greeting != tt.want {
				t.Errorf("certificate %q, greeting %q; want %q", cn, greeting, tt.want)
			}
		})
	}
	if got := testkit.Sum(t, reg, "iwalb_l4_connections_routed_total", "route=default"); got != 3 {
		t.Errorf("routed to default = %v, want 3", got)
	}
	waitFor(t, "active gauge to drop", 2*time.Second, func() bool {
		return testkit.Sum(t, reg, "iwalb_l4_connections_active") == 0
	})
	if up := testkit.Sum(t, reg, "iwalb_l4_bytes_total", "direction=client_to_backend"); up == 0 {
		t.Error("no client_to_backend bytes counted")
	}
	if n := testkit.Sum(t, reg, "iwalb_l4_connection_duration_seconds"); n != float64(len(tests)) {
		t.Errorf("duration samples = %v, want %d", n, len(tests))
	}
}

func TestNoRouteNoDefaultCloses(t *testing.T) {
	a := startTLSBackend(t, "node-a", false)
	router, err := NewRouter([]Route{{Name: "a", ServerNames: []string{"a.example.test"}, Pool: newPool(t, "pa", "", lb.HealthCheck{}, a.addr)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr, reg := startServer(t, Config{Router: router})
	if _, _, err := tlsThrough(addr, "other.example.test", rootsOf(a)); err == nil {
		t.Fatal("unrouted name reached a backend")
	}
	if got := testkit.Sum(t, reg, "iwalb_l4_rejected_total", "reason=no_route"); got != 1 {
		t.Errorf("no_route rejects = %v, want 1", got)
	}
	if a.accepted.Load() != 0 {
		t.Error("backend got a connection for an unrouted name")
	}
}

func TestExactBytesReachBackend(t *testing.T) {
	// A raw TCP backend records what it receives; the ClientHello arrives in
	// three records over five TCP segments and must come out unchanged.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	router, _ := NewRouter([]Route{{Name: "r", ServerNames: []string{"lb.example.test"}, Pool: newPool(t, "p", "", lb.HealthCheck{}, ln.Addr().String())}}, nil)
	addr, _ := startServer(t, Config{Router: router})

	hello := refragment(captureHello(t, &tls.Config{ServerName: "lb.example.test"}), 600)
	sent := append(clone(hello), []byte("and then application bytes")...)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cuts := []int{3, 5, 400, 900, len(hello)}
	prev := 0
	for _, cut := range cuts {
		c.Write(sent[prev:cut])
		prev = cut
		time.Sleep(20 * time.Millisecond)
	}
	c.Write(sent[prev:])
	c.(*net.TCPConn).CloseWrite()
	select {
	case b := <-got:
		if !bytes.Equal(b, sent) {
			t.Fatalf("backend got %d bytes that differ from the %d the client sent", len(b), len(sent))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend got nothing")
	}
	c.Close()
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func TestProxyProtocolToBackend(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			be := startTLSBackend(t, "node-a", true)
			router, _ := NewRouter([]Route{{Name: "a", ServerNames: []string{"a.example.test"},
				Pool: newPool(t, "pa", "", lb.HealthCheck{}, be.addr), ProxyProtocol: version}}, nil)
			addr, _ := startServer(t, Config{Router: router})

			conf := &tls.Config{RootCAs: rootsOf(be), ServerName: "a.example.test"}
			c, err := tls.Dial("tcp", addr, conf)
			if err != nil {
				t.Fatal(err)
			}
			clientAddr := c.LocalAddr().String()
			c.Close()
			hs := be.proxyHeaders()
			if len(hs) != 1 {
				t.Fatalf("backend saw %d PROXY headers, want 1", len(hs))
			}
			if hs[0].Version != byte(version) || hs[0].SourceAddr.String() != clientAddr || hs[0].DestinationAddr.String() != addr {
				t.Errorf("PROXY v%d %v -> %v, want v%d %s -> %s", hs[0].Version, hs[0].SourceAddr, hs[0].DestinationAddr, version, clientAddr, addr)
			}
		})
	}
}

func TestProxyProtocolFromTrustedUpstream(t *testing.T) {
	be := startTLSBackend(t, "node-a", true)
	newRouter := func() *Router {
		r, _ := NewRouter([]Route{{Name: "a", ServerNames: []string{"a.example.test"},
			Pool: newPool(t, "pa", "", lb.HealthCheck{}, be.addr), ProxyProtocol: 2}}, nil)
		return r
	}
	realClient := &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 4444}
	front := &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 443}

	// via sends a PROXY v2 header naming realClient, then a TLS handshake.
	via := func(addr string) error {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer raw.Close()
		if _, err := proxyproto.HeaderProxyFromAddrs(2, realClient, front).WriteTo(raw); err != nil {
			return err
		}
		tc := tls.Client(raw, &tls.Config{RootCAs: rootsOf(be), ServerName: "a.example.test"})
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		return tc.Handshake()
	}

	trusted, _ := startServer(t, Config{Name: "trusted", Router: newRouter(), TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err := via(trusted); err != nil {
		t.Fatal(err)
	}
	hs := be.proxyHeaders()
	if len(hs) != 1 || hs[0].SourceAddr.String() != realClient.String() || hs[0].DestinationAddr.String() != front.String() {
		t.Fatalf("backend saw %v, want the upstream's client %v", hs, realClient)
	}

	untrusted, reg := startServer(t, Config{Name: "untrusted", Router: newRouter(), TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if err := via(untrusted); err == nil {
		t.Fatal("a PROXY header from an untrusted peer was accepted")
	}
	if got := testkit.Sum(t, reg, "iwalb_l4_rejected_total", "reason=not_tls"); got != 1 {
		t.Errorf("not_tls rejects = %v, want 1", got)
	}
	if len(be.proxyHeaders()) != 1 {
		t.Error("backend got a connection from the untrusted path")
	}
}

func TestDialFailureTriesNextBackend(t *testing.T) {
	live := startTLSBackend(t, "node-live", false)
	deadLn, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := deadLn.Addr().String()
	deadLn.Close() // nothing listens there now: connection refused

	pool := newPool(t, "p", lb.PolicyRoundRobin, lb.HealthCheck{Fall: 2, PassiveCooldown: time.Hour}, dead, live.addr)
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: pool})
	addr, reg := startServer(t, Config{Router: router})
	for i := range 6 {
		if cn, _, err := tlsThrough(addr, "a.example.test", rootsOf(live)); err != nil || cn != "node-live" {
			t.Fatalf("connection %d: %q, %v", i, cn, err)
		}
	}
	// Round-robin tried the dead node until the fall count ejected it; the
	// clients never noticed.
	if got := testkit.Sum(t, reg, "iwalb_l4_dial_errors_total", "backend=p-1"); got != 2 {
		t.Errorf("dial errors = %v, want the fall count 2", got)
	}
	if st := pool.Backend("p-1").State(); st != lb.StateDown {
		t.Errorf("dead backend is %v, want down", st)
	}
}

func TestKilledBackendEjectedAndRestored(t *testing.T) {
	n1 := startTLSBackend(t, "node-1", false)
	n2 := startTLSBackend(t, "node-2", false)
	pool := newPool(t, "auth", lb.PolicyRoundRobin,
		lb.HealthCheck{Interval: 60 * time.Millisecond, Rise: 2, Fall: 2, PassiveFall: -1},
		n1.addr, n2.addr)
	ctx := t.Context()
	go pool.Run(ctx)
	router, _ := NewRouter(nil, &Route{Name: "auth", Pool: pool})
	addr, reg := startServer(t, Config{Router: router})
	roots := rootsOf(n1, n2)

	connect := func(n int) map[string]int {
		seen := map[string]int{}
		for range n {
			cn, _, err := tlsThrough(addr, "lb.example.test", roots)
			if err != nil {
				t.Fatal(err)
			}
			seen[cn]++
		}
		return seen
	}
	if seen := connect(4); seen["node-1"] == 0 || seen["node-2"] == 0 {
		t.Fatalf("healthy pool did not spread: %v", seen)
	}

	n1.stop()
	b1 := pool.Backend("auth-1")
	waitFor(t, "node-1 ejected", 5*time.Second, func() bool { return b1.State() == lb.StateDown })
	errsBefore := testkit.Sum(t, reg, "iwalb_l4_dial_errors_total")
	if seen := connect(6); seen["node-2"] != 6 {
		t.Fatalf("with node-1 down, connections went to %v", seen)
	}
	if got := testkit.Sum(t, reg, "iwalb_l4_dial_errors_total"); got != errsBefore {
		t.Errorf("the balancer still dialed the ejected node (%v dial errors, was %v)", got, errsBefore)
	}

	acceptedBefore := n1.accepted.Load()
	n1.start(t) // same port
	waitFor(t, "node-1 restored", 5*time.Second, func() bool { return b1.State() == lb.StateUp })
	// The kernel completes a check's connection before the node's accept
	// loop counts it: give the count a moment (well under the 60 ms to the
	// next check) to catch up with the checks that were made.
	for end := time.Now().Add(30 * time.Millisecond); n1.accepted.Load()-acceptedBefore < 2 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	if n1.accepted.Load()-acceptedBefore < 2 {
		t.Errorf("node-1 came back after %d checks, want rise=2", n1.accepted.Load()-acceptedBefore)
	}
	if seen := connect(4); seen["node-1"] == 0 {
		t.Fatalf("restored node-1 got no connections: %v", seen)
	}
}

func TestSlowClientClosedAtPeekTimeout(t *testing.T) {
	be := startTLSBackend(t, "node-a", false)
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: newPool(t, "p", "", lb.HealthCheck{}, be.addr)})
	addr, reg := startServer(t, Config{Router: router, PeekTimeout: 300 * time.Millisecond})

	hello := captureHello(t, &tls.Config{ServerName: "a.example.test"})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c) // returns when the balancer closes
	}()
	// One byte a second, at most 10 bytes: far too slow for a 300ms peek.
	for i := 0; i < 10; i++ {
		if _, err := c.Write(hello[i : i+1]); err != nil {
			break
		}
		select {
		case <-closed:
		case <-time.After(time.Second):
			continue
		}
		break
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("slow client was never closed")
	}
	if got := testkit.Sum(t, reg, "iwalb_l4_rejected_total", "reason=peek_timeout"); got != 1 {
		t.Errorf("peek_timeout rejects = %v, want 1", got)
	}
	if be.accepted.Load() != 0 {
		t.Error("backend was dialed for a client that never finished its hello")
	}
}

func TestRejectsNonTLSAndOversizedHello(t *testing.T) {
	be := startTLSBackend(t, "node-a", false)
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: newPool(t, "p", "", lb.HealthCheck{}, be.addr)})
	addr, reg := startServer(t, Config{Router: router, MaxHelloSize: 1024})
	big := captureHello(t, &tls.Config{ServerName: "a.example.test"}) // ~1.5 KiB with ML-KEM key shares
	tests := []struct {
		name, reason string
		send         []byte
	}{
		{"http", RejectNotTLS, []byte("GET / HTTP/1.1\r\n\r\n")},
		{"too large", RejectTooLarge, big},
		// A 45-byte hello in 12 records, refused at the 8th.
		{"too many records", RejectTooManyRecords, refragment(helloWithExtensions(), 4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tt.send)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.Read(make([]byte, 1)); n != 0 || isTimeout(err) {
				t.Fatalf("connection not closed: %d, %v", n, err)
			}
			waitFor(t, tt.reason+" counted", 2*time.Second, func() bool {
				return testkit.Sum(t, reg, "iwalb_l4_rejected_total", "reason="+tt.reason) == 1
			})
		})
	}
	if len(big) <= 1024 {
		t.Fatalf("test hello is only %d bytes", len(big))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// echoBackend is a raw TCP echo server; the relay does not care what the
// bytes are, and skipping TLS keeps 1,000 connections fast under -race.
func echoBackend(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// TestThousandConnectionsNoLeak, also with relays that park after 1ms of
// quiet: they park and wake all through the exchange.
func TestThousandConnectionsNoLeak(t *testing.T) {
	t.Run("goroutines", func(t *testing.T) { testThousandConnections(t, -1) })
	t.Run("parking", func(t *testing.T) { testThousandConnections(t, time.Millisecond) })
}

func testThousandConnections(t *testing.T, parkAfter time.Duration) {
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: newPool(t, "p", lb.PolicyLeastConn, lb.HealthCheck{}, echoBackend(t), echoBackend(t))})
	addr, reg := startServer(t, Config{Router: router, parkAfter: parkAfter})
	hello := captureHello(t, &tls.Config{ServerName: "a.example.test"})
	payload := append(clone(hello), bytes.Repeat([]byte("x"), 4096)...)

	base := runtime.NumGoroutine()
	const n = 1000
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	var open sync.WaitGroup // all connections are open at once
	open.Add(n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				open.Done()
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			<-start
			if _, err := c.Write(payload); err != nil {
				open.Done()
				errs <- err
				return
			}
			got := make([]byte, len(payload))
			_, err = io.ReadFull(c, got)
			open.Done()
			if err != nil || !bytes.Equal(got, payload) {
				errs <- fmt.Errorf("echo: %v", err)
				return
			}
			open.Wait()
			c.(*net.TCPConn).CloseWrite() // half-close first, as a polite client does
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				errs <- fmt.Errorf("after half-close: %v, want EOF", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := testkit.Sum(t, reg, "iwalb_l4_connections_routed_total"); got != n {
		t.Fatalf("routed %v connections, want %d", got, n)
	}
	// The last handlers may still be returning when the clients are done:
	// wait, bounded, for the gauge and the goroutines to settle together.
	waitFor(t, "active gauge at 0 and goroutines back to baseline", 10*time.Second, func() bool {
		return testkit.Sum(t, reg, "iwalb_l4_connections_active") == 0 && runtime.NumGoroutine() <= base
	})
}

func TestIdleTimeout(t *testing.T) {
	// The backend streams one byte every 40ms for a while without reading;
	// the client sends nothing after its hello. One direction alone is
	// traffic: the connection must survive well past the idle timeout, and
	// then close once both directions are quiet. Also with relays that park
	// after 10ms: the trickle parks and wakes the backend's direction, and
	// the idle timeout is the parked connection's timer.
	t.Run("goroutines", func(t *testing.T) { testIdleTimeout(t, -1) })
	t.Run("parking", func(t *testing.T) { testIdleTimeout(t, 10*time.Millisecond) })
}

func testIdleTimeout(t *testing.T, parkAfter time.Duration) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const ticks = 25 // 1s of trickle
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for range ticks {
			if _, err := c.Write([]byte{'.'}); err != nil {
				return
			}
			time.Sleep(40 * time.Millisecond)
		}
		io.Copy(io.Discard, c) // then quiet until the balancer closes
	}()
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: newPool(t, "p", "", lb.HealthCheck{}, ln.Addr().String())})
	addr, _ := startServer(t, Config{Router: router, IdleTimeout: 200 * time.Millisecond, parkAfter: parkAfter})

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.Write(captureHello(t, &tls.Config{ServerName: "a.example.test"}))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(bufio.NewReader(c))
	if len(got) != ticks {
		t.Fatalf("got %d of %d trickled bytes before close (err %v): the idle timer fired on a one-way stream", len(got), ticks, err)
	}
	if isTimeout(err) {
		t.Fatal("the balancer never closed the idle connection")
	}
	// 25 ticks of 40ms, then the idle timeout: not much later.
	if took := time.Since(start); took > ticks*40*time.Millisecond+200*time.Millisecond+time.Second {
		t.Fatalf("closed %v after the hello: the idle timeout came late", took)
	}
}

func BenchmarkRelayThroughput(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	hello := captureHello(b, &tls.Config{ServerName: "a.example.test"})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.CopyN(io.Discard, c, int64(len(hello)))
		io.Copy(io.Discard, c)
		c.Write([]byte{1}) // done
	}()
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: newPool(b, "p", "", lb.HealthCheck{}, ln.Addr().String())})
	addr, _ := startServer(b, Config{Router: router})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.Write(hello)
	buf := make([]byte, 256<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	io.ReadFull(c, make([]byte, 1))
}

// l7Stub stands in for the L7 front door: it reads the replayed
// ClientHello and answers with its server name and the client's address.
type l7Stub struct{}

func (h *l7Stub) ServeConn(_ context.Context, c net.Conn) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	hello, err := PeekClientHello(bufio.NewReader(c), 16<<10)
	if err != nil {
		return
	}
	fmt.Fprintf(c, "l7 got %s from %s\n", hello.ServerName, c.RemoteAddr())
}

func TestHandlerRouteGetsReplayedHello(t *testing.T) {
	be := startTLSBackend(t, "node-a", false)
	router, err := NewRouter([]Route{
		{Name: "l7", ServerNames: []string{"app.example.test"}, Handler: &l7Stub{}},
	}, &Route{Name: "default", Pool: newPool(t, "p", "", lb.HealthCheck{}, be.addr)})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := startServer(t, Config{Router: router})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(captureHello(t, &tls.Config{ServerName: "app.example.test"}))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if want := "l7 got app.example.test from " + c.LocalAddr().String() + "\n"; err != nil || line != want {
		t.Fatalf("handler answered %q, %v; want %q", line, err, want)
	}
}

// TestHandlerRouteSeesTheUpstreamClient: behind a trusted balancer that
// sends PROXY headers, the handler must see the client the header names,
// not the balancer.
func TestHandlerRouteSeesTheUpstreamClient(t *testing.T) {
	be := startTLSBackend(t, "node-a", false)
	router, err := NewRouter([]Route{
		{Name: "l7", ServerNames: []string{"app.example.test"}, Handler: &l7Stub{}},
	}, &Route{Name: "default", Pool: newPool(t, "p", "", lb.HealthCheck{}, be.addr)})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := startServer(t, Config{Router: router, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := net.TCPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.9:5555"))
	if _, err := proxyproto.HeaderProxyFromAddrs(2, client, c.RemoteAddr()).WriteTo(c); err != nil {
		t.Fatal(err)
	}
	c.Write(captureHello(t, &tls.Config{ServerName: "app.example.test"}))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "l7 got app.example.test from 198.51.100.9:5555\n" {
		t.Fatalf("handler answered %q, %v", line, err)
	}
}

func TestNewRouterReportsAllProblems(t *testing.T) {
	p := newPool(t, "p", "", lb.HealthCheck{}, "127.0.0.1:1")
	_, err := NewRouter([]Route{
		{Name: "a", ServerNames: []string{"a.example.test"}, Pool: p},
		{Name: "b", ServerNames: []string{"A.example.test", "bad name"}, Pool: p},
		{Name: "c", ServerNames: []string{"*"}, Pool: p, ProxyProtocol: 3},
		{Name: "d", ServerNames: []string{"d.example.test"}},
	}, &Route{Name: "def", Pool: p, Handler: &l7Stub{}})
	if err == nil {
		t.Fatal("bad routes accepted")
	}
	for _, want := range []string{`"a.example.test" already routed by "a"`, `invalid server name "bad name"`, "PROXY protocol version 3", `route "d": set exactly one`, `route "def": set exactly one`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

// TestHalfClosedClientThatStopsReading: a client that sends its hello,
// half-closes and then never reads again must not pin the relay (two fds,
// two goroutines and a max_conns slot) while the backend keeps sending: the
// idle timeout also bounds a write that makes no progress.
func TestHalfClosedClientThatStopsReading(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	backendDone := make(chan struct{})
	go func() {
		defer close(backendDone)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		go io.Copy(io.Discard, c)
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 1<<20)
		for { // far more than the socket buffers hold
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	pool := newPool(t, "p", "", lb.HealthCheck{}, ln.Addr().String())
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: pool})
	addr, reg := startServer(t, Config{Router: router, IdleTimeout: 200 * time.Millisecond})

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // only at the end: the client stays open and silent
	if _, err := c.Write(captureHello(t, &tls.Config{ServerName: "a.example.test"})); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()

	b := pool.Backend("p-1")
	waitFor(t, "the relay to start", 5*time.Second, func() bool { return b.Active() == 1 })
	waitFor(t, "the stalled relay to end", 5*time.Second, func() bool {
		return b.Active() == 0 && testkit.Sum(t, reg, "iwalb_l4_connections_active") == 0
	})
	select {
	case <-backendDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend connection was not closed")
	}
}

// TestBytesCountedIncludeFirstWrite: client_to_backend counts every byte
// the backend received, including the PROXY header and the peeked hello
// that went out in the dial's first write.
func TestBytesCountedIncludeFirstWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		got <- len(b)
	}()
	router, _ := NewRouter(nil, &Route{Name: "all", ProxyProtocol: 1, Pool: newPool(t, "p", "", lb.HealthCheck{}, ln.Addr().String())})
	addr, reg := startServer(t, Config{Router: router})

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hello := captureHello(t, &tls.Config{ServerName: "a.example.test"})
	c.Write(append(clone(hello), "application bytes"...))
	time.Sleep(50 * time.Millisecond)
	c.Write([]byte("more application bytes")) // most likely read by the relay itself
	c.(*net.TCPConn).CloseWrite()
	var received int
	select {
	case received = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("backend got no EOF")
	}
	if received <= len(hello)+len("application bytesmore application bytes") {
		t.Fatalf("backend received %d bytes: no PROXY header?", received)
	}
	waitFor(t, "the relay to end", 5*time.Second, func() bool { return testkit.Sum(t, reg, "iwalb_l4_connections_active") == 0 })
	if n := testkit.Sum(t, reg, "iwalb_l4_bytes_total", "direction=client_to_backend"); n != float64(received) {
		t.Errorf("client_to_backend bytes = %v, the backend received %d", n, received)
	}
}

// TestPeekTimeoutBehindTrustedUpstream: a trusted upstream that stalls
// before or inside its PROXY header is a peek timeout, not a bad header.
func TestPeekTimeoutBehindTrustedUpstream(t *testing.T) {
	be := startTLSBackend(t, "node-a", false)
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: newPool(t, "p", "", lb.HealthCheck{}, be.addr)})
	addr, reg := startServer(t, Config{Router: router, PeekTimeout: 200 * time.Millisecond,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	tests := []struct {
		name string
		send []byte
	}{
		{"silent", nil},
		{"partial PROXY v2 signature", []byte("\r\n\r\n\x00")},
		{"PROXY v2 header cut short", []byte("\r\n\r\n\x00\r\nQUIT\n\x21")}, // signature, version and command
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tt.send)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.Read(make([]byte, 1)); n != 0 || isTimeout(err) {
				t.Fatalf("stalled connection not closed: %d, %v", n, err)
			}
			waitFor(t, "the reject to be counted", 2*time.Second, func() bool {
				return testkit.Sum(t, reg, "iwalb_l4_rejected_total") == float64(i+1)
			})
			if got := testkit.Sum(t, reg, "iwalb_l4_rejected_total", "reason=peek_timeout"); got != float64(i+1) {
				t.Errorf("peek_timeout rejects = %v, want %d (bad_proxy_header: %v)", got, i+1,
					testkit.Sum(t, reg, "iwalb_l4_rejected_total", "reason=bad_proxy_header"))
			}
		})
	}
}
