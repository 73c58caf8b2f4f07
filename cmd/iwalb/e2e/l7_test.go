package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The L7 front door: it terminates TLS for sso.example.test and sends the
// browser, with one redirect, to a healthy node's own name; Kerberos then
// runs between the browser and that node. The same iwalb also runs an L4
// listener that hands sso.example.test to the front door and passes
// lb.example.test through to the nodes, so one port serves both patterns.

// frontDoorsConfig writes one configuration with the pool of nodes, the
// L7 front door on l7Port and an L4 listener on l4Port that serves both
// names.
func (e *e2e) frontDoorsConfig(l7Port, l4Port, metricsPort int, nodePorts ...int) string {
	var backends strings.Builder
	for i, p := range nodePorts {
		fmt.Fprintf(&backends, "      - {name: auth%d, addr: 127.0.0.1:%d, fqdn: auth%d.example.test}\n", i+1, p, i+1)
	}
	return e.write("frontdoors.yaml", fmt.Sprintf(`log: {level: debug, format: json}
metrics: {listen: 127.0.0.1:%d}
pools:
  - name: authnodes
    policy: client_ip_hash
    backends:
%s    health: {check: https, path: /readyz, ca_file: %s, interval: 300ms, timeout: 300ms, rise: 1, fall: 3}
l7redirect:
  listeners:
    - name: sso
      listen: 127.0.0.1:%d
      certificates: [{cert: %s, key: %s}]
      names: [sso.example.test]
      retry_after: 3s
      rules:
        - {host: sso.example.test, path_prefix: /, pool: authnodes}
l4:
  listeners:
    - name: public
      listen: 127.0.0.1:%d
      routes:
        - {server_names: [sso.example.test], l7redirect: sso}
        - {server_names: [lb.example.test], pool: authnodes, proxy_protocol: v2}
`, metricsPort, backends.String(), e.pki.CAFile, l7Port, e.pki.CertFile, e.pki.KeyFile, l4Port))
}

// frontDoors is two auth nodes, the demo application and one iwalb with
// both front doors.
type frontDoors struct {
	appPort, l7Port, l4Port, metricsPort int
	nodePorts, nodeMetrics               [2]int
	nodes                                [2]*proc
	doors                                *proc
}

func (e *e2e) startFrontDoors() *frontDoors {
	e.t.Helper()
	return e.startFrontDoorsWith("")
}

// startFrontDoorsWith is startFrontDoors with more auth node settings.
func (e *e2e) startFrontDoorsWith(nodeExtra string) *frontDoors {
	e.t.Helper()
	return e.startFrontDoorsFor(func(*frontDoors) string { return nodeExtra })
}

// startFrontDoorsFor is startFrontDoors with more auth node settings made
// from the ports chosen.
func (e *e2e) startFrontDoorsFor(nodeExtra func(*frontDoors) string) *frontDoors {
	e.t.Helper()
	f := &frontDoors{appPort: freePortNum(e.t), l7Port: freePortNum(e.t), l4Port: freePortNum(e.t), metricsPort: freePortNum(e.t)}
	extra := nodeExtra(f)
	for i := range f.nodes {
		f.nodes[i], f.nodePorts[i], f.nodeMetrics[i] = e.startAuthNode(fmt.Sprintf("auth%d", i+1), f.appPort, behindL4+extra)
	}
	e.startDemoApp(f.appPort, f.nodePorts[0], f.nodePorts[1])
	cfg := e.frontDoorsConfig(f.l7Port, f.l4Port, f.metricsPort, f.nodePorts[0], f.nodePorts[1])
	f.doors = e.start("iwalb run (front doors)", "iwalb", "run", "-config", cfg)
	e.waitReady(f.doors, fmt.Sprintf("https://lb.example.test:%d/readyz", f.l4Port))
	return f
}

// signedIn checks that a browser or curl ended on the demo application
// signed in as alice.
func signedIn(t *testing.T, f *frontDoors, finalURL, text string) {
	t.Helper()
	u, _ := url.Parse(finalURL)
	if u == nil || u.Host != fmt.Sprintf("app.example.test:%d", f.appPort) || !strings.Contains(text, "Signed in as alice") {
		t.Fatalf("ended on %s:\n%s", finalURL, text)
	}
}

func TestE2EChromiumThroughBothFrontDoors(t *testing.T) {
	e := newE2E(t)
	f := e.startFrontDoors()
	b := e.chromium(e.kinit("alice", e.env["AD_ALICE_PASSWORD"]))
	for _, start := range []string{
		fmt.Sprintf("https://sso.example.test:%d/sso", f.l7Port), // the L7 front door's own listener
		fmt.Sprintf("https://sso.example.test:%d/sso", f.l4Port), // the same front door, handed over by L4
		fmt.Sprintf("https://lb.example.test:%d/sso", f.l4Port),  // L4 passthrough to a node
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		page, err := b.Navigate(ctx, start)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", start, err)
		}
		signedIn(t, f, page.URL, page.Text)
	}
}

func TestE2ECurlFollowsTheFrontDoorRedirect(t *testing.T) {
	e := newE2E(t)
	f := e.startFrontDoors()
	krb := e.kinit("alice", e.env["AD_ALICE_PASSWORD"])
	ports := []int{f.appPort, f.l7Port, f.l4Port, f.nodePorts[0], f.nodePorts[1]}

	// One redirect, to a node's own name, path and query kept.
	out := e.curl(nil, ports, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url} %header{cache-control}",
		fmt.Sprintf("https://sso.example.test:%d/sso?lang=en", f.l7Port))
	code, rest, _ := strings.Cut(out, " ")
	target, cc, _ := strings.Cut(rest, " ")
	u, err := url.Parse(target)
	if code != "302" || err != nil || cc != "no-store" || u.Path != "/sso" || u.RawQuery != "lang=en" ||
		(u.Host != fmt.Sprintf("auth1.example.test:%d", f.nodePorts[0]) && u.Host != fmt.Sprintf("auth2.example.test:%d", f.nodePorts[1])) {
		t.Fatalf("front door answered %q; want 302 to a node's own name with path and query", out)
	}

	// curl --negotiate -L ends signed in. (--location-trusted: curl
	// otherwise keeps authentication to the first host.)
	page := e.curl(krb, ports, "-L", "--location-trusted", "--negotiate", "-u", ":", fmt.Sprintf("https://sso.example.test:%d/sso", f.l7Port))
	if !strings.Contains(page, `<p id="who">Signed in as alice</p>`) {
		t.Fatalf("curl --negotiate -L through the front door ended on:\n%s", page)
	}
}

func TestE2EFrontDoorWithNoHealthyNode(t *testing.T) {
	e := newE2E(t)
	f := e.startFrontDoors()
	c := e.client()
	ssoURL := fmt.Sprintf("https://sso.example.test:%d/sso", f.l7Port)
	waitStatus := func(want int) *http.Response {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, err := c.Get(ssoURL)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == want {
					return resp
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the front door did not answer %d within 15 s (last %v, %v)", want, resp, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	f.nodes[0].kill()
	f.nodes[1].kill()
	resp := waitStatus(http.StatusServiceUnavailable)
	if ra := resp.Header.Get("Retry-After"); ra != "3" {
		t.Fatalf("Retry-After %q, want 3", ra)
	}
	// One node back: redirects resume, to that node.
	e.startAuthNodeOn("auth2", f.nodePorts[1], f.nodeMetrics[1], f.appPort, behindL4)
	resp = waitStatus(http.StatusFound)
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, fmt.Sprintf("https://auth2.example.test:%d/", f.nodePorts[1])) {
		t.Fatalf("redirect to %q; want the node that came back", loc)
	}
	if m := scrape(t, f.metricsPort); metric(m, `iwalb_l7redirect_no_healthy_node_total{frontdoor="sso",rule="sso.example.test/"}`) < 1 {
		t.Fatalf("no-healthy-node answers not counted:\n%s", grepLines(m, "iwalb_l7redirect"))
	}
}
