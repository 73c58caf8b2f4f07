package l4

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/iwalb/iwalb/lb"
)

// TestMaxConnsCountsConnectionsInTheirPeek: with max_conns 3 and three
// clients stalled in their ClientHello, a fourth is closed at once (not at
// the peek timeout) and counted as over_limit, a flood of them yields one
// warning, and once one of the three leaves a new client is relayed.
func TestMaxConnsCountsConnectionsInTheirPeek(t *testing.T) {
	be := startTLSBackend(t, "node-a", false)
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: newPool(t, "p", "", lb.HealthCheck{}, be.addr)})
	var logs logSink
	const peekTimeout = 20 * time.Second // far longer than "at once"
	addr, reg, _ := runServer(t, Config{Router: router, MaxConns: 3, PeekTimeout: peekTimeout}, logs.logger())
	open := func() float64 { return metricValue(t, reg, "iwalb_l4_connections_open", "listener=test") }
	overLimit := func() float64 { return metricValue(t, reg, "iwalb_l4_rejected_total", "reason=over_limit") }

	// Three slowloris clients: a few bytes of a ClientHello, then nothing.
	hello := captureHello(t, &tls.Config{ServerName: "a.example.test"})
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(hello[:10]); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitFor(t, "three connections open", 5*time.Second, func() bool { return open() == 3 })

	// The fourth is closed before it sends anything.
	closedAtOnce := func(what string) {
		t.Helper()
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if errors.Is(err, syscall.ECONNRESET) {
			return // reset before connect even returned
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(start.Add(5 * time.Second))
		n, err := c.Read(make([]byte, 1))
		if n != 0 || isTimeout(err) {
			t.Fatalf("%s: over the limit, read %d bytes, %v; want the connection closed", what, n, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("%s: closed after %s, not at once", what, took)
		}
	}
	closedAtOnce("4th connection")
	if got := overLimit(); got != 1 {
		t.Fatalf("over_limit rejects = %v, want 1", got)
	}
	// A refused connection was accepted first. (The held ones count as
	// accepted in their own goroutines: wait for them.)
	waitFor(t, "4 accepted connections", 5*time.Second, func() bool {
		return metricValue(t, reg, "iwalb_l4_connections_accepted_total") == 4
	})
	if be.accepted.Load() != 0 {
		t.Error("the backend was dialed")
	}

	// A flood: every one is refused and counted, one warning says so.
	const flood = 20
	for i := range flood {
		closedAtOnce("flood connection " + string(rune('a'+i)))
	}
	if got := overLimit(); got != 1+flood {
		t.Errorf("over_limit rejects = %v, want %d", got, 1+flood)
	}
	warnings := logs.records(t, "max_conns reached: refusing new connections")
	if len(warnings) != 1 {
		t.Fatalf("%d over-limit warnings for %d refused connections, want 1 (rate-limited)", len(warnings), 1+flood)
	}
	if w := warnings[0]; w["level"] != "WARN" || w["max_conns"] != 3.0 || w["refused"] != 1.0 || w["listener"] != "test" {
		t.Errorf("warning = %v, want level WARN, listener test, max_conns 3, refused 1", w)
	}

	// The held connections are still in their peek: refusing others did
	// not touch them.
	for i, c := range held {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
			t.Fatalf("held connection %d: %v, want it still open", i, err)
		}
	}

	// One leaves: its slot is free once the balancer has closed it, and a
	// new client is relayed end to end.
	held[0].Close()
	waitFor(t, "the slot to be freed", 5*time.Second, func() bool { return open() == 2 })
	cn, greeting, err := tlsThrough(addr, "a.example.test", rootsOf(be))
	if err != nil {
		t.Fatalf("a client within the limit: %v", err)
	}
	if cn != "node-a" || greeting != "node-a" {
		t.Errorf("certificate %q, greeting %q; want node-a", cn, greeting)
	}
	if got := overLimit(); got != 1+flood {
		t.Errorf("over_limit rejects = %v after the slot was freed, want still %d", got, 1+flood)
	}
	waitFor(t, "the relayed connection to free its slot", 5*time.Second, func() bool { return open() == 2 })
	for _, c := range held[1:] {
		c.Close()
	}
	waitFor(t, "every slot free", 5*time.Second, func() bool { return open() == 0 })
}

func TestNewRefusesNegativeMaxConns(t *testing.T) {
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: newPool(t, "p", "", lb.HealthCheck{}, "127.0.0.1:1")})
	if _, err := New(Config{Name: "x", Router: router, MaxConns: -1}, Options{}); err == nil {
		t.Error("New accepted MaxConns -1")
	}
	srv, err := New(Config{Name: "x", Router: router}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if srv.cfg.MaxConns != DefaultMaxConns {
		t.Errorf("MaxConns 0 became %d, want %d", srv.cfg.MaxConns, DefaultMaxConns)
	}
}
