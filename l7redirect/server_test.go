package l7redirect

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/lb"
)

func TestHTTPToHTTPS(t *testing.T) {
	var logBuf testkit.Buffer
	r, err := NewHTTPSRedirect([]string{"sso.example.test", "*.corp.example.test"}, 8443,
		slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r, nil)
	tests := []struct {
		name, req string
		status    int
		location  string
	}{
		{"GET", "GET /app?x=1 HTTP/1.1\r\nHost: sso.example.test\r\n", 301, "https://sso.example.test:8443/app?x=1"},
		{"HEAD", "HEAD / HTTP/1.1\r\nHost: sso.example.test:80\r\n", 301, "https://sso.example.test:8443/"},
		{"POST keeps its method", "POST /sso HTTP/1.1\r\nHost: sso.example.test\r\nContent-Length: 0\r\n", 308, "https://sso.example.test:8443/sso"},
		{"host case", "GET / HTTP/1.1\r\nHost: SSO.example.TEST\r\n", 301, "https://sso.example.test:8443/"},
		{"wildcard name", "GET /x HTTP/1.1\r\nHost: a.corp.example.test\r\n", 301, "https://a.corp.example.test:8443/x"},
		{"double slash path", "GET //evil.example/x HTTP/1.1\r\nHost: sso.example.test\r\n", 301, "https://sso.example.test:8443/evil.example/x"},
		{"encoded slashes", "GET /%2F%5Cevil.example HTTP/1.1\r\nHost: sso.example.test\r\n", 301, "https://sso.example.test:8443/evil.example"},
		{"unknown host", "GET / HTTP/1.1\r\nHost: evil.example\r\n", 421, ""},
		{"wildcard is one label", "GET / HTTP/1.1\r\nHost: a.b.corp.example.test\r\n", 421, ""},
		{"no host", "GET / HTTP/1.0\r\n", 421, ""},
		{"absolute-form names another host", "GET http://evil.example/ HTTP/1.1\r\nHost: sso.example.test\r\n", 421, ""},
		{"host with userinfo", "GET / HTTP/1.1\r\nHost: sso.example.test@evil.example\r\n", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, tt.req+"Connection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tt.status, tt.location)
			}
		})
	}
	if strings.Contains(logBuf.String(), "x=1") {
		t.Errorf("the plain-HTTP access log holds a query string:\n%s", logBuf.String())
	}
	if _, err := NewHTTPSRedirect([]string{"evil.example/x", ""}, -1, nil); err == nil {
		t.Error("NewHTTPSRedirect accepted bad names and port")
	}
}

func TestSNIPicksCertificate(t *testing.T) {
	n := startNode(t, "auth1")
	p := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{n})
	fd := startFrontDoor(t, Config{Name: "sso", Rules: []Rule{{Pool: p}}}, nil)
	for _, name := range frontDoorNames {
		t.Run(name, func(t *testing.T) {
			// Verification against the test CA for this exact name is the check.
			conn, err := tls.Dial("tcp", fd.addr, &tls.Config{RootCAs: fd.ca.Pool(), ServerName: name})
			if err != nil {
				t.Fatalf("TLS to %s: %v", name, err)
			}
			defer conn.Close()
			leaf := conn.ConnectionState().PeerCertificates[0]
			if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != name {
				t.Errorf("certificate for %v, want %s", leaf.DNSNames, name)
			}
		})
	}
}

func TestAccessLog(t *testing.T) {
	var logBuf testkit.Buffer
	a := startNode(t, "auth1")
	p := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{a})
	fd := startFrontDoor(t, Config{Name: "sso", Rules: []Rule{{Name: "auth", Pool: p}}},
		slog.New(slog.NewTextHandler(&logBuf, nil)))
	c := fd.client(nil)
	const secret = "TOKENSECRET0123456789"
	resp, _ := fd.do(t, c, "GET", "", "/sso/callback?ssoToken="+secret+"&x=1")
	if resp.StatusCode != 302 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	a.Stop()
	waitState(t, p, "auth1", lb.StateDown)
	fd.do(t, c, "POST", "", "/sso?ssoToken="+secret)

	logs := logBuf.String()
	if strings.Contains(logs, secret) || strings.Contains(logs, "ssoToken") {
		t.Errorf("the access log holds the query string:\n%s", logs)
	}
	var lines []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "msg=request") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d access-log lines, want 2:\n%s", len(lines), logs)
	}
	for i, want := range [][]string{
		{"frontdoor=sso", "method=GET", "host=sso.example.test", "path=/sso/callback", "status=302", "rule=auth", "node=auth1", "client=127.0.0.1", "duration="},
		{"method=POST", "path=/sso", "status=503", "rule=auth", `node=""`, "client=127.0.0.1"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("access-log line %q lacks %q", lines[i], w)
			}
		}
	}
}

// TestCurl asks a real client: curl must see the redirect to the node, with
// path and query kept, over TLS verified against the test CA.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	n := startNode(t, "auth1")
	p := newPool(t, "auth", lb.PolicyClientIPHash, []*testNode{n})
	fd := startFrontDoor(t, Config{Name: "sso", Rules: []Rule{{Host: "sso.example.test", Pool: p}}}, nil)
	_, port, _ := net.SplitHostPort(fd.addr)
	out, err := exec.Command(curl, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
		"--resolve", "sso.example.test:"+port+":127.0.0.1", "--cacert", fd.ca.CertFile(t),
		"https://sso.example.test:"+port+"/app?x=1").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if want := "302 https://auth1.example.test:" + strconv.Itoa(n.port()) + "/app?x=1"; string(out) != want {
		t.Errorf("curl saw %q, want %q", out, want)
	}
}

// TestRequestTargetBound: a request-target over the bound (8 KiB by
// default) is answered 414 on both listeners, with the connection closed,
// one access-log line and a count; one at the bound is redirected. The
// 48 KB dot-segment path that once cost seconds is one of them.
func TestRequestTargetBound(t *testing.T) {
	var httpsLog, httpLog testkit.Buffer
	n := startNode(t, "auth1")
	p := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{n})
	fd := startFrontDoor(t, Config{Name: "sso", Rules: []Rule{{Pool: p}}}, slog.New(slog.NewTextHandler(&httpsLog, nil)))
	plain, err := NewRedirect(RedirectConfig{Name: "sso", Names: []string{"sso.example.test"}, Port: 443},
		Options{Logger: slog.New(slog.NewTextHandler(&httpLog, nil)), Metrics: fd.m})
	if err != nil {
		t.Fatal(err)
	}
	plainAddr := serve(t, plain, nil)
	sendPlain := func(t *testing.T, req string) *http.Response {
		t.Helper()
		conn, err := net.Dial("tcp", plainAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, req)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	atBound := "/" + strings.Repeat("a", DefaultMaxRequestTarget-1)
	overBound := atBound + "b"
	dots := "/" + strings.Repeat("%2F../", 8<<10) // 48 KiB
	tests := []struct {
		name, target string
		want         int
	}{
		{"at the bound", atBound, 0},
		{"one byte over", overBound, 414},
		{"48 KiB of dot segments", dots, 414},
		{"query counts too", "/?" + strings.Repeat("q", DefaultMaxRequestTarget), 414},
	}
	for _, tt := range tests {
		for _, l := range []struct {
			name string
			send func(*testing.T, string) *http.Response
			ok   int
		}{
			{"https", func(t *testing.T, req string) *http.Response { return fd.raw(t, req) }, 302},
			{"http", sendPlain, 301},
		} {
			t.Run(l.name+"/"+tt.name, func(t *testing.T) {
				// Keep-alive asked for: the 414 closes the connection anyway.
				resp := l.send(t, "GET "+tt.target+" HTTP/1.1\r\nHost: sso.example.test\r\n\r\n")
				want := tt.want
				if want == 0 {
					want = l.ok
				}
				if resp.StatusCode != want {
					t.Fatalf("status %d, want %d", resp.StatusCode, want)
				}
				if want == 414 && (!resp.Close || resp.Header.Get("Location") != "") {
					t.Errorf("414 with Connection %q and Location %q; want the connection closed and no Location",
						resp.Header.Get("Connection"), resp.Header.Get("Location"))
				}
			})
		}
	}

	// A request line beyond the server's header limit never reaches the
	// handler (the counts and lines below have no fourth): the HTTP server
	// answers 431 itself, and resets the connection if the client is
	// still sending what it did not read.
	func() {
		conn, err := net.Dial("tcp", plainAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "GET /"+strings.Repeat("a", 200<<10)+" HTTP/1.1\r\nHost: sso.example.test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		switch {
		case err == nil && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge:
			t.Errorf("a 200 KiB request line: status %d, want 431 from the HTTP server", resp.StatusCode)
		case err != nil && !errors.Is(err, syscall.ECONNRESET):
			t.Errorf("a 200 KiB request line: %v, want a 431 or a reset", err)
		}
	}()

	refused := testkit.Samples(t, fd.reg, "iwalb_l7redirect_requests_refused_total")
	for _, l := range []string{"https", "http"} {
		if v := refused["frontdoor=sso,listener="+l+",reason=uri_too_long"]; v != 3 {
			t.Errorf("requests_refused_total{listener=%s} = %v, want 3 (all: %v)", l, v, refused)
		}
	}
	if v := testkit.Samples(t, fd.reg, "iwalb_l7redirect_request_duration_seconds")["frontdoor=sso,status=414"]; v != 3 {
		t.Errorf("request_duration_seconds{status=414} count = %v, want 3", v)
	}
	for name, logs := range map[string]string{"https": httpsLog.String(), "http": httpLog.String()} {
		var lines []string
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "msg=request") && strings.Contains(line, "status=414") {
				lines = append(lines, line)
			}
		}
		if len(lines) != 3 {
			t.Fatalf("%s: %d access-log lines with status=414, want 3:\n%s", name, len(lines), logs)
		}
		for _, want := range []string{"frontdoor=sso", "target_bytes=" + strconv.Itoa(len(overBound)), "target_bytes=" + strconv.Itoa(len(dots))} {
			if !strings.Contains(strings.Join(lines, "\n"), want) {
				t.Errorf("%s: the 414 lines lack %q:\n%s", name, want, strings.Join(lines, "\n"))
			}
		}
		for _, line := range lines {
			if len(line) > 2048 || strings.Contains(line, "qqqq") {
				t.Errorf("%s: a 414 line of %d bytes, or with the query: %.200s…", name, len(line), line)
			}
		}
	}
}

// TestHSTS: every answer over TLS carries Strict-Transport-Security (a
// year by default, as configured, or none when turned off); the plain-HTTP
// redirect, which browsers would not trust with it, never does.
func TestHSTS(t *testing.T) {
	n := startNode(t, "auth1")
	p := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{n})
	cfg := Config{Name: "sso", Rules: []Rule{{Host: "sso.example.test", Pool: p}}}
	fd := startFrontDoor(t, cfg, nil)
	check := func(t *testing.T, want string) {
		t.Helper()
		for _, req := range []struct {
			host, target string
			status       int
		}{
			{"sso.example.test", "/app", 302},
			{"other.example.test", "/", 421},
			{"sso.example.test", "/" + strings.Repeat("a", DefaultMaxRequestTarget), 414},
		} {
			resp := fd.raw(t, "GET "+req.target+" HTTP/1.1\r\nHost: "+req.host+"\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != req.status {
				t.Fatalf("Host %s: status %d, want %d", req.host, resp.StatusCode, req.status)
			}
			if got := resp.Header.Values("Strict-Transport-Security"); strings.Join(got, ",") != want {
				t.Errorf("%d answer: Strict-Transport-Security %q, want %q", resp.StatusCode, got, want)
			}
		}
	}
	t.Run("default", func(t *testing.T) { check(t, "max-age=31536000") })
	t.Run("configured", func(t *testing.T) {
		cfg.HSTSMaxAge, cfg.HSTSIncludeSubdomains = time.Hour+time.Millisecond, true
		if err := fd.h.Update(cfg); err != nil {
			t.Fatal(err)
		}
		check(t, "max-age=3601; includeSubDomains")
	})
	t.Run("off", func(t *testing.T) {
		cfg.HSTSMaxAge = -1
		if err := fd.h.Update(cfg); err != nil {
			t.Fatal(err)
		}
		check(t, "")
	})
	t.Run("not over plain HTTP", func(t *testing.T) {
		h, err := New(Config{Name: "sso", Rules: []Rule{{Pool: p}}}, Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "http://sso.example.test/", nil))
		redirect, err := NewHTTPSRedirect([]string{"sso.example.test"}, 0, quietLogger())
		if err != nil {
			t.Fatal(err)
		}
		rec2 := httptest.NewRecorder()
		redirect.ServeHTTP(rec2, httptest.NewRequest("GET", "http://sso.example.test/", nil))
		for _, r := range []*httptest.ResponseRecorder{rec, rec2} {
			if v := r.Header().Get("Strict-Transport-Security"); v != "" || r.Code/100 != 3 {
				t.Errorf("answer %d over plain HTTP with Strict-Transport-Security %q", r.Code, v)
			}
		}
	})
}

// TestHTTPSRedirectUpdate: Update changes the names redirected, the port
// and the bound for the requests that follow; a refused Update changes
// nothing, and the name (the metrics' label) stays.
func TestHTTPSRedirectUpdate(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := NewRedirect(RedirectConfig{Name: "sso", Names: []string{"sso.example.test"}, Port: 443},
		Options{Logger: quietLogger(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, plain, nil)
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(host, target string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("GET", "http://"+addr+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}
	check := func(when, host, target string, wantStatus int, wantLoc string) {
		t.Helper()
		if status, loc := get(host, target); status != wantStatus || loc != wantLoc {
			t.Errorf("%s: %s%s answered %d %q, want %d %q", when, host, target, status, loc, wantStatus, wantLoc)
		}
	}
	check("before", "sso.example.test", "/x", 301, "https://sso.example.test/x")
	check("before", "login.example.test", "/x", 421, "")

	err = plain.Update(RedirectConfig{Names: []string{"login.example.test", "bad/name"}, Port: -1, MaxRequestTarget: -1})
	for _, want := range []string{`"bad/name"`, "port -1", "max request target -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a bad Update: error %v, want one naming %s", err, want)
		}
	}
	check("after a refused Update", "sso.example.test", "/x", 301, "https://sso.example.test/x")
	check("after a refused Update", "login.example.test", "/x", 421, "")

	if err := plain.Update(RedirectConfig{Name: "other", Names: []string{"login.example.test", "*.apps.example.test"}, Port: 8443, MaxRequestTarget: 100}); err != nil {
		t.Fatal(err)
	}
	check("after Update", "login.example.test", "/x?y=1", 301, "https://login.example.test:8443/x?y=1")
	check("after Update", "a.apps.example.test", "/", 301, "https://a.apps.example.test:8443/")
	check("after Update", "sso.example.test", "/x", 421, "")
	check("after Update", "login.example.test", "/"+strings.Repeat("a", 100), 414, "")
	if got := testkit.Samples(t, reg, "iwalb_l7redirect_requests_refused_total"); got["frontdoor=sso,listener=http,reason=uri_too_long"] != 1 || len(got) != 1 {
		t.Errorf("requests_refused_total %v, want one 414 under the front door's own name sso", got)
	}
}
