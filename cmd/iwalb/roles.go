package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
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
		r, err := p.buildNode(cfg)
		if err != nil {
			return generation{}, err
		}
		g.roles = append(g.roles, r)
	}
	doors, err := f.L7Redirect(set)
	if err != nil {
		return generation{}, fmt.Errorf("l7redirect: %w", err)
	}
	handed := map[string]l4.ConnHandler{}
	for _, d := range doors {
		r, err := p.buildDoor(d)
		if err != nil {
			return generation{}, err
		}
		handed[d.Name] = r.handed
		g.roles = append(g.roles, r)
	}
	listeners, err := f.L4(set, handed)
	if err != nil {
		return generation{}, fmt.Errorf("l4: %w", err)
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
		g.roles = append(g.roles, p.buildPrivate("admin", a, adminHandler(p.pools.Active, p.reload, log), log))
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
			return nil, fmt.Errorf("authnode: %w", err)
		}
		// Dropped without Apply (another role refused the reload),
		// next holds nothing that needs closing.
		return &nodeRole{node: running.node, cfg: cfg, next: next}, nil
	}
	// authnode.New adds role=authnode to the logger itself.
	node, err := authnode.New(cfg, authnode.Options{Logger: p.log, Registerer: p.reg})
	if err != nil {
		return nil, fmt.Errorf("authnode: %w", err)
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
		return nil, fmt.Errorf("l4: %w", err)
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
	tls      *certSwitch
	handed   *l7redirect.ConnListener
	log      *slog.Logger
}

// buildDoor makes the front door d. A running door on the same addresses
// keeps its hand-off listener, so that the L4 routes built beside it reach
// the door that keeps serving.
func (p *process) buildDoor(d config.L7Listener) (*doorRole, error) {
	log := p.log.With("role", "l7redirect", "frontdoor", d.Name)
	r := &doorRole{cfg: d, log: log, tls: newCertSwitch(d.TLS)}
	live, _ := p.roles[doorName(d.Name)]
	running, _ := live.roleOrNil().(*doorRole)
	sameAddrs := running != nil && running.addrs()[0] == d.Listen && running.addrs()[1] == d.HTTPRedirectListen
	var err error
	if sameAddrs {
		// Checked here, taken by the running door's handler in update:
		// its metrics are registered already.
		if _, err = l7redirect.New(d.Config, l7redirect.Options{Logger: log}); err != nil {
			return nil, fmt.Errorf("l7redirect: %w", err)
		}
		r.handed = running.handed
	} else {
		if r.handler, err = l7redirect.New(d.Config, l7redirect.Options{Logger: p.log.With("role", "l7redirect"), Registerer: p.reg}); err != nil {
			return nil, fmt.Errorf("l7redirect: %w", err)
		}
		r.handed = l7redirect.NewConnListener(nil)
	}
	if d.HTTPRedirectListen != "" && !sameAddrs {
		r.redirect, err = l7redirect.NewRedirect(l7redirect.RedirectConfig{
			Name: d.Name, Names: d.Names, Port: d.HTTPSPort, MaxRequestTarget: d.Config.MaxRequestTarget,
		}, l7redirect.Options{Logger: p.log.With("role", "l7redirect"), Registerer: p.reg})
		if err != nil {
			return nil, fmt.Errorf("l7redirect listener %s: %w", d.Name, err)
		}
	}
	conns, err := l7redirect.NewConnMetrics(d.Name, p.reg)
	if err != nil && !sameAddrs {
		return nil, fmt.Errorf("l7redirect: %w", err)
	}
	r.server = &l7redirect.Server{Logger: log, MaxConns: d.MaxConns, MaxConnsPerSource: d.MaxConnsPerSource, Metrics: conns}
	if d.ProxyProtocol {
		// Inside the connection caps, which then count the balancer
		// (exempt from the per-source cap) rather than wait for its
		// header in the accept loop.
		trusted := d.ProxyTrusted
		r.server.ExemptSources = trusted
		r.server.WrapListener = func(ln net.Listener) net.Listener { return proxyListener(ln, trusted) }
	}
	return r, nil
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
		go serveFrontDoor(ctx, r.server, ln, h, tlsConfig, done)
		r.log.Info("l7redirect listening", "addr", ln.Addr().String(), "serves", what)
	}
	if lns[0] != nil {
		start(lns[0], r.handler, r.tls.config(), "https")
	}
	start(r.handed, r.handler, r.tls.config(), "https from l4 routes")
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

func (r *doorRole) update(next role) {
	n := next.(*doorRole)
	if err := r.handler.Update(n.cfg.Config); err != nil {
		r.log.Error("front door kept its rules", "err", err) // New accepted them: a bug
		return
	}
	r.tls.set(n.cfg.TLS)
	r.cfg = n.cfg
}

// serveFrontDoor is Server.Serve as a named goroutine, so stack dumps read
// well.
func serveFrontDoor(ctx context.Context, srv *l7redirect.Server, ln net.Listener, h http.Handler, tlsConfig *tls.Config, done chan<- error) {
	done <- srv.Serve(ctx, ln, h, tlsConfig)
}

// certSwitch is a TLS configuration whose certificates a reload replaces:
// each new connection gets the current one.
type certSwitch struct{ cur atomic.Pointer[tls.Config] }

func newCertSwitch(c *tls.Config) *certSwitch {
	s := &certSwitch{}
	s.set(c)
	return s
}

func (s *certSwitch) set(c *tls.Config) { s.cur.Store(c) }

// config is what the server is given once.
func (s *certSwitch) config() *tls.Config {
	return &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return s.cur.Load(), nil }}
}

// proxyListener accepts a PROXY header only from trusted addresses, whose
// header's client address then replaces theirs; from anyone else a header
// is refused, since it would let a client forge its address.
func proxyListener(ln net.Listener, trusted []netip.Prefix) net.Listener {
	policy := func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
		if ap, err := netip.ParseAddrPort(o.Upstream.String()); err == nil {
			for _, p := range trusted {
				if p.Contains(ap.Addr().Unmap()) {
					return proxyproto.USE, nil
				}
			}
		}
		return proxyproto.REJECT, nil
	}
	return &proxyproto.Listener{Listener: ln, ConnPolicy: policy, ReadHeaderTimeout: 10 * time.Second}
}
