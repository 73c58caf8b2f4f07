package authnode

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/internal/tlspolicy"
)

// TestTLSSettings: the node serves Mozilla's intermediate settings by
// default (no TLS 1.1, no CBC-only client, no session resumption); a
// reload that turns tickets on lets clients resume, and their sessions
// survive the next reload.
func TestTLSSettings(t *testing.T) {
	r := newReloadNode(t, nil)
	addr := r.serve(t)
	pem, err := os.ReadFile(r.pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	client := &tls.Config{RootCAs: roots, ServerName: "auth1.example.test"}
	refused := func(what string, edit func(*tls.Config), want string) {
		t.Helper()
		c := client.Clone()
		edit(c)
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
		if err == nil {
			conn.Close()
			t.Errorf("%s: served; want refused", what)
		} else if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", what, err, want)
		}
	}
	refused("a TLS 1.1 client", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }, "protocol version")
	refused("a TLS 1.2 client offering only CBC", func(c *tls.Config) {
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
	}, "handshake failure")

	off := testkit.NewTLSSession(addr, client)
	if first, second := off.Dial(t), off.Dial(t); first || second {
		t.Error("by default: a connection resumed a session")
	}

	next := r.cfg
	next.TLS = tlspolicy.Settings{SessionTickets: true}
	r.reload(t, next)
	on := testkit.NewTLSSession(addr, client)
	if first, second := on.Dial(t), on.Dial(t); first || !second {
		t.Error("tickets on: the second connection did not resume the first's session")
	}
	next.TokenTTL = 2 * time.Minute // another reload; the ticket keys stay
	r.reload(t, next)
	if !on.Dial(t) {
		t.Error("after a reload: the session was not resumed")
	}

	next.TLS = tlspolicy.Settings{MinVersion: tls.VersionTLS13}
	r.reload(t, next)
	refused("a TLS 1.2 client after min_version 1.3", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }, "protocol version")
}
