// Package directory confirms in Active Directory, over LDAP, that a user who
// has already authenticated with Kerberos exists and may log in: the account
// with the ticket's SID is found, its name is the ticket's, it is enabled,
// not expired, not locked out and, optionally, in a required group (nested
// membership counts). It names the groups of the ticket's PAC, through a
// bounded cache of SID-to-name answers, so that a login costs one indexed
// search once the cache is warm.
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
//	u, ops, err := dir.Lookup(ctx, directory.Principal{
//		Name: id.User, Realm: id.Realm, SID: id.UserSID, GroupSIDs: id.GroupSIDs})
//	switch {
//	case errors.Is(err, directory.ErrUnavailable), errors.Is(err, directory.ErrBind),
//		errors.Is(err, directory.ErrTimeout), errors.Is(err, directory.ErrBusy):
//		// 503
//	case err != nil:
//		// 403: not found, ambiguous, name and SID disagree, disabled,
//		// locked out or not in group
//	}
//	// u.Groups: the names of the ticket's groups; ops: LDAP requests sent
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
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Defaults for the zero values of Config's durations and sizes.
const (
	DefaultTimeout      = 5 * time.Second
	DefaultPoolSize     = 8
	DefaultQueueTimeout = 5 * time.Second
	// DefaultSIDCacheSize entries take about 25 MB at most.
	DefaultSIDCacheSize        = 100_000
	DefaultSIDCacheTTL         = time.Hour
	DefaultSIDCacheNegativeTTL = 10 * time.Minute
)

// GroupCheck says how membership of Config.RequiredGroup is decided.
type GroupCheck string

const (
	// GroupCheckTicket looks for the group's SID among the ticket's group
	// SIDs (Principal.GroupSIDs): the KDC resolved nesting when it issued
	// the ticket, so it costs no search, but a membership changed since
	// shows only in the user's next ticket (after a new logon, or at the
	// latest when the ticket expires).
	GroupCheckTicket GroupCheck = "ticket"
	// GroupCheckDirectory asks the directory at every login (an in-chain
	// memberOf search on the user): live, at the cost of a second search.
	GroupCheckDirectory GroupCheck = "directory"
)

// Config says which directory to ask and how. Zero durations and sizes mean
// their defaults.
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
	// directly or through nested groups. Check resolves it to its
	// objectSid (the directory compares the DN, so its case and spacing do
	// not matter).
	RequiredGroup string
	// RequiredGroupCheck says how membership is decided: GroupCheckTicket
	// (the default) or GroupCheckDirectory.
	RequiredGroupCheck GroupCheck
	// Timeout bounds connecting (TCP, TLS, StartTLS and bind together) and
	// each LDAP operation. Default DefaultTimeout.
	Timeout time.Duration
	// PoolSize bounds the connections open at once for logins; one more is
	// kept for Check and ServerTime, so that readiness is not queued behind
	// logins. Default DefaultPoolSize.
	PoolSize int
	// QueueTimeout is how long a login waits for one of the PoolSize
	// connections to come free before it fails with ErrBusy. Default
	// DefaultQueueTimeout.
	QueueTimeout time.Duration
	// SIDCacheSize bounds the group SIDs whose name (or absence) is
	// remembered; the least recently used give way. Default
	// DefaultSIDCacheSize.
	SIDCacheSize int
	// SIDCacheTTL is how long a group's name is remembered (a renamed group
	// shows its new name after at most this long), SIDCacheNegativeTTL how
	// long a SID that names no group under BaseDN is. Defaults
	// DefaultSIDCacheTTL and DefaultSIDCacheNegativeTTL.
	SIDCacheTTL, SIDCacheNegativeTTL time.Duration
}

// String describes c without the bind password, so logging a Config is safe.
func (c Config) String() string {
	return fmt.Sprintf("directory.Config{URL:%s StartTLS:%t AllowPlaintext:%t BindDN:%q BaseDN:%q RequiredGroup:%q RequiredGroupCheck:%s Timeout:%s PoolSize:%d QueueTimeout:%s SIDCacheSize:%d SIDCacheTTL:%s SIDCacheNegativeTTL:%s}",
		c.URL, c.StartTLS, c.AllowPlaintext, c.BindDN, c.BaseDN, c.RequiredGroup, c.RequiredGroupCheck, c.Timeout, c.PoolSize,
		c.QueueTimeout, c.SIDCacheSize, c.SIDCacheTTL, c.SIDCacheNegativeTTL)
}

// LogValue is String for log/slog, whose JSON handler would otherwise print
// every field, the bind password included.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Directory is a client for one Active Directory server with a bounded pool
// of bound connections. It is safe for concurrent use.
type Directory struct {
	cfg      Config
	addr     string      // host:port to dial
	tlsConf  *tls.Config // for LDAPS and StartTLS; nil for plain ldap://
	ldaps    bool
	pageSize uint32           // paged-search page size; AD's MaxPageSize is 1000
	sidBatch int              // most SIDs asked for in one search: fewer than pageSize, so the answer is one page
	now      func() time.Time // for accountExpires and the SID cache; tests replace it

	// slots holds a token per connection in use by a login, bgSlot the one
	// for Check and ServerTime: a connection is only opened or taken from
	// idle with a token in hand.
	slots, bgSlot chan struct{}
	sids          *sidCache
	required      atomic.Pointer[requiredGroup]

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
	d := &Directory{pageSize: 1000, sidBatch: 900, now: time.Now}
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
	case cfg.QueueTimeout < 0:
		return nil, fmt.Errorf("directory: QueueTimeout %s is negative", cfg.QueueTimeout)
	case cfg.SIDCacheSize < 0:
		return nil, fmt.Errorf("directory: SIDCacheSize %d is negative", cfg.SIDCacheSize)
	case cfg.SIDCacheTTL < 0 || cfg.SIDCacheNegativeTTL < 0:
		return nil, fmt.Errorf("directory: SIDCacheTTL %s or SIDCacheNegativeTTL %s is negative", cfg.SIDCacheTTL, cfg.SIDCacheNegativeTTL)
	}
	switch cfg.RequiredGroupCheck {
	case "":
		cfg.RequiredGroupCheck = GroupCheckTicket
	case GroupCheckTicket, GroupCheckDirectory:
	default:
		return nil, fmt.Errorf("directory: RequiredGroupCheck %q is neither %q nor %q", cfg.RequiredGroupCheck, GroupCheckTicket, GroupCheckDirectory)
	}
	setDefault(&cfg.Timeout, DefaultTimeout)
	setDefault(&cfg.PoolSize, DefaultPoolSize)
	setDefault(&cfg.QueueTimeout, DefaultQueueTimeout)
	setDefault(&cfg.SIDCacheSize, DefaultSIDCacheSize)
	setDefault(&cfg.SIDCacheTTL, DefaultSIDCacheTTL)
	setDefault(&cfg.SIDCacheNegativeTTL, DefaultSIDCacheNegativeTTL)
	d.slots = make(chan struct{}, cfg.PoolSize)
	d.bgSlot = make(chan struct{}, 1)
	d.sids = newSIDCache(cfg.SIDCacheSize, cfg.SIDCacheTTL, cfg.SIDCacheNegativeTTL)
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

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Check proves that the server answers and accepts the proxy account's
// credentials, for readiness probes, and (with RequiredGroup) resolves the
// required group to its SID afresh. Errors wrap ErrUnavailable, ErrTimeout
// or ErrBind; a required group that does not exist is an error that wraps
// none of them.
func (d *Directory) Check(ctx context.Context) error {
	const what = "proxy bind check"
	l, err := d.get(ctx, d.bgSlot)
	if err != nil {
		return d.wrap(ctx, what, err)
	}
	if l.reused {
		err = d.run(ctx, l.conn, func(c *ldap.Conn) error { return c.Bind(d.cfg.BindDN, d.cfg.BindPassword) })
	} // else get has just bound it
	d.put(l, err)
	if err != nil {
		return d.wrap(ctx, what, err)
	}
	if d.cfg.RequiredGroup == "" {
		return nil
	}
	var ops int
	_, err = d.resolveRequiredGroup(ctx, d.bgSlot, &ops)
	return err
}

// ServerTime returns the server's clock (rootDSE currentTime), for the
// clock-offset gauge: Kerberos fails when clocks drift apart by minutes.
func (d *Directory) ServerTime(ctx context.Context) (time.Time, error) {
	const what = "read of rootDSE currentTime"
	var raw string
	err := d.do(ctx, d.bgSlot, nil, func(c *ldap.Conn) error {
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

// do runs fn on a pooled connection taken with a token of slots, and adds
// the requests of opening a connection (StartTLS, bind) to *ops when it
// opened one; fn counts its own. ops may be nil. A reused
// connection may have been closed or reset while idle (AD closes idle
// connections after 15 minutes); when fn fails at once for that kind of
// reason, fn is retried once on a fresh connection. A timeout is not
// retried: it looks the same as an overloaded server, which a second
// request would only load further.
func (d *Directory) do(ctx context.Context, slots chan struct{}, ops *int, fn func(*ldap.Conn) error) error {
	count := func(l lease) {
		if ops != nil && !l.reused {
			*ops += d.dialOps()
		}
	}
	l, err := d.get(ctx, slots)
	if err != nil {
		return err
	}
	count(l)
	err = d.run(ctx, l.conn, fn)
	d.put(l, err)
	if err == nil || !l.reused || ctx.Err() != nil || !isUnavailable(err) || isTimeout(err) {
		return err
	}
	// The other idle connections most likely went stale the same way.
	d.drain()
	if l, err = d.get(ctx, slots); err != nil {
		return err
	}
	count(l)
	err = d.run(ctx, l.conn, fn)
	d.put(l, err)
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

// lease is a connection taken from the pool with a token of slots.
type lease struct {
	conn   *ldap.Conn
	reused bool // taken from idle rather than dialed
	slots  chan struct{}
}

// get takes a token of slots, waiting at most QueueTimeout (and no longer
// than ctx) for one, then returns an idle connection or dials and binds a
// new one. A wait that runs out wraps errBusy: the connections are in use
// by other logins, which is not the server being down.
func (d *Directory) get(ctx context.Context, slots chan struct{}) (lease, error) {
	if err := d.acquire(ctx, slots); err != nil {
		return lease{}, err
	}
	l := lease{slots: slots}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		<-slots
		return lease{}, errors.New("directory is closed")
	}
	for len(d.idle) > 0 {
		c := d.idle[len(d.idle)-1]
		d.idle = d.idle[:len(d.idle)-1]
		if !c.IsClosing() { // the server may have hung up while it was idle
			d.mu.Unlock()
			l.conn, l.reused = c, true
			return l, nil
		}
		c.Close() // waits for go-ldap's goroutines; quick once closing
	}
	d.mu.Unlock()
	conn, err := d.dial(ctx)
	if err != nil {
		<-slots
		return lease{}, err
	}
	l.conn = conn
	return l, nil
}

// acquire takes a token of slots, at once if one is free, else within
// QueueTimeout and ctx.
func (d *Directory) acquire(ctx context.Context, slots chan struct{}) error {
	select {
	case slots <- struct{}{}:
		return nil
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t := time.NewTimer(d.cfg.QueueTimeout)
	defer t.Stop()
	select {
	case slots <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("%w for %s: all %d in use", errBusy, d.cfg.QueueTimeout, cap(slots))
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w until the deadline: all %d in use: %w", errBusy, cap(slots), ctx.Err())
		}
		return ctx.Err()
	}
}

// put returns the leased connection to the pool after an operation that
// ended with opErr, and gives its token back. A connection that saw any
// error is closed instead: after a timeout a late answer may still arrive,
// and after a failed re-bind AD treats the connection as anonymous, which
// would turn every later search into "not found". So are connections that
// are closing or exceed the idle bound.
func (d *Directory) put(l lease, opErr error) {
	defer func() { <-l.slots }()
	if opErr == nil && !l.conn.IsClosing() {
		d.mu.Lock()
		if !d.closed && len(d.idle) < d.cfg.PoolSize+1 {
			d.idle = append(d.idle, l.conn)
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
	}
	l.conn.Close()
}

// dialOps is how many requests dial sends: the bind, after StartTLS when
// configured.
func (d *Directory) dialOps() int {
	if d.cfg.StartTLS {
		return 2
	}
	return 1
}

// dial connects, upgrades with StartTLS when configured and binds as the
// proxy account, all within one Timeout. It dials itself rather than through
// ldap.DialURL so that ctx can interrupt the TCP connect and TLS handshake,
// and so that a failed TCP connect (the server is down or cannot be
// reached) is told apart from a server that accepts and then does not
// answer (it is slow).
func (d *Directory) dial(ctx context.Context) (*ldap.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()

	dialer := &net.Dialer{Timeout: d.cfg.Timeout}
	nc, err := dialer.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		if isTimeout(err) {
			return nil, fmt.Errorf("%w: no answer within %s: %w", errConnect, d.cfg.Timeout, err)
		}
		return nil, fmt.Errorf("%w: %w", errConnect, err)
	}
	if d.ldaps {
		tc := tls.Client(nc, d.tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			if isTimeout(err) {
				return nil, fmt.Errorf("TLS handshake: no answer within %s: %w", d.cfg.Timeout, err)
			}
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		nc = tc
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
			return nil, fmt.Errorf("bind: no answer within %s: %w", d.cfg.Timeout, err)
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
