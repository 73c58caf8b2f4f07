package authnode

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/oidc"
	"github.com/iwalb/iwalb/internal/secret"
)

// The OpenID Connect provider (Config.OIDC): the node mounts the endpoints
// of package oidc under the issuer's path, and signs users in at
// /authorize exactly as at the SSO path (the cookie, Negotiate, NTLM, the
// form), through the same code: only the end differs. Where /sso makes a
// one-time token and sends the browser to the application, a sign-in for
// /authorize hands the confirmed user back to the provider, which sends
// the browser to the relying party with a code. The form's POST is a
// request of its own: the form carries the authorization request
// (oidc.AuthRequest.Resume) in a hidden field, and a sign-in there ends in
// oidc.Provider.Resume, which checks that request again.

// signInFor is a sign-in done for the OIDC provider rather than for the
// application. completeLogin and loginFromCookie fill user and method
// instead of making a token; nothing is written but the headers a sign-in
// sets (the mutual-authentication token, the SSO cookie).
type signInFor struct {
	// req is what the relying party asked; its Resume is what the form
	// carries to its POST.
	req  oidc.AuthRequest
	user *oidc.User
}

type signInForKey struct{}

// signInOf returns the OIDC sign-in that r is doing, or nil for a sign-in
// to the application.
func signInOf(r *http.Request) *signInFor {
	f, _ := r.Context().Value(signInForKey{}).(*signInFor)
	return f
}

func withSignIn(r *http.Request, f *signInFor) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), signInForKey{}, f))
}

// settingsKey marks a request to the provider with the settings it is
// served with (see mountOIDC).
type settingsKey struct{}

// oidcAuthenticator is the node's oidc.Authenticator. It signs in with the
// settings the request is served with, which mountOIDC puts in its
// context: a provider outlives settings that share it (a keytab reload
// makes new settings with new keys and the same provider).
type oidcAuthenticator struct{ n *Node }

// settingsOf returns the settings r is served with.
func (n *Node) settingsOf(r *http.Request) *settings {
	if s, ok := r.Context().Value(settingsKey{}).(*settings); ok {
		return s
	}
	return n.cur.Load()
}

// SignIn signs the browser in as /sso does and returns the user; without
// one, the answer (a challenge, the form, a failure page) is written.
func (a oidcAuthenticator) SignIn(w http.ResponseWriter, r *http.Request) (*oidc.User, bool) {
	req, _ := oidc.AuthorizationFrom(r.Context())
	f := &signInFor{req: req}
	a.n.signIn(a.n.settingsOf(r), w, withSignIn(r, f))
	return f.user, f.user != nil
}

// oidcUser is the provider's view of an identity the node confirmed.
func oidcUser(id *Identity) *oidc.User {
	return &oidc.User{
		SID: id.SID, SAMAccountName: id.SAMAccountName, UPN: id.UserPrincipalName,
		Email: id.Mail, DisplayName: id.DisplayName,
		Groups: id.Groups, GroupSIDs: id.GroupSIDs,
		AuthTime: id.AuthTime, Method: id.AuthMethod,
	}
}

// cookieAllowed says whether an OIDC sign-in may be done by the SSO cookie
// of a sign-in at started: not when the relying party asked for a fresh
// sign-in (prompt=login), nor when the cookie's sign-in is older than its
// max_age. A sign-in for the application (f nil) always may.
func (f *signInFor) cookieAllowed(started, now time.Time) bool {
	if f == nil {
		return true
	}
	if slices.Contains(f.req.Prompt, "login") {
		return false
	}
	return f.req.MaxAge < 0 || now.Sub(started) <= f.req.MaxAge
}

// oidcSessions ends the node's sign-in session (the SSO cookie) at the
// provider's RP-initiated logout.
type oidcSessions struct{ n *Node }

// EndSession deletes the browser's SSO session and clears its cookie.
func (e oidcSessions) EndSession(w http.ResponseWriter, r *http.Request) error {
	s := e.n.settingsOf(r)
	if c, err := r.Cookie(s.cfg.CookieName); err == nil && secret.WellFormed(c.Value) {
		if err := e.n.sessions.Delete(r.Context(), ssoKey(c.Value)); err != nil {
			return fmt.Errorf("end the sign-in session: %w", err)
		}
		e.n.metrics.sessions.WithLabelValues("sso_ended").Inc()
	}
	clearSSOCookie(w, s)
	return nil
}

// sidResolver finds an account by its SID, with its groups as they are
// now (directory.Directory).
type sidResolver interface {
	PrincipalBySID(ctx context.Context, userSID, realm string) (directory.Principal, int, error)
}

// confirmOIDC is the provider's Confirm: at each refresh the account of
// u.SID is looked up again, by SID, with its groups as the directory has
// them now (tokenGroups, no ticket being at hand), and refused as a login
// would be (disabled, expired, locked out, renamed away, out of the
// required group). The sign-in's time and method are u's.
func (n *Node) confirmOIDC(ctx context.Context, u *oidc.User) (*oidc.User, error) {
	s, ok := ctx.Value(settingsKey{}).(*settings)
	if !ok {
		s = n.acquire()
		defer s.dir.release()
	}
	res, ok := s.dir.dir.(sidResolver)
	if !ok {
		return nil, errors.New("confirm the user: the directory cannot find accounts by SID")
	}
	ctx, cancel := context.WithTimeout(ctx, s.lookupBudget())
	defer cancel()
	start := time.Now()
	p, _, err := res.PrincipalBySID(ctx, u.SID, s.cfg.Realm)
	n.observeLDAP("principal", start, err)
	if err != nil {
		return nil, fmt.Errorf("confirm the user: %w", err)
	}
	start = time.Now()
	du, _, err := s.dir.dir.Lookup(ctx, p)
	n.observeLDAP("lookup", start, err)
	if err != nil {
		return nil, fmt.Errorf("confirm the user: %w", err)
	}
	return &oidc.User{
		SID: u.SID, SAMAccountName: du.SAMAccountName, UPN: du.UserPrincipalName,
		Email: du.Mail, DisplayName: du.DisplayName, Groups: du.Groups, GroupSIDs: du.GroupSIDs,
		AuthTime: u.AuthTime, Method: u.Method,
	}, nil
}

// newProvider makes the OIDC provider of s, on the node's token store and
// key store. Nothing is read or dialled: keys come at first use.
func (n *Node) newProvider(s *settings) (*oidc.Provider, error) {
	if s.cfg.OIDC == nil {
		return nil, nil
	}
	p, err := oidc.New(*s.cfg.OIDC, oidc.Options{
		Store: n.tokens, Keys: n.oidcKeys,
		Authenticator: oidcAuthenticator{n}, Sessions: oidcSessions{n}, Confirm: n.confirmOIDC,
		Now: n.now, Logger: s.log,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// oidcKeyStore is where the generated signing keys are kept: in Redis
// when the node's stores are, so that every node signs with and publishes
// the same keys; else in this process (a single node).
func (n *Node) oidcKeyStore() oidc.KeyStore {
	if n.redis != nil {
		return n.redis.Store("oidc")
	}
	if ks, ok := n.tokens.(oidc.KeyStore); ok {
		return ks
	}
	return oidc.NewLocalKeyStore()
}

// oidcPaths are the provider's endpoint paths for issuer, which must
// parse.
func oidcPaths(issuer string) []string {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil
	}
	base := strings.TrimSuffix(u.EscapedPath(), "/")
	var ps []string
	for _, p := range []string{oidc.PathDiscovery, oidc.PathJWKS, oidc.PathAuthorize, oidc.PathToken, oidc.PathUserInfo, oidc.PathLogout} {
		ps = append(ps, base+p)
	}
	return ps
}

// CheckOIDCPaths says whether the endpoints of an OIDC provider whose
// issuer is issuer can be served by a node whose SSO path is ssoPath:
// none may be a path of the node's own.
func CheckOIDCPaths(issuer, ssoPath string) error {
	for _, p := range oidcPaths(issuer) {
		if p == ssoPath || slices.Contains(reservedPaths, p) || strings.HasPrefix(p, "/api/") {
			return fmt.Errorf("its endpoint %s is a path of the node's own (sso_path, %s, /api/)", p, strings.Join(reservedPaths, ", "))
		}
	}
	return nil
}

// oidcEndpoints name the provider's endpoints, in the order of oidcPaths,
// for the metric label.
var oidcEndpoints = []string{"discovery", "jwks", "authorize", "token", "userinfo", "end_session"}

// mountOIDC adds the endpoints of s's provider to mux, of the routes of s:
// each request carries s to the Authenticator, and is counted by endpoint
// and status.
func (n *Node) mountOIDC(mux *http.ServeMux, s *settings) {
	ph := s.oidc.Handler()
	for i, path := range oidcPaths(s.oidc.Issuer()) {
		endpoint := oidcEndpoints[i]
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			sw := &statusWriter{ResponseWriter: w}
			ph.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), settingsKey{}, s)))
			n.metrics.oidcRequests.WithLabelValues(endpoint, strconv.Itoa(sw.status())).Inc()
		})
	}
}

// statusWriter records the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// formActions are the origins the sign-in form's answer may send the
// browser to: the application's, and each OIDC redirect URI's.
func formActions(s *settings) string {
	origins := []string{s.appURL.Scheme + "://" + s.appURL.Host}
	if s.cfg.OIDC != nil {
		for _, c := range s.cfg.OIDC.Clients {
			for _, ru := range c.RedirectURIs {
				if u, err := url.Parse(ru); err == nil && u.Host != "" {
					if o := u.Scheme + "://" + u.Host; !slices.Contains(origins, o) {
						origins = append(origins, o)
					}
				}
			}
		}
	}
	return strings.Join(origins, " ")
}
