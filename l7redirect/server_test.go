package l7redirect

import (
	"bufio"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/lb"
)

func TestHTTPToHTTPS(t *testing.T) {
	var logBuf syncBuffer
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
			conn, err := tls.Dial("tcp", fd.addr, &tls.Config{RootCAs: fd.ca.pool, ServerName: name})
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
	var logBuf syncBuffer
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
	a.stop()
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
		"--resolve", "sso.example.test:"+port+":127.0.0.1", "--cacert", fd.ca.pemFn,
		"https://sso.example.test:"+port+"/app?x=1").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if want := "302 https://auth1.example.test:" + strconv.Itoa(n.port()) + "/app?x=1"; string(out) != want {
		t.Errorf("curl saw %q, want %q", out, want)
	}
}
