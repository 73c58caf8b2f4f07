package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/configtest"
	"github.com/iwalb/iwalb/internal/testkit"
)

// TestRunConnectionFloods runs every role in one `iwalb run` process (an
// auth node, an L4 listener, an L7 front door with its plain-HTTP
// listener, the admin API and the metrics listener, over two TLS backends)
// and floods each listener in turn with connections that send nothing,
// from one client address. Each listener takes its caps and resets the
// rest; while the flood holds its connections, a client from another
// address is served by every other role (the process's file descriptors
// are not used up); and /metrics counts each listener's refusals.
func TestRunConnectionFloods(t *testing.T) {
	valid, _ := validConfig(t)
	dir := filepath.Dir(valid)
	auth1, auth2, _, roots := frontDoorFiles(t, dir)
	nodePEM, err := os.ReadFile(filepath.Join(dir, "tls/auth1.pem"))
	if err != nil || !roots.AppendCertsFromPEM(nodePEM) {
		t.Fatalf("the auth node's certificate: %v", err)
	}

	const perSource, total, private = 5, 40, 4
	node, front4, front7, plain, admin, metrics := testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t)
	text := strings.Replace(authNodeYAML, "listen: 127.0.0.1:8443", fmt.Sprintf("listen: %q\n  max_conns: %d\n  max_conns_per_source: %d", node, total, perSource), 1)
	text += fmt.Sprintf(`log: {level: warn}
metrics: {listen: %q, max_conns: %d}
admin: {listen: %q, max_conns: %d}
pools:
  - name: authnodes
    backends:
      - {name: auth1, addr: %q, fqdn: auth1.example.test}
      - {name: auth2, addr: %q, fqdn: auth2.example.test}
    health: {check: https, path: /readyz, ca_file: tls/ca.pem, interval: 500ms, timeout: 500ms, rise: 1, fall: 3}
l7redirect:
  listeners:
    - name: sso
      listen: %q
      http_redirect_listen: %q
      max_conns: %d
      max_conns_per_source: %d
      certificates: [{cert: tls/sso.pem, key: tls/sso.key}]
      names: [sso.example.test]
      rules:
        - {host: sso.example.test, path_prefix: /, pool: authnodes}
l4:
  listeners:
    - name: public
      listen: %q
      max_conns: %d
      max_conns_per_source: %d
      routes:
        - {server_names: [lb.example.test], pool: authnodes}
`, metrics, private, admin, private, auth1.addr, auth2.addr, front7, plain, total, perSource, front4, total, perSource)
	path := configtest.WriteFile(t, dir, "all.yaml", []byte(text))

	serveChecked(t, path, metrics)

	// A client at 127.0.0.3, whose names all resolve to the address given.
	get := func(scheme, addr, host, path string) (int, error) {
		c := &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: roots},
				DisableKeepAlives: true,
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}
					return d.DialContext(ctx, network, addr)
				},
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		resp, err := c.Get(scheme + "://" + host + path)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	roles := []struct {
		name, scheme, addr, host, path string
		want                           int
		private                        bool // one cap for all sources
	}{
		{"authnode", "https", node, "auth1.example.test", "/healthz", http.StatusOK, false},
		{"l4", "https", front4, "lb.example.test", "/readyz", http.StatusOK, false},
		{"l7 https", "https", front7, "sso.example.test", "/sso", http.StatusFound, false},
		{"l7 http", "http", plain, "sso.example.test", "/sso", http.StatusMovedPermanently, false},
		{"admin", "http", admin, "127.0.0.1", "/pools", http.StatusOK, true},
		{"metrics", "http", metrics, "127.0.0.1", "/metrics", http.StatusOK, true},
	}
	// The test's own keep-alive scrapes would hold a slot of the metrics
	// listener.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	for _, flooded := range roles {
		// The flood: more silent connections from 127.0.0.2 than the
		// listener takes from one address; the ones over the cap are
		// reset at once, the others are held.
		cap := perSource
		if flooded.private {
			cap = private
		}
		held, refused := flood(t, flooded.addr, []string{"127.0.0.2"}, cap+10)
		if held != cap || refused != 10 {
			t.Errorf("flood of %s: %d held, %d reset; want %d held and 10 reset", flooded.name, held, refused, cap)
		}
		for _, r := range roles {
			if r.name == flooded.name && r.private {
				continue // full for everyone: that is its cap
			}
			if code, err := get(r.scheme, r.addr, r.host, r.path); err != nil || code != r.want {
				t.Errorf("while %s is flooded from 127.0.0.2: %s from 127.0.0.3 = %d, %v; want %d", flooded.name, r.name, code, err, r.want)
			}
		}
		closeFlood(t, flooded.addr)
	}

	// The total cap: silent connections from many addresses fill the L4
	// listener; the others are reset, and the other roles still serve.
	var sources []string
	for i := range total/perSource + 2 {
		sources = append(sources, fmt.Sprintf("127.0.1.%d", i+1))
	}
	held, refused := flood(t, front4, sources, perSource)
	if held != total || refused != len(sources)*perSource-total {
		t.Errorf("L4 flood from %d addresses: %d held, %d reset; want %d held", len(sources), held, refused, total)
	}
	if code, err := get("https", front7, "sso.example.test", "/sso"); err != nil || code != http.StatusFound {
		t.Errorf("L7 while L4 is full: %d, %v", code, err)
	}
	closeFlood(t, front4)

	// Every refusal is counted, under its listener and reason.
	body := metricsText(t, metrics)
	for _, c := range []struct {
		series string
		want   int
	}{
		{`iwalb_authnode_connections_refused_total{reason="over_source_limit"}`, 10},
		{`iwalb_l4_rejected_total{listener="public",reason="over_source_limit"}`, 10},
		{`iwalb_l4_rejected_total{listener="public",reason="over_limit"}`, len(sources)*perSource - total},
		{`iwalb_l7redirect_connections_refused_total{frontdoor="sso",listener="https",reason="over_source_limit"}`, 10},
		{`iwalb_l7redirect_connections_refused_total{frontdoor="sso",listener="http",reason="over_source_limit"}`, 10},
		{`iwalb_private_connections_refused_total{listener="admin",reason="over_limit"}`, 10},
		{`iwalb_private_connections_refused_total{listener="metrics",reason="over_limit"}`, 10},
	} {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(c.series) + ` (\d+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Errorf("no series %s in /metrics:\n%s", c.series, iwalbSeries(body))
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n != c.want {
			t.Errorf("%s = %d, want %d", c.series, n, c.want)
		}
	}
}

// floodConns are the connections a flood holds open, by target address.
var floodConns = map[string][]net.Conn{}

// flood opens n connections from each of srcs to addr that send nothing,
// and returns how many the server kept open and how many it reset. All
// are opened before any is judged, since a server may close silent
// connections after a while (L4's peek timeout) and free their slots. The
// kept ones stay open until closeFlood.
func flood(t *testing.T, addr string, srcs []string, n int) (held, refused int) {
	t.Helper()
	var conns []net.Conn
	for _, src := range srcs {
		for range n {
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				if errors.Is(err, syscall.ECONNRESET) {
					refused++
					continue
				}
				t.Fatalf("flood %s from %s: %v", addr, src, err)
			}
			conns = append(conns, c)
		}
	}
	// A refused connection is reset at accept, without a byte read: give
	// them all, at once, a moment to show which they are.
	kept := make([]bool, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(time.Second))
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			kept[i] = errors.As(err, &ne) && ne.Timeout()
		})
	}
	wg.Wait()
	for i, c := range conns {
		if kept[i] {
			held++
			floodConns[addr] = append(floodConns[addr], c)
			continue
		}
		refused++
		c.Close()
	}
	return held, refused
}

// closeFlood closes the connections a flood of addr holds, and waits until
// the listener has freed their slots (its server sees them close).
func closeFlood(t *testing.T, addr string) {
	t.Helper()
	for _, c := range floodConns[addr] {
		c.Close()
	}
	delete(floodConns, addr)
	time.Sleep(200 * time.Millisecond)
}
