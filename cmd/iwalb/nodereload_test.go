package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/configtest"
	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/internal/testpki"
)

// TestReloadAuthNode runs `iwalb run` with an auth node and reloads it with
// `iwalb reload`: the node takes its new SSO path and the certificate
// written over its files, on the listener it has; a reload that moves its
// listener is refused, naming the key, and the node serves on.
func TestReloadAuthNode(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "iwalb test CA")
	ca.Issue(t, "auth1.example.test").WriteFiles(t, dir, "tls/auth1.pem", "tls/auth1.key")
	configtest.WriteKeytab(t, dir, "http.keytab", "EXAMPLE.TEST", "HTTP/auth1.example.test")
	configtest.WriteFile(t, dir, "krb5.conf", []byte(configtest.Krb5Conf))
	configtest.WriteFile(t, dir, "bind", []byte("not-a-real-password\n"))
	configtest.WriteFile(t, dir, "app-key", []byte("0123456789abcdef0123456789abcdef\n"))
	node, admin := testkit.FreePort(t), testkit.FreePort(t)
	file := func(listen, ssoPath string) []byte {
		return []byte(fmt.Sprintf(`admin: {listen: %q}
authnode:
  fqdn: auth1.example.test
  listen: %q
  sso_path: %s
  tls: {cert: tls/auth1.pem, key: tls/auth1.key}
  application_url: https://app.example.test/sso/callback
  kerberos: {keytab: http.keytab, krb5_conf: krb5.conf, realm: EXAMPLE.TEST, account: svc_http, self_test_interval: 1h}
  ldap:
    url: ldaps://127.0.0.1:1
    bind_dn: CN=svc_ldap,CN=Users,DC=example,DC=test
    bind_password_file: bind
    base_dn: DC=example,DC=test
  api:
    clients: [{name: app, key_file: app-key}]
`, admin, listen, ssoPath))
	}
	path := configtest.WriteFile(t, dir, "iwalb.yaml", file(node, "/sso"))

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT)
	defer signal.Stop(sigs)
	var errw testkit.Buffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"run", "-config", path}, io.Discard, &errw) }()
	defer func() {
		syscall.Kill(os.Getpid(), syscall.SIGINT)
		<-done
	}()

	// get asks path of the node on a new connection, trusting roots only.
	get := func(roots *x509.CertPool, path string) (int, error) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, node)
			},
		}}
		resp, err := c.Get("https://auth1.example.test" + path)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, err := get(ca.Pool(), "/healthz"); err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node does not answer\n%s", errw.String())
		}
	}
	if code, err := get(ca.Pool(), "/sso"); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("/sso before the reload: %d %v; want 401 (Negotiate)", code, err)
	}

	reload := func() (int, string) {
		var out, errOut bytes.Buffer
		code := run([]string{"reload", "-config", path}, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	ca2 := testpki.NewCA(t, "iwalb test CA 2")
	ca2.Issue(t, "auth1.example.test").WriteFiles(t, dir, "tls/auth1.pem", "tls/auth1.key")
	configtest.WriteFile(t, dir, "iwalb.yaml", file(node, "/signin"))
	if code, out := reload(); code != 0 {
		t.Fatalf("iwalb reload: exit %d: %s\n%s", code, out, errw.String())
	}
	if code, err := get(ca2.Pool(), "/signin"); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("/signin after the reload, with the new certificate: %d %v; want 401 (Negotiate)", code, err)
	}
	if code, err := get(ca2.Pool(), "/sso"); err != nil || code != http.StatusNotFound {
		t.Fatalf("/sso after the reload: %d %v; want 404", code, err)
	}
	if _, err := get(ca.Pool(), "/healthz"); err == nil {
		t.Fatal("a new connection still gets the old certificate")
	}

	configtest.WriteFile(t, dir, "iwalb.yaml", file(testkit.FreePort(t), "/signin"))
	code, out := reload()
	if code != 1 || !strings.Contains(out, "authnode.listen") || !strings.Contains(out, "restart") {
		t.Fatalf("reload moving the node: exit %d: %s; want it refused, naming authnode.listen", code, out)
	}
	if code, err := get(ca2.Pool(), "/signin"); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("/login after the refused reload: %d %v", code, err)
	}
}
