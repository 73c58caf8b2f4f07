package oidc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// errHintKeyGone means an id_token_hint names a key that is no longer
// published: it may well be ours, from long ago, so it is treated as no
// hint rather than as a forgery.
var errHintKeyGone = errors.New("signed by a key that is no longer published")

// hintAlgs are the only algorithms a token of ours can carry. Parsing
// with this list refuses alg none and the HMAC algorithms outright, so a
// public key can never be used as an HMAC secret.
var hintAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256}

// verifyIDToken checks that raw is an ID token this provider signed with a
// key it publishes, and returns the client it was issued to. Its expiry is
// not checked: OpenID Connect RP-Initiated Logout §2 lets a relying party
// send an expired ID token as the hint.
func (p *Provider) verifyIDToken(ctx context.Context, raw string) (*client, error) {
	tok, err := jwt.ParseSigned(raw, hintAlgs)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if len(tok.Headers) != 1 {
		return nil, errors.New("not one signature")
	}
	h := tok.Headers[0]
	ks, err := p.keys(ctx)
	if err != nil {
		return nil, err
	}
	key, ok := ks.lookup(h.KeyID)
	if !ok {
		return nil, errHintKeyGone
	}
	if key.Algorithm != h.Algorithm {
		return nil, fmt.Errorf("algorithm %s for a key of %s", h.Algorithm, key.Algorithm)
	}
	var c struct {
		Issuer   string       `json:"iss"`
		Audience jwt.Audience `json:"aud"`
	}
	if err := tok.Claims(key.Key, &c); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if c.Issuer != p.cfg.Issuer || len(c.Audience) != 1 {
		return nil, errors.New("not issued by this provider to one client")
	}
	cl := p.clients[c.Audience[0]]
	if cl == nil {
		return nil, errors.New("issued to a client that is no longer registered")
	}
	return cl, nil
}

// unverifiedAudience returns the registered client that raw, an ID token
// whose key is gone, names as its audience, or nil. Nothing is trusted
// from it but the choice among registered clients.
func (p *Provider) unverifiedAudience(raw string) *client {
	tok, err := jwt.ParseSigned(raw, hintAlgs)
	if err != nil {
		return nil
	}
	var c struct {
		Audience jwt.Audience `json:"aud"`
	}
	if tok.UnsafeClaimsWithoutVerification(&c) != nil || len(c.Audience) != 1 {
		return nil
	}
	return p.clients[c.Audience[0]]
}

// Logout serves the end_session_endpoint (OpenID Connect RP-Initiated
// Logout 1.0). The relying party names itself by a valid id_token_hint or
// client_id; a post_logout_redirect_uri must be one that client
// registered, exactly, or nothing is redirected. With a valid hint the
// node's session ends at once; without one, the user is asked first (a
// page that posts back here, from this origin only), so that a link on
// any site cannot sign users out. The node's session is ended by the
// SessionEnder; then the browser goes to the redirect URI, with state, or
// a page says the user is signed out.
func (p *Provider) Logout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, http.MethodGet, http.MethodPost) {
			return
		}
		noStore(w)
		q, err := requestParams(w, r, logoutParams)
		if err != nil {
			writePage(w, http.StatusBadRequest, "The sign-out request is not valid", err.Error()+".")
			return
		}
		log := p.log.With("client", r.RemoteAddr)
		var c *client
		hinted := false
		if h := q["id_token_hint"]; h != "" {
			c, err = p.verifyIDToken(r.Context(), h)
			switch {
			case errors.Is(err, errHintKeyGone):
				// Likely ours, from before a rotation: its client names
				// where the user may be sent back (a registered address,
				// so no open redirect), after the user confirms.
				c = p.unverifiedAudience(h)
				log.Info("logout", "hint", "key_gone")
			case err != nil:
				log.Info("logout", "outcome", "refused", "reason", "id_token_hint", "err", err.Error())
				writePage(w, http.StatusBadRequest, "The sign-out request is not valid", "Its id_token_hint is not a token this service issued.")
				return
			default:
				hinted = true
			}
		}
		if id := q["client_id"]; id != "" {
			switch {
			case c != nil && c.ID != id:
				writePage(w, http.StatusBadRequest, "The sign-out request is not valid", "Its client_id is not the one its id_token_hint was issued to.")
				return
			case c == nil:
				if c = p.clients[id]; c == nil {
					writePage(w, http.StatusBadRequest, "The sign-out request is not valid", "The application (client_id) is not registered with this sign-in service.")
					return
				}
			}
		}
		target := q["post_logout_redirect_uri"]
		if target != "" && (c == nil || !slices.Contains(c.PostLogoutRedirectURIs, target)) {
			log.Info("logout", "outcome", "refused", "reason", "post_logout_redirect_uri")
			writePage(w, http.StatusBadRequest, "The sign-out request is not valid",
				"The address to return to (post_logout_redirect_uri) is not one registered for the application named by client_id or id_token_hint.")
			return
		}
		confirmed := r.Method == http.MethodPost && q["confirm"] == "yes"
		if confirmed && !sameOrigin(r) {
			log.Info("logout", "outcome", "refused", "reason", "cross_origin")
			writePage(w, http.StatusForbidden, "The sign-out request is not valid", "The confirmation did not come from this service's own page.")
			return
		}
		if !hinted && !confirmed {
			writeConfirm(w, r.URL.Path, target, url.Values{
				"client_id": {q["client_id"]}, "post_logout_redirect_uri": {target}, "state": {q["state"]}, "confirm": {"yes"},
			})
			return
		}
		if p.sessions != nil {
			if err := p.sessions.EndSession(w, r); err != nil {
				log.Error("logout", "outcome", "failure", "err", err.Error())
				writePage(w, http.StatusServiceUnavailable, "Sign-out is unavailable for a moment", "The session could not be ended. Try again shortly.")
				return
			}
		}
		clientID := ""
		if c != nil {
			clientID = c.ID
		}
		log.Info("logout", "outcome", "signed_out", "client_id", clientID, "hinted", hinted)
		if target == "" {
			writePage(w, http.StatusOK, "You are signed out", "This service no longer signs you in without asking. Close the browser to end the sessions it holds with the applications.")
			return
		}
		params := url.Values{"state": {q["state"]}}
		if q["state"] == "" {
			params = url.Values{}
		}
		sep := "?"
		if u, err := url.Parse(target); err == nil && u.RawQuery != "" {
			sep = "&"
		}
		loc := target
		if len(params) > 0 {
			loc += sep + params.Encode()
		}
		w.Header().Set("Location", loc)
		w.Header().Set("Referrer-Policy", "no-referrer")
		status := http.StatusFound
		if r.Method == http.MethodPost {
			status = http.StatusSeeOther
		}
		w.WriteHeader(status)
	})
}

// sameOrigin reports whether a POST came from a page of this host: the
// browser's Sec-Fetch-Site, or its Origin, says so. A request that says
// neither (not a browser) is refused.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		return s == "same-origin"
	}
	o := r.Header.Get("Origin")
	return o != "" && o == "https://"+r.Host
}
