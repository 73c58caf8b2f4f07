// Package secret makes and checks the bearer secrets of the auth node: the
// one-time SSO tokens, session ids, sign-in cookies, and the OIDC
// provider's codes and access tokens. A secret is 256 random bits in
// unpadded base64url; it is stored only under its SHA-256, so that a copy
// of the store (memory or Redis) holds nothing that can be redeemed.
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// Bytes is a secret's entropy: 256 bits.
const Bytes = 32

// Len is the length of a secret in unpadded base64url.
const Len = 43 // base64.RawURLEncoding.EncodedLen(Bytes)

// New returns a fresh random secret.
func New() (string, error) {
	b := make([]byte, Bytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// WellFormed reports whether s could be a secret made by New, so that junk
// is refused before it reaches the store.
func WellFormed(s string) bool {
	if len(s) != Len {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// Hash is the hex SHA-256 of a secret: what it is stored under, and (its
// first 8 characters) what log lines may name.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
