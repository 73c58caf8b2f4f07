package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/iwalb/iwalb/authnode/store"

	"github.com/iwalb/iwalb/internal/secret"
)

// Client assertions (private_key_jwt): OpenID Connect Core §9, RFC 7523
// §2.2 and §3, RFC 7521 §4.2.
const (
	// jwtBearer is the only client_assertion_type there is for a JWT.
	jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// maxAssertionBytes bounds an assertion before it is parsed: a
	// signed JWT of a handful of claims is well under 2 KiB, even with
	// an RSA-4096 signature.
	maxAssertionBytes = 8 << 10
	// maxAssertionLifetime bounds how far ahead an assertion's exp may
	// be: it is made for one request, and its jti is remembered until
	// exp, so a far exp would keep a record for nothing (or, without
	// the record, leave a long replay window).
	maxAssertionLifetime = 10 * time.Minute
	// assertionLeeway is the clock difference allowed between the
	// client and the node, on exp, nbf and iat.
	assertionLeeway = 30 * time.Second
	// maxJTI bounds the jti; it is stored only as part of a hash.
	maxJTI = 256
	// jtiSpace holds the records of used jti values, by the hash of the
	// client and the jti; see spendJTI.
	jtiSpace = "oidc:jti:"
)

// authenticateAssertion authenticates a client by its client assertion:
// a JWT it signed with its private key, with iss and sub its client_id,
// aud this token endpoint, a bounded lifetime and a jti used once. id
// is the request's client_id, which RFC 7521 §4.2 makes optional: the
// assertion's sub then names the client (and is verified like the
// rest).
func (p *Provider) authenticateAssertion(ctx context.Context, id, typ, raw string) (*client, *tokenError) {
	switch {
	case typ != jwtBearer:
		return nil, invalidRequest("client_assertion_type must be " + jwtBearer)
	case raw == "":
		return nil, invalidRequest("client_assertion is missing")
	case len(raw) > maxAssertionBytes:
		return nil, clientRefused(fmt.Sprintf("the assertion is longer than %d bytes", maxAssertionBytes))
	}
	if id == "" {
		id = unverifiedSubject(raw)
	}
	c := p.clients[id]
	switch {
	case c == nil:
		return nil, clientRefused("an assertion for an unknown client")
	case c.TokenAuth != AuthPrivateKeyJWT:
		return nil, clientRefused("an assertion from a client registered for " + c.TokenAuth)
	}
	claims, err := p.verifyAssertion(c, raw)
	if err != nil {
		return nil, clientRefused("assertion: " + err.Error())
	}
	first, err := p.spendJTI(ctx, c.ID, claims.ID, claims.Expiry.Time())
	if err != nil {
		e := *errStoreDown
		e.why = err.Error()
		return nil, &e
	}
	if !first {
		return nil, clientRefused("assertion: its jti was used before (a replay)")
	}
	return c, nil
}

// unverifiedSubject returns the sub of an assertion, unverified: only
// to choose among registered clients, whose keys then verify it.
func unverifiedSubject(raw string) string {
	tok, err := jwt.ParseSigned(raw, assertionAlgs)
	if err != nil {
		return ""
	}
	var c struct {
		Subject string `json:"sub"`
	}
	if tok.UnsafeClaimsWithoutVerification(&c) != nil {
		return ""
	}
	return c.Subject
}

// verifyAssertion checks raw's signature with c's keys and its claims,
// all but the jti's single use. Its errors say why for the log; they
// name no part of the assertion but the kid and alg.
func (p *Provider) verifyAssertion(c *client, raw string) (*jwt.Claims, error) {
	// Only the algorithms of the client's keys parse: never none, never
	// an HMAC (a public key as its secret), never one that does not fit.
	tok, err := jwt.ParseSigned(raw, c.Keys.algs())
	if err != nil {
		// Not go-jose's words: they quote the header's alg, which the
		// client chose, whole.
		return nil, errors.New("parse: not a compact JWS signed with an algorithm of the client's keys")
	}
	if len(tok.Headers) != 1 {
		return nil, errors.New("not one signature")
	}
	h := tok.Headers[0]
	alg := jose.SignatureAlgorithm(h.Algorithm)
	keys := c.Keys.candidates(h.KeyID, alg)
	if len(keys) == 0 {
		return nil, fmt.Errorf("no registered key for kid %q with alg %s", clip(h.KeyID), alg)
	}
	var payload json.RawMessage
	for _, k := range keys {
		if err = tok.Claims(k.key, &payload); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("signature (kid %q, alg %s): %w", clip(h.KeyID), alg, err)
	}
	var cl jwt.Claims
	if err := json.Unmarshal(payload, &cl); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	now := p.now()
	switch {
	case cl.Issuer != c.ID || cl.Subject != c.ID:
		return nil, errors.New("iss and sub must both be the client_id")
	case !slices.ContainsFunc(p.assertionAudiences(), cl.Audience.Contains):
		return nil, errors.New("aud does not name this token endpoint (or the issuer)")
	case cl.Expiry == nil:
		return nil, errors.New("no exp")
	case !now.Before(cl.Expiry.Time().Add(assertionLeeway)):
		return nil, errors.New("expired")
	case cl.Expiry.Time().After(now.Add(maxAssertionLifetime + assertionLeeway)):
		return nil, fmt.Errorf("exp is more than %v ahead", maxAssertionLifetime)
	case cl.NotBefore != nil && cl.NotBefore.Time().After(now.Add(assertionLeeway)):
		return nil, errors.New("not valid yet (nbf)")
	case cl.IssuedAt != nil && cl.IssuedAt.Time().After(now.Add(assertionLeeway)):
		return nil, errors.New("issued in the future (iat)")
	case cl.ID == "":
		return nil, errors.New("no jti: an assertion must be single-use")
	case len(cl.ID) > maxJTI:
		return nil, fmt.Errorf("jti longer than %d bytes", maxJTI)
	}
	return &cl, nil
}

// assertionAudiences are the aud values that name this provider: the
// token endpoint's URL, as the issuer and as discovery announces it (the
// back-channel URL), and the issuer itself (RFC 7523 §3 allows it).
func (p *Provider) assertionAudiences() []string {
	return []string{p.cfg.Issuer + PathToken, p.backchannel() + PathToken, p.cfg.Issuer}
}

// spendJTI records a verified assertion's jti as used, and reports
// whether this is its first use, at any node sharing the store.
//
// The Store has no put-if-absent, and Take needs a value put before,
// which a jti the client chose lacks; so the first use is decided by a
// splitter (Moir and Anderson, 1995) on two keys of the jti: an attempt
// writes its own mark to x, stops as a replay if y is set, sets y, and
// wins if x still holds its mark. At most one attempt ever wins: of two
// winners, the one that wrote x later did so after the other read its
// own mark back, so after the other had set y, and it would have found
// y set. An attempt that runs alone wins. Attempts that overlap may all
// lose, which refuses a replay race whole (a client never sends one
// assertion twice at once). It needs Get and Put to be atomic on each
// key, as the memory store's and Redis's are, and nothing across keys.
//
// Both keys outlive the assertion's exp (plus the leeway), after which
// the assertion is refused as expired whatever the store holds.
func (p *Provider) spendJTI(ctx context.Context, clientID, jti string, exp time.Time) (bool, error) {
	mark, err := secret.New()
	if err != nil {
		return false, err
	}
	h := secret.Hash(clientID + "\x00" + jti)
	x, y := jtiSpace+h+":x", jtiSpace+h+":y"
	ttl := exp.Add(assertionLeeway).Sub(p.now()) + time.Minute
	if err := p.store.Put(ctx, x, []byte(mark), ttl); err != nil {
		return false, fmt.Errorf("record the jti: %w", err)
	}
	switch _, err := p.store.Get(ctx, y); {
	case err == nil, errors.Is(err, store.ErrExpired):
		return false, nil
	case !errors.Is(err, store.ErrNotFound):
		return false, fmt.Errorf("read the jti's use: %w", err)
	}
	if err := p.store.Put(ctx, y, []byte{1}, ttl); err != nil {
		return false, fmt.Errorf("record the jti's use: %w", err)
	}
	v, err := p.store.Get(ctx, x)
	switch {
	case err == nil:
		return string(v) == mark, nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrExpired):
		return false, nil
	}
	return false, fmt.Errorf("read the jti: %w", err)
}
