package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/iwalb/iwalb/authnode/store"

	"github.com/iwalb/iwalb/internal/secret"
)

// Refresh tokens (RFC 6749 §6, OpenID Connect Core §12), for clients with
// RefreshTokens only. The refresh tokens of one sign-in are a family:
// each refresh takes the token it is given and answers a new one (with a
// new access token and ID token), and a token presented again after that
// revokes the family, since either its first use or this one is not the
// client's (OAuth 2.0 Security BCP, RFC 9700 §4.14).
//
// Revocation is a tombstone under the family's id, checked at each use of
// a refresh token and at /userinfo for each access token of the family,
// rather than the deletion of the tokens it has: a rotation in flight
// when the tombstone is written makes tokens that are refused at their
// first use, where deletion would miss them.
const (
	// refreshSpace holds refresh tokens by the hash of the token.
	refreshSpace = "oidc:rt:"
	// refreshUsedSpace remembers rotated-out tokens, by their hash,
	// until their family's end, so that a reuse is told from junk.
	refreshUsedSpace = "oidc:rtused:"
	// revokedSpace holds the tombstones of revoked families.
	revokedSpace = "oidc:rtrevoked:"
)

// refreshRecord is what the store keeps under a refresh token's hash.
type refreshRecord struct {
	ClientID string `json:"client"`
	Family   string `json:"family"`
	// Scopes are those granted at sign-in; a refresh may narrow the
	// tokens it answers, never the record (RFC 6749 §6).
	Scopes   []string  `json:"scopes"`
	AuthTime time.Time `json:"authTime"`
	AMR      []string  `json:"amr,omitempty"`
	// Claims are the user's as of the last confirmation, for Scopes.
	Claims userClaims `json:"claims"`
	// ExpiresAt is the family's end: AuthTime plus RefreshTokenTTL,
	// whatever the rotations.
	ExpiresAt time.Time `json:"expiresAt"`
}

// refreshUsedRecord remembers a rotated-out refresh token.
type refreshUsedRecord struct {
	ClientID string `json:"client"`
	Family   string `json:"family"`
}

// newFamily returns a new family id: random, not a secret (it is in
// records and, shortened, in log lines), 128 bits in hex.
func newFamily() (string, error) {
	s, err := secret.New()
	if err != nil {
		return "", err
	}
	return secret.Hash(s)[:32], nil
}

// familyID is what a log line says of a family: a prefix of its id,
// as of a hash (a record from the store is not trusted to hold one).
func familyID(f string) string { return f[:min(len(f), 8)] }

// startFamily issues the first refresh token of a sign-in redeemed by a
// code, and returns it, or "" when there is none to give: the sign-in is
// older than RefreshTokenTTL, or the token could not be stored (the
// client then signs in again when its tokens expire, rather than losing
// the tokens it was just issued).
func (p *Provider) startFamily(ctx context.Context, log *slog.Logger, c *client, family string, rec *codeRecord, now time.Time) string {
	end := rec.AuthTime.Add(p.cfg.RefreshTokenTTL)
	if !now.Before(end) {
		log.Info("token", "refresh", "none", "why", "the sign-in is older than the refresh token lifetime", "auth_time", rec.AuthTime)
		return ""
	}
	rt, err := p.putRefresh(ctx, &refreshRecord{
		ClientID: c.ID, Family: family, Scopes: rec.Scopes, AuthTime: rec.AuthTime, AMR: rec.AMR,
		Claims: rec.Claims, ExpiresAt: end.UTC(),
	}, now)
	if err != nil {
		log.Error("token", "refresh", "none", "reason", storeReason(err), "err", err.Error())
		return ""
	}
	log.Info("token", "refresh", "issued", "family", familyID(family), "refresh_token", logID(secret.Hash(rt)))
	return rt
}

// putRefresh stores a new refresh token of rec until the family's end,
// and returns it.
func (p *Provider) putRefresh(ctx context.Context, rec *refreshRecord, now time.Time) (string, error) {
	rt, err := secret.New()
	if err != nil {
		return "", err
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return "", fmt.Errorf("encode refresh record: %w", err)
	}
	if err := p.store.Put(ctx, refreshSpace+secret.Hash(rt), raw, rec.ExpiresAt.Sub(now)); err != nil {
		return "", fmt.Errorf("store refresh token: %w", err)
	}
	return rt, nil
}

// refresh serves the refresh_token grant: it checks the token, the
// client and the scope, spends the token, re-confirms the user in the
// directory, and answers a new refresh token, access token and ID token.
// A token unknown because it was rotated out, or presented by another
// client, revokes its family; so does a user the directory no longer
// confirms.
func (p *Provider) refresh(ctx context.Context, log *slog.Logger, c *client, q map[string]string) (*tokenResponse, *tokenError) {
	if !c.RefreshTokens {
		log.Info("token", "outcome", "refused", "reason", "refresh_not_allowed")
		return nil, &tokenError{status: http.StatusBadRequest, code: "unauthorized_client", desc: "this client may not use refresh tokens"}
	}
	rt := q["refresh_token"]
	if rt == "" {
		return nil, invalidRequest("refresh_token is missing")
	}
	if !secret.WellFormed(rt) {
		log.Info("token", "outcome", "refused", "reason", "malformed_refresh_token")
		return nil, invalidGrant("the refresh token is not valid")
	}
	hash := secret.Hash(rt)
	log = log.With("refresh_token", logID(hash))
	gone := invalidGrant("the refresh token is unknown, expired or revoked")
	// The token is read first and taken only once the request is known
	// to be good: a narrower scope mistyped wider must not cost the
	// client its sign-in.
	raw, err := p.store.Get(ctx, refreshSpace+hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		p.refreshReused(ctx, log, hash)
		return nil, gone
	case errors.Is(err, store.ErrExpired):
		log.Info("token", "outcome", "refused", "reason", "refresh_expired")
		return nil, gone
	case err != nil:
		log.Error("token", "outcome", "failure", "reason", storeReason(err), "err", err.Error())
		return nil, errStoreDown
	}
	var rec refreshRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		log.Error("token", "outcome", "failure", "reason", "store", "err", fmt.Errorf("decode refresh record: %w", err).Error())
		return nil, &tokenError{status: http.StatusInternalServerError, code: "server_error", desc: "the refresh token's record is unreadable"}
	}
	log = log.With("family", familyID(rec.Family), "sub", rec.Claims.Sub)
	now := p.now()
	if rec.ClientID != c.ID {
		// Another client holds this client's token: it leaked.
		log.Warn("token", "outcome", "refused", "reason", "other_client", "token_client", rec.ClientID)
		p.revokeFamily(ctx, log, rec.Family, "other_client")
		return nil, invalidGrant("the refresh token was issued to another client")
	}
	if !now.Before(rec.ExpiresAt) {
		log.Info("token", "outcome", "refused", "reason", "refresh_expired")
		return nil, gone
	}
	switch revoked, err := p.familyRevoked(ctx, rec.Family); {
	case err != nil:
		log.Error("token", "outcome", "failure", "reason", storeReason(err), "err", err.Error())
		return nil, errStoreDown
	case revoked:
		log.Info("token", "outcome", "refused", "reason", "family_revoked")
		return nil, gone
	}
	scopes, terr := narrowScopes(rec.Scopes, q["scope"])
	if terr != nil {
		log.Info("token", "outcome", "refused", "reason", terr.code, "why", terr.desc)
		return nil, terr
	}

	// Spend the token. Its use is recorded first: a request that then
	// fails to take it knows another took it meanwhile, which is a reuse
	// as much as a later one is.
	used, _ := json.Marshal(refreshUsedRecord{ClientID: c.ID, Family: rec.Family})
	if err := p.store.Put(ctx, refreshUsedSpace+hash, used, rec.ExpiresAt.Sub(now)); err != nil {
		log.Error("token", "outcome", "failure", "reason", storeReason(err), "err", fmt.Errorf("record the refresh token's use: %w", err).Error())
		return nil, errStoreDown
	}
	switch _, err := p.store.Take(ctx, refreshSpace+hash); {
	case errors.Is(err, store.ErrNotFound):
		log.Warn("token", "outcome", "refused", "reason", "refresh_reused", "why", "used twice at once")
		p.revokeFamily(ctx, log, rec.Family, "refresh_reused")
		return nil, gone
	case errors.Is(err, store.ErrExpired):
		log.Info("token", "outcome", "refused", "reason", "refresh_expired")
		return nil, gone
	case err != nil:
		log.Error("token", "outcome", "failure", "reason", storeReason(err), "err", err.Error())
		return nil, errStoreDown
	}
	// From here a failure of the provider's own puts the token back, so
	// that the client may try again; a refusal does not.
	restore := func() {
		if err := p.store.Put(ctx, refreshSpace+hash, raw, rec.ExpiresAt.Sub(now)); err != nil {
			log.Error("token", "warning", "the refresh token could not be put back after a failure", "err", err.Error())
		}
	}

	user, err := p.confirm(ctx, rec.user())
	switch {
	case err != nil:
		log.Warn("token", "outcome", "refused", "reason", "user_not_confirmed", "err", err.Error())
	case user == nil || user.SID != rec.Claims.Sub:
		err = errors.New("the directory answered another user")
		log.Error("token", "outcome", "refused", "reason", "user_not_confirmed", "err", err.Error())
	case c.RequiredGroup != "" && !user.hasGroup(c.RequiredGroup):
		err = errors.New("the user left the client's required group")
		log.Warn("token", "outcome", "refused", "reason", "required_group")
	}
	if err != nil {
		p.revokeFamily(ctx, log, rec.Family, "user_not_confirmed")
		return nil, invalidGrant("the user may no longer sign in to this application")
	}

	at, err := secret.New()
	if err != nil {
		restore()
		log.Error("token", "outcome", "failure", "err", err.Error())
		return nil, errNoToken
	}
	atHash := secret.Hash(at)
	claims := claimsFor(user, scopes, &c.Client)
	arec, _ := json.Marshal(accessRecord{ClientID: c.ID, Scopes: scopes, Claims: claims, ExpiresAt: now.Add(p.cfg.AccessTokenTTL).UTC(), Family: rec.Family})
	if err := p.store.Put(ctx, accessSpace+atHash, arec, p.cfg.AccessTokenTTL); err != nil {
		restore()
		log.Error("token", "outcome", "failure", "reason", storeReason(err), "err", err.Error())
		return nil, errStoreDown
	}
	next := rec
	next.Claims = claims
	if !slices.Equal(scopes, rec.Scopes) {
		// Narrowed for this access token: the family keeps its scopes.
		next.Claims = claimsFor(user, rec.Scopes, &c.Client)
	}
	newRT, err := p.putRefresh(ctx, &next, now)
	if err != nil {
		_ = p.store.Delete(ctx, accessSpace+atHash)
		restore()
		log.Error("token", "outcome", "failure", "reason", storeReason(err), "err", err.Error())
		return nil, errStoreDown
	}
	// auth_time and amr stay the sign-in's; there is no nonce, which
	// belongs to the authorization request (OIDC Core §12.2).
	idt, kid, err := p.signIDToken(ctx, c, &codeRecord{AuthTime: rec.AuthTime, AMR: rec.AMR, Claims: claims}, at, now)
	if err != nil {
		_ = p.store.Delete(ctx, accessSpace+atHash)
		_ = p.store.Delete(ctx, refreshSpace+secret.Hash(newRT))
		restore()
		log.Error("token", "outcome", "failure", "reason", "signing", "err", err.Error())
		return nil, errNoSignature
	}
	log.Info("token", "outcome", "refreshed", "kid", kid, "access_token", logID(atHash), "new_refresh_token", logID(secret.Hash(newRT)))
	return &tokenResponse{
		AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(p.cfg.AccessTokenTTL / time.Second),
		IDToken: idt, Scope: strings.Join(scopes, " "), RefreshToken: newRT,
	}, nil
}

// narrowScopes returns the scopes a refresh asks for: all those granted
// when it asks none, else the ones it names, which must have been
// granted and include openid (RFC 6749 §6: never wider).
func narrowScopes(granted []string, asked string) ([]string, *tokenError) {
	if asked == "" {
		return granted, nil
	}
	list := spaceList(asked)
	for _, s := range list {
		if !slices.Contains(granted, s) {
			return nil, &tokenError{status: http.StatusBadRequest, code: "invalid_scope", desc: "a refresh may narrow the scope, never widen it"}
		}
	}
	if !slices.Contains(list, ScopeOpenID) {
		return nil, &tokenError{status: http.StatusBadRequest, code: "invalid_scope", desc: "the scope must include openid"}
	}
	var out []string
	for _, s := range granted {
		if slices.Contains(list, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// user is the user as the record knows it, for Confirm: the SID and the
// sign-in always, the rest as the granted scopes carried it.
func (r *refreshRecord) user() *User {
	u := &User{
		SID: r.Claims.Sub, SAMAccountName: r.Claims.PreferredUsername, UPN: r.Claims.UPN, Email: r.Claims.Email,
		DisplayName: r.Claims.Name, Groups: slices.Clone(r.Claims.Groups), GroupSIDs: slices.Clone(r.Claims.GroupSIDs),
		AuthTime: r.AuthTime,
	}
	for _, a := range r.AMR {
		switch a {
		case "kerberos":
			u.Method = MethodKerberos
		case "pwd":
			u.Method = MethodPassword
		case "ntlm":
			u.Method = MethodNTLM
		}
	}
	return u
}

// refreshReused handles a refresh token that is not (or no longer) in
// the store: if it was rotated out, its family is revoked.
func (p *Provider) refreshReused(ctx context.Context, log *slog.Logger, hash string) {
	raw, err := p.store.Get(ctx, refreshUsedSpace+hash)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrExpired) {
			log.Error("token", "outcome", "refused", "reason", "refresh_unknown", "err", fmt.Errorf("read the refresh token's use: %w", err).Error())
			return
		}
		log.Info("token", "outcome", "refused", "reason", "refresh_unknown")
		return
	}
	var used refreshUsedRecord
	if err := json.Unmarshal(raw, &used); err != nil {
		log.Error("token", "outcome", "refused", "reason", "refresh_reused", "err", fmt.Errorf("decode the refresh token's use: %w", err).Error())
		return
	}
	log.Warn("token", "outcome", "refused", "reason", "refresh_reused", "family", familyID(used.Family), "first_client", used.ClientID)
	p.revokeFamily(ctx, log, used.Family, "refresh_reused")
}

// revokeFamily writes the tombstone of a family, for longer than any of
// its tokens can live. It is logged; a failure is too, and leaves the
// tokens valid, as nothing else can be done about it here.
func (p *Provider) revokeFamily(ctx context.Context, log *slog.Logger, family, reason string) {
	ttl := p.cfg.RefreshTokenTTL + p.cfg.AccessTokenTTL
	if err := p.store.Put(ctx, revokedSpace+family, []byte(reason), ttl); err != nil {
		log.Error("token", "revoke_family", familyID(family), "reason", reason, "err", fmt.Errorf("revoke the refresh token family: %w", err).Error())
		return
	}
	log.Warn("token", "revoke_family", familyID(family), "reason", reason)
}

// familyRevoked says whether family has a tombstone.
func (p *Provider) familyRevoked(ctx context.Context, family string) (bool, error) {
	_, err := p.store.Get(ctx, revokedSpace+family)
	switch {
	case err == nil, errors.Is(err, store.ErrExpired):
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("read the refresh token family: %w", err)
}
