// Package authnode is the HTTPS auth node: it performs SPNEGO/Kerberos with
// a keytab, confirms the user in Active Directory, issues one-time SSO tokens
// and sessions, and serves the API that applications redeem tokens with.
//
// Typical use (cmd/iwalb does this from the YAML file):
//
//	node, err := authnode.New(cfg, authnode.Options{Logger: log, Registerer: reg})
//	if err != nil { ... }
//	err = node.Run(ctx) // serves until ctx is cancelled
//
// A running node takes new settings in two steps, so that a process can
// check everything before it changes anything:
//
//	p, err := node.Prepare(newCfg) // loads and checks; the node is unchanged
//	if err != nil { ... }          // the node keeps serving its settings
//	node.Apply(p)                  // or p.Discard()
//
// It is not a load balancer and knows nothing of the front doors: the L4
// balancer and the L7 redirector reach it as an ordinary HTTPS backend.
package authnode

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/iwalb/iwalb/internal/tlspolicy"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/negotiate"
	"github.com/iwalb/iwalb/authnode/oidc"
	"github.com/iwalb/iwalb/authnode/store"
	"github.com/iwalb/iwalb/internal/connlimit"
)

// Store keeps values that expire. The node uses one for one-time tokens and
// one for sessions; Take must be atomic, across nodes for a shared store.
// Missing keys give store.ErrNotFound, lapsed ones store.ErrExpired.
type Store interface {
	// Put may keep value itself: the node never changes a value it put.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Get(ctx context.Context, key string) ([]byte, error)
	Take(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
}

// Options carries what a Node gets from its host process rather than from
// its configuration.
type Options struct {
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the node's metrics; nil means none are exported.
	Registerer prometheus.Registerer
	// Tokens and Sessions are the stores; nil means an in-memory store
	// private to this node.
	Tokens, Sessions Store
	// Now is the node's clock for Kerberos time checks and the clock offset
	// to the DC; nil means time.Now. Tests set it to play a skewed host.
	Now func() time.Time
}

// ticketValidator checks a Negotiate blob and names its client.
type ticketValidator interface {
	Validate(blob []byte) (*negotiate.Identity, error)
}

// userDirectory answers for users and for its own health. Lookup also says
// how many LDAP requests it sent.
type userDirectory interface {
	Lookup(ctx context.Context, p directory.Principal) (*directory.User, int, error)
	Check(ctx context.Context) error
	ServerTime(ctx context.Context) (time.Time, error)
}

type apiClient struct {
	name     string
	keyHash  [sha256.Size]byte
	certName string
}

// Node is one auth node. Create it with New and start it with Run. What a
// reload may change is in its settings (see Prepare); what it keeps for its
// whole life is here: its metrics, the connection limiter of its listener,
// the token and session stores, the replay cache, the keys it has retired
// and its readiness.
type Node struct {
	log      *slog.Logger // role=authnode; the settings' logger adds node=<fqdn>
	metrics  *metrics
	tokens   Store
	sessions Store
	// budget bounds the in-memory stores; nil when the stores are others.
	budget  *store.Budget
	ready   readiness
	conns   *connlimit.Limiter
	connSeq atomic.Uint64
	now     func() time.Time

	// cur is the settings in force. Handlers take it once per request;
	// Apply and keytab reloads replace it whole.
	cur atomic.Pointer[settings]
	// mu serialises the changes of cur and guards what follows it.
	mu sync.Mutex
	// ring holds the current and the retired keys; base is the validator
	// (options and replay cache) whose copies check tickets with them.
	// Both nil for nodes made without New (tests).
	ring *negotiate.KeyRing
	base *negotiate.Validator
	// keytabProblem is the last problem warned about while watching the
	// keytab file, so that a file left half written is warned about once.
	keytabProblem string
	// keysChanged wakes the keytab watch when what it waits for changed;
	// recheck asks the readiness checks for a round now (new keys or
	// settings). Both hold one pending signal at most.
	keysChanged, recheck chan struct{}
	// tickets are the TLS session ticket keys, kept across reloads.
	tickets *tlspolicy.TicketKeys
	// formFailures counts failed password sign-ins per account and client
	// address; formSlots bounds the sign-ins being checked at once.
	formFailures *failureCounts
	formSlots    chan struct{}

	// selfTest proves the current keys against the KDC; a field so tests
	// can observe it without a KDC.
	selfTest func(ctx context.Context) error

	// redis is the connection of the stores and the replay cache when
	// they are in Redis; Serve closes it.
	redis *store.Redis
	// storeCheck proves a shared store reachable, for readiness; nil for
	// the in-memory one.
	storeCheck func(ctx context.Context) error
	// oidcKeys keeps the OIDC provider's generated signing keys, for the
	// node's life: a reload keeps signing with them.
	oidcKeys oidc.KeyStore
}

// New checks cfg, loads the keytab and certificates and returns a Node that
// is ready to Run. Nothing listens and nothing is dialed until Run.
func New(cfg Config, opts Options) (_ *Node, err error) {
	defer wrapErr(&err, cfg.FQDN)
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{
		log: opts.Logger, tokens: opts.Tokens, sessions: opts.Sessions, now: opts.Now,
		keysChanged: make(chan struct{}, 1), recheck: make(chan struct{}, 1),
		tickets:      tlspolicy.NewTicketKeys(),
		formFailures: newFailureCounts(), formSlots: make(chan struct{}, maxFormInFlight),
	}
	if n.now == nil {
		n.now = time.Now
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	n.log = n.log.With("role", "authnode")
	if n.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, fmt.Errorf("register auth node metrics: %w", err)
	}
	n.conns = connlimit.New(connLimits(cfg))
	vopts := negotiate.Options{
		MaxClockSkew: cfg.MaxClockSkew, MaxFutureSkew: cfg.MaxFutureSkew, Now: n.now,
		ReplayCacheMax: cfg.ReplayCacheMax, ReplayQuota: cfg.ReplayQuota,
	}
	if cfg.Redis != nil {
		if n.redis, err = openRedis(*cfg.Redis); err != nil {
			return nil, err
		}
		store.LogRedisTo(n.log)
		defer func() {
			if err != nil {
				_ = n.redis.Close()
			}
		}()
		vopts.ReplayStore = n.redis.ReplayCache(cfg.ReplayQuota)
		if n.tokens == nil {
			n.tokens = n.redis.Store("tok")
		}
		if n.sessions == nil {
			n.sessions = n.redis.Store("sess")
		}
	}
	// One validator for the node's life, for its replay cache: each key
	// set gets a copy of it that shares the cache.
	n.base = negotiate.NewValidator(nil, vopts)
	n.ring = negotiate.NewKeyRing(nil)
	// In Redis, the replay cache is not the validator's to count.
	if cfg.Redis == nil {
		if err := registerReplayCache(opts.Registerer, n.base); err != nil {
			return nil, fmt.Errorf("register auth node metrics: %w", err)
		}
	}
	n.selfTest = func(ctx context.Context) error {
		s := n.cur.Load()
		// The current keys only: a retired key that still works says
		// nothing about the keytab the next tickets need.
		return negotiate.SelfTest(ctx, s.krb5, s.keys.current, s.cfg.Account, s.cfg.Realm, s.cfg.SelfTestSPN)
	}
	// Tokens and sessions draw on one budget: the bound is the node's.
	if n.tokens == nil || n.sessions == nil {
		n.budget = store.NewBudget(storeLimits(cfg))
	}
	if n.tokens == nil {
		n.tokens = store.NewMemory(store.Options{Budget: n.budget})
	}
	if n.sessions == nil {
		n.sessions = store.NewMemory(store.Options{Budget: n.budget})
	}
	if c, ok := n.tokens.(storeChecker); ok {
		n.storeCheck = c.Check
		n.ready.store.Store(&checkResult{Detail: "not checked yet"})
	}
	n.oidcKeys = n.oidcKeyStore()
	// After the stores: the OIDC provider of the settings uses them.
	s, kt, sum, err := n.load(cfg, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.dir.release()
		}
	}()
	n.mu.Lock()
	s.keys = n.loadKeysLocked(nil, kt, sum, s, time.Now(), "start")
	n.install(s)
	n.mu.Unlock()
	// After install: the gauges read the settings in force.
	if err := n.registerGauges(opts.Registerer); err != nil {
		return nil, fmt.Errorf("register auth node metrics: %w", err)
	}
	return n, nil
}

// Handler returns the node's HTTP routes, for tests and for embedding. Each
// request is served with the settings in force when it arrived, to its
// end.
func (n *Node) Handler() http.Handler {
	return securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := n.acquire()
		defer s.dir.release()
		s.mux.ServeHTTP(w, r)
	}))
}

// routes returns the routes of s; its handlers serve with s.
func (n *Node) routes(s *settings) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+s.cfg.SSOPath, func(w http.ResponseWriter, r *http.Request) { n.handleSSO(s, w, r) })
	mux.HandleFunc("POST /api/v1/tokens/redeem", func(w http.ResponseWriter, r *http.Request) { n.handleRedeem(s, w, r) })
	mux.HandleFunc("POST /api/v1/sessions/validate", func(w http.ResponseWriter, r *http.Request) { n.handleSessionValidate(s, w, r) })
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) { n.handleLogout(s, w, r) })
	mux.HandleFunc("GET "+formPath, func(w http.ResponseWriter, r *http.Request) { n.handleFormPage(s, w, r) })
	mux.HandleFunc("GET "+logoffPath, func(w http.ResponseWriter, r *http.Request) { n.handleLogoff(s, w, r) })
	mux.HandleFunc("POST "+formPath, func(w http.ResponseWriter, r *http.Request) { n.handleFormLogin(s, w, r) })
	mux.HandleFunc("GET /healthz", n.handleHealthz)
	mux.HandleFunc("GET /readyz", n.handleReadyz)
	if s.oidc != nil {
		n.mountOIDC(mux, s)
	}
	return mux
}

// Run listens and serves until ctx is cancelled, then shuts down gracefully:
// readiness turns false at once, and requests in flight get up to 10 s.
func (n *Node) Run(ctx context.Context) error {
	addr := n.cur.Load().cfg.Listen
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("auth node listen %s: %w", addr, err)
	}
	return n.Serve(ctx, ln)
}

// connLimits are the listener's caps. The trusted balancers carry many
// clients' connections from one address, so the per-source cap does not
// apply to them.
func connLimits(cfg Config) connlimit.Limits {
	return connlimit.Limits{MaxConns: cfg.MaxConns, MaxPerSource: max(cfg.MaxConnsPerSource, 0), Exempt: cfg.ProxyTrusted}
}

// storeLimits bound the in-memory stores.
func storeLimits(cfg Config) store.Limits {
	return store.Limits{MaxEntries: cfg.StoreMaxEntries, MaxBytes: cfg.StoreMaxBytes}
}

// refusedLogEvery spaces the warnings about refused connections, so that a
// flood costs a counter increment per connection and not a log line.
const refusedLogEvery = 10 * time.Second

// Serve is Run on a listener the caller opened.
func (n *Node) Serve(ctx context.Context, ln net.Listener) error {
	// Counted from accept, before the PROXY header and the TLS handshake:
	// a client that sends nothing holds a slot until read_header_timeout.
	var lastWarn time.Time
	refusedSince := map[connlimit.Reason]int{}
	ln = connlimit.NewListener(ln, n.conns, func(r connlimit.Reason, addr net.Addr) {
		// Called in the accept loop only: no locking needed.
		n.metrics.connsRefused.WithLabelValues(string(r)).Inc()
		refusedSince[r]++
		if now := time.Now(); now.Sub(lastWarn) >= refusedLogEvery {
			lastWarn = now
			lim := n.conns.Limits()
			n.logger().Warn("connection limit reached: refusing new connections",
				"max_conns", lim.MaxConns, "max_conns_per_source", lim.MaxPerSource,
				"over_limit", refusedSince[connlimit.OverLimit], "over_source_limit", refusedSince[connlimit.OverSourceLimit],
				"source", addr.String())
			clear(refusedSince)
		}
	})
	s := n.cur.Load()
	// Always wrapped: the policy reads the settings in force, so a reload
	// can turn PROXY headers on or off (SKIP hands the connection through
	// untouched).
	ln = &proxyproto.Listener{
		Listener:          ln,
		ConnPolicy:        n.proxyPolicy,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
	}
	srv := &http.Server{
		Handler: n.Handler(),
		// Each handshake takes the certificate and client CAs in force.
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"},
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				s := n.cur.Load()
				if !s.tls.SessionTicketsDisabled && n.tickets != nil {
					if err := n.tickets.Refresh(s.tls, s.cfg.TLS.Rotation()); err != nil {
						return nil, err
					}
				}
				return s.tls, nil
			},
		},
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadHeaderTimeout + 30*time.Second,
		WriteTimeout:      s.cfg.ReadHeaderTimeout + 30*time.Second,
		IdleTimeout:       s.cfg.IdleTimeout,
		// Negotiate authenticates per connection and HTTP/2 breaks it for
		// several clients: offer HTTP/1.1 only.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnContext:  n.connContext,
		ErrorLog:     slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	const loops = 3
	loopsDone := make(chan struct{}, loops)
	loopCtx, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	for _, loop := range []func(context.Context){n.checkLoop, n.storeCheckLoop, n.keytabLoop} {
		go func() {
			defer func() { loopsDone <- struct{}{} }()
			loop(loopCtx)
		}()
	}
	waitLoops := func() {
		for range loops {
			<-loopsDone
		}
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ServeTLS(ln, "", "") }()
	s.log.Info("auth node listening", "addr", ln.Addr().String(), "sso_path", s.cfg.SSOPath,
		"proxy_protocol", s.cfg.ProxyProtocol)

	select {
	case err := <-serveErr:
		stopLoops()
		waitLoops()
		if n.redis != nil {
			_ = n.redis.Close()
		}
		return fmt.Errorf("auth node serve: %w", err)
	case <-ctx.Done():
	}
	n.ready.draining.Store(true)
	n.metrics.ready.WithLabelValues("overall").Set(0)
	shutCtx, cancel := context.WithTimeout(context.Background(), n.cur.Load().cfg.DrainTimeout)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	<-serveErr
	waitLoops()
	n.mu.Lock()
	n.cur.Load().dir.close()
	if nt := n.cur.Load().ntlm; nt != nil {
		_ = nt.verifier.Close()
	}
	n.mu.Unlock()
	if n.redis != nil {
		_ = n.redis.Close()
	}
	n.logger().Info("auth node stopped")
	if err != nil {
		return fmt.Errorf("auth node shutdown: %w", err)
	}
	return nil
}

// logger is the logger of the settings in force (it names the node).
func (n *Node) logger() *slog.Logger { return n.cur.Load().log }

// proxyPolicy accepts a PROXY header only from the trusted balancers; from
// anyone else a header is refused, since it would let a client forge its
// address. With PROXY headers off, connections pass untouched.
func (n *Node) proxyPolicy(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
	cfg := &n.cur.Load().cfg
	if !cfg.ProxyProtocol {
		return proxyproto.SKIP, nil
	}
	if ap, err := netipAddrPort(o.Upstream); err == nil {
		for _, p := range cfg.ProxyTrusted {
			if p.Contains(ap.Addr().Unmap()) {
				return proxyproto.USE, nil
			}
		}
	}
	return proxyproto.REJECT, nil
}

type connKey struct{}

// conn is what the node keeps of one client connection, in the context of
// each of its requests: an id, so that the log lines of one connection can
// be told apart, and the NTLM challenge it was sent (ntlm.go), which only
// this connection may answer and which ends with it.
type conn struct {
	id   uint64
	mu   sync.Mutex
	ntlm *ntlmPending
}

func (n *Node) connContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, &conn{id: n.connSeq.Add(1)})
}

// connOf is the connection of a request's context; nil for a request that
// did not come through Serve (a test's handler call).
func connOf(ctx context.Context) *conn {
	c, _ := ctx.Value(connKey{}).(*conn)
	return c
}

func connID(ctx context.Context) uint64 {
	if c := connOf(ctx); c != nil {
		return c.id
	}
	return 0
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		next.ServeHTTP(w, r)
	})
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	def(&c.DrainTimeout, DefaultDrainTimeout)
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerSource == 0 {
		c.MaxConnsPerSource = DefaultMaxConnsPerSource
	}
	def(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.TokenTTL, DefaultTokenTTL)
	def(&c.SessionTTL, DefaultSessionTTL)
	def(&c.SelfTestInterval, DefaultSelfTestInterval)
	def(&c.KeytabCheckInterval, DefaultKeytabCheckInterval)
	def(&c.PreviousKeysTTL, DefaultPreviousKeysTTL)
	def(&c.MaxClockSkew, DefaultMaxClockSkew)
	def(&c.MaxFutureSkew, min(negotiate.DefaultMaxFutureSkew, c.MaxClockSkew))
	if c.ReplayCacheMax == 0 {
		c.ReplayCacheMax = negotiate.DefaultReplayCacheMax
	}
	if c.ReplayQuota == 0 {
		c.ReplayQuota = min(negotiate.DefaultReplayQuota, c.ReplayCacheMax)
	}
	def(&c.LDAP.Timeout, directory.DefaultTimeout)
	def(&c.LDAP.QueueTimeout, directory.DefaultQueueTimeout)
	def(&c.LDAP.SIDCacheTTL, directory.DefaultSIDCacheTTL)
	def(&c.LDAP.SIDCacheNegativeTTL, directory.DefaultSIDCacheNegativeTTL)
	if c.LDAP.RequiredGroupCheck == "" {
		c.LDAP.RequiredGroupCheck = string(directory.GroupCheckTicket)
	}
	if c.LDAP.SIDCacheSize == 0 {
		c.LDAP.SIDCacheSize = directory.DefaultSIDCacheSize
	}
	if c.SSOPath == "" {
		c.SSOPath = DefaultSSOPath
	}
	if c.TokenParam == "" {
		c.TokenParam = DefaultTokenParam
	}
	if c.CookieName == "" {
		c.CookieName = DefaultCookieName
	}
	if c.Form.UserFailures == 0 {
		c.Form.UserFailures = DefaultFormUserFailures
	}
	if c.Form.ClientFailures == 0 {
		c.Form.ClientFailures = DefaultFormClientFailures
	}
	def(&c.Form.Window, DefaultFormWindow)
	if c.NTLM.Enabled {
		def(&c.NTLM.Timeout, DefaultNTLMTimeout)
		def(&c.NTLM.ChallengeTTL, DefaultNTLMChallengeTTL)
		if c.NTLM.MaxHelpers == 0 {
			c.NTLM.MaxHelpers = DefaultNTLMMaxHelpers
		}
		if c.NTLM.Helper == "" {
			c.NTLM.Helper = DefaultNTLMHelper
		}
		if c.NTLM.Domain == "" {
			c.NTLM.Domain, _, _ = strings.Cut(strings.ToUpper(c.Realm), ".")
		}
	}
	def(&c.SSOSession.Lifetime, DefaultSSOSessionLifetime)
	def(&c.SSOSession.Idle, DefaultSSOSessionIdle)
	if c.SelfTestSPN == "" && c.FQDN != "" {
		c.SelfTestSPN = "HTTP/" + c.FQDN
	}
	if c.LDAP.PoolSize == 0 {
		c.LDAP.PoolSize = directory.DefaultPoolSize
	}
	if c.StoreMaxEntries == 0 {
		c.StoreMaxEntries = store.DefaultMaxEntries
	}
	if c.StoreMaxBytes == 0 {
		c.StoreMaxBytes = store.DefaultMaxBytes
	}
}

// validate repeats the checks that matter for safety even when cmd/iwalb
// already validated the file, since tests and embedders build Config
// directly.
func (c *Config) validate() error {
	var errs []error
	need := func(v, name string) {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", name))
		}
	}
	need(c.FQDN, "FQDN")
	need(c.Listen, "Listen")
	need(c.CertFile, "CertFile")
	need(c.KeyFile, "KeyFile")
	need(c.ApplicationURL, "ApplicationURL")
	need(c.Keytab, "Keytab")
	need(c.Krb5Conf, "Krb5Conf")
	need(c.Realm, "Realm")
	need(c.Account, "Account")
	if err := CheckSSOPath(c.SSOPath); err != nil {
		errs = append(errs, fmt.Errorf("SSOPath %w", err))
	}
	if c.OIDC != nil {
		if err := CheckOIDCPaths(c.OIDC.Issuer, c.SSOPath); err != nil {
			errs = append(errs, fmt.Errorf("OIDC issuer %q: %w", c.OIDC.Issuer, err))
		}
	}
	if c.MaxHeaderBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("MaxHeaderBytes %d is below 64 KiB; Kerberos tickets with large PACs would be refused", c.MaxHeaderBytes))
	}
	if c.MaxFutureSkew < 0 || c.MaxFutureSkew > c.MaxClockSkew {
		errs = append(errs, fmt.Errorf("MaxFutureSkew %s is not between 0 and MaxClockSkew %s", c.MaxFutureSkew, c.MaxClockSkew))
	}
	if c.ReplayQuota < 1 || c.ReplayQuota > c.ReplayCacheMax {
		errs = append(errs, fmt.Errorf("ReplayQuota %d is not between 1 and ReplayCacheMax %d", c.ReplayQuota, c.ReplayCacheMax))
	}
	if len(c.APIClients) == 0 {
		errs = append(errs, errors.New("at least one API client is required"))
	}
	if u, err := url.Parse(c.ApplicationURL); c.ApplicationURL != "" && (err != nil || u.Scheme != "https" || u.Host == "") {
		errs = append(errs, fmt.Errorf("ApplicationURL %q is not an absolute https:// URL; the one-time token travels in it", c.ApplicationURL))
	}
	for _, a := range c.APIClients {
		// Keys are compared trimmed (see authenticateAPI), so padding
		// must not make a short key look long enough.
		if len(strings.TrimSpace(a.Key)) < 16 {
			errs = append(errs, fmt.Errorf("API client %q: key shorter than 16 bytes", a.Name))
		}
		if strings.Contains(a.CertName, "*") {
			errs = append(errs, fmt.Errorf("API client %q: CertName %q: names are matched exactly; wildcards are not allowed", a.Name, a.CertName))
		}
	}
	if c.KeytabCheckInterval < 0 {
		errs = append(errs, fmt.Errorf("KeytabCheckInterval %s must not be negative", c.KeytabCheckInterval))
	}
	if c.MaxConns < 1 {
		errs = append(errs, fmt.Errorf("MaxConns %d must be positive", c.MaxConns))
	}
	if c.StoreMaxEntries < 1 || c.StoreMaxBytes < 1 {
		errs = append(errs, fmt.Errorf("StoreMaxEntries %d and StoreMaxBytes %d must be positive", c.StoreMaxEntries, c.StoreMaxBytes))
	}
	if c.ProxyProtocol && len(c.ProxyTrusted) == 0 {
		errs = append(errs, errors.New("PROXY protocol enabled with no trusted addresses"))
	}
	if g := directory.GroupCheck(c.LDAP.RequiredGroupCheck); g != directory.GroupCheckTicket && g != directory.GroupCheckDirectory {
		errs = append(errs, fmt.Errorf("LDAP.RequiredGroupCheck %q is neither %q nor %q", g, directory.GroupCheckTicket, directory.GroupCheckDirectory))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// wrapErr names the node in an error of New or Prepare: the package names
// itself once, and its callers add only their own context.
func wrapErr(err *error, fqdn string) {
	if *err != nil {
		*err = fmt.Errorf("authnode %s: %w", fqdn, *err)
	}
}

// reservedPaths are the node's own endpoints; the SSO path may be none of
// them, nor under /api/.
var reservedPaths = []string{"/healthz", "/readyz", "/logout", formPath, logoffPath}

// CheckSSOPath says whether p can be the login endpoint's path: absolute,
// plain characters only (it becomes a route pattern), and not one of the
// node's own endpoints.
func CheckSSOPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q must start with \"/\"", p)
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/-._~", r)) {
			return fmt.Errorf("%q may hold only letters, digits and / - . _ ~", p)
		}
	}
	if slices.Contains(reservedPaths, p) || p == "/api" || strings.HasPrefix(p, "/api/") {
		return fmt.Errorf("%q is taken by the node's own endpoints (%s, /api/)", p, strings.Join(reservedPaths, ", "))
	}
	return nil
}

func (c *Config) serverTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", c.CertFile, c.KeyFile, err)
	}
	t := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}
	c.TLS.Apply(t)
	if c.ClientCAFile != "" {
		if t.ClientCAs, err = loadCertPool(c.ClientCAFile); err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		// Browsers reach /sso without a certificate; only the API looks
		// at one.
		t.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return t, nil
}

func loadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return certPool(path, pem)
}

// certPool is the pool of the PEM certificates read from path.
func certPool(path string, pem []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
