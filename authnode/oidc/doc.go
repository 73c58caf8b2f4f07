// Package oidc is the auth node's OpenID Connect provider: the
// authorization code flow with PKCE (OpenID Connect Core 1.0 §3.1, RFC
// 6749, RFC 7636), discovery, JWKS, /userinfo and RP-initiated logout, so
// that any application that speaks OpenID Connect signs its users in with
// Windows sign-on. The node supplies the sign-in (Authenticator), the store
// it already has (Store: memory, or Redis shared by the nodes) and a
// KeyStore for generated keys; New does no I/O and each endpoint is a
// plain http.Handler.
//
//	p, err := oidc.New(cfg, oidc.Options{Store: tokens, Keys: keyStore, Authenticator: node})
//	mux.Handle("/", p.Handler()) // or each of p.Discovery(), p.Authorize(), ... at its Path
//
// # Flow
//
// /authorize checks the client and its exact redirect URI first and
// refuses a request that fails either with a page (never a redirect: no
// open redirector), then the other parameters (errors go back to the
// redirect URI with state and iss), then calls Authenticator.SignIn. On a
// user it stores a one-time code (256 random bits; the store holds only
// its SHA-256) bound to the client, redirect URI, PKCE challenge, nonce,
// scopes and the user's claims, and redirects with code, state and iss
// (RFC 9207). /token authenticates the client, takes the code from the
// store (atomic: it redeems once across nodes), checks client, redirect
// URI, expiry and the PKCE verifier, and answers an ID token (JWT signed
// with go-jose) and an opaque access token for /userinfo. A code used
// twice is refused and the access token of its first use deleted (and
// the refresh token family it started revoked).
//
// # Client authentication
//
// A client authenticates at /token only by the method it is registered
// for (Client.TokenAuth): client_secret_basic, client_secret_post, none
// (a public client, with PKCE), or private_key_jwt (OpenID Connect Core
// §9, RFC 7523), for which the provider holds the client's public keys
// (Client.Keys, read by ParseClientKeys from a JWKS document or PEM:
// EC P-256 and P-384, RSA 2048 to 4096 bits, Ed25519; private and
// symmetric keys are refused). Such a client sends
// client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
// and client_assertion, a JWT of at most 8 KiB that go-jose verifies:
// signed by one of its keys with an algorithm that fits the key (ES256,
// ES384, RS256, PS256, EdDSA; never none, never HMAC), iss and sub its
// client_id, aud the token endpoint's URL (as the issuer or the
// back-channel URL) or the issuer, exp required and at most 10 minutes
// ahead, nbf and iat not in the future (30 s of leeway on each), and a
// jti used once: its use is recorded in the Store until exp and
// decided by a splitter on two keys (Moir and Anderson's: of any number
// of attempts at any nodes at most one wins, with no more than per-key
// atomic Get and Put, which the Store has), so that a replayed assertion
// is refused at any node. Every failure is invalid_client (401); the log
// says why.
//
// # Refresh tokens
//
// Off by default. A client with RefreshTokens gets a refresh token
// (opaque, 256 random bits, stored as its SHA-256) with the code grant's
// tokens; the refresh_token grant (unauthorized_client for any other
// client) authenticates the client as above, checks the token is the
// client's, may narrow the scope (never widen it: invalid_scope, and the
// token is not spent), re-confirms the user in the directory
// (Options.Confirm) and checks the client's RequiredGroup again, then
// rotates: a new refresh token, access token and ID token (auth_time and
// amr of the original sign-in, claims as the directory has them now, no
// nonce), and the old refresh token is spent. The tokens of one sign-in
// are a family, which lives RefreshTokenTTL from the sign-in's auth_time
// whatever the rotations. A rotated-out token presented again (or two
// uses of one token at once), a token presented by another client, or a
// user Confirm refuses, revokes the family: a tombstone that every later
// use of its refresh tokens and access tokens (/userinfo) meets.
//
// # Claims
//
// Claims are mapped from the User (what the node read from the ticket and
// Active Directory) by this fixed table; a scope the client may not have is
// not granted, and empty values are left out.
//
//	claim               from                          scope
//	sub                 objectSid (User.SID)          openid
//	auth_time           User.AuthTime                 openid
//	amr                 User.Method (below)           openid
//	nonce, at_hash      the request, the access token openid (ID token only)
//	name                displayName                   profile
//	preferred_username  sAMAccountName                profile
//	upn                 userPrincipalName             profile
//	email               mail                          email
//	groups              group names (sAMAccountName)  groups
//	group_sids          group SIDs of the ticket      groups, with Client.GroupSIDs
//
// sub is the SID because names change and are reused; a relying party that
// keys accounts by preferred_username inherits both problems. email is
// given without email_verified: the directory's mail attribute is what an
// administrator typed, not an address anyone proved.
//
// amr: kerberos → ["kerberos"], password (the form) → ["pwd"], ntlm →
// ["ntlm"], cookie → none (the node should pass the method of the sign-in
// that set the cookie, as its session records it).
//
// # Defaults
//
// Code: 60 s (at most 10 min). ID token: 5 min: relying parties read it
// once, at sign-in. Access token: 10 min, for /userinfo at sign-in. Keys:
// ES256, generated and rotated every 30 days, each kept published 24 h
// after it stopped signing. Refresh tokens: none, unless the client has
// RefreshTokens; then 8 h from the sign-in (at most 30 days).
//
// # Keys
//
// Keys come from PEM files (Config.SigningKeys: the first signs, the rest
// are published, and the operator rotates), or are generated into the
// KeyStore, where every node reads the same set. A generated set rotates
// itself: a node that finds the current key within a quarter period (at
// most an hour) of its end adds the successor with compare-and-swap, so
// of nodes that race exactly one set is written; the successor is
// published that long before it signs, longer than any node keeps a set
// before reading it again (a quarter of that, at most a minute), so every
// node publishes a key before any token names it. A retired key stays
// published for KeyGrace after it stopped signing, then leaves the JWKS.
// Private keys are kept in the KeyStore in the clear: whoever can read it
// can sign ID tokens, so it needs the protection of the store that holds
// the codes (TLS and a password for Redis).
//
// # Not supported
//
// Implicit and hybrid flows, request objects, client_secret_jwt (an
// HMAC assertion keyed with a shared secret), token revocation and
// introspection endpoints, offline_access (refresh tokens are per client,
// and bounded by RefreshTokenTTL), prompt=none (answered login_required:
// Negotiate and the form may show a page), dynamic registration,
// pairwise subjects, CORS on /token and /userinfo.
package oidc
