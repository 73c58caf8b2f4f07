package authnode

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/iwalb/iwalb/authnode/store"

	"github.com/iwalb/iwalb/internal/secret"
)

// maxAPIBody bounds the body of API calls: they carry one secret each.
const maxAPIBody = 4 << 10

// tokenRecord is what the store keeps under a token's hash.
type tokenRecord struct {
	Identity Identity `json:"identity"`
	Node     string   `json:"node"`
}

// sessionRecord is what the store keeps under a session id's hash.
type sessionRecord struct {
	Identity  Identity  `json:"identity"`
	Client    string    `json:"client"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// issueToken stores ident under a fresh one-time token and returns the token.
func (n *Node) issueToken(ctx context.Context, s *settings, ident Identity) (string, error) {
	token, err := secret.New()
	if err != nil {
		return "", err
	}
	rec, err := marshalTokenRecord(tokenRecord{Identity: ident, Node: s.cfg.FQDN})
	if err != nil {
		return "", fmt.Errorf("encode token record: %w", err)
	}
	if err := n.tokens.Put(ctx, secret.Hash(token), rec, s.cfg.TokenTTL); err != nil {
		if errors.Is(err, store.ErrFull) {
			n.metrics.storeFull.WithLabelValues("tokens").Inc()
		}
		return "", fmt.Errorf("store token: %w", err)
	}
	n.metrics.tokensIssued.Inc()
	return token, nil
}

// redeemResponse is the answer to a successful redeem.
type redeemResponse struct {
	Identity
	Session sessionInfo `json:"session"`
}

type sessionInfo struct {
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// handleRedeem exchanges a one-time token for the user's identity and a new
// session. A token redeems exactly once, however many nodes or callers race.
func (n *Node) handleRedeem(s *settings, w http.ResponseWriter, r *http.Request) {
	client, ok := n.authenticateAPI(s, w, r)
	if !ok {
		n.metrics.redeemFailures.WithLabelValues("unauthorized").Inc()
		return
	}
	log := s.log.With("api_client", client, "client", r.RemoteAddr)
	token, err := readSecretField(w, r, "token")
	if err != nil {
		n.metrics.redeemFailures.WithLabelValues("malformed").Inc()
		log.Info("redeem", "outcome", "failure", "reason", "malformed", "err", err.Error())
		writeJSONError(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	raw, err := n.tokens.Take(r.Context(), secret.Hash(token))
	switch {
	case errors.Is(err, store.ErrExpired):
		n.metrics.redeemFailures.WithLabelValues("expired").Inc()
		log.Info("redeem", "outcome", "failure", "reason", "expired")
		writeJSONError(w, http.StatusGone, "expired", "the token has expired; send the user through sign-in again")
		return
	case errors.Is(err, store.ErrNotFound):
		n.metrics.redeemFailures.WithLabelValues("unknown").Inc()
		log.Info("redeem", "outcome", "failure", "reason", "unknown")
		writeJSONError(w, http.StatusNotFound, "unknown", "the token is unknown or was already redeemed")
		return
	case err != nil:
		reason := storeReason(err)
		n.metrics.redeemFailures.WithLabelValues(reason).Inc()
		log.Error("redeem", "outcome", "failure", "reason", reason, "err", err.Error())
		writeJSONError(w, http.StatusServiceUnavailable, reason, "the token store is unavailable; the token was not redeemed, try again shortly")
		return
	}
	var rec tokenRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		n.metrics.redeemFailures.WithLabelValues("store").Inc()
		log.Error("redeem", "outcome", "failure", "reason", "store", "err", fmt.Errorf("decode token record: %w", err).Error())
		writeJSONError(w, http.StatusInternalServerError, "store", "the token record is unreadable")
		return
	}
	sid, err := secret.New()
	if err == nil {
		sess := sessionRecord{Identity: rec.Identity, Client: client, ExpiresAt: time.Now().Add(s.cfg.SessionTTL).UTC().Truncate(time.Second)}
		var b []byte
		if b, err = json.Marshal(sess); err == nil {
			err = n.sessions.Put(r.Context(), secret.Hash(sid), b, s.cfg.SessionTTL)
		}
		if err == nil {
			n.metrics.tokensRedeemed.Inc()
			n.metrics.sessions.WithLabelValues("created").Inc()
			log.Info("redeem", "outcome", "success", "user", rec.Identity.SAMAccountName)
			writeJSON(w, http.StatusOK, redeemResponse{Identity: rec.Identity, Session: sessionInfo{ID: sid, ExpiresAt: sess.ExpiresAt}})
			return
		}
	}
	if errors.Is(err, store.ErrFull) {
		// The token is spent: the user signs in again once there is room.
		n.metrics.storeFull.WithLabelValues("sessions").Inc()
		n.metrics.redeemFailures.WithLabelValues("store_full").Inc()
		log.Warn("redeem", "outcome", "failure", "reason", "store_full", "err", err.Error())
		writeJSONError(w, http.StatusServiceUnavailable, "store_full", "the node holds as many sessions as it may; try again later")
		return
	}
	// The token is spent: the user signs in again.
	reason := storeReason(err)
	n.metrics.redeemFailures.WithLabelValues(reason).Inc()
	log.Error("redeem", "outcome", "failure", "reason", reason, "err", err.Error())
	writeJSONError(w, http.StatusServiceUnavailable, reason, "the session could not be stored; send the user through sign-in again")
}

// storeReason names a store failure for answers and metrics:
// store_unavailable when a shared store could not be reached, else store.
func storeReason(err error) string {
	if errors.Is(err, store.ErrUnavailable) {
		return "store_unavailable"
	}
	return "store"
}

// handleSessionValidate tells an application whether a session is live and
// whose it is.
func (n *Node) handleSessionValidate(s *settings, w http.ResponseWriter, r *http.Request) {
	client, ok := n.authenticateAPI(s, w, r)
	if !ok {
		return
	}
	sid, err := readSecretField(w, r, "session")
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	raw, err := n.sessions.Get(r.Context(), secret.Hash(sid))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExpired) {
		n.metrics.sessions.WithLabelValues("rejected").Inc()
		writeJSONError(w, http.StatusNotFound, "unknown", "the session is unknown, ended or expired")
		return
	}
	var rec sessionRecord
	if err == nil {
		err = json.Unmarshal(raw, &rec)
	}
	if err != nil {
		s.log.Error("session validate", "err", err.Error())
		writeJSONError(w, http.StatusServiceUnavailable, storeReason(err), "the session store is unavailable")
		return
	}
	// A session belongs to the application that redeemed its token; to any
	// other it does not exist.
	if rec.Client != client {
		n.metrics.sessions.WithLabelValues("rejected").Inc()
		writeJSONError(w, http.StatusNotFound, "unknown", "the session is unknown, ended or expired")
		return
	}
	n.metrics.sessions.WithLabelValues("validated").Inc()
	writeJSON(w, http.StatusOK, redeemResponse{Identity: rec.Identity, Session: sessionInfo{ID: sid, ExpiresAt: rec.ExpiresAt}})
}

// handleLogout ends a session: an application posts the session id (JSON),
// or a browser posts a form the application rendered. Knowing the id is
// owning the session, so no API credentials are needed to end it. The
// node's own cookie is cleared either way.
func (n *Node) handleLogout(s *settings, w http.ResponseWriter, r *http.Request) {
	// A browser's own sign-in session ends too.
	if c, err := r.Cookie(s.cfg.CookieName); err == nil && secret.WellFormed(c.Value) {
		if err := n.sessions.Delete(r.Context(), ssoKey(c.Value)); err == nil {
			n.metrics.sessions.WithLabelValues("sso_ended").Inc()
		}
	}
	clearSSOCookie(w, s)
	noStore(w)
	sid, err := readSecretField(w, r, "session")
	if err == nil {
		if derr := n.sessions.Delete(r.Context(), secret.Hash(sid)); derr != nil {
			s.log.Error("logout", "err", derr.Error())
			writeJSONError(w, http.StatusServiceUnavailable, storeReason(derr), "the session store is unavailable")
			return
		}
		n.metrics.sessions.WithLabelValues("ended").Inc()
		s.log.Info("logout", "client", r.RemoteAddr)
	}
	// Logging out of an unknown session is not an error: the outcome the
	// caller wants (no live session) holds either way.
	writeJSON(w, http.StatusOK, map[string]bool{"loggedOut": true})
}

// authenticateAPI identifies the calling application by its API key
// (Authorization: Bearer) or its verified client certificate, or answers 401.
func (n *Node) authenticateAPI(s *settings, w http.ResponseWriter, r *http.Request) (string, bool) {
	if scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		given := sha256.Sum256([]byte(strings.TrimSpace(key)))
		match := ""
		// Compare against every client so timing does not tell which
		// (or whether an early one) matched.
		for _, c := range s.apiClients {
			if subtle.ConstantTimeCompare(given[:], c.keyHash[:]) == 1 {
				match = c.name
			}
		}
		if match != "" {
			return match, true
		}
	} else if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		for _, c := range s.apiClients {
			if c.certName != "" && certNames(leaf, c.certName) {
				return c.name, true
			}
		}
	}
	s.log.Info("api auth failed", "client", r.RemoteAddr, "path", r.URL.Path)
	w.Header().Set("WWW-Authenticate", `Bearer realm="iwalb"`)
	writeJSONError(w, http.StatusUnauthorized, "unauthorized", "an API key (Authorization: Bearer) or a client certificate of a configured application is required")
	return "", false
}

// certNames reports whether cert names exactly name: its subject CN, or one
// of its DNS names compared without regard to ASCII case. Wildcards are not
// expanded (as VerifyHostname would): a certificate for *.example.test is
// not one for each application of the domain.
func certNames(cert *x509.Certificate, name string) bool {
	if cert.Subject.CommonName == name {
		return true
	}
	for _, dns := range cert.DNSNames {
		if asciiEqualFold(dns, name) {
			return true
		}
	}
	return false
}

// asciiEqualFold is strings.EqualFold for ASCII only, so that no Unicode
// folding (the Kelvin sign is a "k" to EqualFold) widens a DNS name match.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// readSecretField reads one secret from a JSON object or a form body.
func readSecretField(w http.ResponseWriter, r *http.Request, name string) (string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxAPIBody)
	var v string
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/json":
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			return "", fmt.Errorf("body is not a JSON object: %w", err)
		}
		s, ok := body[name].(string)
		if !ok {
			return "", fmt.Errorf("JSON field %q (a string) is missing", name)
		}
		v = s
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return "", fmt.Errorf("form body: %w", err)
		}
		v = r.PostForm.Get(name)
	default:
		return "", fmt.Errorf("send %q as application/json or a form", name)
	}
	if !secret.WellFormed(v) {
		return "", fmt.Errorf("%s is not well formed (%d characters of base64url expected)", name, secret.Len)
	}
	return v, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	noStore(w)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}
