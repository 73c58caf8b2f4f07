package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/iwalb/iwalb/internal/tlspolicy"
)

// rawTLSSettings are the keys of a TLS server's settings besides its
// certificates, shared by an l7redirect listener's tls and authnode.tls.
type rawTLSSettings struct {
	MinVersion        str      `yaml:"min_version"`
	CipherSuites      strList  `yaml:"cipher_suites"`
	SessionTickets    boolean  `yaml:"session_tickets"`
	TicketKeyRotation duration `yaml:"session_ticket_key_rotation"`
}

// The bounds of session_ticket_key_rotation. A ticket is good until the
// second rotation after it was issued: the upper bound keeps that within
// two days, well below the seven days clients keep tickets.
const (
	minTicketKeyRotation = time.Minute
	maxTicketKeyRotation = 24 * time.Hour
)

// tlsSettings checks the TLS settings at path (the tls mapping) and returns
// them with Mozilla "intermediate" defaults for what is not set.
func (c *checker) tlsSettings(r rawTLSSettings, p string) tlspolicy.Settings {
	var s tlspolicy.Settings
	if r.MinVersion.Set {
		v, err := tlspolicy.ParseVersion(r.MinVersion.V)
		if err != nil {
			c.add(r.MinVersion.Line, "%s.min_version: %v", p, err)
		}
		s.MinVersion = v
	}
	if l := r.CipherSuites; l.Set {
		if len(l.V) == 0 {
			c.add(l.Line, "%s.cipher_suites: lists no suite; leave the key out for the default (Mozilla intermediate)", p)
		}
		seen := map[uint16]int{}
		for _, name := range l.V {
			id, cbc, err := tlspolicy.ParseCipherSuite(name.V)
			switch {
			case err != nil:
				c.add(name.Line, "%s.cipher_suites: %v", p, err)
				continue
			case cbc:
				c.warn(name.Line, "%s.cipher_suites: %s uses CBC with SHA-1, which Mozilla's intermediate configuration leaves out; keep it only for clients that have nothing else", p, name.V)
			}
			if first, dup := seen[id]; dup {
				c.add(name.Line, "%s.cipher_suites: %s is already listed at line %d", p, name.V, first)
				continue
			}
			seen[id] = name.Line
			s.CipherSuites = append(s.CipherSuites, id)
		}
		if s.MinVersion == tls.VersionTLS13 {
			c.warn(l.Line, "%s.cipher_suites: apply to TLS 1.2 only, and min_version is 1.3, so they are never used", p)
		}
	}
	s.SessionTickets = r.SessionTickets.V
	if d := r.TicketKeyRotation; d.Set {
		s.TicketKeyRotation = d.V
		switch {
		case !r.SessionTickets.V:
			c.add(d.Line, "%s.session_ticket_key_rotation: applies only with session_tickets: true", p)
		case d.V < minTicketKeyRotation || d.V > maxTicketKeyRotation:
			c.add(d.Line, "%s.session_ticket_key_rotation: %s is out of range; use %s to %s", p, d.V, minTicketKeyRotation, maxTicketKeyRotation)
		}
	}
	return s
}

// chainOf parses a pair's certificates, the leaf first; those that do not
// parse are left out (chainProblem reports them).
func chainOf(pair tls.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, der := range pair.Certificate {
		if c, err := x509.ParseCertificate(der); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// chainProblem says what is wrong with the order of a certificate file's
// chain (the leaf first, then each certificate's issuer), or "". A file
// may hold the leaf alone: clients that lack the intermediates then fail,
// which doctor reports, but the server is not wrong to start.
func chainProblem(pair tls.Certificate) string {
	certs := make([]*x509.Certificate, 0, len(pair.Certificate))
	for _, der := range pair.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return "a certificate of the chain does not parse: " + err.Error()
		}
		certs = append(certs, cert)
	}
	for i := 0; i+1 < len(certs); i++ {
		if err := certs[i].CheckSignatureFrom(certs[i+1]); err != nil {
			return fmt.Sprintf("certificate %d of the file (%s) did not issue certificate %d (%s); list the leaf first, then each issuer in turn",
				i+2, certs[i+1].Subject.CommonName, i+1, certs[i].Subject.CommonName)
		}
	}
	return ""
}
