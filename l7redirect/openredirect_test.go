package l7redirect

import (
	"math/bits"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/iwalb/iwalb/lb"
)

// checkTarget fails unless loc is an https URL on one of the node host:ports
// in allowed, with a path that no client can read as another host.
func checkTarget(t *testing.T, loc string, allowed map[string]bool) {
	t.Helper()
	for i := 0; i < len(loc); i++ {
		if c := loc[i]; c <= ' ' || c >= 0x7f || c == '\\' || c == '"' || c == '<' || c == '>' {
			t.Fatalf("Location %q holds byte %q", loc, c)
		}
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("Location %q does not parse: %v", loc, err)
	}
	if u.Scheme != "https" || u.User != nil || u.Opaque != "" || !allowed[u.Host] {
		t.Fatalf("Location %q: scheme %q, user %v, host %q; want https on one of %v", loc, u.Scheme, u.User, u.Host, allowed)
	}
	if !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") || strings.HasPrefix(u.Path, `/\`) {
		t.Fatalf("Location %q: path %q must start with exactly one slash", loc, u.Path)
	}
	rest := strings.TrimPrefix(loc, "https://"+u.Host)
	if low := strings.ToLower(rest); strings.HasPrefix(low, "//") || strings.HasPrefix(low, "/%2f") || strings.HasPrefix(low, "/%5c") {
		t.Fatalf("Location %q: the path starts with a separator", loc)
	}
}

func TestNoOpenRedirect(t *testing.T) {
	a, b := startNode(t, "auth1"), startNode(t, "auth2")
	p := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{a, b})
	// A default rule for every host and a sticky cookie: every request below
	// gets a redirect, so every Location is put to the test.
	fd := startFrontDoor(t, Config{
		Name:         "sso",
		Rules:        []Rule{{Host: "sso.example.test", PathPrefix: "/app", RewritePrefix: "/", Pool: p}},
		Default:      &Rule{Pool: p},
		StickyCookie: "iwalb_node",
	}, nil)
	allowed := map[string]bool{a.hostPort(): true, b.hostPort(): true}

	const host = "Host: sso.example.test\r\n"
	tests := []struct {
		name, req string
		status    int    // 302 unless set
		wantPath  string // the Location's escaped path and query, if checked
	}{
		{name: "double slash", req: "GET //evil.example HTTP/1.1\r\n" + host, wantPath: "/evil.example"},
		{name: "many slashes", req: "GET ////evil.example/x HTTP/1.1\r\n" + host, wantPath: "/evil.example/x"},
		{name: "backslash", req: "GET /\\evil.example HTTP/1.1\r\n" + host, wantPath: "/evil.example"},
		{name: "slash backslash mix", req: "GET /\\/\\evil.example HTTP/1.1\r\n" + host},
		{name: "encoded slashes", req: "GET /%2F%2Fevil.example HTTP/1.1\r\n" + host, wantPath: "/evil.example"},
		{name: "encoded slashes lower case", req: "GET /%2f%2fevil.example HTTP/1.1\r\n" + host, wantPath: "/evil.example"},
		{name: "encoded backslash", req: "GET /%5Cevil HTTP/1.1\r\n" + host, wantPath: "/evil"},
		{name: "encoded backslashes mixed", req: "GET /%5c%2F%5Cevil HTTP/1.1\r\n" + host, wantPath: "/evil"},
		{name: "dot dot double slash", req: "GET /..//evil HTTP/1.1\r\n" + host, wantPath: "/evil"},
		{name: "dot segments then double slash", req: "GET /./a/../..//evil HTTP/1.1\r\n" + host, wantPath: "/evil"},
		{name: "encoded dot dot", req: "GET /%2e%2e//evil HTTP/1.1\r\n" + host, wantPath: "/evil"},
		{name: "encoded slash then dot dot", req: "GET /%2F..//evil HTTP/1.1\r\n" + host, wantPath: "/evil"},
		{name: "rewrite to / then double slash", req: "GET /app//evil.example HTTP/1.1\r\n" + host, wantPath: "/evil.example"},
		{name: "rewrite to / then encoded slash", req: "GET /app/%2F%2Fevil.example HTTP/1.1\r\n" + host, wantPath: "/evil.example"},
		{name: "CRLF in path", req: "GET /%0d%0aLocation:%20https://evil.example HTTP/1.1\r\n" + host, wantPath: "/%0d%0aLocation:%20https://evil.example"},
		{name: "CRLF in query", req: "GET /?%0d%0aLocation:%20https://evil.example HTTP/1.1\r\n" + host, wantPath: "/?%0d%0aLocation:%20https://evil.example"},
		{name: "raw bytes in query are escaped", req: "GET /?a=<b>\"c\"|{}^` HTTP/1.1\r\n" + host, wantPath: "/?a=%3Cb%3E%22c%22%7C%7B%7D%5E%60"},
		{name: "bad escape in query", req: "GET /?a=%zz%4 HTTP/1.1\r\n" + host, wantPath: "/?a=%25zz%254"},
		{name: "next parameter stays a parameter", req: "GET /?next=https://evil.example/ HTTP/1.1\r\n" + host, wantPath: "/?next=https://evil.example/"},
		{name: "absolute-form target", req: "GET https://evil.example/ HTTP/1.1\r\n" + host, wantPath: "/"},
		{name: "absolute-form with double slash path", req: "GET https://evil.example//evil2.example HTTP/1.1\r\n" + host, wantPath: "/evil2.example"},
		{name: "absolute-form with userinfo", req: "GET https://sso.example.test@evil.example/x HTTP/1.1\r\n" + host, wantPath: "/x"},
		{name: "userinfo-looking path", req: "GET /@evil.example HTTP/1.1\r\n" + host, wantPath: "/@evil.example"},
		{name: "userinfo-looking path after a name", req: "GET /sso.example.test@evil.example HTTP/1.1\r\n" + host},
		{name: "evil Host", req: "GET /x HTTP/1.1\r\nHost: evil.example\r\n", wantPath: "/x"},
		{name: "Host with userinfo", req: "GET /x HTTP/1.1\r\nHost: sso.example.test@evil.example\r\n", status: 400},
		{name: "Host with path", req: "GET /x HTTP/1.1\r\nHost: evil.example/..\r\n", status: 400},
		{name: "X-Forwarded-Host", req: "GET /x HTTP/1.1\r\n" + host + "X-Forwarded-Host: evil.example\r\nForwarded: host=evil.example\r\n", wantPath: "/x"},
		{name: "forged sticky cookie", req: "GET /x HTTP/1.1\r\n" + host + "Cookie: iwalb_node=evil.example\r\n", wantPath: "/x"},
		{name: "forged sticky cookie with port", req: "GET /x HTTP/1.1\r\n" + host + "Cookie: iwalb_node=evil.example:443\r\n", wantPath: "/x"},
		{name: "fragment-looking path", req: "GET /%23@evil.example HTTP/1.1\r\n" + host, wantPath: "/%23@evil.example"},
		{name: "NUL byte escaped", req: "GET /%00evil HTTP/1.1\r\n" + host, wantPath: "/%00evil"},
		{name: "POST keeps method, same rules", req: "POST //evil.example HTTP/1.1\r\n" + host + "Content-Length: 0\r\n", status: 307, wantPath: "/evil.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := fd.raw(t, tt.req+"Connection: close\r\n\r\n")
			want := tt.status
			if want == 0 {
				want = 302
			}
			if resp.StatusCode != want {
				t.Fatalf("status %d, want %d", resp.StatusCode, want)
			}
			locs := resp.Header.Values("Location")
			if want/100 != 3 {
				if len(locs) != 0 {
					t.Fatalf("a %d with Location %q", want, locs)
				}
				return
			}
			if len(locs) != 1 {
				t.Fatalf("%d Location headers %q, want 1", len(locs), locs)
			}
			checkTarget(t, locs[0], allowed)
			if tt.wantPath != "" {
				u, _ := url.Parse(locs[0])
				if got := strings.TrimPrefix(locs[0], "https://"+u.Host); got != tt.wantPath {
					t.Errorf("Location path and query %q, want %q", got, tt.wantPath)
				}
			}
			for _, sc := range resp.Header.Values("Set-Cookie") {
				if !strings.HasPrefix(sc, "iwalb_node=auth1;") && !strings.HasPrefix(sc, "iwalb_node=auth2;") {
					t.Errorf("Set-Cookie %q", sc)
				}
			}
		})
	}
}

// FuzzRedirectTarget checks, for any request-target the HTTP server would
// accept, that the redirect names the node, starts its path with exactly
// one slash, that cleaning is stable and agrees with the reference, and
// that building the redirect stays within a work budget linear in the
// target's length (a pass per segment, as cleanPath once made, does not).
func FuzzRedirectTarget(f *testing.F) {
	for _, s := range []string{
		"/", "//evil.example", `/\evil`, "/%2F%2Fevil", "/%5Cevil", "/..//evil", "/%2e%2e/%2f/evil",
		"/%2F..", "/a/./b/../c?x=1", "https://evil.example//x?y", "/?%0d%0a", "/app/%2f%5c/x",
	} {
		f.Add(s)
	}
	allowed := map[string]bool{"auth1.example.test:8443": true}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		escaped := u.EscapedPath()
		p := cleanPath(escaped)
		if again := cleanPath(p); again != p {
			t.Fatalf("cleanPath(%q) = %q, but cleanPath of that is %q", escaped, p, again)
		}
		// The reference is quadratic: only on inputs it finishes quickly.
		if len(escaped) <= 128 {
			if want := cleanPathReference(escaped); p != want {
				t.Fatalf("cleanPath(%q) = %q, the reference gives %q", escaped, p, want)
			}
		}
		rl := &rule{prefix: "/app", rewrite: "/"}
		for _, path := range []string{p, rl.targetPath(p)} {
			loc := targetURL("auth1.example.test", 8443, path, u.RawQuery)
			checkTarget(t, loc, allowed)
		}
		checkWork(t, len(target), func() {
			p := cleanPath(u.EscapedPath())
			targetURL("auth1.example.test", 8443, rl.targetPath(p), u.RawQuery)
		})
	})
}

// checkWork fails if f allocates more than a budget linear in n, the
// length of its input: a constant number of allocations, plus the few that
// growing a buffer takes (a logarithm), and a constant number of bytes per
// input byte. A loop that repeats over the whole input allocates again on
// each round and exceeds it.
func checkWork(t *testing.T, n int, f func()) {
	t.Helper()
	maxAllocs, maxBytes := uint64(32+4*bits.Len(uint(n))), uint64(1024+80*n)
	var allocs, bytes uint64
	// Counts are process-wide: another test's goroutine winding down may
	// allocate during one measurement, never during three in a row.
	for range 3 {
		if allocs, bytes = allocated(f); allocs <= maxAllocs && bytes <= maxBytes {
			return
		}
	}
	t.Fatalf("%d input bytes took %d allocations of %d bytes in all; the budget is %d and %d",
		n, allocs, bytes, maxAllocs, maxBytes)
}

// allocated returns the allocations f makes and their bytes, averaged over
// two runs after a warm-up, counted as testing.AllocsPerRun counts them but
// without its GOMAXPROCS(1), which would double the cost of each fuzzing
// run: the fuzz function runs alone in its process.
func allocated(f func()) (allocs, bytes uint64) {
	const runs = 2
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.Mallocs - before.Mallocs) / runs, (after.TotalAlloc - before.TotalAlloc) / runs
}

func TestCleanPath(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/a/b", "/a/b"},
		{"/a//b", "/a//b"},
		{"/a/b/", "/a/b/"},
		{"/a/.", "/a/"},
		{"/a/..", "/"},
		{"/a/b/../../..", "/"},
		{"/a/%2E/b/%2e%2E/c", "/a/c"},
		{"//a", "/a"},
		{`/\a`, "/a"},
		{"/%2F%5c/a", "/a"},
		{"/%2F..", "/"},
		{"/a/b/..", "/a/"},
		{"/%2F../%2F../x", "/x"},
		{"/%5c./%2F%2e%2E//evil", "/evil"},
		{"/%2F../", "/"},
		{"/%252F", "/%252F"},
		{"a", "/a"},
	} {
		if got := cleanPath(tt.in); got != tt.want {
			t.Errorf("cleanPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, tt := range []struct{ host, port, want string }{
		{"auth1.example.test", "443", "https://auth1.example.test/x"},
		{"auth1.example.test", "0", "https://auth1.example.test/x"},
		{"auth1.example.test", "8443", "https://auth1.example.test:8443/x"},
	} {
		port, _ := strconv.Atoi(tt.port)
		if got := targetURL(tt.host, port, "/x", ""); got != tt.want {
			t.Errorf("targetURL(%s, %d) = %q, want %q", tt.host, port, got, tt.want)
		}
	}
}
