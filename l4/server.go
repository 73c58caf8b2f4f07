// Package l4 is iwalb's TLS-passthrough balancer: it reads the TLS
// ClientHello of each connection without consuming it, routes on the server
// name to a pool of package lb, and relays the client's exact bytes to the
// picked backend, so the client and the auth node keep one TLS session and
// one TCP connection end to end (NTLM's multi-leg handshake and Kerberos
// both survive).
//
//	router, err := l4.NewRouter([]l4.Route{
//		{Name: "auth", ServerNames: []string{"lb.example.test"}, Pool: authPool, ProxyProtocol: 2},
//	}, nil)
//	srv, err := l4.New(l4.Config{Name: "https", Router: router}, l4.Options{Logger: logger, Metrics: m})
//	err = srv.Serve(ctx, ln) // until ctx is cancelled
//
// Each listener holds at most Config.MaxConns connections open, counted from
// accept to close, optionally at most Config.MaxConnsPerSource from one
// client address, and logs one line at info level per relayed connection
// when it ends (client, server name, route, backend, bytes each way,
// duration, and how it ended).
//
// Package l4 never terminates TLS and never looks past the ClientHello. It
// does not know how backends are chosen or checked (package lb does), nor
// how configuration is read.
package l4

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/internal/connlimit"
	"github.com/iwalb/iwalb/lb"
)

// Config is one listener's configuration. Zero durations and sizes take the
// defaults stated on each field.
type Config struct {
	// Name labels the listener in logs and metrics.
	Name string
	// Router is the initial routing table; required.
	Router *Router
	// PeekTimeout bounds reading the PROXY header (if any) and the
	// ClientHello; 0 means 5s.
	PeekTimeout time.Duration
	// MaxHelloSize bounds the bytes of records carrying the ClientHello;
	// 0 means 16 KiB, the most is 64 KiB.
	MaxHelloSize int
	// MaxHelloRecords bounds the TLS records the ClientHello may be split
	// into; a client that needs more is closed and counted
	// (RejectTooManyRecords). 0 means DefaultMaxHelloRecords.
	MaxHelloRecords int
	// DialTimeout bounds connecting to one backend; 0 means 5s.
	DialTimeout time.Duration
	// DialAttempts is how many backends to try before giving up on a
	// connection; 0 means 3 (never more than the pool has).
	DialAttempts int
	// IdleTimeout closes a relayed connection after no byte moved either way
	// for this long, or once one side has taken more than twice this long to
	// accept a 256 KiB chunk (it has stopped reading); 0 means 10 minutes,
	// negative disables it.
	IdleTimeout time.Duration
	// TrustedProxies are the upstream balancers allowed to send a PROXY
	// protocol header; their header's source address replaces theirs. From
	// anyone else a PROXY header is just non-TLS bytes. They are exempt
	// from MaxConnsPerSource, since they carry many clients' connections.
	TrustedProxies []netip.Prefix
	// MaxConns bounds the connections Serve holds open at once, each
	// counted from accept until it is closed, including those still
	// sending their ClientHello, so a flood of slow or silent clients
	// cannot use up the process's file descriptors. A connection over the
	// limit is reset at once and counted (RejectOverLimit), with a warning
	// at most every 10s that says how many were refused since the last
	// one. 0 means DefaultMaxConns.
	MaxConns int
	// MaxConnsPerSource bounds the connections Serve holds open at once
	// from one TCP peer address (IPv6: one /64), counted like MaxConns, so
	// that one client cannot take every slot of MaxConns. TrustedProxies
	// are exempt. A connection over it is reset at once and counted
	// (RejectOverSourceLimit), with a warning at most every 10s. 0 means no
	// per-source limit.
	MaxConnsPerSource int

	// parkAfter is how long a relayed direction waits for bytes in a
	// goroutine of its own before it parks; 0 means defaultParkAfter,
	// negative never (tests set it).
	parkAfter time.Duration
}

// defaultParkAfter: a connection quiet for 100ms holds no goroutine. A
// busy one never parks; waking a parked one costs a goroutine start, an
// epoll_ctl and a wait of the parker's, a few microseconds, at most ten
// times a second a connection. Longer, and a burst of new connections
// leaves more goroutine stacks behind, which the runtime keeps until its
// next collection: 3,000 connections held after such a burst took 6.1 KiB
// each with 100ms, 7.7 with 250ms, 12.4 with 1s (BENCHMARKS.md).
const defaultParkAfter = 100 * time.Millisecond

// DefaultMaxConns is Config.MaxConns when it is not set. A relayed
// connection holds two sockets (pipes only while a bulk transfer is under
// way), so 10,000 connections fit well within
// the open-file limit that Go raises a Linux process to (the hard limit,
// 524,288 under systemd), and their buffers within a small machine's
// memory.
const DefaultMaxConns = 10000

// overLimitLogEvery spaces the warnings about refused connections, for
// each limit: a flood is counted in iwalb_l4_rejected_total, not logged
// line by line.
const overLimitLogEvery = 10 * time.Second

// Options carries what a Server gets from its host process rather than from
// its configuration.
type Options struct {
	// Logger receives logs; nil means slog.Default().
	Logger *slog.Logger
	// Metrics receives the listener's metrics; nil means a private,
	// unexported set.
	Metrics *Metrics
}

// Server is one TLS-passthrough listener. Create it with New.
type Server struct {
	name string
	cfg  atomic.Pointer[Config] // with defaults; Update swaps it
	log  *slog.Logger
	m    *Metrics
	wg   sync.WaitGroup

	// Connections open (MaxConns, MaxConnsPerSource), and the listener's
	// series that every accept touches.
	limit     *connlimit.Limiter
	openGauge prometheus.Gauge
	accepted  prometheus.Counter

	// One rate-limited warning per limit (since born, on the monotonic
	// clock).
	born            time.Time
	overLimit       refusals
	overSourceLimit refusals

	// readers recycles the buffers that peek at ClientHellos: a relayed
	// connection gives its buffer back once its first bytes went to the
	// backend, so an idle connection holds none.
	readers sync.Pool // of *bufio.Reader
	// pools holds the relays' buffers and pipes.
	pools *relayPools
	// parker watches the relays' quiet directions; parked counts them.
	parker *parker
	parked prometheus.Gauge
}

// reader returns a buffered reader of c of the given size, recycled when
// one of that size is free.
func (s *Server) reader(c net.Conn, size int) *bufio.Reader {
	if br, ok := s.readers.Get().(*bufio.Reader); ok && br.Size() == size {
		br.Reset(c)
		return br
	}
	return bufio.NewReaderSize(c, size)
}

// recycle gives br back for another connection's peek; br must not be used
// again.
func (s *Server) recycle(br *bufio.Reader) {
	br.Reset(nil) // drop the connection and the bytes
	s.readers.Put(br)
}

// refusals counts the connections one limit refused, and spaces the
// warnings about them.
type refusals struct {
	counter prometheus.Counter
	// refused since the last warning, and when the next may be logged (in
	// nanoseconds since Server.born).
	sinceLog atomic.Int64
	nextLog  atomic.Int64
}

// note counts one refusal and reports whether a warning is due, with the
// number of refusals it covers.
func (r *refusals) note(now time.Duration) (int64, bool) {
	r.sinceLog.Add(1)
	next := r.nextLog.Load()
	if int64(now) < next || !r.nextLog.CompareAndSwap(next, int64(now+overLimitLogEvery)) {
		return 0, false
	}
	return r.sinceLog.Swap(0), true
}

// New validates cfg and returns a Server ready to Serve.
func New(cfg Config, opts Options) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{name: cfg.Name, log: opts.Logger, m: opts.Metrics, born: time.Now(), pools: newRelayPools()}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("listener", cfg.Name)
	if s.m == nil {
		s.m, _ = NewMetrics(nil)
	}
	// The parker goes on for a while with nothing parked, so that a
	// connection that parks and wakes often does not start one each time.
	s.parker = newParker(max(10*cfg.parkAfter, 0))
	s.limit = connlimit.New(cfg.limits())
	s.openGauge = s.m.open.WithLabelValues(cfg.Name)
	s.parked = s.m.parked.WithLabelValues(cfg.Name)
	s.accepted = s.m.accepted.WithLabelValues(cfg.Name)
	s.overLimit.counter = s.m.rejected.WithLabelValues(cfg.Name, RejectOverLimit)
	s.overSourceLimit.counter = s.m.rejected.WithLabelValues(cfg.Name, RejectOverSourceLimit)
	s.cfg.Store(&cfg)
	return s, nil
}

// Update validates cfg and, if it is sound, makes it the configuration of
// the connections accepted from now on: routes, timeouts, limits. The
// connections already accepted keep what they started with. cfg.Name must
// be the server's: a listener keeps its name, which labels its metrics.
func (s *Server) Update(cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if cfg.Name != s.name {
		return fmt.Errorf("l4 listener %q: cannot be renamed %q", s.name, cfg.Name)
	}
	s.limit.SetLimits(cfg.limits())
	s.cfg.Store(&cfg)
	return nil
}

// withDefaults validates c and returns it with its zero values replaced by
// the defaults.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("l4 listener name is empty"))
	}
	if c.Router == nil {
		errs = append(errs, fmt.Errorf("l4 listener %q: no router", c.Name))
	}
	if c.PeekTimeout < 0 || c.DialTimeout < 0 || c.MaxHelloSize < 0 || c.MaxHelloRecords < 0 ||
		c.DialAttempts < 0 || c.MaxConns < 0 || c.MaxConnsPerSource < 0 {
		errs = append(errs, fmt.Errorf("l4 listener %q: timeouts, sizes, attempts and max conns must not be negative", c.Name))
	}
	if c.MaxHelloSize > MaxHelloSizeLimit {
		errs = append(errs, fmt.Errorf("l4 listener %q: max hello size %d exceeds 64 KiB", c.Name, c.MaxHelloSize))
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.PeekTimeout, DefaultPeekTimeout)
	def(&c.DialTimeout, DefaultDialTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.parkAfter, defaultParkAfter)
	if c.MaxHelloSize == 0 {
		c.MaxHelloSize = DefaultMaxHelloSize
	}
	if c.MaxHelloRecords == 0 {
		c.MaxHelloRecords = DefaultMaxHelloRecords
	}
	if c.DialAttempts == 0 {
		c.DialAttempts = DefaultDialAttempts
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	return c, nil
}

// limits are the connection caps of c.
func (c *Config) limits() connlimit.Limits {
	return connlimit.Limits{MaxConns: c.MaxConns, MaxPerSource: c.MaxConnsPerSource, Exempt: c.TrustedProxies}
}

// Serve accepts connections on ln until ctx is cancelled, then closes ln,
// closes the connections it is relaying and returns once they have ended.
// It holds at most Config.MaxConns connections open (and
// Config.MaxConnsPerSource from one client), and resets the ones over
// that at once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer s.pools.close() // after the relays have ended
	defer s.wg.Wait()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("l4 listener %s: %w", s.name, err)
			}
			// Out of file descriptors and the like: back off, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			continue
		}
		backoff = 0
		release, reason, ok := s.limit.Acquire(connlimit.AddrOf(c.RemoteAddr()))
		if !ok {
			s.refuse(c, reason)
			continue
		}
		s.openGauge.Inc()
		s.wg.Add(1)
		go s.serveConn(ctx, c, release)
	}
}

// serveConn is the life of one client connection: peek, route, dial, relay.
// Its slot is freed (release) once both sockets are closed. A relayed
// connection goes on in goroutines of the relay's own, and this one ends:
// its stack, grown by the peek and the dial, is not held for the life of
// an idle connection.
func (s *Server) serveConn(ctx context.Context, c net.Conn, release func()) {
	s.serve(ctx, c, func() {
		s.openGauge.Dec()
		release()
		s.wg.Done()
	})
}

// refuse closes a connection over a limit in the accept loop, without
// reading from it: a reset (linger 0), so that a flood leaves no TIME_WAIT
// behind either.
func (s *Server) refuse(c net.Conn, reason connlimit.Reason) {
	r := &s.overLimit
	if reason == connlimit.OverSourceLimit {
		r = &s.overSourceLimit
	}
	s.accepted.Inc()
	r.counter.Inc() // before the close, which the client may see at once
	client := c.RemoteAddr()
	connlimit.Reset(c)
	refused, warn := r.note(time.Since(s.born))
	switch {
	case !warn:
	case reason == connlimit.OverSourceLimit:
		// The client named is the one refused last; the metric counts them
		// all.
		s.log.Warn("max_conns_per_source reached: refusing a client's new connections",
			"max_conns_per_source", s.cfg.Load().MaxConnsPerSource, "client", addrString(client), "refused", refused)
	default:
		s.log.Warn("max_conns reached: refusing new connections",
			"max_conns", s.cfg.Load().MaxConns, "refused", refused)
	}
}

// ServeConn handles one accepted connection and closes it. It returns when
// the connection has ended or ctx is cancelled. Connections given to it
// directly do not count against MaxConns; those Serve accepts do.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	ended := make(chan struct{})
	s.serve(ctx, c, func() { close(ended) })
	<-ended
}

// serve handles c and calls done once it has ended and is closed, maybe
// after serve has returned.
func (s *Server) serve(ctx context.Context, c net.Conn, done func()) {
	accepted := time.Now()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	end := func() {
		stop()
		c.Close()
		done()
	}
	s.accepted.Inc()
	cfg := s.cfg.Load() // the whole connection runs with one configuration

	p, ok := s.peek(c, cfg)
	if !ok {
		s.recycle(p.br)
		end()
		return
	}
	route := cfg.Router.Match(p.hello.ServerName)
	if route == nil {
		s.recycle(p.br)
		s.reject(RejectNoRoute, p.src, fmt.Errorf("no route for server name %q and no default route", p.hello.ServerName))
		end()
		return
	}
	s.m.routed.WithLabelValues(s.name, route.Name).Inc()
	active := s.m.active.WithLabelValues(s.name, route.Name)
	active.Inc()
	routedEnd := func() {
		active.Dec()
		end()
	}

	if route.Handler != nil {
		route.Handler.ServeConn(ctx, &replayConn{Conn: c, r: p.br, remote: p.src, local: p.dst})
		routedEnd()
		return
	}
	s.relay(ctx, cfg, c, p, route, accepted, routedEnd)
}

// peeked is what the start of a connection said: the client (as a trusted
// PROXY header names it) and its ClientHello, whose bytes br still holds.
type peeked struct {
	br       *bufio.Reader
	src, dst net.Addr
	hello    *ClientHello
}

// peek reads the PROXY header of a trusted upstream, if any, and the
// ClientHello, within the peek timeout. A connection it refuses is counted
// and ok is false.
func (s *Server) peek(c net.Conn, cfg *Config) (p peeked, ok bool) {
	p.src, p.dst = c.RemoteAddr(), c.LocalAddr()
	c.SetReadDeadline(time.Now().Add(cfg.PeekTimeout))
	p.br = s.reader(c, cfg.MaxHelloSize)
	if cfg.trusted(p.src) {
		hdr, err := proxyproto.Read(p.br)
		switch {
		case err == nil:
			if hdr.Command.IsProxy() {
				p.src, p.dst = hdr.SourceAddr, hdr.DestinationAddr
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			// A slow or silent upstream, not a bad header.
			s.reject(RejectPeekTimeout, p.src, err)
			return p, false
		case !errors.Is(err, proxyproto.ErrNoProxyProtocol):
			s.reject(RejectProxyHeader, p.src, err)
			return p, false
		}
	}
	hr := helloReader{maxWire: cfg.MaxHelloSize, maxRecords: cfg.MaxHelloRecords}
	hello, err := hr.peek(p.br)
	if err != nil {
		s.reject(peekReason(err), p.src, err)
		return p, false
	}
	c.SetReadDeadline(time.Time{})
	p.hello = hello
	return p, true
}

// relay dials a backend of route's pool and relays c to it both ways, in
// the tunnel's goroutines (one a direction, none while it is parked),
// until either side is done; then it logs the connection and calls done.
// It returns once the relay has started.
func (s *Server) relay(ctx context.Context, cfg *Config, c net.Conn, p peeked, route *Route, accepted time.Time, done func()) {
	start := time.Now()
	d, err := s.dialBackend(ctx, cfg, route, p.src, p.dst, p.br)
	// The peeked bytes went out in the dial's first write (or nowhere):
	// from here on the relay reads the raw connection.
	s.recycle(p.br)
	p.br = nil
	if err != nil {
		if ctx.Err() != nil {
			// Shutting down: no backend's fault, and no operator's concern.
			s.reject(RejectShutdown, p.src, err)
		} else {
			s.m.rejected.WithLabelValues(s.name, RejectNoBackend).Inc()
			s.log.Warn("no backend for connection", "client", addrString(p.src), "route", route.Name, "err", err)
		}
		done()
		return
	}
	s.log.Debug("relaying", "client", addrString(p.src), "sni", p.hello.ServerName, "route", route.Name,
		"backend", d.lease.Backend().Name)

	t := &tunnel{
		idle:      cfg.IdleTimeout,
		parkAfter: cfg.parkAfter,
		parker:    s.parker,
		parked:    s.parked,
		client:    c,
		backend:   d.conn,
		pools:     s.pools,
		up:        s.m.bytes.WithLabelValues(s.name, route.Name, dirName(dirUp)),
		down:      s.m.bytes.WithLabelValues(s.name, route.Name, dirName(dirDown)),
	}
	t.up.Add(float64(d.sent)) // the PROXY header and the peeked bytes went in the dial's first write
	// A parked direction has no goroutine to see its socket closed: the
	// tunnel closes both sides itself.
	stopT := context.AfterFunc(ctx, t.shutdown)
	t.start(func(end string, endErr error) {
		stopT()
		d.conn.Close()
		d.lease.Release()
		s.m.duration.WithLabelValues(s.name, route.Name).Observe(time.Since(start).Seconds())
		s.logRelayed(ctx, p, route, d, t, end, endErr, accepted)
		done()
	})
}

// logRelayed writes the access log line of a relayed connection, as
// HAProxy's tcplog gives it: who, where, how much, how long, how it ended.
// Nothing the client sent but its ClientHello's server name.
func (s *Server) logRelayed(ctx context.Context, p peeked, route *Route, d dialed, t *tunnel, end string, endErr error, accepted time.Time) {
	attrs := []slog.Attr{
		slog.String("client", addrString(p.src)),
		slog.String("sni", p.hello.ServerName),
		slog.String("route", route.Name),
		slog.String("backend", d.lease.Backend().Name),
		slog.Group("bytes",
			slog.Int64(dirName(dirUp), int64(d.sent)+t.moved[dirUp]),
			slog.Int64(dirName(dirDown), t.moved[dirDown])),
		slog.Duration("duration", time.Since(accepted).Round(time.Microsecond)),
		slog.String("end", end),
	}
	if endErr != nil {
		attrs = append(attrs, slog.String("err", endErr.Error()))
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "connection relayed", attrs...)
}

// dialed is a connection to a backend that took the client's first bytes.
type dialed struct {
	conn  net.Conn
	lease *lb.Lease // the backend's slot, released when the relay ends
	sent  int       // bytes of the first write: the PROXY header and the peeked bytes
}

// dialBackend takes a slot on a backend of route's pool and dials it,
// until one accepts the PROXY header (if configured) and the client's
// buffered bytes, trying up to DialAttempts backends. Nothing has been sent
// to the client yet, so a retry is invisible to it.
func (s *Server) dialBackend(ctx context.Context, cfg *Config, route *Route, src, dst net.Addr, br *bufio.Reader) (dialed, error) {
	pool := route.Pool
	clientIP := addrIP(src)
	var first []byte
	if route.ProxyProtocol != 0 {
		h := proxyproto.HeaderProxyFromAddrs(byte(route.ProxyProtocol), src, dst)
		var err error
		if first, err = h.Format(); err != nil {
			return dialed{}, fmt.Errorf("format PROXY header for %v: %w", src, err)
		}
	}
	// Everything buffered so far, the ClientHello and anything after it,
	// goes out in the first write; from then on the copy reads the raw
	// connection.
	buffered, _ := br.Peek(br.Buffered())
	first = append(first, buffered...)

	attempts := min(cfg.DialAttempts, len(pool.Backends()))
	var tried []*lb.Backend
	var errs []error
	for range attempts {
		lease, err := pool.Acquire(clientIP, tried...)
		if err != nil {
			errs = append(errs, err)
			break
		}
		b := lease.Backend()
		tried = append(tried, b)
		conn, err := dialOne(ctx, cfg.DialTimeout, b, first)
		if err == nil {
			lease.Dialed()
			return dialed{conn: conn, lease: lease, sent: len(first)}, nil
		}
		if ctx.Err() != nil {
			lease.Release() // shutting down: not the backend's failure
			return dialed{}, ctx.Err()
		}
		lease.Failed(err)
		s.m.dialErrs.WithLabelValues(s.name, pool.Name(), b.Name).Inc()
		s.log.Warn("backend dial failed", "pool", pool.Name(), "backend", b.Name, "err", err)
		errs = append(errs, err)
	}
	return dialed{}, fmt.Errorf("route %s: %w", route.Name, errors.Join(errs...))
}

// dialOne connects to b and writes first to it, each within timeout.
func dialOne(ctx context.Context, timeout time.Duration, b *lb.Backend, first []byte) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", b.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial backend %s %s: %w", b.Name, b.Addr, err)
	}
	conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(first); err != nil {
		conn.Close()
		return nil, fmt.Errorf("write to backend %s %s: %w", b.Name, b.Addr, err)
	}
	conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

// trusted reports whether a is one of the upstream proxies whose PROXY
// header is believed.
func (c *Config) trusted(a net.Addr) bool {
	if len(c.TrustedProxies) == 0 {
		return false
	}
	ip := addrIP(a)
	for _, p := range c.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (s *Server) reject(reason string, client net.Addr, err error) {
	s.m.rejected.WithLabelValues(s.name, reason).Inc()
	// Debug: rejects are counted, and scanners would flood the log.
	s.log.Debug("connection rejected", "client", addrString(client), "reason", reason, "err", err)
}

func peekReason(err error) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return RejectPeekTimeout
	case errors.Is(err, ErrNotTLS):
		return RejectNotTLS
	case errors.Is(err, ErrHelloTooLarge):
		return RejectTooLarge
	case errors.Is(err, ErrMalformedHello):
		return RejectMalformed
	case errors.Is(err, ErrTooManyRecords):
		return RejectTooManyRecords
	}
	return RejectClientGone
}

// addrString is a's address for a log line (a net.Addr itself would be
// logged as a JSON object by a JSON handler).
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// addrIP returns the IP of a TCP address, unmapped, or the zero Addr.
func addrIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// replayConn reads the bytes already buffered by the peek before reading
// the connection itself. Its addresses are the client's as the listener
// learned them, from an upstream PROXY header where one was trusted, so a
// handler behind L4 sees the same client the relay would have reported.
type replayConn struct {
	net.Conn
	r             *bufio.Reader
	remote, local net.Addr
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// RemoteAddr returns the client's address.
func (c *replayConn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr returns the address the client connected to.
func (c *replayConn) LocalAddr() net.Addr { return c.local }
