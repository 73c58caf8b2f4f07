package config

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/jcmturner/gokrb5/v8/keytab"

	"github.com/iwalb/iwalb/authnode"
	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/negotiate"
	"github.com/iwalb/iwalb/authnode/store"
	"github.com/iwalb/iwalb/internal/hostname"
)

// rawAuthNode is the authnode section; configs/authnode.yaml documents it.
type rawAuthNode struct {
	At                pos              `yaml:"-"`
	FQDN              str              `yaml:"fqdn"`
	Listen            str              `yaml:"listen"`
	TLS               rawTLS           `yaml:"tls"`
	MaxHeaderBytes    integer          `yaml:"max_header_bytes"`
	ReadHeaderTimeout duration         `yaml:"read_header_timeout"`
	IdleTimeout       duration         `yaml:"idle_timeout"`
	MaxConns          integer          `yaml:"max_conns"`
	MaxConnsPerSource integer          `yaml:"max_conns_per_source"`
	ProxyProtocol     rawProxyProtocol `yaml:"proxy_protocol"`
	SSOPath           str              `yaml:"sso_path"`
	ApplicationURL    str              `yaml:"application_url"`
	TokenParam        str              `yaml:"token_param"`
	TokenTTL          duration         `yaml:"token_ttl"`
	SessionTTL        duration         `yaml:"session_ttl"`
	CookieName        str              `yaml:"cookie_name"`
	Form              rawForm          `yaml:"form"`
	SSOSession        rawSSOSession    `yaml:"sso_session"`
	NTLM              rawNTLM          `yaml:"ntlm"`
	OIDC              rawOIDC          `yaml:"oidc"`
	Store             rawStore         `yaml:"store"`
	Kerberos          rawKerberos      `yaml:"kerberos"`
	LDAP              rawLDAP          `yaml:"ldap"`
	API               rawAPI           `yaml:"api"`
}

type rawTLS struct {
	At       pos            `yaml:"-"`
	Cert     str            `yaml:"cert"`
	Key      str            `yaml:"key"`
	ClientCA str            `yaml:"client_ca"`
	Settings rawTLSSettings `yaml:",inline"`
}

type rawProxyProtocol struct {
	At      pos     `yaml:"-"`
	Enabled boolean `yaml:"enabled"`
	Trusted strList `yaml:"trusted"`
}

type rawForm struct {
	At             pos      `yaml:"-"`
	Enabled        boolean  `yaml:"enabled"`
	UserFailures   integer  `yaml:"user_failures"`
	ClientFailures integer  `yaml:"client_failures"`
	Window         duration `yaml:"window"`
	Organisation   str      `yaml:"organisation"`
	Help           str      `yaml:"help"`
	NegotiateNets  strList  `yaml:"negotiate_networks"`
}

type rawNTLM struct {
	At           pos      `yaml:"-"`
	Enabled      boolean  `yaml:"enabled"`
	Domain       str      `yaml:"domain"`
	Helper       str      `yaml:"helper"`
	SMBConf      str      `yaml:"smb_conf"`
	MaxHelpers   integer  `yaml:"max_helpers"`
	Timeout      duration `yaml:"timeout"`
	ChallengeTTL duration `yaml:"challenge_ttl"`
}

type rawSSOSession struct {
	At          pos      `yaml:"-"`
	Enabled     boolean  `yaml:"enabled"`
	Lifetime    duration `yaml:"lifetime"`
	IdleTimeout duration `yaml:"idle_timeout"`
}

type rawStore struct {
	At         pos      `yaml:"-"`
	Type       str      `yaml:"type"`
	MaxEntries integer  `yaml:"max_entries"`
	MaxBytes   integer  `yaml:"max_bytes"`
	Redis      rawRedis `yaml:"redis"`
}

type rawRedis struct {
	At                   pos         `yaml:"-"`
	Addrs                strList     `yaml:"addrs"`
	MasterName           str         `yaml:"master_name"`
	Username             str         `yaml:"username"`
	Password             refused     `yaml:"password" refuse:"inline secrets are not allowed; use password_file or password_env"`
	PasswordFile         str         `yaml:"password_file"`
	PasswordEnv          str         `yaml:"password_env"`
	SentinelUsername     str         `yaml:"sentinel_username"`
	SentinelPassword     refused     `yaml:"sentinel_password" refuse:"inline secrets are not allowed; use sentinel_password_file or sentinel_password_env"`
	SentinelPasswordFile str         `yaml:"sentinel_password_file"`
	SentinelPasswordEnv  str         `yaml:"sentinel_password_env"`
	DB                   integer     `yaml:"db"`
	Prefix               str         `yaml:"prefix"`
	TLS                  rawRedisTLS `yaml:"tls"`
	DialTimeout          duration    `yaml:"dial_timeout"`
	ReadTimeout          duration    `yaml:"read_timeout"`
	WriteTimeout         duration    `yaml:"write_timeout"`
	PoolSize             integer     `yaml:"pool_size"`
}

type rawRedisTLS struct {
	At         pos `yaml:"-"`
	CAFile     str `yaml:"ca_file"`
	ServerName str `yaml:"server_name"`
	Cert       str `yaml:"cert"`
	Key        str `yaml:"key"`
}

type rawKerberos struct {
	At               pos      `yaml:"-"`
	Keytab           str      `yaml:"keytab"`
	Krb5Conf         str      `yaml:"krb5_conf"`
	Realm            str      `yaml:"realm"`
	Account          str      `yaml:"account"`
	SelfTestSPN      str      `yaml:"self_test_spn"`
	SelfTestInterval duration `yaml:"self_test_interval"`
	// KeytabCheckInterval and PreviousKeysTTL: keytab rotation.
	KeytabCheckInterval duration `yaml:"keytab_check_interval"`
	PreviousKeysTTL     duration `yaml:"previous_keys_ttl"`
	MaxClockSkew        duration `yaml:"max_clock_skew"`
	MaxFutureSkew       duration `yaml:"max_future_skew"`
	ReplayCacheSize     integer  `yaml:"replay_cache_size"`
	ReplayQuota         integer  `yaml:"replay_quota"`
}

type rawLDAP struct {
	At               pos     `yaml:"-"`
	URL              str     `yaml:"url"`
	StartTLS         boolean `yaml:"start_tls"`
	AllowPlaintext   boolean `yaml:"allow_plaintext"`
	CAFile           str     `yaml:"ca_file"`
	ServerName       str     `yaml:"server_name"`
	BindDN           str     `yaml:"bind_dn"`
	BindPassword     refused `yaml:"bind_password" refuse:"inline secrets are not allowed; use bind_password_file or bind_password_env"`
	BindPasswordFile str     `yaml:"bind_password_file"`
	BindPasswordEnv  str     `yaml:"bind_password_env"`
	BaseDN           str     `yaml:"base_dn"`
	RequiredGroup    str     `yaml:"required_group"`

	RequiredGroupCheck  str      `yaml:"required_group_check"` // ticket or directory
	Timeout             duration `yaml:"timeout"`
	PoolSize            integer  `yaml:"pool_size"`
	QueueTimeout        duration `yaml:"queue_timeout"`
	SIDCacheSize        integer  `yaml:"sid_cache_size"`
	SIDCacheTTL         duration `yaml:"sid_cache_ttl"`
	SIDCacheNegativeTTL duration `yaml:"sid_cache_negative_ttl"`
}

type rawAPI struct {
	At      pos            `yaml:"-"`
	Clients []rawAPIClient `yaml:"clients"`
}

type rawAPIClient struct {
	At       pos     `yaml:"-"`
	Name     str     `yaml:"name"`
	Key      refused `yaml:"key" refuse:"inline secrets are not allowed; use key_file or key_env"`
	KeyFile  str     `yaml:"key_file"`
	KeyEnv   str     `yaml:"key_env"`
	CertName str     `yaml:"cert_name"`
}

// Limits that protect operators from configurations that load but fail
// users.
const (
	// minHeaderBytes: a Negotiate header for a user in hundreds of groups
	// (a large PAC) reaches 64 KiB once base64-encoded.
	minHeaderBytes = 64 << 10
	// maxTokenTTL: a one-time token travels in a URL (history, logs,
	// Referer); it must be redeemed within moments.
	maxTokenTTL = 10 * time.Minute
	// minAPIKeyBytes keeps API keys out of reach of guessing.
	minAPIKeyBytes = 16
	// minStoreBytes: below 1 MiB the store holds a few hundred sessions.
	minStoreBytes = 1 << 20
	// maxPoolSize: each connection is a session on the DC, which serves
	// every application of the domain.
	maxPoolSize = 256
	// maxQueueTimeout: a browser and its user give up long before.
	maxQueueTimeout = time.Minute
	// maxSIDCacheSize bounds the SID cache's memory (about 250 bytes an
	// entry) to 2.5 GB.
	maxSIDCacheSize = 10_000_000
	// maxSIDCacheTTL: a renamed group shows its new name within a day.
	maxSIDCacheTTL = 24 * time.Hour
)

var (
	// httpToken is what a cookie name or query parameter may be made of.
	httpToken = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// authNode validates the authnode section and builds its runtime value.
func (c *checker) authNode(r rawAuthNode) authnode.Config {
	const p = "authnode"
	cfg := authnode.Config{
		MaxHeaderBytes:    authnode.DefaultMaxHeaderBytes,
		MaxConns:          authnode.DefaultMaxConns,
		MaxConnsPerSource: authnode.DefaultMaxConnsPerSource,
		StoreMaxEntries:   store.DefaultMaxEntries,
		StoreMaxBytes:     store.DefaultMaxBytes,
		SSOPath:           authnode.DefaultSSOPath,
		TokenParam:        authnode.DefaultTokenParam,
		CookieName:        authnode.DefaultCookieName,
		ProxyProtocol:     r.ProxyProtocol.Enabled.V,
		ReadHeaderTimeout: c.positive(r.ReadHeaderTimeout, p+".read_header_timeout", authnode.DefaultReadHeaderTimeout),
		IdleTimeout:       c.positive(r.IdleTimeout, p+".idle_timeout", authnode.DefaultIdleTimeout),
		TokenTTL:          c.positive(r.TokenTTL, p+".token_ttl", authnode.DefaultTokenTTL),
		SessionTTL:        c.positive(r.SessionTTL, p+".session_ttl", authnode.DefaultSessionTTL),
	}

	fqdnOK := c.needStr(r.FQDN, r.At, p, "fqdn")
	if fqdnOK && !hostname.FQDN(r.FQDN.V) {
		c.add(r.FQDN.Line, "%s.fqdn: %q is not a fully qualified host name (like auth1.example.test)", p, r.FQDN.V)
		fqdnOK = false
	}
	cfg.FQDN = r.FQDN.V

	if c.needStr(r.Listen, r.At, p, "listen") && c.hostPort(r.Listen, p+".listen") {
		cfg.Listen = r.Listen.V
	}

	cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile = c.authNodeTLS(r, fqdnOK)
	cfg.TLS = c.tlsSettings(r.TLS.Settings, p+".tls")

	if r.MaxHeaderBytes.Set {
		cfg.MaxHeaderBytes = r.MaxHeaderBytes.V
		if r.MaxHeaderBytes.V < minHeaderBytes {
			c.add(r.MaxHeaderBytes.Line, "%s.max_header_bytes: %d is too small; Kerberos tickets with large PACs need 64 KiB (%d)",
				p, r.MaxHeaderBytes.V, minHeaderBytes)
		}
	}

	if m := r.MaxConns; m.Set {
		cfg.MaxConns = m.V
		if m.V < 1 {
			c.add(m.Line, "%s.max_conns: must be a positive number, got %d", p, m.V)
		}
	}
	if m := r.MaxConnsPerSource; m.Set {
		switch {
		case m.V < 0:
			c.add(m.Line, "%s.max_conns_per_source: must be 0 (no bound) or more, got %d", p, m.V)
		case m.V == 0:
			cfg.MaxConnsPerSource = -1 // authnode.Config's "no bound"
		default:
			cfg.MaxConnsPerSource = m.V
		}
	}

	cfg.ProxyTrusted = c.prefixes(r.ProxyProtocol.Trusted, p+".proxy_protocol.trusted")
	if r.ProxyProtocol.Enabled.V && len(r.ProxyProtocol.Trusted.V) == 0 {
		c.add(r.ProxyProtocol.Enabled.Line, "%s.proxy_protocol: enabled with no trusted addresses; list the L4 balancers under trusted", p)
	}

	if r.SSOPath.Set {
		cfg.SSOPath = r.SSOPath.V
		if err := authnode.CheckSSOPath(r.SSOPath.V); err != nil {
			c.add(r.SSOPath.Line, "%s.sso_path: %v", p, err)
		}
	}
	if c.needStr(r.ApplicationURL, r.At, p, "application_url") {
		u, err := url.Parse(r.ApplicationURL.V)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			c.add(r.ApplicationURL.Line, "%s.application_url: %q is not an absolute https:// URL; the one-time token travels in it", p, r.ApplicationURL.V)
		}
		cfg.ApplicationURL = r.ApplicationURL.V
	}
	if r.TokenParam.Set {
		cfg.TokenParam = r.TokenParam.V
		if !httpToken.MatchString(r.TokenParam.V) {
			c.add(r.TokenParam.Line, "%s.token_param: %q is not a plain query parameter name", p, r.TokenParam.V)
		}
	}
	if cfg.TokenTTL > maxTokenTTL {
		c.add(r.TokenTTL.Line, "%s.token_ttl: %s is too long; one-time tokens must be short-lived (at most %s)", p, cfg.TokenTTL, maxTokenTTL)
	}
	if r.CookieName.Set {
		cfg.CookieName = r.CookieName.V
		if !httpToken.MatchString(r.CookieName.V) {
			c.add(r.CookieName.Line, "%s.cookie_name: %q is not a valid cookie name", p, r.CookieName.V)
		}
	}

	cfg.Form = c.authNodeForm(r.Form, p+".form")
	cfg.NTLM = c.authNodeNTLM(r.NTLM, p+".ntlm", r.Kerberos.Realm.V)
	cfg.OIDC = c.authNodeOIDC(r.OIDC, p+".oidc", cfg.SSOPath)
	cfg.SSOSession = authnode.SSOSessionConfig{
		Enabled:  r.SSOSession.Enabled.V,
		Lifetime: c.positive(r.SSOSession.Lifetime, p+".sso_session.lifetime", authnode.DefaultSSOSessionLifetime),
		Idle:     c.positive(r.SSOSession.IdleTimeout, p+".sso_session.idle_timeout", authnode.DefaultSSOSessionIdle),
	}
	if ss := cfg.SSOSession; ss.Idle > ss.Lifetime {
		c.add(r.SSOSession.IdleTimeout.Line, "%s.sso_session.idle_timeout: %s is longer than lifetime (%s), which ends the session first", p, ss.Idle, ss.Lifetime)
	}
	if ss := cfg.SSOSession; ss.Lifetime > maxSSOLifetime {
		c.add(r.SSOSession.Lifetime.Line, "%s.sso_session.lifetime: %s is too long; a sign-in session must end within %s", p, ss.Lifetime, maxSSOLifetime)
	}

	inRedis := false
	switch t := r.Store.Type; {
	case !t.Set || t.V == "memory":
		if r.Store.Redis.At.Set {
			c.warn(r.Store.Redis.At.Line, "%s.store.redis: ignored: store.type is memory", p)
		}
	case t.V == "redis":
		inRedis = true
		cfg.Redis = c.authNodeRedis(r.Store)
	default:
		c.add(t.Line, "%s.store.type: unknown store %q; use memory or redis", p, t.V)
	}
	if inRedis {
		for _, m := range []integer{r.Store.MaxEntries, r.Store.MaxBytes} {
			if m.Set {
				c.warn(m.Line, "%s.store: max_entries and max_bytes bound the in-memory store only; Redis's maxmemory bounds this one", p)
				break
			}
		}
		if n := r.Kerberos.ReplayCacheSize; n.Set {
			c.warn(n.Line, "%s.kerberos.replay_cache_size: bounds the in-memory replay cache only; with store.type redis the replay cache is in Redis (replay_quota still applies)", p)
		}
	}
	if cfg.OIDC != nil && !inRedis && len(cfg.OIDC.SigningKeys) == 0 {
		c.warn(r.OIDC.At.Line, "%s.oidc: with store.type memory the provider's codes and generated keys live in this process: a code redeems only here, and another node publishes other keys; behind one issuer, more than one node needs store.type redis", p)
	}
	if m := r.Store.MaxEntries; m.Set {
		cfg.StoreMaxEntries = m.V
		if m.V < 1 {
			c.add(m.Line, "%s.store.max_entries: must be a positive number, got %d", p, m.V)
		}
	}
	if m := r.Store.MaxBytes; m.Set {
		cfg.StoreMaxBytes = int64(m.V)
		if m.V < minStoreBytes {
			c.add(m.Line, "%s.store.max_bytes: %d is too small; use at least %d (1 MiB)", p, m.V, minStoreBytes)
		}
	}

	c.authNodeKerberos(r, fqdnOK, &cfg)
	cfg.LDAP = c.authNodeLDAP(r)
	cfg.APIClients = c.authNodeAPI(r)
	return cfg
}

// section reports a required sub-section that is missing.
func (c *checker) section(s pos, parent pos, path, key string) bool {
	if !s.Set {
		c.add(parent.Line, "missing required key %q in %s", key, path)
	}
	return s.Set
}

// authNodeTLS checks the certificate and key (readable, a pair, naming the
// fqdn, not expired) and the optional client CA; it returns absolute paths.
func (c *checker) authNodeTLS(r rawAuthNode, fqdnOK bool) (cert, key, clientCA string) {
	const p = "authnode.tls"
	t := r.TLS
	if !c.section(t.At, r.At, "authnode", "tls") {
		return "", "", ""
	}
	var certPEM, keyPEM []byte
	certOK, keyOK := false, false
	if c.needStr(t.Cert, t.At, p, "cert") {
		certPEM, cert, certOK = c.readFile(t.Cert, p+".cert")
	}
	if c.needStr(t.Key, t.At, p, "key") {
		keyPEM, key, keyOK = c.readPrivateFile(t.Key, p+".key")
	}
	if certOK && keyOK {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		switch {
		case err != nil:
			c.add(t.Cert.Line, "%s: cert %s and key %s do not load as a pair: %v", p, showPath(t.Cert.V, cert), showPath(t.Key.V, key), err)
		case fqdnOK:
			if err := pair.Leaf.VerifyHostname(r.FQDN.V); err != nil {
				c.add(t.Cert.Line, "%s.cert: the certificate does not name the fqdn %s, so browsers would refuse it: %v", p, r.FQDN.V, err)
			}
			if now := time.Now(); now.After(pair.Leaf.NotAfter) {
				c.add(t.Cert.Line, "%s.cert: the certificate expired on %s", p, pair.Leaf.NotAfter.UTC().Format(time.DateOnly))
			}
			if why := chainProblem(pair); why != "" {
				c.add(t.Cert.Line, "%s.cert: %s", p, why)
			}
			c.certs = append(c.certs, Certificate{Server: "authnode", Name: certName(pair), NotAfter: pair.Leaf.NotAfter, Chain: chainOf(pair)})
		}
	}
	if t.ClientCA.Set {
		clientCA, _ = c.readCAs(t.ClientCA, p+".client_ca")
	}
	return cert, key, clientCA
}

// maxSSOLifetime bounds a sign-in session: a cookie stolen from a browser
// must stop working within the week.
const maxSSOLifetime = 7 * 24 * time.Hour

// maxFormText bounds the organisation and help texts of the sign-in page.
const maxFormText = 1 << 10

// netbiosName is a domain's NetBIOS name: 1 to 15 characters, none of
// those Windows forbids in it.
var netbiosName = regexp.MustCompile(`^[^\\/:*?"<>|.\s]{1,15}$`)

// authNodeNTLM checks the NTLM settings: the helper must be an executable
// file, so that a missing winbind package is a config error, not a failed
// login.
func (c *checker) authNodeNTLM(r rawNTLM, p, realm string) authnode.NTLMConfig {
	n := authnode.NTLMConfig{
		Enabled:      r.Enabled.V,
		Domain:       strings.ToUpper(r.Domain.V),
		Helper:       r.Helper.V,
		MaxHelpers:   c.atLeastOne(r.MaxHelpers, p+".max_helpers", authnode.DefaultNTLMMaxHelpers),
		Timeout:      c.positive(r.Timeout, p+".timeout", authnode.DefaultNTLMTimeout),
		ChallengeTTL: c.positive(r.ChallengeTTL, p+".challenge_ttl", authnode.DefaultNTLMChallengeTTL),
	}
	if !n.Enabled {
		if r.At.Set && (r.Domain.Set || r.Helper.Set || r.SMBConf.Set || r.MaxHelpers.Set || r.Timeout.Set || r.ChallengeTTL.Set) {
			c.warn(r.At.Line, "%s: ignored: NTLM is not enabled (enabled: true); the node is Kerberos only", p)
		}
		return n
	}
	if n.Domain == "" {
		n.Domain, _, _ = strings.Cut(strings.ToUpper(realm), ".")
	}
	if !netbiosName.MatchString(n.Domain) {
		c.add(r.Domain.Line, "%s.domain: %q is not a NetBIOS domain name (1 to 15 characters, no dot)", p, n.Domain)
	}
	if n.Helper == "" {
		n.Helper = authnode.DefaultNTLMHelper
	}
	line := r.Helper.Line
	if line == 0 {
		line = r.At.Line
	}
	if path, err := exec.LookPath(n.Helper); err != nil {
		c.add(line, "%s.helper: %s: %v (install Debian's winbind package, which has ntlm_auth)", p, n.Helper, err)
	} else {
		n.Helper = path
	}
	if r.SMBConf.Set {
		if _, abs, ok := c.readFile(r.SMBConf, p+".smb_conf"); ok {
			n.SMBConf = abs
		}
	}
	if n.MaxHelpers > maxNTLMHelpers {
		c.add(r.MaxHelpers.Line, "%s.max_helpers: %d is more helper processes than a node needs (at most %d)", p, n.MaxHelpers, maxNTLMHelpers)
	}
	return n
}

// maxNTLMHelpers bounds the helper processes: each takes a few MiB, and
// winbindd serves them all.
const maxNTLMHelpers = 64

// authNodeForm checks the password sign-in form's settings.
func (c *checker) authNodeForm(r rawForm, p string) authnode.FormConfig {
	f := authnode.FormConfig{
		Enabled:        r.Enabled.V,
		UserFailures:   c.atLeastOne(r.UserFailures, p+".user_failures", authnode.DefaultFormUserFailures),
		ClientFailures: c.atLeastOne(r.ClientFailures, p+".client_failures", authnode.DefaultFormClientFailures),
		Window:         c.positive(r.Window, p+".window", authnode.DefaultFormWindow),
		Organisation:   r.Organisation.V,
		Help:           r.Help.V,
	}
	if r.NegotiateNets.Set {
		f.NegotiateNetworks = c.prefixes(r.NegotiateNets, p+".negotiate_networks")
		if len(r.NegotiateNets.V) == 0 {
			c.add(r.NegotiateNets.Line, "%s.negotiate_networks: lists no network, so no client would be offered Negotiate; leave it out to offer it to every client", p)
		}
	}
	for _, t := range []struct {
		v   str
		key string
	}{{r.Organisation, "organisation"}, {r.Help, "help"}} {
		if len(t.v.V) > maxFormText {
			c.add(t.v.Line, "%s.%s: %d bytes is too long for the sign-in page (at most %d)", p, t.key, len(t.v.V), maxFormText)
		}
	}
	if r.At.Set && !r.Enabled.V {
		for _, k := range []struct {
			set  bool
			line int
		}{{r.UserFailures.Set, r.UserFailures.Line}, {r.ClientFailures.Set, r.ClientFailures.Line}, {r.Window.Set, r.Window.Line},
			{r.NegotiateNets.Set, r.NegotiateNets.Line}} {
			if k.set {
				c.warn(k.line, "%s: ignored: the form is not enabled (enabled: true)", p)
				break
			}
		}
	}
	return f
}

// prefixes parses CIDRs; a bare address means that address alone.
func (c *checker) prefixes(l strList, path string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range l.V {
		pfx, err := parsePrefix(s.V)
		if err != nil {
			c.add(s.Line, "%s: %q is not an address or CIDR (like 10.0.0.0/24 or 10.0.0.5)", path, s.V)
			continue
		}
		out = append(out, pfx)
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		return pfx.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("zones are not allowed")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// authNodeKerberos checks the keytab (parses, holds HTTP/fqdn@realm) and
// krb5.conf (parses).
func (c *checker) authNodeKerberos(r rawAuthNode, fqdnOK bool, cfg *authnode.Config) {
	const p = "authnode.kerberos"
	k := r.Kerberos
	cfg.SelfTestInterval = c.positive(k.SelfTestInterval, p+".self_test_interval", authnode.DefaultSelfTestInterval)
	cfg.MaxClockSkew = c.positive(k.MaxClockSkew, p+".max_clock_skew", authnode.DefaultMaxClockSkew)
	c.replayLimits(k, cfg)
	c.keytabRotation(k, cfg)
	if !c.section(k.At, r.At, "authnode", "kerberos") {
		return
	}
	realmOK := c.needStr(k.Realm, k.At, p, "realm")
	cfg.Realm = k.Realm.V
	if c.needStr(k.Account, k.At, p, "account") {
		cfg.Account = k.Account.V
	}
	cfg.SelfTestSPN = "HTTP/" + r.FQDN.V
	if k.SelfTestSPN.Set {
		cfg.SelfTestSPN = k.SelfTestSPN.V
		if !strings.Contains(k.SelfTestSPN.V, "/") {
			c.add(k.SelfTestSPN.Line, "%s.self_test_spn: %q is not an SPN (like HTTP/auth1.example.test)", p, k.SelfTestSPN.V)
		}
	}

	files := &authnode.KerberosFiles{}
	if c.needStr(k.Keytab, k.At, p, "keytab") {
		data, abs, ok := c.readPrivateFile(k.Keytab, p+".keytab")
		cfg.Keytab = abs
		if ok {
			kt, err := negotiate.ParseKeytab(data)
			files.Keytab, files.KeytabSum = kt, sha256.Sum256(data)
			switch {
			case err != nil:
				c.add(k.Keytab.Line, "%s.keytab: %s does not load: %v", p, showPath(k.Keytab.V, abs), err)
			case fqdnOK && realmOK:
				want := "HTTP/" + r.FQDN.V + "@" + k.Realm.V
				if held := principals(kt); !slices.Contains(held, want) {
					c.add(k.Keytab.Line, "%s.keytab: %s has no key for HTTP/%s@%s, so this node could log no one in (it holds %s)",
						p, showPath(k.Keytab.V, abs), r.FQDN.V, k.Realm.V, listPrincipals(held))
				}
			}
		}
	}

	// Required: the self-test needs to find the KDC, and authnode.New
	// refuses a Config without it.
	if c.needStr(k.Krb5Conf, k.At, p, "krb5_conf") {
		data, abs, ok := c.readFile(k.Krb5Conf, p+".krb5_conf")
		cfg.Krb5Conf = abs
		if ok {
			var err error
			if files.Krb5, err = authnode.ParseKrb5Conf(data); err != nil {
				c.add(k.Krb5Conf.Line, "%s.krb5_conf: %s does not parse: %v", p, showPath(k.Krb5Conf.V, abs), err)
			}
		}
	}
	// Parsed once: the node serves with what was checked here.
	if files.Keytab != nil && files.Krb5 != nil {
		cfg.Files = files
	}
}

// replayLimits checks how far ahead an authenticator may be and how many
// the replay cache remembers, in all and per user.
func (c *checker) replayLimits(k rawKerberos, cfg *authnode.Config) {
	const (
		p = "authnode.kerberos"
		// minFutureSkew: readiness compares max_future_skew with the
		// DC's clock, which it reads to the second.
		minFutureSkew = 2 * time.Second
		// maxReplayCacheSize bounds the replay cache's memory (up to 250
		// bytes an entry) to 2.5 GB.
		maxReplayCacheSize = 10_000_000
	)
	cfg.MaxFutureSkew = min(30*time.Second, cfg.MaxClockSkew)
	if f := k.MaxFutureSkew; f.Set {
		switch {
		case f.V < minFutureSkew:
			c.add(f.Line, "%s.max_future_skew: %s is too small; the domain controller's clock is read to the second (at least %s)", p, f.V, minFutureSkew)
		case f.V > cfg.MaxClockSkew:
			c.add(f.Line, "%s.max_future_skew: %s is more than max_clock_skew (%s)", p, f.V, cfg.MaxClockSkew)
		default:
			cfg.MaxFutureSkew = f.V
		}
	}
	cfg.ReplayCacheMax, cfg.ReplayQuota = 100000, 50
	if q := k.ReplayQuota; q.Set {
		if q.V < 1 {
			c.add(q.Line, "%s.replay_quota: must be at least 1, got %d", p, q.V)
		} else {
			cfg.ReplayQuota = q.V
		}
	}
	if n := k.ReplayCacheSize; n.Set {
		switch {
		case n.V > maxReplayCacheSize:
			c.add(n.Line, "%s.replay_cache_size: %d is more than %d (up to 250 bytes an entry)", p, n.V, maxReplayCacheSize)
		case n.V < cfg.ReplayQuota:
			c.add(n.Line, "%s.replay_cache_size: %d is less than replay_quota (%d)", p, n.V, cfg.ReplayQuota)
		default:
			cfg.ReplayCacheMax = n.V
		}
	} else if cfg.ReplayQuota > cfg.ReplayCacheMax {
		c.add(k.ReplayQuota.Line, "%s.replay_quota: %d is more than replay_cache_size (%d)", p, cfg.ReplayQuota, cfg.ReplayCacheMax)
	}
}

// Bounds of the keytab rotation keys.
const (
	// minKeytabCheck and maxKeytabCheck: the file is read (a few KB) at
	// each check; past an hour a new keytab waits too long, and tickets
	// of the new key version fail meanwhile.
	minKeytabCheck = time.Second
	maxKeytabCheck = time.Hour
	// maxPreviousKeysTTL: a week is the longest a domain lets a ticket be
	// renewed; keeping a retired key longer only widens what a leaked key
	// can do.
	maxPreviousKeysTTL = 7 * 24 * time.Hour
)

// keytabRotation checks how often the keytab file is read again and how
// long the keys of an older keytab stay accepted.
func (c *checker) keytabRotation(k rawKerberos, cfg *authnode.Config) {
	const p = "authnode.kerberos"
	cfg.KeytabCheckInterval = c.positive(k.KeytabCheckInterval, p+".keytab_check_interval", authnode.DefaultKeytabCheckInterval)
	if d := k.KeytabCheckInterval; d.Set && d.V > 0 && (d.V < minKeytabCheck || d.V > maxKeytabCheck) {
		c.add(d.Line, "%s.keytab_check_interval: %s is not between %s and %s", p, d.V, minKeytabCheck, maxKeytabCheck)
	}
	cfg.PreviousKeysTTL = authnode.DefaultPreviousKeysTTL
	switch d := k.PreviousKeysTTL; {
	case !d.Set:
	case d.V < 0:
		c.add(d.Line, "%s.previous_keys_ttl: must be 0 (keep no previous key) or more, got %s", p, d.V)
	case d.V == 0:
		cfg.PreviousKeysTTL = -1 // authnode.Config's "none kept"
	case d.V > maxPreviousKeysTTL:
		c.add(d.Line, "%s.previous_keys_ttl: %s is more than %s; tickets last 10h by default, and a retired key stays usable as long as it is kept", p, d.V, maxPreviousKeysTTL)
	default:
		cfg.PreviousKeysTTL = d.V
	}
}

// principals lists the keytab's principals, once each, as name/host@REALM.
func principals(kt *keytab.Keytab) []string {
	var out []string
	for _, e := range kt.Entries {
		p := strings.Join(e.Principal.Components, "/") + "@" + e.Principal.Realm
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// listPrincipals names a few principals for a message.
func listPrincipals(ps []string) string {
	const most = 5
	switch {
	case len(ps) == 0:
		return "no keys"
	case len(ps) > most:
		return fmt.Sprintf("%s and %d more", strings.Join(ps[:most], ", "), len(ps)-most)
	}
	return strings.Join(ps, ", ")
}

// authNodeLDAP checks how the node reaches Active Directory; the bind
// password must not be able to travel in clear unless the operator says so.
func (c *checker) authNodeLDAP(r rawAuthNode) authnode.LDAPConfig {
	const p = "authnode.ldap"
	l := r.LDAP
	cfg := authnode.LDAPConfig{
		StartTLS:            l.StartTLS.V,
		AllowPlaintext:      l.AllowPlaintext.V,
		ServerName:          l.ServerName.V,
		Timeout:             c.positive(l.Timeout, p+".timeout", directory.DefaultTimeout),
		RequiredGroupCheck:  string(directory.GroupCheckTicket),
		PoolSize:            directory.DefaultPoolSize,
		QueueTimeout:        c.positive(l.QueueTimeout, p+".queue_timeout", directory.DefaultQueueTimeout),
		SIDCacheSize:        directory.DefaultSIDCacheSize,
		SIDCacheTTL:         c.positive(l.SIDCacheTTL, p+".sid_cache_ttl", directory.DefaultSIDCacheTTL),
		SIDCacheNegativeTTL: c.positive(l.SIDCacheNegativeTTL, p+".sid_cache_negative_ttl", directory.DefaultSIDCacheNegativeTTL),
	}
	if !c.section(l.At, r.At, "authnode", "ldap") {
		return cfg
	}
	if c.needStr(l.URL, l.At, p, "url") {
		cfg.URL = l.URL.V
		u, err := url.Parse(l.URL.V)
		switch {
		case err != nil || u.Host == "":
			c.add(l.URL.Line, "%s.url: %q is not an ldap:// or ldaps:// URL (like ldaps://dc1.example.test:636)", p, l.URL.V)
		case u.Scheme == "ldaps":
			if l.StartTLS.V {
				c.add(l.StartTLS.Line, "%s.start_tls: ldaps:// is TLS already; start_tls applies to ldap:// only", p)
			}
		case u.Scheme == "ldap":
			if !l.StartTLS.V && !l.AllowPlaintext.V {
				c.add(l.URL.Line, "%s.url: plain LDAP would send the bind password in clear; use ldaps://, start_tls: true, or allow_plaintext: true", p)
			}
		default:
			c.add(l.URL.Line, "%s.url: scheme %q is not ldap or ldaps", p, u.Scheme)
		}
	}
	if l.CAFile.Set {
		cfg.CAFile, _ = c.readCAs(l.CAFile, p+".ca_file")
	}
	cfg.BindDN = c.dn(l.BindDN, l.At, p, "bind_dn", true)
	cfg.BaseDN = c.dn(l.BaseDN, l.At, p, "base_dn", true)
	cfg.RequiredGroup = c.dn(l.RequiredGroup, l.At, p, "required_group", false)
	cfg.BindPassword, _ = c.secret(l.BindPasswordFile, l.BindPasswordEnv, l.At, p, "bind_password_file", "bind_password_env")
	if g := l.RequiredGroupCheck; g.Set {
		switch directory.GroupCheck(g.V) {
		case directory.GroupCheckTicket, directory.GroupCheckDirectory:
			cfg.RequiredGroupCheck = g.V
			if !l.RequiredGroup.Set {
				c.add(g.Line, "%s.required_group_check: set without required_group, so it checks nothing", p)
			}
		default:
			c.add(g.Line, "%s.required_group_check: %q is neither ticket (the group's SID in the user's ticket) nor directory (asked of the directory at each login)", p, g.V)
		}
	}
	if n := l.PoolSize; n.Set {
		cfg.PoolSize = n.V
		if n.V < 1 || n.V > maxPoolSize {
			c.add(n.Line, "%s.pool_size: must be between 1 and %d, got %d", p, maxPoolSize, n.V)
		}
	}
	if l.QueueTimeout.Set && l.QueueTimeout.V > maxQueueTimeout {
		c.add(l.QueueTimeout.Line, "%s.queue_timeout: %s is too long; a login waits at most %s for a free connection", p, l.QueueTimeout.V, maxQueueTimeout)
	}
	if n := l.SIDCacheSize; n.Set {
		cfg.SIDCacheSize = n.V
		if n.V < 1 || n.V > maxSIDCacheSize {
			c.add(n.Line, "%s.sid_cache_size: must be between 1 and %d (about 250 bytes an entry), got %d", p, maxSIDCacheSize, n.V)
		}
	}
	for _, d := range []struct {
		d   duration
		key string
	}{{l.SIDCacheTTL, "sid_cache_ttl"}, {l.SIDCacheNegativeTTL, "sid_cache_negative_ttl"}} {
		if d.d.Set && d.d.V > maxSIDCacheTTL {
			c.add(d.d.Line, "%s.%s: %s is more than %s; a renamed or new group would keep its old answer that long", p, d.key, d.d.V, maxSIDCacheTTL)
		}
	}
	return cfg
}

// dn checks a distinguished name, so that a typo is caught here rather
// than as "no such object" at the first login.
func (c *checker) dn(s str, sec pos, path, key string, required bool) string {
	if !s.Set && !required {
		return ""
	}
	if !c.needStr(s, sec, path, key) {
		return ""
	}
	if _, err := ldap.ParseDN(s.V); err != nil {
		c.add(s.Line, "%s.%s: %q is not a distinguished name (like CN=svc_ldap,CN=Users,DC=example,DC=test): %v", path, key, s.V, err)
	}
	return s.V
}

// authNodeAPI checks the applications allowed to redeem tokens: unique
// names, each with one key that is long enough and distinct.
func (c *checker) authNodeAPI(r rawAuthNode) []authnode.APIClient {
	const p = "authnode.api"
	a := r.API
	if !c.section(a.At, r.At, "authnode", "api") {
		return nil
	}
	if len(a.Clients) == 0 {
		c.add(a.At.Line, "%s.clients: at least one API client is required; applications redeem tokens with it", p)
		return nil
	}
	var out []authnode.APIClient
	names := map[string]int{} // name → line
	keys := map[string]string{}
	for i, rc := range a.Clients {
		cp := fmt.Sprintf("%s.clients[%d]", p, i)
		cl := authnode.APIClient{Name: rc.Name.V, CertName: rc.CertName.V}
		if c.needStr(rc.Name, rc.At, cp, "name") {
			if first, dup := names[rc.Name.V]; dup {
				c.add(rc.Name.Line, "%s.name: duplicate client name %q (first at line %d)", cp, rc.Name.V, first)
			} else {
				names[rc.Name.V] = rc.Name.Line
			}
		}
		if raw, ok := c.secret(rc.KeyFile, rc.KeyEnv, rc.At, cp, "key_file", "key_env"); ok {
			// The node compares keys trimmed, so trimmed they are checked:
			// spaces do not make a short key long.
			key := strings.TrimSpace(raw)
			cl.Key = key
			line := rc.KeyEnv.Line
			if rc.KeyFile.Set {
				line = rc.KeyFile.Line
			}
			switch other, dup := keys[key]; {
			case len(key) < minAPIKeyBytes:
				trimmed := ""
				if len(key) != len(raw) {
					trimmed = " without its surrounding whitespace"
				}
				c.add(line, "%s: the key is %d bytes%s; use at least %d (e.g. openssl rand -base64 32)", cp, len(key), trimmed, minAPIKeyBytes)
			case dup:
				c.add(line, "%s: same key as client %q; give each application its own", cp, other)
			default:
				keys[key] = rc.Name.V
			}
		}
		if rc.CertName.Set && !r.TLS.ClientCA.Set {
			c.add(rc.CertName.Line, "%s.cert_name: needs authnode.tls.client_ca to verify client certificates", cp)
		}
		if strings.Contains(rc.CertName.V, "*") {
			c.add(rc.CertName.Line, "%s.cert_name: %q: names are matched exactly; wildcards are not allowed", cp, rc.CertName.V)
		}
		out = append(out, cl)
	}
	return out
}

// Defaults and bounds of authnode.store.redis.
const (
	defaultRedisDialTimeout  = 2 * time.Second
	defaultRedisReadTimeout  = time.Second
	defaultRedisWriteTimeout = time.Second
	// maxRedisTimeout: every login waits for Redis; past this a slow
	// Redis would hold connections rather than fail them.
	maxRedisTimeout = time.Minute
)

// authNodeRedis checks how the node reaches Redis: addresses, the Sentinel
// master name, credentials (files or environment only), TLS files,
// timeouts and the key prefix.
func (c *checker) authNodeRedis(s rawStore) *authnode.RedisConfig {
	const p = "authnode.store.redis"
	r := s.Redis
	cfg := &authnode.RedisConfig{RedisConfig: store.RedisConfig{
		Prefix:       store.DefaultRedisPrefix,
		DialTimeout:  c.redisTimeout(r.DialTimeout, p+".dial_timeout", defaultRedisDialTimeout),
		ReadTimeout:  c.redisTimeout(r.ReadTimeout, p+".read_timeout", defaultRedisReadTimeout),
		WriteTimeout: c.redisTimeout(r.WriteTimeout, p+".write_timeout", defaultRedisWriteTimeout),
	}}
	if !r.At.Set {
		c.add(s.Type.Line, "authnode.store: type redis needs a redis section with addrs")
		return cfg
	}
	if !r.Addrs.Set || len(r.Addrs.V) == 0 {
		line := r.Addrs.Line
		if line == 0 {
			line = r.At.Line
		}
		c.add(line, "%s.addrs: at least one host:port is required (a server; a Cluster's nodes; or, with master_name, the Sentinels)", p)
	}
	seen := map[string]int{}
	for _, a := range r.Addrs.V {
		host, port, err := net.SplitHostPort(a.V)
		switch n, perr := strconv.Atoi(port); {
		case err != nil || host == "":
			c.add(a.Line, "%s.addrs: %q is not host:port (like 10.0.0.5:6379 or redis1.example.test:6379)", p, a.V)
			continue
		case perr != nil || n < 1 || n > 65535:
			c.add(a.Line, "%s.addrs: port %q in %q is not a number from 1 to 65535", p, port, a.V)
			continue
		}
		if first, dup := seen[a.V]; dup {
			c.add(a.Line, "%s.addrs: %s is listed twice (first at line %d)", p, a.V, first)
			continue
		}
		seen[a.V] = a.Line
		cfg.Addrs = append(cfg.Addrs, a.V)
	}
	if r.MasterName.Set {
		if c.needStr(r.MasterName, r.At, p, "master_name") {
			cfg.MasterName = r.MasterName.V
		}
	}
	if r.DB.Set {
		cfg.DB = r.DB.V
		switch {
		case r.DB.V < 0:
			c.add(r.DB.Line, "%s.db: must be 0 or more, got %d", p, r.DB.V)
		case r.DB.V != 0 && !r.MasterName.Set && len(r.Addrs.V) > 1:
			c.add(r.DB.Line, "%s.db: several addrs without master_name is a Redis Cluster, which has database 0 only", p)
		}
	}
	if r.Prefix.Set {
		cfg.Prefix = r.Prefix.V
		if err := store.CheckPrefix(r.Prefix.V); err != nil || r.Prefix.V == "" {
			if err == nil {
				err = errors.New("is empty; keys of other programs could collide with iwalb's")
			}
			c.add(r.Prefix.Line, "%s.prefix: %q %v", p, r.Prefix.V, err)
		}
	}

	if r.PasswordFile.Set || r.PasswordEnv.Set {
		cfg.Password, _ = c.secret(r.PasswordFile, r.PasswordEnv, r.At, p, "password_file", "password_env")
	} else {
		c.warn(r.At.Line, "%s: no password_file or password_env: anyone who reaches Redis can read the sessions and make tokens", p)
	}
	if r.Username.Set {
		if c.needStr(r.Username, r.At, p, "username") {
			cfg.Username = r.Username.V
		}
		if !r.PasswordFile.Set && !r.PasswordEnv.Set {
			c.add(r.Username.Line, "%s.username: needs password_file or password_env", p)
		}
	}
	sentinelKeys := []str{r.SentinelUsername, r.SentinelPasswordFile, r.SentinelPasswordEnv}
	for _, k := range sentinelKeys {
		if k.Set && !r.MasterName.Set {
			c.add(k.Line, "%s: sentinel_username and sentinel_password_* apply with master_name only", p)
			break
		}
	}
	if r.SentinelPasswordFile.Set || r.SentinelPasswordEnv.Set {
		cfg.SentinelPassword, _ = c.secret(r.SentinelPasswordFile, r.SentinelPasswordEnv, r.At, p, "sentinel_password_file", "sentinel_password_env")
	}
	if r.SentinelUsername.Set {
		if c.needStr(r.SentinelUsername, r.At, p, "sentinel_username") {
			cfg.SentinelUsername = r.SentinelUsername.V
		}
		if !r.SentinelPasswordFile.Set && !r.SentinelPasswordEnv.Set {
			c.add(r.SentinelUsername.Line, "%s.sentinel_username: needs sentinel_password_file or sentinel_password_env", p)
		}
	}

	if t := r.TLS; t.At.Set {
		files := &authnode.RedisTLSFiles{}
		cfg.TLSFiles = files
		const tp = p + ".tls"
		if t.CAFile.Set {
			files.CAFile, _ = c.readCAs(t.CAFile, tp+".ca_file")
		}
		if t.ServerName.Set && c.needStr(t.ServerName, t.At, tp, "server_name") {
			files.ServerName = t.ServerName.V
		}
		switch {
		case t.Cert.Set != t.Key.Set:
			line := t.Cert.Line
			if !t.Cert.Set {
				line = t.Key.Line
			}
			c.add(line, "%s: a client certificate needs both cert and key", tp)
		case t.Cert.Set:
			var certPEM, keyPEM []byte
			var certOK, keyOK bool
			certPEM, files.CertFile, certOK = c.readFile(t.Cert, tp+".cert")
			keyPEM, files.KeyFile, keyOK = c.readPrivateFile(t.Key, tp+".key")
			if certOK && keyOK {
				if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
					c.add(t.Cert.Line, "%s: cert %s and key %s do not load as a pair: %v", tp, showPath(t.Cert.V, files.CertFile), showPath(t.Key.V, files.KeyFile), err)
				}
			}
		}
	}

	if r.PoolSize.Set {
		cfg.PoolSize = r.PoolSize.V
		if r.PoolSize.V < 1 {
			c.add(r.PoolSize.Line, "%s.pool_size: must be at least 1, got %d", p, r.PoolSize.V)
		}
	}
	return cfg
}

// redisTimeout is positive with an upper bound.
func (c *checker) redisTimeout(d duration, path string, def time.Duration) time.Duration {
	v := c.positive(d, path, def)
	if v > maxRedisTimeout {
		c.add(d.Line, "%s: %s is too long; logins wait on Redis (at most %s)", path, v, maxRedisTimeout)
		return def
	}
	return v
}
