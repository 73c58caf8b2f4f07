package authnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/internal/clip"
	"github.com/iwalb/iwalb/authnode/store"

	"github.com/iwalb/iwalb/internal/secret"
)

// The SSO cookie: with Config.SSOSession.Enabled, a successful sign-in (by
// Kerberos or the form) also starts a sign-in session on the node, kept in
// the session store under the hash of a random secret that the browser
// holds in the cookie Config.CookieName (HttpOnly, Secure, SameSite=Lax,
// for the node's host only). A later GET of the SSO path with that cookie
// skips the exchange: the account is confirmed in the directory again
// (one search: it still exists, is enabled, and is in the required group
// by the groups of its sign-in) and a fresh one-time token goes to the
// application. The session ends after SSOSession.Lifetime from the
// sign-in, after SSOSession.Idle without a visit, or at GET /logoff.

// Defaults of SSOSessionConfig, and the sign-out page's path.
const (
	DefaultSSOSessionLifetime = 8 * time.Hour
	DefaultSSOSessionIdle     = time.Hour
	logoffPath                = "/logoff"
)

// ssoRecord is what the store keeps under an SSO cookie's hash.
type ssoRecord struct {
	Identity Identity  `json:"identity"`
	Started  time.Time `json:"started"`
}

// ssoKey is the store key of an SSO cookie's secret: apart from the
// application sessions', so that neither is ever taken for the other.
func ssoKey(cookie string) string { return "sso:" + secret.Hash(cookie) }

// startSSOSession keeps ident as a sign-in session and sets its cookie on
// w. A failure to store it is logged and the login goes on without one.
func (n *Node) startSSOSession(ctx context.Context, s *settings, w http.ResponseWriter, log *slog.Logger, ident Identity, started time.Time) {
	ttl := ssoTTL(s, started, n.now())
	if ttl <= 0 {
		return
	}
	cookie, err := secret.New()
	if err == nil {
		var b []byte
		if b, err = json.Marshal(ssoRecord{Identity: ident, Started: started}); err == nil {
			err = n.sessions.Put(ctx, ssoKey(cookie), b, ttl)
		}
	}
	if err != nil {
		log.Warn("sso session not started", "err", err.Error())
		return
	}
	n.metrics.sessions.WithLabelValues("sso_started").Inc()
	setSSOCookie(w, s, cookie, started.Add(s.cfg.SSOSession.Lifetime))
}

// ssoTTL is how long a sign-in session started at started is kept from
// now: the idle timeout, within its lifetime.
func ssoTTL(s *settings, started, now time.Time) time.Duration {
	return min(s.cfg.SSOSession.Idle, started.Add(s.cfg.SSOSession.Lifetime).Sub(now))
}

func setSSOCookie(w http.ResponseWriter, s *settings, value string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cfg.CookieName, Value: value, Path: "/", Expires: expires.UTC(),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

func clearSSOCookie(w http.ResponseWriter, s *settings) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cfg.CookieName, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// loginFromCookie signs the browser in again from its SSO cookie, when it
// has a live one. It reports whether it answered the request; false means
// there was no usable cookie and the exchange goes on as usual (an
// expired or unknown cookie is cleared on the way).
func (n *Node) loginFromCookie(s *settings, w http.ResponseWriter, r *http.Request, log *slog.Logger, start time.Time) bool {
	c, err := r.Cookie(s.cfg.CookieName)
	if err != nil || !secret.WellFormed(c.Value) {
		return false
	}
	raw, err := n.sessions.Get(r.Context(), ssoKey(c.Value))
	var rec ssoRecord
	if err == nil {
		err = json.Unmarshal(raw, &rec)
	}
	now := n.now()
	switch {
	case errors.Is(err, store.ErrNotFound):
		clearSSOCookie(w, s)
		return false
	case err != nil:
		// The store cannot say: sign in by Kerberos instead.
		log.Warn("sso cookie not checked", "err", err.Error())
		return false
	case now.Sub(rec.Started) >= s.cfg.SSOSession.Lifetime:
		_ = n.sessions.Delete(r.Context(), ssoKey(c.Value))
		clearSSOCookie(w, s)
		return false
	case !signInOf(r).cookieAllowed(rec.Started, now):
		// The relying party wants a fresher sign-in: the exchange goes
		// on, and its success replaces the session.
		return false
	}
	id := rec.Identity
	log = log.With("user", clip.String(id.SAMAccountName), "sid", id.SID, "method", "cookie")
	user, ops, err := n.lookup(r, s, directory.Principal{Name: id.SAMAccountName, Realm: id.Realm, SID: id.SID, GroupSIDs: id.GroupSIDs}, 0)
	if err != nil {
		f := classify(err)
		if f.status == http.StatusForbidden {
			// The account can no longer sign in: its session ends.
			_ = n.sessions.Delete(r.Context(), ssoKey(c.Value))
			clearSSOCookie(w, s)
		}
		n.fail(w, r, log, mechCookie, f, err, start)
		return true
	}
	ident := id
	ident.SAMAccountName, ident.UserPrincipalName = user.SAMAccountName, user.UserPrincipalName
	ident.DisplayName, ident.Mail, ident.Groups = user.DisplayName, user.Mail, user.Groups
	ident.ClientAddr = r.RemoteAddr
	token, ok := n.tokenFor(w, r, s, log, ident, mechCookie, start)
	if !ok {
		return true
	}
	// A visit keeps the session, the same record, alive for another idle
	// period.
	if err := n.sessions.Put(r.Context(), ssoKey(c.Value), raw, ssoTTL(s, rec.Started, now)); err != nil {
		log.Warn("sso session not extended", "err", err.Error())
	}
	n.metrics.sessions.WithLabelValues("sso_reused").Inc()
	// For the OIDC provider, auth_time and amr are those of the sign-in
	// that set the cookie (ident's), not this visit's.
	n.deliver(w, r, s, log, ident, token, mechCookie, start,
		"groups", len(user.Groups), "ldap_ops", ops, "signed_in", rec.Started.UTC().Format(time.RFC3339))
	return true
}

var logoffTemplate = template.Must(template.New("logoff").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Signed out</title>
<style>` + formStyle + `</style>
</head><body>
<main>
<h1>You are signed out{{with .Organisation}} of {{.}}{{end}}</h1>
<p>This server no longer signs you in without asking. Close the browser to end the other sessions it holds.</p>
{{with .Back}}<p><a href="{{.}}">Back to the application</a></p>{{end}}
</main>
</body></html>
`))

// handleLogoff ends the browser's sign-in session (GET /logoff): the
// session is deleted, the cookie cleared, and a page says so, with a link
// back to the application's site.
func (n *Node) handleLogoff(s *settings, w http.ResponseWriter, r *http.Request) {
	ended := false
	if c, err := r.Cookie(s.cfg.CookieName); err == nil && secret.WellFormed(c.Value) {
		if err := n.sessions.Delete(r.Context(), ssoKey(c.Value)); err != nil {
			s.log.Error("logoff", "err", err.Error())
			noStore(w)
			writePage(w, http.StatusServiceUnavailable, "Sign-out is unavailable for a moment",
				"The session store cannot be reached. Try again shortly.", storeReason(err))
			return
		}
		ended = true
	}
	clearSSOCookie(w, s)
	if ended {
		n.metrics.sessions.WithLabelValues("sso_ended").Inc()
		s.log.Info("logoff", "client", r.RemoteAddr)
	}
	noStore(w)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", s.formCSP)
	w.WriteHeader(http.StatusOK)
	back := fmt.Sprintf("%s://%s/", s.appURL.Scheme, s.appURL.Host)
	_ = logoffTemplate.Execute(w, struct{ Organisation, Back string }{s.cfg.Form.Organisation, back})
}
