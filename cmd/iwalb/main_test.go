package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	neturl "net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/config"
	"github.com/iwalb/iwalb/cmd/iwalb/internal/configtest"
	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/internal/testpki"
	"github.com/iwalb/iwalb/l4"
	"github.com/iwalb/iwalb/lb"
)

// authNodeYAML is a valid authnode section; validConfig writes the files
// it names.
const authNodeYAML = `authnode:
  fqdn: auth1.example.test
  listen: 127.0.0.1:8443
  tls: {cert: tls/auth1.pem, key: tls/auth1.key}
  application_url: https://app.example.test/sso/callback
  kerberos: {keytab: http.keytab, krb5_conf: krb5.conf, realm: EXAMPLE.TEST, account: svc_http}
  ldap:
    url: ldaps://127.0.0.1:636
    bind_dn: CN=svc_ldap,CN=Users,DC=example,DC=test
    bind_password_file: bind
    base_dn: DC=example,DC=test
  api:
    clients: [{name: app, key_file: app-key}]
`

// validConfig writes a valid configuration and the files it names, and
// beside it bad.yaml, the same with two problems, at lines 2 and 4.
func validConfig(t *testing.T) (valid, invalid string) {
	t.Helper()
	dir := t.TempDir()
	testpki.NewCA(t, "iwalb test CA").Issue(t, "auth1.example.test").WriteFiles(t, dir, "tls/auth1.pem", "tls/auth1.key")
	configtest.WriteKeytab(t, dir, "http.keytab", "EXAMPLE.TEST", "HTTP/auth1.example.test")
	configtest.WriteFile(t, dir, "krb5.conf", []byte(configtest.Krb5Conf))
	configtest.WriteFile(t, dir, "bind", []byte("SvcLdap-Passw0rd1\n"))
	configtest.WriteFile(t, dir, "app-key", []byte("0123456789abcdef0123456789abcdef\n"))
	valid = configtest.WriteFile(t, dir, "iwalb.yaml", []byte(authNodeYAML))
	invalid = configtest.WriteFile(t, dir, "bad.yaml", []byte("log:\n  level: loud\nmetrics:\n  listen: localhost\n"+authNodeYAML))
	return valid, invalid
}

func TestRun(t *testing.T) {
	valid, invalid := validConfig(t)
	dir := filepath.Dir(valid)
	configtest.WriteKeytab(t, dir, "open.keytab", "EXAMPLE.TEST", "HTTP/auth1.example.test")
	if err := os.Chmod(filepath.Join(dir, "open.keytab"), 0o644); err != nil {
		t.Fatal(err)
	}
	openKeytab := configtest.WriteFile(t, dir, "open.yaml", []byte(strings.Replace(authNodeYAML, "keytab: http.keytab", "keytab: open.keytab", 1)))
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     []string // substrings, in order
		stderr     []string
		wantQuiet  bool // nothing on stderr
		onlyStdout string
	}{
		{name: "no command", args: nil, code: 2, stderr: []string{"usage:", "iwalb run -config FILE"}},
		{name: "unknown command", args: []string{"serve"}, code: 2, stderr: []string{`iwalb: unknown command "serve"`, "usage:"}},
		{name: "unknown flag", args: []string{"check", "-conf", valid}, code: 2, stderr: []string{"flag provided but not defined: -conf", "usage:"}},
		{name: "check without -config", args: []string{"check"}, code: 2, stderr: []string{"iwalb check: missing -config FILE", "usage:"}},
		{name: "run without -config", args: []string{"run"}, code: 2, stderr: []string{"iwalb run: missing -config FILE", "usage:"}},
		{name: "extra argument", args: []string{"check", "-config", valid, "more"}, code: 2, stderr: []string{`iwalb check: unexpected argument "more"`}},
		{name: "version with an argument", args: []string{"version", "-v"}, code: 2, stderr: []string{`unexpected argument "-v"`}},
		{name: "help", args: []string{"help"}, code: 0, stdout: []string{"usage:"}, wantQuiet: true},
		{name: "check valid", args: []string{"check", "-config", valid}, code: 0, onlyStdout: valid + ": ok\n", wantQuiet: true},
		{
			name: "check invalid", args: []string{"check", "-config", invalid}, code: 1, wantQuiet: true,
			onlyStdout: invalid + `:2: log.level: unknown level "loud"; use debug, info, warn or error` + "\n" +
				invalid + `:4: metrics.listen: "localhost" is not host:port (like 127.0.0.1:8443 or :8443)` + "\n",
		},
		{
			name: "check unreadable", args: []string{"check", "-config", filepath.Join(t.TempDir(), "none.yaml")}, code: 1,
			stdout: []string{"none.yaml: cannot read: no such file or directory"}, wantQuiet: true,
		},
		{
			name: "run invalid refuses to start", args: []string{"run", "-config", invalid}, code: 2,
			stderr: []string{invalid + `:2: log.level: unknown level "loud"`, invalid + `:4: metrics.listen: "localhost" is not host:port`},
		},
		{name: "version", args: []string{"version"}, code: 0, stdout: []string{"iwalb dev\n", "go go1."}, wantQuiet: true},
		{
			name: "check warns of a keytab open to others", args: []string{"check", "-config", openKeytab}, code: 0, wantQuiet: true,
			stdout: []string{openKeytab + `:`, `: warning: authnode.kerberos.keytab: "open.keytab"`, "(mode 0644)", openKeytab + ": ok\n"},
		},
		{
			name: "run refuses a keytab open to others", args: []string{"run", "-config", openKeytab}, code: 2,
			stderr: []string{`: warning: authnode.kerberos.keytab: "open.keytab"`, openKeytab + ": refused: files that hold secrets must not be open to group or others"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			if tt.onlyStdout != "" && stdout.String() != tt.onlyStdout {
				t.Errorf("stdout = %q, want %q", stdout.String(), tt.onlyStdout)
			}
			containsInOrder(t, "stdout", stdout.String(), tt.stdout)
			containsInOrder(t, "stderr", stderr.String(), tt.stderr)
			if tt.wantQuiet && stderr.Len() > 0 {
				t.Errorf("stderr = %q, want nothing", stderr.String())
			}
		})
	}
}

func containsInOrder(t *testing.T, name, got string, want []string) {
	t.Helper()
	rest := got
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("%s = %q, want it to contain %q (in order)", name, got, w)
			return
		}
		rest = rest[i+len(w):]
	}
}

func TestServeMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	srv := newPrivateServer("metrics", config.PrivateListener{MaxConns: 4}, metricsHandler(reg), newPrivateMetrics(reg), discardLogger())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.serve(ctx, []net.Listener{ln}) }()

	url := "http://" + ln.Addr().String() + "/metrics"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "go_goroutines ") {
		t.Errorf("GET /metrics = %d, body without go_goroutines:\n%.300s", resp.StatusCode, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serveMetrics after shutdown = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serveMetrics did not shut down")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("metrics listener still accepts connections after shutdown")
	}
}

// TestPrivateListenerLimits floods the metrics listener: connections over
// max_conns are reset and counted, the ones held open do not stay forever
// (a keep-alive connection idle past the idle timeout is closed), and
// once they are gone a scrape works again.
func TestPrivateListenerLimits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	const maxConns = 8
	const idle = 300 * time.Millisecond
	srv := newPrivateServer("metrics", config.PrivateListener{MaxConns: maxConns}, metricsHandler(reg), newPrivateMetrics(reg), discardLogger())
	srv.idleTimeout = idle
	go srv.serve(t.Context(), []net.Listener{ln})
	addr := ln.Addr().String()

	// Each held connection has sent one request and read its answer: an
	// idle keep-alive connection, as a client that stopped scraping leaves.
	held := make([]net.Conn, maxConns)
	for i := range held {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		held[i] = c
	}
	// The flood: every connection over the cap is reset without an answer.
	for i := range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			continue // a reset can already show at connect
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			t.Fatalf("flood connection %d was served with %d connections open, max_conns %d", i, maxConns, maxConns)
		}
		c.Close()
	}
	// The listener resets a connection before it counts it: the last
	// count may come a moment after the client saw the reset.
	refused := func() float64 {
		return testutil.ToFloat64(srv.metrics.refused.WithLabelValues("metrics", "over_limit"))
	}
	for deadline := time.Now().Add(5 * time.Second); refused() < 20 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := refused(); got != 20 {
		t.Errorf("refused connections counted: %v, want 20", got)
	}

	// The idle connections are closed by the server after the idle timeout.
	for i, c := range held {
		c.SetReadDeadline(time.Now().Add(idle + 10*time.Second))
		start := time.Now()
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("idle connection %d: read = %v, want EOF (closed by the server)", i, err)
		}
		if waited := time.Since(start); waited > idle+5*time.Second {
			t.Fatalf("idle connection %d closed after %v, idle timeout %v", i, waited, idle)
		}
	}
	// With their slots free, a scrape works again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scrape after the idle connections were closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestServeShutsDown starts the auth node and the metrics server from a
// file, checks that /metrics answers, and that cancelling (what SIGTERM
// does) stops everything with exit code 0.
func TestServeShutsDown(t *testing.T) {
	valid, _ := validConfig(t)
	node, metrics := testkit.FreePort(t), testkit.FreePort(t)
	text := strings.Replace(authNodeYAML, "127.0.0.1:8443", node, 1)
	path := configtest.WriteFile(t, filepath.Dir(valid), "serve.yaml", []byte("metrics: {listen: \""+metrics+"\"}\n"+text))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr testkit.Buffer
	done := make(chan int, 1)
	go func() { done <- serve(ctx, path, nil, &stderr) }()

	var resp *http.Response
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = http.Get("http://" + metrics + "/metrics"); err == nil {
			break
		}
	}
	if err != nil {
		cancel()
		code := <-done
		t.Fatalf("metrics never answered: %v (exit %d)\n%s", err, code, stderr.String())
	}
	resp.Body.Close()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exit code = %d, want 0\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not shut down")
	}
}

// tlsBackend is an HTTPS server standing in for an auth node: it accepts a
// PROXY header (as a node with proxy_protocol enabled does), answers
// /readyz, and /whoami with its name and the client address it sees. Its
// certificate, which ca issued, names name.example.test and lb.example.test.
type tlsBackend struct {
	name string
	addr string
	cert []byte // DER, to recognise it on the client's side
}

func startTLSBackend(t *testing.T, ca *testpki.Cert, name string) tlsBackend {
	t.Helper()
	cert := ca.Issue(t, name+".example.test", "lb.example.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.RemoteAddr)
	})
	srv := &http.Server{
		Handler:   mux,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert.TLS()}},
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	// USE: a header is optional, as for the balancers an auth node trusts;
	// health checks send none.
	use := func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.USE, nil }
	go srv.ServeTLS(&proxyproto.Listener{Listener: ln, ConnPolicy: use}, "", "")
	t.Cleanup(func() { srv.Close() })
	return tlsBackend{name: name, addr: ln.Addr().String(), cert: cert.X509.Raw}
}

// metricsText returns the body of GET /metrics.
func metricsText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// waitChecked waits until the pool's backends auth1 and auth2 have each
// passed a health check, as /metrics on metrics tells; it fails the test if
// iwalb (whose exit code arrives on done) exits first.
func waitChecked(t *testing.T, metrics string, done <-chan int, stopped *bool, errw *testkit.Buffer) {
	t.Helper()
	passed := regexp.MustCompile(`(?m)^iwalb_lb_backend_health_checks_total\{backend="(auth[12])",pool="authnodes",result="ok"\} [1-9]`)
	var text string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case code := <-done:
			*stopped = true
			t.Fatalf("iwalb run exited %d before serving\n%s", code, errw.String())
		default:
		}
		if resp, err := http.Get("http://" + metrics + "/metrics"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			text = string(body)
			if len(passed.FindAllString(text, -1)) == 2 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("backends never checked healthy\n%s\n%s", iwalbSeries(text), errw.String())
		}
	}
}

// served is an iwalb run that a test started with serveChecked.
type served struct {
	cancel  context.CancelFunc // stops it
	done    chan int           // its exit code
	errw    *testkit.Buffer    // its log
	stopped bool               // done has been read
}

// serveChecked runs serve on the configuration at path until the test
// ends, and returns once both backends of pool authnodes have passed a
// health check (metrics is the metrics listener's address).
func serveChecked(t *testing.T, path, metrics string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	s := &served{cancel: cancel, done: make(chan int, 1), errw: &testkit.Buffer{}}
	go func() { s.done <- serve(ctx, path, nil, s.errw) }()
	t.Cleanup(func() {
		cancel()
		if !s.stopped {
			<-s.done
		}
	})
	waitChecked(t, metrics, s.done, &s.stopped, s.errw)
	return s
}

// iwalbSeries keeps iwalb's own series of a /metrics text, for messages.
func iwalbSeries(text string) string {
	var b strings.Builder
	for l := range strings.Lines(text) {
		if strings.HasPrefix(l, "iwalb_") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// whoami asks the backend behind conn who it is, over HTTP/1.1 on the one
// TLS connection.
func whoami(t *testing.T, conn *tls.Conn, br *bufio.Reader) string {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET /whoami HTTP/1.1\r\nHost: lb.example.test\r\n\r\n"); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestRunL4Passthrough runs `iwalb run` in-process with an L4 listener in
// front of two real TLS backends: a client asking for lb.example.test gets
// the backend's own certificate and the backend sees the client's address
// (PROXY v2); /metrics shows the l4 and lb series; SIGINT stops accepting at
// once, lets the open connection finish, and exits 0.
func TestRunL4Passthrough(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "iwalb test CA")
	auth1, auth2 := startTLSBackend(t, ca, "auth1"), startTLSBackend(t, ca, "auth2")
	ca.WriteFiles(t, dir, "tls/ca.pem", "")
	roots := ca.Pool()

	front, metrics := testkit.FreePort(t), testkit.FreePort(t)
	path := configtest.WriteFile(t, dir, "l4.yaml", []byte(fmt.Sprintf(`log: {level: debug}
metrics: {listen: "%s"}
pools:
  - name: authnodes
    policy: client_ip_hash
    backends:
      - {name: auth1, addr: "%s", fqdn: auth1.example.test}
      - {name: auth2, addr: "%s", fqdn: auth2.example.test}
    health: {check: https, path: /readyz, ca_file: tls/ca.pem, interval: 500ms, timeout: 500ms, rise: 1, fall: 3}
l4:
  listeners:
    - name: public
      listen: "%s"
      routes:
        - server_names: [lb.example.test, "*.example.test"]
          pool: authnodes
          proxy_protocol: v2
`, metrics, auth1.addr, auth2.addr, front)))

	// While this test runs, SIGINT must never kill the test binary, even if
	// run has already stopped listening for it.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT)
	defer signal.Stop(sigs)

	errw := &testkit.Buffer{}
	done := make(chan int, 1)
	go func() { done <- run([]string{"run", "-config", path}, io.Discard, errw) }()
	stopped := false
	defer func() {
		if !stopped {
			syscall.Kill(os.Getpid(), syscall.SIGINT)
			<-done
		}
	}()

	// Up when both backends have passed a health check.
	waitChecked(t, metrics, done, &stopped, errw)

	conn, err := tls.Dial("tcp", front, &tls.Config{ServerName: "lb.example.test", RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("TLS through the balancer: %v\n%s", err, errw.String())
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	peer := conn.ConnectionState().PeerCertificates[0].Raw
	var picked tlsBackend
	switch {
	case bytes.Equal(peer, auth1.cert):
		picked = auth1
	case bytes.Equal(peer, auth2.cert):
		picked = auth2
	default:
		t.Fatal("the client saw a certificate that is neither backend's: TLS was not passed through")
	}
	// The backend that answers is the one whose certificate the client saw,
	// and it sees the client's own address, not the balancer's.
	if got, want := whoami(t, conn, br), picked.name+" "+conn.LocalAddr().String(); got != want {
		t.Errorf("backend says %q, want %q", got, want)
	}

	text := metricsText(t, metrics)
	for _, want := range []string{
		`iwalb_l4_connections_accepted_total{listener="public"} 1`,
		`iwalb_l4_connections_routed_total{listener="public",route="authnodes"} 1`,
		`iwalb_l4_connections_active{listener="public",route="authnodes"} 1`,
		`iwalb_l4_bytes_total{direction="client_to_backend",listener="public",route="authnodes"}`,
		`iwalb_lb_backend_up{backend="auth1",pool="authnodes"} 1`,
		`iwalb_lb_backend_up{backend="auth2",pool="authnodes"} 1`,
		`iwalb_lb_backend_picks_total{backend="` + picked.name + `",pool="authnodes"} 1`,
		`iwalb_lb_backend_active_connections{backend="` + picked.name + `",pool="authnodes"} 1`,
		`iwalb_build_info{goversion="` + runtime.Version() + `",revision="` + revision() + `",version="dev"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s\n%s", want, iwalbSeries(text))
		}
	}

	// SIGINT: the listener closes at once, the relayed connection goes on.
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", front, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the L4 listener still accepts after SIGINT")
		}
	}
	if got, want := whoami(t, conn, br), picked.name+" "+conn.LocalAddr().String(); got != want {
		t.Errorf("during the drain, backend says %q, want %q", got, want)
	}
	select {
	case code := <-done:
		stopped = true
		t.Fatalf("iwalb run exited %d while a connection was still relayed\n%s", code, errw.String())
	case <-time.After(100 * time.Millisecond):
	}

	// The client leaves: run exits 0 without waiting out the drain bound.
	start := time.Now()
	conn.Close()
	select {
	case code := <-done:
		stopped = true
		if code != 0 {
			t.Errorf("iwalb run exit code = %d, want 0\n%s", code, errw.String())
		}
		if took := time.Since(start); took > config.DefaultDrainTimeout/2 {
			t.Errorf("run took %s to stop after the last connection closed", took)
		}
	case <-time.After(config.DefaultDrainTimeout + 5*time.Second):
		t.Fatalf("iwalb run did not stop\n%s", errw.String())
	}
	if !strings.Contains(errw.String(), "msg=\"l4 drained\"") {
		t.Errorf("log lacks the drain line:\n%s", errw.String())
	}
}

// TestServeL4DrainBound shows that a connection still relayed when the
// drain bound passes is closed, and not before.
func TestServeL4DrainBound(t *testing.T) {
	// A backend that holds every connection open and notes when it ends.
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bln.Close()
	ended := make(chan time.Time, 1)
	go func() {
		c, err := bln.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c)
		ended <- time.Now()
		c.Close()
	}()
	pool, err := lb.NewPool(lb.Config{Name: "p", Backends: []lb.BackendConfig{{Name: "b", Addr: bln.Addr().String()}}}, lb.Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	router, err := l4.NewRouter(nil, &l4.Route{Name: "p", Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := l4.New(l4.Config{Name: "test", Router: router}, l4.Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const drain = 300 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- serveL4(ctx, srv, ln, drain, discardLogger()) }()

	// A client whose ClientHello is relayed and then waits for an answer
	// that never comes.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go tls.Client(c, &tls.Config{ServerName: "x.example.test"}).Handshake()
	for deadline := time.Now().Add(5 * time.Second); pool.Backends()[0].Active() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the connection never reached the backend")
		}
	}

	cancelled := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serveL4 = %v, want nil", err)
		}
	case <-time.After(drain + 5*time.Second):
		t.Fatal("serveL4 did not return after the drain bound")
	}
	select {
	case at := <-ended:
		if took := at.Sub(cancelled); took < drain {
			t.Errorf("the relayed connection was closed %s after shutdown, before the drain bound %s", took, drain)
		}
	case <-time.After(5 * time.Second):
		t.Error("the backend's connection was never closed")
	}
}

// TestRunBindErrorStartsNothing: when a listener's port is taken, run says
// which, exits 1, and releases the ports it had already bound.
func TestRunBindErrorStartsNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	first, metrics := testkit.FreePort(t), testkit.FreePort(t)
	dir := t.TempDir()
	path := configtest.WriteFile(t, dir, "l4.yaml", []byte(fmt.Sprintf(`metrics: {listen: "%s"}
pools:
  - {name: p, backends: [{name: b, addr: "127.0.0.1:9"}]}
l4:
  listeners:
    - {name: first, listen: "%s", default_pool: p}
    - {name: second, listen: "%s", default_pool: p}
`, metrics, first, busy.Addr())))
	var stderr strings.Builder
	code := run([]string{"run", "-config", path}, io.Discard, &stderr)
	if code != exitFailed {
		t.Errorf("exit code = %d, want %d", code, exitFailed)
	}
	want := fmt.Sprintf("l4 listener second: listen tcp %s: bind: address already in use", busy.Addr())
	if !strings.Contains(stderr.String(), want) || strings.Contains(stderr.String(), "iwalb started") {
		t.Errorf("stderr = %q, want %q and no start", stderr.String(), want)
	}
	for _, addr := range []string{first, metrics} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s is still bound after the failed start: %v", addr, err)
			continue
		}
		ln.Close()
	}
}

// frontDoorFiles starts two TLS backends, auth1 and auth2, and writes the
// files a front door over them needs into dir: tls/ca.pem (the CA of the
// backends' certificates, for the health checks) and tls/sso.pem with
// tls/sso.key (the front door's own certificate, whose DER is sso). roots
// trusts that CA, which issued all three.
func frontDoorFiles(t *testing.T, dir string) (auth1, auth2 tlsBackend, sso []byte, roots *x509.CertPool) {
	t.Helper()
	ca := testpki.NewCA(t, "iwalb test CA")
	auth1, auth2 = startTLSBackend(t, ca, "auth1"), startTLSBackend(t, ca, "auth2")
	ca.WriteFiles(t, dir, "tls/ca.pem", "")
	ssoCert := ca.Issue(t, "sso.example.test")
	ssoCert.WriteFiles(t, dir, "tls/sso.pem", "tls/sso.key")
	return auth1, auth2, ssoCert.X509.Raw, ca.Pool()
}

// TestRunL7Redirect runs the front doors in-process over two real HTTPS
// nodes with https health checks: the L7 front door answers GET with 302
// and POST with 307 to a node's own name and port, path and query kept; its
// plain-HTTP listener answers 301; one L4 port hands sso.example.test to the
// front door (the client sees the front door's certificate and a redirect)
// and passes lb.example.test through (the client sees a node's
// certificate); /metrics shows the l7redirect series; shutdown exits 0 and
// frees every port.
func TestRunL7Redirect(t *testing.T) {
	dir := t.TempDir()
	auth1, auth2, ssoCert, roots := frontDoorFiles(t, dir)
	ssoLeaf, err := x509.ParseCertificate(ssoCert)
	if err != nil {
		t.Fatal(err)
	}
	nodeTarget := map[string]string{ // Location host:port → node
		"auth1.example.test:" + port(t, auth1.addr): "auth1",
		"auth2.example.test:" + port(t, auth2.addr): "auth2",
	}

	front7, plain, front4, metrics := testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t)
	path := configtest.WriteFile(t, dir, "l7.yaml", []byte(fmt.Sprintf(`log: {level: debug}
metrics: {listen: "%s"}
pools:
  - name: authnodes
    policy: client_ip_hash
    backends:
      - {name: auth1, addr: "%s", fqdn: auth1.example.test}
      - {name: auth2, addr: "%s", fqdn: auth2.example.test}
    health: {check: https, path: /readyz, ca_file: tls/ca.pem, interval: 500ms, timeout: 500ms, rise: 1, fall: 3}
l7redirect:
  listeners:
    - name: sso
      listen: "%s"
      http_redirect_listen: "%s"
      certificates: [{cert: tls/sso.pem, key: tls/sso.key}]
      names: [sso.example.test]
      rules:
        - {host: sso.example.test, path_prefix: /, pool: authnodes}
l4:
  listeners:
    - name: public
      listen: "%s"
      routes:
        - {server_names: [sso.example.test], l7redirect: sso}
        - {server_names: [lb.example.test], pool: authnodes}
`, metrics, auth1.addr, auth2.addr, front7, plain, front4)))

	srv := serveChecked(t, path, metrics)
	errw := srv.errw
	var text string

	// A browser-like client: every name resolves to the address given.
	client := func(addr string) *http.Client {
		return &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: roots},
				DisableKeepAlives: true,
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, network, addr)
				},
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	redirect := func(c *http.Client, method, url string) (int, string, *tls.ConnectionState) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader("a=1"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", method, url, err, errw.String())
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location"), resp.TLS
	}
	checkNode := func(what, loc string) {
		t.Helper()
		u, err := neturl.Parse(loc)
		if err != nil || u.Scheme != "https" || nodeTarget[u.Host] == "" || u.RequestURI() != "/app?x=1" {
			t.Errorf("%s: Location %q, want https://<node fqdn>:<node port>/app?x=1 (nodes: %v)", what, loc, nodeTarget)
		}
	}
	ssoPort := port(t, front7)
	direct := client(front7)
	code, loc, st := redirect(direct, http.MethodGet, "https://sso.example.test:"+ssoPort+"/app?x=1")
	if code != http.StatusFound {
		t.Errorf("GET through the L7 listener = %d, want 302", code)
	}
	checkNode("GET", loc)
	if st == nil || !bytes.Equal(st.PeerCertificates[0].Raw, ssoCert) {
		t.Error("the L7 listener did not present the front door's certificate")
	}
	code, loc, _ = redirect(direct, http.MethodPost, "https://sso.example.test:"+ssoPort+"/app?x=1")
	if code != http.StatusTemporaryRedirect {
		t.Errorf("POST through the L7 listener = %d, want 307", code)
	}
	checkNode("POST", loc)

	code, loc, _ = redirect(client(plain), http.MethodGet, "http://sso.example.test:"+port(t, plain)+"/app?x=1")
	if want := "https://sso.example.test:" + ssoPort + "/app?x=1"; code != http.StatusMovedPermanently || loc != want {
		t.Errorf("plain HTTP answer = %d %q, want 301 %q", code, loc, want)
	}

	// One L4 port, both patterns.
	code, loc, st = redirect(client(front4), http.MethodGet, "https://sso.example.test/app?x=1")
	if code != http.StatusFound {
		t.Errorf("GET sso.example.test through the L4 port = %d, want 302", code)
	}
	checkNode("GET through L4", loc)
	if st == nil || !bytes.Equal(st.PeerCertificates[0].Raw, ssoCert) {
		t.Error("sso.example.test through the L4 port: not the front door's certificate")
	}
	conn, err := tls.Dial("tcp", front4, &tls.Config{ServerName: "lb.example.test", RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("lb.example.test through the L4 port: %v\n%s", err, errw.String())
	}
	peer := conn.ConnectionState().PeerCertificates[0].Raw
	if !bytes.Equal(peer, auth1.cert) && !bytes.Equal(peer, auth2.cert) {
		t.Error("lb.example.test through the L4 port: not a node's certificate, so not passed through")
	}
	if got := whoami(t, conn, bufio.NewReader(conn)); !strings.HasPrefix(got, "auth") {
		t.Errorf("passed-through backend says %q", got)
	}
	conn.Close()

	text = metricsText(t, metrics)
	for _, want := range []string{
		`iwalb_l7redirect_redirects_total{frontdoor="sso",node="`,
		`rule="sso.example.test/",status="302"}`,
		`rule="sso.example.test/",status="307"} 1`,
		`iwalb_l7redirect_request_duration_seconds_count{frontdoor="sso",status="302"} 2`,
		`iwalb_l4_connections_routed_total{listener="public",route="l7redirect/sso"} 1`,
		`iwalb_l4_connections_routed_total{listener="public",route="authnodes"} 1`,
		`iwalb_tls_certificate_expiry_timestamp_seconds{name="sso.example.test",server="l7redirect/sso"} ` +
			strconv.FormatFloat(float64(ssoLeaf.NotAfter.Unix()), 'g', -1, 64),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s\n%s", want, iwalbSeries(text))
		}
	}

	// A connection still in its ClientHello peek when shutdown begins is
	// answered all the same by the front door its name routes to.
	accepted := func() string {
		m := regexp.MustCompile(`(?m)^iwalb_l4_connections_accepted_total\{listener="public"\} (\d+)$`).FindStringSubmatch(metricsText(t, metrics))
		if m == nil {
			return ""
		}
		return m[1]
	}
	before := accepted()
	pending, err := net.Dial("tcp", front4)
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Close()
	for deadline := time.Now().Add(5 * time.Second); accepted() == before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the L4 listener did not accept the pending connection")
		}
	}
	srv.cancel()
	time.Sleep(100 * time.Millisecond) // shutdown under way
	tc := tls.Client(pending, &tls.Config{ServerName: "sso.example.test", RootCAs: roots, NextProtos: []string{"http/1.1"}})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(tc, "GET /app?x=1 HTTP/1.1\r\nHost: sso.example.test\r\nConnection: close\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(tc), nil); err != nil || resp.StatusCode != http.StatusFound {
		t.Errorf("a connection in its peek at shutdown: %v, %v; want a 302 from the front door", resp, err)
	}

	srv.cancel()
	select {
	case code := <-srv.done:
		srv.stopped = true
		if code != 0 {
			t.Errorf("exit code = %d, want 0\n%s", code, errw.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("iwalb run did not stop\n%s", errw.String())
	}
	for _, addr := range []string{front7, plain, front4, metrics} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s still bound after shutdown: %v", addr, err)
			continue
		}
		ln.Close()
	}
}

// port returns the port of a host:port.
func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProxyListener: a PROXY header from a trusted address replaces the
// client address; from anyone else it closes the connection; without a
// header the connection is served as it is; with the PROXY protocol off
// (trusted "") nothing is read as a header, the client is the TCP peer.
func TestProxyListener(t *testing.T) {
	tests := []struct {
		name      string
		trusted   string
		header    bool
		wantAddr  string // "" when the connection must be refused
		wantClose bool
	}{
		{"trusted with header", "127.0.0.1/32", true, "192.0.2.9:4242", false},
		{"untrusted with header", "10.0.0.0/8", true, "", true},
		{"trusted without header", "127.0.0.1/32", false, "127.0.0.1", false},
		{"protocol off, with header", "", true, "127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var policy *[]netip.Prefix
			if tt.trusted != "" {
				policy = &[]netip.Prefix{netip.MustParsePrefix(tt.trusted)}
			}
			ln := proxyListener(raw, func() *[]netip.Prefix { return policy })
			defer ln.Close()
			got := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					got <- "accept: " + err.Error()
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				// The header is read on the first Read.
				b := make([]byte, 5)
				if _, err := io.ReadFull(c, b); err != nil {
					got <- "closed"
					return
				}
				got <- c.RemoteAddr().String()
			}()
			c, err := net.Dial("tcp", raw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tt.header {
				src := net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.9:4242"))
				h := proxyproto.HeaderProxyFromAddrs(2, src, c.RemoteAddr())
				if _, err := h.WriteTo(c); err != nil {
					t.Fatal(err)
				}
			}
			io.WriteString(c, "hello")
			var addr string
			select {
			case addr = <-got:
			case <-time.After(5 * time.Second):
				t.Fatal("no connection")
			}
			switch {
			case tt.wantClose && addr != "closed":
				t.Errorf("connection from an untrusted address with a PROXY header served as %q, want closed", addr)
			case !tt.wantClose && !strings.HasPrefix(addr, tt.wantAddr):
				t.Errorf("client address = %q, want %s", addr, tt.wantAddr)
			}
		})
	}
}
