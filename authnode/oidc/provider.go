package oidc

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// Store keeps values that expire: the auth node's token store (memory, or
// Redis shared by the nodes) has this shape. Take must be atomic, across
// nodes for a shared store, for a code to redeem exactly once. Missing keys
// give store.ErrNotFound, lapsed ones store.ErrExpired.
type Store interface {
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Get(ctx context.Context, key string) ([]byte, error)
	Take(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
}

// Authenticator signs the browser's user in at /authorize, as the auth
// node's /sso does (Negotiate, the form, the cookie). It returns the user,
// having written nothing; or nil and false, having written its own answer
// (a 401 Negotiate challenge, the form, a page that says what failed).
// AuthorizationFrom(r.Context()) tells it what the relying party asked.
type Authenticator interface {
	SignIn(w http.ResponseWriter, r *http.Request) (*User, bool)
}

// SessionEnder ends the browser's sign-in at the node (its session and
// cookie) at RP-initiated logout. It may set headers (a cookie) but
// writes no body: the provider answers.
type SessionEnder interface {
	EndSession(w http.ResponseWriter, r *http.Request) error
}

// Options carry what a Provider gets from the auth node rather than from
// its configuration.
type Options struct {
	// Store keeps codes, access and refresh tokens, the records of
	// redeemed codes and rotated refresh tokens, and the jti of each
	// client assertion. Required.
	Store Store
	// Keys keeps the generated key set shared by the nodes. Required
	// unless Config.SigningKeys is set.
	Keys KeyStore
	// Authenticator signs users in. Required.
	Authenticator Authenticator
	// Sessions ends the node's sign-in session at logout; nil: there is
	// none to end.
	Sessions SessionEnder
	// Confirm re-checks the user in the directory at each refresh: it
	// finds the account of u.SID and returns it as it is now, or an error
	// when it may no longer sign in (disabled, expired, locked out,
	// deleted), or cannot be checked. u holds what the grant knows: SID
	// and AuthTime always, names, mail and groups as the granted scopes
	// carried them. Any error refuses the refresh (invalid_grant) and
	// revokes the sign-in's tokens, as does a returned user outside the
	// client's RequiredGroup; the claims of the refreshed tokens are made
	// from the returned user. Required when a client has RefreshTokens:
	// a refresh that checks nothing would keep a disabled account signed
	// in for up to RefreshTokenTTL.
	Confirm func(ctx context.Context, u *User) (*User, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the provider's log lines; nil means slog.Default().
	Logger *slog.Logger
}

// Paths of the endpoints, under the issuer's path. Handler routes them;
// a host that routes itself mounts each handler at the issuer's path plus
// its Path constant, since discovery announces them there. The end-session
// endpoint is not /logout, which the auth node's redeem API has.
const (
	PathDiscovery = "/.well-known/openid-configuration"
	PathJWKS      = "/jwks"
	PathAuthorize = "/authorize"
	PathToken     = "/token"
	PathUserInfo  = "/userinfo"
	PathLogout    = "/end_session"
)

// Provider is the OpenID Connect provider of one auth node. Every node
// configured alike, on the same Store and KeyStore, answers the same: a
// code issued by one redeems at any other, and all publish the same keys.
// It is safe for concurrent use.
type Provider struct {
	cfg      Config
	base     string // the issuer's path, without a trailing slash
	clients  map[string]*client
	store    Store
	auth     Authenticator
	sessions SessionEnder
	confirm  func(ctx context.Context, u *User) (*User, error)
	now      func() time.Time
	log      *slog.Logger

	static *keySet   // keys from files; nil when generated
	ring   *keyRing  // generated keys; nil with static
	timing keyTiming // of ring
}

// client is a registered Client with its secret hashed, so that a compare
// takes the same time whatever the length of what is sent.
type client struct {
	Client
	secretHash [sha256.Size]byte
}

// New checks cfg and returns a Provider. It does no I/O: keys are read (or
// generated) from the KeyStore at first use.
func New(cfg Config, opts Options) (*Provider, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	switch {
	case opts.Store == nil:
		return nil, errors.New("oidc: no store")
	case opts.Authenticator == nil:
		return nil, errors.New("oidc: no authenticator")
	case len(cfg.SigningKeys) == 0 && opts.Keys == nil:
		return nil, errors.New("oidc: neither signing keys nor a key store to generate them into")
	case opts.Confirm == nil && slices.ContainsFunc(cfg.Clients, func(c Client) bool { return c.RefreshTokens }):
		return nil, errors.New("oidc: a client has refresh tokens, but there is no Confirm to re-check the user at each refresh")
	}
	p := &Provider{
		cfg: cfg, store: opts.Store, auth: opts.Authenticator, sessions: opts.Sessions, confirm: opts.Confirm,
		now: opts.Now, log: opts.Logger, clients: map[string]*client{},
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.log = p.log.With("role", "oidc")
	u, _ := url.Parse(cfg.Issuer) // checked by validate
	p.base = u.EscapedPath()
	for i := range cfg.Clients {
		c := &client{Client: cfg.Clients[i], secretHash: sha256.Sum256([]byte(cfg.Clients[i].Secret))}
		p.clients[c.ID] = c
	}
	if len(cfg.SigningKeys) > 0 {
		var err error
		if p.static, err = staticKeySet(cfg.SigningKeys); err != nil {
			return nil, fmt.Errorf("oidc: %w", err)
		}
	} else {
		p.timing = newKeyTiming(&cfg)
		p.ring = &keyRing{ks: opts.Keys, alg: cfg.SigningAlg, timing: p.timing, now: p.now, log: p.log}
	}
	return p, nil
}

// Issuer returns the issuer URL.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// Handler serves every endpoint at the issuer's path plus its Path
// constant, and nothing else (404).
func (p *Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	for path, h := range map[string]http.Handler{
		PathDiscovery: p.Discovery(), PathJWKS: p.JWKS(), PathAuthorize: p.Authorize(),
		PathToken: p.Token(), PathUserInfo: p.UserInfo(), PathLogout: p.Logout(),
	} {
		mux.Handle(p.base+path, h)
	}
	return mux
}

// CheckKeys gets the key set, generating or rotating it when due, and
// says whether there is a key to sign with: for the node's readiness, and
// to rotate on a node that serves few sign-ins.
func (p *Provider) CheckKeys(ctx context.Context) error {
	_, err := p.keys(ctx)
	return err
}

// keys returns the key set to sign and publish with now.
func (p *Provider) keys(ctx context.Context) (*keySet, error) {
	if p.static != nil {
		return p.static, nil
	}
	return p.ring.keys(ctx)
}

// Store key spaces. The node's own tokens are bare hashes, so an OIDC code
// can never be redeemed at the node's redeem API, nor the reverse.
const (
	codeSpace   = "oidc:code:"
	usedSpace   = "oidc:used:"
	accessSpace = "oidc:at:"
)

// logID is what a log line may say of a secret: a prefix of its hash.
func logID(hash string) string { return hash[:8] }

// noStore forbids caching an answer that carries or follows a secret.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// allow answers 405 unless r's method is one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	h := w.Header()
	for _, m := range methods {
		h.Add("Allow", m)
	}
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}
