package l4

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/lb"
)

// TestMaxConnsCountsConnectionsInTheirPeek: with max_conns 3 and three
// clients stalled in their ClientHello, a fourth is closed at once (not at
// the peek timeout) and counted as over_limit, a flood of them yields one
// warning, and once one of the three leaves a new client is relayed.
func TestMaxConnsCountsConnectionsInTheirPeek(t *testing.T) {
	be := startTLSBackend(t, "node-a", false)
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: newPool(t, "p", "", lb.HealthCheck{}, be.addr)})
	var logs testkit.Buffer
	const peekTimeout = 20 * time.Second // far longer than "at once"
	addr, reg, _ := runServer(t, Config{Router: router, MaxConns: 3, PeekTimeout: peekTimeout}, logs.JSONLogger())
	open := func() float64 { return testkit.Sum(t, reg, "iwalb_l4_connections_open", "listener=test") }
	overLimit := func() float64 { return testkit.Sum(t, reg, "iwalb_l4_rejected_total", "reason=over_limit") }

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
	closedAtOnce := func(what string) { t.Helper(); refusedAtOnce(t, what, &net.Dialer{}, addr) }
	closedAtOnce("4th connection")
	if got := overLimit(); got != 1 {
		t.Fatalf("over_limit rejects = %v, want 1", got)
	}
	// A refused connection was accepted first. (The held ones count as
	// accepted in their own goroutines: wait for them.)
	waitFor(t, "4 accepted connections", 5*time.Second, func() bool {
		return testkit.Sum(t, reg, "iwalb_l4_connections_accepted_total") == 4
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
	warnings := logs.Records(t, "max_conns reached: refusing new connections")
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

func TestNewRefusesNegativeLimits(t *testing.T) {
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: newPool(t, "p", "", lb.HealthCheck{}, "127.0.0.1:1")})
	for _, cfg := range []Config{{MaxConns: -1}, {MaxConnsPerSource: -1}, {MaxHelloRecords: -1}} {
		cfg.Name, cfg.Router = "x", router
		if _, err := New(cfg, Options{}); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
	srv, err := New(Config{Name: "x", Router: router}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if srv.cfg.Load().MaxConns != DefaultMaxConns || srv.cfg.Load().MaxConnsPerSource != 0 || srv.cfg.Load().MaxHelloRecords != DefaultMaxHelloRecords {
		t.Errorf("defaults: MaxConns %d, MaxConnsPerSource %d, MaxHelloRecords %d; want %d, 0 (no limit), %d",
			srv.cfg.Load().MaxConns, srv.cfg.Load().MaxConnsPerSource, srv.cfg.Load().MaxHelloRecords, DefaultMaxConns, DefaultMaxHelloRecords)
	}
}

// refusedAtOnce dials addr with d and checks that the listener closes the
// connection at once, without waiting for a byte.
func refusedAtOnce(t *testing.T, what string, d *net.Dialer, addr string) {
	t.Helper()
	start := time.Now()
	d.Timeout = 5 * time.Second
	c, err := d.Dial("tcp", addr)
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

// from dials from the loopback address ip (127.0.0.0/8 is all loopback).
func from(ip string) *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
}

// TestMaxConnsPerSource: with max_conns_per_source 2, a client address
// holding two connections (still in their ClientHello) has a third reset
// at once and counted as over_source_limit, with one warning for a flood
// of them, while other addresses are relayed. A trusted upstream proxy is
// exempt from the per-source cap but not from max_conns. Once the client
// closes one of its two, it is relayed again.
func TestMaxConnsPerSource(t *testing.T) {
	be := startTLSBackend(t, "node-a", false)
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: newPool(t, "p", "", lb.HealthCheck{}, be.addr)})
	var logs testkit.Buffer
	addr, reg, _ := runServer(t, Config{
		Router:            router,
		MaxConns:          6,
		MaxConnsPerSource: 2,
		TrustedProxies:    []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")},
		PeekTimeout:       20 * time.Second, // far longer than "at once"
	}, logs.JSONLogger())
	open := func() float64 { return testkit.Sum(t, reg, "iwalb_l4_connections_open", "listener=test") }
	rejected := func(reason string) float64 {
		return testkit.Sum(t, reg, "iwalb_l4_rejected_total", "reason="+reason)
	}
	hello := captureHello(t, &tls.Config{ServerName: "a.example.test"})
	hold := func(ip string) net.Conn {
		t.Helper()
		c, err := from(ip).Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(hello[:10]); err != nil {
			t.Fatal(err)
		}
		return c
	}
	stillOpen := func(what string, cs ...net.Conn) {
		t.Helper()
		for i, c := range cs {
			c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
				t.Fatalf("%s %d: %v, want it still open", what, i, err)
			}
		}
	}

	// 127.0.0.2 holds two; its third, and a flood after it, are refused.
	held := []net.Conn{hold("127.0.0.2"), hold("127.0.0.2")}
	waitFor(t, "two connections open", 5*time.Second, func() bool { return open() == 2 })
	const flood = 10
	for i := range 1 + flood {
		refusedAtOnce(t, "connection "+strconv.Itoa(3+i)+" from 127.0.0.2", from("127.0.0.2"), addr)
	}
	if got := rejected(RejectOverSourceLimit); got != 1+flood {
		t.Errorf("over_source_limit rejects = %v, want %d", got, 1+flood)
	}
	if got := rejected(RejectOverLimit); got != 0 {
		t.Errorf("over_limit rejects = %v, want 0", got)
	}
	warnings := logs.Records(t, "max_conns_per_source reached: refusing a client's new connections")
	if len(warnings) != 1 {
		t.Fatalf("%d per-source warnings for %d refused connections, want 1 (rate-limited)", len(warnings), 1+flood)
	}
	w := warnings[0]
	if client, _ := w["client"].(string); w["level"] != "WARN" || w["listener"] != "test" || w["max_conns_per_source"] != 2.0 ||
		w["refused"] != 1.0 || !strings.HasPrefix(client, "127.0.0.2:") {
		t.Errorf("warning = %v, want level WARN, listener test, max_conns_per_source 2, refused 1, client 127.0.0.2:port", w)
	}
	if len(logs.Records(t, "max_conns reached: refusing new connections")) != 0 {
		t.Error("the per-source refusals were logged as max_conns")
	}
	stillOpen("held connection", held...)

	// Another address is relayed meanwhile.
	if cn, _, err := tlsThroughFrom(from("127.0.0.3"), addr, "a.example.test", rootsOf(be)); err != nil || cn != "node-a" {
		t.Fatalf("a client from another address: %q, %v; want relayed to node-a", cn, err)
	}
	waitFor(t, "the relayed connection to free its slot", 5*time.Second, func() bool { return open() == 2 })

	// The trusted proxy carries many clients: four connections, more than
	// any one client may hold, fill max_conns (6) ...
	var proxied []net.Conn
	for range 4 {
		proxied = append(proxied, hold("127.0.0.4"))
	}
	waitFor(t, "six connections open", 5*time.Second, func() bool { return open() == 6 })
	stillOpen("proxied connection", proxied...)
	// ... and max_conns still bounds it, and everyone else.
	refusedAtOnce(t, "a fifth from the trusted proxy", from("127.0.0.4"), addr)
	refusedAtOnce(t, "a first from 127.0.0.5", from("127.0.0.5"), addr)
	if got := rejected(RejectOverLimit); got != 2 {
		t.Errorf("over_limit rejects = %v, want 2", got)
	}
	if got := rejected(RejectOverSourceLimit); got != 1+flood {
		t.Errorf("over_source_limit rejects = %v, want still %d", got, 1+flood)
	}

	// 127.0.0.2 closes one of its two: it may connect again.
	proxied[0].Close()
	held[0].Close()
	waitFor(t, "two slots freed", 5*time.Second, func() bool { return open() == 4 })
	if cn, _, err := tlsThroughFrom(from("127.0.0.2"), addr, "a.example.test", rootsOf(be)); err != nil || cn != "node-a" {
		t.Fatalf("127.0.0.2 after closing one: %q, %v; want relayed to node-a", cn, err)
	}
	if got := rejected(RejectOverSourceLimit); got != 1+flood {
		t.Errorf("over_source_limit rejects = %v, want still %d", got, 1+flood)
	}
}
