package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/keytab"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/cmd/iwalb/internal/configtest"
	"github.com/iwalb/iwalb/internal/testpki"
)

// doctorL4Config writes an L4 balancer's file with one pool of the given
// node FQDNs and one listener whose routes are given as YAML lines, and
// returns its path.
func doctorL4Config(t *testing.T, nodes []string, routes ...string) string {
	t.Helper()
	var y strings.Builder
	y.WriteString("pools:\n  - name: authnodes\n    backends:\n")
	for i, n := range nodes {
		fmt.Fprintf(&y, "      - {name: node%d, addr: \"127.0.0.1:%d\", fqdn: %s}\n", i, 8443+i, n)
	}
	y.WriteString("  - name: web\n    backends:\n      - {name: web1, addr: \"127.0.0.1:9443\", fqdn: web1.example.test}\n")
	y.WriteString("l4:\n  listeners:\n    - name: public\n      listen: 127.0.0.1:8444\n      routes:\n")
	for _, r := range routes {
		y.WriteString("        - " + r + "\n")
	}
	return configtest.WriteFile(t, t.TempDir(), "l4.yaml", []byte(y.String()))
}

// doctorL7Config writes an L7 front door's file for sso.example.test that
// redirects to a pool of the given node FQDNs, and returns its path.
func doctorL7Config(t *testing.T, nodes ...string) string {
	t.Helper()
	dir := t.TempDir()
	testpki.NewCA(t, "doctor test CA").IssueValid(t, time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour), "sso.example.test").WriteFiles(t, dir, "tls/sso.pem", "tls/sso.key")
	var y strings.Builder
	y.WriteString("pools:\n  - name: authnodes\n    backends:\n")
	for i, n := range nodes {
		fmt.Fprintf(&y, "      - {name: node%d, addr: \"127.0.0.1:%d\", fqdn: %s}\n", i, 8443+i, n)
	}
	y.WriteString(`l7redirect:
  listeners:
    - name: sso
      listen: 127.0.0.1:8446
      certificates: [{cert: tls/sso.pem, key: tls/sso.key}]
      names: [sso.example.test]
      rules: [{host: sso.example.test, path_prefix: /, pool: authnodes}]
`)
	return configtest.WriteFile(t, dir, "l7redirect.yaml", []byte(y.String()))
}

// linesBySubject indexes doctor's lines by subject; a subject twice fails
// the test unless the lines say the same.
func linesBySubject(t *testing.T, lines []doctorLine) map[string]doctorLine {
	t.Helper()
	by := map[string]doctorLine{}
	for _, l := range lines {
		if old, ok := by[l.Subject]; ok && old.Status != l.Status {
			t.Errorf("%s twice: %+v and %+v", l.Subject, old, l)
		}
		by[l.Subject] = l
	}
	return by
}

// TestDoctorKeytabNames: across an L4 balancer's file and an auth node's,
// every name a browser asks a ticket for must be in the node's keytab: the
// test domain's keytab has HTTP/lb.example.test and the nodes' names, not
// HTTP/intranet.example.test, which the balancer also routes to the node;
// the name it routes to the L7 front door needs none; a wildcard cannot be
// checked. Without the node's file, the names cannot be checked, and
// doctor says so.
func TestDoctorKeytabNames(t *testing.T) {
	env := adtest.Env(t)
	kt := testKeytab(t, env)
	node := doctorConfig(t, env, kt, time.Now().Add(365*24*time.Hour))
	nodeKeytab := filepath.Join(filepath.Dir(node), "http.keytab")
	balancer := doctorL4Config(t, []string{"auth1.example.test"},
		"{server_names: [lb.example.test, intranet.example.test], pool: authnodes}",
		`{server_names: ["*.apps.example.test"], pool: authnodes}`)

	lines := keytabNames([]string{balancer, node})
	byName := linesBySubject(t, lines)
	if l := byName["HTTP/lb.example.test"]; l.Status != "ok" || !strings.Contains(l.Message, "served by l4 listener public, route to pool authnodes ("+balancer+")") ||
		!strings.Contains(l.Message, "in the keytab of each node it reaches: auth1.example.test ("+node+")") {
		t.Errorf("HTTP/lb.example.test: %+v; want ok, in the node's keytab", l)
	}
	if l := byName["HTTP/auth1.example.test"]; l.Status != "ok" || l.Message != "served by authnode.fqdn ("+node+"); in its own keytab" {
		t.Errorf("the node's own name: %+v; want ok", l)
	}
	l := byName["HTTP/intranet.example.test"]
	svc, realm := env["AD_SVC_USER"], env["AD_REALM"]
	if l.Status != "problem" || !strings.Contains(l.Message, "but the keytab of auth1.example.test ("+node+"), a node it reaches, does not hold it") {
		t.Errorf("HTTP/intranet.example.test: %+v; want a problem", l)
	}
	for _, fix := range []string{
		"samba-tool spn add HTTP/intranet.example.test " + svc,
		"samba-tool domain exportkeytab " + nodeKeytab + " --principal=HTTP/intranet.example.test@" + realm,
		"setspn -S HTTP/intranet.example.test " + svc,
		"ktpass -princ HTTP/intranet.example.test@" + realm + " -mapuser " + svc + " -out " + nodeKeytab,
	} {
		if !strings.Contains(l.Fix, fix) {
			t.Errorf("HTTP/intranet.example.test's fix %q; want %q in it", l.Fix, fix)
		}
	}
	if l := byName["HTTP/*.apps.example.test"]; l.Status != "warning" || !strings.Contains(l.Message, "no SPN matches a wildcard") {
		t.Errorf("a wildcard: %+v; want a warning", l)
	}
	if len(lines) != 4 {
		t.Errorf("%d lines, want one per name (lb, intranet, the wildcard, auth1): %+v", len(lines), lines)
	}

	only := keytabNames([]string{balancer})
	if len(only) != 1 || only[0].Status != "warning" || !strings.Contains(only[0].Message, "cannot be checked against a keytab") {
		t.Errorf("without the node's file: %+v; want one warning", only)
	}
}

// TestDoctorKeytabNamesNodes: a name is checked against the nodes it
// reaches, the auth node files whose fqdn is a backend of its pool: each
// must hold it, and they must share a service account; a backend whose
// file is not given is named as not checked; a name that reaches no node
// given is checked against every node's keytab.
func TestDoctorKeytabNamesNodes(t *testing.T) {
	env := adtest.Env(t)
	full := testKeytab(t, env)
	own := keytab.New() // auth2's keytab before HTTP/lb.example.test was exported into it
	for _, e := range full.Entries {
		if strings.Join(e.Principal.Components, "/") == "HTTP/auth2.example.test" {
			own.Entries = append(own.Entries, e)
		}
	}
	if len(own.Entries) == 0 {
		t.Fatalf("%s holds no HTTP/auth2.example.test", env["AD_HTTP_KEYTAB"])
	}
	year := time.Now().Add(365 * 24 * time.Hour)
	auth1 := doctorConfig(t, env, full, year)
	balancer := doctorL4Config(t, []string{"auth1.example.test", "auth2.example.test", "auth3.example.test"},
		"{server_names: [lb.example.test], pool: authnodes}", "{server_names: [app.example.test], pool: web}")

	lacking := doctorNodeConfig(t, env, "auth2.example.test", env["AD_SVC_USER"], own, year)
	other := doctorNodeConfig(t, env, "auth2.example.test", "svc_other", full, year)
	both := doctorNodeConfig(t, env, "auth2.example.test", env["AD_SVC_USER"], full, year)
	for _, tt := range []struct {
		name, auth2, status, lb, fix string
	}{
		{"auth2 without the name", lacking, "problem",
			"but the keytab of auth2.example.test (" + lacking + "), a node it reaches, does not hold it",
			"samba-tool domain exportkeytab " + filepath.Join(filepath.Dir(lacking), "http.keytab") + " --principal=HTTP/lb.example.test@"},
		{"another account", other, "problem", "reaches nodes of different service accounts (svc_http, svc_other)", "the same kerberos.account"},
		{"both", both, "ok", "in the keytab of each node it reaches: auth1.example.test (" + auth1 + "), auth2.example.test (" + both + ")", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			byName := linesBySubject(t, keytabNames([]string{balancer, auth1, tt.auth2}))
			l := byName["HTTP/lb.example.test"]
			if l.Status != tt.status || !strings.Contains(l.Message, tt.lb) || !strings.Contains(l.Fix, tt.fix) {
				t.Errorf("HTTP/lb.example.test: %+v\nwant %s, %q, fix with %q", l, tt.status, tt.lb, tt.fix)
			}
			if !strings.HasSuffix(l.Message, "; not checked, their files not given: auth3.example.test") {
				t.Errorf("HTTP/lb.example.test: %q; want auth3 named as not checked", l.Message)
			}
			for _, own := range []string{"HTTP/auth1.example.test", "HTTP/auth2.example.test"} {
				if byName[own].Status != "ok" {
					t.Errorf("%s, a node's own name in its own keytab: %+v", own, byName[own])
				}
			}
			// app.example.test goes to a pool of no node given: checked
			// against every node's keytab, and none has it.
			if l := byName["HTTP/app.example.test"]; l.Status != "problem" || !strings.Contains(l.Message, "no auth node's keytab holds it") {
				t.Errorf("HTTP/app.example.test: %+v; want a problem", l)
			}
		})
	}

	// The front door redirects to auth1 and auth2, and only auth1's file is
	// given: auth1 is checked in its own keytab, auth2's name in any node's
	// keytab (auth1's has it).
	frontDoor := doctorL7Config(t, "auth1.example.test", "auth2.example.test")
	want := map[string]string{
		"HTTP/auth1.example.test": "served by l7redirect sso, a redirect target of pool authnodes (" + frontDoor + "); in the keytab of each node it reaches: auth1.example.test (" + auth1 + ")",
		"HTTP/auth2.example.test": "served by l7redirect sso, a redirect target of pool authnodes (" + frontDoor + "); in the keytab of " + auth1 + " (no file given is a node it reaches)",
	}
	for _, l := range keytabNames([]string{frontDoor, auth1}) {
		if w, ok := want[l.Subject]; ok && strings.Contains(l.Message, "l7redirect") {
			if l.Status != "ok" || l.Message != w {
				t.Errorf("redirect target %s: %+v\nwant ok, %q", l.Subject, l, w)
			}
			delete(want, l.Subject)
		}
	}
	if len(want) > 0 {
		t.Errorf("no line for the redirect targets %v", want)
	}
}

// TestDoctorKeytabNamesRun: doctor -config l4 -config l7redirect -config
// authnode against the test domain: every name in the node's keytab passes
// (exit 0, each ✔ under the files' lines); an L4 name that is not fails
// with the SPN and keytab export that fix it.
func TestDoctorKeytabNamesRun(t *testing.T) {
	env := adtest.Env(t)
	kt := testKeytab(t, env)
	node := doctorConfig(t, env, kt, time.Now().Add(365*24*time.Hour))
	frontDoor := doctorL7Config(t, "auth1.example.test")
	for _, tt := range []struct {
		name   string
		routes string
		code   int
		want   []string
	}{
		{"all in the keytab", "{server_names: [lb.example.test], pool: authnodes}", exitOK, []string{
			"== across the files\n",
			"✔ keytab names HTTP/lb.example.test: served by l4 listener public, route to pool authnodes",
			"✔ keytab names HTTP/auth1.example.test: served by l7redirect sso, a redirect target of pool authnodes",
			"✔ keytab names HTTP/auth1.example.test: served by authnode.fqdn",
		}},
		{"an L4 name not in it", "{server_names: [lb.example.test, intranet.example.test], pool: authnodes}", exitFailed, []string{
			"== across the files\n",
			"✔ keytab names HTTP/lb.example.test:",
			"✘ keytab names HTTP/intranet.example.test: served by l4 listener public, route to pool authnodes",
			"a node it reaches, does not hold it",
			"    fix: register it on the service account and export the keytab again: samba-tool spn add HTTP/intranet.example.test " + env["AD_SVC_USER"],
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			balancer := doctorL4Config(t, []string{"auth1.example.test"}, tt.routes)
			var out, errOut strings.Builder
			code := run([]string{"doctor", "-config", balancer, "-config", frontDoor, "-config", node}, &out, &errOut)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out.String(), errOut.String())
			}
			containsInOrder(t, "doctor", out.String(), append([]string{"== " + balancer + "\n", "== " + frontDoor + "\n", "== " + node + "\n"}, tt.want...))
			if tt.code == exitOK && strings.Contains(out.String(), "✘") {
				t.Errorf("a problem in a passing run:\n%s", out.String())
			}
		})
	}
}

// TestDoctorSeveralFiles: -config may be given more than once; each file's
// lines come under its name, the lines across the files last, and a
// problem in any makes the exit status 1.
func TestDoctorSeveralFiles(t *testing.T) {
	dir := t.TempDir()
	a := configtest.WriteFile(t, dir, "a.yaml", []byte("l4:\n  listeners: [}\n"))
	b := configtest.WriteFile(t, dir, "b.yaml", []byte("pools: []\n"))
	var out, errOut strings.Builder
	code := run([]string{"doctor", "-config", a, "-config", b}, &out, &errOut)
	if code != exitFailed || !strings.Contains(out.String(), "== "+a+"\n✘ config:") || !strings.Contains(out.String(), "== "+b+"\n") {
		t.Errorf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
}

// TestDoctorNTLM: with ntlm on, doctor asks the domain through ntlm_auth;
// a helper that cannot ask it is a problem with the fix.
func TestDoctorNTLM(t *testing.T) {
	env := adtest.Env(t)
	if env["AD_NTLM"] != "1" {
		t.Fatal("the test domain runs without winbindd: start it with AD_NTLM=1 scripts/ad-up DIR (scripts/test does)")
	}
	kt := testKeytab(t, env)
	for _, tt := range []struct {
		name, section string
		code          int
		want          []string
	}{
		{"working", fmt.Sprintf("  ntlm: {enabled: true, smb_conf: %s}\n", env["AD_NTLM_AUTH_CONF"]), exitOK,
			[]string{"✔ ntlm: ntlm_auth asked the domain through winbindd"}},
		{"broken helper", "  ntlm: {enabled: true, helper: false}\n", exitFailed,
			[]string{"✘ ntlm: NTLM probe:", "fix: ntlm_auth could not ask the domain: install winbind, join this host to the domain (net ads join"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run([]string{"doctor", "-config", doctorConfig(t, env, kt, time.Now().Add(365*24*time.Hour), tt.section)}, &out, &errOut)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out.String(), errOut.String())
			}
			containsInOrder(t, "doctor", out.String(), tt.want)
		})
	}
}

// TestDoctorExpiredCertificate: a node whose certificate expired yesterday
// does not start (iwalb check refuses it), and doctor says so, with the
// renewal as the fix.
func TestDoctorExpiredCertificate(t *testing.T) {
	env := adtest.Env(t)
	kt := testKeytab(t, env)
	path := doctorConfig(t, env, kt, time.Now().Add(365*24*time.Hour))
	now := time.Now()
	testpki.NewCA(t, "doctor test CA").IssueValid(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "auth1.example.test").
		WriteFiles(t, filepath.Dir(path), "tls/auth1.pem", "tls/auth1.key")
	var out, errOut strings.Builder
	code := run([]string{"doctor", "-config", path}, &out, &errOut)
	if code != exitFailed {
		t.Errorf("exit %d, want %d", code, exitFailed)
	}
	containsInOrder(t, "doctor", out.String(), []string{
		"✘ config: " + path + ":", "authnode.tls.cert: the certificate expired on " + now.Add(-24*time.Hour).UTC().Format(time.DateOnly),
		"fix: renew the expired certificate, replace its files, then iwalb reload",
	})
}

// TestDoctorDuplicateSPN: an SPN registered on two accounts is a problem
// that names both, with the fix. The duplicate is made for real: the SPN
// (one of the test's own, so that no other test's ticket is affected) is
// put on the service account through LDAP, and the KDC issues tickets for
// it; the DC refuses it on a second account through LDAP, so it is written
// there into the DC's database around that check
// (adtest.AddSPNUnchecked), after which the KDC issues none
// (KDC_ERR_S_PRINCIPAL_UNKNOWN: Samba's KDC finds no one principal). The
// second account is a user of the test's own; both values and the user
// are removed at the end, also when the test fails.
func TestDoctorDuplicateSPN(t *testing.T) {
	env := adtest.Env(t)
	if os.Geteuid() != 0 {
		t.Skip("writes the test DC's database: root only (scripts/test runs as root)")
	}
	admin := adtest.NewAdmin(t, env)
	svc := env["AD_SVC_USER"]
	spn := fmt.Sprintf("HTTP/%s.example.test", adtest.UniqueName("dup-"))
	svcDN := admin.DN(svc)
	t.Cleanup(func() {
		if err := admin.TryModify(svcDN, "delete", "servicePrincipalName", spn); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	admin.Modify(svcDN, "add", "servicePrincipalName", spn)
	alice := func() *client.Client { // a fresh client: no ticket cached
		return adtest.Login(t, env, env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
	}
	if _, _, err := alice().GetServiceTicket(spn); err != nil {
		t.Fatalf("a ticket for %s on %s alone: %v", spn, svc, err)
	}

	other := adtest.UniqueName("dup-")
	otherDN := admin.CreateUser(other, "Dup-Passw0rd-"+other)
	if err := admin.TryModify(otherDN, "add", "servicePrincipalName", spn); !ldap.IsErrorWithCode(err, ldap.LDAPResultConstraintViolation) {
		t.Fatalf("the DC took %s on a second account through LDAP: %v; want a constraint violation", spn, err)
	}
	adtest.AddSPNUnchecked(t, env, other, spn)
	if _, _, err := alice().GetServiceTicket(spn); err == nil || !strings.Contains(err.Error(), "KDC_ERR_S_PRINCIPAL_UNKNOWN") {
		t.Fatalf("a ticket for %s on two accounts: %v; want KDC_ERR_S_PRINCIPAL_UNKNOWN", spn, err)
	}

	kt := testKeytabWith(t, env, spn)
	var out, errOut strings.Builder
	code := run([]string{"doctor", "-config", doctorConfig(t, env, kt, time.Now().Add(365*24*time.Hour))}, &out, &errOut)
	if code != exitFailed {
		t.Errorf("exit %d, want %d", code, exitFailed)
	}
	containsInOrder(t, "doctor", out.String(), []string{
		"✔ spn HTTP/auth1.example.test: registered on " + svc + " only",
		"✘ spn " + spn + ": the SPN is registered on more than one account: " + spn + " is on ",
		"    fix: keep it on " + svc + " alone: samba-tool spn delete " + spn + " " + other + " (Windows: setspn -D " + spn + " " + other + "; setspn -X lists duplicates)",
	})
	if !strings.Contains(out.String(), spn+" is on "+svc+", "+other+"\n") && !strings.Contains(out.String(), spn+" is on "+other+", "+svc+"\n") {
		t.Errorf("the duplicate's line does not name both accounts, %s and %s, alone:\n%s", svc, other, out.String())
	}
}

// TestDoctorSPNNotRegistered: a keytab principal whose SPN no account has
// (removed from the service account, or never added) is a problem with
// the samba-tool/setspn command that registers it.
func TestDoctorSPNNotRegistered(t *testing.T) {
	env := adtest.Env(t)
	spn := fmt.Sprintf("HTTP/gone-%d.example.test", time.Now().UnixNano())
	kt := testKeytabWith(t, env, spn)
	var out, errOut strings.Builder
	code := run([]string{"doctor", "-config", doctorConfig(t, env, kt, time.Now().Add(365*24*time.Hour))}, &out, &errOut)
	if code != exitFailed {
		t.Errorf("exit %d, want %d", code, exitFailed)
	}
	containsInOrder(t, "doctor", out.String(), []string{
		"✘ spn " + spn + ": the SPN is registered on no account", "fix: register it on the service account: samba-tool spn add " + spn + " " + env["AD_SVC_USER"],
	})
}

// testKeytabWith is testKeytab with a key for spn too, made from the
// service account's password at the keytab's key version.
func testKeytabWith(t *testing.T, env map[string]string, spn string) *keytab.Keytab {
	t.Helper()
	good := testKeytab(t, env)
	kt := keytab.New()
	kt.Entries = append(kt.Entries, good.Entries...)
	if err := kt.AddEntry(spn, env["AD_REALM"], env["AD_SVC_PASSWORD"], time.Now(), good.Entries[0].KVNO8, 18); err != nil {
		t.Fatal(err)
	}
	return kt
}

// testKeytab is the test domain's keytab of the HTTP SPNs.
func testKeytab(t *testing.T, env map[string]string) *keytab.Keytab {
	t.Helper()
	kt, err := keytab.Load(env["AD_HTTP_KEYTAB"])
	if err != nil {
		t.Fatal(err)
	}
	return kt
}
