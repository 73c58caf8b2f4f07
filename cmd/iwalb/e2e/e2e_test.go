// Package e2e holds the end-to-end tests: the real iwalb binary and the
// demo application, started as processes, driven by the real clients a user
// has (kinit, curl --negotiate, headless Chromium) against the test Active
// Directory of scripts/ad-up. It has test files only. The tests skip under
// -short or when IWALB_AD_ENV is unset; otherwise TestMain builds both
// binaries once for all of them.
package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/cmd/iwalb/internal/browser"
	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/internal/testpki"
)

// binDir is the folder where TestMain built iwalb and iwalb-demoapp; it
// is set before any test runs and never changed.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse() // for testing.Short
	if testing.Short() || os.Getenv(adtest.EnvVar) == "" {
		// Every test skips, and adtest.Env says why: nothing to build.
		os.Exit(m.Run())
	}
	os.Exit(buildAndRun(m))
}

// buildAndRun builds the binaries into a temporary folder, runs the tests
// and removes the folder.
func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "iwalb-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"github.com/iwalb/iwalb/cmd/iwalb", "github.com/iwalb/iwalb/cmd/iwalb-demoapp")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %s: %v\n%s", build, err, out)
		return 1
	}
	binDir = dir
	return m.Run()
}

// e2e is one test's set of processes and files.
type e2e struct {
	t   *testing.T
	env map[string]string
	dir string
	pki testpki.Files
	// replayQuota is the nodes' kerberos.replay_quota; 0 leaves the
	// default. A load of one user's logins needs more.
	replayQuota int
}

func newE2E(t *testing.T) *e2e {
	t.Helper()
	env := adtest.Env(t)
	e := &e2e{t: t, env: env, dir: t.TempDir(),
		pki: testpki.NewFiles(t, "auth1.example.test", "auth2.example.test", "lb.example.test", "sso.example.test", "app.example.test")}
	// The test domain's keytab is readable by all, so that tests need not
	// run as root; iwalb run refuses that, so the nodes get a private copy.
	kt, err := os.ReadFile(env["AD_HTTP_KEYTAB"])
	if err != nil {
		t.Fatal(err)
	}
	e.write("secrets/http.keytab", string(kt))
	e.write("secrets/bind", env["AD_BIND_PASSWORD"]+"\n")
	e.write("secrets/app-key", "e2e-app-key-0123456789abcdef\n")
	return e
}

func (e *e2e) write(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// freePortNum returns a loopback port that was free a moment ago.
func freePortNum(t *testing.T) int {
	_, p, _ := net.SplitHostPort(testkit.FreePort(t))
	n, _ := strconv.Atoi(p)
	return n
}

// authNodeConfig writes an iwalb configuration for one auth node and
// returns its path. extra is appended to the authnode section.
func (e *e2e) authNodeConfig(name, fqdn string, port, metricsPort int, appURL, extra string) string {
	env := e.env
	quota := ""
	if e.replayQuota > 0 {
		quota = fmt.Sprintf("    replay_quota: %d\n    replay_cache_size: %d\n", e.replayQuota, max(e.replayQuota, 100000))
	}
	return e.write(name+".yaml", fmt.Sprintf(`log: {level: debug, format: json}
metrics: {listen: 127.0.0.1:%d}
authnode:
  fqdn: %s
  listen: 127.0.0.1:%d
  tls: {cert: %s, key: %s}
  application_url: %s
  kerberos:
    keytab: %s
    krb5_conf: %s
    realm: %s
    account: %s
%s  ldap:
    url: %s
    ca_file: %s
    server_name: %s
    bind_dn: %s
    bind_password_file: secrets/bind
    base_dn: %s
    required_group: %s
  api:
    clients: [{name: demoapp, key_file: secrets/app-key}]
%s`, metricsPort, fqdn, port, e.pki.CertFile, e.pki.KeyFile, appURL,
		filepath.Join(e.dir, "secrets/http.keytab"), env["KRB5_CONFIG"], env["AD_REALM"], env["AD_SVC_USER"], quota,
		env["AD_LDAPS_URL"], env["AD_LDAP_CA_FILE"], env["AD_LDAP_TLS_SERVER_NAME"],
		env["AD_BIND_DN"], env["AD_BASE_DN"], env["AD_GROUP_DN"], extra))
}

// proc is a process under test; its output is kept for failure messages.
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    *testkit.Buffer
	done   chan error
	killed bool
}

// kill ends the process at once, as a crash or a pulled cable would.
func (p *proc) kill() {
	p.killed = true
	_ = p.cmd.Process.Kill()
}

// start runs a program; at cleanup it gets SIGTERM and must exit 0 within
// 15 s, as an operator's stop would.
func (e *e2e) start(name, program string, args ...string) *proc {
	e.t.Helper()
	if !filepath.IsAbs(program) {
		program = filepath.Join(binDir, program) // one of the binaries built for the tests
	}
	p := &proc{name: name, cmd: exec.Command(program, args...), out: &testkit.Buffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Dir = e.dir
	if err := p.cmd.Start(); err != nil {
		e.t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	e.t.Cleanup(func() {
		if p.killed {
			<-p.done
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-p.done:
			if err != nil {
				e.t.Errorf("%s exited with %v after SIGTERM; output:\n%s", name, err, p.out)
			}
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			e.t.Errorf("%s did not stop within 15 s of SIGTERM", name)
		}
	})
	return p
}

// client reaches every *.example.test name at 127.0.0.1 on the URL's port,
// trusts the test CA and does not follow redirects.
func (e *e2e) client() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: e.pki.Pool},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				return d.DialContext(ctx, network, "127.0.0.1:"+port)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// waitReady polls url until it answers 200, or fails the test with p's
// output.
func (e *e2e) waitReady(p *proc, url string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := e.client().Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-p.done:
			e.t.Fatalf("%s exited (%v) before %s was ready:\n%s", p.name, err, url, p.out)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s not ready at %s after 30 s (last: %v):\n%s", p.name, url, err, p.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kinit gets a TGT for user into a fresh ticket cache and returns the
// environment for Kerberos clients that use it.
func (e *e2e) kinit(user, password string) []string {
	e.t.Helper()
	env := append(os.Environ(), "KRB5_CONFIG="+e.env["KRB5_CONFIG"], "KRB5CCNAME=FILE:"+filepath.Join(e.t.TempDir(), "cc"))
	cmd := exec.Command("kinit", user)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("kinit %s: %v\n%s", user, err, out)
	}
	return env
}

// curl runs curl with the test CA and every name resolved to 127.0.0.1 on
// the given ports, and returns its standard output; a failing curl fails
// the test.
func (e *e2e) curl(env []string, ports []int, args ...string) string {
	e.t.Helper()
	out, err := e.tryCurl(env, ports, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// tryCurl is curl for calls that may fail, such as to a node that is down.
func (e *e2e) tryCurl(env []string, ports []int, args ...string) (string, error) {
	all := []string{"-sS", "--cacert", e.pki.CAFile}
	for _, p := range ports {
		for _, h := range []string{"auth1", "auth2", "lb", "sso", "app"} {
			all = append(all, "--resolve", fmt.Sprintf("%s.example.test:%d:127.0.0.1", h, p))
		}
	}
	cmd := exec.Command("curl", append(all, args...)...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return "", fmt.Errorf("curl %v: %v %s", args, err, stderr)
	}
	return string(out), nil
}

// metric returns the value of one Prometheus series from a /metrics page,
// or -1 when it is absent.
func metric(page, series string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(page)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// startAuthNode checks and starts `iwalb run` for one auth node that
// sends browsers to the demo application on appPort, and waits until the
// node is ready.
func (e *e2e) startAuthNode(name string, appPort int, extra string) (n *proc, port, metricsPort int) {
	e.t.Helper()
	port, metricsPort = freePortNum(e.t), freePortNum(e.t)
	return e.startAuthNodeOn(name, port, metricsPort, appPort, extra), port, metricsPort
}

// startAuthNodeOn is startAuthNode on given ports, to bring a node back
// where it was.
func (e *e2e) startAuthNodeOn(name string, port, metricsPort, appPort int, extra string) *proc {
	e.t.Helper()
	appURL := fmt.Sprintf("https://app.example.test:%d/sso/callback", appPort)
	cfg := e.authNodeConfig(name, name+".example.test", port, metricsPort, appURL, extra)
	if out, err := exec.Command(filepath.Join(binDir, "iwalb"), "check", "-config", cfg).CombinedOutput(); err != nil {
		e.t.Fatalf("iwalb check: %v\n%s", err, out)
	}
	n := e.start("iwalb run "+name, "iwalb", "run", "-config", cfg)
	e.waitReady(n, fmt.Sprintf("https://%s.example.test:%d/readyz", name, port))
	return n
}

// startDemoApp starts the demo application on appPort, redeeming at the
// nodes auth1, auth2, ... on nodePorts, and waits until it answers.
func (e *e2e) startDemoApp(appPort int, nodePorts ...int) *proc {
	e.t.Helper()
	args := []string{"-listen", fmt.Sprintf("127.0.0.1:%d", appPort),
		"-cert", e.pki.CertFile, "-key", e.pki.KeyFile, "-ca", e.pki.CAFile,
		"-api-key-file", filepath.Join(e.dir, "secrets/app-key")}
	for i, p := range nodePorts {
		host := fmt.Sprintf("auth%d.example.test:%d", i+1, p)
		args = append(args, "-node", "https://"+host, "-resolve", host+":127.0.0.1")
	}
	app := e.start("iwalb-demoapp", "iwalb-demoapp", args...)
	e.waitReady(app, fmt.Sprintf("https://app.example.test:%d/", appPort))
	return app
}

func TestE2EKerberosLoginThroughIwalbRun(t *testing.T) {
	e := newE2E(t)
	appPort := freePortNum(t)
	node, nodePort, metricsPort := e.startAuthNode("auth1", appPort, "")
	nodeURL := fmt.Sprintf("https://auth1.example.test:%d", nodePort)

	krb := e.kinit("alice", e.env["AD_ALICE_PASSWORD"])
	ports := []int{nodePort, appPort}

	// The 302 carries a one-time token to the application.
	loc := e.curl(krb, ports, "--negotiate", "-u", ":", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", nodeURL+"/sso")
	code, target, _ := strings.Cut(loc, " ")
	u, err := url.Parse(target)
	if code != "302" || err != nil || u.Host != fmt.Sprintf("app.example.test:%d", appPort) || len(u.Query().Get("ssoToken")) < 43 {
		t.Fatalf("curl --negotiate /sso: %q; want 302 to the application with a token\n%s", loc, node.out)
	}
	token := u.Query().Get("ssoToken")

	// Redeeming gives alice's identity, once.
	redeem := func() (string, map[string]any) {
		body := e.curl(nil, ports, "-w", "\n%{http_code}", "-H", "Authorization: Bearer e2e-app-key-0123456789abcdef",
			"-H", "Content-Type: application/json", "--data", `{"token":"`+token+`"}`, nodeURL+"/api/v1/tokens/redeem")
		js, status, _ := strings.Cut(strings.TrimSpace(body), "\n")
		status = strings.TrimSpace(status)
		var m map[string]any
		_ = json.Unmarshal([]byte(js), &m)
		return status, m
	}
	status, id := redeem()
	if status != "200" || id["sAMAccountName"] != "alice" || id["realm"] != "EXAMPLE.TEST" ||
		!strings.EqualFold(fmt.Sprint(id["userPrincipalName"]), "alice@example.test") ||
		!strings.Contains(fmt.Sprint(id["groups"]), "lb-users") {
		t.Fatalf("redeem: %s %v", status, id)
	}
	if sess, _ := id["session"].(map[string]any); sess["id"] == nil || sess["expiresAt"] == nil {
		t.Fatalf("redeem gave no session: %v", id)
	}
	if status, _ := redeem(); status != "404" {
		t.Fatalf("second redeem of the same token: %s, want 404", status)
	}

	// The demo application completes the flow for a client that follows
	// redirects, as a browser does.
	e.startDemoApp(appPort, nodePort)
	page := e.curl(krb, ports, "-L", "--negotiate", "-u", ":", nodeURL+"/sso")
	if !strings.Contains(page, `<p id="who">Signed in as alice</p>`) || !strings.Contains(page, "<li>lb-users</li>") {
		t.Fatalf("curl --negotiate -L ended on:\n%s\nnode:\n%s", page, node.out)
	}

	// A client without Kerberos gets the Negotiate challenge and the page.
	if got := e.curl(nil, ports, "-o", "/dev/null", "-w", "%{http_code} %header{www-authenticate}", nodeURL+"/sso"); got != "401 Negotiate" {
		t.Fatalf("/sso without credentials: %q, want 401 Negotiate", got)
	}

	// What a network team watches.
	m := scrape(t, metricsPort)
	for series, want := range map[string]float64{
		`iwalb_authnode_logins_total{mechanism="kerberos",outcome="success",reason="ok"}`:       2,
		`iwalb_authnode_negotiate_tokens_total{kind="kerberos"}`:                                2,
		`iwalb_authnode_tokens_issued_total`:                                                    2,
		`iwalb_authnode_tokens_redeemed_total`:                                                  2,
		`iwalb_authnode_token_redeem_failures_total{reason="unknown"}`:                          1,
		`iwalb_authnode_ready{check="overall"}`:                                                 1,
		`iwalb_authnode_ready{check="kdc_self_test"}`:                                           1,
		`iwalb_authnode_session_events_total{event="created"}`:                                  2,
		`iwalb_authnode_ldap_seconds_count{op="lookup",result="ok"}`:                            2,
		`iwalb_authnode_kerberos_validation_seconds_count`:                                      2,
		`iwalb_authnode_negotiate_header_bytes_count`:                                           2,
		`iwalb_authnode_logins_total{mechanism="none",outcome="failure",reason="no_negotiate"}`: 1,
	} {
		if got := metric(m, series); got != want {
			t.Errorf("%s = %v, want %v\n%s", series, got, want, grepLines(m, "iwalb_authnode_logins"))
		}
	}
	if off := metric(m, "iwalb_authnode_dc_clock_offset_seconds"); off < -5 || off > 5 {
		t.Errorf("clock offset to the DC %v s; want a few seconds at most on one machine", off)
	}
	if strings.Contains(node.out.String(), token) {
		t.Errorf("the one-time token appears in iwalb's log")
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// chromium starts headless Chromium as a domain user with the ticket cache
// in krbEnv: the profile seed that lets it do Negotiate, the test domain in
// its allowlist, every *.example.test name at 127.0.0.1, the test CA.
func (e *e2e) chromium(krbEnv []string) *browser.Browser {
	e.t.Helper()
	seed, err := os.ReadFile(e.env["AD_CHROMIUM_LOCAL_STATE"])
	if err != nil {
		e.t.Fatal(err)
	}
	var krb []string
	for _, kv := range krbEnv {
		if strings.HasPrefix(kv, "KRB5") {
			krb = append(krb, kv)
		}
	}
	return browser.StartT(e.t, browser.Options{
		LocalState:          seed,
		AuthServerAllowlist: "*.example.test",
		HostResolverRules:   "MAP *.example.test 127.0.0.1, MAP * ~NOTFOUND",
		CACertFile:          e.pki.CAFile,
		Env:                 krb,
	})
}

func TestE2EChromiumLogsInAtTheAuthNode(t *testing.T) {
	e := newE2E(t)
	appPort := freePortNum(t)
	_, nodePort, _ := e.startAuthNode("auth1", appPort, "")
	e.startDemoApp(appPort, nodePort)
	b := e.chromium(e.kinit("alice", e.env["AD_ALICE_PASSWORD"]))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	page, err := b.Navigate(ctx, fmt.Sprintf("https://auth1.example.test:%d/sso", nodePort))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(page.URL)
	if u.Host != fmt.Sprintf("app.example.test:%d", appPort) || u.Path != "/sso/callback" ||
		!strings.Contains(page.Text, "Signed in as alice") || !strings.Contains(page.Text, "lb-users") {
		t.Fatalf("Chromium ended on %s:\n%s", page.URL, page.Text)
	}
}

// scrape returns the /metrics page of the iwalb whose metrics listen on port.
func scrape(t *testing.T, port int) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestE2EChromiumFormSignIn: headless Chromium without a Kerberos ticket
// lands on the sign-in form (the page of the node's 401), signs in with
// alice's password and ends on the demo application; a second visit goes
// straight through on the node's cookie; after /logoff the next visit
// shows the form again.
func TestE2EChromiumFormSignIn(t *testing.T) {
	e := newE2E(t)
	appPort := freePortNum(t)
	_, nodePort, _ := e.startAuthNode("auth1", appPort, "  form: {enabled: true, organisation: Example Corp}\n  sso_session: {enabled: true}\n")
	e.startDemoApp(appPort, nodePort)
	b := e.chromium(nil) // no ticket cache: Negotiate fails in the browser
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sso := fmt.Sprintf("https://auth1.example.test:%d/sso", nodePort)
	app := fmt.Sprintf("app.example.test:%d", appPort)

	tab, err := b.Open(ctx, sso)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	form, err := tab.Until(ctx, `!!document.querySelector('form[action="/login"] input[name=password]')`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(form.Text, "Sign in to Example Corp") {
		t.Fatalf("the form page says:\n%s", form.Text)
	}
	fill := fmt.Sprintf(`(() => {
		document.getElementById('username').value = %q;
		document.getElementById('password').value = %q;
		document.querySelector('form[action="/login"]').submit();
	})()`, e.env["AD_ALICE_USER"], e.env["AD_ALICE_PASSWORD"])
	if err := tab.Eval(ctx, fill); err != nil {
		t.Fatal(err)
	}
	wait, cancelWait := context.WithTimeout(ctx, 20*time.Second)
	defer cancelWait()
	done, err := tab.Until(wait, `location.host === `+strconv.Quote(app)+` && document.body.innerText.includes('Signed in as')`)
	if err != nil {
		now, _ := tab.Until(ctx, "true")
		var where string
		if now != nil {
			where = now.URL + "\n" + now.Text
		}
		t.Fatalf("%v; Chromium is on %s", err, where)
	}
	if !strings.Contains(done.Text, "Signed in as alice") || !strings.Contains(done.Text, "lb-users") {
		t.Fatalf("after the form Chromium is on %s:\n%s", done.URL, done.Text)
	}

	again, err := b.Navigate(ctx, sso)
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := url.Parse(again.URL); u.Host != app || !strings.Contains(again.Text, "Signed in as alice") {
		t.Fatalf("second visit (the cookie): %s\n%s", again.URL, again.Text)
	}
	off, err := b.Navigate(ctx, fmt.Sprintf("https://auth1.example.test:%d/logoff", nodePort))
	if err != nil || !strings.Contains(off.Text, "You are signed out") {
		t.Fatalf("logoff: %v\n%v", err, off)
	}
	after, err := b.Navigate(ctx, sso)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(after.HTML, `action="/login"`) {
		t.Fatalf("after logoff Chromium is on %s, not the form:\n%s", after.URL, after.Text)
	}
}
