package l7redirect

import (
	"crypto/tls"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/iwalb/iwalb/internal/tlspolicy"
)

// ErrNoCertificate is returned for a TLS configuration that has no
// certificate to serve.
var ErrNoCertificate = errors.New("l7redirect: TLS config has no certificate")

// TLSSwitch holds a front door's current TLS configuration, so that a
// reload can replace its certificates without serving its listeners again:
// give Config to Server.Serve once, and Set a new configuration whenever
// the certificates change. A TLS connection is served by the configuration
// current when its handshake began and keeps it; only the connections that
// start later see a new one. It is safe for concurrent use.
//
// When c has session tickets on, their keys are the switch's own: made on
// first use, rotated every ticketKeyRotation (tlspolicy.TicketKeys), and
// kept across Set, so that a reload does not end the sessions clients
// hold.
type TLSSwitch struct {
	cur     atomic.Pointer[switched]
	served  *tls.Config
	tickets *tlspolicy.TicketKeys
}

// switched is a configuration in force and its ticket key rotation.
type switched struct {
	c        *tls.Config
	rotation time.Duration
}

// NewTLSSwitch returns a TLSSwitch serving c, which must have a
// certificate.
func NewTLSSwitch(c *tls.Config, ticketKeyRotation time.Duration) (*TLSSwitch, error) {
	s := &TLSSwitch{tickets: tlspolicy.NewTicketKeys()}
	if err := s.Set(c, ticketKeyRotation); err != nil {
		return nil, err
	}
	s.served = &tls.Config{
		// Whatever the configurations, the handshake is theirs: this one
		// only picks the current one.
		GetConfigForClient: s.configForClient,
	}
	return s, nil
}

// Config returns the configuration to give to Server.Serve, for every
// listener of the front door: its GetConfigForClient hands each handshake
// the configuration current at that moment.
func (s *TLSSwitch) Config() *tls.Config { return s.served }

// Set makes c, which must have a certificate, the configuration of the TLS
// connections that start from now on; connections open keep theirs. A c
// refused changes nothing. Set keeps a copy: changing c afterwards has no
// effect. ticketKeyRotation applies when c has session tickets on (0:
// tlspolicy.DefaultTicketKeyRotation).
func (s *TLSSwitch) Set(c *tls.Config, ticketKeyRotation time.Duration) error {
	if c == nil || len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil {
		return ErrNoCertificate
	}
	c = c.Clone()
	// What Server.Serve offers by ALPN for a fixed configuration (the HTTP
	// server adds them to the configuration it is given, but a
	// configuration returned by GetConfigForClient is used as it is).
	for _, p := range []string{"h2", "http/1.1"} {
		if !slices.Contains(c.NextProtos, p) {
			c.NextProtos = append(slices.Clip(c.NextProtos), p)
		}
	}
	if ticketKeyRotation <= 0 {
		ticketKeyRotation = tlspolicy.DefaultTicketKeyRotation
	}
	s.cur.Store(&switched{c: c, rotation: ticketKeyRotation})
	return nil
}

// configForClient is the GetConfigForClient of Config.
func (s *TLSSwitch) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	cur := s.cur.Load()
	c := cur.c
	if !c.SessionTicketsDisabled {
		if err := s.tickets.Refresh(c, cur.rotation); err != nil {
			return nil, err
		}
	}
	if c.GetConfigForClient != nil {
		// The TLS stack asks only the configuration it was given, not
		// the one it got from it.
		if alt, err := c.GetConfigForClient(hello); alt != nil || err != nil {
			return alt, err
		}
	}
	return c, nil
}
