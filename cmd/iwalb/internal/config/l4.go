package config

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/iwalb/iwalb/internal/hostname"
	"github.com/iwalb/iwalb/l4"
	"github.com/iwalb/iwalb/lb"
)

// rawL4 is the l4 section; configs/l4.yaml documents it.
type rawL4 struct {
	At        pos             `yaml:"-"`
	Listeners []rawL4Listener `yaml:"listeners"`
}

type rawL4Listener struct {
	At                   pos        `yaml:"-"`
	Name                 str        `yaml:"name"`
	Listen               str        `yaml:"listen"`
	PeekTimeout          duration   `yaml:"peek_timeout"`
	MaxHelloBytes        integer    `yaml:"max_hello_bytes"`
	MaxHelloRecords      integer    `yaml:"max_hello_records"`
	DialTimeout          duration   `yaml:"dial_timeout"`
	DialAttempts         integer    `yaml:"dial_attempts"`
	IdleTimeout          duration   `yaml:"idle_timeout"`
	MaxConns             integer    `yaml:"max_conns"`
	MaxConnsPerSource    integer    `yaml:"max_conns_per_source"`
	TrustedProxies       strList    `yaml:"trusted_proxies"`
	Routes               []rawRoute `yaml:"routes"`
	DefaultPool          str        `yaml:"default_pool"`
	DefaultProxyProtocol str        `yaml:"default_proxy_protocol"`
}

type rawRoute struct {
	At            pos     `yaml:"-"`
	ServerNames   strList `yaml:"server_names"`
	Pool          str     `yaml:"pool"`
	ProxyProtocol str     `yaml:"proxy_protocol"`
	L7Redirect    str     `yaml:"l7redirect"`
}

// Limits on an l4 listener's ClientHello buffer: below minHelloBytes real
// browsers are refused (a ClientHello with a post-quantum key share is about
// 1.8 KB, and grows); package l4 allows at most 64 KiB.
const (
	minHelloBytes = 4 << 10
	maxHelloBytes = l4.MaxHelloSizeLimit
)

// L4Listener is one configured TLS-passthrough listener: the address to
// bind and the l4 configuration, whose Router is built over the pools given
// to File.L4.
type L4Listener struct {
	// Listen is the host:port to bind.
	Listen string
	// Config is the listener's configuration with defaults applied.
	Config l4.Config
}

// l4Listener is a validated listener whose routes still name their pools.
type l4Listener struct {
	listen string
	cfg    l4.Config // without Router
	routes []l4Route
	def    *l4Route
}

// l4Route is a route before its pool or L7 front door is looked up.
type l4Route struct {
	serverNames   []string // lower-case
	pool          string
	proxyProtocol int
	l7            string // the L7 front door's name, instead of pool
}

// name labels the route in l4's logs and metrics: the pool's name, which
// is what an operator looks for, or l7redirect/<front door>.
func (r l4Route) name() string {
	if r.l7 != "" {
		return "l7redirect/" + r.l7
	}
	return r.pool
}

// config builds the listener's l4.Config with its Router over set, and
// the routes to L7 front doors over doors (by front door name).
func (l l4Listener) config(set *lb.Set, doors map[string]l4.ConnHandler) (l4.Config, error) {
	route := func(r l4Route) (l4.Route, error) {
		if r.l7 != "" {
			h := doors[r.l7]
			if h == nil {
				return l4.Route{}, fmt.Errorf("l4 listener %s: no L7 front door %q", l.cfg.Name, r.l7)
			}
			return l4.Route{Name: r.name(), ServerNames: slices.Clone(r.serverNames), Handler: h}, nil
		}
		pool := set.Pool(r.pool)
		if pool == nil {
			return l4.Route{}, fmt.Errorf("l4 listener %s: no pool %q", l.cfg.Name, r.pool)
		}
		return l4.Route{Name: r.name(), ServerNames: slices.Clone(r.serverNames), Pool: pool, ProxyProtocol: r.proxyProtocol}, nil
	}
	var routes []l4.Route
	for _, r := range l.routes {
		rt, err := route(r)
		if err != nil {
			return l4.Config{}, err
		}
		routes = append(routes, rt)
	}
	var def *l4.Route
	if l.def != nil {
		rt, err := route(*l.def)
		if err != nil {
			return l4.Config{}, err
		}
		def = &rt
	}
	router, err := l4.NewRouter(routes, def)
	if err != nil {
		return l4.Config{}, fmt.Errorf("l4 listener %s: %w", l.cfg.Name, err)
	}
	cfg := l.cfg
	cfg.TrustedProxies = slices.Clone(cfg.TrustedProxies)
	cfg.Router = router
	return cfg, nil
}

// proxyVersions maps the configuration's names to PROXY protocol versions.
var proxyVersions = map[string]int{"none": 0, "v1": 1, "v2": 2}

// proxyUse remembers which PROXY version a pool was first given, and where,
// so that a second route sending it another version is caught: a backend
// expects a header or it does not.
type proxyUse struct {
	version int
	line    int
}

// l4 validates the l4 section against the pools (by name and the line of
// their definition) and the L7 front doors (by name), and returns its
// listeners. It marks the front doors that a route leads to.
func (c *checker) l4(r rawL4, pools map[string]int, doors map[string]*l7Listener) []l4Listener {
	if len(r.Listeners) == 0 {
		c.add(r.At.Line, "l4.listeners: at least one listener is required")
		return nil
	}
	var out []l4Listener
	names, addrs := map[string]int{}, map[string]int{}
	proxyByPool := map[string]proxyUse{}
	for i, rl := range r.Listeners {
		p := fmt.Sprintf("l4.listeners[%d]", i)
		c.labelName(rl.Name, rl.At, p, "listener name", "", names)
		if c.needStr(rl.Listen, rl.At, p, "listen") && c.hostPort(rl.Listen, p+".listen") {
			if first, dup := addrs[rl.Listen.V]; dup {
				c.add(rl.Listen.Line, "%s.listen: %s is already the address of the listener at line %d", p, rl.Listen.V, first)
			}
			addrs[rl.Listen.V] = rl.Listen.Line
		}
		l := l4Listener{listen: rl.Listen.V, cfg: c.l4Settings(rl, p)}
		seen := map[string]int{} // server name → line
		for j, rr := range rl.Routes {
			rt := c.l4Route(rr, fmt.Sprintf("%s.routes[%d]", p, j), seen, pools, doors, proxyByPool, rl.Listen.V)
			l.routes = append(l.routes, rt)
		}
		if rl.DefaultPool.Set && rl.DefaultPool.V != "" {
			def := l4Route{pool: rl.DefaultPool.V, proxyProtocol: c.proxyVersion(rl.DefaultProxyProtocol, p+".default_proxy_protocol")}
			if c.routePool(rl.DefaultPool, rl.At, p, "default_pool", pools) {
				c.sameProxy(proxyByPool, rl.DefaultPool, def.proxyProtocol, rl.DefaultProxyProtocol, p+".default_pool")
			}
			l.def = &def
		} else if rl.DefaultProxyProtocol.Set {
			c.add(rl.DefaultProxyProtocol.Line, "%s.default_proxy_protocol: applies only with default_pool", p)
		}
		if len(rl.Routes) == 0 && l.def == nil {
			c.add(rl.At.Line, "%s: routes nothing; add routes or a default_pool", p)
		}
		out = append(out, l)
	}
	return out
}

// l4Settings checks a listener's timeouts and limits (at path p) and
// returns its configuration without routes.
func (c *checker) l4Settings(rl rawL4Listener, p string) l4.Config {
	cfg := l4.Config{
		Name:            rl.Name.V,
		PeekTimeout:     c.positive(rl.PeekTimeout, p+".peek_timeout", l4.DefaultPeekTimeout),
		MaxHelloSize:    l4.DefaultMaxHelloSize,
		MaxHelloRecords: l4.DefaultMaxHelloRecords,
		DialTimeout:     c.positive(rl.DialTimeout, p+".dial_timeout", l4.DefaultDialTimeout),
		DialAttempts:    c.atLeastOne(rl.DialAttempts, p+".dial_attempts", l4.DefaultDialAttempts),
		IdleTimeout:     c.positive(rl.IdleTimeout, p+".idle_timeout", l4.DefaultIdleTimeout),
		TrustedProxies:  c.prefixes(rl.TrustedProxies, p+".trusted_proxies"),
		MaxConns:        l4.DefaultMaxConns,
	}
	if m := rl.MaxConns; m.Set {
		// 0 is refused rather than read as "no limit": an unbounded
		// listener is what the setting exists to prevent.
		cfg.MaxConns = m.V
		if m.V < 1 {
			c.add(m.Line, "%s.max_conns: must be a positive number, got %d", p, m.V)
		}
	}
	if m := rl.MaxConnsPerSource; m.Set {
		cfg.MaxConnsPerSource = m.V
		if m.V < 0 {
			c.add(m.Line, "%s.max_conns_per_source: must be 0 (no limit) or more, got %d", p, m.V)
		}
	}
	if r := rl.MaxHelloRecords; r.Set {
		// 0 is refused, not read as the default: it would look like
		// "no limit", which the setting exists to prevent.
		cfg.MaxHelloRecords = r.V
		if r.V < 1 {
			c.add(r.Line, "%s.max_hello_records: must be a positive number, got %d", p, r.V)
		}
	}
	if h := rl.MaxHelloBytes; h.Set {
		cfg.MaxHelloSize = h.V
		if h.V < minHelloBytes || h.V > maxHelloBytes {
			c.add(h.Line, "%s.max_hello_bytes: %d is out of range; use %d to %d (a browser's ClientHello with a post-quantum key share is near 2 KB)",
				p, h.V, minHelloBytes, maxHelloBytes)
		}
	}
	return cfg
}

// l4Route checks one route (at path rp) of the listener on listen: its
// server names, which seen (name → line, the listener's so far) must not
// hold yet, and its pool or L7 front door.
func (c *checker) l4Route(rr rawRoute, rp string, seen, pools map[string]int, doors map[string]*l7Listener,
	proxyByPool map[string]proxyUse, listen string) l4Route {
	rt := l4Route{pool: rr.Pool.V, proxyProtocol: c.proxyVersion(rr.ProxyProtocol, rp+".proxy_protocol")}
	if !rr.ServerNames.Set || len(rr.ServerNames.V) == 0 {
		c.need(false, rr.ServerNames.Line, rr.At, rp, "server_names")
	}
	for _, sn := range rr.ServerNames.V {
		n, ok := c.serverName(sn, rp+".server_names")
		if !ok {
			continue
		}
		if first, dup := seen[n]; dup {
			c.add(sn.Line, "%s.server_names: %q is already routed at line %d", rp, sn.V, first)
			continue
		}
		seen[n] = sn.Line
		rt.serverNames = append(rt.serverNames, n)
	}
	if rr.L7Redirect.Set {
		c.l4RouteToL7(rr, rp, &rt, doors, listen)
	} else if c.routePool(rr.Pool, rr.At, rp, "pool", pools) {
		c.sameProxy(proxyByPool, rr.Pool, rt.proxyProtocol, rr.ProxyProtocol, rp)
	}
	return rt
}

// l4RouteToL7 checks a route to an L7 front door: that door exists, the
// route names no pool and sends no PROXY header (the front door gets the
// connection itself), and each server name is one of the door's names, so
// its certificate covers it.
func (c *checker) l4RouteToL7(rr rawRoute, rp string, rt *l4Route, doors map[string]*l7Listener, listen string) {
	if rr.Pool.Set {
		c.add(rr.Pool.Line, "%s: give pool or l7redirect, not both", rp)
	}
	if rr.ProxyProtocol.Set {
		c.add(rr.ProxyProtocol.Line, "%s.proxy_protocol: applies to routes to a pool only; the L7 front door takes the connection itself", rp)
	}
	if !c.needStr(rr.L7Redirect, rr.At, rp, "l7redirect") {
		return
	}
	rt.pool, rt.l7 = "", rr.L7Redirect.V
	door := doors[rr.L7Redirect.V]
	if door == nil {
		known := make([]string, 0, len(doors))
		for n := range doors {
			known = append(known, n)
		}
		c.add(rr.L7Redirect.Line, "%s.l7redirect: no listener named %q under l7redirect.listeners%s", rp, rr.L7Redirect.V, listNames(known))
		return
	}
	if !door.routed && door.Listen == "" && door.HTTPSPort == 0 {
		// Browsers reach the door on this listener's port: the 301 of its
		// plain-HTTP listener sends them there.
		_, port, _ := net.SplitHostPort(listen)
		door.HTTPSPort, _ = strconv.Atoi(port)
	}
	door.routed = true
	for _, s := range rr.ServerNames.V {
		n := strings.ToLower(s.V)
		if !slices.Contains(rt.serverNames, n) || len(door.Names) == 0 {
			continue // refused above, or nothing to compare with
		}
		if !slices.ContainsFunc(door.Names, func(d string) bool { return d == n || hostname.Match(d, n) }) {
			c.add(s.Line, "%s.server_names: %q is none of the names of l7redirect listener %q (%s), so its certificates do not cover it",
				rp, s.V, door.Name, strings.Join(door.Names, ", "))
		}
	}
}

// proxyVersion parses none, v1 or v2; unset is none.
func (c *checker) proxyVersion(s str, path string) int {
	if !s.Set {
		return 0
	}
	v, ok := proxyVersions[s.V]
	if !ok {
		c.add(s.Line, "%s: unknown PROXY protocol %q; use none, v1 or v2", path, s.V)
	}
	return v
}

// serverName checks one name of a route and returns it lower-cased (SNI
// compares without case). A wildcard is "*." and a domain, and matches one
// more label, as in certificates.
func (c *checker) serverName(s str, path string) (string, bool) {
	n := strings.ToLower(s.V)
	if rest, ok := strings.CutPrefix(n, "*."); ok {
		if !hostname.ValidSNI(rest) {
			c.add(s.Line, "%s: %q is not a wildcard of the form *.<domain> (like *.example.test)", path, s.V)
			return "", false
		}
		return n, true
	}
	if strings.Contains(n, "*") {
		c.add(s.Line, "%s: %q is not a wildcard of the form *.<domain> (like *.example.test)", path, s.V)
		return "", false
	}
	if !hostname.ValidSNI(n) {
		c.add(s.Line, "%s: %q is not a host name (like lb.example.test)", path, s.V)
		return "", false
	}
	return n, true
}

// routePool checks that a route names a pool that the file defines.
func (c *checker) routePool(s str, sec pos, path, key string, pools map[string]int) bool {
	if !c.needStr(s, sec, path, key) {
		return false
	}
	if _, ok := pools[s.V]; !ok {
		known := make([]string, 0, len(pools))
		for n := range pools {
			known = append(known, n)
		}
		c.add(s.Line, "%s.%s: no pool named %q under pools%s", path, key, s.V, listNames(known))
		return false
	}
	return true
}

// sameProxy reports a pool that two routes send different PROXY versions.
func (c *checker) sameProxy(byPool map[string]proxyUse, pool str, version int, set str, path string) {
	line := set.Line
	if !set.Set {
		line = pool.Line
	}
	first, ok := byPool[pool.V]
	if !ok {
		byPool[pool.V] = proxyUse{version: version, line: line}
		return
	}
	if first.version != version {
		c.add(line, "%s: sends PROXY protocol %s to pool %q, but the route at line %d sends %s; its backends expect one or the other",
			path, proxyName(version), pool.V, first.line, proxyName(first.version))
	}
}

func proxyName(v int) string {
	for n, pv := range proxyVersions {
		if pv == v {
			return n
		}
	}
	return fmt.Sprint(v)
}

// listNames says which names exist, for a message about one that does not.
func listNames(ns []string) string {
	if len(ns) == 0 {
		return " (there are none)"
	}
	slices.Sort(ns)
	return " (defined: " + strings.Join(ns, ", ") + ")"
}
