package authnode

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/store"
)

// These tests reload a node made by New from files (an offline keytab,
// tickets with a signed PAC made here, a throw-away PKI), with the
// directory stubbed: what Prepare refuses, what Apply changes and what it
// keeps.

// reloadNode is a node under test and the configuration it runs.
type reloadNode struct {
	*Node
	cfg  Config
	dir  string
	pki  adtest.PKI // of the certificate it starts with
	logs *syncBuffer
	reg  *prometheus.Registry
}

// offlineKVNOKeytab is offlineKeytab after password changes: the key of
// version kvno, made from another password for each version.
func offlineKVNOKeytab(t testing.TB, kvno uint8) *keytab.Keytab {
	t.Helper()
	if kvno == 2 {
		return offlineKeytab(t)
	}
	kt := keytab.New()
	if err := kt.AddEntry(offlineSPN, "EXAMPLE.TEST", fmt.Sprintf("%s-%d", offlinePass, kvno), time.Unix(1700000000, 0), kvno, 18); err != nil {
		t.Fatal(err)
	}
	return kt
}

func writeKeytab(t testing.TB, path string, kt *keytab.Keytab) {
	t.Helper()
	b, err := kt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// In place, as ktutil and samba-tool write: the same file, truncated.
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func newReloadNode(t *testing.T, edit func(*Config)) *reloadNode {
	t.Helper()
	dir := t.TempDir()
	writeKeytab(t, filepath.Join(dir, "http.keytab"), offlineKeytab(t))
	krb5 := "[libdefaults]\n default_realm = EXAMPLE.TEST\n[realms]\n EXAMPLE.TEST = {\n  kdc = 127.0.0.1:1\n }\n"
	if err := os.WriteFile(filepath.Join(dir, "krb5.conf"), []byte(krb5), 0o600); err != nil {
		t.Fatal(err)
	}
	pki := adtest.NewPKI(t, "auth1.example.test")
	cfg := Config{
		FQDN: "auth1.example.test", Listen: "127.0.0.1:0", CertFile: pki.CertFile, KeyFile: pki.KeyFile,
		ApplicationURL: "https://app.example.test/cb?x=1",
		Keytab:         filepath.Join(dir, "http.keytab"), Krb5Conf: filepath.Join(dir, "krb5.conf"),
		Realm: "EXAMPLE.TEST", Account: "svc_http",
		LDAP: LDAPConfig{URL: "ldaps://127.0.0.1:1", BindDN: "CN=svc_ldap,CN=Users,DC=example,DC=test",
			BindPassword: "not-used", BaseDN: "DC=example,DC=test"},
		APIClients: []APIClient{{Name: "app", Key: testAPIKey}},
	}
	if edit != nil {
		edit(&cfg)
	}
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	n, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	n.selfTest = func(context.Context) error { return nil }
	n.setDirectory(stubDirectory{user: aliceUser})
	return &reloadNode{Node: n, cfg: cfg, dir: dir, pki: pki, logs: logs, reg: reg}
}

// serve runs r's HTTPS server on a loopback port until the test ends, and
// returns its address.
func (r *reloadNode) serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// reload prepares and applies cfg, failing the test if Prepare refuses it.
func (r *reloadNode) reload(t *testing.T, cfg Config) {
	t.Helper()
	p, err := r.Prepare(cfg)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	r.Apply(p)
	r.cfg = cfg
}

// ticketsFor returns fresh Negotiate headers, a new authenticator each
// call, of one ticket encrypted with the key of version kvno of kt.
func ticketsFor(t *testing.T, kt *keytab.Keytab, kvno int) func() string {
	tkt, skey := offlinePACTicketKVNO(t, kt, "lzhu", kvno)
	base := time.Now()
	var i atomic.Int32
	return func() string { return offlineAuthzFor(t, tkt, skey, "lzhu", base, int(i.Add(1))) }
}

// gateDirectory holds every look-up until release is closed, and records
// whether it was closed.
type gateDirectory struct {
	stubDirectory
	entered chan struct{} // one signal when a look-up is waiting
	release chan struct{}
	closed  atomic.Bool
}

func newGate() *gateDirectory {
	return &gateDirectory{stubDirectory: stubDirectory{user: aliceUser}, entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (g *gateDirectory) Lookup(ctx context.Context, p directory.Principal) (*directory.User, int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.release
	return g.stubDirectory.Lookup(ctx, p)
}

func (g *gateDirectory) Close() error { g.closed.Store(true); return nil }

func locationHost(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if w.Code != http.StatusFound {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	u, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestPrepareRefusalChangesNothing: a keytab that does not parse, a
// certificate that cannot be read, and keys that take a restart are
// refused, each saying what; the node serves on with what it had.
func TestPrepareRefusalChangesNothing(t *testing.T) {
	r := newReloadNode(t, nil)
	login := ticketsFor(t, offlineKeytab(t), 2)
	before := r.cur.Load()
	garbage := filepath.Join(r.dir, "garbage.keytab")
	if err := os.WriteFile(garbage, []byte("\x05\x02not a keytab at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		restart    bool
		edit       func(*Config)
	}{
		{"keytab that does not parse", "load keytab", false, func(c *Config) { c.Keytab = garbage }},
		{"keytab missing", "load keytab", false, func(c *Config) { c.Keytab = filepath.Join(r.dir, "missing.keytab") }},
		{"certificate missing", "load TLS certificate", false, func(c *Config) { c.CertFile = filepath.Join(r.dir, "missing.pem") }},
		{"krb5.conf missing", "krb5.conf", false, func(c *Config) { c.Krb5Conf = filepath.Join(r.dir, "missing.conf") }},
		{"invalid setting", "ApplicationURL", false, func(c *Config) { c.ApplicationURL = "http://app.example.test/cb" }},
		{"listen", "authnode.listen (127.0.0.1:0 to 127.0.0.1:8443)", true, func(c *Config) { c.Listen = "127.0.0.1:8443" }},
		{"header limit", "authnode.max_header_bytes", true, func(c *Config) { c.MaxHeaderBytes = 256 << 10 }},
		{"store type", "authnode.store.type (memory to redis)", true, func(c *Config) {
			c.Redis = &RedisConfig{RedisConfig: store.RedisConfig{Addrs: []string{"127.0.0.1:6379"}}}
		}},
		{"clock skew", "authnode.kerberos.max_clock_skew", true, func(c *Config) { c.MaxClockSkew = 10 * time.Minute }},
		{"replay quota", "authnode.kerberos.replay_quota", true, func(c *Config) { c.ReplayQuota = 5 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := r.cfg
			cfg.ApplicationURL = "https://other.example.test/cb" // a change that would show
			tc.edit(&cfg)
			p, err := r.Prepare(cfg)
			if err == nil {
				p.Discard()
				t.Fatal("Prepare accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrRestartRequired) != tc.restart {
				t.Fatalf("error %q; want it to say %q (restart: %v)", err, tc.want, tc.restart)
			}
			if r.cur.Load() != before {
				t.Fatal("the settings in force changed")
			}
			if h := locationHost(t, ssoRequest(r.Node, login())); h != "app.example.test" {
				t.Fatalf("login went to %s after a refused reload", h)
			}
		})
	}
}

// TestApplyLetsRequestsInFlightFinish: a login waiting on the directory
// while new settings come in ends with the settings it started with; the
// next login has the new ones. A directory whose settings did not change
// is kept; one that did is closed once the last login using it is done,
// not before.
func TestApplyLetsRequestsInFlightFinish(t *testing.T) {
	for _, ldapChanged := range []bool{false, true} {
		t.Run(fmt.Sprintf("ldap changed %v", ldapChanged), func(t *testing.T) {
			r := newReloadNode(t, nil)
			login := ticketsFor(t, offlineKeytab(t), 2)
			gate := newGate()
			r.setDirectory(gate)
			done := make(chan *httptest.ResponseRecorder, 1)
			go func() { done <- ssoRequest(r.Node, login()) }()
			<-gate.entered

			next := r.cfg
			next.ApplicationURL = "https://app2.example.test/cb?x=1"
			if ldapChanged {
				next.LDAP.Timeout = 7 * time.Second
			}
			r.reload(t, next)
			if gate.closed.Load() {
				t.Fatal("the directory was closed while a login was using it")
			}
			close(gate.release)
			if h := locationHost(t, <-done); h != "app.example.test" {
				t.Fatalf("the login in flight went to %s; want the application URL it started with", h)
			}
			if gate.closed.Load() != ldapChanged {
				t.Fatalf("directory closed: %v once unused; want %v", gate.closed.Load(), ldapChanged)
			}
			if !ldapChanged {
				if h := locationHost(t, ssoRequest(r.Node, login())); h != "app2.example.test" {
					t.Fatalf("the next login went to %s; want the new application URL", h)
				}
			}
		})
	}
}

// TestApplyKeepsTokensAndSessions: a token issued before a reload redeems
// after it (with the API key the new settings know), and the session made
// then validates; the old API key is refused.
func TestApplyKeepsTokensAndSessions(t *testing.T) {
	r := newReloadNode(t, nil)
	login := ticketsFor(t, offlineKeytab(t), 2)
	token := tokenFrom(t, ssoRequest(r.Node, login()))
	next := r.cfg
	const newKey = "the-new-api-key-0123456789"
	next.APIClients = []APIClient{{Name: "app", Key: newKey}}
	next.TokenTTL = 2 * time.Minute
	r.reload(t, next)
	if w := redeem(r.Node, testAPIKey, token); w.Code != http.StatusUnauthorized {
		t.Fatalf("redeem with the key taken away: %d, want 401", w.Code)
	}
	w := redeem(r.Node, newKey, token)
	if w.Code != http.StatusOK {
		t.Fatalf("redeem after the reload of a token issued before: %d %s", w.Code, w.Body)
	}
	var got redeemResponse
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	r.reload(t, r.cfg) // again: nothing is lost on a second reload either
	body := strings.NewReader(`{"session":"` + got.Session.ID + `"}`)
	req := httptest.NewRequest("POST", "/api/v1/sessions/validate", body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+newKey)
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("session validate after two reloads: %d %s", rec.Code, rec.Body)
	}
}

// TestApplyChangesLimitsAndPath: connection and store limits change in
// place, and the SSO path moves.
func TestApplyChangesLimitsAndPath(t *testing.T) {
	r := newReloadNode(t, nil)
	login := ticketsFor(t, offlineKeytab(t), 2)
	tokenFrom(t, ssoRequest(r.Node, login()))
	next := r.cfg
	next.MaxConns, next.MaxConnsPerSource = 5, 3
	next.StoreMaxEntries = 2 // the token above and one more
	next.SSOPath = "/signin"
	r.reload(t, next)
	if l := r.conns.Limits(); l.MaxConns != 5 || l.MaxPerSource != 3 {
		t.Fatalf("connection limits %+v, want 5 and 3", l)
	}
	get := func(path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "https://auth1.example.test"+path, nil)
		req.Header.Set("Authorization", login())
		w := httptest.NewRecorder()
		r.Handler().ServeHTTP(w, req)
		return w
	}
	if w := get("/sso"); w.Code != http.StatusNotFound {
		t.Fatalf("the old SSO path: %d, want 404", w.Code)
	}
	if h := locationHost(t, get("/signin")); h != "app.example.test" {
		t.Fatalf("login at the new path went to %s", h)
	}
	if w := get("/signin"); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "store_full") {
		t.Fatalf("third login with store.max_entries 2: %d %.200s; want 503 store_full", w.Code, w.Body)
	}
}

// TestApplyServesTheNewCertificate: a new certificate is served to new
// connections, while a kept-alive connection goes on with the one it was
// made with.
func TestApplyServesTheNewCertificate(t *testing.T) {
	r := newReloadNode(t, nil)
	addr := r.serve(t)
	client := func(caFile string) *http.Client {
		pool := x509.NewCertPool()
		b, err := os.ReadFile(caFile)
		if err != nil || !pool.AppendCertsFromPEM(b) {
			t.Fatalf("CA %s: %v", caFile, err)
		}
		d := &net.Dialer{Timeout: 5 * time.Second}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
		}}
	}
	healthz := func(c *http.Client) (*x509.Certificate, error) {
		resp, err := c.Get("https://auth1.example.test/healthz")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		// Read to the end, so that the connection is kept for the next.
		if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("healthz %d: %v", resp.StatusCode, err)
		}
		return resp.TLS.PeerCertificates[0], nil
	}
	oldCA := r.pki.CAFile
	kept := client(oldCA)
	cert, err := healthz(kept)
	if err != nil || !sameCert(t, cert, r.cfg.CertFile) {
		t.Fatalf("before the reload: %v (the configured certificate: %v)", err, err == nil)
	}

	pki := adtest.NewPKI(t, "auth1.example.test")
	next := r.cfg
	next.CertFile, next.KeyFile = pki.CertFile, pki.KeyFile
	r.reload(t, next)

	if cert, err := healthz(client(pki.CAFile)); err != nil || !sameCert(t, cert, pki.CertFile) {
		t.Fatalf("a new connection after the reload: %v; want the new certificate", err)
	}
	if cert, err := healthz(kept); err != nil || sameCert(t, cert, pki.CertFile) {
		t.Fatalf("the kept-alive connection after the reload: %v; want it served on, with its certificate", err)
	}
	if _, err := healthz(client(oldCA)); err == nil {
		t.Fatal("a new connection trusting only the old CA succeeded; the old certificate is still served")
	}
}

func sameCert(t *testing.T, c *x509.Certificate, file string) bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	return blk != nil && bytes.Equal(blk.Bytes, c.Raw)
}

// TestKeytabRotationOffline: a keytab rewritten in place with the next key
// version is loaded by the file check; tickets of both versions log in;
// when previous_keys_ttl is up the old version is refused (kvno), the log
// naming the ticket's version and the keytab's. A half-written file
// changes nothing and is warned about once.
func TestKeytabRotationOffline(t *testing.T) {
	r := newReloadNode(t, func(c *Config) { c.PreviousKeysTTL = time.Hour })
	kt2, kt3 := offlineKeytab(t), offlineKVNOKeytab(t, 3)
	old, cur := ticketsFor(t, kt2, 2), ticketsFor(t, kt3, 3)
	if w := ssoRequest(r.Node, cur()); w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "kvno") {
		t.Fatalf("a kvno 3 ticket before the new keytab: %d, want 500 kvno", w.Code)
	}

	full, err := kt3.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.cfg.Keytab, full[:len(full)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	before := r.cur.Load()
	r.checkKeytab(t0)
	r.checkKeytab(t0)
	if r.cur.Load() != before {
		t.Fatal("a half-written keytab changed the keys")
	}
	if n := strings.Count(r.logs.String(), "keytab file cannot be loaded"); n != 1 {
		t.Fatalf("%d warnings about the half-written keytab, want 1:\n%s", n, r.logs)
	}
	if got := testutil.ToFloat64(r.metrics.keytabLoads.WithLabelValues("failed")); got != 1 {
		t.Fatalf("keytab_loads_total{result=failed} = %v, want 1", got)
	}

	writeKeytab(t, r.cfg.Keytab, kt3)
	r.checkKeytab(t0)
	tokenFrom(t, ssoRequest(r.Node, old())) // the retired key
	tokenFrom(t, ssoRequest(r.Node, cur())) // the current one
	if s := r.logs.String(); !strings.Contains(s, "why=\"file changed\"") || !strings.Contains(s, "kvno=3 enctype=aes256-cts-hmac-sha1-96") ||
		!strings.Contains(s, "keytab key retired") {
		t.Fatalf("the reload is not logged with its entries:\n%s", s)
	}
	if got, err := testutil.GatherAndCount(r.reg, "iwalb_authnode_keytab_keys"); err != nil || got != 2 {
		t.Fatalf("keytab_keys series: %d %v", got, err)
	}

	r.checkKeytab(t0.Add(time.Hour))
	w := ssoRequest(r.Node, old())
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "kvno") {
		t.Fatalf("a kvno 2 ticket after previous_keys_ttl: %d, want 500 kvno", w.Code)
	}
	if s := r.logs.String(); !strings.Contains(s, "ticket_kvno=2 keytab_kvnos=3 retired_kvnos=none") {
		t.Fatalf("the refusal does not name the versions:\n%s", s)
	}
	if got := testutil.ToFloat64(r.metrics.tickets.WithLabelValues(offlineSPN+"@EXAMPLE.TEST", "kvno")); got != 2 {
		t.Fatalf("kerberos_tickets_total{result=kvno} = %v, want 2 (before the keytab and after the ttl)", got)
	}
	tokenFrom(t, ssoRequest(r.Node, cur()))
}

// TestKeytabRotationByReload: a reload reads the keytab again, keeps the
// previous key, and takes previous_keys_ttl from the new settings.
func TestKeytabRotationByReload(t *testing.T) {
	r := newReloadNode(t, func(c *Config) { c.KeytabCheckInterval = time.Hour })
	kt3 := offlineKVNOKeytab(t, 3)
	old, cur := ticketsFor(t, offlineKeytab(t), 2), ticketsFor(t, kt3, 3)
	writeKeytab(t, r.cfg.Keytab, kt3)
	r.reload(t, r.cfg)
	tokenFrom(t, ssoRequest(r.Node, old()))
	tokenFrom(t, ssoRequest(r.Node, cur()))
	// A shorter ttl, already past for the key retired above, drops it.
	next := r.cfg
	next.PreviousKeysTTL = time.Nanosecond
	r.reload(t, next)
	if w := ssoRequest(r.Node, old()); w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "kvno") {
		t.Fatalf("kvno 2 after its ttl: %d, want 500 kvno", w.Code)
	}
	tokenFrom(t, ssoRequest(r.Node, cur()))
}

// TestKeytabWatchedWhileServing: the node notices a new keytab by itself,
// and drops the previous key when its time is up, with no reload.
func TestKeytabWatchedWhileServing(t *testing.T) {
	r := newReloadNode(t, func(c *Config) {
		c.KeytabCheckInterval = 20 * time.Millisecond
		c.PreviousKeysTTL = 2 * time.Second
		// Logins are tried until the change shows: more than the
		// default quota of one user's.
		c.ReplayQuota = 10000
	})
	r.serve(t) // the keytab watch runs while the node serves

	kt3 := offlineKVNOKeytab(t, 3)
	old, cur := ticketsFor(t, offlineKeytab(t), 2), ticketsFor(t, kt3, 3)
	writeKeytab(t, r.cfg.Keytab, kt3)
	eventually(t, "a kvno 3 ticket accepted", func() bool { return ssoRequest(r.Node, cur()).Code == http.StatusFound })
	if w := ssoRequest(r.Node, old()); w.Code != http.StatusFound {
		t.Logf("kvno 2 right after the change: %d (may be past its 2 s on a loaded machine)", w.Code)
	}
	eventually(t, "the kvno 2 key dropped", func() bool {
		w := ssoRequest(r.Node, old())
		return w.Code == http.StatusInternalServerError && strings.Contains(w.Body.String(), "kvno")
	})
	tokenFrom(t, ssoRequest(r.Node, cur()))
}

// TestPendingDiscardAndMisuse: Discard closes what Prepare opened and
// nothing else; a Pending is applied at most once, and not after Discard.
func TestPendingDiscardAndMisuse(t *testing.T) {
	r := newReloadNode(t, nil)
	gate := newGate()
	close(gate.release)
	r.setDirectory(gate)
	before := r.cur.Load()
	next := r.cfg
	next.LDAP.PoolSize = 3
	p, err := r.Prepare(next)
	if err != nil {
		t.Fatal(err)
	}
	if p.reused || p.s.dir == before.dir {
		t.Fatal("Prepare kept the directory of changed LDAP settings")
	}
	p.Discard()
	if p.s.dir.refs.Load() != 0 || gate.closed.Load() {
		t.Fatalf("after Discard: the new directory's references %d (want 0), the running one closed: %v", p.s.dir.refs.Load(), gate.closed.Load())
	}
	r.Apply(p)
	if r.cur.Load() != before || !strings.Contains(r.logs.String(), "applied or discarded already") {
		t.Fatal("a discarded Pending was applied")
	}
	p, err = r.Prepare(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.Apply(p)
	applied := r.cur.Load()
	r.Apply(p)
	if r.cur.Load() != applied {
		t.Fatal("a Pending was applied twice")
	}
	p.Discard() // after Apply: a no-op
	if gate.closed.Load() {
		t.Fatal("Discard after Apply closed the directory in force")
	}
}

// TestKeytabRotationKeepingNone: with a negative previous_keys_ttl (the
// configuration's 0), the old key goes with the old keytab: what a
// password change made because the key leaked needs.
func TestKeytabRotationKeepingNone(t *testing.T) {
	r := newReloadNode(t, func(c *Config) { c.PreviousKeysTTL = -1 })
	kt3 := offlineKVNOKeytab(t, 3)
	old, cur := ticketsFor(t, offlineKeytab(t), 2), ticketsFor(t, kt3, 3)
	writeKeytab(t, r.cfg.Keytab, kt3)
	r.checkKeytab(time.Now())
	if w := ssoRequest(r.Node, old()); w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "kvno") {
		t.Fatalf("kvno 2 with no previous key kept: %d, want 500 kvno", w.Code)
	}
	tokenFrom(t, ssoRequest(r.Node, cur()))
	if s := r.logs.String(); strings.Contains(s, "accepted until") || !strings.Contains(s, "keytab key dropped") {
		t.Fatalf("log:\n%s", s)
	}
}
