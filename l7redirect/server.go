package l7redirect

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/internal/connlimit"
	"github.com/iwalb/iwalb/internal/hostname"
)

// Server holds the HTTP and connection limits shared by the front door's
// listeners. The zero value is ready to use with the defaults stated on
// each field. Set the fields before the first Serve and do not change them
// after it: each Serve call reads the HTTP timeouts and MaxHeaderBytes
// once, when it starts, and SetLimits changes the connection caps, of the
// listeners being served too. A Server must not be copied after first use.
type Server struct {
	// Name is the front door's: the "frontdoor" label of the connection
	// metrics.
	Name string
	// ReadHeaderTimeout bounds reading a request's headers, against slow
	// clients; 0 means 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request; 0 means 30s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response; 0 means 30s.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long; 0 means 120s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request headers; 0 means 128 KiB, since
	// browsers send large cookies and Negotiate headers to the same names.
	MaxHeaderBytes int
	// ShutdownTimeout is how long Serve waits for requests in flight after
	// its context ends; 0 means 5s.
	ShutdownTimeout time.Duration
	// MaxConns bounds the connections each listener given to Serve holds
	// open at once, counted from accept to close as L4's max_conns is; one
	// more is reset at once, unread. 0 means DefaultMaxConns, negative no
	// bound. The connections given to ServeHanded are not counted: the L4
	// listener that hands them over has counted them already.
	MaxConns int
	// MaxConnsPerSource bounds those from one client address (IPv6: one
	// /64), so that one client cannot take them all; 0 means
	// DefaultMaxConnsPerSource, negative no bound.
	MaxConnsPerSource int
	// ExemptSources are the TCP peers MaxConnsPerSource does not apply
	// to: the balancers in front that send PROXY headers, each carrying
	// many clients' connections.
	ExemptSources []netip.Prefix
	// WrapListener, if set, wraps each listener given to Serve (not to
	// ServeHanded) inside the connection caps. A PROXY-protocol listener
	// goes here: the caps then count the TCP peer, and a client slow to
	// send its header holds up its own connection, never the accept loop.
	WrapListener func(net.Listener) net.Listener
	// Metrics, if set, counts the connections refused and open under
	// Name.
	Metrics *Metrics
	// Logger receives server errors (TLS handshakes that fail are logged
	// at debug level); nil means slog.Default().
	Logger *slog.Logger

	// mu guards MaxConns, MaxConnsPerSource and ExemptSources once
	// serving, and limiters.
	mu sync.Mutex
	// limiters are those of the listeners being served, for SetLimits.
	limiters map[*connlimit.Limiter]struct{}
}

const (
	// DefaultMaxConns is Server.MaxConns when it is 0, an L4 listener's
	// default too: a connection holds one file descriptor, and 10,000 are
	// well within the open-file limit Go raises a Linux process to.
	DefaultMaxConns = 10000
	// DefaultMaxConnsPerSource is Server.MaxConnsPerSource when it is 0:
	// far more than a browser opens, few enough that it takes 40 sources
	// to fill DefaultMaxConns. A NAT gateway in front of many users may
	// need more.
	DefaultMaxConnsPerSource = 256
)

// Serve serves h on ln until ctx is cancelled, then shuts down gracefully
// and returns nil. With tlsConfig it serves HTTPS: give it one certificate
// per front-door name in Certificates and the one matching the client's SNI
// is chosen (the first one when nothing matches); a TLSSwitch's Config lets
// a reload change them without serving ln again. HTTPS offers HTTP/2 and
// HTTP/1.1 by ALPN. Without tlsConfig it serves plain HTTP, meant for an
// HTTPSRedirect. Its connections are capped (MaxConns, MaxConnsPerSource,
// changed by SetLimits while it serves) and then wrapped by WrapListener.
// The HTTP timeouts and MaxHeaderBytes are read once, when Serve starts.
func (s *Server) Serve(ctx context.Context, ln net.Listener, h http.Handler, tlsConfig *tls.Config) error {
	return s.serve(ctx, ln, h, tlsConfig, true)
}

// ServeHanded is Serve for a listener whose connections another listener
// accepted and counted already (an L4 route's hand-off listener): they are
// neither capped nor wrapped.
func (s *Server) ServeHanded(ctx context.Context, ln net.Listener, h http.Handler, tlsConfig *tls.Config) error {
	return s.serve(ctx, ln, h, tlsConfig, false)
}

func (s *Server) serve(ctx context.Context, ln net.Listener, h http.Handler, tlsConfig *tls.Config, capped bool) error {
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	if capped {
		listener := "http"
		if tlsConfig != nil {
			listener = "https"
		}
		var stopLimit func()
		ln, stopLimit = s.limit(ln, listener, log)
		defer stopLimit()
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: orDefault(s.ReadHeaderTimeout, 10*time.Second),
		ReadTimeout:       orDefault(s.ReadTimeout, 30*time.Second),
		WriteTimeout:      orDefault(s.WriteTimeout, 30*time.Second),
		IdleTimeout:       orDefault(s.IdleTimeout, 120*time.Second),
		MaxHeaderBytes:    s.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if srv.MaxHeaderBytes == 0 {
		srv.MaxHeaderBytes = 128 << 10
	}
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		sctx, cancel := context.WithTimeout(context.Background(), orDefault(s.ShutdownTimeout, 5*time.Second))
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	})
	var err error
	if tlsConfig != nil {
		if len(tlsConfig.Certificates) == 0 && tlsConfig.GetCertificate == nil && tlsConfig.GetConfigForClient == nil {
			stop()
			return fmt.Errorf("l7redirect: serve %s: TLS config has no certificate", ln.Addr())
		}
		srv.TLSConfig = tlsConfig.Clone()
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if !stop() {
		<-done // ctx ended: wait for the graceful shutdown
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("l7redirect: serve %s: %w", ln.Addr(), err)
}

// refusedLogEvery spaces the warnings about refused connections.
const refusedLogEvery = 10 * time.Second

// SetLimits replaces MaxConns, MaxConnsPerSource and ExemptSources (with
// the same meanings and defaults) for the listeners being served and
// those served later, for a configuration reload: the connections open
// keep their slots, and those accepted from now on are admitted under the
// new caps. A listener over a lowered cap refuses connections until enough
// of its open ones have closed.
func (s *Server) SetLimits(maxConns, maxConnsPerSource int, exempt []netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.MaxConns, s.MaxConnsPerSource, s.ExemptSources = maxConns, maxConnsPerSource, slices.Clone(exempt)
	lim := s.limitsLocked()
	for l := range s.limiters {
		l.SetLimits(lim)
	}
}

// limitsLocked maps the Server's caps to connlimit's; s.mu must be held.
func (s *Server) limitsLocked() connlimit.Limits {
	return connlimit.Limits{
		MaxConns:     limitOrDefault(s.MaxConns, DefaultMaxConns),
		MaxPerSource: limitOrDefault(s.MaxConnsPerSource, DefaultMaxConnsPerSource),
		Exempt:       s.ExemptSources,
	}
}

// limit caps ln's connections, then wraps it with WrapListener. The caps
// follow SetLimits until the returned function is called.
func (s *Server) limit(ln net.Listener, listener string, log *slog.Logger) (net.Listener, func()) {
	s.mu.Lock()
	lim := connlimit.New(s.limitsLocked())
	if s.limiters == nil {
		s.limiters = map[*connlimit.Limiter]struct{}{}
	}
	s.limiters[lim] = struct{}{}
	s.mu.Unlock()
	untrack := s.Metrics.track(s.Name, listener, lim)
	// A flood is counted in the metrics and summed up in a warning at most
	// every refusedLogEvery, not logged line by line. The accept loop is
	// the only caller.
	var lastWarn time.Time
	var since int
	refused := func(reason connlimit.Reason, addr net.Addr) {
		s.Metrics.refuse(s.Name, listener, reason)
		since++
		if now := time.Now(); now.Sub(lastWarn) >= refusedLogEvery {
			s.mu.Lock()
			limits := s.limitsLocked()
			s.mu.Unlock()
			log.Warn("connections refused over the limits", "listener", listener, "addr", ln.Addr().String(),
				"refused", since, "last_client", addr.String(), "last_reason", string(reason),
				"max_conns", limits.MaxConns, "max_conns_per_source", limits.MaxPerSource)
			lastWarn, since = now, 0
		}
	}
	var capped net.Listener = connlimit.NewListener(ln, lim, refused)
	if s.WrapListener != nil {
		capped = s.WrapListener(capped)
	}
	return capped, func() {
		untrack()
		s.mu.Lock()
		delete(s.limiters, lim)
		s.mu.Unlock()
	}
}

// limitOrDefault maps a Server limit to a connlimit one: 0 means def,
// negative no bound (connlimit's 0).
func limitOrDefault(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// HTTPSRedirect answers plain-HTTP requests with a redirect to the same
// host, path and query over HTTPS: 301 for GET and HEAD, 308 (which keeps
// the method and body) for the others. It redirects only to the front
// door's own names; any other Host is answered 421, so it is no open
// redirect either. A request-target longer than its bound is answered 414.
// It sends no Strict-Transport-Security header: browsers ignore one that
// comes over plain HTTP. It is safe for concurrent use; Update swaps its
// names, port and bound atomically.
type HTTPSRedirect struct {
	name    string
	cfg     atomic.Pointer[redirectTable]
	log     *slog.Logger
	refused *prometheus.CounterVec // by reason
}

// redirectTable is a validated, immutable RedirectConfig.
type redirectTable struct {
	names     []string
	port      int
	maxTarget int
}

// RedirectConfig configures an HTTPSRedirect.
type RedirectConfig struct {
	// Name is the front door's, for logs and the "frontdoor" label of its
	// metrics.
	Name string
	// Names are the names redirected: exact names or "*.example.test"
	// wildcards, as in Rule.Host.
	Names []string
	// Port is the HTTPS port redirected to; 0 or 443 is left out of the
	// URL.
	Port int
	// MaxRequestTarget bounds the request-target in bytes, as
	// Config.MaxRequestTarget does; 0 means DefaultMaxRequestTarget.
	MaxRequestTarget int
}

// NewHTTPSRedirect returns a plain-HTTP handler that redirects to HTTPS on
// port (0 or 443: left out of the URL) for the names given: exact names or
// "*.example.test" wildcards, as in Rule.Host. It is NewRedirect without a
// front-door name or metrics, with the default bound.
func NewHTTPSRedirect(names []string, port int, logger *slog.Logger) (*HTTPSRedirect, error) {
	return NewRedirect(RedirectConfig{Names: names, Port: port}, Options{Logger: logger})
}

// NewRedirect validates cfg and returns a plain-HTTP handler that
// redirects to HTTPS; opts.Metrics counts
// iwalb_l7redirect_requests_refused_total{listener="http"}.
func NewRedirect(cfg RedirectConfig, opts Options) (*HTTPSRedirect, error) {
	t, err := compileRedirect(cfg)
	if err != nil {
		return nil, err
	}
	r := &HTTPSRedirect{name: cfg.Name, log: opts.Logger, refused: orPrivate(opts.Metrics).refusedBy(cfg.Name, "http")}
	r.cfg.Store(t)
	if r.log == nil {
		r.log = slog.Default()
	}
	if cfg.Name != "" {
		r.log = r.log.With("frontdoor", cfg.Name)
	}
	return r, nil
}

// Update validates cfg and, if it is sound, makes its names, port and
// bound those of the requests that start from now on; a cfg refused
// changes nothing. cfg.Name is ignored: the redirect keeps the name it was
// created with.
func (hr *HTTPSRedirect) Update(cfg RedirectConfig) error {
	cfg.Name = hr.name
	t, err := compileRedirect(cfg)
	if err != nil {
		return err
	}
	hr.cfg.Store(t)
	return nil
}

// compileRedirect validates cfg, reporting all its problems together.
func compileRedirect(cfg RedirectConfig) (*redirectTable, error) {
	var errs []error
	if len(cfg.Names) == 0 {
		errs = append(errs, fmt.Errorf("l7redirect %q: HTTPS redirect: no names", cfg.Name))
	}
	t := &redirectTable{port: cfg.Port, maxTarget: cfg.MaxRequestTarget}
	for _, n := range cfg.Names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n == "" || !validHostPattern(n) {
			errs = append(errs, fmt.Errorf("l7redirect %q: HTTPS redirect: name %q is not a DNS name or *.name", cfg.Name, n))
			continue
		}
		t.names = append(t.names, n)
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		errs = append(errs, fmt.Errorf("l7redirect %q: HTTPS redirect: port %d out of range", cfg.Name, cfg.Port))
	}
	switch {
	case cfg.MaxRequestTarget < 0:
		errs = append(errs, fmt.Errorf("l7redirect %q: HTTPS redirect: max request target %d must not be negative", cfg.Name, cfg.MaxRequestTarget))
	case cfg.MaxRequestTarget == 0:
		t.maxTarget = DefaultMaxRequestTarget
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// ServeHTTP implements http.Handler.
func (hr *HTTPSRedirect) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t := hr.cfg.Load()
	status := http.StatusMisdirectedRequest
	var extra []any
	switch {
	case len(r.RequestURI) > t.maxTarget:
		// Before any work that grows with the target's length.
		status = http.StatusRequestURITooLong
		uriTooLong(w)
		hr.refused.WithLabelValues(reasonURITooLong).Inc()
		extra = []any{"target_bytes", len(r.RequestURI)}
	case !t.knows(requestHost(r.Host)):
		writePage(w, status, "Unknown host", "This front door does not serve this host name.")
	default:
		status = http.StatusMovedPermanently
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			status = http.StatusPermanentRedirect
		}
		loc := targetURL(requestHost(r.Host), t.port, cleanPath(r.URL.EscapedPath()), r.URL.RawQuery)
		w.Header().Set("Location", loc)
		writePage(w, status, "Moved", `This site is served over <a href="`+html.EscapeString(loc)+`">HTTPS</a>.`)
	}
	hr.log.Info("request", append([]any{"scheme", "http", "method", r.Method, "host", truncate(r.Host, 256),
		"path", truncate(r.URL.EscapedPath(), 512), "status", status, "client", clientAddr(r.RemoteAddr).String(),
		"duration", time.Since(start)}, extra...)...)
}

// knows reports whether host (from requestHost) is one of the names.
func (t *redirectTable) knows(host string) bool {
	if host == "" {
		return false
	}
	for _, n := range t.names {
		if hostname.Match(n, host) {
			return true
		}
	}
	return false
}
