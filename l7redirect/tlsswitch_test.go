package l7redirect

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/internal/testpki"
	"github.com/iwalb/iwalb/internal/tlspolicy"
	"github.com/iwalb/iwalb/lb"
)

// tlsConn dials the front door at addr over TLS as name with the given
// roots and ALPN protocols (none: HTTP/1.1 only).
func tlsConn(t *testing.T, addr, name string, roots *x509.CertPool, protos ...string) (*tls.Conn, error) {
	t.Helper()
	if len(protos) == 0 {
		protos = []string{"http/1.1"}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: name, NextProtos: protos})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// TestTLSSwitch: a certificate Set is served to the next TLS connection,
// while a keep-alive connection opened before keeps its certificate and
// goes on being served; a configuration without a certificate is refused
// and changes nothing; HTTP/2 and HTTP/1.1 are offered by ALPN throughout.
func TestTLSSwitch(t *testing.T) {
	n := startNode(t, "auth1")
	p := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{n})
	fd := startFrontDoor(t, Config{Name: "sso", Rules: []Rule{{Pool: p}}}, nil)
	oldLeaf := func(c *tls.Conn) string { return c.ConnectionState().PeerCertificates[0].SerialNumber.String() }

	old, err := tlsConn(t, fd.addr, "sso.example.test", fd.ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	oldSerial := oldLeaf(old)
	if got := request(t, old, false); got != 302 {
		t.Fatalf("before Set: status %d, want 302", got)
	}
	alpn := func(when string, roots *x509.CertPool) {
		t.Helper()
		for _, want := range []string{"h2", "http/1.1"} {
			c, err := tlsConn(t, fd.addr, "sso.example.test", roots, want)
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if got := c.ConnectionState().NegotiatedProtocol; got != want {
				t.Errorf("%s: a client offering only %s negotiated %q", when, want, got)
			}
			c.Close()
		}
	}
	alpn("before Set", fd.ca.Pool())

	for _, bad := range []*tls.Config{nil, {}} {
		if err := fd.certs.Set(bad, 0); !errors.Is(err, ErrNoCertificate) {
			t.Errorf("Set(%v) = %v, want ErrNoCertificate", bad, err)
		}
	}
	c, err := tlsConn(t, fd.addr, "sso.example.test", fd.ca.Pool())
	if err != nil || oldLeaf(c) != oldSerial {
		t.Fatalf("after a refused Set, a new connection did not get the old certificate: %v", err)
	}

	ca2 := testpki.NewCA(t, "iwalb l7redirect second CA")
	leaf2 := ca2.Issue(t, "sso.example.test")
	// A fresh minimum version shows that the new configuration, not only
	// its certificate, serves the handshake.
	next := &tls.Config{Certificates: []tls.Certificate{leaf2.TLS()}, MinVersion: tls.VersionTLS13}
	if err := fd.certs.Set(next, 0); err != nil {
		t.Fatal(err)
	}
	next.Certificates = nil // Set kept its own copy

	c, err = tlsConn(t, fd.addr, "sso.example.test", ca2.Pool())
	if err != nil {
		t.Fatalf("a new connection after Set does not verify against the new CA: %v", err)
	}
	if got, want := oldLeaf(c), leaf2.X509.SerialNumber.String(); got != want {
		t.Errorf("new connection: certificate serial %s, want the new %s", got, want)
	}
	if got := request(t, c, false); got != 302 {
		t.Errorf("new connection after Set: status %d, want 302", got)
	}
	if _, err := tlsConn(t, fd.addr, "sso.example.test", fd.ca.Pool()); err == nil {
		t.Error("a new connection after Set still verified against the old CA")
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	if c, err := tls.DialWithDialer(d, "tcp", fd.addr, &tls.Config{RootCAs: ca2.Pool(), ServerName: "sso.example.test", MaxVersion: tls.VersionTLS12}); err == nil {
		c.Close()
		t.Error("a TLS 1.2 client was served after Set asked for TLS 1.3")
	}

	// The connection opened before Set keeps its certificate and is served.
	for i := range 2 {
		if got := request(t, old, false); got != 302 {
			t.Fatalf("request %d after Set on the connection opened before: status %d, want 302", i+1, got)
		}
	}
	if oldLeaf(old) != oldSerial {
		t.Error("the connection opened before Set changed certificate")
	}
	alpn("after Set", ca2.Pool())
}

// TestTLSSwitchTickets: a front door resumes no TLS session unless its
// configuration turns tickets on; then sessions survive a Set (a reload),
// because the ticket keys are the switch's; turning tickets off again ends
// resumption at once.
func TestTLSSwitchTickets(t *testing.T) {
	n := startNode(t, "auth1")
	p := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{n})
	fd := startFrontDoor(t, Config{Name: "sso", Rules: []Rule{{Pool: p}}}, nil)
	leaf := fd.ca.Issue(t, "sso.example.test").TLS()
	config := func(tickets bool) *tls.Config {
		c := &tls.Config{Certificates: []tls.Certificate{leaf}}
		tlspolicy.Settings{SessionTickets: tickets}.Apply(c)
		return c
	}
	set := func(tickets bool) {
		t.Helper()
		if err := fd.certs.Set(config(tickets), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	client := func() *testkit.TLSSession {
		return testkit.NewTLSSession(fd.addr, &tls.Config{RootCAs: fd.ca.Pool(), ServerName: "sso.example.test"})
	}

	set(false)
	off := client()
	if first, second := off.Dial(t), off.Dial(t); first || second {
		t.Error("tickets off: a connection resumed a session")
	}
	set(true)
	on := client()
	if first, second := on.Dial(t), on.Dial(t); first || !second {
		t.Error("tickets on: the second connection did not resume the first's session")
	}
	set(true) // a reload with the same settings
	if !on.Dial(t) {
		t.Error("after a reload: the session was not resumed")
	}
	set(false)
	if on.Dial(t) {
		t.Error("tickets turned off: a session was still resumed")
	}
}
