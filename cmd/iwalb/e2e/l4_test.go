package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	krbclient "github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/spnego"

	"github.com/iwalb/iwalb/authnode/adtest"
)

// The L4 front door in front of two real auth nodes: TLS passes through
// untouched, so the browser's ticket for HTTP/lb.example.test is checked by
// whichever node the balancer picked, and the node sees the real client
// address in the PROXY v2 header.

// l4Config writes a configuration for an L4 listener on port that sends
// lb.example.test to the auth nodes auth1, auth2, ... on nodePorts, with
// HTTPS health checks on /readyz and PROXY v2.
func (e *e2e) l4Config(port, metricsPort, adminPort int, nodePorts ...int) string {
	var backends strings.Builder
	for i, p := range nodePorts {
		fmt.Fprintf(&backends, "      - {name: auth%d, addr: 127.0.0.1:%d, fqdn: auth%d.example.test}\n", i+1, p, i+1)
	}
	return e.write("l4.yaml", fmt.Sprintf(`log: {level: debug, format: json}
metrics: {listen: 127.0.0.1:%d}
admin: {listen: 127.0.0.1:%d}
pools:
  - name: authnodes
    policy: round_robin
    backends:
%s    health: {check: https, path: /readyz, ca_file: %s, interval: 300ms, timeout: 300ms, rise: 1, fall: 3}
l4:
  listeners:
    - name: public
      listen: 127.0.0.1:%d
      routes:
        - {server_names: [lb.example.test], pool: authnodes, proxy_protocol: v2}
`, metricsPort, adminPort, backends.String(), e.pki.CAFile, port))
}

const behindL4 = "  proxy_protocol: {enabled: true, trusted: [127.0.0.1/32]}\n"

func TestE2EKerberosThroughTheL4Balancer(t *testing.T) {
	e := newE2E(t)
	appPort, l4Port := freePortNum(t), freePortNum(t)
	n1, port1, _ := e.startAuthNode("auth1", appPort, behindL4)
	_, port2, _ := e.startAuthNode("auth2", appPort, behindL4)
	lbMetrics, lbAdmin := freePortNum(t), freePortNum(t)
	lb := e.start("iwalb run (l4)", "iwalb", "run", "-config", e.l4Config(l4Port, lbMetrics, lbAdmin, port1, port2))
	lbURL := fmt.Sprintf("https://lb.example.test:%d", l4Port)
	e.waitReady(lb, lbURL+"/readyz")

	// The certificate the client sees is the node's: the balancer has none.
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", l4Port), &tls.Config{ServerName: "lb.example.test", RootCAs: e.pki.Pool})
	if err != nil {
		t.Fatalf("TLS through the balancer: %v", err)
	}
	nodeCert, err := tls.LoadX509KeyPair(e.pki.CertFile, e.pki.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(conn.ConnectionState().PeerCertificates[0].Raw, nodeCert.Certificate[0]) {
		t.Fatal("the certificate seen through the balancer is not the node's")
	}
	conn.Close()

	krb := e.kinit("alice", e.env["AD_ALICE_PASSWORD"])
	ports := []int{l4Port, port1, port2, appPort}
	// login runs curl --negotiate from 127.0.0.2 through the balancer and
	// redeems the token at whichever node issued it; it returns the node
	// and the identity.
	login := func() (string, map[string]any) {
		t.Helper()
		out := e.curl(krb, ports, "--interface", "127.0.0.2", "--negotiate", "-u", ":", "-o", "/dev/null",
			"-w", "%{http_code} %{redirect_url}", lbURL+"/sso")
		code, target, _ := strings.Cut(out, " ")
		u, err := url.Parse(target)
		if code != "302" || err != nil || u.Query().Get("ssoToken") == "" {
			t.Fatalf("curl --negotiate %s/sso: %q", lbURL, out)
		}
		token := u.Query().Get("ssoToken")
		for i, p := range []int{port1, port2} {
			body, err := e.tryCurl(nil, ports, "-w", "\n%{http_code}", "-H", "Authorization: Bearer e2e-app-key-0123456789abcdef",
				"-H", "Content-Type: application/json", "--data", `{"token":"`+token+`"}`,
				fmt.Sprintf("https://auth%d.example.test:%d/api/v1/tokens/redeem", i+1, p))
			if err != nil {
				continue // that node is down
			}
			js, status, _ := strings.Cut(strings.TrimSpace(body), "\n")
			if strings.TrimSpace(status) == "200" {
				var id map[string]any
				_ = json.Unmarshal([]byte(js), &id)
				return fmt.Sprintf("auth%d", i+1), id
			}
		}
		t.Fatalf("no node redeemed the token issued through the balancer")
		return "", nil
	}

	seen := map[string]int{}
	for range 4 {
		node, id := login()
		seen[node]++
		if id["sAMAccountName"] != "alice" {
			t.Fatalf("identity through the balancer: %v", id)
		}
		// PROXY v2 carried the true client address (the balancer itself
		// dials from 127.0.0.1).
		if addr := fmt.Sprint(id["clientAddr"]); !strings.HasPrefix(addr, "127.0.0.2:") {
			t.Fatalf("the node saw client %s; want 127.0.0.2 from the PROXY header", addr)
		}
	}
	if seen["auth1"] == 0 || seen["auth2"] == 0 {
		t.Fatalf("logins per node %v; round-robin should use both", seen)
	}

	// An operator drains auth2 for maintenance: new logins go to auth1.
	admin := func(action string) {
		t.Helper()
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/pools/authnodes/backends/auth2/%s", lbAdmin, action), "", nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("admin %s auth2: %v %v", action, resp, err)
		}
		resp.Body.Close()
	}
	admin("drain")
	for range 3 {
		if node, _ := login(); node != "auth1" {
			t.Fatalf("a login went to %s while auth2 was drained", node)
		}
	}
	admin("undrain")

	// A node that dies is taken out; logins go on at the other one.
	n1.kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		page := scrape(t, lbMetrics)
		if metric(page, `iwalb_lb_backend_up{backend="auth1",pool="authnodes"}`) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("auth1 still counted up 10 s after it died:\n%s", grepLines(page, "iwalb_lb_backend_up"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for range 3 {
		if node, _ := login(); node != "auth2" {
			t.Fatalf("a login went to %s after auth1 died", node)
		}
	}
}

// TestE2EChromiumThroughTheL4Balancer is what users believe: a browser with
// a domain ticket opens the balancer's name and ends up signed in.
func TestE2EChromiumThroughTheL4Balancer(t *testing.T) {
	e := newE2E(t)
	appPort, l4Port := freePortNum(t), freePortNum(t)
	_, port1, _ := e.startAuthNode("auth1", appPort, behindL4)
	_, port2, _ := e.startAuthNode("auth2", appPort, behindL4)
	e.startDemoApp(appPort, port1, port2)
	lb := e.start("iwalb run (l4)", "iwalb", "run", "-config", e.l4Config(l4Port, freePortNum(t), freePortNum(t), port1, port2))
	lbURL := fmt.Sprintf("https://lb.example.test:%d", l4Port)
	e.waitReady(lb, lbURL+"/readyz")

	b := e.chromium(e.kinit("alice", e.env["AD_ALICE_PASSWORD"]))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	page, err := b.Navigate(ctx, lbURL+"/sso")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(page.URL)
	if u.Host != fmt.Sprintf("app.example.test:%d", appPort) || !strings.Contains(page.Text, "Signed in as alice") {
		t.Fatalf("Chromium ended on %s:\n%s", page.URL, page.Text)
	}
}

// TestE2ELoginLoadWhileANodeIsKilled: Kerberos logins through the L4
// balancer to two auth nodes, from several clients at once, while one node
// is killed with SIGKILL. Once the health checks have taken the node out
// (their fall window), no login fails; the failures inside the window are
// counted and reported. The load is bounded in time and count.
func TestE2ELoginLoadWhileANodeIsKilled(t *testing.T) {
	e := newE2E(t)
	e.replayQuota = 100000 // one user makes every login of the load
	appPort, l4Port := freePortNum(t), freePortNum(t)
	n1, port1, _ := e.startAuthNode("auth1", appPort, behindL4)
	_, port2, _ := e.startAuthNode("auth2", appPort, behindL4)
	lbMetrics, lbAdmin := freePortNum(t), freePortNum(t)
	lb := e.start("iwalb run (l4)", "iwalb", "run", "-config", e.l4Config(l4Port, lbMetrics, lbAdmin, port1, port2))
	lbURL := fmt.Sprintf("https://lb.example.test:%d", l4Port)
	e.waitReady(lb, lbURL+"/readyz")

	type result struct {
		start, end time.Time
		err        string // "" for a login that ended in the redirect to the application
	}
	const workers, perWorker = 4, 400
	var mu sync.Mutex
	var results []result
	var wg sync.WaitGroup
	stop := make(chan struct{})
	deadline := time.Now().Add(45 * time.Second)
	for range workers {
		cl := adtest.Login(t, e.env, e.env["AD_ALICE_USER"], e.env["AD_ALICE_PASSWORD"])
		client := e.client()
		client.Transport.(*http.Transport).DisableKeepAlives = true // each login is balanced anew
		wg.Go(func() {
			for range perWorker {
				select {
				case <-stop:
					return
				default:
				}
				if time.Now().After(deadline) {
					return
				}
				r := result{start: time.Now()}
				if err := loginOnce(client, cl, lbURL); err != nil {
					r.err = err.Error()
				}
				r.end = time.Now()
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	count := func() int { mu.Lock(); defer mu.Unlock(); return len(results) }
	for count() < 40 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	killedAt := time.Now()
	n1.kill()
	var downAt time.Time
	for {
		if metric(scrape(t, lbMetrics), `iwalb_lb_backend_up{backend="auth1",pool="authnodes"}`) == 0 {
			downAt = time.Now()
			break
		}
		if time.Since(killedAt) > 15*time.Second {
			t.Fatal("auth1 still counted up 15 s after it was killed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	after := count()
	for count() < after+80 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stopLoad()

	var before, window, later, failedBefore, failedWindow int
	var lateErrs []string
	// A login ended before the kill belongs before it; one that started
	// after the node was taken out belongs after; the rest (in flight at
	// the kill, or started before the checks noticed) are the window.
	for _, r := range results {
		switch {
		case r.end.Before(killedAt):
			before++
			if r.err != "" {
				failedBefore++
			}
		case r.start.Before(downAt):
			window++
			if r.err != "" {
				failedWindow++
			}
		default:
			later++
			if r.err != "" {
				lateErrs = append(lateErrs, r.err)
			}
		}
	}
	t.Logf("logins: %d before the kill (%d failed), %d in the %v fall window (%d failed), %d after it (%d failed)",
		before, failedBefore, window, downAt.Sub(killedAt).Round(time.Millisecond), failedWindow, later, len(lateErrs))
	if failedBefore > 0 {
		t.Errorf("%d logins failed before any node was killed", failedBefore)
	}
	if later < 40 {
		t.Fatalf("only %d logins after the fall window: the load did not go on", later)
	}
	if len(lateErrs) > 0 {
		t.Errorf("%d logins failed after auth1 was taken out, e.g. %s", len(lateErrs), lateErrs[0])
	}
}

// loginOnce runs one Kerberos login at base/sso with a fresh authenticator
// from cl, as a browser does: it must end in a redirect that carries a
// one-time token.
func loginOnce(client *http.Client, cl *krbclient.Client, base string) error {
	tok, err := spnego.SPNEGOClient(cl, "HTTP/lb.example.test").InitSecContext()
	if err != nil {
		return fmt.Errorf("make a Negotiate token: %w", err)
	}
	blob, err := tok.Marshal()
	if err != nil {
		return err
	}
	req, _ := http.NewRequest("GET", base+"/sso", nil)
	req.Header.Set("Authorization", "Negotiate "+base64.StdEncoding.EncodeToString(blob))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "ssoToken=") {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
