package authnode

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/store"

	"github.com/iwalb/iwalb/internal/secret"
)

// manyGroups is a user in 40 groups, as users of real domains have: their
// names and the ticket's 41 group SIDs (S-1-18-1 too), a session of about
// 3.2 KB.
var manyGroups = func() *directory.User {
	u := *aliceUser
	u.Groups, u.GroupSIDs = nil, []string{"S-1-18-1"}
	for i := range 40 {
		u.Groups = append(u.Groups, fmt.Sprintf("app-group-%02d", i))
		u.GroupSIDs = append(u.GroupSIDs, fmt.Sprintf("S-1-5-21-1004336348-1177238915-682003330-%d", 10000+i))
	}
	return &u
}()

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestStoreFloodIsRefusedAtTheBound: a scripted client logs in and redeems
// until the node's session store is full. It is refused with 503 store_full
// at the configured bound, the refusal is counted, the Go heap grew by no
// more than the bound (plus a stated slack), and the sessions made so far
// still validate. The heap, not the RSS, is measured: the race detector's
// shadow memory would swamp the RSS.
func TestStoreFloodIsRefusedAtTheBound(t *testing.T) {
	const maxBytes = 4 << 20
	// Slack for the map's growth steps and the allocator's size classes
	// beyond what store.EntryOverhead charges.
	const slack = 1 << 20
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: manyGroups}, nil)
	// The tokens keep a budget of their own here, so that the flood ends
	// at redeem, whose answer this package owns.
	n.sessions = store.NewMemory(store.Options{Budget: store.NewBudget(store.Limits{MaxBytes: maxBytes})})
	before := heapInUse()

	var first redeemResponse
	made := 0
	var w *httptest.ResponseRecorder
	for made < 100_000 { // far beyond the bound; the loop ends at the first refusal
		w = redeem(n, testAPIKey, tokenFrom(t, ssoRequest(n, "Negotiate YQ==")))
		if w.Code != http.StatusOK {
			break
		}
		if made == 0 {
			_ = json.Unmarshal(w.Body.Bytes(), &first)
		}
		made++
	}
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"error":"store_full"`) {
		t.Fatalf("after %d sessions: %d %s; want 503 store_full", made, w.Code, w.Body)
	}
	grew := heapInUse() - before
	t.Logf("%d sessions, %d bytes charged each, filled the %d-byte bound; the heap grew by %d bytes",
		made, n.sessions.(*store.Memory).Bytes()/int64(made), maxBytes, grew)
	if grew > maxBytes+slack {
		t.Errorf("the heap grew by %d bytes for a store bound of %d (+%d slack)", grew, maxBytes, slack)
	}
	if grew < maxBytes/2 {
		t.Errorf("the heap grew by only %d bytes: the flood did not fill the store", grew)
	}
	if got := testutil.ToFloat64(n.metrics.storeFull.WithLabelValues("sessions")); got != 1 {
		t.Errorf("store_full_total{store=sessions} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(n.metrics.redeemFailures.WithLabelValues("store_full")); got != 1 {
		t.Errorf("token_redeem_failures_total{reason=store_full} = %v, want 1", got)
	}

	// Existing sessions still validate; ending one makes room for another.
	validate := func(sid string) int {
		r := httptest.NewRequest("POST", "/api/v1/sessions/validate", strings.NewReader(`{"session":"`+sid+`"}`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+testAPIKey)
		w := httptest.NewRecorder()
		n.Handler().ServeHTTP(w, r)
		return w.Code
	}
	if c := validate(first.Session.ID); c != http.StatusOK {
		t.Fatalf("validating the first session in a full store: %d, want 200", c)
	}
	r := httptest.NewRequest("POST", "/logout", strings.NewReader(`{"session":"`+first.Session.ID+`"}`))
	r.Header.Set("Content-Type", "application/json")
	n.Handler().ServeHTTP(httptest.NewRecorder(), r)
	if w := redeem(n, testAPIKey, tokenFrom(t, ssoRequest(n, "Negotiate YQ=="))); w.Code != http.StatusOK {
		t.Fatalf("redeem after a logout made room: %d %s", w.Code, w.Body)
	}
}

// TestLoginRefusedWhenTheTokenStoreIsFull: with no room for a token, a
// login is refused rather than redirected with a token that was never
// stored, and the refusal is counted.
func TestLoginRefusedWhenTheTokenStoreIsFull(t *testing.T) {
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, nil)
	n.tokens = store.NewMemory(store.Options{Budget: store.NewBudget(store.Limits{MaxEntries: 2})})
	for range 2 {
		tokenFrom(t, ssoRequest(n, "Negotiate YQ=="))
	}
	w := ssoRequest(n, "Negotiate YQ==")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Location") != "" || !strings.Contains(w.Body.String(), "store_full") {
		t.Fatalf("login with the token store full: %d, Location %q, body %q; want 503 store_full and no redirect",
			w.Code, w.Header().Get("Location"), w.Body.String())
	}
	if got := testutil.ToFloat64(n.metrics.logins.WithLabelValues("failure", "store_full", "kerberos")); got != 1 {
		t.Errorf(`logins_total{outcome="failure",reason="store_full"} = %v, want 1`, got)
	}
	if got := testutil.ToFloat64(n.metrics.storeFull.WithLabelValues("tokens")); got != 1 {
		t.Errorf("store_full_total{store=tokens} = %v, want 1", got)
	}
}

// servedNode is a test node serving HTTPS on a loopback port.
type servedNode struct {
	*Node
	addr string
	pki  adtest.PKI
}

// serveTestNode serves a node with stand-ins for the KDC and the directory
// on 127.0.0.1; edit changes its configuration first.
func serveTestNode(t *testing.T, edit func(*Config)) *servedNode {
	t.Helper()
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, nil)
	pki := adtest.NewPKI(t, "auth1.example.test")
	var err error
	n.edit(func(s *settings) {
		s.cfg.CertFile, s.cfg.KeyFile = pki.CertFile, pki.KeyFile
		s.cfg.ReadHeaderTimeout = time.Minute // idle connections stay until the test closes them
		if edit != nil {
			edit(&s.cfg)
		}
		s.tls, err = s.cfg.serverTLS()
	})
	if err != nil {
		t.Fatal(err)
	}
	n.conns.SetLimits(connLimits(n.cur.Load().cfg))
	addr := serveOnLoopback(t, n)
	return &servedNode{Node: n, addr: addr.String(), pki: pki}
}

// serveOnLoopback serves n on a free port of 127.0.0.1 until the test ends,
// and returns the address.
func serveOnLoopback(t *testing.T, n *Node) *net.TCPAddr {
	addr, _ := serveOnLoopbackStop(t, n)
	return addr
}

// serveOnLoopbackStop is serveOnLoopback with a function that stops the
// node now (and checks that Serve returned nil); cleanup does otherwise.
func serveOnLoopbackStop(t *testing.T, n *Node) (*net.TCPAddr, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return ln.Addr().(*net.TCPAddr), stop
}

// dialFrom opens a TCP connection to the node from the loopback address src.
func (s *servedNode) dialFrom(t *testing.T, src string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", s.addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// flood opens count connections from src that send nothing, and returns
// those that connected; a connection the node resets at once may fail to
// connect at all.
func (s *servedNode) flood(t *testing.T, src string, count int) []net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	var conns []net.Conn
	for range count {
		c, err := d.Dial("tcp", s.addr)
		if err != nil {
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("dial from %s: %v", src, err)
			}
			continue
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	return conns
}

// healthz asks for /healthz over HTTPS from the loopback address src.
func (s *servedNode) healthz(src string) (int, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.pki.Pool, ServerName: "auth1.example.test"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, s.addr)
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://auth1.example.test/healthz")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
	}
}

// closedBy counts the connections the peer closed (reset or EOF) within
// wait; the others stay open.
func closedBy(conns []net.Conn, wait time.Duration) int {
	var mu sync.Mutex
	closed := 0
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(wait))
			_, err := c.Read(make([]byte, 1))
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				mu.Lock()
				closed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return closed
}

// TestConnectionFloodIsCapped: one address opening connections that send
// nothing holds max_conns_per_source of them, the rest are reset and
// counted, and a client from another address is still served; the trusted
// balancer is held only to max_conns, and beyond max_conns everyone is
// refused until connections close.
func TestConnectionFloodIsCapped(t *testing.T) {
	s := serveTestNode(t, func(c *Config) {
		c.MaxConns, c.MaxConnsPerSource = 12, 5
		c.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.5/32")}
	})
	refused := func(r string) float64 { return testutil.ToFloat64(s.metrics.connsRefused.WithLabelValues(r)) }

	flood := s.flood(t, "127.0.0.1", 10)
	eventually(t, "5 of 10 connections from one address refused", func() bool {
		return refused("over_source_limit") == 5 && s.conns.Open() == 5
	})
	if got := 10 - len(flood) + closedBy(flood, time.Second); got != 5 {
		t.Fatalf("%d of the flood's connections were reset by the node; want the 5 over the per-source cap", got)
	}
	if code, err := s.healthz("127.0.0.2"); err != nil || code != http.StatusOK {
		t.Fatalf("a client from another address during the flood: %d, %v; want 200", code, err)
	}
	eventually(t, "the other client's connection released", func() bool { return s.conns.Open() == 5 })

	// The balancer carries many clients: only max_conns holds it.
	flood = append(flood, s.flood(t, "127.0.0.5", 7)...)
	eventually(t, "7 connections from the trusted balancer held", func() bool { return s.conns.Open() == 12 })
	if got := refused("over_source_limit"); got != 5 {
		t.Fatalf("over_source_limit = %v after the balancer's connections; want still 5", got)
	}
	if code, err := s.healthz("127.0.0.2"); err == nil {
		t.Fatalf("a client beyond max_conns was served: %d", code)
	}
	eventually(t, "a connection beyond max_conns counted", func() bool { return refused("over_limit") == 1 })
	if s.conns.Open() != 12 {
		t.Fatalf("%d connections open; want max_conns, 12", s.conns.Open())
	}

	for _, c := range flood {
		c.Close()
	}
	eventually(t, "every slot released once the clients closed", func() bool { return s.conns.Open() == 0 })
	if code, err := s.healthz("127.0.0.2"); err != nil || code != http.StatusOK {
		t.Fatalf("a client after the flood ended: %d, %v; want 200", code, err)
	}
}

// TestIdleKeepAliveConnectionIsClosed: a client that made one request and
// then says nothing is disconnected after idle_timeout, and its slot is
// freed.
func TestIdleKeepAliveConnectionIsClosed(t *testing.T) {
	s := serveTestNode(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	c := tls.Client(s.dialFrom(t, "127.0.0.1"), &tls.Config{RootCAs: s.pki.Pool, ServerName: "auth1.example.test"})
	// The node starts the idle clock after answering, so after this.
	start := time.Now()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: auth1.example.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("first request: %d, close %v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("reading an idle kept-alive connection: %v; want EOF, the node closing it", err)
	}
	if idle := time.Since(start); idle < s.cur.Load().cfg.IdleTimeout {
		t.Fatalf("closed after %v, before idle_timeout", idle)
	}
	eventually(t, "the idle connection's slot released", func() bool { return s.conns.Open() == 0 })
}

// TestClientCertificateNamesMatchExactly: cert_name must be the
// certificate's CN or one of its DNS names; a wildcard name in the
// certificate covers nothing.
func TestClientCertificateNamesMatchExactly(t *testing.T) {
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, nil)
	n.edit(func(s *settings) {
		s.apiClients = append(slices.Clone(s.apiClients), apiClient{name: "certapp", keyHash: sha256Sum("certapp-key-0123456789"), certName: "app.example.test"})
	})
	for _, tc := range []struct {
		names []string // CN first, all of them DNS names
		want  int
	}{
		{[]string{"app.example.test"}, http.StatusNotFound},
		{[]string{"other.example.test", "APP.Example.Test"}, http.StatusNotFound},
		{[]string{"*.example.test"}, http.StatusUnauthorized},
		{[]string{"other.example.test", "*.example.test"}, http.StatusUnauthorized},
		{[]string{"app.example.test.evil.test"}, http.StatusUnauthorized},
		{[]string{"other.example.test"}, http.StatusUnauthorized},
	} {
		pki := adtest.NewPKI(t, tc.names...)
		pair, err := tls.LoadX509KeyPair(pki.CertFile, pki.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("POST", "/api/v1/tokens/redeem", strings.NewReader(`{"token":"`+strings.Repeat("A", secret.Len)+`"}`))
		r.Header.Set("Content-Type", "application/json")
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{pair.Leaf}}}
		w := httptest.NewRecorder()
		n.Handler().ServeHTTP(w, r)
		// 404: authenticated, and the (made-up) token is unknown.
		if w.Code != tc.want {
			t.Errorf("certificate for %q, cert_name app.example.test: %d, want %d", tc.names, w.Code, tc.want)
		}
	}
}

// TestConfigRefusesUnsafeSettings: settings that look safe and are not.
func TestConfigRefusesUnsafeSettings(t *testing.T) {
	base := func() Config {
		return Config{
			FQDN: "auth1.example.test", Listen: "127.0.0.1:8443", CertFile: "c", KeyFile: "k",
			ApplicationURL: "https://app.example.test/cb", Keytab: "kt", Krb5Conf: "krb5.conf",
			Realm: "EXAMPLE.TEST", Account: "svc_http",
			APIClients: []APIClient{{Name: "app", Key: "0123456789abcdef\n", CertName: "app.example.test"}},
		}
	}
	c := base()
	c.setDefaults()
	if err := c.validate(); err != nil {
		t.Fatalf("the base configuration: %v", err)
	}
	for _, tc := range []struct {
		name, want string
		edit       func(*Config)
	}{
		{"http application URL", "not an absolute https:// URL", func(c *Config) { c.ApplicationURL = "http://app.example.test/cb" }},
		{"relative application URL", "not an absolute https:// URL", func(c *Config) { c.ApplicationURL = "/cb" }},
		{"key padded to 16 bytes", "key shorter than 16 bytes", func(c *Config) { c.APIClients[0].Key = "   0123456789ab\t  \n" }},
		{"wildcard cert name", "wildcards are not allowed", func(c *Config) { c.APIClients[0].CertName = "*.example.test" }},
		{"negative max conns", "MaxConns -1", func(c *Config) { c.MaxConns = -1 }},
		{"negative store bound", "StoreMaxBytes -1", func(c *Config) { c.StoreMaxBytes = -1 }},
		{"unknown group check", `RequiredGroupCheck "pac"`, func(c *Config) { c.LDAP.RequiredGroupCheck = "pac" }},
	} {
		c := base()
		tc.edit(&c)
		c.setDefaults()
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// TestLimitGaugesExported: the store's fill and the open connections are
// served as the README lists them.
func TestLimitGaugesExported(t *testing.T) {
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, nil)
	reg := prometheus.NewRegistry()
	var err error
	if n.metrics, err = newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := n.registerGauges(reg); err != nil {
		t.Fatal(err)
	}
	tokenFrom(t, ssoRequest(n, "Negotiate YQ=="))
	got, err := testutil.GatherAndCount(reg, "iwalb_authnode_store_entries", "iwalb_authnode_store_bytes", "iwalb_authnode_connections_open")
	if err != nil || got != 5 {
		t.Fatalf("%d series (%v); want store_entries and store_bytes for tokens and sessions, and connections_open", got, err)
	}
	want := `
# HELP iwalb_authnode_store_entries Entries in the in-memory store, expired ones kept for their grace included; store.max_entries bounds tokens and sessions together.
# TYPE iwalb_authnode_store_entries gauge
iwalb_authnode_store_entries{store="sessions"} 0
iwalb_authnode_store_entries{store="tokens"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "iwalb_authnode_store_entries"); err != nil {
		t.Fatal(err)
	}
}
