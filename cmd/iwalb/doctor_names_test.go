package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/keytab"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/cmd/iwalb/internal/configtest"
	"github.com/iwalb/iwalb/internal/testpki"
)

// TestDoctorKeytabNames: across an L4 balancer's file and an auth node's,
// every name a browser asks a ticket for must be in the node's keytab: the
// test domain's keytab has HTTP/lb.example.test and the nodes' names, not
// HTTP/intranet.example.test, which the balancer also routes to the
// nodes; the name it routes to the L7 front door needs none. Without the
// node's file, the names cannot be checked, and doctor says so.
func TestDoctorKeytabNames(t *testing.T) {
	env := adtest.Env(t)
	kt, err := keytab.Load(env["AD_HTTP_KEYTAB"])
	if err != nil {
		t.Fatal(err)
	}
	node := doctorConfig(t, env, kt, time.Now().Add(365*24*time.Hour))
	dir := t.TempDir()
	balancer := configtest.WriteFile(t, dir, "l4.yaml", []byte(`pools:
  - name: authnodes
    backends:
      - {name: auth1, addr: "127.0.0.1:8443", fqdn: auth1.example.test}
l4:
  listeners:
    - name: public
      listen: 127.0.0.1:8444
      routes:
        - {server_names: [lb.example.test, intranet.example.test], pool: authnodes}
`))

	lines := keytabNames([]string{balancer, node})
	byName := map[string]doctorLine{}
	for _, l := range lines {
		byName[l.Subject] = l
	}
	if l := byName["HTTP/lb.example.test"]; l.Status != "ok" || !strings.Contains(l.Message, "l4 listener public, route to pool authnodes") ||
		!strings.Contains(l.Message, "in the keytab of "+node) {
		t.Errorf("HTTP/lb.example.test: %+v; want ok, in the node's keytab", l)
	}
	if l := byName["HTTP/auth1.example.test"]; l.Status != "ok" {
		t.Errorf("the node's own name: %+v; want ok", l)
	}
	l := byName["HTTP/intranet.example.test"]
	if want := fmt.Sprintf("samba-tool spn add HTTP/intranet.example.test %s", env["AD_SVC_USER"]); l.Status != "problem" ||
		!strings.Contains(l.Message, "no auth node's keytab holds it") || !strings.Contains(l.Fix, want) {
		t.Errorf("HTTP/intranet.example.test: %+v; want a problem with the fix %q", l, want)
	}
	if len(lines) != 3 {
		t.Errorf("%d lines, want one per name (lb, intranet, auth1): %+v", len(lines), lines)
	}

	only := keytabNames([]string{balancer})
	if len(only) != 1 || only[0].Status != "warning" || !strings.Contains(only[0].Message, "cannot be checked against a keytab") {
		t.Errorf("without the node's file: %+v; want one warning", only)
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
	kt, err := keytab.Load(env["AD_HTTP_KEYTAB"])
	if err != nil {
		t.Fatal(err)
	}
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
	kt, err := keytab.Load(env["AD_HTTP_KEYTAB"])
	if err != nil {
		t.Fatal(err)
	}
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

// spnWriter adds or deletes a servicePrincipalName value of an account by
// writing the DC's domain partition without Samba's modules: the DC
// refuses an SPN that another account has (LDAP, samba-tool), as Windows
// does since 2012 R2, and older domains, or tools that write around the
// check, still end up with duplicates. Root only; it needs Samba's Python
// bindings (Debian's python3-samba, which the DC's packages bring).
const spnWriter = `
import sys, ldb
from samba.param import LoadParm
conf, spn, account, op = sys.argv[1:5]
lp = LoadParm(); lp.load(conf)
part = "DC=" + ",DC=".join(lp.get("realm").upper().split("."))
db = ldb.Ldb(url="tdb://" + lp.private_path("sam.ldb.d/" + part + ".ldb"), options=["modules:"])
res = db.search(expression="(sAMAccountName=%s)" % ldb.binary_encode(account), attrs=["dn"])
m = ldb.Message(); m.dn = res[0].dn
m["servicePrincipalName"] = ldb.MessageElement(spn, ldb.FLAG_MOD_ADD if op == "add" else ldb.FLAG_MOD_DELETE, "servicePrincipalName")
db.modify(m)
`

// TestDoctorDuplicateSPN: an SPN registered on two accounts (the KDC then
// issues no ticket for it) is a problem that names both accounts, with the
// fix. The SPN is one of the test's own, so that no other test's ticket
// is affected, and it is removed from both accounts at the end.
func TestDoctorDuplicateSPN(t *testing.T) {
	env := adtest.Env(t)
	if os.Geteuid() != 0 {
		t.Skip("writes the test DC's database: root only (scripts/test runs as root)")
	}
	other, _, _ := strings.Cut(env["AD_BIND_UPN"], "@")
	spn := fmt.Sprintf("HTTP/dup-%d.example.test", time.Now().UnixNano())
	write := func(account, op string) error {
		out, err := exec.Command("/usr/bin/python3", "-c", spnWriter, env["AD_NTLM_AUTH_CONF"], spn, account, op).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s on %s: %v\n%s", op, spn, account, err, out)
		}
		return nil
	}
	for _, account := range []string{env["AD_SVC_USER"], other} {
		t.Cleanup(func() {
			if err := write(account, "delete"); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
		if err := write(account, "add"); err != nil {
			t.Fatal(err)
		}
	}
	good, err := keytab.Load(env["AD_HTTP_KEYTAB"])
	if err != nil {
		t.Fatal(err)
	}
	kt := keytab.New()
	kt.Entries = append(kt.Entries, good.Entries...)
	if err := kt.AddEntry(spn, env["AD_REALM"], env["AD_SVC_PASSWORD"], time.Now(), good.Entries[0].KVNO8, 18); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	code := run([]string{"doctor", "-config", doctorConfig(t, env, kt, time.Now().Add(365*24*time.Hour))}, &out, &errOut)
	if code != exitFailed {
		t.Errorf("exit %d, want %d", code, exitFailed)
	}
	containsInOrder(t, "doctor", out.String(), []string{
		"✔ spn HTTP/auth1.example.test: registered on " + env["AD_SVC_USER"] + " only",
		"✘ spn " + spn + ": the SPN is registered on more than one account", env["AD_SVC_USER"] + ", " + other, "fix: keep it on " + env["AD_SVC_USER"] + " alone: samba-tool spn delete " + spn,
	})
}

// TestDoctorSPNNotRegistered: a keytab principal whose SPN no account has
// (removed from the service account, or never added) is a problem with
// the samba-tool/setspn command that registers it.
func TestDoctorSPNNotRegistered(t *testing.T) {
	env := adtest.Env(t)
	good, err := keytab.Load(env["AD_HTTP_KEYTAB"])
	if err != nil {
		t.Fatal(err)
	}
	spn := fmt.Sprintf("HTTP/gone-%d.example.test", time.Now().UnixNano())
	kt := keytab.New()
	kt.Entries = append(kt.Entries, good.Entries...)
	if err := kt.AddEntry(spn, env["AD_REALM"], env["AD_SVC_PASSWORD"], time.Now(), good.Entries[0].KVNO8, 18); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	code := run([]string{"doctor", "-config", doctorConfig(t, env, kt, time.Now().Add(365*24*time.Hour))}, &out, &errOut)
	if code != exitFailed {
		t.Errorf("exit %d, want %d", code, exitFailed)
	}
	containsInOrder(t, "doctor", out.String(), []string{
		"✘ spn " + spn + ": the SPN is registered on no account", "fix: register it on the service account: samba-tool spn add " + spn + " " + env["AD_SVC_USER"],
	})
}
