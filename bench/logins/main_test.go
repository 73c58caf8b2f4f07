package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
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
)

func TestBadFlagsGiveClearErrors(t *testing.T) {
	ok := []string{"-url", "https://auth1.example.test:8443", "-user", "alice:pw"}
	with := func(extra ...string) []string { return append(append([]string{}, ok...), extra...) }
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-user", "alice:pw"}, "-url is required"},
		{[]string{"-url", "http://auth1.example.test", "-user", "a:b"}, "want https://HOST[:PORT]"},
		{[]string{"-url", "https://auth1.example.test/sso", "-user", "a:b"}, "no path"},
		{[]string{"-url", "https://auth1.example.test"}, "give at least one account"},
		{with("-user", "alice"), `-user "alice": want USER:PASSWORD`},
		{with("-user", "alice:"), "want USER:PASSWORD"},
		{with("-c", "0"), "-c 0: want 1 to 1024"},
		{with("-c", "5000"), "-c 5000"},
		{with("-d", "0s"), "-d 0s"},
		{with("-d", "2h"), "-d 2h0m0s: want more than 0 and at most 1h0m0s"},
		{with("-warmup", "-1s"), "-warmup -1s"},
		{with("-timeout", "0s"), "-timeout 0s"},
		{with("-max", "0"), "-max 0: want 1 to 10000000"},
		{with("-max", "20000000"), "-max 20000000"},
		{with("-node-pid", "-3"), "-node-pid -3"},
		{with("-metrics", "127.0.0.1:9101"), `-metrics "127.0.0.1:9101"`},
		{with("-connect", "127.0.0.1"), `-connect "127.0.0.1": want HOST:PORT`},
		{with("-sso-path", "sso"), "must start with /"},
		{with("extra"), `unexpected argument "extra"`},
		{with("-nosuchflag"), "flag provided but not defined: -nosuchflag"},
		{with("-d", "twenty"), `invalid value "twenty" for flag -d`},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2", tc.args, code)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: stderr %q lacks %q", tc.args, stderr.String(), tc.want)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "-node-pid") {
		t.Errorf("-h: exit %d, output %q", code, stderr.String())
	}
}

func TestDefaults(t *testing.T) {
	o, err := parseFlags([]string{"-url", "https://auth1.example.test", "-user", "alice@EXAMPLE.TEST:pa:ss"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.connect != "auth1.example.test:443" || o.spn != "HTTP/auth1.example.test" || o.ssoPath != "/sso" ||
		o.concurrency != 8 || o.duration != 20*time.Second || o.warmup != 5*time.Second {
		t.Fatalf("defaults: %+v", o)
	}
	if c := o.creds[0]; c.user != "alice@EXAMPLE.TEST" || c.password != "pa:ss" {
		t.Fatalf("credential %+v: the password is everything after the first colon", c)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestUnreachableNodeIsAClearError(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "krb5.conf")
	if err := os.WriteFile(conf, []byte("[libdefaults]\n default_realm = EXAMPLE.TEST\n[realms]\n EXAMPLE.TEST = {\n  kdc = 127.0.0.1:1\n }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := closedPort(t)
	var stdout, stderr bytes.Buffer
	code := run([]string{"-url", "https://auth1.example.test:8443", "-connect", addr, "-krb5-conf", conf, "-user", "alice:pw"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "cannot reach the auth node at https://auth1.example.test:8443/sso (dialling "+addr+")") ||
		!strings.Contains(stderr.String(), "connection refused") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	code = run([]string{"-url", "https://auth1.example.test", "-krb5-conf", filepath.Join(dir, "none"), "-user", "alice:pw"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "load krb5 config") {
		t.Fatalf("missing krb5.conf: exit %d, stderr %q", code, stderr.String())
	}
}

// fakeHeaders makes headers "Negotiate ok" and, every fifth, "Negotiate
// down", which the fake node answers as a DC that is down.
type fakeHeaders struct{ n atomic.Int64 }

func (f *fakeHeaders) header() (string, error) {
	if f.n.Add(1)%5 == 0 {
		return "Negotiate down", nil
	}
	return "Negotiate ok", nil
}

// fakeNode answers like an auth node: 302 for a login, the failure page
// for the rest. It counts the connections it accepted.
func fakeNode(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	conns := new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Negotiate ok":
			http.Redirect(w, r, "https://app.example.test/cb?ssoToken=x", http.StatusFound)
		case "Negotiate down":
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "<p>Reason: <code>ldap_unavailable</code> (HTTP 503)</p>")
		case "Negotiate hangup":
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
		default:
			w.Header().Set("WWW-Authenticate", "Negotiate")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, "<p>Reason: <code>no_negotiate</code> (HTTP 401)</p>")
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, conns
}

func fakeWorkers(srv *httptest.Server, n int, h headerMaker) []*worker {
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	u, _ := url.Parse(srv.URL)
	ws := make([]*worker, n)
	for i := range ws {
		ws[i] = &worker{hc: newHTTPClient(u.Host, u.Hostname(), roots, 10*time.Second), url: srv.URL + "/sso", blobs: h}
	}
	return ws
}

func TestWorkersKeepAliveAndCountFailuresByReason(t *testing.T) {
	srv, conns := fakeNode(t)
	ws := fakeWorkers(srv, 2, &fakeHeaders{})
	budget := new(atomic.Int64)
	budget.Store(40)
	tl, _ := phase(context.Background(), ws, time.Minute, budget)
	if tl.sent != 40 || tl.ok != 32 || tl.failures["503 ldap_unavailable"] != 8 || len(tl.failures) != 1 || len(tl.latencies) != 40 {
		t.Fatalf("sent %d ok %d failures %v latencies %d; want 40 sent, 32 ok, 8 × 503 ldap_unavailable",
			tl.sent, tl.ok, tl.failures, len(tl.latencies))
	}
	opened := ws[0].newConns.Load() + ws[1].newConns.Load()
	if opened != 2 || conns.Load() != 2 {
		t.Fatalf("workers opened %d connections, the node accepted %d; want one each", opened, conns.Load())
	}
}

func TestPhaseStopsAtItsDeadline(t *testing.T) {
	srv, _ := fakeNode(t)
	budget := new(atomic.Int64)
	budget.Store(maxLogins)
	start := time.Now()
	tl, elapsed := phase(context.Background(), fakeWorkers(srv, 2, &fakeHeaders{}), 200*time.Millisecond, budget)
	if tl.sent == 0 || time.Since(start) > 30*time.Second || elapsed < 200*time.Millisecond {
		t.Fatalf("sent %d in %v", tl.sent, elapsed)
	}
	// An interrupted run stops too, and counts no interrupted request.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tl, _ = phase(ctx, fakeWorkers(srv, 2, &fakeHeaders{}), time.Minute, budget)
	if tl.sent != 0 {
		t.Fatalf("cancelled phase sent %d", tl.sent)
	}
}

type constHeader string

func (c constHeader) header() (string, error) { return string(c), nil }

func TestTransportErrorsAreCountedByKind(t *testing.T) {
	srv, _ := fakeNode(t)
	budget := new(atomic.Int64)
	budget.Store(3)
	tl, _ := phase(context.Background(), fakeWorkers(srv, 1, constHeader("Negotiate hangup")), time.Minute, budget)
	if tl.sent != 3 || tl.failures["error: connection closed"] != 3 || tl.examples["error: connection closed"] == "" {
		t.Fatalf("sent %d, failures %v, examples %v", tl.sent, tl.failures, tl.examples)
	}
	tl, _ = phase(context.Background(), fakeWorkers(srv, 1, constHeader("Negotiate other")), time.Minute, budget)
	if tl.sent != 0 {
		t.Fatalf("the budget was spent, yet %d more were sent", tl.sent)
	}
}

func TestFailureKeysAreBounded(t *testing.T) {
	tl := newTally()
	for i := range 3 * maxReasons {
		tl.fail(fmt.Sprintf("%d reason", i), strings.Repeat("e", 1000))
	}
	if len(tl.failures) > maxReasons+1 || tl.failures["other"] != 2*maxReasons || len(tl.examples["0 reason"]) > 400 {
		t.Fatalf("%d keys, other %d, example of %d bytes", len(tl.failures), tl.failures["other"], len(tl.examples["0 reason"]))
	}
}

func TestReportFigures(t *testing.T) {
	tl := newTally()
	tl.sent, tl.ok = 1010, 1000
	tl.failures["503 ldap_unavailable"] = 10
	tl.blobTime = 101 * time.Millisecond
	for i := range 1010 {
		tl.latencies = append(tl.latencies, time.Duration(i%100+1)*time.Millisecond)
	}
	t0 := time.Unix(1700000000, 0)
	before := point{at: t0, nodeCPU: 10 * time.Second, selfCPU: time.Second, metrics: parsed(t, page)}
	after := point{at: t0.Add(4 * time.Second), nodeCPU: 12 * time.Second, selfCPU: 1500 * time.Millisecond,
		metrics: parsed(t, strings.NewReplacer(`reason="ok"} 100`, `reason="ok"} 1100`,
			`reason="ldap_unavailable"} 12`, `reason="ldap_unavailable"} 22`,
			`op="lookup",result="ok"} 100`, `op="lookup",result="ok"} 1110`).Replace(page))}
	r := &report{URL: "https://auth1.example.test/sso", Concurrency: 8}
	r.fill(tl, 2*time.Second, nil, before, after, "")
	if r.LoginsPerSecond != 500 || r.Node == nil || *r.Node.CPUPerLoginMs != 2 || *r.Node.LoginsPerCoreSecond != 500 || r.Node.Cores != 0.5 {
		t.Fatalf("rates: %v logins/s, node %+v", r.LoginsPerSecond, r.Node)
	}
	if r.LatencyMs.P50 != 50 || r.LatencyMs.P99 != 99 || r.LatencyMs.Max != 100 {
		t.Fatalf("latency %+v", r.LatencyMs)
	}
	nm := r.NodeMetrics
	if nm.Logins["success ok"] != 1000 || nm.Logins["failure ldap_unavailable"] != 10 || nm.LDAPPerLogin == nil || *nm.LDAPPerLogin != 1 {
		t.Fatalf("node metrics %+v", nm)
	}
	var out bytes.Buffer
	r.print(&out)
	for _, want := range []string{"logins/s      500.0", "p99 99.00 ms", "503 ldap_unavailable         10",
		"2.000 ms per login = 500 logins/s per core", "1.000 operations per login, from iwalb_authnode_ldap_seconds_count",
		"failure ldap_unavailable     10"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	}
	// Nothing succeeded: the per-login figures are absent, not infinite,
	// and the JSON still encodes.
	none := newTally()
	none.sent = 5
	none.failures["error: timeout"] = 5
	r = &report{}
	r.fill(none, time.Second, nil, before, after, "")
	if r.Node.CPUPerLoginMs != nil {
		t.Fatalf("CPU per login with no login: %v", *r.Node.CPUPerLoginMs)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	}
}
