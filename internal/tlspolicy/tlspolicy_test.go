package tlspolicy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/internal/testpki"
)

// server is a loopback TLS server that answers each connection with one
// byte after the handshake (so that a TLS 1.3 client reads the session
// ticket sent with it), with cfg as its configuration.
func server(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	return testkit.ServeTCP(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if tc.Handshake() == nil {
			tc.Write([]byte("x"))
			tc.Read(make([]byte, 1)) // until the client closes
		}
	})
}

type conn struct {
	state tls.ConnectionState
	err   error
}

// dial makes one TLS connection to addr as client, reads the server's byte
// and closes it.
func dial(t *testing.T, addr string, client *tls.Config) conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, client)
	if err != nil {
		return conn{err: err}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return conn{err: err}
	}
	return conn{state: c.ConnectionState()}
}

func fixture(t *testing.T) (*testpki.Cert, *tls.Config) {
	ca := testpki.NewCA(t, "tlspolicy test CA")
	leaf := ca.Issue(t, "sso.example.test")
	return ca, &tls.Config{Certificates: []tls.Certificate{leaf.TLS()}}
}

func client(ca *testpki.Cert) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool(), ServerName: "sso.example.test"}
}

// TestIntermediate: the zero Settings serve TLS 1.3 and TLS 1.2 with AEAD
// suites, and refuse TLS 1.1 and a TLS 1.2 client that offers only CBC.
func TestIntermediate(t *testing.T) {
	ca, cfg := fixture(t)
	Settings{}.Apply(cfg)
	addr := server(t, cfg)

	if c := dial(t, addr, client(ca)); c.err != nil || c.state.Version != tls.VersionTLS13 {
		t.Errorf("default client: version %x, err %v; want TLS 1.3", c.state.Version, c.err)
	}
	c12 := client(ca)
	c12.MaxVersion = tls.VersionTLS12
	if c := dial(t, addr, c12); c.err != nil || c.state.Version != tls.VersionTLS12 ||
		!strings.Contains(tls.CipherSuiteName(c.state.CipherSuite), "GCM") {
		t.Errorf("TLS 1.2 client: version %x suite %s, err %v; want TLS 1.2 with AES-GCM", c.state.Version, tls.CipherSuiteName(c.state.CipherSuite), c.err)
	}
	c11 := client(ca)
	c11.MinVersion, c11.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if c := dial(t, addr, c11); c.err == nil || !strings.Contains(c.err.Error(), "protocol version") {
		t.Errorf("TLS 1.1 client: err %v; want a protocol version alert", c.err)
	}
	cbc := client(ca)
	cbc.MaxVersion = tls.VersionTLS12
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}
	if c := dial(t, addr, cbc); c.err == nil || !strings.Contains(c.err.Error(), "handshake failure") {
		t.Errorf("CBC-only TLS 1.2 client: err %v; want a handshake failure", c.err)
	}
}

// TestSettingsApply: configured versions and suites reach the handshake.
func TestSettingsApply(t *testing.T) {
	ca, cfg := fixture(t)
	Settings{MinVersion: tls.VersionTLS13}.Apply(cfg)
	addr := server(t, cfg)
	c12 := client(ca)
	c12.MaxVersion = tls.VersionTLS12
	if c := dial(t, addr, c12); c.err == nil {
		t.Error("min_version 1.3: a TLS 1.2 client was served")
	}

	ca, cfg = fixture(t)
	Settings{CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}.Apply(cfg)
	addr = server(t, cfg)
	c12 = client(ca)
	c12.MaxVersion = tls.VersionTLS12
	if c := dial(t, addr, c12); c.err != nil || c.state.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Errorf("one suite configured: got %s, err %v", tls.CipherSuiteName(c.state.CipherSuite), c.err)
	}
}

// resumes connects twice with one session cache and says whether the
// second connection resumed the first's session.
func resumes(t *testing.T, addr string, c *tls.Config) bool {
	t.Helper()
	c = c.Clone()
	if c.ClientSessionCache == nil {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	}
	if first := dial(t, addr, c); first.err != nil {
		t.Fatalf("first connection: %v", first.err)
	}
	second := dial(t, addr, c)
	if second.err != nil {
		t.Fatalf("second connection: %v", second.err)
	}
	return second.state.DidResume
}

// TestTickets: no session is resumed by default, in TLS 1.2 or 1.3; with
// tickets on, both resume.
func TestTickets(t *testing.T) {
	for _, on := range []bool{false, true} {
		ca, cfg := fixture(t)
		s := Settings{SessionTickets: on}
		s.Apply(cfg)
		keys := NewTicketKeys()
		served := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return cfg, keys.Refresh(cfg, s.Rotation())
		}}
		addr := server(t, served)
		for _, max := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			c := client(ca)
			c.MaxVersion = max
			if got := resumes(t, addr, c); got != on {
				t.Errorf("session_tickets %v, %s: resumed %v", on, tls.VersionName(max), got)
			}
		}
	}
}

// TestTicketKeyRotation: a ticket opens after one rotation and not after
// two; a new configuration (a reload) gets the same keys, so its tickets
// stay good.
func TestTicketKeyRotation(t *testing.T) {
	ca := testpki.NewCA(t, "tlspolicy test CA")
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	keys := newTicketKeys(bytes.NewReader(bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 1000)), clock)

	var cur sync.Mutex
	leaf := ca.Issue(t, "sso.example.test").TLS()
	build := func() *tls.Config {
		c := &tls.Config{Certificates: []tls.Certificate{leaf}, Time: clock}
		Settings{SessionTickets: true}.Apply(c)
		return c
	}
	current := build()
	served := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cur.Lock()
		defer cur.Unlock()
		return current, keys.Refresh(current, time.Hour)
	}}
	addr := server(t, served)

	c := client(ca)
	c.MaxVersion = tls.VersionTLS12
	c.Time = clock
	c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	if first := dial(t, addr, c); first.err != nil {
		t.Fatal(first.err)
	}
	cur.Lock()
	current = build() // a reload
	cur.Unlock()
	if c := dial(t, addr, c); c.err != nil || !c.state.DidResume {
		t.Errorf("after a reload: resumed %v, err %v; want resumed", c.state.DidResume, c.err)
	}
	advance(61 * time.Minute) // one rotation: the ticket's key is the older one
	if c := dial(t, addr, c); c.err != nil || !c.state.DidResume {
		t.Errorf("after one rotation: resumed %v, err %v; want resumed", c.state.DidResume, c.err)
	}
	// That connection was given a new ticket, under the newest key; only a
	// new client's ticket shows a key two rotations old.
	old := client(ca)
	old.MaxVersion = tls.VersionTLS12
	old.Time = clock
	old.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	if first := dial(t, addr, old); first.err != nil {
		t.Fatal(first.err)
	}
	advance(61 * time.Minute)
	dial(t, addr, client(ca)) // a handshake that rotates
	advance(61 * time.Minute)
	if c := dial(t, addr, old); c.err != nil || c.state.DidResume {
		t.Errorf("after two rotations: resumed %v, err %v; want a full handshake", c.state.DidResume, c.err)
	}
}

// TestTicketKeysRandError: a key that cannot be made is an error, not a
// zero key.
func TestTicketKeysRandError(t *testing.T) {
	keys := newTicketKeys(bytes.NewReader(nil), time.Now)
	if err := keys.Refresh(&tls.Config{}, time.Hour); err == nil || !errors.Is(err, io.EOF) {
		t.Errorf("Refresh with no randomness: %v", err)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint16
		err  string
	}{
		{"1.2", tls.VersionTLS12, ""},
		{"1.3", tls.VersionTLS13, ""},
		{"TLSv1.3", tls.VersionTLS13, ""},
		{"1.1", 0, "obsolete"},
		{"1.0", 0, "obsolete"},
		{"2", 0, "not a TLS version"},
	} {
		got, err := ParseVersion(tc.in)
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseVersion(%q) = %x, %v; want %x, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
	for _, tc := range []struct {
		in  string
		cbc bool
		err string
	}{
		{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", false, ""},
		{"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", true, ""},
		{"TLS_RSA_WITH_AES_128_GCM_SHA256", false, "insecure"},
		{"TLS_ECDHE_RSA_WITH_RC4_128_SHA", false, "insecure"},
		{"TLS_AES_128_GCM_SHA256", false, "TLS 1.3 suite"},
		{"ECDHE-RSA-AES128-GCM-SHA256", false, "not a TLS cipher suite name"},
	} {
		id, cbc, err := ParseCipherSuite(tc.in)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) || cbc != tc.cbc {
			t.Errorf("ParseCipherSuite(%q) = %x, %v, %v; want cbc %v, error %q", tc.in, id, cbc, err, tc.cbc, tc.err)
		}
		if err == nil && tls.CipherSuiteName(id) != tc.in {
			t.Errorf("ParseCipherSuite(%q) = %s", tc.in, tls.CipherSuiteName(id))
		}
	}
}

// BenchmarkRefresh: what a handshake pays for the ticket keys between
// rotations.
func BenchmarkRefresh(b *testing.B) {
	keys := NewTicketKeys()
	c := &tls.Config{}
	for b.Loop() {
		if err := keys.Refresh(c, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}
