package oidc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/iwalb/iwalb/authnode/store"

	"github.com/iwalb/iwalb/internal/secret"
)

// UserInfo serves /userinfo (OIDC Core §5.3): the claims of the grant
// whose access token is sent as a Bearer token in the Authorization
// header (RFC 6750 §2.1; not in a query or body, where it would be
// logged or cached on the way).
func (p *Provider) UserInfo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, http.MethodGet, http.MethodPost) {
			return
		}
		noStore(w)
		refuse := func(status int, code, desc string) {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error=%q, error_description=%q`, code, desc))
			writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
		}
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_request", "error_description": "a Bearer access token is required"})
			return
		}
		if !secret.WellFormed(token) {
			refuse(http.StatusUnauthorized, "invalid_token", "the access token is not valid")
			return
		}
		hash := secret.Hash(token)
		raw, err := p.store.Get(r.Context(), accessSpace+hash)
		if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrExpired) {
			p.log.Error("userinfo", "outcome", "failure", "reason", storeReason(err), "err", err.Error())
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": "the token store is unavailable"})
			return
		}
		var rec accessRecord
		if err == nil {
			err = json.Unmarshal(raw, &rec)
		}
		if err != nil || !p.now().Before(rec.ExpiresAt) {
			p.log.Info("userinfo", "outcome", "refused", "access_token", logID(hash), "client", r.RemoteAddr)
			refuse(http.StatusUnauthorized, "invalid_token", "the access token is unknown, expired or revoked")
			return
		}
		// A token of a refresh token family lives only as long as the
		// family: a revoked one (a reused refresh token, a user the
		// directory no longer confirms) revokes it.
		if rec.Family != "" {
			revoked, err := p.familyRevoked(r.Context(), rec.Family)
			if err != nil {
				p.log.Error("userinfo", "outcome", "failure", "reason", storeReason(err), "err", err.Error())
				w.Header().Set("Retry-After", "1")
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": "the token store is unavailable"})
				return
			}
			if revoked {
				p.log.Info("userinfo", "outcome", "refused", "reason", "family_revoked", "access_token", logID(hash), "client", r.RemoteAddr)
				refuse(http.StatusUnauthorized, "invalid_token", "the access token is unknown, expired or revoked")
				return
			}
		}
		writeJSON(w, http.StatusOK, rec.Claims)
	})
}
