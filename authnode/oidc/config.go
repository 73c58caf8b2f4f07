package oidc

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Token endpoint client authentication methods (RFC 7591 names).
const (
	AuthSecretBasic = "client_secret_basic"
	AuthSecretPost  = "client_secret_post"
	AuthNone        = "none"
	// AuthPrivateKeyJWT is a client that signs a JWT with its private key
	// (OpenID Connect Core §9, RFC 7523); the provider holds only the
	// public keys (Client.Keys).
	AuthPrivateKeyJWT = "private_key_jwt"
)

// Signing algorithms. ES256 is the default: small keys and signatures, and
// every OIDC library verifies it. RS256 is there for the relying parties
// that know nothing else.
const (
	AlgES256 = "ES256"
	AlgRS256 = "RS256"
)

// Scopes this provider knows; see doc.go for the claims each one grants.
const (
	ScopeOpenID  = "openid"
	ScopeProfile = "profile"
	ScopeEmail   = "email"
	ScopeGroups  = "groups"
)

// supportedScopes is every scope a client may be allowed, in the order
// discovery lists them.
var supportedScopes = []string{ScopeOpenID, ScopeProfile, ScopeEmail, ScopeGroups}

// Defaults and bounds of the durations. A code only has to live from the
// redirect to the relying party's token request, which is one round trip
// of the browser and one of the relying party; the ID token is read once,
// at sign-in, by nearly every relying party, so it need not outlive a few
// minutes; the access token is for /userinfo, asked for at sign-in too.
const (
	DefaultCodeTTL        = 60 * time.Second
	MaxCodeTTL            = 10 * time.Minute
	DefaultIDTokenTTL     = 5 * time.Minute
	MaxIDTokenTTL         = 24 * time.Hour
	DefaultAccessTokenTTL = 10 * time.Minute
	MaxAccessTokenTTL     = 24 * time.Hour
	// DefaultRefreshTokenTTL is how long a client with refresh tokens
	// may go on refreshing after the user signed in: a working day.
	// It is absolute: rotation does not extend it.
	DefaultRefreshTokenTTL = 8 * time.Hour
	// MaxRefreshTokenTTL bounds it: a sign-in is confirmed against the
	// directory at each refresh, but still never lasts beyond a month.
	MaxRefreshTokenTTL = 30 * 24 * time.Hour
	// DefaultKeyRotation is how long a generated key signs before the
	// next one takes over.
	DefaultKeyRotation = 30 * 24 * time.Hour
	// MinKeyRotation keeps a mistyped period ("10" read as 10ns) from
	// making a key per request.
	MinKeyRotation = 10 * time.Minute
	// DefaultKeyGrace is how long a key that stopped signing stays in the
	// JWKS: ID tokens it signed have expired long before, and an
	// id_token_hint a relying party sends at logout a day later still
	// verifies.
	DefaultKeyGrace = 24 * time.Hour
)

// maxKeyRefresh bounds how long a node serves the key set it read last;
// see keyTiming.
const maxKeyRefresh = time.Minute

// Field bounds of the configuration. They match the request bounds, so a
// client that is registered can always be asked for.
const (
	maxClientID    = 128
	maxRedirectURI = 2048
	maxGroupName   = 256
	minSecret      = 16
	maxSecret      = 512
	maxRedirects   = 64
)

// Config is the provider's configuration: what an operator writes in the
// YAML, already read (secrets included) and checked by New.
type Config struct {
	// Issuer is the provider's exact https URL (normally the front door's
	// name, so that every node answers the same), without a query, a
	// fragment or a trailing slash. Relying parties compare it byte for
	// byte with the tokens' iss.
	Issuer string
	// BackchannelURL, when set, is where relying parties' servers call
	// the token, userinfo and JWKS endpoints, as discovery announces them
	// (default: the issuer). It has the issuer's path; only the host and
	// port differ. A front door that answers with redirects (iwalb's L7)
	// suits browsers, but HTTP clients follow a redirect to another host
	// without their Authorization header: this names a way to the nodes
	// without one (the L4 passthrough name).
	BackchannelURL string
	// Clients are the registered relying parties.
	Clients []Client
	// CodeTTL is how long an authorization code may be redeemed (default
	// DefaultCodeTTL, at most MaxCodeTTL).
	CodeTTL time.Duration
	// IDTokenTTL is the ID token's lifetime (default DefaultIDTokenTTL,
	// at most MaxIDTokenTTL).
	IDTokenTTL time.Duration
	// AccessTokenTTL is the access token's lifetime at /userinfo
	// (default DefaultAccessTokenTTL, at most MaxAccessTokenTTL).
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is how long after the user's sign-in (auth_time) a
	// client with RefreshTokens may refresh (default
	// DefaultRefreshTokenTTL, at most MaxRefreshTokenTTL). Every refresh
	// token of that sign-in expires then, however often it was rotated.
	RefreshTokenTTL time.Duration
	// SigningAlg is ES256 (the default) or RS256. With SigningKeys it must
	// be the algorithm of the first key (empty: taken from it).
	SigningAlg string
	// KeyRotation is how long a generated key signs (default
	// DefaultKeyRotation, at least MinKeyRotation). Unused with
	// SigningKeys: the operator rotates files.
	KeyRotation time.Duration
	// KeyGrace is how long a key stays published after it stopped signing
	// (default DefaultKeyGrace). It must cover the ID token's lifetime and
	// the time nodes may sign with a key set they read earlier: at least
	// IDTokenTTL plus a minute.
	KeyGrace time.Duration
	// SigningKeys, when set, are the keys from files (see ParseSigningKey):
	// the first signs, the others are published only, so an operator
	// rotates by putting the new key first and dropping the old one after
	// KeyGrace. Empty: keys are generated into the shared KeyStore and
	// rotated every KeyRotation.
	SigningKeys []SigningKey
}

// Client is one registered relying party.
type Client struct {
	// ID is the client_id.
	ID string
	// Secret is the client secret (already read from its file). Empty
	// makes a public client, which must use PKCE (S256) and TokenAuth
	// none, unless the client has Keys.
	Secret string
	// Keys are the public keys of a private_key_jwt client (see
	// ParseClientKeys), which has no Secret: it signs a client assertion
	// at /token with its private key instead.
	Keys ClientKeys
	// RedirectURIs are the exact redirect_uri values the client may ask
	// for: compared as strings, no wildcards, no normalisation. Each is an
	// absolute https URL, or http on a loopback address (RFC 8252 §7.3),
	// without a fragment.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the exact post_logout_redirect_uri values
	// the client may ask for at logout, checked as RedirectURIs are.
	PostLogoutRedirectURIs []string
	// Scopes the client may be granted (default: all of openid, profile,
	// email, groups); openid must be among them. A request's other scopes
	// are not granted; the token response says which were.
	Scopes []string
	// RequiredGroup, when set, is a group the user must be in to sign in
	// to this client: a group name (sAMAccountName, compared without
	// regard to case) or a group SID (S-1-…), compared exactly.
	RequiredGroup string
	// TokenAuth is how the client authenticates at /token:
	// client_secret_basic (the default with a secret), client_secret_post,
	// private_key_jwt (the only one, and the default, with Keys), or none
	// (the only one, and the default, with neither). Only that method is
	// accepted: a relying party that tries one and then
	// the other (x/oauth2's auto-detection) sees invalid_client for any
	// refusal of its first try, so it should be set to the method.
	TokenAuth string
	// GroupSIDs adds the group_sids claim (every group SID of the user)
	// to the groups scope's claims.
	GroupSIDs bool
	// RefreshTokens lets the client have refresh tokens: the code grant
	// then also answers one, which the refresh_token grant rotates,
	// re-checking the user each time (Options.Confirm). Off by default:
	// without it no refresh token is issued, and the grant is refused.
	RefreshTokens bool
}

// withDefaults returns a copy of c with its zero fields filled.
func (c Config) withDefaults() Config {
	if c.CodeTTL == 0 {
		c.CodeTTL = DefaultCodeTTL
	}
	if c.IDTokenTTL == 0 {
		c.IDTokenTTL = DefaultIDTokenTTL
	}
	if c.AccessTokenTTL == 0 {
		c.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if c.RefreshTokenTTL == 0 {
		c.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if c.KeyRotation == 0 {
		c.KeyRotation = DefaultKeyRotation
	}
	if c.KeyGrace == 0 {
		c.KeyGrace = max(DefaultKeyGrace, c.IDTokenTTL+maxKeyRefresh)
	}
	if c.SigningAlg == "" {
		c.SigningAlg = AlgES256
		if len(c.SigningKeys) > 0 {
			c.SigningAlg = c.SigningKeys[0].alg
		}
	}
	c.Clients = slices.Clone(c.Clients)
	c.SigningKeys = slices.Clone(c.SigningKeys)
	for i := range c.Clients {
		cl := &c.Clients[i]
		// The provider keeps its own copies: a caller's later change
		// to a slice must not change a running provider.
		cl.RedirectURIs = slices.Clone(cl.RedirectURIs)
		cl.PostLogoutRedirectURIs = slices.Clone(cl.PostLogoutRedirectURIs)
		cl.Scopes = slices.Clone(cl.Scopes)
		if len(cl.Scopes) == 0 {
			cl.Scopes = slices.Clone(supportedScopes)
		}
		if cl.TokenAuth == "" {
			switch {
			case cl.Secret != "":
				cl.TokenAuth = AuthSecretBasic
			case cl.Keys.Len() > 0:
				cl.TokenAuth = AuthPrivateKeyJWT
			default:
				cl.TokenAuth = AuthNone
			}
		}
	}
	return c
}

// validate checks a Config with its defaults applied.
func (c *Config) validate() error {
	if err := checkIssuer(c.Issuer); err != nil {
		return fmt.Errorf("issuer %q: %w", c.Issuer, err)
	}
	if err := checkBackchannel(c.BackchannelURL, c.Issuer); err != nil {
		return fmt.Errorf("backchannel URL %q: %w", c.BackchannelURL, err)
	}
	for _, d := range []struct {
		name      string
		v, lo, hi time.Duration
	}{
		{"code TTL", c.CodeTTL, time.Second, MaxCodeTTL},
		{"ID token TTL", c.IDTokenTTL, 10 * time.Second, MaxIDTokenTTL},
		{"access token TTL", c.AccessTokenTTL, 10 * time.Second, MaxAccessTokenTTL},
		{"refresh token TTL", c.RefreshTokenTTL, time.Minute, MaxRefreshTokenTTL},
		{"key rotation", c.KeyRotation, MinKeyRotation, 10 * 365 * 24 * time.Hour},
		{"key grace", c.KeyGrace, c.IDTokenTTL + maxKeyRefresh, 365 * 24 * time.Hour},
	} {
		if d.v < d.lo || d.v > d.hi {
			return fmt.Errorf("%s %v is out of range [%v, %v]", d.name, d.v, d.lo, d.hi)
		}
	}
	if c.SigningAlg != AlgES256 && c.SigningAlg != AlgRS256 {
		return fmt.Errorf("signing algorithm %q: ES256 or RS256 expected", c.SigningAlg)
	}
	seen := map[string]bool{}
	for i, k := range c.SigningKeys {
		if k.key == nil {
			return fmt.Errorf("signing key %d: not made by ParseSigningKey", i+1)
		}
		if seen[k.kid] {
			return fmt.Errorf("signing key %d: the same key as an earlier one", i+1)
		}
		seen[k.kid] = true
	}
	if len(c.SigningKeys) > 0 && c.SigningKeys[0].alg != c.SigningAlg {
		return fmt.Errorf("signing algorithm %s, but the first signing key is for %s", c.SigningAlg, c.SigningKeys[0].alg)
	}
	if len(c.Clients) == 0 {
		return errors.New("no client is registered")
	}
	ids := map[string]bool{}
	for i := range c.Clients {
		cl := &c.Clients[i]
		if err := cl.validate(); err != nil {
			return fmt.Errorf("client %d (%q): %w", i+1, cl.ID, err)
		}
		if ids[cl.ID] {
			return fmt.Errorf("client %d: id %q is registered twice", i+1, cl.ID)
		}
		ids[cl.ID] = true
	}
	return nil
}

func checkIssuer(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case u.Scheme != "https":
		return errors.New("must be an https URL")
	case u.Host == "" || u.User != nil:
		return errors.New("must name a host, without user information")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return errors.New("may have neither a query nor a fragment")
	case hasDotSegment(u.Path):
		return errors.New("may not have . or .. path segments")
	case !hostName(u.Hostname()):
		return errors.New("must name a host by a DNS name or an IP address")
	case strings.ContainsAny(u.Path, "{}"):
		return errors.New("may not hold braces (the endpoints' routes are patterns)")
	case strings.HasSuffix(s, "/"):
		return errors.New("may not end with a slash (the endpoints are the issuer followed by their paths)")
	case u.String() != s:
		return errors.New("is not in its canonical form (check case, escapes and dot segments)")
	}
	return nil
}

func (cl *Client) validate() error {
	if cl.ID == "" || len(cl.ID) > maxClientID || !printableASCII(cl.ID) {
		return fmt.Errorf("id must be 1 to %d printable ASCII characters", maxClientID)
	}
	switch cl.TokenAuth {
	case AuthSecretBasic, AuthSecretPost:
		if len(cl.Secret) < minSecret || len(cl.Secret) > maxSecret {
			return fmt.Errorf("token auth %s needs a secret of %d to %d bytes", cl.TokenAuth, minSecret, maxSecret)
		}
	case AuthPrivateKeyJWT:
		if cl.Secret != "" {
			return errors.New("token auth private_key_jwt takes public keys, not a secret")
		}
		if cl.Keys.Len() == 0 {
			return errors.New("token auth private_key_jwt needs the client's public keys (made by ParseClientKeys)")
		}
	case AuthNone:
		if cl.Secret != "" {
			return errors.New("token auth none (a public client) takes no secret")
		}
	default:
		return fmt.Errorf("token auth %q: client_secret_basic, client_secret_post, private_key_jwt or none expected", cl.TokenAuth)
	}
	if cl.TokenAuth != AuthPrivateKeyJWT && cl.Keys.Len() > 0 {
		return fmt.Errorf("public keys are for token auth private_key_jwt, not %s", cl.TokenAuth)
	}
	if len(cl.RedirectURIs) == 0 {
		return errors.New("no redirect URI")
	}
	for _, list := range [][]string{cl.RedirectURIs, cl.PostLogoutRedirectURIs} {
		if len(list) > maxRedirects {
			return fmt.Errorf("%d redirect URIs: at most %d", len(list), maxRedirects)
		}
		for _, u := range list {
			if err := checkRedirectURI(u); err != nil {
				return fmt.Errorf("redirect URI %q: %w", u, err)
			}
		}
	}
	if !slices.Contains(cl.Scopes, ScopeOpenID) {
		return errors.New("scopes must include openid")
	}
	for _, s := range cl.Scopes {
		if !slices.Contains(supportedScopes, s) {
			return fmt.Errorf("scope %q is not one of %s", s, strings.Join(supportedScopes, ", "))
		}
	}
	if len(cl.RequiredGroup) > maxGroupName {
		return fmt.Errorf("required group is longer than %d bytes", maxGroupName)
	}
	return nil
}

// checkRedirectURI says whether s may be registered as a redirect URI: an
// absolute https URL, or http to a loopback address for native clients
// (RFC 8252 §7.3), with no fragment (RFC 6749 §3.1.2) and no user
// information. It is matched exactly, so it must also be the form a
// client sends: the canonical one.
func checkRedirectURI(s string) error {
	if len(s) > maxRedirectURI {
		return fmt.Errorf("longer than %d bytes", maxRedirectURI)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case u.Opaque != "" || u.Host == "":
		return errors.New("must be an absolute URL with a host")
	case u.User != nil:
		return errors.New("may not carry user information")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return errors.New("may not have a fragment")
	case !hostName(u.Hostname()):
		return errors.New("must name a host by a DNS name or an IP address (no wildcards)")
	case hasDotSegment(u.Path):
		return errors.New("may not have . or .. path segments")
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return errors.New("must be https (http only to a loopback address)")
	}
	if u.String() != s {
		return errors.New("is not in its canonical form (check case, escapes and dot segments)")
	}
	return nil
}

// hostName reports whether h is an IP address or made of the characters
// of DNS names, so that a wildcard or other pattern is not mistaken for
// one (redirect URIs are matched exactly; "*" would match only itself).
func hostName(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for i := range len(h) {
		switch b := h[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '-', b == '.':
		default:
			return false
		}
	}
	return true
}

// hasDotSegment reports whether p has a "." or ".." segment, which
// clients may resolve away before sending and so never match exactly.
func hasDotSegment(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// isLoopback reports whether host is a loopback IP literal or localhost.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
