package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/internal/testkit"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newTestPool(t *testing.T, policy PolicyName, bcs ...BackendConfig) *Pool {
	t.Helper()
	p, err := NewPool(Config{Name: "test", Policy: policy, Backends: bcs}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func backends(names ...string) []BackendConfig {
	var out []BackendConfig
	for i, n := range names {
		out = append(out, BackendConfig{Name: n, Addr: fmt.Sprintf("127.0.0.1:%d", 10000+i)})
	}
	return out
}

// clientIP returns a deterministic, well spread client address.
func clientIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// pick is Acquire as the tests of selection want it: the backend and the
// lease's Release.
func pick(p *Pool, c netip.Addr, skip ...*Backend) (*Backend, func(), error) {
	l, err := p.Acquire(c, skip...)
	if err != nil {
		return nil, func() {}, err
	}
	return l.Backend(), l.Release, nil
}

func pickName(t *testing.T, p *Pool, c netip.Addr) string {
	t.Helper()
	b, release, err := pick(p, c)
	if err != nil {
		t.Fatal(err)
	}
	release()
	return b.Name
}

func TestNewPoolReportsAllProblems(t *testing.T) {
	_, err := NewPool(Config{
		Name:   "p",
		Policy: "random",
		Backends: []BackendConfig{
			{Name: "a", Addr: "127.0.0.1:1"},
			{Name: "a", Addr: "127.0.0.1:2"},
			{Name: "b"},
			{Name: "c", Addr: "127.0.0.1:3", Weight: -1},
		},
		Health: HealthCheck{Rise: -1},
	}, Options{})
	if err == nil {
		t.Fatal("NewPool accepted a bad config")
	}
	for _, want := range []string{`"a": duplicate name`, `"b": address is empty`, `"c": weight`, `unknown policy "random"`, "must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestRoundRobinSmoothWeighted(t *testing.T) {
	bcs := backends("a", "b", "c")
	bcs[0].Weight = 5
	p := newTestPool(t, PolicyRoundRobin, bcs...)
	var got []string
	for range 14 {
		got = append(got, pickName(t, p, clientIP(1)))
	}
	// nginx's smooth weighted round-robin sequence for weights 5,1,1.
	want := "a a b a c a a a a b a c a a"
	if strings.Join(got, " ") != want {
		t.Errorf("sequence = %v, want %v", got, want)
	}
}

func TestRoundRobinSkipsUnusable(t *testing.T) {
	p := newTestPool(t, PolicyRoundRobin, backends("a", "b", "c")...)
	p.Backend("b").SetDrained(true)
	for range 10 {
		if n := pickName(t, p, clientIP(1)); n == "b" {
			t.Fatal("drained backend picked")
		}
	}
}

func TestLeastConnPicksLeastLoaded(t *testing.T) {
	p := newTestPool(t, PolicyLeastConn, backends("a", "b", "c")...)
	held := map[string][]func(){}
	for range 6 {
		b, rel, err := pick(p, clientIP(1))
		if err != nil {
			t.Fatal(err)
		}
		held[b.Name] = append(held[b.Name], rel)
	}
	for _, b := range p.Backends() {
		if b.Active() != 2 {
			t.Fatalf("after 6 picks %s has %d active, want 2 each", b.Name, b.Active())
		}
	}
	// Close b's two connections: the next two picks must both go to b.
	for _, rel := range held["b"] {
		rel()
	}
	for range 2 {
		b, rel, err := pick(p, clientIP(1))
		if err != nil {
			t.Fatal(err)
		}
		if b.Name != "b" {
			t.Fatalf("picked %s, want the least loaded b", b.Name)
		}
		defer rel()
	}
	for _, n := range []string{"a", "c"} {
		for _, rel := range held[n] {
			rel()
		}
	}
}

func TestMaxConnsDrainAndRelease(t *testing.T) {
	bcs := backends("a", "b")
	bcs[0].MaxConns = 1
	bcs[1].MaxConns = 1
	p := newTestPool(t, PolicyRoundRobin, bcs...)
	b1, rel1, err := pick(p, clientIP(1))
	if err != nil {
		t.Fatal(err)
	}
	b2, rel2, err := pick(p, clientIP(1))
	if err != nil {
		t.Fatal(err)
	}
	if b1 == b2 {
		t.Fatal("MaxConns=1 backend picked twice")
	}
	if _, _, err := pick(p, clientIP(1)); !errors.Is(err, ErrNoHealthyBackend) {
		t.Fatalf("third pick: err = %v, want ErrNoHealthyBackend", err)
	} else if !strings.Contains(err.Error(), "2 at max_conns") {
		t.Errorf("error %q does not say why", err)
	}
	rel1()
	rel1() // a second release must not free a slot it does not own
	if b1.Active() != 0 {
		t.Fatalf("active = %d after double release, want 0", b1.Active())
	}
	b1.SetDrained(true)
	if _, _, err := pick(p, clientIP(1)); !errors.Is(err, ErrNoHealthyBackend) {
		t.Fatalf("pick with one drained and one full: err = %v", err)
	}
	// Draining does not touch connections already picked.
	b2.SetDrained(true)
	if b2.Active() != 1 {
		t.Fatalf("drain dropped an existing connection: active = %d", b2.Active())
	}
	rel2()
	b1.SetDrained(false)
	if n := pickName(t, p, clientIP(1)); n != b1.Name {
		t.Fatalf("picked %s, want undrained %s", n, b1.Name)
	}
}

func TestMaxConnsUnderConcurrency(t *testing.T) {
	bcs := backends("a")
	bcs[0].MaxConns = 10
	p := newTestPool(t, PolicyLeastConn, bcs...)
	var mu sync.Mutex
	var rels []func()
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, rel, err := pick(p, clientIP(1)); err == nil {
				mu.Lock()
				rels = append(rels, rel)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(rels) != 10 || p.Backend("a").Active() != 10 {
		t.Fatalf("%d picks succeeded, active %d; want exactly MaxConns=10", len(rels), p.Backend("a").Active())
	}
	for _, r := range rels {
		r()
	}
}

func TestPickSkipsTriedBackends(t *testing.T) {
	p := newTestPool(t, PolicyClientIPHash, backends("a", "b")...)
	first, rel, _ := pick(p, clientIP(7))
	rel()
	second, rel, err := pick(p, clientIP(7), first)
	if err != nil {
		t.Fatal(err)
	}
	rel()
	if second == first {
		t.Fatal("retry got the backend it was told to skip")
	}
	if _, _, err := pick(p, clientIP(7), first, second); !errors.Is(err, ErrNoHealthyBackend) {
		t.Fatalf("all tried: err = %v", err)
	}
}

func TestHashRingIsSticky(t *testing.T) {
	p := newTestPool(t, PolicyClientIPHash, backends("a", "b", "c")...)
	for c := range 20 {
		want := pickName(t, p, clientIP(c))
		for range 1000 / 20 {
			if got := pickName(t, p, clientIP(c)); got != want {
				t.Fatalf("client %v moved from %s to %s", clientIP(c), want, got)
			}
		}
	}
	// IPv4 and its IPv4-mapped IPv6 form are one client.
	v4 := netip.MustParseAddr("192.0.2.10")
	if pickName(t, p, v4) != pickName(t, p, netip.AddrFrom16(v4.As16())) {
		t.Error("192.0.2.10 and ::ffff:192.0.2.10 hash differently")
	}
}

func TestHashRingRemovingANodeMovesOnlyItsClients(t *testing.T) {
	three := newTestPool(t, PolicyClientIPHash, backends("a", "b", "c")...)
	const clients = 3000
	before := make([]string, clients)
	share := map[string]int{}
	for i := range clients {
		before[i] = pickName(t, three, clientIP(i))
		share[before[i]]++
	}
	for n, s := range share {
		if s < clients/5 || s > clients/2 {
			t.Errorf("node %s got %d of %d clients; the ring is lopsided", n, s, clients)
		}
	}
	// Take c out of rotation and see who moves.
	three.Backend("c").SetDrained(true)
	moved := 0
	for i := range clients {
		after := pickName(t, three, clientIP(i))
		if after == before[i] {
			continue
		}
		moved++
		if before[i] != "c" {
			t.Fatalf("client %v moved from %s to %s, but only c went away", clientIP(i), before[i], after)
		}
	}
	if frac := float64(moved) / clients; frac < 0.20 || frac > 0.45 {
		t.Errorf("removing one node of three moved %.0f%% of clients, want about a third", 100*frac)
	}
	// A pool built without c maps everyone else exactly as before: the ring
	// depends on names, not on position or pool instance.
	two := newTestPool(t, PolicyClientIPHash, backends("a", "b")...)
	for i := range clients {
		if before[i] != "c" && pickName(t, two, clientIP(i)) != before[i] {
			t.Fatalf("client %v changed node in a pool rebuilt without c", clientIP(i))
		}
	}
}

func TestPassiveMarkingAndCooldown(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	p, err := NewPool(Config{Name: "p", Backends: backends("a", "b"), Health: HealthCheck{Fall: 2, PassiveCooldown: time.Minute}},
		Options{Logger: quietLogger(), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	a := p.Backend("a")
	p.reportDialFailure(a, errors.New("connection refused"))
	p.reportDialSuccess(a) // a success in between resets the run
	p.reportDialFailure(a, errors.New("connection refused"))
	if a.State() != StateUp {
		t.Fatal("non-consecutive failures ejected the backend")
	}
	p.reportDialFailure(a, errors.New("connection refused"))
	if a.State() != StateDown {
		t.Fatal("two consecutive dial failures did not eject the backend")
	}
	if st := a.Status(); !strings.Contains(st.LastError, "refused") {
		t.Errorf("status LastError = %q", st.LastError)
	}
	for range 10 {
		if pickName(t, p, clientIP(1)) != "b" {
			t.Fatal("down backend picked")
		}
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	seen := map[string]bool{}
	for range 4 {
		seen[pickName(t, p, clientIP(1))] = true
	}
	if !seen["a"] || a.State() != StateUp {
		t.Fatal("passively ejected backend did not return after the cooldown in a pool without active checks")
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestActiveHealthChecksEjectAndRestore(t *testing.T) {
	srv := testkit.StartCloser(t)
	reg := prometheus.NewPedanticRegistry()
	pools := NewRegistry()
	reg.MustRegister(pools)
	set, err := pools.NewSet([]Config{{
		Name:     "auth",
		Backends: []BackendConfig{{Name: "n1", Addr: srv.Addr()}},
		Health:   HealthCheck{Interval: 50 * time.Millisecond, Rise: 2, Fall: 2},
	}}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	pools.Activate(set)
	p := set.Pool("auth")
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()

	b := p.Backend("n1")
	waitFor(t, "first successful check", 2*time.Second, func() bool { return b.checksOK.Load() > 0 })
	srv.Stop()
	waitFor(t, "ejection", 2*time.Second, func() bool { return b.State() == StateDown })
	if got := b.checksFailed.Load(); got < 2 {
		t.Errorf("ejected after %d failed checks, want fall=2", got)
	}
	if _, _, err := pick(p, clientIP(1)); !errors.Is(err, ErrNoHealthyBackend) {
		t.Fatalf("pick from a pool whose only backend is down: %v", err)
	}
	srv.Start(t)
	waitFor(t, "return", 2*time.Second, func() bool { return b.State() == StateUp })
	if _, _, err := pick(p, clientIP(1)); err != nil {
		t.Fatalf("pick after return: %v", err)
	}

	changes := testkit.Samples(t, reg, "iwalb_lb_backend_state_changes_total")
	if changes["backend=n1,pool=auth,state=down"] != 1 || changes["backend=n1,pool=auth,state=up"] != 1 {
		t.Errorf("state changes = %v, want one down and one up", changes)
	}
	if up := testkit.Samples(t, reg, "iwalb_lb_backend_up"); up["backend=n1,pool=auth"] != 1 {
		t.Errorf("iwalb_lb_backend_up = %v", up)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	srv.Stop()
	waitFor(t, "health goroutines to end", 2*time.Second, func() bool { return runtime.NumGoroutine() <= base })
}

func TestSetSharesOneRegistryAndView(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	registry := NewRegistry()
	reg.MustRegister(registry)
	set, err := registry.NewSet([]Config{
		{Name: "auth", Backends: backends("n1", "n2")},
		{Name: "web", Backends: backends("n1", "n2")},
	}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	registry.Activate(set)
	if _, err := NewSet(set.Pool("auth"), set.Pool("auth")); err == nil {
		t.Error("NewSet accepted a duplicate pool name")
	}
	set.Pool("web").Backend("n2").SetDrained(true)
	st := set.Status()
	if len(st) != 2 || st[0].Healthy() != 2 || st[1].Healthy() != 1 || !st[1].Backends[1].Drained {
		t.Fatalf("status = %+v", st)
	}
	if up := testkit.Samples(t, reg, "iwalb_lb_backend_up"); len(up) != 4 {
		t.Fatalf("iwalb_lb_backend_up = %v, want 4 series", up)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := set.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkAcquire(b *testing.B) {
	for _, pol := range []PolicyName{PolicyRoundRobin, PolicyLeastConn, PolicyClientIPHash} {
		b.Run(string(pol), func(b *testing.B) {
			p, err := NewPool(Config{Name: "b", Policy: pol, Backends: backends("a", "b", "c", "d")}, Options{Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					_, rel, err := pick(p, clientIP(i))
					if err != nil {
						b.Fatal(err)
					}
					rel()
					i++
				}
			})
		})
	}
}

// TestChooseHonoursStateDrainAndMaxConns: a redirect's choice takes no
// slot, and the preferred backend (a sticky cookie's) is kept only while it
// could take a connection.
func TestChooseHonoursStateDrainAndMaxConns(t *testing.T) {
	p := newTestPool(t, PolicyRoundRobin,
		BackendConfig{Name: "a", Addr: "node-a.example.test:443", MaxConns: 1},
		BackendConfig{Name: "b", Addr: "127.0.0.1:443", FQDN: "b.example.test"})
	a, b := p.Backend("a"), p.Backend("b")
	if a.FQDN != "node-a.example.test" || b.FQDN != "b.example.test" {
		t.Fatalf("FQDNs %q, %q: want the Addr host when unset, else the configured name", a.FQDN, b.FQDN)
	}
	for range 3 {
		if got, err := p.Choose(clientIP(1), a); err != nil || got != a || a.Active() != 0 {
			t.Fatalf("Choose(prefer a) = %v, %v with %d active; want a and no slot taken", got, err, a.Active())
		}
	}
	// a at its MaxConns (an L4 connection holds it): the preference gives way.
	l, err := p.Acquire(clientIP(2), b)
	if err != nil || l.Backend() != a {
		t.Fatalf("Acquire skipping b = %v, %v", l, err)
	}
	if got, _ := p.Choose(clientIP(1), a); got != b {
		t.Fatalf("Choose(prefer a) with a full = %v, want b", got.Name)
	}
	l.Release()
	b.SetDrained(true)
	if got, _ := p.Choose(clientIP(1), b); got != a {
		t.Fatalf("Choose(prefer drained b) = %v, want a", got.Name)
	}
	other := newTestPool(t, PolicyRoundRobin, backends("x")...)
	if got, _ := p.Choose(clientIP(1), other.Backend("x")); got.pool != p {
		t.Fatal("Choose preferred another pool's backend")
	}
	a.SetDrained(true)
	if _, err := p.Choose(clientIP(1), nil); !errors.Is(err, ErrNoHealthyBackend) {
		t.Fatalf("Choose with every backend drained: %v", err)
	}
}

// TestLeaseFailedReleasesAndCounts: a failed dial frees the slot and counts
// toward a passive ejection; Release after it does nothing.
func TestLeaseFailedReleasesAndCounts(t *testing.T) {
	p := newTestPool(t, PolicyRoundRobin, backends("a")...)
	a := p.Backend("a")
	for i := range p.health.PassiveFall {
		l, err := p.Acquire(clientIP(1))
		if err != nil {
			t.Fatalf("acquire %d: %v", i, err)
		}
		l.Failed(errors.New("connection refused"))
		l.Release()
		if a.Active() != 0 {
			t.Fatalf("%d active after Failed and Release, want 0", a.Active())
		}
	}
	if a.State() != StateDown {
		t.Fatalf("after %d failed leases a is %v, want down", p.health.PassiveFall, a.State())
	}
	if _, err := p.Acquire(clientIP(1)); !errors.Is(err, ErrNoHealthyBackend) {
		t.Fatalf("Acquire with a down: %v", err)
	}
}

// TestDialSuccessesDoNotCancelFailingChecks: a node whose readiness check
// fails but which still accepts TCP must leave the pool after Fall checks,
// however much traffic reports successful dials in between.
func TestDialSuccessesDoNotCancelFailingChecks(t *testing.T) {
	p, err := NewPool(Config{
		Name:     "auth",
		Backends: backends("a", "b"),
		Health: HealthCheck{
			Interval: time.Hour, // checks are driven by hand below
			Fall:     3,
			Rise:     2,
			Probe: ProberFunc(func(context.Context, *Backend) error {
				return errors.New("GET /readyz: status 503")
			}),
		},
	}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	a := p.Backend("a")
	for i := 1; i <= 3; i++ {
		if a.State() != StateUp {
			t.Fatalf("down after %d failed checks, want fall=3", i-1)
		}
		if err := p.CheckNow(context.Background(), a); err == nil {
			t.Fatal("failing probe reported success")
		}
		for range 10 {
			p.reportDialSuccess(a) // traffic keeps flowing between checks
		}
	}
	if a.State() != StateDown {
		t.Fatal("3 failed readiness checks did not eject a backend that still accepts TCP")
	}
	if st := a.Status(); !strings.Contains(st.LastError, "503") {
		t.Errorf("status LastError = %q, want the check's error", st.LastError)
	}
}

// TestPassiveCooldownReturnsOnProbation: a node back from a passive
// cooldown is ejected again by its first dial failure, and only a successful
// dial restores the full PassiveFall allowance.
func TestPassiveCooldownReturnsOnProbation(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	p, err := NewPool(Config{Name: "p", Backends: backends("a"), Health: HealthCheck{PassiveFall: 3, PassiveCooldown: time.Minute}},
		Options{Logger: quietLogger(), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	a := p.Backend("a")
	fail := func(n int) {
		for range n {
			p.reportDialFailure(a, errors.New("i/o timeout"))
		}
	}
	comeBack := func() {
		t.Helper()
		advance(time.Minute)
		if n := pickName(t, p, clientIP(1)); n != "a" || a.State() != StateUp {
			t.Fatalf("backend not back after the cooldown: picked %s, state %v", n, a.State())
		}
	}
	fail(3)
	if a.State() != StateDown {
		t.Fatal("3 dial failures did not eject the backend")
	}
	comeBack()
	fail(1)
	if a.State() != StateDown {
		t.Fatal("a black-holed backend back from its cooldown took more than one failed dial to eject again")
	}
	if _, _, err := pick(p, clientIP(1)); !errors.Is(err, ErrNoHealthyBackend) {
		t.Fatalf("pick during the second cooldown: %v", err)
	}
	comeBack()
	p.reportDialSuccess(a) // the node really is back
	fail(2)
	if a.State() != StateUp {
		t.Fatal("after a successful dial, 2 failures ejected the backend; want PassiveFall=3")
	}
	fail(1)
	if a.State() != StateDown {
		t.Fatal("3 dial failures after probation did not eject the backend")
	}
}
