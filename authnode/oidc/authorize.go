package oidc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/iwalb/iwalb/authnode/store"

	"github.com/iwalb/iwalb/internal/secret"
)

// AuthRequest is what a relying party asked for at /authorize, as the
// Authenticator may want it: AuthorizationFrom gives it during SignIn.
type AuthRequest struct {
	ClientID string
	// Prompt holds the prompt values other than none (which the provider
	// answers itself): with login, the node should not sign in by its
	// cookie alone.
	Prompt []string
	// MaxAge is the max_age parameter; negative when absent. A cookie
	// sign-in older than it should authenticate again.
	MaxAge    time.Duration
	LoginHint string
	// Resume is the request's parameters, encoded: a sign-in that goes on
	// in another request (the password form's POST) gives them back to
	// Provider.Resume with the user, and they are checked again there.
	Resume string
}

type authRequestKey struct{}

// AuthorizationFrom returns the authorization request being signed in
// for, when ctx is a SignIn request's.
func AuthorizationFrom(ctx context.Context) (AuthRequest, bool) {
	a, ok := ctx.Value(authRequestKey{}).(AuthRequest)
	return a, ok
}

// codeRecord is what the store keeps under a code's hash: everything the
// token request must match, and the grant it then makes.
type codeRecord struct {
	ClientID    string     `json:"client"`
	RedirectURI string     `json:"redirect"`
	Challenge   string     `json:"challenge,omitempty"`
	Nonce       string     `json:"nonce,omitempty"`
	Scopes      []string   `json:"scopes"`
	AuthTime    time.Time  `json:"authTime"`
	AMR         []string   `json:"amr,omitempty"`
	Claims      userClaims `json:"claims"`
	ExpiresAt   time.Time  `json:"expiresAt"`
}

// authError is an error answered to the relying party at its redirect URI
// (RFC 6749 §4.1.2.1); desc is fixed text, never an echo of the request.
type authError struct{ code, desc string }

// Authorize serves /authorize: the authorization code flow (OIDC Core
// §3.1.2). A request with an unknown client or a redirect_uri that is not
// exactly one it registered is refused with a page, never redirected, so
// the endpoint cannot send a browser anywhere an attacker names. Other
// errors go back to the redirect URI. A valid request is signed in by the
// Authenticator; on a user, the browser goes back with a one-time code.
func (p *Provider) Authorize() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, http.MethodGet, http.MethodPost) {
			return
		}
		noStore(w)
		q, err := requestParams(w, r, authorizeParams)
		if err != nil {
			p.log.Info("authorize", "outcome", "refused", "reason", "malformed", "err", err.Error(), "client", r.RemoteAddr)
			writePage(w, http.StatusBadRequest, "The sign-in request is not valid", err.Error()+".")
			return
		}
		p.authorize(w, r, q, nil)
	})
}

// Resume finishes an authorization request whose sign-in went on in
// another request: resume is AuthRequest.Resume, which came back through
// the browser, and user who signed in. The request is checked again, as
// at /authorize, so that a resume value changed on the way is no more
// than a new /authorize request; the browser is sent back with a code or
// an error, or shown a page.
func (p *Provider) Resume(w http.ResponseWriter, r *http.Request, resume string, user *User) {
	noStore(w)
	q, err := parseParams(resume, authorizeParams)
	if err != nil {
		p.log.Info("authorize", "outcome", "refused", "reason", "malformed", "err", err.Error(), "client", r.RemoteAddr)
		writePage(w, http.StatusBadRequest, "The sign-in request is not valid", err.Error()+".")
		return
	}
	if user == nil {
		// A caller's mistake, answered as a failed sign-in would be.
		writePage(w, http.StatusInternalServerError, "Sign-in failed", "The sign-in did not identify the user.")
		return
	}
	p.authorize(w, r, q, user)
}

// authorize serves the checked parameters q of an authorization request:
// the user signs in by the Authenticator unless given (Resume).
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request, q map[string]string, user *User) {
	c, redirect, refused := p.clientOf(q)
	if refused != nil {
		p.log.Info("authorize", "outcome", "refused", "reason", refused.reason, "client_id", clip(q["client_id"]), "client", r.RemoteAddr)
		writePage(w, http.StatusBadRequest, "The sign-in request is not valid", refused.text)
		return
	}
	log := p.log.With("client_id", c.ID, "client", r.RemoteAddr)
	fail := func(e authError) {
		log.Info("authorize", "outcome", "error", "error", e.code, "why", e.desc)
		p.redirect(w, r, redirect, url.Values{"error": {e.code}, "error_description": {e.desc}, "state": {q["state"]}})
	}
	ar, scopes, e := p.checkAuthRequest(c, q)
	if e != nil {
		fail(*e)
		return
	}
	if user == nil {
		ar.Resume = encodeParams(q)
		var ok bool
		user, ok = p.auth.SignIn(w, r.WithContext(context.WithValue(r.Context(), authRequestKey{}, ar)))
		if !ok {
			return // the Authenticator answered
		}
	}
	if user == nil || user.SID == "" {
		log.Error("authorize", "outcome", "failure", "err", "the authenticator returned a user without a SID")
		fail(authError{"server_error", "the sign-in did not identify the user"})
		return
	}
	log = log.With("sub", user.SID, "user", clip(user.SAMAccountName))
	if c.RequiredGroup != "" && !user.hasGroup(c.RequiredGroup) {
		fail(authError{"access_denied", "the user is not in the group this application requires"})
		return
	}
	code, err := secret.New()
	if err != nil {
		log.Error("authorize", "outcome", "failure", "err", err.Error())
		fail(authError{"server_error", "no code could be made"})
		return
	}
	now := p.now()
	rec := codeRecord{
		ClientID: c.ID, RedirectURI: redirect, Challenge: q["code_challenge"], Nonce: q["nonce"],
		Scopes: scopes, AuthTime: user.AuthTime.UTC().Truncate(time.Second), AMR: amr(user.Method),
		Claims: claimsFor(user, scopes, &c.Client), ExpiresAt: now.Add(p.cfg.CodeTTL).UTC(),
	}
	if rec.AuthTime.IsZero() {
		rec.AuthTime = now.UTC().Truncate(time.Second)
	}
	raw, err := json.Marshal(rec)
	if err == nil {
		err = p.store.Put(r.Context(), codeSpace+secret.Hash(code), raw, p.cfg.CodeTTL)
	}
	if err != nil {
		log.Error("authorize", "outcome", "failure", "reason", storeReason(err), "err", err.Error())
		fail(authError{"temporarily_unavailable", "the sign-in could not be recorded; try again shortly"})
		return
	}
	log.Info("authorize", "outcome", "code", "code", logID(secret.Hash(code)), "method", user.Method, "pkce", rec.Challenge != "")
	p.redirect(w, r, redirect, url.Values{"code": {code}, "state": {q["state"]}})
}

// encodeParams encodes q as a query, in a stable order.
func encodeParams(q map[string]string) string {
	v := make(url.Values, len(q))
	for k, s := range q {
		v.Set(k, s)
	}
	return v.Encode()
}

// refusal is an authorization request refused with a page: one whose
// client or redirect URI cannot be trusted with a redirect.
type refusal struct{ reason, text string }

// clientOf returns the client of an authorization request and its
// redirect URI, which must be exactly one the client registered.
func (p *Provider) clientOf(q map[string]string) (*client, string, *refusal) {
	c := p.clients[q["client_id"]]
	if c == nil {
		return nil, "", &refusal{"unknown_client", "The application (client_id) is not registered with this sign-in service."}
	}
	redirect := q["redirect_uri"]
	if !slices.Contains(c.RedirectURIs, redirect) {
		return nil, "", &refusal{"redirect_uri", "The return address (redirect_uri) is not one registered for this application. Its administrator must register the exact address."}
	}
	return c, redirect, nil
}

// CheckResume says whether resume (AuthRequest.Resume, back from the
// browser) names a registered client and one of its redirect URIs: what
// Resume checks before it redirects anywhere. A sign-in form checks it
// before it signs anyone in.
func (p *Provider) CheckResume(resume string) error {
	q, err := parseParams(resume, authorizeParams)
	if err != nil {
		return err
	}
	if _, _, r := p.clientOf(q); r != nil {
		return errors.New(r.text)
	}
	return nil
}

// checkAuthRequest checks the parameters after the client and redirect URI
// (OIDC Core §3.1.2.2) and returns what SignIn is told, and the scopes
// granted: those asked for that the client may have.
func (p *Provider) checkAuthRequest(c *client, q map[string]string) (AuthRequest, []string, *authError) {
	ar := AuthRequest{ClientID: c.ID, MaxAge: -1, LoginHint: q["login_hint"]}
	if q["response_type"] != "code" {
		return ar, nil, &authError{"unsupported_response_type", "only response_type=code is supported"}
	}
	if m := q["response_mode"]; m != "" && m != "query" {
		return ar, nil, &authError{"invalid_request", "only response_mode=query is supported"}
	}
	asked := spaceList(q["scope"])
	if !slices.Contains(asked, ScopeOpenID) {
		return ar, nil, &authError{"invalid_scope", "the scope must include openid"}
	}
	var scopes []string
	for _, s := range asked {
		if slices.Contains(c.Scopes, s) {
			scopes = append(scopes, s)
		}
	}
	challenge, method := q["code_challenge"], q["code_challenge_method"]
	switch {
	case challenge == "" && method != "":
		return ar, nil, &authError{"invalid_request", "code_challenge_method without code_challenge"}
	case challenge == "" && c.TokenAuth == AuthNone:
		return ar, nil, &authError{"invalid_request", "a public client must use PKCE (code_challenge with S256)"}
	case challenge != "" && method != "S256":
		return ar, nil, &authError{"invalid_request", "code_challenge_method must be S256 (plain is not accepted)"}
	case challenge != "" && !wellFormedChallenge(challenge):
		return ar, nil, &authError{"invalid_request", "code_challenge must be the 43-character base64url S256 of the verifier"}
	}
	prompt := spaceList(q["prompt"])
	for _, v := range prompt {
		if !slices.Contains([]string{"none", "login", "consent", "select_account"}, v) {
			return ar, nil, &authError{"invalid_request", "unknown prompt value"}
		}
	}
	if slices.Contains(prompt, "none") {
		if len(prompt) > 1 {
			return ar, nil, &authError{"invalid_request", "prompt=none with other values"}
		}
		// A sign-in without interaction cannot be promised: a browser
		// without a ticket shows the 401's page, and the form is a
		// page. So the relying party is told to ask with interaction.
		return ar, nil, &authError{"login_required", "this provider does not sign in without interaction"}
	}
	ar.Prompt = prompt
	if s := q["max_age"]; s != "" {
		n, err := strconv.ParseUint(s, 10, 31)
		if err != nil {
			return ar, nil, &authError{"invalid_request", "max_age must be a number of seconds"}
		}
		ar.MaxAge = time.Duration(n) * time.Second
	}
	return ar, scopes, nil
}

// wellFormedChallenge says whether s is base64url of a SHA-256 (RFC 7636
// §4.2 with S256).
func wellFormedChallenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// redirect sends the browser to the registered target with params (empty
// ones left out) and iss (RFC 9207) added to its query, which is kept as
// registered. A POST is answered 303, so that the browser follows with a
// GET.
func (p *Provider) redirect(w http.ResponseWriter, r *http.Request, target string, params url.Values) {
	params.Set("iss", p.cfg.Issuer)
	for k, v := range params {
		if len(v) == 0 || v[0] == "" {
			params.Del(k)
		}
	}
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
		if strings.HasSuffix(target, "?") || strings.HasSuffix(target, "&") {
			sep = ""
		}
	}
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	w.Header().Set("Location", target+sep+params.Encode())
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
}

// storeReason names a store failure for log lines.
func storeReason(err error) string {
	switch {
	case errors.Is(err, store.ErrUnavailable):
		return "store_unavailable"
	case errors.Is(err, store.ErrFull):
		return "store_full"
	}
	return "store"
}
