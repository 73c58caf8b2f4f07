// Package directory confirms in Active Directory, over LDAP, that a user who
// has already authenticated with Kerberos exists and may log in: the account
// with the ticket's SID is found, its name is the ticket's, it is enabled,
// not expired and, optionally, in a required group (nested membership
// counts).
//
//	dir, err := directory.New(directory.Config{
//		URL:          "ldaps://dc1.example.test:636",
//		TLS:          &tls.Config{RootCAs: pool},
//		BindDN:       "CN=svc_ldap,CN=Users,DC=example,DC=test",
//		BindPassword: password,
//		BaseDN:       "DC=example,DC=test",
//		RequiredGroup: "CN=lb-users,CN=Users,DC=example,DC=test",
//	})
//	defer dir.Close()
//	// id from negotiate.Validator.Validate
//	u, err := dir.Lookup(ctx, directory.Principal{Name: id.User, Realm: id.Realm, SID: id.UserSID})
//	switch {
//	case errors.Is(err, directory.ErrUnavailable), errors.Is(err, directory.ErrBind):
//		// 503
//	case err != nil:
//		// 403: not found, ambiguous, name and SID disagree, disabled or not in group
//	}
//
// It is not an authenticator: it never checks a user's password or ticket
// (that is Kerberos' job), and it binds only as the proxy account. It talks
// to one server URL; choosing among domain controllers is the caller's job.
package directory

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Defaults for the zero values of Config.Timeout and Config.PoolSize.
const (
	DefaultTimeout  = 5 * time.Second
	DefaultPoolSize = 4
)

// Config says which directory to ask and how. The zero values of Timeout and
// PoolSize mean their defaults.
type Config struct {
	// URL is ldaps://host:636 or ldap://host:389; the port may be omitted.
	URL string
	// StartTLS upgrades an ldap:// connection to TLS before binding.
	StartTLS bool
	// AllowPlaintext permits ldap:// without StartTLS, which sends the bind
	// password in clear. Only for test directories.
	AllowPlaintext bool
	// TLS configures LDAPS and StartTLS (RootCAs, ServerName). Nil means the
	// system roots and the host name from URL.
	TLS *tls.Config
	// BindDN and BindPassword are the proxy account used for every search.
	// BindDN may also be a UPN (svc@example.test) or DOMAIN\name.
	BindDN, BindPassword string
	// BaseDN is where users and groups are searched (subtree).
	BaseDN string
	// RequiredGroup, when set, is the DN of a group the user must belong to,
	// directly or through nested groups.
	RequiredGroup string
	// Timeout bounds connecting (TCP, TLS, StartTLS and bind together) and
	// each LDAP operation. Default DefaultTimeout.
	Timeout time.Duration
	// PoolSize is how many idle bound connections are kept. Default
	// DefaultPoolSize.
	PoolSize int
}

// String describes c without the bind password, so logging a Config is safe.
func (c Config) String() string {
	return fmt.Sprintf("directory.Config{URL:%s StartTLS:%t AllowPlaintext:%t BindDN:%q BaseDN:%q RequiredGroup:%q Timeout:%s PoolSize:%d}",
		c.URL, c.StartTLS, c.AllowPlaintext, c.BindDN, c.BaseDN, c.RequiredGroup, c.Timeout, c.PoolSize)
}

// LogValue is String for log/slog, whose JSON handler would otherwise print
// every field, the bind password included.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Directory is a client for one Active Directory server with a small pool of
// bound connections. It is safe for concurrent use.
type Directory struct {
	cfg      Config
	addr     string      // host:port to dial
	tlsConf  *tls.Config // for LDAPS and StartTLS; nil for plain ldap://
	ldaps    bool
	pageSize uint32           // paged-search page size; AD's MaxPageSize is 1000
	now      func() time.Time // for accountExpires; tests replace it

	mu     sync.Mutex
	idle   []*ldap.Conn
	closed bool
}

// New checks cfg and returns a Directory. It does not dial: a directory that
// is down at start-up is reported by Check, not by New.
func New(cfg Config) (*Directory, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("directory: URL %q: %w", cfg.URL, err)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("directory: URL %q has no host", cfg.URL)
	}
	d := &Directory{pageSize: 1000, now: time.Now}
	port := u.Port()
	switch u.Scheme {
	case "ldaps":
		if cfg.StartTLS {
			return nil, fmt.Errorf("directory: URL %q is already TLS (ldaps://); StartTLS applies to ldap:// only", cfg.URL)
		}
		d.ldaps = true
		if port == "" {
			port = "636"
		}
	case "ldap":
		if !cfg.StartTLS && !cfg.AllowPlaintext {
			return nil, fmt.Errorf("directory: URL %q is plain LDAP without StartTLS: the bind password would travel in clear; use ldaps://, set StartTLS, or set AllowPlaintext for a test directory", cfg.URL)
		}
		if port == "" {
			port = "389"
		}
	default:
		return nil, fmt.Errorf("directory: URL %q: scheme must be ldaps:// or ldap://", cfg.URL)
	}
	d.addr = net.JoinHostPort(u.Hostname(), port)

	switch {
	case cfg.BindDN == "":
		return nil, errors.New("directory: BindDN is required")
	case cfg.BindPassword == "":
		// An empty password would be an unauthenticated bind, which AD
		// accepts and then answers every search with nothing.
		return nil, errors.New("directory: BindPassword is required")
	case cfg.BaseDN == "":
		return nil, errors.New("directory: BaseDN is required")
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("directory: Timeout %s is negative", cfg.Timeout)
	case cfg.PoolSize < 0:
		return nil, fmt.Errorf("directory: PoolSize %d is negative", cfg.PoolSize)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = DefaultPoolSize
	}
	if d.ldaps || cfg.StartTLS {
		if cfg.TLS != nil {
			d.tlsConf = cfg.TLS.Clone()
		} else {
			d.tlsConf = &tls.Config{}
		}
		if d.tlsConf.ServerName == "" {
			d.tlsConf.ServerName = u.Hostname()
		}
	}
	cfg.TLS = nil // d.tlsConf is the copy in use
	d.cfg = cfg
	return d, nil
}

// Check proves that the server answers and accepts the proxy account's
// credentials, for readiness probes. Errors wrap ErrUnavailable or ErrBind.
func (d *Directory) Check(ctx context.Context) error {
	const what = "proxy bind check"
	conn, reused, err := d.get(ctx)
	if err != nil {
		return d.wrap(ctx, what, err)
	}
	if !reused {
		// get has just bound it.
		d.put(conn, nil)
		return nil
	}
	err = d.run(ctx, conn, func(c *ldap.Conn) error { return c.Bind(d.cfg.BindDN, d.cfg.BindPassword) })
	d.put(conn, err)
	if err != nil {
		return d.wrap(ctx, what, err)
	}
	return nil
}

// ServerTime returns the server's clock (rootDSE currentTime), for the
// clock-offset gauge: Kerberos fails when clocks drift apart by minutes.
func (d *Directory) ServerTime(ctx context.Context) (time.Time, error) {
	const what = "read of rootDSE currentTime"
	var raw string
	err := d.do(ctx, func(c *ldap.Conn) error {
		res, err := c.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			1, 0, false, "(objectClass=*)", []string{"currentTime"}, nil))
		if err != nil {
			return err
		}
		if len(res.Entries) == 1 {
			raw = res.Entries[0].GetAttributeValue("currentTime")
		}
		return nil
	})
	if err != nil {
		return time.Time{}, d.wrap(ctx, what, err)
	}
	// Generalized time such as 20261124014810.0Z; time.Parse accepts the
	// fractional seconds without their being in the layout.
	t, err := time.Parse("20060102150405Z0700", raw)
	if err != nil {
		return time.Time{}, fmt.Errorf("ldap %s at %s: %q: %w", what, d.cfg.URL, raw, err)
	}
	return t, nil
}

// Close closes the idle connections. Connections in use are closed when they
// come back. Calls after Close fail with ErrUnavailable.
func (d *Directory) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.drain()
	return nil
}

// drain closes all idle connections.
func (d *Directory) drain() {
	d.mu.Lock()
	idle := d.idle
	d.idle = nil
	d.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// do runs fn on a pooled connection. A reused connection may have been
// closed or reset while idle (AD closes idle connections after 15 minutes);
// when fn fails at once for that kind of reason, fn is retried once on a
// fresh connection. A timeout is not retried: it looks the same as an
// overloaded server, which a second request would only load further.
func (d *Directory) do(ctx context.Context, fn func(*ldap.Conn) error) error {
	conn, reused, err := d.get(ctx)
	if err != nil {
		return err
	}
	err = d.run(ctx, conn, fn)
	d.put(conn, err)
	if err == nil || !reused || ctx.Err() != nil || !isUnavailable(err) || isTimeout(err) {
		return err
	}
	// The other idle connections most likely went stale the same way.
	d.drain()
	if conn, _, err = d.get(ctx); err != nil {
		return err
	}
	err = d.run(ctx, conn, fn)
	d.put(conn, err)
	return err
}

// run calls fn with conn bounded by ctx and Timeout: go-ldap times out each
// request after Timeout by itself, and when ctx ends first (a sooner
// deadline or a cancellation) the connection is closed so that fn returns at
// once and the error says it was ctx.
func (d *Directory) run(ctx context.Context, conn *ldap.Conn, fn func(*ldap.Conn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	conn.SetTimeout(d.cfg.Timeout)
	stop := closeOnDone(ctx, conn)
	err := fn(conn)
	if stop() {
		return ctx.Err()
	}
	return err
}

// closeOnDone closes conn when ctx is done. The returned stop reports
// whether that happened; when it returns, the close has finished, so no
// goroutine outlives the call.
func closeOnDone(ctx context.Context, conn *ldap.Conn) (stop func() bool) {
	closed := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		conn.Close()
		close(closed)
	})
	return func() bool {
		if stopAfter() {
			return false
		}
		<-closed
		return true
	}
}

// get returns an idle connection, or dials and binds a new one. reused says
// which.
func (d *Directory) get(ctx context.Context) (conn *ldap.Conn, reused bool, err error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, false, errors.New("directory is closed")
	}
	for len(d.idle) > 0 {
		c := d.idle[len(d.idle)-1]
		d.idle = d.idle[:len(d.idle)-1]
		if !c.IsClosing() { // the server may have hung up while it was idle
			d.mu.Unlock()
			return c, true, nil
		}
		c.Close() // waits for go-ldap's goroutines; quick once closing
	}
	d.mu.Unlock()
	conn, err = d.dial(ctx)
	return conn, false, err
}

// put returns conn to the pool after an operation that ended with opErr.
// A connection that saw any error is closed instead: after a timeout a late
// answer may still arrive, and after a failed re-bind AD treats the
// connection as anonymous, which would turn every later search into "not
// found". So are connections that are closing or exceed the idle bound.
func (d *Directory) put(conn *ldap.Conn, opErr error) {
	if opErr == nil && !conn.IsClosing() {
		d.mu.Lock()
		if !d.closed && len(d.idle) < d.cfg.PoolSize {
			d.idle = append(d.idle, conn)
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
	}
	conn.Close()
}

// dial connects, upgrades with StartTLS when configured and binds as the
// proxy account, all within one Timeout. It dials itself rather than through
// ldap.DialURL so that ctx can interrupt the TCP connect and TLS handshake.
func (d *Directory) dial(ctx context.Context) (*ldap.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()

	var nc net.Conn
	var err error
	dialer := &net.Dialer{Timeout: d.cfg.Timeout}
	if d.ldaps {
		nc, err = (&tls.Dialer{NetDialer: dialer, Config: d.tlsConf}).DialContext(ctx, "tcp", d.addr)
	} else {
		nc, err = dialer.DialContext(ctx, "tcp", d.addr)
	}
	if err != nil {
		if isTimeout(err) {
			return nil, fmt.Errorf("connect: no answer within %s: %w", d.cfg.Timeout, err)
		}
		return nil, fmt.Errorf("connect: %w", err)
	}
	conn := ldap.NewConn(nc, d.ldaps)
	conn.Start()

	err = d.run(ctx, conn, func(c *ldap.Conn) error {
		if d.cfg.StartTLS {
			if err := c.StartTLS(d.tlsConf); err != nil {
				return fmt.Errorf("StartTLS: %w", err)
			}
		}
		if err := c.Bind(d.cfg.BindDN, d.cfg.BindPassword); err != nil {
			return fmt.Errorf("bind as %q: %w", d.cfg.BindDN, err)
		}
		return nil
	})
	if err != nil {
		conn.Close()
		if isTimeout(err) {
			return nil, fmt.Errorf("connect: no answer within %s: %w", d.cfg.Timeout, err)
		}
		return nil, err
	}
	return conn, nil
}

// isTimeout reports whether err is a deadline expiring: a context's, the
// network's, or go-ldap's per-request timeout (which has no sentinel).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() ||
		strings.Contains(err.Error(), "ldap: connection timed out")
}
