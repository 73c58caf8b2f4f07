package oidc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/iwalb/iwalb/authnode/store"
)

// minRSABits is the smallest RSA key accepted (RFC 7518 §3.3).
const minRSABits = 2048

// SigningKey is a private key read from a file, with the algorithm it
// signs with and its key ID. Make one with ParseSigningKey.
type SigningKey struct {
	key crypto.Signer
	alg string
	kid string
}

// KeyID returns the key's kid: its RFC 7638 thumbprint, so that every node
// given the same file names it the same.
func (k SigningKey) KeyID() string { return k.kid }

// Alg returns ES256 or RS256.
func (k SigningKey) Alg() string { return k.alg }

// ParseSigningKey reads a PEM private key: EC P-256 (for ES256; "EC
// PRIVATE KEY" or PKCS #8) or RSA of at least 2048 bits (for RS256; "RSA
// PRIVATE KEY" or PKCS #8). Other curves and sizes are refused rather than
// signed with under an algorithm name that does not fit them.
func ParseSigningKey(pemBytes []byte) (SigningKey, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return SigningKey{}, errors.New("no PEM block")
	}
	if p, _ := pem.Decode(rest); p != nil {
		return SigningKey{}, errors.New("more than one PEM block: give one key per file")
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return SigningKey{}, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return SigningKey{}, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	return newSigningKey(key)
}

// newSigningKey checks key and names it.
func newSigningKey(key any) (SigningKey, error) {
	var alg string
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return SigningKey{}, fmt.Errorf("EC key on %s: ES256 needs P-256", k.Curve.Params().Name)
		}
		alg = AlgES256
	case *rsa.PrivateKey:
		if k.N.BitLen() < minRSABits {
			return SigningKey{}, fmt.Errorf("RSA key of %d bits: at least %d needed", k.N.BitLen(), minRSABits)
		}
		alg = AlgRS256
	default:
		return SigningKey{}, fmt.Errorf("%T: an EC P-256 or RSA key expected", key)
	}
	signer := key.(crypto.Signer)
	jwk := jose.JSONWebKey{Key: signer.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return SigningKey{}, fmt.Errorf("key thumbprint: %w", err)
	}
	return SigningKey{key: signer, alg: alg, kid: base64.RawURLEncoding.EncodeToString(tp)}, nil
}

// generateKey makes a new key for alg.
func generateKey(alg string) (SigningKey, error) {
	var key any
	var err error
	switch alg {
	case AlgES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgRS256:
		key, err = rsa.GenerateKey(rand.Reader, minRSABits)
	default:
		return SigningKey{}, fmt.Errorf("cannot generate a key for %q", alg)
	}
	if err != nil {
		return SigningKey{}, fmt.Errorf("generate %s key: %w", alg, err)
	}
	return newSigningKey(key)
}

// KeyStore keeps the generated key set that every node reads, signs with
// and publishes. Get is that of Store (store.ErrNotFound for a missing
// key). CompareAndSwap is what Store lacks: it stores new under key, with
// no expiry, only if the value there is still old (nil old: only if there
// is none), atomically across nodes, and says whether it did. Two nodes
// rotating at once then cannot both win and sign with different keys.
//
// A Redis implementation is one script on one key (no marker key needed):
//
//	local v = redis.call('GET', KEYS[1])
//	if (v == false and ARGV[1] == '') or v == ARGV[1] then
//	  redis.call('SET', KEYS[1], ARGV[2]) return 1
//	end
//	return 0
//
// with ARGV[1] empty for a nil old (a stored set is never empty).
type KeyStore interface {
	Get(ctx context.Context, key string) ([]byte, error)
	CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error)
}

// LocalKeyStore is a KeyStore in this process's memory: for a single node
// (the node's in-memory store), and for tests that run several providers
// on one. It is safe for concurrent use.
type LocalKeyStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewLocalKeyStore returns an empty LocalKeyStore.
func NewLocalKeyStore() *LocalKeyStore { return &LocalKeyStore{m: map[string][]byte{}} }

// Get returns the value under key, or store.ErrNotFound.
func (s *LocalKeyStore) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return nil, store.ErrNotFound
	}
	return slices.Clone(v), nil
}

// CompareAndSwap stores new under key if the value there equals old (nil:
// none).
func (s *LocalKeyStore) CompareAndSwap(_ context.Context, key string, old, new []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if old == nil && ok || old != nil && (!ok || !bytes.Equal(v, old)) {
		return false, nil
	}
	s.m[key] = slices.Clone(new)
	return true, nil
}

// keySetKey is where the generated key set is kept.
const keySetKey = "oidc:keys"

// storedKey is one generated key as the KeyStore keeps it. The private key
// is in the clear: whoever can read the store can sign tokens, as whoever
// can write it can already redeem codes (see doc.go).
type storedKey struct {
	Key jose.JSONWebKey `json:"jwk"` // private, with kid and alg
	// SignFrom is when nodes start signing with it: after it has been
	// published for keyTiming.prepublish, so that every node (and every
	// relying party that refetches) knows it before a token names it.
	SignFrom time.Time `json:"signFrom"`
	// SignUntil is when its successor takes over (zero: not yet known).
	SignUntil time.Time `json:"signUntil,omitzero"`
	// PublishUntil is SignUntil plus the grace: it leaves the JWKS then.
	PublishUntil time.Time `json:"publishUntil,omitzero"`
}

type storedKeySet struct {
	Keys []storedKey `json:"keys"`
}

// keyTiming derives the rotation's moments from the configuration.
type keyTiming struct {
	period, grace time.Duration
	// prepublish is how long a new key is published before it signs:
	// a quarter of the period, at most an hour.
	prepublish time.Duration
	// refresh is how long a node uses the key set it read: a quarter of
	// prepublish, at most maxKeyRefresh. A key is thus in every node's
	// JWKS before any node signs with it, and a node signing with a key
	// that was just retired does so for at most refresh, which the grace
	// covers.
	refresh time.Duration
}

func newKeyTiming(c *Config) keyTiming {
	t := keyTiming{period: c.KeyRotation, grace: c.KeyGrace}
	t.prepublish = min(t.period/4, time.Hour)
	t.refresh = min(t.prepublish/4, maxKeyRefresh)
	return t
}

// keySet is a key set ready to use: the key to sign with, and the public
// keys to publish and verify with.
type keySet struct {
	signer    SigningKey
	published []jose.JSONWebKey // public keys, newest first
	algs      []string          // the algorithms of published, without repeats
	jwks      []byte            // the JWKS document
	readAt    time.Time         // when it was read from the store; zero for static keys
}

// lookup returns the published public key named kid.
func (s *keySet) lookup(kid string) (jose.JSONWebKey, bool) {
	for _, k := range s.published {
		if k.KeyID == kid {
			return k, true
		}
	}
	return jose.JSONWebKey{}, false
}

// newKeySet publishes pub and signs with signer.
func newKeySet(signer SigningKey, pub []jose.JSONWebKey, readAt time.Time) (*keySet, error) {
	s := &keySet{signer: signer, published: pub, readAt: readAt}
	for _, k := range pub {
		if !slices.Contains(s.algs, k.Algorithm) {
			s.algs = append(s.algs, k.Algorithm)
		}
	}
	var err error
	if s.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: pub}); err != nil {
		return nil, fmt.Errorf("encode JWKS: %w", err)
	}
	return s, nil
}

// publicJWK is the JWK that publishes k.
func publicJWK(k SigningKey) jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
}

// staticKeySet is the key set of keys from files.
func staticKeySet(keys []SigningKey) (*keySet, error) {
	pub := make([]jose.JSONWebKey, len(keys))
	for i, k := range keys {
		pub[i] = publicJWK(k)
	}
	return newKeySet(keys[0], pub, time.Time{})
}

// keyRing reads, rotates and caches the generated key set.
type keyRing struct {
	ks     KeyStore
	alg    string
	timing keyTiming
	now    func() time.Time
	log    *slog.Logger

	// mu lets one request at a time read the store; the others use the
	// set they have meanwhile (or wait, when there is none yet).
	mu sync.Mutex
	// cur is the set in use and when the store was last asked for it.
	cur atomic.Pointer[ringState]
}

type ringState struct {
	set       *keySet
	checkedAt time.Time
}

// fresh reports whether st was asked for less than refresh before now.
func (r *keyRing) fresh(st *ringState, now time.Time) bool {
	return st != nil && now.Sub(st.checkedAt) < r.timing.refresh && !now.Before(st.checkedAt)
}

// errNoKeys means no key set could be had from the store.
var errNoKeys = errors.New("no signing keys")

// keys returns the key set to use now: the one read last, when read less
// than refresh ago; otherwise the store's, rotated first when it is due.
//
// While one request reads the store, the others go on with the set they
// have if it was read less than prepublish ago: a key that signs at t was
// stored by t-prepublish, so such a set holds every key that may sign
// now, and a node never publishes a JWKS that lacks a key another node
// signs with. An older set waits for the read.
//
// When the store fails, a set read earlier is used for up to the grace
// (its keys stay valid that long, and no node can add one meanwhile) and
// the store is asked again after refresh, so a store outage neither stops
// sign-ins that have everything else they need nor makes every request
// wait on the store.
func (r *keyRing) keys(ctx context.Context) (*keySet, error) {
	now := r.now()
	st := r.cur.Load()
	if r.fresh(st, now) {
		return st.set, nil
	}
	if age := now.Sub(st.readAt()); st != nil && age >= 0 && age < r.timing.prepublish {
		if !r.mu.TryLock() {
			return st.set, nil // another request is reading the store
		}
	} else {
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	if st = r.cur.Load(); r.fresh(st, now) {
		return st.set, nil
	}
	s, err := r.load(ctx, now)
	if err == nil {
		r.cur.Store(&ringState{set: s, checkedAt: now})
		return s, nil
	}
	if st != nil && now.Sub(st.set.readAt) < r.timing.grace {
		r.log.Warn("oidc key set not refreshed; using the one read earlier", "read_at", st.set.readAt, "err", err.Error())
		r.cur.Store(&ringState{set: st.set, checkedAt: now})
		return st.set, nil
	}
	return nil, fmt.Errorf("%w: %w", errNoKeys, err)
}

// readAt is when st's set was read; zero for none.
func (st *ringState) readAt() time.Time {
	if st == nil {
		return time.Time{}
	}
	return st.set.readAt
}

// maxCASRounds bounds the attempts to write a rotated set when other nodes
// keep writing theirs; after it the winner's set is used as read.
const maxCASRounds = 4

// load reads the key set from the store, creates or rotates it when due
// (compare-and-swap, so all nodes end with the one that was written), and
// makes it ready to use.
func (r *keyRing) load(ctx context.Context, now time.Time) (*keySet, error) {
	for round := 0; ; round++ {
		raw, err := r.ks.Get(ctx, keySetKey)
		var old []byte
		var set storedKeySet
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("read key set: %w", err)
		default:
			old = raw
			if err := json.Unmarshal(raw, &set); err != nil {
				return nil, fmt.Errorf("decode key set: %w", err)
			}
		}
		next, changed, err := r.rotate(set, now)
		if err != nil {
			return nil, err
		}
		if changed && round < maxCASRounds {
			b, err := json.Marshal(next)
			if err != nil {
				return nil, fmt.Errorf("encode key set: %w", err)
			}
			ok, err := r.ks.CompareAndSwap(ctx, keySetKey, old, b)
			if err != nil {
				return nil, fmt.Errorf("write key set: %w", err)
			}
			if !ok {
				continue // another node wrote first: read its set
			}
			newest := next.Keys[len(next.Keys)-1]
			r.log.Info("oidc key set written", "keys", len(next.Keys), "kid", newest.Key.KeyID, "signs_from", newest.SignFrom)
		} else if changed && len(set.Keys) == 0 {
			return nil, errors.New("key set: other nodes keep replacing it")
		} else if changed {
			next = set // use what is stored; rotation is retried later
		}
		return r.ready(next, now)
	}
}

// rotate returns set as it should be at now: keys past their publication
// dropped, a first key when there is none, and a successor when the
// current key's period ends within prepublish. It reports whether it
// changed anything.
func (r *keyRing) rotate(set storedKeySet, now time.Time) (storedKeySet, bool, error) {
	changed := false
	keep := set.Keys[:0:0]
	for _, k := range set.Keys {
		if !k.PublishUntil.IsZero() && !now.Before(k.PublishUntil) {
			changed = true
			continue
		}
		keep = append(keep, k)
	}
	set.Keys = keep
	// The last key is the newest: the one that signs, or will.
	if n := len(set.Keys); n == 0 || set.Keys[n-1].Key.Algorithm != r.alg {
		// None yet, or the algorithm changed: a key that signs at once.
		// (Nothing can be published ahead when nothing is published.)
		from := now
		if n > 0 {
			set.Keys[n-1].SignUntil, set.Keys[n-1].PublishUntil = now, now.Add(r.timing.grace)
		}
		k, err := r.newStored(from)
		if err != nil {
			return set, false, err
		}
		set.Keys = append(set.Keys, k)
		return set, true, nil
	}
	last := &set.Keys[len(set.Keys)-1]
	if due := last.SignFrom.Add(r.timing.period); !now.Before(due.Add(-r.timing.prepublish)) {
		// The successor signs from the end of the period, or after a
		// full prepublish when the nodes were down at that time.
		from := due
		if earliest := now.Add(r.timing.prepublish); from.Before(earliest) {
			from = earliest
		}
		k, err := r.newStored(from)
		if err != nil {
			return set, false, err
		}
		last.SignUntil, last.PublishUntil = from, from.Add(r.timing.grace)
		set.Keys = append(set.Keys, k)
		changed = true
	}
	return set, changed, nil
}

func (r *keyRing) newStored(from time.Time) (storedKey, error) {
	k, err := generateKey(r.alg)
	if err != nil {
		return storedKey{}, err
	}
	jwk := jose.JSONWebKey{Key: k.key, KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
	return storedKey{Key: jwk, SignFrom: from.UTC()}, nil
}

// ready turns a stored set into a keySet: it signs with the newest key
// whose SignFrom has come, and publishes every key it holds.
func (r *keyRing) ready(set storedKeySet, now time.Time) (*keySet, error) {
	var signer *SigningKey
	pub := make([]jose.JSONWebKey, 0, len(set.Keys))
	for i := len(set.Keys) - 1; i >= 0; i-- {
		sk := set.Keys[i]
		if !sk.PublishUntil.IsZero() && !now.Before(sk.PublishUntil) {
			continue // stale set read after a failed write: not published
		}
		k, err := newSigningKey(sk.Key.Key)
		if err != nil {
			return nil, fmt.Errorf("key set: key %s: %w", sk.Key.KeyID, err)
		}
		if k.kid != sk.Key.KeyID || k.alg != sk.Key.Algorithm {
			return nil, fmt.Errorf("key set: key %s does not match its kid or alg", sk.Key.KeyID)
		}
		pub = append(pub, publicJWK(k))
		if signer == nil && !now.Before(sk.SignFrom) {
			signer = &k
		}
		if signer == nil && i == 0 {
			// None may sign yet by this node's clock: the first key of a
			// set another node just made by a clock a little ahead. It
			// is the one to sign with.
			signer = &k
		}
	}
	if signer == nil {
		return nil, errors.New("key set: no key")
	}
	return newKeySet(*signer, pub, now)
}
