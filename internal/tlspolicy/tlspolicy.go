// Package tlspolicy holds the TLS settings of iwalb's servers (the L7 front
// doors and the auth node) other than their certificates: the lowest
// version, the TLS 1.2 cipher suites, and session resumption by tickets
// with keys rotated on a schedule. The zero Settings are Mozilla's
// "intermediate" configuration as Go can serve it: TLS 1.2 and 1.3, TLS 1.2
// with ECDHE and AEAD ciphers only, and no session tickets.
package tlspolicy

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTicketKeyRotation is how often a new session ticket key is made
// when tickets are on and no rotation is set. A ticket is accepted until
// the second rotation after it was issued, so for at most twice this long.
const DefaultTicketKeyRotation = time.Hour

// Settings are a TLS server's settings besides its certificates. The zero
// value is Intermediate.
type Settings struct {
	// MinVersion is tls.VersionTLS12 or tls.VersionTLS13; 0 is TLS 1.2.
	MinVersion uint16
	// CipherSuites are the TLS 1.2 suites offered, in the server's order of
	// preference; nil is IntermediateSuites. TLS 1.3's suites are Go's
	// own and not configurable.
	CipherSuites []uint16
	// SessionTickets lets clients resume sessions (TLS 1.2 tickets and
	// TLS 1.3 pre-shared keys). Off, every connection makes a full
	// handshake, which is what keeps each session's keys its own.
	SessionTickets bool
	// TicketKeyRotation is how often the ticket key changes while tickets
	// are on; 0 is DefaultTicketKeyRotation.
	TicketKeyRotation time.Duration
}

// IntermediateSuites are Mozilla's "intermediate" TLS 1.2 suites that Go
// implements: ECDHE key exchange (forward secrecy) with AES-GCM or
// ChaCha20-Poly1305, ECDSA certificates first.
var intermediateSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// IntermediateSuites returns the TLS 1.2 suites of the zero Settings.
func IntermediateSuites() []uint16 { return slices.Clone(intermediateSuites) }

// Apply sets c's version floor, TLS 1.2 suites and ticket switch from s.
// Ticket keys are the server's own (see TicketKeys).
func (s Settings) Apply(c *tls.Config) {
	c.MinVersion = s.MinVersion
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	c.CipherSuites = slices.Clone(s.CipherSuites)
	if c.CipherSuites == nil {
		c.CipherSuites = IntermediateSuites()
	}
	c.SessionTicketsDisabled = !s.SessionTickets
}

// Rotation is s.TicketKeyRotation, or its default.
func (s Settings) Rotation() time.Duration {
	if s.TicketKeyRotation > 0 {
		return s.TicketKeyRotation
	}
	return DefaultTicketKeyRotation
}

// ParseVersion reads a configured lowest version: "1.2" or "1.3".
func ParseVersion(v string) (uint16, error) {
	switch strings.TrimPrefix(strings.ToLower(v), "tls") {
	case "1.2", "v1.2":
		return tls.VersionTLS12, nil
	case "1.3", "v1.3":
		return tls.VersionTLS13, nil
	case "1.0", "1.1", "v1.0", "v1.1":
		return 0, fmt.Errorf("TLS %s is obsolete (RFC 8996); use 1.2 or 1.3", strings.TrimPrefix(strings.ToLower(v), "tlsv"))
	}
	return 0, fmt.Errorf("%q is not a TLS version; use 1.2 or 1.3", v)
}

// ParseCipherSuite reads a TLS 1.2 suite by its IANA name, as Go spells
// it (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256). Only suites with ECDHE key
// exchange that Go considers secure are accepted. cbc says the suite is
// one of the CBC ones that Mozilla's intermediate list leaves out.
func ParseCipherSuite(name string) (id uint16, cbc bool, err error) {
	for _, cs := range tls.CipherSuites() {
		if cs.Name != name {
			continue
		}
		if !slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
			return 0, false, fmt.Errorf("%s is a TLS 1.3 suite; TLS 1.3's suites are not configurable", name)
		}
		return cs.ID, strings.Contains(name, "_CBC_"), nil
	}
	for _, cs := range tls.InsecureCipherSuites() {
		if cs.Name == name {
			return 0, false, fmt.Errorf("%s is insecure (RC4, 3DES, CBC with SHA-256, or RSA key exchange without forward secrecy)", name)
		}
	}
	return 0, false, fmt.Errorf("%q is not a TLS cipher suite name; use IANA names such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", name)
}

// TicketKeys are the session ticket keys of one TLS server, made on first
// use and rotated on a schedule: the newest key seals new tickets, and the
// one before it still opens the tickets it sealed. A server keeps its
// TicketKeys across reloads, so a reload does not end every session. It is
// safe for concurrent use.
type TicketKeys struct {
	// next is when the newest key is due for rotation (Unix ns); 0 before
	// the first key.
	next atomic.Int64
	// on is the configuration last given the keys.
	on   atomic.Pointer[tls.Config]
	mu   sync.Mutex
	keys [][32]byte // newest first; at most 2
	rand io.Reader
	now  func() time.Time
}

// NewTicketKeys returns TicketKeys that make their keys from
// crypto/rand and rotate them by the wall clock.
func NewTicketKeys() *TicketKeys {
	return newTicketKeys(rand.Reader, time.Now)
}

func newTicketKeys(r io.Reader, now func() time.Time) *TicketKeys {
	return &TicketKeys{rand: r, now: now}
}

// Refresh gives c the current keys, first making a new one when every has
// passed since the newest. Call it at each handshake with the configuration
// whose keys the handshake uses: between rotations, for the same c, it
// costs two atomic loads and a clock read.
func (k *TicketKeys) Refresh(c *tls.Config, every time.Duration) error {
	now := k.now()
	due := func() bool {
		next := k.next.Load()
		return next == 0 || now.UnixNano() >= next
	}
	if !due() && k.on.Load() == c {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !due() {
		// Another handshake rotated first, or c is new to the keys.
		if k.on.Load() != c {
			c.SetSessionTicketKeys(k.keys)
			k.on.Store(c)
		}
		return nil
	}
	var key [32]byte
	if _, err := io.ReadFull(k.rand, key[:]); err != nil {
		return fmt.Errorf("tlspolicy: make a session ticket key: %w", err)
	}
	k.keys = append([][32]byte{key}, k.keys...)
	if len(k.keys) > 2 {
		k.keys = k.keys[:2]
	}
	c.SetSessionTicketKeys(k.keys)
	k.on.Store(c)
	k.next.Store(now.Add(every).UnixNano())
	return nil
}
