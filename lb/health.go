package lb

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"sync"
	"time"
)

// Defaults of a HealthCheck's zero fields. DefaultInterval is not one of
// them (a zero Interval means no active checks): it is what a
// configuration that asks for active checks without an interval gets.
const (
	DefaultInterval        = 2 * time.Second
	DefaultTimeout         = time.Second
	DefaultRise            = 2
	DefaultFall            = 3
	DefaultPassiveCooldown = 10 * time.Second
)

// HealthCheck configures a pool's health checks. Active checks run only when
// Interval is set; passive marking on dial failure is always on unless
// PassiveFall is negative.
type HealthCheck struct {
	// Interval between active checks of one backend; 0 disables active checks.
	Interval time.Duration
	// Timeout bounds one probe; 0 means DefaultTimeout (capped at
	// Interval).
	Timeout time.Duration
	// Rise is how many consecutive successful checks bring a down backend up;
	// 0 means DefaultRise.
	Rise int
	// Fall is how many consecutive failed active checks take an up backend
	// down; 0 means DefaultFall.
	Fall int
	// PassiveFall is how many consecutive dial failures reported with
	// ReportDialFailure take a backend down; 0 means Fall, negative disables
	// passive marking. Dial failures and failed active checks are counted
	// separately.
	PassiveFall int
	// PassiveCooldown is how long a passively ejected backend stays down when
	// the pool has no active checks (nothing else would bring it back);
	// 0 means DefaultPassiveCooldown.
	PassiveCooldown time.Duration
	// Probe performs one check; nil means TCPConnect.
	Probe Prober
}

func (h HealthCheck) withDefaults() (HealthCheck, error) {
	if h.Interval < 0 || h.Timeout < 0 || h.Rise < 0 || h.Fall < 0 || h.PassiveCooldown < 0 {
		return h, errors.New("health check interval, timeout, rise, fall and passive cooldown must not be negative")
	}
	if h.Timeout == 0 {
		h.Timeout = DefaultTimeout
	}
	if h.Interval > 0 && h.Timeout > h.Interval {
		h.Timeout = h.Interval
	}
	if h.Rise == 0 {
		h.Rise = DefaultRise
	}
	if h.Fall == 0 {
		h.Fall = DefaultFall
	}
	if h.PassiveFall == 0 {
		h.PassiveFall = h.Fall
	}
	if h.PassiveCooldown == 0 {
		h.PassiveCooldown = DefaultPassiveCooldown
	}
	if h.Probe == nil {
		h.Probe = TCPConnect
	}
	return h, nil
}

// Prober checks one backend. It returns nil when the backend is healthy.
// Implementations must honour ctx, which carries the check's timeout.
type Prober interface {
	Probe(ctx context.Context, b *Backend) error
}

// ProberFunc adapts a function to Prober.
type ProberFunc func(ctx context.Context, b *Backend) error

// Probe calls f(ctx, b).
func (f ProberFunc) Probe(ctx context.Context, b *Backend) error { return f(ctx, b) }

// TCPConnect is the default probe: the backend is healthy if a TCP
// connection to its address succeeds.
var TCPConnect Prober = ProberFunc(func(ctx context.Context, b *Backend) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", b.Addr)
	if err != nil {
		return err
	}
	return c.Close()
})

// Run performs active health checks until ctx is cancelled, then returns
// once every check goroutine has ended. Without an Interval it just waits
// for ctx. Run must be called at most once.
func (p *Pool) Run(ctx context.Context) error {
	if p.health.Interval <= 0 {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	for _, b := range p.backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.checkLoop(ctx, b)
		}()
	}
	wg.Wait()
	return nil
}

// checkLoop checks one backend every interval. The first check is offset by
// a stable fraction of the interval so that many backends are not probed in
// lock step.
func (p *Pool) checkLoop(ctx context.Context, b *Backend) {
	h := fnv.New32a()
	h.Write([]byte(p.name + "/" + b.Name))
	offset := time.Duration(uint64(h.Sum32()) * uint64(p.health.Interval) >> 32)
	t := time.NewTimer(offset)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.CheckNow(ctx, b)
		t.Reset(p.health.Interval)
	}
}

// CheckNow runs one active probe of b and applies its result.
func (p *Pool) CheckNow(ctx context.Context, b *Backend) error {
	cctx, cancel := context.WithTimeout(ctx, p.health.Timeout)
	err := p.health.Probe.Probe(cctx, b)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: not the backend's fault
	}
	b.mu.Lock()
	b.lastCheck = p.now()
	b.mu.Unlock()
	if err != nil {
		b.checksFailed.Add(1)
		err = fmt.Errorf("health check %s %s: %w", b.Name, b.Addr, err)
		p.record(b, false, false, err.Error())
		return err
	}
	b.checksOK.Add(1)
	p.record(b, true, false, "")
	return nil
}
