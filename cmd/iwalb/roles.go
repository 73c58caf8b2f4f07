package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/iwalb/iwalb/authnode"
	"github.com/iwalb/iwalb/cmd/iwalb/internal/config"
	"github.com/iwalb/iwalb/l4"
	"github.com/iwalb/iwalb/l7redirect"
	"github.com/iwalb/iwalb/lb"
)

// role is one part of the appliance: the auth node, an L4 listener, an L7
// front door, the admin API or the metrics. A configuration builds its
// roles without sockets; the process binds their addresses and serves
// them, and on reload hands a running role its successor's configuration.
// Adding a role means one type here and one block in build.
type role interface {
	// name identifies the role across reloads ("l4 listener public").
	name() string
	// addrs are the addresses it listens on, in a fixed order; "" for
	// one that is not configured. A reload that changes them starts a new
	// role on new listeners and drains the old one.
	addrs() []string
	// stage is when the role stops at shutdown (stageL4 first).
	stage() int
	// serve serves lns (as addrs gave them; nil for "") until ctx ends,
	// then stops accepting and lets what is in flight finish.
	serve(ctx context.Context, lns []net.Listener) error
	// update makes next's configuration the running role's, for the
	// connections and requests that come next. next has the same name and
	// addresses and was built (so checked) by the same build; update
	// cannot fail.
	update(next role)
}

// build makes f's roles, without sockets, beside the running ones (whose
// pools the new ones take state from, and whose front doors' hand-off
// listeners the new L4 routes reach when the door stays where it is).
// Anything a role would refuse is refused here, before anything changes.
func (p *process) build(f *config.File) (generation, error) {
	set, err := f.Pools(p.pools, lb.Options{Logger: p.log.With("role", "pools")})
	if err != nil {
		return generation{}, fmt.Errorf("pools: %w", err)
	}
	g := generation{pools: set}
	if cfg, ok := f.AuthNode(); ok {
		cfg.DrainTimeout = f.DrainTimeout()
		r, err := p.buildNode(cfg)
		if err != nil {
			return generation{}, err
		}
		g.roles = append(g.roles, r)
	}
	doors, err := f.L7Redirect(set)
	if err != nil {
		return generation{}, err // "l7redirect listener sso: ..."
	}
	handed := map[string]l4.ConnHandler{}
	for _, d := range doors {
		r, err := p.buildDoor(d, f.DrainTimeout())
		if err != nil {
			return generation{}, err
		}
		handed[d.Name] = r.handed
		g.roles = append(g.roles, r)
	}
	listeners, err := f.L4(set, handed)
	if err != nil {
		return generation{}, err // "l4 listener public: ..."
	}
	for _, l := range listeners {
		r, err := p.buildL4(l, f.DrainTimeout())
		if err != nil {
			return generation{}, err
		}
		g.roles = append(g.roles, r)
	}
	if a := f.Admin(); a.Listen != "" {
		log := p.log.With("role", "admin")
		g.roles = append(g.roles, p.buildPrivate("admin", a, adminHandler(p.pools.Active, p.reload, p.reg, log), log))
	}
	if m := f.Metrics(); m.Listen != "" {
		g.roles = append(g.roles, p.buildPrivate("metrics", m, metricsHandler(p.reg), p.log.With("role", "metrics")))
	}
	return g, nil
}

// nodeRole is the auth node.
type nodeRole struct {
	node *authnode.Node
	cfg  authnode.Config
	// next is what a reload prepared for the running node; nil for a new
	// node.
	next *authnode.Pending
}

// buildNode makes the auth node of cfg. For a running node it loads and
// checks cfg (and the files it names, which may have changed under the
// same names) without changing the node; update swaps it in, the node
// keeping its stores, replay cache and listener. A change that takes a
// restart (its listen address, say) is refused here.
func (p *process) buildNode(cfg authnode.Config) (role, error) {
	if live, ok := p.roles[roleAuthNode]; ok {
		running := live.role.(*nodeRole)
		next, err := running.node.Prepare(cfg)
		if err != nil {
			return nil, err // it names the node
		}
		// Dropped without Apply (another role refused the reload),
		// next holds nothing that needs closing.
		return &nodeRole{node: running.node, cfg: cfg, next: next}, nil
	}
	// authnode.New adds role=authnode to the logger itself.
	node, err := authnode.New(cfg, authnode.Options{Logger: p.log, Registerer: p.reg})
	if err != nil {
		return nil, err // it names the node
	}
	return &nodeRole{node: node, cfg: cfg}, nil
}

const roleAuthNode = "authnode"

func (r *nodeRole) name() string    { return roleAuthNode }
func (r *nodeRole) addrs() []string { return []string{r.cfg.Listen} }
func (r *nodeRole) stage() int      { return stageOthers }
func (r *nodeRole) serve(ctx context.Context, lns []net.Listener) error {
	return r.node.Serve(ctx, lns[0])
}
func (r *nodeRole) update(next role) {
	n := next.(*nodeRole)
	r.node.Apply(n.next)
	r.cfg = n.cfg
}

// l4Role is one L4 listener.
type l4Role struct {
	srv    *l4.Server
	cfg    l4.Config
	listen string
	drain  time.Duration
	log    *slog.Logger
}

func (p *process) buildL4(l config.L4Listener, drain time.Duration) (role, error) {
	log := p.log.With("role", "l4")
	// New checks the configuration; only a new listener serves with this
	// server, a running one takes cfg with Update.
	srv, err := l4.New(l.Config, l4.Options{Logger: log, Metrics: p.l4m})
	if err != nil {
		return nil, err // l4 names the listener
	}
	return &l4Role{srv: srv, cfg: l.Config, listen: l.Listen, drain: drain,
		log: log.With("listener", l.Config.Name)}, nil
}

func (r *l4Role) name() string    { return "l4 listener " + r.cfg.Name }
func (r *l4Role) addrs() []string { return []string{r.listen} }
func (r *l4Role) stage() int      { return stageL4 }
func (r *l4Role) serve(ctx context.Context, lns []net.Listener) error {
	return serveL4(ctx, r.srv, lns[0], r.drain, r.log)
}
func (r *l4Role) update(next role) {
	n := next.(*l4Role)
	if err := r.srv.Update(n.cfg); err != nil {
		r.log.Error("l4 listener kept its configuration", "err", err) // New accepted it: a bug
		return
	}
	r.cfg, r.drain = n.cfg, n.drain
}

// serveL4 runs one L4 listener until ctx is cancelled, then stops accepting
// and lets the relayed connections end by themselves for up to drain before
// it closes them.
func serveL4(ctx context.Context, srv *l4.Server, ln net.Listener, drain time.Duration, log *slog.Logger) error {
	// l4.Server.Serve closes its connections when its context ends, so it
	// gets one that outlives ctx by the drain.
	connCtx, closeConns := context.WithCancel(context.WithoutCancel(ctx))
	defer closeConns()
	served := make(chan error, 1)
	go serveL4Conns(connCtx, srv, ln, served)
	log.Info("l4 listening", "addr", ln.Addr().String())
	select {
	case err := <-served:
		return fmt.Errorf("serve l4 on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	// Serve returns once the connections it has accepted have ended; the
	// error it returns then only says that the listener was closed.
	ln.Close()
	start := time.Now()
	log.Info("l4 stopped accepting; draining relayed connections", "addr", ln.Addr().String(), "timeout", drain)
	t := time.NewTimer(drain)
	defer t.Stop()
	select {
	case <-served:
		log.Info("l4 drained", "took", time.Since(start).Round(time.Millisecond))
	case <-t.C:
		log.Warn("l4 drain timed out; closing relayed connections", "timeout", drain)
		closeConns()
		<-served
	}
	return nil
}

// serveL4Conns is srv.Serve as a named goroutine, so stack dumps read well.
func serveL4Conns(ctx context.Context, srv *l4.Server, ln net.Listener, done chan<- error) {
	done <- srv.Serve(ctx, ln)
}

// doorRole is one L7 front door: its HTTPS listener (if it has one), the
// connections L4 routes hand it, and its plain-HTTP listener (if any).
type doorRole struct {
	cfg      config.L7Listener
	handler  *l7redirect.Handler
	redirect *l7redirect.HTTPSRedirect // nil without a plain-HTTP listener
	server   *l7redirect.Server
	certs    *l7redirect.TLSSwitch
	handed   *l4.HandoffListener
	// proxy is the PROXY-header policy of its listeners, which a reload
	// swaps: nil for no PROXY protocol, else the trusted sources.
	proxy   atomic.Pointer[[]netip.Prefix]
	metrics *l7redirect.Metrics
	log     *slog.Logger
}

// buildDoor makes the front door d. A running door on the same addresses
// keeps its hand-off listener, so that the L4 routes built beside it reach
// the door that keeps serving.
func (p *process) buildDoor(d config.L7Listener, drain time.Duration) (*doorRole, error) {
	log := p.log.With("role", "l7redirect")
	opts := l7redirect.Options{Logger: log, Metrics: p.l7m}
	r := &doorRole{cfg: d, metrics: p.l7m, log: log.With("frontdoor", d.Name)}
	var err error
	// l7redirect names the front door in its errors.
	if r.handler, err = l7redirect.New(d.Config, opts); err != nil {
		return nil, err
	}
	if d.HTTPRedirectListen != "" {
		if r.redirect, err = l7redirect.NewRedirect(redirectConfig(d), opts); err != nil {
			return nil, err
		}
	}
	if r.certs, err = l7redirect.NewTLSSwitch(d.TLS, d.TicketKeyRotation); err != nil {
		return nil, fmt.Errorf("front door %s: %w", d.Name, err)
	}
	r.server = &l7redirect.Server{Name: d.Name, Logger: r.log, Metrics: p.l7m, ShutdownTimeout: drain}
	r.server.SetLimits(d.MaxConns, d.MaxConnsPerSource, trustedOf(d))
	// Inside the connection caps, which then count the balancer (exempt
	// from the per-source cap) rather than wait for its header in the
	// accept loop.
	r.server.WrapListener = func(ln net.Listener) net.Listener { return proxyListener(ln, r.proxy.Load) }
	r.setProxy(d)
	if running, ok := p.roles[doorName(d.Name)].roleOrNil().(*doorRole); ok && slices.Equal(running.addrs(), r.addrs()) {
		r.handed = running.handed
	} else {
		r.handed = l4.NewHandoffListener(nil)
	}
	return r, nil
}

// redirectConfig is the plain-HTTP listener's part of d.
func redirectConfig(d config.L7Listener) l7redirect.RedirectConfig {
	return l7redirect.RedirectConfig{Name: d.Name, Names: d.Names, Port: d.HTTPSPort, MaxRequestTarget: d.Config.MaxRequestTarget}
}

// trustedOf returns the sources exempt from d's per-source cap: the
// balancers whose PROXY headers it trusts.
func trustedOf(d config.L7Listener) []netip.Prefix {
	if !d.ProxyProtocol {
		return nil
	}
	return d.ProxyTrusted
}

func (r *doorRole) setProxy(d config.L7Listener) {
	if !d.ProxyProtocol {
		r.proxy.Store(nil)
		return
	}
	trusted := slices.Clone(d.ProxyTrusted)
	r.proxy.Store(&trusted)
}

func doorName(name string) string { return "l7redirect " + name }

// roleOrNil returns l's role, or nil for a nil l.
func (l *liveRole) roleOrNil() role {
	if l == nil {
		return nil
	}
	return l.role
}

func (r *doorRole) name() string    { return doorName(r.cfg.Name) }
func (r *doorRole) addrs() []string { return []string{r.cfg.Listen, r.cfg.HTTPRedirectListen} }
func (r *doorRole) stage() int      { return stageOthers }

// serve runs the front door's servers until ctx is cancelled, then shuts
// them down gracefully; if one fails, it stops the others and returns its
// error.
func (r *doorRole) serve(ctx context.Context, lns []net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 3)
	n := 0
	start := func(ln net.Listener, h http.Handler, tlsConfig *tls.Config, what string) {
		n++
		go serveFrontDoor(ctx, r.server.Serve, ln, h, tlsConfig, done)
		r.log.Info("l7redirect listening", "addr", ln.Addr().String(), "serves", what)
	}
	if lns[0] != nil {
		start(lns[0], r.handler, r.certs.Config(), "https")
	}
	n++
	go serveFrontDoor(ctx, r.server.ServeHanded, r.handed, r.handler, r.certs.Config(), done)
	r.log.Info("l7redirect listening", "addr", r.handed.Addr().String(), "serves", "https from l4 routes")
	if lns[1] != nil {
		start(lns[1], r.redirect, nil, "http redirect to https")
	}
	var first error
	for range n {
		if err := <-done; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// update takes next's rules, names, certificates, limits and PROXY policy;
// build made next from the same configuration, so none of them is refused.
func (r *doorRole) update(next role) {
	n := next.(*doorRole)
	errs := []error{r.handler.Update(n.cfg.Config), r.certs.Set(n.cfg.TLS, n.cfg.TicketKeyRotation)}
	if r.redirect != nil {
		errs = append(errs, r.redirect.Update(redirectConfig(n.cfg)))
	}
	if err := errors.Join(errs...); err != nil {
		r.log.Error("front door kept part of its configuration", "err", err) // build accepted it: a bug
	}
	r.server.SetLimits(n.cfg.MaxConns, n.cfg.MaxConnsPerSource, trustedOf(n.cfg))
	r.setProxy(n.cfg)
	r.cfg = n.cfg
}

// retire forgets the series of a front door that left the configuration,
// once it has stopped serving.
func (r *doorRole) retire() { r.metrics.Forget(r.cfg.Name) }

// serveFrontDoor is Server.Serve (or ServeHanded) as a named goroutine, so
// stack dumps read well.
func serveFrontDoor(ctx context.Context, serve func(context.Context, net.Listener, http.Handler, *tls.Config) error,
	ln net.Listener, h http.Handler, tlsConfig *tls.Config, done chan<- error) {
	done <- serve(ctx, ln, h, tlsConfig)
}

// proxyListener reads PROXY headers as policy says at each connection:
// nil means the listener takes no PROXY protocol (nothing is read); else
// a header is accepted only from the trusted sources, whose header's client
// address then replaces theirs, and refused from anyone else, since it
// would let a client forge its address.
func proxyListener(ln net.Listener, policy func() *[]netip.Prefix) net.Listener {
	connPolicy := func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
		trusted := policy()
		if trusted == nil {
			return proxyproto.SKIP, nil
		}
		if ap, err := netip.ParseAddrPort(o.Upstream.String()); err == nil {
			for _, p := range *trusted {
				if p.Contains(ap.Addr().Unmap()) {
					return proxyproto.USE, nil
				}
			}
		}
		return proxyproto.REJECT, nil
	}
	return &proxyproto.Listener{Listener: ln, ConnPolicy: connPolicy, ReadHeaderTimeout: 10 * time.Second}
}
