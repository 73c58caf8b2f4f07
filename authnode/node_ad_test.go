package authnode

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/jcmturner/gokrb5/v8/keytab"
	proxyproto "github.com/pires/go-proxyproto"

	"github.com/iwalb/iwalb/authnode/adtest"
)

// These tests run the auth node against the real Samba Active Directory
// that scripts/ad-up starts, with real clients: MIT kinit and curl
// --negotiate, and gokrb5 where a test needs the raw token.

// adNode is an auth node under test, listening on 127.0.0.1.
type adNode struct {
	node *Node
	port int
	pki  adtest.PKI
	logs *syncBuffer
	stop func() // stops the node now; cleanup does otherwise
}

// startADNode starts a node configured for the test domain; edit changes the
// configuration first.
func startADNode(t *testing.T, env map[string]string, edit func(*Config, *Options)) *adNode {
	t.Helper()
	pki := adtest.NewPKI(t, "auth1.example.test", "lb.example.test", "other.example.test")
	cfg := Config{
		FQDN: "auth1.example.test", Listen: "127.0.0.1:0",
		CertFile: pki.CertFile, KeyFile: pki.KeyFile,
		ApplicationURL: "https://app.example.test/sso/callback",
		Keytab:         env["AD_HTTP_KEYTAB"], Krb5Conf: env["KRB5_CONFIG"],
		Realm: env["AD_REALM"], Account: env["AD_SVC_USER"],
		SelfTestInterval: time.Hour,
		LDAP: LDAPConfig{
			URL: env["AD_LDAPS_URL"], CAFile: env["AD_LDAP_CA_FILE"], ServerName: env["AD_LDAP_TLS_SERVER_NAME"],
			BindDN: env["AD_BIND_DN"], BindPassword: env["AD_BIND_PASSWORD"], BaseDN: env["AD_BASE_DN"],
			RequiredGroup: env["AD_GROUP_DN"], Timeout: 3 * time.Second,
		},
		APIClients: []APIClient{{Name: "app", Key: testAPIKey}},
	}
	logs := &syncBuffer{}
	opts := Options{Logger: slog.New(slog.NewTextHandler(logs, nil))}
	if edit != nil {
		edit(&cfg, &opts)
	}
	n, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	addr, stop := serveOnLoopbackStop(t, n)
	a := &adNode{node: n, port: addr.Port, pki: pki, logs: logs, stop: stop}
	// Wait for the first round of readiness checks, whatever its outcome.
	deadline := time.Now().Add(20 * time.Second)
	for n.ready.last.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatal("readiness checks did not finish in 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return a
}

// client is an HTTPS client that reaches every *.example.test name at the
// node and never follows redirects.
func (a *adNode) client() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: a.pki.Pool},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", a.port))
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (a *adNode) url(host, path string) string {
	return fmt.Sprintf("https://%s:%d%s", host, a.port, path)
}

// curlNegotiate runs curl --negotiate with the ticket cache ccache against
// host's /sso and returns the status and the Location header.
func (a *adNode) curlNegotiate(t *testing.T, env map[string]string, ccache, host string) (int, string, string) {
	t.Helper()
	hdrs := filepath.Join(t.TempDir(), "headers")
	cmd := exec.Command("curl", "-sS", "--negotiate", "-u", ":", "--cacert", a.pki.CAFile,
		"--resolve", fmt.Sprintf("%s:%d:127.0.0.1", host, a.port),
		"-D", hdrs, "-o", "-", "-w", "\n%{http_code}", a.url(host, "/sso"))
	cmd.Env = append(os.Environ(), "KRB5_CONFIG="+env["KRB5_CONFIG"], "KRB5CCNAME=FILE:"+ccache)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	body, code, _ := strings.Cut(string(out), "\n"+lastLine(string(out)))
	var status int
	fmt.Sscan(lastLine(string(out)), &status)
	_ = code
	h, _ := os.ReadFile(hdrs)
	var loc string
	for _, line := range strings.Split(string(h), "\r\n") {
		if v, ok := strings.CutPrefix(line, "Location: "); ok {
			loc = v
		}
	}
	return status, loc, body
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}

// kinit gets a TGT for user into a fresh ticket cache and returns its path.
func kinit(t *testing.T, env map[string]string, user, password string) string {
	t.Helper()
	cc := filepath.Join(t.TempDir(), "ccache-"+user)
	cmd := exec.Command("kinit", user)
	cmd.Env = append(os.Environ(), "KRB5_CONFIG="+env["KRB5_CONFIG"], "KRB5CCNAME=FILE:"+cc)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kinit %s: %v\n%s", user, err, out)
	}
	return cc
}

func (a *adNode) redeem(t *testing.T, token string) (int, redeemResponse) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"token": token})
	req, _ := http.NewRequest("POST", a.url("auth1.example.test", "/api/v1/tokens/redeem"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := a.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r redeemResponse
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r
}

func tokenOf(t *testing.T, location string) string {
	t.Helper()
	u, err := url.Parse(location)
	if err != nil || u.Host != "app.example.test" {
		t.Fatalf("Location %q is not the application URL", location)
	}
	return u.Query().Get("ssoToken")
}

func TestADKerberosLoginWithCurl(t *testing.T) {
	env := adtest.Env(t)
	a := startADNode(t, env, nil)
	resp, err := a.client().Get(a.url("auth1.example.test", "/readyz"))
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz %d: %s", resp.StatusCode, rb)
	}

	cc := kinit(t, env, "alice", env["AD_ALICE_PASSWORD"])
	for _, host := range []string{"auth1.example.test", "lb.example.test"} {
		status, loc, body := a.curlNegotiate(t, env, cc, host)
		if status != http.StatusFound {
			t.Fatalf("curl --negotiate https://%s/sso: %d\n%s\nlog:\n%s", host, status, body, a.logs)
		}
		token := tokenOf(t, loc)
		code, id := a.redeem(t, token)
		if code != http.StatusOK {
			t.Fatalf("redeem: %d", code)
		}
		if id.SAMAccountName != "alice" || id.SID != adtest.ObjectSID(t, env, "alice") || !strings.EqualFold(id.UserPrincipalName, "alice@example.test") ||
			id.Realm != "EXAMPLE.TEST" || id.Mail != "alice@example.test" || !contains(id.Groups, "lb-users") ||
			id.Session.ID == "" {
			t.Fatalf("identity %+v", id)
		}
		if code, _ := a.redeem(t, token); code != http.StatusNotFound {
			t.Fatalf("second redeem of the same token: %d, want 404", code)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestADDirectoryDecisions(t *testing.T) {
	env := adtest.Env(t)
	a := startADNode(t, env, nil)

	t.Run("nested group member logs in", func(t *testing.T) {
		status, loc, body := a.curlNegotiate(t, env, kinit(t, env, "dave", env["AD_DAVE_PASSWORD"]), "auth1.example.test")
		if status != http.StatusFound {
			t.Fatalf("dave: %d %s", status, body)
		}
		if _, id := a.redeem(t, tokenOf(t, loc)); !contains(id.Groups, "lb-ops") {
			t.Fatalf("dave's groups %v lack lb-ops", id.Groups)
		}
	})
	t.Run("user in many groups but not the required one", func(t *testing.T) {
		status, _, body := a.curlNegotiate(t, env, kinit(t, env, "carol", env["AD_CAROL_PASSWORD"]), "auth1.example.test")
		if status != http.StatusForbidden || !strings.Contains(body, "not_in_group") {
			t.Fatalf("carol: %d %s", status, body)
		}
	})
	t.Run("user disabled after getting a ticket", func(t *testing.T) {
		cc := kinit(t, env, "erin", env["AD_ERIN_PASSWORD"])
		// Get the service ticket while erin is enabled: once disabled, the
		// KDC refuses her new tickets, and only a ticket she already holds
		// reaches the node.
		kvno := exec.Command("kvno", "HTTP/auth1.example.test")
		kvno.Env = append(os.Environ(), "KRB5_CONFIG="+env["KRB5_CONFIG"], "KRB5CCNAME=FILE:"+cc)
		if out, err := kvno.CombinedOutput(); err != nil {
			t.Fatalf("kvno: %v %s", err, out)
		}
		setDisabled(t, env, env["AD_ERIN_DN"], true)
		t.Cleanup(func() { setDisabled(t, env, env["AD_ERIN_DN"], false) })
		status, _, body := a.curlNegotiate(t, env, cc, "auth1.example.test")
		if status != http.StatusForbidden || !strings.Contains(body, "user_disabled") {
			t.Fatalf("disabled erin: %d %s", status, body)
		}
	})
	t.Run("the KDC refuses a disabled user a ticket", func(t *testing.T) {
		cmd := exec.Command("kinit", "bob")
		cmd.Env = append(os.Environ(), "KRB5_CONFIG="+env["KRB5_CONFIG"], "KRB5CCNAME=FILE:"+filepath.Join(t.TempDir(), "cc"))
		cmd.Stdin = strings.NewReader(env["AD_BOB_PASSWORD"] + "\n")
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Fatalf("kinit bob succeeded although bob is disabled: %s", out)
		}
	})
}

// setDisabled sets or clears ACCOUNTDISABLE on dn as the domain admin.
func setDisabled(t *testing.T, env map[string]string, dn string, disabled bool) {
	t.Helper()
	c, err := ldap.DialURL(env["AD_LDAP_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(env["AD_ADMIN_USER"]+"@"+env["AD_DNS_DOMAIN"], env["AD_ADMIN_PASSWORD"]); err != nil {
		t.Fatal(err)
	}
	uac := "512"
	if disabled {
		uac = "514"
	}
	m := ldap.NewModifyRequest(dn, nil)
	m.Replace("userAccountControl", []string{uac})
	if err := c.Modify(m); err != nil {
		t.Fatalf("set userAccountControl of %s: %v", dn, err)
	}
}

func TestADKerberosFailures(t *testing.T) {
	env := adtest.Env(t)
	a := startADNode(t, env, nil)
	get := func(t *testing.T, authz string) (int, string, http.Header) {
		req, _ := http.NewRequest("GET", a.url("auth1.example.test", "/sso"), nil)
		req.Header.Set("Authorization", authz)
		resp, err := a.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	t.Run("ticket for an SPN missing from the keytab", func(t *testing.T) {
		cc := kinit(t, env, "alice", env["AD_ALICE_PASSWORD"])
		status, _, body := a.curlNegotiate(t, env, cc, "other.example.test")
		if status != http.StatusInternalServerError || !strings.Contains(body, "wrong_spn") {
			t.Fatalf("%d %s", status, body)
		}
	})
	t.Run("replayed Authorization header", func(t *testing.T) {
		cl := adtest.Login(t, env, "alice", env["AD_ALICE_PASSWORD"])
		authz := "Negotiate " + base64.StdEncoding.EncodeToString(adtest.NegotiateBlob(t, cl, "HTTP/auth1.example.test"))
		if status, body, _ := get(t, authz); status != http.StatusFound {
			t.Fatalf("first use: %d %s", status, body)
		}
		status, body, h := get(t, authz)
		if status != http.StatusUnauthorized || !strings.Contains(body, "replay") || h.Get("WWW-Authenticate") != "Negotiate" {
			t.Fatalf("replay: %d %s", status, body)
		}
	})
	t.Run("NTLM blob", func(t *testing.T) {
		// A real NTLMSSP NEGOTIATE message, as a browser sends when it
		// cannot get a Kerberos ticket.
		status, body, h := get(t, "Negotiate TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAGFKAAAADw==")
		if status != http.StatusUnauthorized || !strings.Contains(body, "SPN") || h.Get("WWW-Authenticate") != "Negotiate" {
			t.Fatalf("%d %s %v", status, body, h)
		}
	})
	t.Run("garbage and oversized tokens", func(t *testing.T) {
		for _, authz := range []string{
			"Negotiate " + base64.StdEncoding.EncodeToString([]byte("not a token at all")),
			"Negotiate " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x60, 0x82}, 24000)),
		} {
			if status, body, _ := get(t, authz); status != http.StatusBadRequest || !strings.Contains(body, "malformed") {
				t.Fatalf("%d bytes: %d %s", len(authz), status, body)
			}
		}
	})
	t.Run("large PAC passes the header limit", func(t *testing.T) {
		cl := adtest.Login(t, env, "carol", env["AD_CAROL_PASSWORD"])
		authz := "Negotiate " + base64.StdEncoding.EncodeToString(adtest.NegotiateBlob(t, cl, "HTTP/auth1.example.test"))
		status, body, _ := get(t, authz)
		// carol is valid for Kerberos but not in the required group.
		if status != http.StatusForbidden || !strings.Contains(body, "not_in_group") {
			t.Fatalf("carol's %d-byte header: %d %s", len(authz), status, body)
		}
		t.Logf("carol's Authorization header: %d bytes", len(authz))
	})
	t.Run("HTTP/1.1 only", func(t *testing.T) {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.port), &tls.Config{
			RootCAs: a.pki.Pool, ServerName: "auth1.example.test", NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Fatalf("ALPN chose %q, want http/1.1", p)
		}
	})
}

// keytabFile writes a keytab derived from the real one by edit.
func keytabFile(t *testing.T, env map[string]string, edit func(*keytab.Keytab) *keytab.Keytab) string {
	t.Helper()
	kt, err := keytab.Load(env["AD_HTTP_KEYTAB"])
	if err != nil {
		t.Fatal(err)
	}
	b, err := edit(kt).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "edited.keytab")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestADKeytabMismatches(t *testing.T) {
	env := adtest.Env(t)
	cc := kinit(t, env, "alice", env["AD_ALICE_PASSWORD"])
	tests := []struct {
		name   string
		edit   func(*keytab.Keytab) *keytab.Keytab
		reason string
	}{
		{"keytab with only RC4", func(*keytab.Keytab) *keytab.Keytab {
			kt := keytab.New()
			for _, spn := range []string{"HTTP/auth1.example.test", "HTTP/lb.example.test"} {
				// RC4's key is the password's MD4, unsalted: this is the
				// account's real RC4 key.
				if err := kt.AddEntry(spn, env["AD_REALM"], env["AD_SVC_PASSWORD"], time.Now(), 2, 23); err != nil {
					t.Fatal(err)
				}
			}
			return kt
		}, "enctype"},
		{"keytab with an old KVNO", func(kt *keytab.Keytab) *keytab.Keytab {
			for i := range kt.Entries {
				kt.Entries[i].KVNO--
				kt.Entries[i].KVNO8--
			}
			return kt
		}, "kvno"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kt := keytabFile(t, env, tt.edit)
			a := startADNode(t, env, func(c *Config, _ *Options) { c.Keytab = kt })
			status, _, body := a.curlNegotiate(t, env, cc, "auth1.example.test")
			if status != http.StatusInternalServerError || !strings.Contains(body, tt.reason) {
				t.Fatalf("%d %s", status, body)
			}
			if rep := a.node.ready.last.Load(); rep.Ready || rep.Checks["kdc_self_test"].OK {
				t.Fatalf("readiness %+v; want the KDC self-test to fail with this keytab", rep)
			}
		})
	}
}

func TestADLDAPUnreachable(t *testing.T) {
	env := adtest.Env(t)
	// Nothing listens on port 1: the directory is down.
	a := startADNode(t, env, func(c *Config, _ *Options) { c.LDAP.URL = "ldaps://127.0.0.1:1" })
	resp, err := a.client().Get(a.url("auth1.example.test", "/readyz"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), `"ldap":false`) ||
		!regexp.MustCompile(`msg="readiness check failing" .*check=ldap err=".*127.0.0.1:1`).MatchString(a.logs.String()) {
		t.Fatalf("readyz with LDAP down: %d %s", resp.StatusCode, b)
	}
	status, _, body := a.curlNegotiate(t, env, kinit(t, env, "alice", env["AD_ALICE_PASSWORD"]), "auth1.example.test")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "ldap_unavailable") {
		t.Fatalf("login with LDAP down: %d %s", status, body)
	}
}

func TestADProxyProtocol(t *testing.T) {
	env := adtest.Env(t)
	send := func(t *testing.T, a *adNode, src string) (*http.Response, error) {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.port))
		if err != nil {
			t.Fatal(err)
		}
		hdr := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), conn.RemoteAddr())
		if _, err := hdr.WriteTo(conn); err != nil {
			t.Fatal(err)
		}
		cl := adtest.Login(t, env, "alice", env["AD_ALICE_PASSWORD"])
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: a.pki.Pool},
			DialContext:     func(context.Context, string, string) (net.Conn, error) { return conn, nil },
		}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", a.url("auth1.example.test", "/sso"), nil)
		req.Header.Set("Authorization", "Negotiate "+base64.StdEncoding.EncodeToString(adtest.NegotiateBlob(t, cl, "HTTP/auth1.example.test")))
		return tr.RoundTrip(req)
	}

	trusted := startADNode(t, env, func(c *Config, _ *Options) {
		c.ProxyProtocol = true
		c.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	resp, err := send(t, trusted, "198.51.100.7:40000")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login through a trusted PROXY header: %d", resp.StatusCode)
	}
	_, id := trusted.redeem(t, tokenOf(t, resp.Header.Get("Location")))
	if !strings.HasPrefix(id.ClientAddr, "198.51.100.7:") {
		t.Fatalf("identity's client address %q, want the PROXY header's 198.51.100.7", id.ClientAddr)
	}
	if !strings.Contains(trusted.logs.String(), "client=198.51.100.7:40000") {
		t.Fatalf("log does not show the real client address:\n%s", trusted.logs)
	}

	untrusted := startADNode(t, env, func(c *Config, _ *Options) {
		c.ProxyProtocol = true
		c.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	})
	if resp, err := send(t, untrusted, "198.51.100.7:40000"); err == nil {
		resp.Body.Close()
		t.Fatalf("a PROXY header from an untrusted peer was accepted: %d", resp.StatusCode)
	}
}

func TestADNodeClockOff(t *testing.T) {
	env := adtest.Env(t)
	cc := kinit(t, env, "alice", env["AD_ALICE_PASSWORD"])
	for _, tt := range []struct {
		name   string
		offset time.Duration
		reason string
	}{
		// The node's clock runs 10 minutes ahead of the domain's.
		{"skewed", 10 * time.Minute, "clock_skew"},
		// 11 hours ahead: alice's 10-hour ticket has expired by the node's clock.
		{"ticket expired", 11 * time.Hour, "ticket_expired"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := startADNode(t, env, func(_ *Config, o *Options) {
				o.Now = func() time.Time { return time.Now().Add(tt.offset) }
			})
			rep := a.node.ready.last.Load()
			if rep.Ready || rep.Checks["clock"].OK || rep.ClockOffset > -tt.offset+5*time.Second {
				t.Fatalf("readiness %+v; want the clock check to fail with an offset near %v", rep, -tt.offset)
			}
			status, _, body := a.curlNegotiate(t, env, cc, "auth1.example.test")
			if status != http.StatusUnauthorized || !strings.Contains(body, tt.reason) {
				t.Fatalf("%d %s", status, body)
			}
		})
	}
}

func TestADRedeemWithClientCertificate(t *testing.T) {
	env := adtest.Env(t)
	appPKI := adtest.NewPKI(t, "demoapp.example.test")
	a := startADNode(t, env, func(c *Config, _ *Options) {
		c.ClientCAFile = appPKI.CAFile
		c.APIClients = append(c.APIClients, APIClient{Name: "certapp", Key: "another-key-0123456789", CertName: "demoapp.example.test"})
	})
	cl := adtest.Login(t, env, "alice", env["AD_ALICE_PASSWORD"])
	req, _ := http.NewRequest("GET", a.url("auth1.example.test", "/sso"), nil)
	req.Header.Set("Authorization", "Negotiate "+base64.StdEncoding.EncodeToString(adtest.NegotiateBlob(t, cl, "HTTP/auth1.example.test")))
	resp, err := a.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	token := tokenOf(t, resp.Header.Get("Location"))

	// redeemWith returns the status, or 0 when the handshake failed.
	redeemWith := func(pki *adtest.PKI) int {
		c := a.client()
		if pki != nil {
			cert, err := tls.LoadX509KeyPair(pki.CertFile, pki.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			c.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
		}
		body := strings.NewReader(`{"token":"` + token + `"}`)
		req, _ := http.NewRequest("POST", a.url("auth1.example.test", "/api/v1/tokens/redeem"), body)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := redeemWith(nil); code != http.StatusUnauthorized {
		t.Fatalf("redeem without key or certificate: %d, want 401", code)
	}
	other := adtest.NewPKI(t, "demoapp.example.test")
	if code := redeemWith(&other); code != 0 {
		t.Fatalf("a client certificate from an untrusted CA: %d, want the handshake refused", code)
	}
	if code := redeemWith(&appPKI); code != http.StatusOK {
		t.Fatalf("redeem with the application's client certificate: %d, want 200", code)
	}
}

// tcpForwarder relays a loopback port to another address, and can be
// stopped (listener and every relayed connection closed) and started again
// on the same port: a directory server going down and coming back.
type tcpForwarder struct {
	t      *testing.T
	target string
	addr   string
	// relay copies between a client connection and its upstream; nil
	// means as is.
	relay func(c, up net.Conn)
	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
}

func newTCPForwarder(t *testing.T, target string) *tcpForwarder {
	f := &tcpForwarder{t: t, target: target, addr: "127.0.0.1:0"}
	f.start()
	t.Cleanup(f.stop)
	return f
}

func (f *tcpForwarder) start() {
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.ln, f.addr = ln, ln.Addr().String()
	f.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", f.target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			if f.relay != nil {
				f.relay(c, up)
				continue
			}
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

func (f *tcpForwarder) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

func TestADLDAPStopsAndComesBack(t *testing.T) {
	env := adtest.Env(t)
	u, err := url.Parse(env["AD_LDAPS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	ldapFwd := newTCPForwarder(t, u.Host)
	a := startADNode(t, env, func(c *Config, _ *Options) { c.LDAP.URL = "ldaps://" + ldapFwd.addr })
	cc := kinit(t, env, "alice", env["AD_ALICE_PASSWORD"])
	login := func() (int, string) {
		status, _, body := a.curlNegotiate(t, env, cc, "auth1.example.test")
		return status, body
	}
	if status, body := login(); status != http.StatusFound {
		t.Fatalf("login with the directory up: %d %s", status, body)
	}

	// The directory goes away while the node holds pooled connections to it.
	ldapFwd.stop()
	if status, body := login(); status != http.StatusServiceUnavailable || !strings.Contains(body, "ldap_unavailable") {
		t.Fatalf("login with the directory down: %d %s", status, body)
	}
	if rep := a.node.checkNow(context.Background()); rep.Ready || rep.Checks["ldap"].OK {
		t.Fatalf("readiness with the directory down: %+v", rep)
	}

	ldapFwd.start()
	if status, body := login(); status != http.StatusFound {
		t.Fatalf("login after the directory came back: %d %s", status, body)
	}
	if rep := a.node.checkNow(context.Background()); !rep.Ready {
		t.Fatalf("readiness after the directory came back: %+v", rep)
	}
}
