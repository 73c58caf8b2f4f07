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
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	krbconfig "github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/keytab"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/negotiate"
	"github.com/iwalb/iwalb/authnode/store"
	"github.com/iwalb/iwalb/internal/connlimit"
)

// Store keeps values that expire. The node uses one for one-time tokens and
// one for sessions; Take must be atomic, across nodes for a shared store.
// Missing keys give store.ErrNotFound, lapsed ones store.ErrExpired.
type Store interface {
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

// Node is one auth node. Create it with New and start it with Run.
type Node struct {
	cfg        Config
	log        *slog.Logger
	metrics    *metrics
	appURL     *url.URL
	keytab     *keytab.Keytab
	krb5       *krbconfig.Config
	validator  ticketValidator
	dir        userDirectory
	tokens     Store
	sessions   Store
	apiClients []apiClient
	tlsConfig  *tls.Config
	ready      readiness
	conns      *connlimit.Limiter
	connSeq    atomic.Uint64
	now        func() time.Time

	// selfTest proves the keytab against the KDC; a field so tests can
	// observe it without a KDC.
	selfTest func(ctx context.Context) error

	// redis is the connection of the stores and the replay cache when
	// they are in Redis; Serve closes it.
	redis *store.Redis
	// storeCheck proves a shared store reachable, for readiness; nil for
	// the in-memory one.
	storeCheck func(ctx context.Context) error
}

// New checks cfg, loads the keytab and certificates and returns a Node that
// is ready to Run. Nothing listens and nothing is dialed until Run.
func New(cfg Config, opts Options) (_ *Node, err error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: opts.Logger, tokens: opts.Tokens, sessions: opts.Sessions, now: opts.Now}
	if n.now == nil {
		n.now = time.Now
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	n.log = n.log.With("role", "authnode", "node", cfg.FQDN)
	if n.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, fmt.Errorf("register auth node metrics: %w", err)
	}
	n.conns = newConnLimiter(cfg)
	if n.appURL, err = parseAppURL(cfg.ApplicationURL); err != nil {
		return nil, fmt.Errorf("application URL %q: %w", cfg.ApplicationURL, err)
	}
	if n.keytab, err = negotiate.LoadKeytab(cfg.Keytab); err != nil {
		return nil, err
	}
	if n.krb5, err = krbconfig.Load(cfg.Krb5Conf); err != nil {
		return nil, fmt.Errorf("load krb5.conf %s: %w", cfg.Krb5Conf, err)
	}
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
	v := negotiate.NewValidator(n.keytab, vopts)
	// In Redis, the replay cache is not the validator's to count.
	if cfg.Redis == nil {
		if err := registerReplayCache(opts.Registerer, v); err != nil {
			return nil, fmt.Errorf("register auth node metrics: %w", err)
		}
	}
	n.validator = v
	n.selfTest = func(ctx context.Context) error {
		return negotiate.SelfTest(ctx, n.krb5, n.keytab, cfg.Account, cfg.Realm, cfg.SelfTestSPN)
	}
	if n.tlsConfig, err = cfg.serverTLS(); err != nil {
		return nil, err
	}
	ldapTLS := &tls.Config{ServerName: cfg.LDAP.ServerName, MinVersion: tls.VersionTLS12}
	if cfg.LDAP.CAFile != "" {
		if ldapTLS.RootCAs, err = loadCertPool(cfg.LDAP.CAFile); err != nil {
			return nil, fmt.Errorf("LDAP CA: %w", err)
		}
	}
	n.dir, err = directory.New(directory.Config{
		URL: cfg.LDAP.URL, StartTLS: cfg.LDAP.StartTLS, AllowPlaintext: cfg.LDAP.AllowPlaintext,
		TLS: ldapTLS, BindDN: cfg.LDAP.BindDN, BindPassword: cfg.LDAP.BindPassword,
		BaseDN: cfg.LDAP.BaseDN, RequiredGroup: cfg.LDAP.RequiredGroup,
		RequiredGroupCheck:  directory.GroupCheck(cfg.LDAP.RequiredGroupCheck),
		Timeout:             cfg.LDAP.Timeout,
		PoolSize:            cfg.LDAP.PoolSize,
		QueueTimeout:        cfg.LDAP.QueueTimeout,
		SIDCacheSize:        cfg.LDAP.SIDCacheSize,
		SIDCacheTTL:         cfg.LDAP.SIDCacheTTL,
		SIDCacheNegativeTTL: cfg.LDAP.SIDCacheNegativeTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("LDAP: %w", err)
	}
	for _, c := range cfg.APIClients {
		// Presented keys are trimmed (see authenticateAPI); so are these.
		n.apiClients = append(n.apiClients, apiClient{name: c.Name, keyHash: sha256Sum(strings.TrimSpace(c.Key)), certName: c.CertName})
	}
	// Tokens and sessions draw on one budget: the bound is the node's.
	budget := store.NewBudget(store.Limits{MaxEntries: cfg.StoreMaxEntries, MaxBytes: cfg.StoreMaxBytes})
	if n.tokens == nil {
		n.tokens = store.NewMemory(store.Options{Budget: budget})
	}
	if n.sessions == nil {
		n.sessions = store.NewMemory(store.Options{Budget: budget})
	}
	if c, ok := n.tokens.(storeChecker); ok {
		n.storeCheck = c.Check
		n.ready.store.Store(&checkResult{Detail: "not checked yet"})
	}
	if err := n.registerGauges(opts.Registerer); err != nil {
		return nil, fmt.Errorf("register auth node metrics: %w", err)
	}
	for _, k := range negotiate.Summarize(n.keytab) {
		n.log.Info("keytab entry", "principal", k.Principal+"@"+k.Realm, "kvno", k.KVNO, "enctype", k.EtypeName)
	}
	return n, nil
}

// Handler returns the node's HTTP routes, for tests and for embedding.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+n.cfg.SSOPath, n.handleSSO)
	mux.HandleFunc("POST /api/v1/tokens/redeem", n.handleRedeem)
	mux.HandleFunc("POST /api/v1/sessions/validate", n.handleSessionValidate)
	mux.HandleFunc("POST /logout", n.handleLogout)
	mux.HandleFunc("GET /healthz", n.handleHealthz)
	mux.HandleFunc("GET /readyz", n.handleReadyz)
	return securityHeaders(mux)
}

// Run listens and serves until ctx is cancelled, then shuts down gracefully:
// readiness turns false at once, and requests in flight get up to 10 s.
func (n *Node) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("auth node listen %s: %w", n.cfg.Listen, err)
	}
	return n.Serve(ctx, ln)
}

// newConnLimiter returns the listener's caps. The trusted balancers carry
// many clients' connections from one address, so the per-source cap does
// not apply to them.
func newConnLimiter(cfg Config) *connlimit.Limiter {
	return connlimit.New(connlimit.Limits{
		MaxConns: cfg.MaxConns, MaxPerSource: max(cfg.MaxConnsPerSource, 0), Exempt: cfg.ProxyTrusted,
	})
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
			n.log.Warn("connection limit reached: refusing new connections",
				"max_conns", n.cfg.MaxConns, "max_conns_per_source", max(n.cfg.MaxConnsPerSource, 0),
				"over_limit", refusedSince[connlimit.OverLimit], "over_source_limit", refusedSince[connlimit.OverSourceLimit],
				"source", addr.String())
			clear(refusedSince)
		}
	})
	if n.cfg.ProxyProtocol {
		ln = &proxyproto.Listener{
			Listener:          ln,
			ConnPolicy:        n.proxyPolicy,
			ReadHeaderTimeout: n.cfg.ReadHeaderTimeout,
		}
	}
	srv := &http.Server{
		Handler:           n.Handler(),
		TLSConfig:         n.tlsConfig,
		MaxHeaderBytes:    n.cfg.MaxHeaderBytes,
		ReadHeaderTimeout: n.cfg.ReadHeaderTimeout,
		ReadTimeout:       n.cfg.ReadHeaderTimeout + 30*time.Second,
		WriteTimeout:      n.cfg.ReadHeaderTimeout + 30*time.Second,
		IdleTimeout:       n.cfg.IdleTimeout,
		// Negotiate authenticates per connection and HTTP/2 breaks it for
		// several clients: offer HTTP/1.1 only.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnContext:  n.connContext,
		ErrorLog:     slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	checksDone := make(chan struct{}, 2)
	checkCtx, stopChecks := context.WithCancel(ctx)
	defer stopChecks()
	go func() {
		defer func() { checksDone <- struct{}{} }()
		n.checkLoop(checkCtx)
	}()
	go func() {
		defer func() { checksDone <- struct{}{} }()
		n.storeCheckLoop(checkCtx)
	}()
	waitChecks := func() { <-checksDone; <-checksDone }

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ServeTLS(ln, "", "") }()
	n.log.Info("auth node listening", "addr", ln.Addr().String(), "sso_path", n.cfg.SSOPath,
		"proxy_protocol", n.cfg.ProxyProtocol)

	select {
	case err := <-serveErr:
		stopChecks()
		waitChecks()
		if n.redis != nil {
			_ = n.redis.Close()
		}
		return fmt.Errorf("auth node serve: %w", err)
	case <-ctx.Done():
	}
	n.ready.draining.Store(true)
	n.metrics.ready.WithLabelValues("overall").Set(0)
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	<-serveErr
	waitChecks()
	if closer, ok := n.dir.(interface{ Close() error }); ok {
		_ = closer.Close()
	}
	if n.redis != nil {
		_ = n.redis.Close()
	}
	n.log.Info("auth node stopped")
	if err != nil {
		return fmt.Errorf("auth node shutdown: %w", err)
	}
	return nil
}

// proxyPolicy accepts a PROXY header only from the trusted balancers; from
// anyone else a header is refused, since it would let a client forge its
// address.
func (n *Node) proxyPolicy(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
	if ap, err := netipAddrPort(o.Upstream); err == nil {
		for _, p := range n.cfg.ProxyTrusted {
			if p.Contains(ap.Addr().Unmap()) {
				return proxyproto.USE, nil
			}
		}
	}
	return proxyproto.REJECT, nil
}

type connIDKey struct{}

// connContext gives every connection an id, so that the log lines of one
// connection can be told apart (and NTLM, whose state is per connection,
// can key on it later).
func (n *Node) connContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connIDKey{}, n.connSeq.Add(1))
}

func connID(ctx context.Context) uint64 {
	id, _ := ctx.Value(connIDKey{}).(uint64)
	return id
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
		c.MaxHeaderBytes = 128 << 10
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerSource == 0 {
		c.MaxConnsPerSource = DefaultMaxConnsPerSource
	}
	def(&c.ReadHeaderTimeout, 10*time.Second)
	def(&c.IdleTimeout, 120*time.Second)
	def(&c.TokenTTL, 60*time.Second)
	def(&c.SessionTTL, 8*time.Hour)
	def(&c.SelfTestInterval, 60*time.Second)
	def(&c.MaxClockSkew, 5*time.Minute)
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
		c.SSOPath = "/sso"
	}
	if c.TokenParam == "" {
		c.TokenParam = "ssoToken"
	}
	if c.CookieName == "" {
		c.CookieName = "iwalb_session"
	}
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
		return fmt.Errorf("auth node config: %w", err)
	}
	return nil
}

// reservedPaths are the node's own endpoints; the SSO path may be none of
// them, nor under /api/.
var reservedPaths = []string{"/healthz", "/readyz", "/logout"}

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
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}
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
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
