package oidc

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Bounds of a private_key_jwt client's registered keys. A client signs
// with one key and keeps one or two more published while it rotates;
// sixteen is far more. The document bound keeps a mistaken file (a
// certificate bundle, a log) from being read whole.
const (
	maxClientKeys     = 16
	maxClientKeyBytes = 64 << 10
	// maxClientRSABits is go-jose's bound on an RSA modulus in a JWK
	// (jose.MaxRSAModulusBits); a PEM key is held to it too, so that
	// every registered key verifies alike, and an assertion costs a
	// bounded verification.
	maxClientRSABits = 4096
)

// assertionAlgs are the algorithms a client assertion may be signed
// with, by key type: asymmetric only, so that neither alg none nor an
// HMAC keyed with a public key can pass (jwt.ParseSigned refuses any
// other alg before a key is tried).
var assertionAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA}

// ClientKeys are the public keys a private_key_jwt client signs its
// client assertions with. Make them with ParseClientKeys; the zero value
// holds none. They are not changed once made, so copies share them.
type ClientKeys struct {
	keys []clientKey
}

// clientKey is one registered public key and the algorithms it may
// verify.
type clientKey struct {
	key   any    // *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey
	kid   string // as registered; empty for a PEM key or a JWK without one
	thumb string // RFC 7638 thumbprint, base64url
	algs  []jose.SignatureAlgorithm
}

// Len returns how many keys there are.
func (k ClientKeys) Len() int { return len(k.keys) }

// KeyIDs names the keys for a log line or a configuration report: each
// one's kid, or its RFC 7638 thumbprint when it has none.
func (k ClientKeys) KeyIDs() []string {
	ids := make([]string, len(k.keys))
	for i, ck := range k.keys {
		ids[i] = ck.kid
		if ids[i] == "" {
			ids[i] = ck.thumb
		}
	}
	return ids
}

// algs returns the algorithms any of the keys may verify, in
// assertionAlgs' order.
func (k ClientKeys) algs() []jose.SignatureAlgorithm {
	var out []jose.SignatureAlgorithm
	for _, a := range assertionAlgs {
		if slices.ContainsFunc(k.keys, func(ck clientKey) bool { return slices.Contains(ck.algs, a) }) {
			out = append(out, a)
		}
	}
	return out
}

// candidates returns the keys that may have signed an assertion whose
// header names kid and alg: the key of that kid when one has it, else
// every key (a client registered by PEM cannot know a kid); of those,
// the ones alg fits.
func (k ClientKeys) candidates(kid string, alg jose.SignatureAlgorithm) []clientKey {
	pool := k.keys
	if kid != "" {
		if i := slices.IndexFunc(k.keys, func(ck clientKey) bool { return ck.kid == kid }); i >= 0 {
			pool = k.keys[i : i+1]
		}
	}
	var out []clientKey
	for _, ck := range pool {
		if slices.Contains(ck.algs, alg) {
			out = append(out, ck)
		}
	}
	return out
}

// ParseClientKeys reads the public keys of a private_key_jwt client: a
// JWKS document ({"keys": [...]}) or one or more PEM public keys
// ("PUBLIC KEY", "RSA PUBLIC KEY"). Keys are EC P-256 (ES256), EC P-384
// (ES384), RSA of 2048 to 4096 bits (RS256, PS256) or Ed25519 (EdDSA); a
// JWK's alg, when given, narrows that to the one, and its use and key_ops
// must allow signature verification. Private keys (given by mistake: the
// private key stays with the client), symmetric keys, other key types and
// sizes, a kid used twice and a key given twice are refused, each with an
// error that says which key.
func ParseClientKeys(data []byte) (ClientKeys, error) {
	if len(data) > maxClientKeyBytes {
		return ClientKeys{}, fmt.Errorf("client keys: %d bytes, at most %d", len(data), maxClientKeyBytes)
	}
	trimmed := bytes.TrimSpace(data)
	var keys []clientKey
	var err error
	switch {
	case len(trimmed) == 0:
		return ClientKeys{}, errors.New("client keys: empty: a JWKS document or PEM public keys expected")
	case trimmed[0] == '{':
		keys, err = parseJWKS(trimmed)
	default:
		keys, err = parsePEMKeys(trimmed)
	}
	if err != nil {
		return ClientKeys{}, fmt.Errorf("client keys: %w", err)
	}
	if len(keys) == 0 {
		return ClientKeys{}, errors.New("client keys: no key")
	}
	for i, a := range keys {
		for _, b := range keys[:i] {
			switch {
			case a.kid != "" && a.kid == b.kid:
				return ClientKeys{}, fmt.Errorf("client keys: kid %q is used twice: the assertion's kid must name one key", clip(a.kid))
			case a.thumb == b.thumb:
				return ClientKeys{}, fmt.Errorf("client keys: key %d is the same key as an earlier one", i+1)
			}
		}
	}
	return ClientKeys{keys: keys}, nil
}

// jwkPrivateMembers are the members of a JWK that only a private or
// symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
var jwkPrivateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"}

// parseJWKS reads a JWKS document. Each key is checked for private
// members before go-jose reads it, so that a private key is refused as
// such, whatever else is wrong with it.
func parseJWKS(doc []byte) ([]clientKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New(`JWKS: no "keys" array`)
	}
	if len(set.Keys) > maxClientKeys {
		return nil, fmt.Errorf("JWKS: %d keys, at most %d", len(set.Keys), maxClientKeys)
	}
	out := make([]clientKey, 0, len(set.Keys))
	for i, raw := range set.Keys {
		k, err := parseJWK(raw)
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d: %w", i+1, err)
		}
		out = append(out, k)
	}
	return out, nil
}

func parseJWK(raw json.RawMessage) (clientKey, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return clientKey{}, errors.New("not a JSON object")
	}
	var kty string
	_ = json.Unmarshal(members["kty"], &kty)
	if kty == "oct" {
		return clientKey{}, errors.New("a symmetric key (kty oct): client assertions are verified with the client's public key, never an HMAC secret")
	}
	for _, m := range jwkPrivateMembers {
		if _, ok := members[m]; ok {
			return clientKey{}, fmt.Errorf("a private key (it has %q): register the client's public key only; the private key stays with the client", m)
		}
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return clientKey{}, fmt.Errorf("kty %q: %w", clip(kty), err)
	}
	if !jwk.IsPublic() {
		return clientKey{}, fmt.Errorf("kty %q: not a public key of a supported type", clip(kty))
	}
	if jwk.Use != "" && jwk.Use != "sig" {
		return clientKey{}, fmt.Errorf("use %q: a key for signatures (sig) expected", clip(jwk.Use))
	}
	var ops []string
	if err := json.Unmarshal(members["key_ops"], &ops); members["key_ops"] != nil && (err != nil || !slices.Contains(ops, "verify")) {
		return clientKey{}, errors.New(`key_ops does not allow "verify"`)
	}
	k, err := newClientKey(jwk.Key)
	if err != nil {
		return clientKey{}, err
	}
	if jwk.Algorithm != "" {
		a := jose.SignatureAlgorithm(jwk.Algorithm)
		if !slices.Contains(k.algs, a) {
			return clientKey{}, fmt.Errorf("alg %q does not fit the key: %s expected", clip(jwk.Algorithm), algNames(k.algs))
		}
		k.algs = []jose.SignatureAlgorithm{a}
	}
	k.kid = jwk.KeyID
	return k, nil
}

// parsePEMKeys reads PEM public keys, one or more.
func parsePEMKeys(data []byte) ([]clientKey, error) {
	var out []clientKey
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if len(out) == maxClientKeys {
			return nil, fmt.Errorf("more than %d PEM keys", maxClientKeys)
		}
		var key any
		var err error
		switch t := block.Type; {
		case t == "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case t == "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case strings.HasSuffix(t, "PRIVATE KEY"):
			return nil, fmt.Errorf("PEM block %d is a private key (%s): register the client's public key only; the private key stays with the client", n, t)
		case t == "CERTIFICATE":
			return nil, fmt.Errorf("PEM block %d is a certificate: give its public key (openssl x509 -pubkey -noout)", n)
		default:
			return nil, fmt.Errorf("PEM block %d (%q) is not a public key", n, clip(t))
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		k, err := newClientKey(key)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		out = append(out, k)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		if len(out) == 0 {
			return nil, errors.New("neither a JWKS document nor PEM public keys")
		}
		return nil, errors.New("something other than PEM after the last key")
	}
	return out, nil
}

// newClientKey checks a public key and says which algorithms it
// verifies.
func newClientKey(key any) (clientKey, error) {
	var algs []jose.SignatureAlgorithm
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			algs = []jose.SignatureAlgorithm{jose.ES256}
		case elliptic.P384():
			algs = []jose.SignatureAlgorithm{jose.ES384}
		default:
			return clientKey{}, fmt.Errorf("EC key on %s: P-256 (ES256) or P-384 (ES384) expected", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits || bits > maxClientRSABits {
			return clientKey{}, fmt.Errorf("RSA key of %d bits: %d to %d expected", bits, minRSABits, maxClientRSABits)
		}
		algs = []jose.SignatureAlgorithm{jose.RS256, jose.PS256}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return clientKey{}, errors.New("Ed25519 key of the wrong size")
		}
		algs = []jose.SignatureAlgorithm{jose.EdDSA}
	default:
		return clientKey{}, fmt.Errorf("%T: an EC P-256 or P-384, RSA or Ed25519 public key expected", key)
	}
	tp, err := (&jose.JSONWebKey{Key: key}).Thumbprint(crypto.SHA256)
	if err != nil {
		return clientKey{}, fmt.Errorf("key thumbprint: %w", err)
	}
	return clientKey{key: key, thumb: base64.RawURLEncoding.EncodeToString(tp), algs: algs}, nil
}

// algNames lists algorithms for a message.
func algNames(algs []jose.SignatureAlgorithm) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = string(a)
	}
	return strings.Join(s, " or ")
}
