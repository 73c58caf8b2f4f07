package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/iwalb/iwalb/internal/hostname"
	"github.com/iwalb/iwalb/internal/tlspolicy"
	"github.com/iwalb/iwalb/l7redirect"
	"github.com/iwalb/iwalb/lb"
)

// rawL7 is the l7redirect section; configs/l7redirect.yaml documents it.
type rawL7 struct {
	At        pos             `yaml:"-"`
	Listeners []rawL7Listener `yaml:"listeners"`
}

type rawL7Listener struct {
	At                 pos              `yaml:"-"`
	Name               str              `yaml:"name"`
	Listen             str              `yaml:"listen"`
	Certificates       []rawCertKey     `yaml:"certificates"`
	TLS                rawL7TLS         `yaml:"tls"`
	Names              strList          `yaml:"names"`
	HTTPRedirectListen str              `yaml:"http_redirect_listen"`
	HTTPSPort          integer          `yaml:"https_port"`
	ProxyProtocol      rawProxyProtocol `yaml:"proxy_protocol"`
	StickyCookie       str              `yaml:"sticky_cookie"`
	CookieTTL          duration         `yaml:"cookie_ttl"`
	RetryAfter         duration         `yaml:"retry_after"`
	MaxRequestTarget   integer          `yaml:"max_request_target"`
	HSTSMaxAge         duration         `yaml:"hsts_max_age"`
	HSTSSubdomains     boolean          `yaml:"hsts_include_subdomains"`
	MaxConns           integer          `yaml:"max_conns"`
	MaxConnsPerSource  integer          `yaml:"max_conns_per_source"`
	Rules              []rawL7Rule      `yaml:"rules"`
	DefaultRule        rawL7Rule        `yaml:"default_rule"`
}

// The bounds of a front door's max_request_target. Below the minimum a
// sign-in URL with a return address may not fit. Above the maximum, with a
// browser's cookies and headers, a request nears the HTTP server's own
// limit of about 128 KiB on the request line and headers together, beyond
// which the server answers 431 itself.
const (
	minRequestTarget = 1 << 10
	maxRequestTarget = 64 << 10
)

// rawL7TLS is a listener's tls mapping: its settings besides the
// certificates, which certificates lists.
type rawL7TLS struct {
	At       pos            `yaml:"-"`
	Settings rawTLSSettings `yaml:",inline"`
}

type rawCertKey struct {
	At   pos `yaml:"-"`
	Cert str `yaml:"cert"`
	Key  str `yaml:"key"`
}

type rawL7Rule struct {
	At            pos     `yaml:"-"`
	Name          str     `yaml:"name"`
	Host          str     `yaml:"host"`
	PathPrefix    str     `yaml:"path_prefix"`
	Pool          str     `yaml:"pool"`
	RewritePrefix str     `yaml:"rewrite_prefix"`
	Port          integer `yaml:"port"`
}

// L7Listener is one configured L7 front door: its HTTPS and plain-HTTP
// addresses, certificates and names, and the l7redirect configuration,
// whose rules lead to the pools given to File.L7Redirect.
type L7Listener struct {
	// Name is the front door's name, which l4 routes refer to.
	Name string
	// Listen is the HTTPS host:port to bind; "" when the front door is
	// reached only through an L4 listener's route.
	Listen string
	// HTTPRedirectListen is the plain-HTTP host:port answering 301 to
	// HTTPS; "" for none.
	HTTPRedirectListen string
	// HTTPSPort is the port the 301 sends browsers to (443: left out of
	// the URL).
	HTTPSPort int
	// Names are the front door's own names (exact or *.domain), which its
	// certificates cover and the 301 listener answers for.
	Names []string
	// TLS holds the certificates, chosen by SNI, and the TLS settings.
	TLS *tls.Config
	// TicketKeyRotation is how often the session ticket key changes when
	// TLS has session tickets on.
	TicketKeyRotation time.Duration
	// ProxyProtocol says whether Listen and HTTPRedirectListen accept a
	// PROXY header, and only from ProxyTrusted.
	ProxyProtocol bool
	ProxyTrusted  []netip.Prefix
	// MaxConns and MaxConnsPerSource bound the connections each of Listen
	// and HTTPRedirectListen holds, as l7redirect.Server's fields do
	// (negative: no per-source bound).
	MaxConns          int
	MaxConnsPerSource int
	// Config is the front door's configuration with defaults applied.
	// Config.MaxRequestTarget also bounds the plain-HTTP listener's
	// requests.
	Config l7redirect.Config
}

// l7Listener is a validated front door whose rules still name their pools.
type l7Listener struct {
	L7Listener // without Config.Rules/Default and TLS
	certs      []tls.Certificate
	tls        tlspolicy.Settings
	rules      []l7Rule
	def        *l7Rule
	line       int  // of the listener, for the dry run
	routed     bool // an l4 route leads here
}

// l7Rule is a rule before its pool is looked up.
type l7Rule struct {
	rule l7redirect.Rule // without Pool
	pool string
	line int
}

// config builds the front door's runtime value with its rules over set.
func (l l7Listener) config(set *lb.Set) (L7Listener, error) {
	out := l.L7Listener
	out.Names = slices.Clone(l.Names)
	out.ProxyTrusted = slices.Clone(l.ProxyTrusted)
	out.TLS = &tls.Config{Certificates: slices.Clone(l.certs)}
	l.tls.Apply(out.TLS)
	out.TicketKeyRotation = l.tls.Rotation()
	rule := func(r l7Rule) (l7redirect.Rule, error) {
		pool := set.Pool(r.pool)
		if pool == nil {
			return l7redirect.Rule{}, fmt.Errorf("l7redirect listener %s: no pool %q", l.Name, r.pool)
		}
		rl := r.rule
		rl.Pool = pool
		return rl, nil
	}
	out.Config.Rules = nil
	for _, r := range l.rules {
		rl, err := rule(r)
		if err != nil {
			return L7Listener{}, err
		}
		out.Config.Rules = append(out.Config.Rules, rl)
	}
	if l.def != nil {
		rl, err := rule(*l.def)
		if err != nil {
			return L7Listener{}, err
		}
		out.Config.Default = &rl
	}
	return out, nil
}

// l7 validates the l7redirect section against the pools and returns its
// front doors. l4Addrs are the addresses the l4 section binds, which the
// front doors must not bind again.
func (c *checker) l7(r rawL7, pools []poolConfig, poolLines map[string]int, l4Addrs map[string]int) []l7Listener {
	if len(r.Listeners) == 0 {
		c.add(r.At.Line, "l7redirect.listeners: at least one listener is required")
		return nil
	}
	var out []l7Listener
	names := map[string]int{}
	addrs := map[string]int{}
	for a, line := range l4Addrs {
		addrs[a] = line
	}
	listen := func(s str, path string) string {
		if !s.Set || s.V == "" || !c.hostPort(s, path) {
			return ""
		}
		if first, dup := addrs[s.V]; dup {
			c.add(s.Line, "%s: %s is already the address of the listener at line %d", path, s.V, first)
		}
		addrs[s.V] = s.Line
		return s.V
	}
	for i, rl := range r.Listeners {
		p := fmt.Sprintf("l7redirect.listeners[%d]", i)
		c.labelName(rl.Name, rl.At, p, "listener name", "", names)
		l := l7Listener{line: rl.At.Line}
		l.Name = rl.Name.V
		l.Listen = listen(rl.Listen, p+".listen")
		l.HTTPRedirectListen = listen(rl.HTTPRedirectListen, p+".http_redirect_listen")
		if rl.HTTPSPort.Set {
			l.HTTPSPort = rl.HTTPSPort.V
			if rl.HTTPSPort.V < 1 || rl.HTTPSPort.V > 65535 {
				c.add(rl.HTTPSPort.Line, "%s.https_port: %d is not a port from 1 to 65535", p, rl.HTTPSPort.V)
			}
		} else if l.Listen != "" {
			_, port, _ := net.SplitHostPort(l.Listen)
			l.HTTPSPort, _ = strconv.Atoi(port)
		}

		l.Names = c.l7Names(rl, p)
		l.certs = c.l7Certificates(rl, p, l.Names)
		l.tls = c.tlsSettings(rl.TLS.Settings, p+".tls")

		c.l7Proxy(rl, p, &l)
		c.l7Routing(rl, p, &l)
		c.l7Limits(rl, p, &l)
		c.l7Rules(rl, p, &l, pools, poolLines)
		out = append(out, l)
	}
	return out
}

// l7Proxy checks a listener's PROXY protocol settings and sets them on l.
func (c *checker) l7Proxy(rl rawL7Listener, p string, l *l7Listener) {
	pp := rl.ProxyProtocol
	l.ProxyProtocol = pp.Enabled.V
	l.ProxyTrusted = c.prefixes(pp.Trusted, p+".proxy_protocol.trusted")
	switch {
	case pp.Enabled.V && len(pp.Trusted.V) == 0:
		c.add(pp.Enabled.Line, "%s.proxy_protocol: enabled with no trusted addresses; list the balancers in front under trusted", p)
	case pp.Enabled.V && !rl.Listen.Set && !rl.HTTPRedirectListen.Set:
		c.add(pp.Enabled.Line, "%s.proxy_protocol: applies to listen and http_redirect_listen, and this listener has neither", p)
	}
}

// l7Routing checks how a front door answers whatever rule matches (sticky
// cookie, retry-after) and starts l.Config with it.
func (c *checker) l7Routing(rl rawL7Listener, p string, l *l7Listener) {
	l.Config = l7redirect.Config{
		Name:         rl.Name.V,
		StickyCookie: rl.StickyCookie.V,
		RetryAfter:   c.positive(rl.RetryAfter, p+".retry_after", 5*time.Second),
	}
	if rl.StickyCookie.V != "" && !httpToken.MatchString(rl.StickyCookie.V) {
		c.add(rl.StickyCookie.Line, "%s.sticky_cookie: %q is not a valid cookie name", p, rl.StickyCookie.V)
	}
	if d := rl.CookieTTL; d.Set {
		l.Config.CookieTTL = d.V
		switch {
		case d.V < 0:
			c.add(d.Line, "%s.cookie_ttl: must not be negative, got %s (0 is a session cookie)", p, d.V)
		case rl.StickyCookie.V == "":
			c.add(d.Line, "%s.cookie_ttl: applies only with sticky_cookie", p)
		}
	}
}

// l7Rules checks a front door's rules and default rule and sets them on l.
func (c *checker) l7Rules(rl rawL7Listener, p string, l *l7Listener, pools []poolConfig, poolLines map[string]int) {
	seen := map[string]int{} // host + " " + prefix → line
	for j, rr := range rl.Rules {
		rp := fmt.Sprintf("%s.rules[%d]", p, j)
		rule, ok := c.l7Rule(rr, rp, l.Names, pools, poolLines, rl.StickyCookie.V != "")
		if !ok {
			continue
		}
		key := rule.rule.Host + " " + strings.TrimSuffix(rule.rule.PathPrefix, "/")
		if first, dup := seen[key]; dup {
			c.add(rr.At.Line, "%s: another rule (line %d) has the same host %q and path_prefix %q", rp, first, rr.Host.V, rr.PathPrefix.V)
			continue
		}
		seen[key] = rr.At.Line
		l.rules = append(l.rules, rule)
	}
	if d := rl.DefaultRule; d.At.Set {
		dp := p + ".default_rule"
		if d.Host.Set {
			c.add(d.Host.Line, "%s.host: the default rule takes every request no rule matches, whatever its host; remove host", dp)
			d.Host = str{}
		}
		if rule, ok := c.l7Rule(d, dp, l.Names, pools, poolLines, rl.StickyCookie.V != ""); ok {
			l.def = &rule
		}
	}
	if len(rl.Rules) == 0 && !rl.DefaultRule.At.Set {
		c.add(rl.At.Line, "%s: redirects nothing; add rules or a default_rule", p)
	}
}

// l7Limits checks the keys that bound what one client can cost the front
// door, and the HSTS header, and sets them on l with their defaults.
func (c *checker) l7Limits(rl rawL7Listener, p string, l *l7Listener) {
	l.Config.MaxRequestTarget = l7redirect.DefaultMaxRequestTarget
	if m := rl.MaxRequestTarget; m.Set {
		l.Config.MaxRequestTarget = m.V
		if m.V < minRequestTarget || m.V > maxRequestTarget {
			c.add(m.Line, "%s.max_request_target: %d is out of range; use %d to %d bytes", p, m.V, minRequestTarget, maxRequestTarget)
		}
	}

	l.Config.HSTSMaxAge = l7redirect.DefaultHSTSMaxAge
	if d := rl.HSTSMaxAge; d.Set {
		switch {
		case d.V < 0:
			c.add(d.Line, "%s.hsts_max_age: must not be negative, got %s (0 sends no Strict-Transport-Security)", p, d.V)
		case d.V == 0:
			l.Config.HSTSMaxAge = -1 // l7redirect's "none"
		default:
			l.Config.HSTSMaxAge = d.V
		}
	}
	if b := rl.HSTSSubdomains; b.Set {
		l.Config.HSTSIncludeSubdomains = b.V
		if b.V && rl.HSTSMaxAge.Set && rl.HSTSMaxAge.V == 0 {
			c.add(b.Line, "%s.hsts_include_subdomains: applies only with hsts_max_age above 0", p)
		}
	}

	l.MaxConns = l7redirect.DefaultMaxConns
	if m := rl.MaxConns; m.Set {
		// 0 is refused rather than read as "no limit", as for l4: an
		// unbounded listener is what the setting exists to prevent.
		l.MaxConns = m.V
		if m.V < 1 {
			c.add(m.Line, "%s.max_conns: must be a positive number, got %d", p, m.V)
		}
	}
	l.MaxConnsPerSource = l7redirect.DefaultMaxConnsPerSource
	if m := rl.MaxConnsPerSource; m.Set {
		switch {
		case m.V < 0:
			c.add(m.Line, "%s.max_conns_per_source: must not be negative, got %d (0: no per-source limit)", p, m.V)
		case m.V == 0:
			l.MaxConnsPerSource = -1 // l7redirect's "no bound"
		default:
			l.MaxConnsPerSource = m.V
		}
	}
}

// l7Names checks the front door's names: at least one, each a host name
// or *.domain, each once.
func (c *checker) l7Names(rl rawL7Listener, p string) []string {
	if !rl.Names.Set || len(rl.Names.V) == 0 {
		c.need(false, rl.Names.Line, rl.At, p, "names")
		return nil
	}
	var out []string
	seen := map[string]int{}
	for _, s := range rl.Names.V {
		n, ok := c.serverName(s, p+".names")
		if !ok {
			continue
		}
		if first, dup := seen[n]; dup {
			c.add(s.Line, "%s.names: %q is already listed at line %d", p, s.V, first)
			continue
		}
		seen[n] = s.Line
		out = append(out, n)
	}
	return out
}

// l7Certificates loads the certificate/key pairs: each a pair, not
// expired, naming at least one of names; and every name covered by one of
// them, or browsers would refuse the front door under that name.
func (c *checker) l7Certificates(rl rawL7Listener, p string, names []string) []tls.Certificate {
	if len(rl.Certificates) == 0 {
		c.add(rl.At.Line, "%s: at least one certificate is required under certificates", p)
		return nil
	}
	var out []tls.Certificate
	covered := map[string]bool{}
	for i, ck := range rl.Certificates {
		cp := fmt.Sprintf("%s.certificates[%d]", p, i)
		var certPEM, keyPEM []byte
		var certAbs, keyAbs string
		certOK, keyOK := false, false
		if c.needStr(ck.Cert, ck.At, cp, "cert") {
			certPEM, certAbs, certOK = c.readFile(ck.Cert, cp+".cert")
		}
		if c.needStr(ck.Key, ck.At, cp, "key") {
			keyPEM, keyAbs, keyOK = c.readPrivateFile(ck.Key, cp+".key")
		}
		if !certOK || !keyOK {
			continue
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			c.add(ck.Cert.Line, "%s: cert %s and key %s do not load as a pair: %v", cp, showPath(ck.Cert.V, certAbs), showPath(ck.Key.V, keyAbs), err)
			continue
		}
		if now := time.Now(); now.After(pair.Leaf.NotAfter) {
			c.add(ck.Cert.Line, "%s.cert: the certificate expired on %s", cp, pair.Leaf.NotAfter.UTC().Format(time.DateOnly))
		}
		if why := chainProblem(pair); why != "" {
			c.add(ck.Cert.Line, "%s.cert: %s", cp, why)
		}
		c.certs = append(c.certs, Certificate{Server: "l7redirect/" + rl.Name.V, Name: certName(pair), NotAfter: pair.Leaf.NotAfter, Chain: chainOf(pair)})
		named := false
		for _, n := range names {
			// A wildcard name is covered by a certificate for the same
			// wildcard; testing one name under it checks exactly that.
			if pair.Leaf.VerifyHostname(strings.Replace(n, "*", "x", 1)) == nil {
				covered[n], named = true, true
			}
		}
		if !named && len(names) > 0 {
			c.add(ck.Cert.Line, "%s.cert: the certificate names none of the listener's names (%s); it names %s",
				cp, strings.Join(names, ", "), certNames(pair))
		}
		out = append(out, pair)
	}
	if len(out) == len(rl.Certificates) {
		for _, n := range names {
			if !covered[n] {
				c.add(rl.Names.Line, "%s.names: no certificate names %s, so browsers would refuse the front door under it", p, n)
			}
		}
	}
	return out
}

// certName is the first name a certificate covers.
func certName(pair tls.Certificate) string {
	if len(pair.Leaf.DNSNames) > 0 {
		return pair.Leaf.DNSNames[0]
	}
	return pair.Leaf.Subject.CommonName
}

// certNames lists what a certificate is for, for a message.
func certNames(pair tls.Certificate) string {
	ns := pair.Leaf.DNSNames
	if len(ns) == 0 && pair.Leaf.Subject.CommonName != "" {
		ns = []string{pair.Leaf.Subject.CommonName}
	}
	if len(ns) == 0 {
		return "no host name"
	}
	return strings.Join(ns, ", ")
}

// l7Rule checks one rule. A rule's host must be one of the front door's
// names (a wildcard host one of its wildcard names): a host outside them
// has no certificate here.
func (c *checker) l7Rule(rr rawL7Rule, rp string, names []string, pools []poolConfig, poolLines map[string]int, sticky bool) (l7Rule, bool) {
	ok := true
	rule := l7Rule{line: rr.At.Line, pool: rr.Pool.V, rule: l7redirect.Rule{
		Name: rr.Name.V, PathPrefix: rr.PathPrefix.V, RewritePrefix: rr.RewritePrefix.V, Port: rr.Port.V,
	}}
	if rr.Name.Set && !c.plainLabel(rr.Name, rp) {
		ok = false
	}
	if rr.Host.Set && rr.Host.V != "" {
		h, valid := c.serverName(rr.Host, rp+".host")
		switch {
		case !valid:
			ok = false
		case len(names) > 0 && !slices.ContainsFunc(names, func(n string) bool { return n == h || hostname.Match(n, h) }):
			c.add(rr.Host.Line, "%s.host: %q is none of the listener's names (%s), so no certificate here covers it", rp, rr.Host.V, strings.Join(names, ", "))
			ok = false
		}
		rule.rule.Host = h
	}
	for _, s := range []struct {
		v   str
		key string
	}{{rr.PathPrefix, "path_prefix"}, {rr.RewritePrefix, "rewrite_prefix"}} {
		if s.v.Set && s.v.V != "" {
			if why := badPath(s.v.V); why != "" {
				c.add(s.v.Line, "%s.%s: %q %s", rp, s.key, s.v.V, why)
				ok = false
			}
		}
	}
	if rr.RewritePrefix.Set && rr.RewritePrefix.V != "" && (rr.PathPrefix.V == "" || rr.PathPrefix.V == "/") {
		c.add(rr.RewritePrefix.Line, "%s.rewrite_prefix: needs a path_prefix other than / to replace", rp)
		ok = false
	}
	if rr.Port.Set && (rr.Port.V < 0 || rr.Port.V > 65535) {
		c.add(rr.Port.Line, "%s.port: %d is not a port (0 for the node's own, or 1 to 65535)", rp, rr.Port.V)
		ok = false
	}
	if !c.routePool(rr.Pool, rr.At, rp, "pool", poolLines) {
		return rule, false
	}
	for _, pc := range pools {
		if pc.Name != rr.Pool.V {
			continue
		}
		for _, b := range pc.Backends {
			fqdn := b.FQDN
			if fqdn == "" {
				fqdn, _, _ = net.SplitHostPort(b.Addr)
			}
			switch {
			case fqdn == "" || hostname.IPLike(fqdn):
				c.add(rr.Pool.Line, "%s.pool: backend %q of pool %q has no fqdn (its address %s is an IP); a redirect sends the browser to the node's own name, so set fqdn",
					rp, b.Name, pc.Name, b.Addr)
				ok = false
			case sticky && !httpToken.MatchString(b.Name):
				c.add(rr.Pool.Line, "%s.pool: backend name %q of pool %q cannot be a sticky cookie's value", rp, b.Name, pc.Name)
				ok = false
			}
		}
	}
	return rule, ok
}

// badPath says why p cannot be a rule's path prefix or rewrite, or "".
// The front door matches on the escaped path with dot segments removed, so
// a prefix must be written that way to ever match.
func badPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		return `must start with "/"`
	}
	if strings.HasPrefix(p, "//") || strings.HasPrefix(p, `/\`) {
		return `must not start with "//" or "/\" (browsers read that as a host)`
	}
	u, err := url.Parse(p)
	if err != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(p, "?#") {
		return "must be a path without query or fragment"
	}
	if u.EscapedPath() != p {
		return fmt.Sprintf("must be written escaped, as %q", u.EscapedPath())
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch strings.ToLower(seg) {
		case ".", "..", "%2e", "%2e%2e", ".%2e", "%2e.":
			return "must not contain . or .. segments"
		}
	}
	return ""
}
