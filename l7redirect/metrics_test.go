package l7redirect

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/internal/testpki"
	"github.com/iwalb/iwalb/lb"
)

// TestMetricsSharedByFrontDoors: metrics registered once serve two front
// doors, each under its name; Forget removes one's series and leaves the
// other's; a front door made again under a name on the same Metrics (as a
// reload does) counts on, registering nothing; a front door without
// Metrics exports nothing.
func TestMetricsSharedByFrontDoors(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Error("a second NewMetrics on one registry registered again")
	}
	node := startNode(t, "auth1")
	pool := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{node})
	ca := testpki.NewCA(t, "iwalb l7redirect test CA")
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "sso.example.test").TLS()}}

	type door struct {
		stop  func()
		held  net.Conn
		https string
	}
	start := func(name string) door {
		t.Helper()
		h, err := New(Config{Name: name, Rules: []Rule{{Pool: pool}}, MaxRequestTarget: 100}, Options{Logger: quietLogger(), Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		plain, err := NewRedirect(RedirectConfig{Name: name, Names: []string{"sso.example.test"}, MaxRequestTarget: 100},
			Options{Logger: quietLogger(), Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		srv := &Server{Name: name, Logger: quietLogger(), Metrics: m}
		httpsAddr, stopHTTPS := serveUntil(t, srv, h, tlsConfig)
		httpAddr, stopHTTP := serveUntil(t, srv, plain, nil)
		long := "GET /" + strings.Repeat("a", 100) + " HTTP/1.1\r\nHost: sso.example.test\r\n\r\n"
		for _, c := range []net.Conn{
			tls.Client(dialFrom(t, "127.0.0.1", httpsAddr), &tls.Config{RootCAs: ca.Pool(), ServerName: "sso.example.test"}),
			dialFrom(t, "127.0.0.1", httpAddr),
		} {
			request(t, c, false)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, long)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != http.StatusRequestURITooLong {
				t.Fatalf("front door %s, a target over the bound: %v, %v; want 414", name, resp, err)
			}
			c.Close()
		}
		d := door{https: httpsAddr, held: dialFrom(t, "127.0.0.1", httpsAddr)}
		d.stop = func() { d.held.Close(); stopHTTPS(); stopHTTP() }
		return d
	}
	sso, login := start("sso"), start("login")

	families := []string{"redirects_total", "request_duration_seconds", "requests_refused_total",
		"connections_refused_total", "connections_open"}
	count := func(family, frontdoor string) float64 {
		return testkit.Sum(t, reg, "iwalb_l7redirect_"+family, "frontdoor="+frontdoor)
	}
	has := func(family, frontdoor string) bool {
		for labels := range testkit.Samples(t, reg, "iwalb_l7redirect_"+family) {
			if strings.Contains(","+labels+",", ",frontdoor="+frontdoor+",") {
				return true
			}
		}
		return false
	}
	waitFor(t, "a held connection open on each front door", func() bool {
		return count("connections_open", "sso") == 1 && count("connections_open", "login") == 1
	})
	for _, name := range []string{"sso", "login"} {
		for _, f := range families {
			if !has(f, name) {
				t.Errorf("no %s series for front door %s", f, name)
			}
		}
		if got := count("redirects_total", name); got != 1 {
			t.Errorf("redirects_total{frontdoor=%s} = %v, want 1", name, got)
		}
		if got := count("requests_refused_total", name); got != 2 {
			t.Errorf("requests_refused_total{frontdoor=%s} = %v, want 2 (https and http)", name, got)
		}
	}

	// login leaves the configuration.
	login.stop()
	m.Forget("login")
	for _, f := range families {
		if has(f, "login") {
			t.Errorf("%s still has series for the forgotten front door login", f)
		}
		if !has(f, "sso") {
			t.Errorf("Forget(login) removed sso's %s series", f)
		}
	}

	// sso is made again on the same Metrics, as a reload does: no panic,
	// no registration, and its counts go on.
	sso.stop()
	again := start("sso")
	defer again.stop()
	if got := count("redirects_total", "sso"); got != 2 {
		t.Errorf("redirects_total{frontdoor=sso} = %v after the front door was made again, want 2", got)
	}

	// Without Metrics, a front door counts in a private set.
	private, err := New(Config{Name: "private", Rules: []Rule{{Pool: pool}}}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := serveDirect(t, private, "192.0.2.1:1", nil); got != "auth1" {
		t.Fatalf("the front door without Metrics: redirected to %q", got)
	}
	if has("redirects_total", "private") {
		t.Error("a front door without Metrics exported its series")
	}
}
