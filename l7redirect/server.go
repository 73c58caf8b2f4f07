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
	"strings"
	"time"
)

// Server holds the HTTP limits shared by the front door's listeners. The
// zero value is ready to use with the defaults stated on each field.
type Server struct {
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
	// Logger receives server errors (TLS handshakes that fail are logged
	// at debug level); nil means slog.Default().
	Logger *slog.Logger
}

// Serve serves h on ln until ctx is cancelled, then shuts down gracefully
// and returns nil. With tlsConfig it serves HTTPS: give it one certificate
// per front-door name in Certificates and the one matching the client's SNI
// is chosen (the first one when nothing matches). Without tlsConfig it
// serves plain HTTP, meant for an HTTPSRedirect.
func (s *Server) Serve(ctx context.Context, ln net.Listener, h http.Handler, tlsConfig *tls.Config) error {
	log := s.Logger
	if log == nil {
		log = slog.Default()
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
// redirect either.
type HTTPSRedirect struct {
	names []string
	port  int
	log   *slog.Logger
}

// NewHTTPSRedirect returns a plain-HTTP handler that redirects to HTTPS on
// port (0 or 443: left out of the URL) for the names given: exact names or
// "*.example.test" wildcards, as in Rule.Host.
func NewHTTPSRedirect(names []string, port int, logger *slog.Logger) (*HTTPSRedirect, error) {
	var errs []error
	if len(names) == 0 {
		errs = append(errs, errors.New("l7redirect: HTTPS redirect: no names"))
	}
	r := &HTTPSRedirect{port: port, log: logger}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n == "" || !validHostPattern(n) {
			errs = append(errs, fmt.Errorf("l7redirect: HTTPS redirect: name %q is not a DNS name or *.name", n))
			continue
		}
		r.names = append(r.names, n)
	}
	if port < 0 || port > 65535 {
		errs = append(errs, fmt.Errorf("l7redirect: HTTPS redirect: port %d out of range", port))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r, nil
}

// ServeHTTP implements http.Handler.
func (hr *HTTPSRedirect) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	host := requestHost(r.Host)
	known := false
	for _, n := range hr.names {
		if host != "" && hostMatches(n, host) {
			known = true
			break
		}
	}
	status := http.StatusMisdirectedRequest
	if !known {
		writePage(w, status, "Unknown host", "This front door does not serve this host name.")
	} else {
		status = http.StatusMovedPermanently
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			status = http.StatusPermanentRedirect
		}
		loc := targetURL(host, hr.port, cleanPath(r.URL.EscapedPath()), r.URL.RawQuery)
		w.Header().Set("Location", loc)
		writePage(w, status, "Moved", `This site is served over <a href="`+html.EscapeString(loc)+`">HTTPS</a>.`)
	}
	hr.log.Info("request", "scheme", "http", "method", r.Method, "host", truncate(r.Host, 256),
		"path", truncate(r.URL.EscapedPath(), 512), "status", status, "client", clientAddr(r.RemoteAddr).String(),
		"duration", time.Since(start))
}
