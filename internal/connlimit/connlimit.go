// Package connlimit caps the connections a listener holds open, in total
// and per client address, counted from accept to close, so that one client
// (or a flood of them) cannot take every file descriptor of a process that
// serves several roles.
//
//	lim := connlimit.New(connlimit.Limits{MaxConns: 10000, MaxPerSource: 256})
//	ln = connlimit.NewListener(tcpLn, lim, func(r connlimit.Reason, _ net.Addr) { refused.WithLabelValues(string(r)).Inc() })
//	http.Serve(ln, h) // connections over a limit are reset before Serve sees them
//
// A connection over a limit is closed with a reset (linger 0) without a
// byte read from it, so a flood leaves no TIME_WAIT behind either.
//
// IPv6 clients are counted per /64, the block one host usually holds; IPv4
// clients per address. Sources in Limits.Exempt (trusted balancers that
// carry many clients' connections) count only toward MaxConns.
//
// Package connlimit knows nothing of TLS, HTTP or PROXY headers: the
// address it counts is the TCP peer's.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
)

// Reason says which limit refused a connection.
type Reason string

const (
	// OverLimit means the listener already held MaxConns connections.
	OverLimit Reason = "over_limit"
	// OverSourceLimit means the client's address already held
	// MaxPerSource connections.
	OverSourceLimit Reason = "over_source_limit"
)

// Limits are the caps of one listener.
type Limits struct {
	// MaxConns bounds the connections open at once; 0 means no bound.
	MaxConns int
	// MaxPerSource bounds the connections open at once from one client
	// address (IPv6: one /64); 0 means no bound.
	MaxPerSource int
	// Exempt lists sources that MaxPerSource does not apply to, such as
	// the balancers in front that carry many clients' connections.
	Exempt []netip.Prefix
}

// Limiter counts open connections against Limits. It is safe for
// concurrent use; the zero value is not usable, call New.
type Limiter struct {
	lim Limits

	mu        sync.Mutex
	open      int
	perSource map[netip.Addr]int // only sources with open connections
}

// New returns a Limiter for lim.
func New(lim Limits) *Limiter {
	return &Limiter{lim: lim, perSource: make(map[netip.Addr]int)}
}

// SetLimits replaces the limits, for a configuration reload: the
// connections open keep their slots, and new ones are admitted under lim.
// A per-source limit counts the connections admitted while one was set.
func (l *Limiter) SetLimits(lim Limits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lim = lim
}

// Limits returns the limits in force.
func (l *Limiter) Limits() Limits {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lim
}

// Acquire takes a slot for a connection from src (the zero Addr when the
// peer is not an IP address). It returns false, and the limit that refused
// it, when a limit is reached; otherwise the caller must call the returned
// release exactly once when the connection closes.
func (l *Limiter) Acquire(src netip.Addr) (release func(), reason Reason, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key, perSource := l.sourceKey(src)
	if l.lim.MaxConns > 0 && l.open >= l.lim.MaxConns {
		return nil, OverLimit, false
	}
	if perSource && l.perSource[key] >= l.lim.MaxPerSource {
		return nil, OverSourceLimit, false
	}
	l.open++
	if perSource {
		l.perSource[key]++
	}
	var once sync.Once
	return func() { once.Do(func() { l.release(key, perSource) }) }, "", true
}

func (l *Limiter) release(key netip.Addr, perSource bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if !perSource {
		return
	}
	if n := l.perSource[key] - 1; n > 0 {
		l.perSource[key] = n
	} else {
		delete(l.perSource, key)
	}
}

// sourceKey returns the address src is counted under, and whether the
// per-source limit applies to it at all. l.mu must be held.
func (l *Limiter) sourceKey(src netip.Addr) (netip.Addr, bool) {
	if l.lim.MaxPerSource <= 0 || !src.IsValid() {
		return netip.Addr{}, false
	}
	src = src.Unmap()
	for _, p := range l.lim.Exempt {
		if p.Contains(src) {
			return netip.Addr{}, false
		}
	}
	return Source(src), true
}

// Source is the address a client is counted under: src unmapped, and an
// IPv6 address as the first of its /64, the block one host usually holds.
func Source(src netip.Addr) netip.Addr {
	src = src.Unmap()
	if src.Is6() {
		src = netip.PrefixFrom(src, 64).Masked().Addr()
	}
	return src
}

// Open returns the number of connections holding a slot.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Sources returns the number of client addresses (IPv6: /64s) counted
// against MaxPerSource that hold a slot; it is never more than Open.
func (l *Limiter) Sources() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.perSource)
}

// AddrOf returns the IP address of a TCP or UDP peer, or the zero Addr.
func AddrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// Reset closes c with a TCP reset when it is a TCP connection, so that a
// refused connection leaves no TIME_WAIT behind.
func Reset(c net.Conn) error {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c.Close()
}

// Listener is a net.Listener whose Accept returns only connections within
// its Limiter's limits; it resets the others and reports them to its
// refused callback. Each connection it returns frees its slot on its first
// Close.
type Listener struct {
	net.Listener
	lim     *Limiter
	refused func(Reason, net.Addr)
}

// NewListener wraps ln. refused may be nil; it is called, in the accept
// loop, for each connection refused, after the connection was reset.
func NewListener(ln net.Listener, lim *Limiter, refused func(Reason, net.Addr)) *Listener {
	return &Listener{Listener: ln, lim: lim, refused: refused}
}

// Limiter returns the listener's Limiter.
func (l *Listener) Limiter() *Limiter { return l.lim }

// Accept waits for the next connection within the limits.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, reason, ok := l.lim.Acquire(AddrOf(c.RemoteAddr()))
		if ok {
			return &conn{Conn: c, release: release}, nil
		}
		addr := c.RemoteAddr()
		_ = Reset(c)
		if l.refused != nil {
			l.refused(reason, addr)
		}
	}
}

// conn frees its slot when it is closed.
type conn struct {
	net.Conn
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// NetConn returns the underlying connection, as tls.Conn does, for code
// that needs the *net.TCPConn (setting keep-alives, splice).
func (c *conn) NetConn() net.Conn { return c.Conn }
