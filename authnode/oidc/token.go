package oidc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/iwalb/iwalb/authnode/store"

	"github.com/iwalb/iwalb/internal/secret"
)

// tokenError is an error answer of the token endpoint (RFC 6749 §5.2).
type tokenError struct {
	status int
	code   string
	desc   string
	// why is for the log only: what the answer does not tell a client
	// whose authentication failed.
	why string
}

func (e *tokenError) write(w http.ResponseWriter, basic bool) {
	if e.status == http.StatusUnauthorized && basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="oidc"`)
	}
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.desc})
}

var (
	errInvalidClient = &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client authentication failed"}
	errStoreDown     = &tokenError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "the token store is unavailable; try again shortly"}
)

// clientRefused is invalid_client, with why for the log.
func clientRefused(why string) *tokenError {
	e := *errInvalidClient
	e.why = why
	return &e
}

func invalidGrant(desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: "invalid_grant", desc: desc}
}

func invalidRequest(desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: "invalid_request", desc: desc}
}

// usedRecord remembers a redeemed code until the tokens it produced have
// expired, so that a second use revokes them (RFC 6749 §4.1.2).
type usedRecord struct {
	ClientID     string   `json:"client"`
	AccessTokens []string `json:"accessTokens"` // their hashes
	// Family is the refresh token family the code started, if any.
	Family string `json:"family,omitempty"`
}

// accessRecord is what the store keeps under an access token's hash.
type accessRecord struct {
	ClientID  string     `json:"client"`
	Scopes    []string   `json:"scopes"`
	Claims    userClaims `json:"claims"`
	ExpiresAt time.Time  `json:"expiresAt"`
	// Family is the refresh token family the token was issued in, if
	// any: a revoked family revokes it too.
	Family string `json:"family,omitempty"`
}

// tokenResponse is a successful token answer (OIDC Core §3.1.3.3).
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	IDToken     string `json:"id_token"`
	Scope       string `json:"scope"`
	// RefreshToken is set for a client with RefreshTokens.
	RefreshToken string `json:"refresh_token,omitempty"`
}

// idTokenClaims are the ID token's claims (OIDC Core §2); the user's claims
// follow, flattened.
type idTokenClaims struct {
	Issuer   string   `json:"iss"`
	Audience string   `json:"aud"`
	Expiry   int64    `json:"exp"`
	IssuedAt int64    `json:"iat"`
	AuthTime int64    `json:"auth_time"`
	Nonce    string   `json:"nonce,omitempty"`
	AMR      []string `json:"amr,omitempty"`
	AtHash   string   `json:"at_hash,omitempty"`
	userClaims
}

// Token serves /token: the authorization_code grant, and the
// refresh_token grant for clients with RefreshTokens. The client
// authenticates first (a failed attempt leaves the code untouched, so a
// library that tries the header and then the body still redeems it); the
// code is then taken from the store, which ends it whatever follows: a
// code presented by another client, with another redirect URI or a wrong
// PKCE verifier is spent, and a code presented again revokes the access
// token its first use produced (and the refresh tokens it started).
func (p *Provider) Token() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, http.MethodPost) {
			return
		}
		noStore(w)
		basic := strings.HasPrefix(strings.ToLower(r.Header.Get("Authorization")), "basic ")
		q, err := requestParams(w, r, tokenParams)
		if err != nil {
			p.log.Info("token", "outcome", "refused", "reason", "malformed", "err", err.Error(), "client", r.RemoteAddr)
			invalidRequest(err.Error()).write(w, basic)
			return
		}
		c, terr := p.authenticateClient(r, q)
		if terr != nil {
			level := slog.LevelInfo
			if terr.status >= http.StatusInternalServerError {
				level = slog.LevelError
			}
			args := []any{"outcome", "refused", "reason", terr.code, "client_id", clip(q["client_id"]), "client", r.RemoteAddr}
			if terr.why != "" {
				args = append(args, "why", terr.why)
			}
			p.log.Log(r.Context(), level, "token", args...)
			terr.write(w, basic)
			return
		}
		log := p.log.With("client_id", c.ID, "client", r.RemoteAddr)
		var resp *tokenResponse
		switch q["grant_type"] {
		case "authorization_code":
			resp, terr = p.redeem(r.Context(), log, c, q)
		case "refresh_token":
			resp, terr = p.refresh(r.Context(), log, c, q)
		default:
			terr = &tokenError{status: http.StatusBadRequest, code: "unsupported_grant_type", desc: "only authorization_code and refresh_token are supported"}
		}
		if terr != nil {
			terr.write(w, false)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

// authenticateClient finds the client and checks its credentials, sent in
// exactly one way, the one it is registered for: a private_key_jwt client
// only by an assertion, any other never by one.
func (p *Provider) authenticateClient(r *http.Request, q map[string]string) (*client, *tokenError) {
	id, secret, method := q["client_id"], q["client_secret"], AuthNone
	assertion, assertionType := q["client_assertion"], q["client_assertion_type"]
	asserted := assertion != "" || assertionType != ""
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Basic") {
			return nil, invalidRequest("only Basic client authentication is accepted in the Authorization header")
		}
		if secret != "" || asserted {
			return nil, invalidRequest("the client authenticated in two ways")
		}
		hid, hsecret, ok := parseBasic(cred)
		if !ok {
			return nil, errInvalidClient
		}
		if id != "" && id != hid {
			return nil, invalidRequest("client_id differs from the Authorization header's")
		}
		id, secret, method = hid, hsecret, AuthSecretBasic
	} else if asserted {
		if secret != "" {
			return nil, invalidRequest("the client authenticated in two ways")
		}
		return p.authenticateAssertion(r.Context(), id, assertionType, assertion)
	} else if secret != "" {
		method = AuthSecretPost
	}
	c := p.clients[id]
	switch {
	case c == nil:
		return nil, clientRefused("unknown client")
	case c.TokenAuth != method:
		return nil, clientRefused("the client is registered for " + c.TokenAuth + ", not " + method)
	}
	if method != AuthNone {
		given := sha256.Sum256([]byte(secret))
		if subtle.ConstantTimeCompare(given[:], c.secretHash[:]) != 1 {
			return nil, clientRefused("wrong secret")
		}
	}
	return c, nil
}

// parseBasic reads HTTP Basic credentials whose parts are form-encoded
// (RFC 6749 §2.3.1), as OAuth libraries send them.
func parseBasic(cred string) (id, secret string, ok bool) {
	if len(cred) > 4*(maxClientID+maxSecret) {
		return "", "", false
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	rawID, rawSecret, found := strings.Cut(string(b), ":")
	if !found {
		return "", "", false
	}
	if id, err = url.QueryUnescape(rawID); err != nil {
		return "", "", false
	}
	if secret, err = url.QueryUnescape(rawSecret); err != nil {
		return "", "", false
	}
	return id, secret, id != "" && len(id) <= maxClientID && len(secret) <= maxSecret
}

// redeem exchanges a code for tokens: for a client with RefreshTokens, a
// refresh token too, which starts a family.
func (p *Provider) redeem(ctx context.Context, log *slog.Logger, c *client, q map[string]string) (*tokenResponse, *tokenError) {
	code := q["code"]
	if code == "" {
		return nil, invalidRequest("code is missing")
	}
	if !secret.WellFormed(code) {
		log.Info("token", "outcome", "refused", "reason", "malformed_code")
		return nil, invalidGrant("the code is not valid")
	}
	hash := secret.Hash(code)
	log = log.With("code", logID(hash))
	// The access token is made first, so that the record of the code's
	// use can name it before anything else can fail.
	at, err := secret.New()
	var family string
	if err == nil && c.RefreshTokens {
		family, err = newFamily()
	}
	if err != nil {
		log.Error("token", "outcome", "failure", "err", err.Error())
		return nil, errNoToken
	}
	atHash := secret.Hash(at)
	raw, err := p.store.Take(ctx, codeSpace+hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		p.revokeReused(ctx, log, hash)
		return nil, invalidGrant("the code is unknown or was already used")
	case errors.Is(err, store.ErrExpired):
		log.Info("token", "outcome", "refused", "reason", "code_expired")
		return nil, invalidGrant("the code has expired")
	case err != nil:
		log.Error("token", "outcome", "failure", "reason", storeReason(err), "err", err.Error())
		return nil, errStoreDown
	}
	// From here the code is spent. Its use is recorded at once, for as
	// long as the access token (or the refresh tokens) can live, so that
	// a replay revokes them.
	used, _ := json.Marshal(usedRecord{ClientID: c.ID, AccessTokens: []string{atHash}, Family: family})
	usedTTL := p.cfg.AccessTokenTTL
	if family != "" {
		usedTTL = max(usedTTL, p.cfg.RefreshTokenTTL)
	}
	if err := p.store.Put(ctx, usedSpace+hash, used, usedTTL+p.cfg.CodeTTL); err != nil {
		log.Warn("token", "warning", "the code's use could not be recorded: a replay will not revoke its tokens", "err", err.Error())
	}
	var rec codeRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		log.Error("token", "outcome", "failure", "reason", "store", "err", fmt.Errorf("decode code record: %w", err).Error())
		return nil, &tokenError{status: http.StatusInternalServerError, code: "server_error", desc: "the code's record is unreadable"}
	}
	now := p.now()
	switch {
	case !now.Before(rec.ExpiresAt):
		log.Info("token", "outcome", "refused", "reason", "code_expired")
		return nil, invalidGrant("the code has expired")
	case rec.ClientID != c.ID:
		log.Warn("token", "outcome", "refused", "reason", "other_client", "code_client", rec.ClientID)
		return nil, invalidGrant("the code was issued to another client")
	case q["redirect_uri"] != rec.RedirectURI:
		log.Info("token", "outcome", "refused", "reason", "redirect_uri")
		return nil, invalidGrant("redirect_uri is not the one the code was issued for")
	}
	if terr := checkVerifier(rec.Challenge, q["code_verifier"]); terr != nil {
		log.Info("token", "outcome", "refused", "reason", "pkce", "why", terr.desc)
		return nil, terr
	}
	arec, _ := json.Marshal(accessRecord{ClientID: c.ID, Scopes: rec.Scopes, Claims: rec.Claims, ExpiresAt: now.Add(p.cfg.AccessTokenTTL).UTC(), Family: family})
	if err := p.store.Put(ctx, accessSpace+atHash, arec, p.cfg.AccessTokenTTL); err != nil {
		log.Error("token", "outcome", "failure", "reason", storeReason(err), "err", err.Error())
		return nil, errStoreDown
	}
	idt, kid, err := p.signIDToken(ctx, c, &rec, at, now)
	if err != nil {
		_ = p.store.Delete(ctx, accessSpace+atHash)
		log.Error("token", "outcome", "failure", "reason", "signing", "err", err.Error())
		return nil, errNoSignature
	}
	var rt string
	if family != "" {
		rt = p.startFamily(ctx, log, c, family, &rec, now)
	}
	log.Info("token", "outcome", "issued", "sub", rec.Claims.Sub, "kid", kid, "access_token", logID(atHash), "refresh", rt != "")
	return &tokenResponse{
		AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(p.cfg.AccessTokenTTL / time.Second),
		IDToken: idt, Scope: strings.Join(rec.Scopes, " "), RefreshToken: rt,
	}, nil
}

var (
	errNoToken     = &tokenError{status: http.StatusInternalServerError, code: "server_error", desc: "no token could be made"}
	errNoSignature = &tokenError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "the ID token could not be signed; try again shortly"}
)

// revokeReused handles a code that is not (or no longer) in the store: if
// it was redeemed, the access tokens it produced are deleted, since
// either the first use or this one is not the client's own.
func (p *Provider) revokeReused(ctx context.Context, log *slog.Logger, hash string) {
	raw, err := p.store.Get(ctx, usedSpace+hash)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrExpired) {
			log.Error("token", "outcome", "refused", "reason", "code_unknown", "err", fmt.Errorf("read the code's use: %w", err).Error())
			return
		}
		log.Info("token", "outcome", "refused", "reason", "code_unknown")
		return
	}
	var used usedRecord
	if err := json.Unmarshal(raw, &used); err != nil {
		log.Error("token", "outcome", "refused", "reason", "code_reused", "err", fmt.Errorf("decode the code's use: %w", err).Error())
		return
	}
	if used.Family != "" {
		p.revokeFamily(ctx, log, used.Family, "code_reused")
	}
	revoked := 0
	for _, h := range used.AccessTokens {
		if err := p.store.Delete(ctx, accessSpace+h); err != nil {
			log.Error("token", "reason", "code_reused", "err", fmt.Errorf("revoke access token %s: %w", logID(h), err).Error())
			continue
		}
		revoked++
	}
	log.Warn("token", "outcome", "refused", "reason", "code_reused", "first_client", used.ClientID, "revoked", revoked)
}

// checkVerifier checks the PKCE verifier against the code's challenge
// (RFC 7636 §4.6, S256 only). A verifier sent for a code issued without a
// challenge is refused too: it means the authorization request lost its
// challenge on the way (a downgrade).
func checkVerifier(challenge, verifier string) *tokenError {
	switch {
	case challenge == "" && verifier == "":
		return nil
	case challenge == "":
		return invalidGrant("code_verifier sent for a code issued without code_challenge")
	case verifier == "":
		return invalidGrant("code_verifier is missing")
	case !wellFormedVerifier(verifier):
		return invalidGrant("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) != 1 {
		return invalidGrant("code_verifier does not match code_challenge")
	}
	return nil
}

// wellFormedVerifier checks RFC 7636 §4.1's code_verifier syntax.
func wellFormedVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := range len(v) {
		switch b := v[i]; {
		case 'A' <= b && b <= 'Z', 'a' <= b && b <= 'z', '0' <= b && b <= '9', b == '-', b == '.', b == '_', b == '~':
		default:
			return false
		}
	}
	return true
}

// signIDToken signs the ID token of rec for c, and names the key it used.
func (p *Provider) signIDToken(ctx context.Context, c *client, rec *codeRecord, accessToken string, now time.Time) (string, string, error) {
	ks, err := p.keys(ctx)
	if err != nil {
		return "", "", err
	}
	k := ks.signer
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.alg), Key: jose.JSONWebKey{Key: k.key, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", "", fmt.Errorf("make signer: %w", err)
	}
	// at_hash (OIDC Core §3.1.3.6): ES256 and RS256 both hash with
	// SHA-256; the left half, base64url.
	sum := sha256.Sum256([]byte(accessToken))
	claims := idTokenClaims{
		Issuer: p.cfg.Issuer, Audience: c.ID, Expiry: now.Add(p.cfg.IDTokenTTL).Unix(), IssuedAt: now.Unix(),
		AuthTime: rec.AuthTime.Unix(), Nonce: rec.Nonce, AMR: rec.AMR,
		AtHash: base64.RawURLEncoding.EncodeToString(sum[:sha256.Size/2]), userClaims: rec.Claims,
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", "", fmt.Errorf("sign ID token: %w", err)
	}
	return s, k.kid, nil
}
