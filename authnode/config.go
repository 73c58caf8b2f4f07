package authnode

import (
	"github.com/iwalb/iwalb/internal/tlspolicy"
	"net/netip"
	"time"

	"github.com/iwalb/iwalb/authnode/oidc"
	"github.com/iwalb/iwalb/authnode/store"
)

// Listener defaults. A browser opens six connections per host and the
// balancers are exempt, so 256 from one address is a flood, not a user;
// 10,000 open connections stay well inside a raised file-descriptor limit
// that the process's other roles share.
const (
	DefaultMaxConns          = 10000
	DefaultMaxConnsPerSource = 256
)

// Defaults of the Config fields of the same names, for a zero value. The
// config package uses them too, so that each is written once.
const (
	DefaultMaxHeaderBytes    = 128 << 10 // a 64 KiB Negotiate header and the rest of the request
	DefaultDrainTimeout      = 10 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultTokenTTL          = 60 * time.Second
	DefaultSessionTTL        = 8 * time.Hour
	DefaultSelfTestInterval  = 60 * time.Second
	DefaultMaxClockSkew      = 5 * time.Minute // Kerberos's own default
	DefaultSSOPath           = "/sso"
	DefaultTokenParam        = "ssoToken"
	DefaultCookieName        = "iwalb_session"
)

// Keytab defaults. Active Directory issues service tickets for 10 hours
// by default (the domain's "maximum lifetime for service ticket" is 600
// minutes): a ticket issued just before a password change is used until
// then, so the previous key stays accepted that long.
const (
	DefaultKeytabCheckInterval = 10 * time.Second
	DefaultPreviousKeysTTL     = 10 * time.Hour
)

// Config is everything an auth node needs, already validated and with
// secrets resolved. cmd/iwalb builds it from the YAML file; tests build it
// directly. Zero durations and sizes take the defaults named on each field.
type Config struct {
	// FQDN is the node's own host name (browsers get a ticket for HTTP/FQDN).
	FQDN string
	// Listen is the HTTPS listen address, e.g. "127.0.0.1:8443".
	Listen string
	// CertFile and KeyFile hold the node's TLS certificate and key.
	CertFile, KeyFile string
	// ClientCAFile, when set, lets applications authenticate to the redeem
	// API with a client certificate signed by this CA.
	ClientCAFile string
	// TLS is the TLS server's lowest version, TLS 1.2 suites and session
	// tickets; the zero value is Mozilla's "intermediate" with no
	// tickets. A reload applies a change to the connections that follow.
	TLS tlspolicy.Settings
	// MaxHeaderBytes bounds the request header block (default 128 KiB;
	// at least 64 KiB so that large Kerberos tickets pass).
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds a slow client sending headers (default 10s).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections (default 120s).
	IdleTimeout time.Duration
	// DrainTimeout is how long a stopping node lets requests in flight
	// finish (default 10s); a reload may change it.
	DrainTimeout time.Duration
	// MaxConns bounds the connections open at once, counted from accept
	// (PROXY headers and TLS handshakes in progress included); more are
	// reset at once (default DefaultMaxConns).
	MaxConns int
	// MaxConnsPerSource bounds those from one client address, an IPv6 /64
	// counting as one; ProxyTrusted peers are exempt (default
	// DefaultMaxConnsPerSource; negative means no bound).
	MaxConnsPerSource int

	// ProxyProtocol accepts a PROXY v1/v2 header, only from ProxyTrusted.
	ProxyProtocol bool
	// ProxyTrusted lists the peers (the L4 balancers) allowed to send one.
	ProxyTrusted []netip.Prefix

	// SSOPath is the path of the login endpoint (default "/sso").
	SSOPath string
	// ApplicationURL is where the browser is sent with its one-time token.
	ApplicationURL string
	// TokenParam is the query parameter carrying the token (default "ssoToken").
	TokenParam string
	// TokenTTL is the lifetime of an unredeemed token (default 60s).
	TokenTTL time.Duration
	// SessionTTL is the lifetime of a session made by redeeming (default 8h).
	SessionTTL time.Duration
	// CookieName names the node's session cookie (default "iwalb_session").
	CookieName string
	// Form, when enabled, signs in with a user name and password the
	// clients that cannot do Kerberos (form.go).
	Form FormConfig
	// NTLM, when enabled, signs in the browsers that fall back from
	// Kerberos to NTLM (ntlm.go). Off, the node is Kerberos only.
	NTLM NTLMConfig
	// SSOSession, when enabled, lets a browser that signed in come back
	// without signing in again, by a cookie (ssocookie.go).
	SSOSession SSOSessionConfig
	// StoreMaxEntries and StoreMaxBytes bound the in-memory store, tokens
	// and sessions together (defaults store.DefaultMaxEntries, a million,
	// and store.DefaultMaxBytes, 256 MiB); beyond them logins and redeems
	// are refused with 503 store_full. Unused with Options.Tokens and
	// Options.Sessions.
	StoreMaxEntries int
	StoreMaxBytes   int64
	// Redis, when set, keeps the tokens, the sessions and the Kerberos
	// replay cache in Redis, shared by every node that uses the same
	// Redis and Prefix: a token redeems at any node, once, and an
	// authenticator accepted at one node is refused at all. When Redis
	// cannot be reached, logins and redemptions fail (503
	// store_unavailable) and the node is not ready; nothing falls back to
	// memory. StoreMaxEntries, StoreMaxBytes and ReplayCacheMax do not
	// apply: Redis's maxmemory bounds it all. Unused with Options.Tokens
	// and Options.Sessions.
	Redis *RedisConfig

	// Keytab is the path of the keytab holding the node's SPNs.
	Keytab string
	// Krb5Conf is the krb5.conf that tells the self-test where the KDC is.
	Krb5Conf string
	// Files, when set, are Keytab and Krb5Conf already parsed by the
	// caller (the config package, which reads them to check them); New and
	// Prepare then do not read the files again. The keytab watch reads the
	// file at Keytab when its content changes.
	Files *KerberosFiles
	// Realm is the Kerberos realm, e.g. "EXAMPLE.TEST".
	Realm string
	// Account is the AD account (sAMAccountName) that owns the SPNs.
	Account string
	// SelfTestSPN is the SPN the self-test asks a ticket for (default HTTP/FQDN).
	SelfTestSPN string
	// SelfTestInterval is how often readiness is re-proved (default 60s).
	SelfTestInterval time.Duration
	// KeytabCheckInterval is how often the keytab file is read to see
	// whether it changed (default DefaultKeytabCheckInterval): new content
	// is loaded without a reload, as Apply loads it. Content that does not
	// parse (a file being written) is ignored, with a warning, until it
	// does.
	KeytabCheckInterval time.Duration
	// PreviousKeysTTL is how long the keys that a newer keytab no longer
	// holds (older key versions) are still accepted (default
	// DefaultPreviousKeysTTL): tickets issued before a password change
	// stay valid until they expire. Negative means none are kept: after
	// a password change made because the key leaked, say.
	PreviousKeysTTL time.Duration
	// MaxClockSkew is the allowed clock difference with clients and the DC
	// (default 5m).
	MaxClockSkew time.Duration
	// MaxFutureSkew is how far ahead of the node's clock a client's
	// authenticator may be (default 30s, at most MaxClockSkew); readiness
	// fails when the DC's clock is further ahead.
	MaxFutureSkew time.Duration
	// ReplayCacheMax bounds the authenticators remembered against replay
	// (default 100000); ReplayQuota is how many of them one user may have
	// (default 50), beyond which that user's logins are refused (429
	// replay_quota) until the oldest expires.
	ReplayCacheMax, ReplayQuota int

	// LDAP configures the Active Directory look-ups.
	LDAP LDAPConfig

	// OIDC, when set, makes the node an OpenID Connect provider as well
	// (oidcnode.go): its endpoints under the issuer's path, the same
	// sign-in at /authorize as at SSOPath, and the codes, access tokens
	// and generated signing keys in the node's stores (shared in Redis).
	OIDC *oidc.Config

	// APIClients are the applications allowed to redeem tokens.
	APIClients []APIClient
}

// LDAPConfig says how the node reaches Active Directory.
type LDAPConfig struct {
	// URL is ldaps://host:636 or ldap://host:389.
	URL string
	// StartTLS upgrades an ldap:// connection before binding.
	StartTLS bool
	// AllowPlaintext permits ldap:// without StartTLS (the password travels
	// in clear); refused unless set.
	AllowPlaintext bool
	// CAFile verifies the DC's certificate; empty means the system roots.
	CAFile string
	// ServerName is the name checked in the DC's certificate.
	ServerName string
	// BindDN and BindPassword are the proxy account's credentials.
	BindDN, BindPassword string
	// BaseDN is where users, and the groups named in logins, are searched.
	BaseDN string
	// RequiredGroup, when set, is the DN of the group (nested membership
	// counts) that a user must belong to.
	RequiredGroup string
	// RequiredGroupCheck is "ticket" (default: the group's SID among the
	// ticket's, as of when the ticket was issued) or "directory" (asked of
	// the directory at every login; a second search).
	RequiredGroupCheck string
	// Timeout bounds each LDAP operation (default 5s).
	Timeout time.Duration
	// PoolSize bounds the LDAP connections open at once for logins
	// (default directory.DefaultPoolSize, 8).
	PoolSize int
	// QueueTimeout is how long a login waits for a free connection before
	// it is refused with 503 ldap_busy (default 5s).
	QueueTimeout time.Duration
	// SIDCacheSize bounds the group SIDs whose names are remembered
	// (default directory.DefaultSIDCacheSize, 100000); SIDCacheTTL is how
	// long a name is (default 1h), SIDCacheNegativeTTL how long a SID that
	// names no group is (default 10m).
	SIDCacheSize                     int
	SIDCacheTTL, SIDCacheNegativeTTL time.Duration
}

// APIClient is one application allowed to redeem tokens.
type APIClient struct {
	// Name identifies the application in logs and metrics.
	Name string
	// Key is its API key (from a file or the environment, never inline).
	Key string
	// CertName, when set, is the subject CN or DNS name of a client
	// certificate that also authenticates this application.
	CertName string
}

// FormConfig is the password sign-in form. Failures are counted per
// account and per client address (an IPv6 /64 as one) over Window: past
// UserFailures or ClientFailures, sign-ins of that account or from that
// address are refused until the window ends, without asking the KDC, so
// that guessing through iwalb cannot lock an account out of the domain.
type FormConfig struct {
	Enabled bool
	// UserFailures per account in Window (default 5). Keep it below the
	// domain's lockout threshold.
	UserFailures int
	// ClientFailures per client address in Window (default 20).
	ClientFailures int
	// Window over which failures count (default 15m).
	Window time.Duration
	// Organisation and Help are shown on the sign-in page: whose sign-in
	// it is, and where to get help.
	Organisation, Help string
	// NegotiateNetworks, when not empty, are the client networks offered
	// Negotiate; a client from elsewhere (by its real address, from the
	// PROXY header behind the L4 balancer) gets the form at once and
	// never a browser's password dialog. Empty: every client is offered
	// Negotiate.
	NegotiateNetworks []netip.Prefix
}

// NTLMConfig is NTLM sign-in: the domain controller checks each login,
// through Samba winbind's ntlm_auth helper on this host (which must be
// joined to the domain); iwalb holds no password hashes. NTLMv1 and LM are
// always refused.
type NTLMConfig struct {
	Enabled bool
	// Domain is the domain's NetBIOS name, e.g. "EXAMPLE" (default: the
	// realm's first label). Logins naming another domain are refused.
	Domain string
	// Helper is the path of ntlm_auth (default DefaultNTLMHelper, looked
	// up in PATH); SMBConf, when set, is the smb.conf it reads
	// (--configfile).
	Helper, SMBConf string
	// MaxHelpers bounds the helper processes running at once (default
	// DefaultNTLMMaxHelpers); each checks one login at a time.
	MaxHelpers int
	// Timeout bounds one check; a helper slower than this is killed
	// (default DefaultNTLMTimeout).
	Timeout time.Duration
	// ChallengeTTL is how long a challenge may be answered (default
	// DefaultNTLMChallengeTTL).
	ChallengeTTL time.Duration
}

// NTLM defaults.
const (
	DefaultNTLMHelper       = "ntlm_auth"
	DefaultNTLMMaxHelpers   = 4
	DefaultNTLMTimeout      = 5 * time.Second
	DefaultNTLMChallengeTTL = 60 * time.Second
)

// SSOSessionConfig is the node's own sign-in session, held by the
// browser in the cookie CookieName.
type SSOSessionConfig struct {
	Enabled bool
	// Lifetime from the sign-in (default 8h).
	Lifetime time.Duration
	// Idle ends a session not used for this long (default 1h).
	Idle time.Duration
}

// RedisConfig says how an auth node reaches Redis: the store's settings
// (zero durations and sizes take their defaults), with TLS made by the node
// from TLSFiles.
type RedisConfig struct {
	store.RedisConfig
	// TLSFiles, when set, makes every connection TLS, to the Sentinels
	// too, with the files it names (they are read again on reload). Without
	// it, store.RedisConfig.TLS is used as it is.
	TLSFiles *RedisTLSFiles
}

// RedisTLSFiles are the files of a TLS connection to Redis.
type RedisTLSFiles struct {
	// CAFile verifies the server (empty: the system's roots); ServerName
	// is the name checked in its certificate (empty: the host of the
	// address dialled).
	CAFile, ServerName string
	// CertFile and KeyFile, when set, are the client certificate
	// presented.
	CertFile, KeyFile string
}
