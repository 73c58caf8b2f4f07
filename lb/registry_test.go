package lb

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/internal/testkit"
)

// TestRegistryKeepsStateAcrossReloads: a reload that keeps a backend keeps
// its health, drain, open connections and counters; a backend that moved
// keeps its drain and counters and starts healthy; a removed backend
// leaves the metrics; a connection leased before the reload is released
// on the state the new Set sees.
func TestRegistryKeepsStateAcrossReloads(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	r := NewRegistry()
	reg.MustRegister(r)
	opts := Options{Logger: quietLogger()}
	first, err := r.NewSet([]Config{
		{Name: "auth", Backends: backends("n1", "n2", "n3"), Health: HealthCheck{PassiveFall: 1}},
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.Activate(first)
	p := first.Pool("auth")
	n1, n2, n3 := p.Backend("n1"), p.Backend("n2"), p.Backend("n3")
	held, err := p.Acquire(clientIP(1), n2, n3) // a connection open on n1
	if err != nil || held.Backend() != n1 {
		t.Fatalf("acquire n1: %v %v", held, err)
	}
	held.Dialed()
	n2.SetDrained(true)
	l, _ := p.Acquire(clientIP(2), n1, n2)
	l.Failed(errors.New("connection refused")) // PassiveFall 1: n3 is down
	if n3.State() != StateDown {
		t.Fatalf("n3 is %v after a failed dial with passive_fall 1", n3.State())
	}

	// The reload: n1 stays, n2 moves to another address, n3 stays, n4 is
	// new; a second pool appears.
	moved := backends("n1", "n2", "n3", "n4")
	moved[1].Addr = "127.0.0.1:20001"
	second, err := r.NewSet([]Config{
		{Name: "auth", Backends: moved, Health: HealthCheck{PassiveFall: 1}},
		{Name: "web", Backends: backends("w1")},
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := testkit.Samples(t, reg, "iwalb_lb_backend_up"); len(got) != 3 {
		t.Fatalf("before Activate the metrics show %d backends, want the active Set's 3", len(got))
	}
	r.Activate(second)
	q := second.Pool("auth")
	if b := q.Backend("n1"); b.Active() != 1 || b.State() != StateUp {
		t.Errorf("n1 after the reload: %d active, %v; want the open connection and up", b.Active(), b.State())
	}
	if b := q.Backend("n2"); !b.Drained() || b.Addr != "127.0.0.1:20001" {
		t.Errorf("moved n2: drained %v at %s; want still drained, at its new address", b.Drained(), b.Addr)
	}
	if b := q.Backend("n3"); b.State() != StateDown {
		t.Errorf("n3 after the reload is %v, want still down", b.State())
	}
	if b := q.Backend("n4"); b.State() != StateUp || b.Active() != 0 || b.Drained() {
		t.Errorf("new n4: %+v", b.Status())
	}
	// The connection leased before the reload ends: the new Set sees it go.
	held.Release()
	if n := q.Backend("n1").Active(); n != 0 {
		t.Errorf("n1 has %d active after the old lease was released, want 0", n)
	}
	picks := testkit.Samples(t, reg, "iwalb_lb_backend_picks_total")
	if picks["backend=n1,pool=auth"] != 1 || picks["backend=n3,pool=auth"] != 1 || picks["backend=w1,pool=web"] != 0 {
		t.Errorf("picks after the reload = %v; want the counts kept", picks)
	}
	if fails := testkit.Samples(t, reg, "iwalb_lb_backend_dial_failures_total"); fails["backend=n3,pool=auth"] != 1 {
		t.Errorf("dial failures after the reload = %v", fails)
	}

	// A reload that drops n3: its series go.
	third, err := r.NewSet([]Config{{Name: "auth", Backends: backends("n1")}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.Activate(third)
	if up := testkit.Samples(t, reg, "iwalb_lb_backend_up"); len(up) != 1 || up["backend=n1,pool=auth"] != 1 {
		t.Errorf("after dropping backends and a pool: %v", up)
	}
	// A bad configuration builds nothing and leaves the active Set alone.
	if _, err := r.NewSet([]Config{{Name: "auth"}}, opts); err == nil {
		t.Fatal("a pool without backends was accepted")
	}
	if r.Active() != third {
		t.Fatal("a refused NewSet changed the active Set")
	}
}
