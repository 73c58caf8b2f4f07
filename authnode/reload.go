package authnode

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	krbconfig "github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/keytab"

	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/oidc"
)

// ErrRestartRequired: Prepare was given settings that differ from the
// running ones in a key that cannot change while the node serves. The
// error names each such key and why.
var ErrRestartRequired = errors.New("changed settings that take a restart")

// settings are what a reload may change, loaded and checked. A value is
// never modified once installed: handlers take the one in force once per
// request (Node.acquire) and serve the whole request with it, and a change
// installs another.
type settings struct {
	cfg        Config
	log        *slog.Logger // the node's, with node=<fqdn>
	appURL     *url.URL
	formCSP    string // the form's and the cookie pages' Content-Security-Policy
	krb5       *krbconfig.Config
	tls        *tls.Config // served to each new TLS connection
	apiClients []apiClient
	dir        *dirRef
	keys       *keySet
	ntlm       *ntlmRef // nil: Kerberos only
	oidc       *oidc.Provider
	mux        http.Handler // routes of these settings; see Node.routes
}

// acquire returns the settings in force, holding their directory until
// the caller calls s.dir.release().
func (n *Node) acquire() *settings {
	for {
		s := n.cur.Load()
		if s.dir.acquire() {
			return s
		}
		// s was replaced and its directory closed between the two
		// lines above: the next load finds its successor.
	}
}

// install makes s the settings in force, with what is derived from them
// (routes, the pages' CSP). The caller holds n.mu.
func (n *Node) install(s *settings) {
	s.mux = n.routes(s)
	s.formCSP = formCSP(s)
	n.cur.Store(s)
}

// dirRef is a directory client shared by the settings that use it and
// by the requests and checks in flight with them. It counts its holders:
// one for being in force, one per request using it. The last to let go
// closes its pooled connections, so that a reload never cuts a login's
// look-up short, and an old directory does not linger once unused.
type dirRef struct {
	dir userDirectory
	// cfg and ca (the CA file's content) are what it was made from: a
	// reload that changes neither keeps it, with its warm pool and SID
	// cache.
	cfg  LDAPConfig
	ca   []byte
	refs atomic.Int64
}

func newDirRef(d userDirectory) *dirRef {
	r := &dirRef{dir: d}
	r.refs.Store(1)
	return r
}

// acquire takes a reference; false when the directory is closed already.
func (r *dirRef) acquire() bool {
	for {
		c := r.refs.Load()
		if c <= 0 {
			return false
		}
		if r.refs.CompareAndSwap(c, c+1) {
			return true
		}
	}
}

// release lets go of a reference; the last one closes the directory.
func (r *dirRef) release() {
	if r.refs.Add(-1) == 0 {
		r.close()
	}
}

// close closes the directory's pooled connections now; connections in
// use are closed as they come back.
func (r *dirRef) close() {
	if c, ok := r.dir.(io.Closer); ok {
		_ = c.Close()
	}
}

// Pending is a configuration that Prepare loaded and checked, for Apply
// (or Discard) to take.
type Pending struct {
	n   *Node
	s   *settings // without keys and routes: Apply makes those
	kt  *keytab.Keytab
	sum [sha256.Size]byte
	// reused says that s.dir is the running settings' directory (its
	// configuration did not change), of which Prepare took no reference.
	reused bool
	used   atomic.Bool
}

// Prepare checks cfg and loads everything the node needs to serve with it
// (keytab, krb5.conf, TLS certificate and client CA, directory client,
// application URL, API clients, limits) without changing the running node
// in any way. A change of a key that takes a restart (see
// ErrRestartRequired) is refused. The result is for Apply or Discard;
// a Pending dropped without either holds nothing that needs closing.
func (n *Node) Prepare(cfg Config) (_ *Pending, err error) {
	defer wrapErr(&err, cfg.FQDN)
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cur := n.cur.Load()
	if err := restartOnly(&cur.cfg, &cfg); err != nil {
		return nil, err
	}
	s, kt, sum, err := n.load(cfg, cur)
	if err != nil {
		return nil, err
	}
	return &Pending{n: n, s: s, kt: kt, sum: sum, reused: s.dir == cur.dir}, nil
}

// Apply makes p's settings the node's, at once and whole: connections and
// requests that come next use them; requests in flight finish with the
// settings they started with, and the old directory's pooled connections
// close when the last of them is done. New keytab keys are loaded and the
// keys the new keytab no longer holds are kept for PreviousKeysTTL.
// Connection and store limits change in place; the stores, the replay
// cache, the metrics and the listener are the node's for its life. Apply
// cannot fail; a Pending is applied or discarded once.
func (n *Node) Apply(p *Pending) {
	if p == nil || p.n != n || !p.used.CompareAndSwap(false, true) {
		n.logger().Error("auth node: Apply of a Pending that is not this node's, or was applied or discarded already; settings unchanged")
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.cur.Load()
	s := p.s
	if p.reused && s.dir != old.dir {
		// Another Apply replaced the directory since Prepare, which may
		// be closed: this one gets its own, made as Prepare checked it.
		if d, err := n.openDirectory(s.cfg.LDAP, s.dir.ca); err == nil {
			s.dir = d
		} else {
			s.log.Error("auth node: directory client could not be made again; keeping the one in force", "err", err)
			s.dir = old.dir
		}
	}
	s.keys = n.loadKeysLocked(old.keys, p.kt, p.sum, s, time.Now(), "reload")
	n.install(s)
	n.conns.SetLimits(connLimits(s.cfg))
	if n.budget != nil {
		n.budget.SetLimits(storeLimits(s.cfg))
	}
	if s.dir != old.dir {
		old.dir.release()
	}
	old.ntlm.retire(s.ntlm)
	s.log.Info("auth node settings applied", "changed", strings.Join(changedKeys(&old.cfg, &s.cfg), " "))
	signal(n.keysChanged)
	signal(n.recheck)
}

// Discard releases what Prepare opened, for a configuration that is not
// applied. It changes nothing of the running node.
func (p *Pending) Discard() {
	if p == nil || !p.used.CompareAndSwap(false, true) {
		return
	}
	if !p.reused {
		p.s.dir.release()
	}
	if cur := p.n.cur.Load(); p.s.ntlm != nil && (cur.ntlm == nil || cur.ntlm.verifier != p.s.ntlm.verifier) {
		_ = p.s.ntlm.verifier.Close()
	}
}

// signal leaves one wake-up in c unless one is pending.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// load makes the settings of cfg, which is checked and has its defaults:
// it reads every file they need. The directory of prev is kept when its
// configuration (and its CA file's content) did not change. It also
// returns the keytab and the SHA-256 of the file it was read from.
func (n *Node) load(cfg Config, prev *settings) (s *settings, kt *keytab.Keytab, sum [sha256.Size]byte, err error) {
	s = &settings{cfg: cfg, log: n.log.With("node", cfg.FQDN)}
	if s.appURL, err = parseAppURL(cfg.ApplicationURL); err != nil {
		return nil, nil, sum, fmt.Errorf("application URL %q: %w", cfg.ApplicationURL, err)
	}
	if s.oidc, err = n.newProvider(s); err != nil {
		return nil, nil, sum, err
	}
	files, err := kerberosFiles(&cfg)
	if err != nil {
		return nil, nil, sum, err
	}
	kt, sum, s.krb5 = files.Keytab, files.KeytabSum, files.Krb5
	s.cfg.Files = nil // parsed once: the keytab watch reads the file itself
	if s.tls, err = cfg.serverTLS(); err != nil {
		return nil, nil, sum, err
	}
	for _, c := range cfg.APIClients {
		// Presented keys are trimmed (see authenticateAPI); so are these.
		s.apiClients = append(s.apiClients, apiClient{name: c.Name, keyHash: sha256Sum(strings.TrimSpace(c.Key)), certName: c.CertName})
	}
	var ca []byte
	if cfg.LDAP.CAFile != "" {
		if ca, err = os.ReadFile(cfg.LDAP.CAFile); err != nil {
			return nil, nil, sum, fmt.Errorf("LDAP CA: read %s: %w", cfg.LDAP.CAFile, err)
		}
	}
	var prevNTLM *ntlmRef
	if prev != nil {
		prevNTLM = prev.ntlm
	}
	if s.ntlm, err = n.newNTLMRef(&cfg, prevNTLM); err != nil {
		return nil, nil, sum, err
	}
	if prev != nil && prev.dir.cfg == cfg.LDAP && bytes.Equal(prev.dir.ca, ca) && prev.dir.refs.Load() > 0 {
		s.dir = prev.dir
		return s, kt, sum, nil
	}
	if s.dir, err = n.openDirectory(cfg.LDAP, ca); err != nil {
		return nil, nil, sum, err
	}
	return s, kt, sum, nil
}

// openDirectory makes the directory client of c, whose CA file held ca.
// Nothing is dialled.
func (n *Node) openDirectory(c LDAPConfig, ca []byte) (*dirRef, error) {
	ldapTLS := &tls.Config{ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		var err error
		if ldapTLS.RootCAs, err = certPool(c.CAFile, ca); err != nil {
			return nil, fmt.Errorf("LDAP CA: %w", err)
		}
	}
	d, err := directory.New(directory.Config{
		URL: c.URL, StartTLS: c.StartTLS, AllowPlaintext: c.AllowPlaintext,
		TLS: ldapTLS, BindDN: c.BindDN, BindPassword: c.BindPassword,
		BaseDN: c.BaseDN, RequiredGroup: c.RequiredGroup,
		RequiredGroupCheck:  directory.GroupCheck(c.RequiredGroupCheck),
		Timeout:             c.Timeout,
		PoolSize:            c.PoolSize,
		QueueTimeout:        c.QueueTimeout,
		SIDCacheSize:        c.SIDCacheSize,
		SIDCacheTTL:         c.SIDCacheTTL,
		SIDCacheNegativeTTL: c.SIDCacheNegativeTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("LDAP: %w", err)
	}
	r := newDirRef(d)
	r.cfg, r.ca = c, ca
	return r, nil
}

// restartKeys are the settings a running node cannot take; each says why.
var restartKeys = []struct {
	key     string
	changed func(a, b *Config) (from, to any, ok bool)
	why     string
}{
	{"listen", func(a, b *Config) (any, any, bool) { return a.Listen, b.Listen, a.Listen != b.Listen },
		"the node serves the listener it started on, and its stores, replay cache and readiness with it"},
	{"max_header_bytes", func(a, b *Config) (any, any, bool) {
		return a.MaxHeaderBytes, b.MaxHeaderBytes, a.MaxHeaderBytes != b.MaxHeaderBytes
	}, "a limit of the HTTP server, which Go fixes while it serves"},
	{"read_header_timeout", func(a, b *Config) (any, any, bool) {
		return a.ReadHeaderTimeout, b.ReadHeaderTimeout, a.ReadHeaderTimeout != b.ReadHeaderTimeout
	}, "a limit of the HTTP server and the PROXY header reader, fixed while they serve"},
	{"idle_timeout", func(a, b *Config) (any, any, bool) {
		return a.IdleTimeout, b.IdleTimeout, a.IdleTimeout != b.IdleTimeout
	},
		"a limit of the HTTP server, which Go fixes while it serves"},
	{"store.type", func(a, b *Config) (any, any, bool) {
		return storeType(a), storeType(b), (a.Redis == nil) != (b.Redis == nil)
	}, "the tokens, sessions and replay cache are kept for the node's life; another store would lose them"},
	{"store.redis", func(a, b *Config) (any, any, bool) {
		// Values not shown: they hold passwords.
		return nil, nil, a.Redis != nil && b.Redis != nil && !reflect.DeepEqual(a.Redis, b.Redis)
	}, "the node keeps one Redis client for its life; tokens, sessions and the replay cache are there"},
	{"kerberos.max_clock_skew", func(a, b *Config) (any, any, bool) {
		return a.MaxClockSkew, b.MaxClockSkew, a.MaxClockSkew != b.MaxClockSkew
	}, "the replay cache remembers each authenticator for the window it was accepted in; a wider one would let those be replayed"},
	{"kerberos.max_future_skew", func(a, b *Config) (any, any, bool) {
		return a.MaxFutureSkew, b.MaxFutureSkew, a.MaxFutureSkew != b.MaxFutureSkew
	}, "the replay cache remembers each authenticator for the window it was accepted in; a wider one would let those be replayed"},
	{"kerberos.replay_cache_size", func(a, b *Config) (any, any, bool) {
		// With Redis it bounds nothing.
		return a.ReplayCacheMax, b.ReplayCacheMax, a.ReplayCacheMax != b.ReplayCacheMax && (a.Redis == nil || b.Redis == nil)
	}, "the in-memory replay cache is sized when it is made"},
	{"kerberos.replay_quota", func(a, b *Config) (any, any, bool) {
		return a.ReplayQuota, b.ReplayQuota, a.ReplayQuota != b.ReplayQuota
	}, "the replay cache enforces the quota it was made with"},
}

func storeType(c *Config) string {
	if c.Redis != nil {
		return "redis"
	}
	return "memory"
}

// restartOnly says which of the keys that take a restart differ between
// the running settings a and the new ones b.
func restartOnly(a, b *Config) error {
	var msgs []string
	for _, k := range restartKeys {
		from, to, ok := k.changed(a, b)
		if !ok {
			continue
		}
		m := "authnode." + k.key
		if from != nil {
			m += fmt.Sprintf(" (%v to %v)", from, to)
		}
		msgs = append(msgs, m+": "+k.why)
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("auth node: %w: %s", ErrRestartRequired, strings.Join(msgs, "; "))
}

// changedKeys names the sections of the configuration that differ, for
// the log line of a reload. It names no values: some are secrets.
func changedKeys(a, b *Config) []string {
	var out []string
	add := func(name string, changed bool) {
		if changed {
			out = append(out, name)
		}
	}
	add("fqdn", a.FQDN != b.FQDN)
	add("tls", a.CertFile != b.CertFile || a.KeyFile != b.KeyFile || a.ClientCAFile != b.ClientCAFile || !reflect.DeepEqual(a.TLS, b.TLS))
	add("max_conns", a.MaxConns != b.MaxConns || a.MaxConnsPerSource != b.MaxConnsPerSource)
	add("proxy_protocol", a.ProxyProtocol != b.ProxyProtocol || !reflect.DeepEqual(a.ProxyTrusted, b.ProxyTrusted))
	add("sso_path", a.SSOPath != b.SSOPath)
	add("application_url", a.ApplicationURL != b.ApplicationURL || a.TokenParam != b.TokenParam)
	add("ttls", a.TokenTTL != b.TokenTTL || a.SessionTTL != b.SessionTTL)
	add("cookie_name", a.CookieName != b.CookieName)
	add("form", !reflect.DeepEqual(a.Form, b.Form))
	add("sso_session", a.SSOSession != b.SSOSession)
	add("ntlm", a.NTLM != b.NTLM)
	add("store", a.StoreMaxEntries != b.StoreMaxEntries || a.StoreMaxBytes != b.StoreMaxBytes)
	add("kerberos", a.Keytab != b.Keytab || a.Krb5Conf != b.Krb5Conf || a.Realm != b.Realm || a.Account != b.Account ||
		a.SelfTestSPN != b.SelfTestSPN || a.SelfTestInterval != b.SelfTestInterval ||
		a.KeytabCheckInterval != b.KeytabCheckInterval || a.PreviousKeysTTL != b.PreviousKeysTTL)
	add("ldap", a.LDAP != b.LDAP)
	add("api", !reflect.DeepEqual(a.APIClients, b.APIClients))
	if len(out) == 0 {
		// Files may have changed under the same names.
		out = append(out, "none (files read again)")
	}
	return out
}
