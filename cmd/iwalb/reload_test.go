package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/configtest"
	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/internal/testpki"
)

// TestReloadUnderLoad runs `iwalb run` with an L4 listener and an L7 front
// door over two nodes, each in a pool of its own, and reloads it with
// SIGHUP while clients keep connecting through both doors:
//   - no connection or request fails across the reloads;
//   - the route changed in the file takes the next connections, while a
//     connection relayed before the reload stays on its node and works;
//   - the front door's certificate, replaced in the file, is served to the
//     next TLS connections;
//   - a drained node stays drained;
//   - a broken file is refused with its FILE:LINE in the log and a metric,
//     and the running configuration keeps serving;
//   - `iwalb reload` reloads over the admin API and prints the outcome.
func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "iwalb test CA")
	auth1, auth2 := startTLSBackend(t, ca, "auth1"), startTLSBackend(t, ca, "auth2")
	ca.WriteFiles(t, dir, "tls/ca.pem", "")
	ca.Issue(t, "sso.example.test").WriteFiles(t, dir, "tls/sso.pem", "tls/sso.key")
	roots := ca.Pool()

	front4, front7, admin, metrics := testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t)
	file := func(pool string) string {
		return fmt.Sprintf(`log: {level: info}
metrics: {listen: %q}
admin: {listen: %q}
pools:
  - name: one
    backends: [{name: auth1, addr: %q, fqdn: auth1.example.test}]
    health: {check: https, path: /readyz, ca_file: tls/ca.pem, interval: 500ms, timeout: 500ms, rise: 1, fall: 3}
  - name: two
    backends: [{name: auth2, addr: %q, fqdn: auth2.example.test}]
    health: {check: https, path: /readyz, ca_file: tls/ca.pem, interval: 500ms, timeout: 500ms, rise: 1, fall: 3}
l7redirect:
  listeners:
    - name: sso
      listen: %q
      certificates: [{cert: tls/sso.pem, key: tls/sso.key}]
      names: [sso.example.test]
      rules:
        - {host: sso.example.test, path_prefix: /, pool: %s}
l4:
  listeners:
    - name: public
      listen: %q
      routes:
        - {server_names: [lb.example.test], pool: %s}
`, metrics, admin, auth1.addr, auth2.addr, front7, pool, front4, pool)
	}
	path := configtest.WriteFile(t, dir, "iwalb.yaml", []byte(file("one")))

	// While this test runs, neither SIGHUP nor SIGINT may kill the test
	// binary, even between run's own handlers.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT)
	defer signal.Stop(sigs)
	var errw testkit.Buffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"run", "-config", path}, io.Discard, &errw) }()
	stopped := false
	defer func() {
		if !stopped {
			syscall.Kill(os.Getpid(), syscall.SIGINT)
			<-done
		}
	}()
	metric := func(series string) int {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\d+)`).FindStringSubmatch(metricsText(t, metrics))
		if m == nil {
			return -1
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			select {
			case code := <-done:
				stopped = true
				t.Fatalf("iwalb run exited %d while waiting for %s\n%s", code, what, errw.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, errw.String())
			}
		}
	}
	waitUntil("both nodes checked", func() bool {
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		ok := regexp.MustCompile(`(?m)^iwalb_lb_backend_health_checks_total\{backend="auth[12]",pool="(one|two)",result="ok"\} [1-9]`)
		return len(ok.FindAll(body, -1)) == 2
	})

	// A node through L4: the name in the certificate the client got.
	nodeVia4 := func() (string, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", front4,
			&tls.Config{ServerName: "lb.example.test", RootCAs: roots, NextProtos: []string{"http/1.1"}})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return strings.TrimSuffix(c.ConnectionState().PeerCertificates[0].DNSNames[0], ".example.test"), nil
	}
	// The node the front door redirects to, and its certificate's serial.
	via7 := func() (node string, serial string, err error) {
		var seen string
		client := &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				DisableKeepAlives: true,
				TLSClientConfig: &tls.Config{RootCAs: roots, VerifyConnection: func(cs tls.ConnectionState) error {
					seen = cs.PeerCertificates[0].SerialNumber.String()
					return nil
				}},
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, network, front7)
				},
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		resp, err := client.Get("https://sso.example.test/sso")
		if err != nil {
			return "", "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			return "", seen, fmt.Errorf("status %d", resp.StatusCode)
		}
		host, _, _ := strings.Cut(strings.TrimPrefix(resp.Header.Get("Location"), "https://"), ".")
		return host, seen, nil
	}
	if n, _ := nodeVia4(); n != "auth1" {
		t.Fatalf("before the reload L4 sends lb.example.test to %q, want auth1", n)
	}
	_, firstSerial, err := via7()
	if err != nil {
		t.Fatal(err)
	}

	// A connection relayed to auth1 before the reload, kept open.
	kept, err := tls.Dial("tcp", front4, &tls.Config{ServerName: "lb.example.test", RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	keptBR := bufio.NewReader(kept)
	if who := whoami(t, kept, keptBR); !strings.HasPrefix(who, "auth1 ") {
		t.Fatalf("the kept connection reached %q", who)
	}

	// The load: clients through both doors until told to stop, bounded in
	// time and count. Every failure is kept.
	var stopLoad atomic.Bool
	var mu sync.Mutex
	var failures []string
	seen := map[string]int{}
	var wg sync.WaitGroup
	loadDeadline := time.Now().Add(time.Minute)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; i < 5000 && !stopLoad.Load() && time.Now().Before(loadDeadline); i++ {
				var node string
				var err error
				if w%2 == 0 {
					node, err = nodeVia4()
					node = "l4:" + node
				} else {
					node, _, err = via7()
					node = "l7:" + node
				}
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					seen[node]++
				}
				mu.Unlock()
			}
		})
	}
	finishLoad := func() {
		stopLoad.Store(true)
		wg.Wait()
	}
	defer finishLoad()

	waitUntil("the load through both doors", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["l4:auth1"] >= 10 && seen["l7:auth1"] >= 10
	})

	// Reload 1: both doors go to pool two; the front door gets a new
	// certificate.
	configtest.WriteFile(t, dir, "iwalb.yaml", []byte(file("two")))
	ca.Issue(t, "sso.example.test").WriteFiles(t, dir, "tls/sso.pem", "tls/sso.key")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitUntil("generation 2", func() bool { return metric("iwalb_config_generation") == 2 })
	waitUntil("new L4 connections on auth2", func() bool { n, _ := nodeVia4(); return n == "auth2" })
	if node, serial, err := via7(); err != nil || node != "auth2" || serial == firstSerial {
		t.Errorf("the front door after the reload: node %q, certificate serial %s (was %s), %v; want auth2 and the new certificate",
			node, serial, firstSerial, err)
	}
	if who := whoami(t, kept, keptBR); !strings.HasPrefix(who, "auth1 ") {
		t.Errorf("the connection relayed before the reload now reaches %q, want still auth1", who)
	}

	// Reload 2: a broken file is refused, with its line, and changes
	// nothing.
	configtest.WriteFile(t, dir, "iwalb.yaml", []byte(file("two")+"bogus: 1\n"))
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitUntil("the refused reload counted", func() bool {
		return metric(`iwalb_config_reloads_total{result="failed"}`) == 1
	})
	if !strings.Contains(errw.String(), path+`:`) || !strings.Contains(errw.String(), `unknown key \"bogus\"`) {
		t.Errorf("the log does not give the broken file's FILE:LINE:\n%s", errw.String())
	}
	if g := metric("iwalb_config_generation"); g != 2 {
		t.Errorf("generation %d after a refused reload, want 2", g)
	}

	// Reload 3, through `iwalb reload`, after draining auth1 over the admin
	// API: the drain outlives the reload.
	req, _ := http.NewRequest("POST", "http://"+admin+"/pools/one/backends/auth1/drain", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("drain auth1: %v %v", resp, err)
	}
	configtest.WriteFile(t, dir, "iwalb.yaml", []byte(file("two")+"\n# a comment changes the hash\n"))
	var out, errOut bytes.Buffer
	if code := run([]string{"reload", "-config", path}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "reloaded: generation 3, config ") {
		t.Fatalf("iwalb reload: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	resp, err := http.Get("http://" + admin + "/pools")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`"name": "auth1",[^}]*"drained": true`).Match(body) {
		t.Errorf("auth1 is not drained after the reload:\n%s", body)
	}
	// A broken file through `iwalb reload`: refused, the reason printed.
	configtest.WriteFile(t, dir, "iwalb.yaml", []byte(file("nope")))
	out.Reset()
	errOut.Reset()
	if code := run([]string{"reload", "-config", path}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), `no pool named "nope"`) || !strings.Contains(errOut.String(), "generation 3") {
		t.Errorf("iwalb reload of a broken file: exit %d, stderr %q", code, errOut.String())
	}

	finishLoad()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("load across three reloads: %v, %d failures", seen, len(failures))
	if len(failures) > 0 {
		t.Errorf("%d connections or requests failed across the reloads, e.g. %q", len(failures), failures[0])
	}
	if seen["l4:auth1"] == 0 || seen["l4:auth2"] == 0 || seen["l7:auth1"] == 0 || seen["l7:auth2"] == 0 {
		t.Errorf("the load did not see both configurations through both doors: %v", seen)
	}
}
