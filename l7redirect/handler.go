// Package l7redirect is iwalb's L7 front door: it terminates TLS for its own
// names and answers every request with a single redirect to one healthy auth
// node's own name, so that authentication then runs directly between the
// browser and that node.
//
//	metrics, err := l7redirect.NewMetrics(reg) // once per process
//	h, err := l7redirect.New(l7redirect.Config{
//		Name:         "sso",
//		Rules:        []l7redirect.Rule{{Host: "sso.example.test", Pool: authPool}},
//		StickyCookie: "iwalb_node",
//	}, l7redirect.Options{Logger: logger, Metrics: metrics})
//	certs, err := l7redirect.NewTLSSwitch(tlsConfig, 0) // certificates chosen by SNI
//	srv := &l7redirect.Server{Name: "sso", MaxConns: 10000, MaxConnsPerSource: 256, Metrics: metrics}
//	go srv.Serve(ctx, httpsLn, h, certs.Config())
//	plain, err := l7redirect.NewRedirect(l7redirect.RedirectConfig{
//		Name: "sso", Names: []string{"sso.example.test"}, Port: 443,
//	}, l7redirect.Options{Logger: logger, Metrics: metrics})
//	go srv.Serve(ctx, httpLn, plain, nil)
//
// A configuration reload changes a front door in place, keeping its
// listeners and the requests in flight: h.Update and plain.Update take new
// rules and names for the requests that start next, certs.Set new
// certificates for the TLS connections that start next, and srv.SetLimits
// new connection caps for the connections accepted next.
//
// The redirect target is always https://{node FQDN}[:port]{path}?{query}
// with the node's name taken from the pool's configuration; nothing the
// client sends (Host, path, query, cookie) can name another host.
//
// Every answer costs time linear in the request, which is bounded: a
// request-target over Config.MaxRequestTarget is answered 414 before any
// work on it. Each listener holds at most Server.MaxConns connections, and
// Server.MaxConnsPerSource from one client.
//
// Package l7redirect never relays a request, never holds a connection to a
// node and never sees a credential. It neither chooses nor checks nodes
// itself (package lb does), and it is not a TCP balancer (package l4 is).
package l7redirect

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/internal/hostname"
	"github.com/iwalb/iwalb/lb"
)

// Config is the front door's routing and node-choice configuration. New and
// Update validate it.
type Config struct {
	// Name labels the front door in logs and in the "frontdoor" label of its
	// metrics, so several front doors can share one registry.
	Name string
	// Rules map a request's Host and path to a pool. Rules whose Host
	// matches exactly are tried first, then wildcard hosts, then rules for
	// any host; within the first of these groups that has a match, the
	// longest PathPrefix wins.
	Rules []Rule
	// Default takes the requests that no rule matches; its Host is ignored
	// and its PathPrefix only scopes its RewritePrefix. Without it those
	// requests are answered 421 (the Host is none of the rules' hosts) or
	// 404.
	Default *Rule
	// StickyCookie, when set, names a cookie that holds the chosen node's
	// name, so a browser keeps its node while that node is healthy. Empty
	// leaves the choice to the pool's policy alone (client_ip_hash keeps a
	// client address on its node).
	StickyCookie string
	// CookieTTL is the sticky cookie's Max-Age; 0 means a session cookie.
	CookieTTL time.Duration
	// RetryAfter is sent with the 503 answered when no node is healthy; 0
	// means 5s. It is rounded up to whole seconds.
	RetryAfter time.Duration
	// MaxRequestTarget bounds the request-target (path and query as sent)
	// in bytes; a longer one is answered 414 before anything else is done
	// with it. 0 means DefaultMaxRequestTarget. The HTTP server refuses
	// (431) a request line and headers beyond Server.MaxHeaderBytes before
	// any handler sees them, so a bound above that has no effect.
	MaxRequestTarget int
	// HSTSMaxAge is the max-age of the Strict-Transport-Security header
	// sent with every answer over TLS, so that browsers come back over
	// HTTPS only. It is rounded up to whole seconds. 0 means
	// DefaultHSTSMaxAge; negative sends no header.
	HSTSMaxAge time.Duration
	// HSTSIncludeSubdomains adds includeSubDomains to that header: set it
	// only when every name under the front door's names is served over
	// HTTPS.
	HSTSIncludeSubdomains bool
}

const (
	// DefaultMaxRequestTarget is Config.MaxRequestTarget when it is 0:
	// browsers send far shorter URLs to a sign-in service.
	DefaultMaxRequestTarget = 8 << 10
	// DefaultHSTSMaxAge is Config.HSTSMaxAge when it is 0: one year, what
	// browsers' preload lists ask for.
	DefaultHSTSMaxAge = 365 * 24 * time.Hour
)

// Rule sends the requests it matches to one of its pool's nodes.
type Rule struct {
	// Name labels the rule in logs and metrics; empty means Host+PathPrefix
	// ("*" for any host), or "default" for Config.Default.
	Name string
	// Host is an exact name ("sso.example.test"), a wildcard
	// ("*.example.test", exactly one extra leftmost label) or empty for any
	// host. Matching ignores case and the port.
	Host string
	// PathPrefix matches whole path segments of the escaped request path:
	// "/app" matches "/app" and "/app/x" but not "/apple"; a prefix ending in
	// "/" matches everything under it. Empty or "/" matches every path.
	PathPrefix string
	// Pool holds the nodes; required. Every backend needs an FQDN, since
	// the browser must reach the node under the name of its SPN.
	Pool *lb.Pool
	// RewritePrefix, when set, replaces the matched PathPrefix in the
	// redirect target ("/app" → "/sso" turns "/app/x" into "/sso/x").
	RewritePrefix string
	// Port is the port of the redirect target. 0 means the port of each
	// backend's Addr, which is the port the health checks prove open (and
	// which tests with nodes on high ports need); 443 is left out of the URL.
	Port int
}

// Options carries what a Handler gets from its host process rather than
// from its configuration.
type Options struct {
	// Logger receives one access-log line per request; nil means
	// slog.Default().
	Logger *slog.Logger
	// Metrics counts the requests; nil means a private set that is not
	// exported. Front doors made again on a reload share the process's
	// Metrics: nothing is registered twice.
	Metrics *Metrics
}

// Handler is the front door's http.Handler. It is safe for concurrent use;
// Update swaps its configuration atomically.
type Handler struct {
	name  string
	table atomic.Pointer[table]
	log   *slog.Logger
	m     handlerMetrics

	durFound, durTemporary lazy[prometheus.Observer]
	pages                  sync.Pool // *bytes.Buffer for redirect pages
}

// New validates cfg and returns the front door's handler. All problems are
// reported together.
func New(cfg Config, opts Options) (*Handler, error) {
	t, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	h := &Handler{name: cfg.Name, log: opts.Logger, m: orPrivate(opts.Metrics).handler(cfg.Name)}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.log = h.log.With("frontdoor", cfg.Name)
	h.table.Store(t)
	return h, nil
}

// Update validates cfg and, if it is sound, makes it the configuration of
// the requests that start from now on; requests in flight finish under the
// one they started with, and a cfg refused changes nothing. cfg.Name is
// ignored: the front door keeps the name it was created with.
func (h *Handler) Update(cfg Config) error {
	cfg.Name = h.name
	t, err := compile(cfg)
	if err != nil {
		return err
	}
	h.table.Store(t)
	return nil
}

// table is a compiled, immutable Config.
type table struct {
	exact, wildcard, anyHost []*rule // each sorted by descending prefix length
	def                      *rule
	cookie                   string
	cookieMaxAge             int
	retryAfter               string
	maxTarget                int
	hsts                     string   // the Strict-Transport-Security value; "" for none
	hstsHeader               []string // hsts, as the header's value
}

// rule is a compiled Rule.
type rule struct {
	name, host, prefix, rewrite string
	pool                        *lb.Pool
	nodes                       map[*lb.Backend]*node
}

// node is where a backend's redirects go, with what each redirect to it
// writes worked out once: the sticky cookie, the link text, and its
// redirect counters once first used.
type node struct {
	host      string
	port      int
	authority string   // host[:port] of the redirect target
	setCookie []string // the Set-Cookie header; nil without a sticky cookie
	link      string   // host, escaped for HTML
	found     lazy[prometheus.Counter]
	temporary lazy[prometheus.Counter]
}

// lazy holds a metric series looked up on first use, so that a series
// appears once it counts something and a request afterwards looks up no
// labels.
type lazy[T any] struct{ p atomic.Pointer[T] }

func (l *lazy[T]) get(lookup func() T) T {
	if p := l.p.Load(); p != nil {
		return *p
	}
	v := lookup()
	l.p.Store(&v)
	return v
}

func compile(cfg Config) (*table, error) {
	c := &compiler{name: cfg.Name, seen: map[string]bool{}}
	t := c.settings(cfg)
	for i, r := range cfg.Rules {
		label := fmt.Sprintf("rule #%d", i+1)
		if r.Name != "" {
			label = fmt.Sprintf("rule %q", r.Name)
		}
		if rl := c.rule(r, label, t); rl != nil {
			t.add(rl)
		}
	}
	if cfg.Default != nil {
		d := *cfg.Default
		if d.Name == "" {
			d.Name = "default"
		}
		t.def = c.rule(d, "default", t)
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	for _, rs := range [][]*rule{t.exact, t.wildcard, t.anyHost} {
		slices.SortStableFunc(rs, func(a, b *rule) int { return len(b.prefix) - len(a.prefix) })
	}
	return t, nil
}

// compiler collects every problem of a Config while it builds its table.
type compiler struct {
	name string
	errs []error
	seen map[string]bool // host and path prefix of the rules so far
}

func (c *compiler) fail(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("l7redirect %q: "+format, append([]any{c.name}, args...)...))
}

// settings checks cfg's front-door-wide settings and returns a table with
// them and no rules yet.
func (c *compiler) settings(cfg Config) *table {
	if cfg.Name == "" {
		c.errs = append(c.errs, errors.New("l7redirect: front door name is empty"))
	}
	if len(cfg.Rules) == 0 && cfg.Default == nil {
		c.fail("no rules and no default rule")
	}
	if cfg.CookieTTL < 0 || cfg.RetryAfter < 0 {
		c.fail("cookie TTL and retry-after must not be negative")
	}
	if cfg.MaxRequestTarget < 0 {
		c.fail("max request target %d must not be negative", cfg.MaxRequestTarget)
	}
	if cfg.StickyCookie != "" && !isToken(cfg.StickyCookie) {
		c.fail("sticky cookie name %q is not a valid cookie name", cfg.StickyCookie)
	}
	t := &table{
		cookie:       cfg.StickyCookie,
		cookieMaxAge: int((cfg.CookieTTL + time.Second - 1) / time.Second),
		retryAfter:   "5",
		maxTarget:    cfg.MaxRequestTarget,
		hsts:         hstsValue(cfg.HSTSMaxAge, cfg.HSTSIncludeSubdomains),
	}
	if cfg.RetryAfter > 0 {
		t.retryAfter = strconv.Itoa(int((cfg.RetryAfter + time.Second - 1) / time.Second))
	}
	if t.maxTarget == 0 {
		t.maxTarget = DefaultMaxRequestTarget
	}
	t.hstsHeader = []string{t.hsts}
	return t
}

// rule checks r (label names it in errors) and compiles it; nil when it
// has a problem. t's sticky cookie, whose values the
// backends' names become.
func (c *compiler) rule(r Rule, label string, t *table) *rule {
	host := strings.ToLower(strings.TrimSuffix(r.Host, "."))
	rl := &rule{name: r.Name, host: host, prefix: r.PathPrefix, rewrite: r.RewritePrefix, pool: r.Pool}
	if rl.name == "" {
		h := host
		if h == "" {
			h = "*"
		}
		rl.name = h + r.PathPrefix
	}
	bad := len(c.errs)
	if !validHostPattern(host) {
		c.fail("%s: host %q is not a DNS name or *.name", label, r.Host)
	}
	if r.PathPrefix != "" && !validPath(r.PathPrefix) {
		c.fail("%s: path prefix %q must be an escaped absolute path without dot segments, query or leading //", label, r.PathPrefix)
	}
	if r.RewritePrefix != "" && !validPath(r.RewritePrefix) {
		c.fail("%s: rewrite prefix %q must be an escaped absolute path without dot segments, query or leading //", label, r.RewritePrefix)
	}
	if r.Port < 0 || r.Port > 65535 {
		c.fail("%s: port %d out of range", label, r.Port)
	}
	key := host + " " + strings.TrimSuffix(r.PathPrefix, "/")
	if label != "default" && c.seen[key] {
		c.fail("%s: another rule has the same host %q and path prefix %q", label, r.Host, r.PathPrefix)
	}
	c.seen[key] = true
	if r.Pool == nil {
		c.fail("%s: no pool", label)
		return nil
	}
	rl.nodes = c.nodes(r, label, t)
	if len(c.errs) > bad {
		return nil
	}
	return rl
}

// nodes returns where each backend of r's pool is redirected to: its FQDN,
// and r's port or else the port of its address.
func (c *compiler) nodes(r Rule, label string, t *table) map[*lb.Backend]*node {
	nodes := map[*lb.Backend]*node{}
	for _, b := range r.Pool.Backends() {
		n := &node{host: strings.ToLower(strings.TrimSuffix(b.FQDN, ".")), port: r.Port}
		n.link = html.EscapeString(n.host)
		if !isDNSName(n.host) {
			c.fail("%s: pool %q backend %q: fqdn %q is not a DNS name (a redirect needs the node's own name)", label, r.Pool.Name(), b.Name, b.FQDN)
		}
		if n.port == 0 {
			_, p, err := net.SplitHostPort(b.Addr)
			port, perr := strconv.Atoi(p)
			if err != nil || perr != nil || port <= 0 || port > 65535 {
				c.fail("%s: pool %q backend %q: no port in address %q", label, r.Pool.Name(), b.Name, b.Addr)
			}
			n.port = port
		}
		if t.cookie != "" {
			if !isCookieValue(b.Name) {
				c.fail("%s: pool %q backend %q: the name cannot be a cookie value", label, r.Pool.Name(), b.Name)
			}
			ck := &http.Cookie{
				Name: t.cookie, Value: b.Name, Path: "/", MaxAge: t.cookieMaxAge,
				Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
			}
			n.setCookie = []string{ck.String()}
		}
		n.authority = authority(n.host, n.port)
		nodes[b] = n
	}
	return nodes
}

// add puts rl in the group of rules its host makes it part of.
func (t *table) add(rl *rule) {
	switch {
	case rl.host == "":
		t.anyHost = append(t.anyHost, rl)
	case strings.HasPrefix(rl.host, "*."):
		t.wildcard = append(t.wildcard, rl)
	default:
		t.exact = append(t.exact, rl)
	}
}

// hstsValue is the Strict-Transport-Security header for Config.HSTSMaxAge
// and HSTSIncludeSubdomains; "" for none.
func hstsValue(maxAge time.Duration, subdomains bool) string {
	switch {
	case maxAge < 0:
		return ""
	case maxAge == 0:
		maxAge = DefaultHSTSMaxAge
	}
	v := "max-age=" + strconv.FormatInt(int64((maxAge+time.Second-1)/time.Second), 10)
	if subdomains {
		v += "; includeSubDomains"
	}
	return v
}

// validPath reports whether p is an escaped absolute path that cleanPath
// leaves as it is and that carries no query or fragment.
func validPath(p string) bool {
	u, err := url.Parse(p)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil && !u.ForceQuery &&
		u.RawQuery == "" && u.Fragment == "" && u.EscapedPath() == p && cleanPath(p) == p
}

// isToken reports whether s is an RFC 7230 token, the syntax of a cookie name.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

// isCookieValue reports whether s can be a cookie value unquoted (RFC 6265).
func isCookieValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return s != ""
}

// match returns the rule for host (already normalised, possibly "") and the
// cleaned path, or nil.
func (t *table) match(host, path string) *rule {
	for _, rs := range [][]*rule{t.exact, t.wildcard, t.anyHost} {
		for _, rl := range rs {
			if (rl.host == "" || hostname.Match(rl.host, host)) && prefixMatches(rl.prefix, path) {
				return rl
			}
		}
	}
	return t.def
}

// knowsHost reports whether some rule is meant for host, which tells a path
// no rule covers (404) from a host that is not this front door's (421).
func (t *table) knowsHost(host string) bool {
	if len(t.anyHost) > 0 {
		return true
	}
	for _, rs := range [][]*rule{t.exact, t.wildcard} {
		for _, rl := range rs {
			if hostname.Match(rl.host, host) {
				return true
			}
		}
	}
	return false
}

func prefixMatches(prefix, path string) bool {
	if prefix == "" || prefix == "/" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// targetPath applies the rule's rewrite to the cleaned path.
func (rl *rule) targetPath(path string) string {
	if rl.rewrite == "" || rl.prefix == "" || !prefixMatches(rl.prefix, path) {
		return path
	}
	rest := path[len(rl.prefix):]
	if rest != "" && rest[0] != '/' {
		// The prefix ended in "/": keep exactly one between the parts.
		return cleanPath(strings.TrimSuffix(rl.rewrite, "/") + "/" + rest)
	}
	return cleanPath(strings.TrimSuffix(rl.rewrite, "/") + rest)
}

// pick chooses the node: the one the sticky cookie names if it is a usable
// backend of the rule's pool, else whatever the pool's policy picks. The
// cookie's value is only ever looked up among the pool's backends, never
// used as a host.
func (t *table) pick(rl *rule, r *http.Request, client netip.Addr) (*lb.Backend, error) {
	var want *lb.Backend
	if t.cookie != "" {
		if c, err := r.Cookie(t.cookie); err == nil {
			if b := rl.pool.Backend(c.Value); b != nil && rl.nodes[b] != nil {
				want = b
			}
		}
	}
	// A redirect holds no connection to the node: choose, take no slot.
	return rl.pool.Choose(client, want)
}

// ServeHTTP answers the request with a redirect to a node, 503 when no node
// is healthy, 421/404 when no rule matches, or 414 when the request-target
// is too long.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t := h.table.Load()
	if t.hsts != "" && r.TLS != nil {
		// Over plain HTTP browsers ignore it (RFC 6797 §8.1).
		w.Header()["Strict-Transport-Security"] = t.hstsHeader
	}
	if len(r.RequestURI) > t.maxTarget {
		// Before any work that grows with the target's length.
		uriTooLong(w)
		h.m.refused.WithLabelValues(reasonURITooLong).Inc()
		h.m.duration.WithLabelValues(strconv.Itoa(http.StatusRequestURITooLong)).Observe(time.Since(start).Seconds())
		h.log.Info("request", "method", r.Method, "host", truncate(r.Host, 256), "path", truncate(r.URL.EscapedPath(), 512),
			"status", http.StatusRequestURITooLong, "target_bytes", len(r.RequestURI), "client", clientAddr(r.RemoteAddr).String(),
			"duration", time.Since(start))
		return
	}
	path := cleanPath(r.URL.EscapedPath())
	host := requestHost(r.Host)
	client := clientAddr(r.RemoteAddr)

	var status int
	var ruleName, nodeName string
	rl := t.match(host, path)
	switch {
	case rl == nil && !t.knowsHost(host):
		status = http.StatusMisdirectedRequest
		writePage(w, status, "Unknown host", "This front door does not serve this host name.")
	case rl == nil:
		status = http.StatusNotFound
		writePage(w, status, "Not found", "No sign-in service is configured for this path.")
	default:
		ruleName = rl.name
		b, err := t.pick(rl, r, client)
		if err != nil {
			status = http.StatusServiceUnavailable
			h.m.noHealthy.WithLabelValues(rl.name).Inc()
			h.log.Warn("no healthy node", "rule", rl.name, "pool", rl.pool.Name(), "err", err)
			w.Header().Set("Retry-After", t.retryAfter)
			writePage(w, status, "Sign-in temporarily unavailable",
				"No sign-in server is available right now. Please try again in a few seconds.")
			break
		}
		nodeName = b.Name
		status = h.redirect(w, r, rl, b, path)
	}
	d := time.Since(start)
	h.durationOf(status).Observe(d.Seconds())
	if !h.log.Enabled(r.Context(), slog.LevelInfo) {
		return // the access log is off: its arguments would cost more than the answer
	}
	// The query is never logged: it may carry tokens.
	h.log.Info("request", "method", r.Method, "host", truncate(r.Host, 256), "path", truncate(r.URL.EscapedPath(), 512),
		"status", status, "rule", ruleName, "node", nodeName, "client", client.String(), "duration", d)
}

// redirect answers r with a 302 (or a 307, which keeps the method and body
// of anything but GET and HEAD) to backend b of rule rl, and counts it.
func (h *Handler) redirect(w http.ResponseWriter, r *http.Request, rl *rule, b *lb.Backend, path string) int {
	n := rl.nodes[b]
	loc := targetOn(n.authority, rl.targetPath(path), r.URL.RawQuery)
	hd := w.Header()
	if n.setCookie != nil {
		hd["Set-Cookie"] = n.setCookie
	}
	hd["Location"] = []string{loc}
	status, counter := http.StatusFound, &n.found
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// A 302 would turn a POST into a GET.
		status, counter = http.StatusTemporaryRedirect, &n.temporary
	}
	h.writeRedirectPage(w, status, loc, n.link)
	counter.get(func() prometheus.Counter {
		return h.m.redirects.WithLabelValues(rl.name, b.Name, strconv.Itoa(status))
	}).Inc()
	return status
}

// durationOf is the request-duration series of status, looked up once for
// the statuses of redirects.
func (h *Handler) durationOf(status int) prometheus.Observer {
	var l *lazy[prometheus.Observer]
	switch status {
	case http.StatusFound:
		l = &h.durFound
	case http.StatusTemporaryRedirect:
		l = &h.durTemporary
	default:
		return h.m.duration.WithLabelValues(strconv.Itoa(status))
	}
	return l.get(func() prometheus.Observer { return h.m.duration.WithLabelValues(strconv.Itoa(status)) })
}

// uriTooLong answers 414 and closes the connection: a client that sends
// such a target is not a browser following a link.
func uriTooLong(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	writePage(w, http.StatusRequestURITooLong, "Address too long", "The requested address is too long.")
}

// clientAddr is the client's IP from RemoteAddr (which a PROXY-protocol
// listener has already replaced with the real client's); the zero Addr if
// it does not parse.
func clientAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(remote)
	return a.Unmap()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// The headers of every page; net/http only reads these slices.
var (
	headerHTML    = []string{"text/html; charset=utf-8"}
	headerNoStore = []string{"no-store"}
	headerNosniff = []string{"nosniff"}
)

// pageHeaders sets the headers of a short HTML page that no cache may keep.
func pageHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd["Content-Type"] = headerHTML
	hd["Cache-Control"] = headerNoStore
	hd["X-Content-Type-Options"] = headerNosniff
}

// writePage writes a short HTML page that no cache may keep. The body is
// dropped by net/http for HEAD.
func writePage(w http.ResponseWriter, status int, title, body string) {
	pageHeaders(w)
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html>\n<html><head><title>%s</title></head><body><h1>%s</h1><p>%s</p></body></html>\n",
		title, title, body)
}

// writeRedirectPage is writePage for a redirect to loc, whose link text is
// link (already escaped), built without formatting.
func (h *Handler) writeRedirectPage(w http.ResponseWriter, status int, loc, link string) {
	pageHeaders(w)
	w.WriteHeader(status)
	buf, _ := h.pages.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	buf.WriteString("<!doctype html>\n<html><head><title>Redirecting</title></head><body><h1>Redirecting</h1><p>Continue to <a href=\"")
	htmlEscaper.WriteString(buf, loc)
	buf.WriteString(`">`)
	buf.WriteString(link)
	buf.WriteString("</a>.</p></body></html>\n")
	w.Write(buf.Bytes())
	if buf.Cap() <= 64<<10 {
		h.pages.Put(buf)
	}
}

// htmlEscaper escapes as html.EscapeString does.
var htmlEscaper = strings.NewReplacer(`&`, "&amp;", `'`, "&#39;", `<`, "&lt;", `>`, "&gt;", `"`, "&#34;")
