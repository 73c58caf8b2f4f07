package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/configtest"
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
	configtest.WriteCert(t, dir, "tls/auth1.pem", "tls/auth1.key", "auth1.example.test", time.Now().Add(time.Hour))
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

func TestRunRoles(t *testing.T) {
	errBoom := errors.New("boom")
	untilCancelled := func(ctx context.Context) error { <-ctx.Done(); return nil }
	tests := []struct {
		name    string
		roles   []role
		cancel  bool // cancel the parent context (a signal)
		wantErr string
	}{
		{
			name:   "all stop on shutdown",
			roles:  []role{{"a", untilCancelled}, {"b", untilCancelled}},
			cancel: true,
		},
		{
			name:    "a failing role stops the others",
			roles:   []role{{"a", untilCancelled}, {"b", func(context.Context) error { return errBoom }}},
			wantErr: "b: boom",
		},
		{
			name:    "a role that returns early has failed",
			roles:   []role{{"a", untilCancelled}, {"b", func(context.Context) error { return nil }}},
			wantErr: "b: stopped before shutdown",
		},
		{
			name: "only the first error is returned",
			roles: []role{
				{"a", func(context.Context) error { return errBoom }},
				{"b", func(ctx context.Context) error { <-ctx.Done(); return errors.New("late") }},
			},
			wantErr: "a: boom",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancel {
				time.AfterFunc(10*time.Millisecond, cancel)
			}
			done := make(chan error, 1)
			go func() { done <- runRoles(ctx, tt.roles) }()
			select {
			case err := <-done:
				if got := errString(err); got != tt.wantErr {
					t.Errorf("runRoles = %q, want %q", got, tt.wantErr)
				}
				if tt.wantErr == "a: boom" && !errors.Is(err, errBoom) {
					t.Errorf("runRoles error %v does not wrap the role's error", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("runRoles did not return")
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestServeMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serveMetrics(ctx, ln, reg, discardLogger()) }()

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

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeShutsDown starts the auth node and the metrics server from a
// file, checks that /metrics answers, and that cancelling (what SIGTERM
// does) stops everything with exit code 0.
func TestServeShutsDown(t *testing.T) {
	valid, _ := validConfig(t)
	node, metrics := freePort(t), freePort(t)
	text := strings.Replace(authNodeYAML, "127.0.0.1:8443", node, 1)
	path := configtest.WriteFile(t, filepath.Dir(valid), "serve.yaml", []byte("metrics: {listen: \""+metrics+"\"}\n"+text))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr strings.Builder
	done := make(chan int, 1)
	go func() { done <- serve(ctx, path, &syncWriter{w: &stderr}) }()

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

// syncWriter serialises writes from the roles' loggers.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
