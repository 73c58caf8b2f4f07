package l7redirect

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/lb"
)

// routingFixture is one front door with rules of every kind, each to its
// own pool, so the node a redirect names tells which rule matched.
func routingFixture(t *testing.T, withDefault bool) (*frontDoor, map[string]*testNode) {
	t.Helper()
	nodes := map[string]*testNode{}
	pool := func(name string) *lb.Pool {
		n := startNode(t, name)
		nodes[name] = n
		return newPool(t, name, lb.PolicyRoundRobin, []*testNode{n})
	}
	cfg := Config{
		Name: "sso",
		Rules: []Rule{
			{Host: "sso.example.test", Pool: pool("root")},
			{Host: "sso.example.test", PathPrefix: "/app", Pool: pool("app")},
			{Host: "sso.example.test", PathPrefix: "/app/deep/", Pool: pool("deep")},
			{Host: "*.corp.example.test", Pool: pool("wild")},
			{Host: "only.example.test", PathPrefix: "/sso", Pool: pool("only")},
		},
	}
	if withDefault {
		cfg.Rules = append(cfg.Rules, Rule{PathPrefix: "/any", Pool: pool("any")})
		cfg.Default = &Rule{Pool: pool("def")}
	}
	return startFrontDoor(t, cfg, nil), nodes
}

func TestRules(t *testing.T) {
	fd, nodes := routingFixture(t, true)
	bare, bareNodes := routingFixture(t, false)
	c := fd.client(nil)
	cb := bare.client(nil)
	tests := []struct {
		name       string
		fd         *frontDoor
		host, path string
		wantStatus int
		wantNode   string // pool = node name in this fixture
	}{
		{"exact host", fd, "sso.example.test", "/", 302, "root"},
		{"prefix", fd, "sso.example.test", "/app", 302, "app"},
		{"prefix subpath", fd, "sso.example.test", "/app/x", 302, "app"},
		{"prefix is segment-wise", fd, "sso.example.test", "/apple", 302, "root"},
		{"longest prefix wins", fd, "sso.example.test", "/app/deep/x", 302, "deep"},
		{"trailing-slash prefix needs the slash", fd, "sso.example.test", "/app/deep", 302, "app"},
		{"host case and port ignored", fd, "SSO.Example.Test:443", "/app", 302, "app"},
		{"host trailing dot", fd, "sso.example.test.", "/app", 302, "app"},
		{"dot segments cleaned before matching", fd, "sso.example.test", "/x/../app/y", 302, "app"},
		{"wildcard host", fd, "a.corp.example.test", "/", 302, "wild"},
		{"wildcard is one label", fd, "a.b.corp.example.test", "/", 302, "def"},
		{"any host rule", fd, "other.example.test", "/any/x", 302, "any"},
		{"exact host before any-host rule", fd, "sso.example.test", "/any", 302, "root"},
		{"default rule", fd, "unknown.example.test", "/zzz", 302, "def"},
		{"default takes a garbage host", fd, "bad_host!", "/", 302, "def"},
		{"unknown host without default", bare, "unknown.example.test", "/", 421, ""},
		{"known host, no path rule, no default", bare, "only.example.test", "/other", 404, ""},
		{"known host and path, no default", bare, "only.example.test", "/sso/x", 302, "only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, ns := c, nodes
			if tt.fd == bare {
				cl, ns = cb, bareNodes
			}
			resp, _ := tt.fd.do(t, cl, "GET", tt.host, tt.path)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantNode == "" {
				if loc := resp.Header.Get("Location"); loc != "" {
					t.Errorf("Location %q on a %d", loc, resp.StatusCode)
				}
				return
			}
			if got, want := location(t, resp).Host, ns[tt.wantNode].hostPort(); got != want {
				t.Errorf("redirected to %s, want %s", got, want)
			}
		})
	}
}

func TestMethodsAndAnswer(t *testing.T) {
	n := startNode(t, "auth1")
	p := newPool(t, "auth", lb.PolicyClientIPHash, []*testNode{n})
	fd := startFrontDoor(t, Config{Name: "sso", Rules: []Rule{{Name: "auth", Pool: p}}}, nil)
	c := fd.client(nil)
	for _, tt := range []struct {
		method string
		want   int
	}{
		{"GET", 302}, {"HEAD", 302}, {"POST", 307}, {"PUT", 307}, {"DELETE", 307}, {"OPTIONS", 307},
	} {
		t.Run(tt.method, func(t *testing.T) {
			resp, body := fd.do(t, c, tt.method, "", "/app?x=1")
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			want := "https://" + n.hostPort() + "/app?x=1"
			if got := resp.Header.Get("Location"); got != want {
				t.Errorf("Location %q, want %q", got, want)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			if tt.method == "HEAD" {
				if body != "" {
					t.Errorf("HEAD answered with a body %q", body)
				}
			} else if !strings.Contains(body, `href="`+want+`"`) {
				t.Errorf("body %q has no link to %s", body, want)
			}
		})
	}
	got := testkit.Samples(t, fd.reg, "iwalb_l7redirect_redirects_total")
	if v := got["frontdoor=sso,node=auth1,rule=auth,status=302"]; v != 2 {
		t.Errorf("redirects_total 302 = %v, want 2 (all: %v)", v, got)
	}
	if v := got["frontdoor=sso,node=auth1,rule=auth,status=307"]; v != 4 {
		t.Errorf("redirects_total 307 = %v, want 4 (all: %v)", v, got)
	}
	if v := testkit.Samples(t, fd.reg, "iwalb_l7redirect_request_duration_seconds")["frontdoor=sso,status=302"]; v != 2 {
		t.Errorf("request_duration_seconds{status=302} count = %v, want 2", v)
	}
}

func TestPathQueryAndRewrite(t *testing.T) {
	n := startNode(t, "auth1")
	p := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{n})
	fd := startFrontDoor(t, Config{Name: "sso", Rules: []Rule{
		{Host: "sso.example.test", Pool: p},
		{Host: "sso.example.test", PathPrefix: "/old", RewritePrefix: "/sso", Pool: p},
		{Host: "sso.example.test", PathPrefix: "/legacy/", RewritePrefix: "/", Pool: p},
		{Host: "sso.example.test", PathPrefix: "/v1", RewritePrefix: "/api/v2/", Pool: p},
	}}, nil)
	c := fd.client(nil)
	tests := []struct{ target, want string }{
		{"/", "/"},
		{"/?a=b", "/?a=b"},
		{"/app?x=1&y=%20z&x=2", "/app?x=1&y=%20z&x=2"},
		{"/app/a%2Fb/c%20d?q", "/app/a%2Fb/c%20d?q"},
		{"/app/", "/app/"},
		{"/app/./x/../y", "/app/y"},
		{"/sso?ssoToken=abc", "/sso?ssoToken=abc"},
		{"/old/x?t=1", "/sso/x?t=1"},
		{"/old", "/sso"},
		{"/old/", "/sso/"},
		{"/older", "/older"},
		{"/legacy/x/y", "/x/y"},
		{"/legacy/", "/"},
		{"/v1/users?id=7", "/api/v2/users?id=7"},
		{"/v1", "/api/v2"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			resp, _ := fd.do(t, c, "GET", "", tt.target)
			want := "https://" + n.hostPort() + tt.want
			if got := resp.Header.Get("Location"); resp.StatusCode != 302 || got != want {
				t.Errorf("got %d %q, want 302 %q", resp.StatusCode, got, want)
			}
		})
	}
}

// serveDirect answers one request from client through h's ServeHTTP and
// returns the name of the node redirected to ("" if none).
func serveDirect(t *testing.T, h http.Handler, client string, cookie *http.Cookie) (string, *httptest.ResponseRecorder) {
	t.Helper()
	req := httptest.NewRequest("GET", "https://sso.example.test/", nil)
	req.RemoteAddr = client
	if cookie != nil {
		req.AddCookie(cookie)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	loc := rec.Header().Get("Location")
	if loc == "" {
		return "", rec
	}
	host, _, _ := strings.Cut(strings.TrimPrefix(loc, "https://"), ".")
	return host, rec
}

func TestWeightsRespected(t *testing.T) {
	for _, policy := range []lb.PolicyName{lb.PolicyRoundRobin, lb.PolicyClientIPHash} {
		t.Run(string(policy), func(t *testing.T) {
			heavy, light := startNode(t, "heavy"), startNode(t, "light")
			p := newPool(t, "auth", policy, []*testNode{heavy, light}, 3, 1)
			h, err := New(Config{Name: "sso", Rules: []Rule{{Pool: p}}}, Options{Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			const n = 2000
			count := map[string]int{}
			for i := range n {
				node, _ := serveDirect(t, h, fmt.Sprintf("10.%d.%d.%d:40000", i>>16&255, i>>8&255, i&255), nil)
				count[node]++
			}
			// 3:1 is 75%; the hash ring is within a few percent of it.
			if share := float64(count["heavy"]) / n; share < 0.68 || share > 0.82 {
				t.Errorf("heavy node got %.0f%% of %d redirects (%v), want about 75%%", 100*share, n, count)
			}
		})
	}
}

func TestClientIPHashKeepsClientOnNode(t *testing.T) {
	nodes := []*testNode{startNode(t, "auth1"), startNode(t, "auth2"), startNode(t, "auth3")}
	p := newPool(t, "auth", lb.PolicyClientIPHash, nodes)
	h, err := New(Config{Name: "sso", Rules: []Rule{{Pool: p}}}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	perNode := map[string]int{}
	for i := range 300 {
		client := fmt.Sprintf("192.0.2.%d", i%250)
		if i >= 250 {
			client = fmt.Sprintf("[2001:db8::%x]", i)
		}
		first, _ := serveDirect(t, h, client+":1000", nil)
		perNode[first]++
		for port := range 5 {
			// A new source port is a new connection of the same client.
			if got, _ := serveDirect(t, h, fmt.Sprintf("%s:%d", client, 2000+port), nil); got != first {
				t.Fatalf("client %s went to %s, then %s", client, first, got)
			}
		}
	}
	for _, n := range nodes {
		if perNode[n.name] < 50 {
			t.Errorf("node %s got %d of 300 clients (%v): the hash does not spread", n.name, perNode[n.name], perNode)
		}
	}
}

func TestStickyCookie(t *testing.T) {
	a, b := startNode(t, "auth1"), startNode(t, "auth2")
	nodes := map[string]*testNode{"auth1": a, "auth2": b}
	// Round robin: without the cookie consecutive requests alternate, so
	// staying put proves the cookie works.
	p := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{a, b})
	fd := startFrontDoor(t, Config{Name: "sso", Rules: []Rule{{Pool: p}}, StickyCookie: "iwalb_node", CookieTTL: time.Hour}, nil)

	plain := fd.client(nil)
	seen := map[string]bool{}
	for range 4 {
		resp, _ := fd.do(t, plain, "GET", "", "/")
		seen[location(t, resp).Hostname()] = true
	}
	if len(seen) != 2 {
		t.Fatalf("without the cookie the pool should alternate, got %v", seen)
	}

	jar, _ := cookiejar.New(nil)
	browser := fd.client(jar)
	nodeOf := func() (string, *http.Cookie) {
		t.Helper()
		resp, _ := fd.do(t, browser, "GET", "", "/sso")
		if resp.StatusCode != 302 {
			t.Fatalf("status %d, want 302", resp.StatusCode)
		}
		var c *http.Cookie
		for _, rc := range resp.Cookies() {
			if rc.Name == "iwalb_node" {
				c = rc
			}
		}
		if c == nil {
			t.Fatal("no iwalb_node cookie set")
		}
		host := location(t, resp).Hostname()
		if want := nodes[c.Value]; want == nil || want.fqdn != host {
			t.Fatalf("cookie names %q but the redirect goes to %s", c.Value, host)
		}
		return c.Value, c
	}
	first, c := nodeOf()
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.MaxAge != 3600 || c.Path != "/" {
		t.Errorf("cookie attributes %+v, want Secure HttpOnly SameSite=Lax Max-Age=3600 Path=/", c)
	}
	for range 6 {
		if got, _ := nodeOf(); got != first {
			t.Fatalf("browser moved from %s to %s while %s was healthy", first, got, first)
		}
	}

	other := "auth1"
	if first == "auth1" {
		other = "auth2"
	}
	nodes[first].Stop()
	waitState(t, p, first, lb.StateDown)
	if got, _ := nodeOf(); got != other {
		t.Fatalf("with %s down the browser went to %s, want %s", first, got, other)
	}
	nodes[first].Start(t)
	waitState(t, p, first, lb.StateUp)
	for range 4 {
		if got, _ := nodeOf(); got != other {
			t.Fatalf("browser left %s for %s after %s came back: the cookie must keep it", other, got, first)
		}
	}

	// Cookie values that are not a backend name are ignored: a node is
	// picked anew and the cookie reset to its name.
	for _, forged := range []string{"evil.example", "auth1.example.test", "127.0.0.1:1", "auth", "%61uth1", ""} {
		got, rec := serveDirect(t, fd.h, "198.51.100.7:5000", &http.Cookie{Name: "iwalb_node", Value: forged})
		if got != "auth1" && got != "auth2" {
			t.Errorf("cookie %q: redirected to %q", forged, rec.Header().Get("Location"))
		}
		if sc := rec.Header().Get("Set-Cookie"); !strings.HasPrefix(sc, "iwalb_node="+got+";") {
			t.Errorf("cookie %q: Set-Cookie %q does not reset it to %s", forged, sc, got)
		}
	}
}

func TestNoHealthyNode(t *testing.T) {
	a, b := startNode(t, "auth1"), startNode(t, "auth2")
	p := newPool(t, "auth", lb.PolicyClientIPHash, []*testNode{a, b})
	fd := startFrontDoor(t, Config{Name: "sso", Rules: []Rule{{Name: "auth", Pool: p}}, RetryAfter: 6500 * time.Millisecond}, nil)
	c := fd.client(nil)

	a.Stop()
	b.Stop()
	waitState(t, p, "auth1", lb.StateDown)
	waitState(t, p, "auth2", lb.StateDown)
	for _, method := range []string{"GET", "POST"} {
		resp, body := fd.do(t, c, method, "", "/app?x=1")
		if resp.StatusCode != 503 {
			t.Fatalf("%s with every node down: status %d, want 503", method, resp.StatusCode)
		}
		if got := resp.Header.Get("Retry-After"); got != "7" {
			t.Errorf("Retry-After %q, want 7 (6.5s rounded up)", got)
		}
		if resp.Header.Get("Location") != "" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("503 headers %v: want no Location and Cache-Control: no-store", resp.Header)
		}
		if !strings.Contains(body, "try again") {
			t.Errorf("503 page %q does not tell the user to try again", body)
		}
	}
	if v := testkit.Samples(t, fd.reg, "iwalb_l7redirect_no_healthy_node_total")["frontdoor=sso,rule=auth"]; v != 2 {
		t.Errorf("no_healthy_node_total = %v, want 2", v)
	}

	b.Start(t)
	waitState(t, p, "auth2", lb.StateUp)
	resp, _ := fd.do(t, c, "GET", "", "/app?x=1")
	if want := "https://" + b.hostPort() + "/app?x=1"; resp.StatusCode != 302 || resp.Header.Get("Location") != want {
		t.Fatalf("after auth2 came back: %d %q, want 302 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

func TestDrainedNodeGetsNoRedirects(t *testing.T) {
	a, b := startNode(t, "auth1"), startNode(t, "auth2")
	p := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{a, b})
	h, err := New(Config{Name: "sso", Rules: []Rule{{Pool: p}}, StickyCookie: "n"}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	p.Backend("auth1").SetDrained(true)
	for range 6 {
		if got, _ := serveDirect(t, h, "192.0.2.1:1", &http.Cookie{Name: "n", Value: "auth1"}); got != "auth2" {
			t.Fatalf("drained auth1 kept a sticky browser (went to %q)", got)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	n := startNode(t, "auth1")
	good := newPool(t, "good", lb.PolicyRoundRobin, []*testNode{n})
	noFQDN, err := lb.NewPool(lb.Config{Name: "nofqdn", Backends: []lb.BackendConfig{{Name: "x", Addr: "127.0.0.1:1"}}}, lb.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	badName, err := lb.NewPool(lb.Config{Name: "badname", Backends: []lb.BackendConfig{{Name: "a;b", Addr: "127.0.0.1:1", FQDN: "a.example.test"}}}, lb.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{
		Name: "sso",
		Rules: []Rule{
			{Host: "evil.example/x", Pool: good},
			{Host: "a.example.test", PathPrefix: "app", Pool: good},
			{Host: "b.example.test", PathPrefix: "//x", Pool: good},
			{Host: "c.example.test", PathPrefix: "/a/../b", Pool: good},
			{Host: "d.example.test", RewritePrefix: "/x?y", PathPrefix: "/d", Pool: good},
			{Host: "e.example.test"},
			{Host: "f.example.test", Pool: noFQDN},
			{Host: "g.example.test", Pool: badName},
			{Host: "h.example.test", Pool: good, Port: 70000},
			{Host: "h.example.test", Pool: good},
		},
		StickyCookie: "bad cookie",
		RetryAfter:   -time.Second,
	}, Options{Logger: quietLogger()})
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, want := range []string{
		`host "evil.example/x"`, `path prefix "app"`, `path prefix "//x"`, `path prefix "/a/../b"`,
		`rewrite prefix "/x?y"`, "rule #6: no pool", `backend "x": fqdn "127.0.0.1" is not a DNS name`, `backend "a;b": the name cannot be a cookie value`,
		"port 70000", "same host", `sticky cookie name "bad cookie"`, "must not be negative",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if _, err := New(Config{Name: "sso"}, Options{}); err == nil || !strings.Contains(err.Error(), "no rules") {
		t.Errorf("New without rules: %v", err)
	}
}

func TestUpdate(t *testing.T) {
	a, b := startNode(t, "auth1"), startNode(t, "auth2")
	pa := newPool(t, "a", lb.PolicyRoundRobin, []*testNode{a})
	pb := newPool(t, "b", lb.PolicyRoundRobin, []*testNode{b})
	h, err := New(Config{Name: "sso", Rules: []Rule{{Pool: pa}}}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := serveDirect(t, h, "192.0.2.1:1", nil); got != "auth1" {
		t.Fatalf("before Update: %q", got)
	}
	if err := h.Update(Config{Rules: []Rule{{Host: "bad host"}}}); err == nil {
		t.Fatal("Update accepted a bad config")
	}
	if got, _ := serveDirect(t, h, "192.0.2.1:1", nil); got != "auth1" {
		t.Fatalf("a refused Update changed the routing: %q", got)
	}
	if err := h.Update(Config{Rules: []Rule{{Pool: pb}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := serveDirect(t, h, "192.0.2.1:1", nil); got != "auth2" {
		t.Fatalf("after Update: %q, want auth2", got)
	}
}
