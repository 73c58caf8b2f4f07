package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// ntlmNode is the auth node setting that turns NTLM on, checked by the test
// domain's winbindd through ntlm_auth.
func (e *e2e) ntlmNode() string {
	e.t.Helper()
	if e.env["AD_NTLM"] != "1" {
		e.t.Fatal("the test domain runs without winbindd: start it with AD_NTLM=1 scripts/ad-up DIR (scripts/test does)")
	}
	return fmt.Sprintf("  ntlm: {enabled: true, smb_conf: %s}\n", e.env["AD_NTLM_AUTH_CONF"])
}

// startNginx starts nginx as Debian ships it, on port, configured the way a
// team would first put an L7 balancer that terminates TLS in front of the
// nodes: an upstream of both, proxy_pass with the defaults (a back-end
// connection per request), the client's Host and address passed on.
func (e *e2e) startNginx(port int, nodePorts ...int) {
	e.t.Helper()
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		e.t.Fatal("nginx is not installed (scripts/test installs Debian's nginx)")
	}
	dir := filepath.Join(e.dir, "nginx")
	var servers strings.Builder
	for _, p := range nodePorts {
		fmt.Fprintf(&servers, "\t\tserver 127.0.0.1:%d;\n", p)
	}
	conf := e.write("nginx/nginx.conf", fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
	access_log %[1]s/access.log;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	upstream authnodes {
%[2]s	}
	server {
		listen 127.0.0.1:%[3]d ssl;
		server_name lb.example.test;
		ssl_certificate %[4]s;
		ssl_certificate_key %[5]s;
		location / {
			proxy_pass https://authnodes;
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
		}
	}
}
`, dir, servers.String(), port, e.pki.CertFile, e.pki.KeyFile))
	p := e.start("nginx", nginx, "-c", conf, "-p", dir)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := e.tryCurl(nil, []int{port}, "-o", "/dev/null", fmt.Sprintf("https://lb.example.test:%d/readyz", port)); err == nil {
			return
		}
		select {
		case err := <-p.done:
			logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			e.t.Fatalf("nginx exited (%v):\n%s\n%s", err, p.out, logs)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("nginx not answering on %d after 15 s:\n%s", port, p.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// signIn runs curl through a front door with one mechanism, following the
// redirects to the application, and says what the user got: "signed in",
// or "fails: STATUS REASON" with the reason the node's page gave.
func (e *e2e) signIn(env []string, ports []int, mechanism, url string) string {
	e.t.Helper()
	args := []string{"-L", "--location-trusted", "-w", "\n%{http_code}", url}
	switch mechanism {
	case "NTLM":
		args = append([]string{"--ntlm", "-u", e.env["AD_DOMAIN"] + `\alice:` + e.env["AD_ALICE_PASSWORD"]}, args...)
	case "Kerberos":
		args = append([]string{"--negotiate", "-u", ":"}, args...)
	}
	out, err := e.tryCurl(env, ports, args...)
	if err != nil {
		return "fails: " + err.Error()
	}
	body, code, _ := cutLast(out, "\n")
	if strings.Contains(body, `<p id="who">Signed in as alice</p>`) {
		return "signed in"
	}
	reason := "?"
	if m := regexp.MustCompile(`Reason: <code>([a-z_0-9]+)</code>`).FindStringSubmatch(body); m != nil {
		reason = m[1] // the node's error page
	}
	return "fails: " + code + " " + reason
}

func cutLast(s, sep string) (string, string, bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// TestE2EDeploymentPatterns signs alice in with NTLM (curl --ntlm on one
// kept-alive connection) and with Kerberos (curl --negotiate) through the
// three ways of putting nodes behind one name: an L7 balancer that
// terminates TLS (nginx proxy_pass), iwalb's L4 passthrough and iwalb's L7
// redirect, against two real auth nodes with NTLM on. The results are the
// table of the README's deployment section, which must say what this test
// found.
func TestE2EDeploymentPatterns(t *testing.T) {
	e := newE2E(t)
	f := e.startFrontDoorsWith(e.ntlmNode())
	nginxPort := freePortNum(t)
	e.startNginx(nginxPort, f.nodePorts[0], f.nodePorts[1])
	krb := e.kinit("alice", e.env["AD_ALICE_PASSWORD"])
	noTicket := append(os.Environ(), "KRB5_CONFIG="+e.env["KRB5_CONFIG"], "KRB5CCNAME=FILE:"+filepath.Join(t.TempDir(), "none"))
	ports := []int{f.appPort, f.l7Port, f.l4Port, f.nodePorts[0], f.nodePorts[1], nginxPort}

	patterns := []struct{ name, url string }{
		{"L7 balancer that terminates TLS (nginx `proxy_pass`)", fmt.Sprintf("https://lb.example.test:%d/sso", nginxPort)},
		{"iwalb L4 passthrough (SNI, PROXY v2)", fmt.Sprintf("https://lb.example.test:%d/sso", f.l4Port)},
		{"iwalb L7 redirect (302 to the node's own name)", fmt.Sprintf("https://sso.example.test:%d/sso", f.l7Port)},
	}
	var table strings.Builder
	table.WriteString("| pattern | NTLM (`curl --ntlm`) | Kerberos (`curl --negotiate`) |\n|---|---|---|\n")
	results := map[string][2]string{}
	for _, p := range patterns {
		ntlm := e.signIn(noTicket, ports, "NTLM", p.url)
		kerberos := e.signIn(krb, ports, "Kerberos", p.url)
		results[p.name] = [2]string{ntlm, kerberos}
		fmt.Fprintf(&table, "| %s | %s | %s |\n", p.name, ntlm, kerberos)
	}
	t.Logf("results:\n%s", table.String())

	// What a network team needs to know, asserted: NTLM breaks behind a
	// balancer that pools its own back-end connections (the answer finds
	// no challenge on its connection), and works through both of iwalb's
	// doors; Kerberos, one message, works through all three.
	if got := results[patterns[0].name][0]; got != "fails: 401 ntlm_no_challenge" {
		t.Errorf("NTLM through nginx proxy_pass: %q; want fails: 401 ntlm_no_challenge", got)
	}
	for _, p := range patterns[1:] {
		if got := results[p.name][0]; got != "signed in" {
			t.Errorf("NTLM through %s: %q; want signed in", p.name, got)
		}
	}
	for _, p := range patterns {
		if got := results[p.name][1]; got != "signed in" {
			t.Errorf("Kerberos through %s: %q; want signed in", p.name, got)
		}
	}
	var nodeLogs strings.Builder
	for _, n := range f.nodes {
		nodeLogs.WriteString(n.out.String())
	}
	var ntlmLogins float64
	for _, port := range f.nodeMetrics {
		m := scrape(t, port)
		ntlmLogins += max(0, metric(m, `iwalb_authnode_logins_total{mechanism="ntlm",outcome="success",reason="ok"}`))
	}
	if ntlmLogins != 2 {
		t.Errorf("the nodes counted %v NTLM logins, want 2 (L4 and L7)\n%s", ntlmLogins, grepLines(nodeLogs.String(), "ntlm"))
	}

	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- deployment-patterns:begin -->\n", "<!-- deployment-patterns:end -->"
	_, rest, ok1 := strings.Cut(string(readme), begin)
	section, _, ok2 := strings.Cut(rest, end)
	if !ok1 || !ok2 || section != table.String() {
		t.Errorf("README.md's deployment table is not what this test found; put this between the %q markers:\n%s", strings.TrimSpace(begin), table.String())
	}
}
