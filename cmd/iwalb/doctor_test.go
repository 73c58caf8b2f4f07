package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/keytab"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/authnode/store/redistest"
	"github.com/iwalb/iwalb/cmd/iwalb/internal/configtest"
	"github.com/iwalb/iwalb/internal/testpki"
)

// doctorConfig writes an auth node's configuration for the test domain,
// with the keytab kt and a certificate valid until notAfter, and returns
// its path: auth1.example.test, with the service account of the domain.
func doctorConfig(t *testing.T, env map[string]string, kt *keytab.Keytab, notAfter time.Time, extra ...string) string {
	t.Helper()
	return doctorNodeConfig(t, env, "auth1.example.test", env["AD_SVC_USER"], kt, notAfter, extra...)
}

// doctorNodeConfig is doctorConfig for the node fqdn with the service
// account account.
func doctorNodeConfig(t *testing.T, env map[string]string, fqdn, account string, kt *keytab.Keytab, notAfter time.Time, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "doctor test CA")
	ca.IssueValid(t, time.Now().Add(-time.Hour), notAfter, fqdn).WriteFiles(t, dir, "tls/auth1.pem", "tls/auth1.key")
	b, err := kt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	configtest.WriteFile(t, dir, "http.keytab", b)
	configtest.WriteFile(t, dir, "bind", []byte(env["AD_BIND_PASSWORD"]+"\n"))
	configtest.WriteFile(t, dir, "app-key", []byte("0123456789abcdef0123456789abcdef\n"))
	return configtest.WriteFile(t, dir, "iwalb.yaml", []byte(fmt.Sprintf(`authnode:
  fqdn: %s
  listen: 127.0.0.1:1
  tls: {cert: tls/auth1.pem, key: tls/auth1.key}
  application_url: https://app.example.test/sso/callback
  kerberos: {keytab: http.keytab, krb5_conf: %s, realm: %s, account: %s}
  ldap:
    url: %s
    ca_file: %s
    server_name: %s
    bind_dn: %s
    bind_password_file: bind
    base_dn: %s
  api:
    clients: [{name: app, key_file: app-key}]
%s`, fqdn, env["KRB5_CONFIG"], env["AD_REALM"], account, env["AD_LDAPS_URL"], env["AD_LDAP_CA_FILE"],
		env["AD_LDAP_TLS_SERVER_NAME"], env["AD_BIND_DN"], env["AD_BASE_DN"], strings.Join(extra, ""))))
}

// TestDoctorAD: against the real domain, iwalb doctor passes a node that
// works; after a password change left the keytab's key version behind, the
// KDC self-test fails and the fix says to export the keytab again; a
// keytab of RC4 keys only is named with its fix; a certificate close to
// expiry is a warning; -json gives the same results.
func TestDoctorAD(t *testing.T) {
	env := adtest.Env(t)
	good := testKeytab(t, env)
	in := func(days int) time.Time { return time.Now().Add(time.Duration(days) * 24 * time.Hour) }
	doctorRun := func(path string, args ...string) (int, string) {
		t.Helper()
		var out, errOut strings.Builder
		code := run(append([]string{"doctor", "-config", path}, args...), &out, &errOut)
		return code, out.String() + errOut.String()
	}

	code, out := doctorRun(doctorConfig(t, env, good, in(365)))
	if code != 0 {
		t.Fatalf("a working node: exit %d\n%s", code, out)
	}
	containsInOrder(t, "doctor", out, []string{
		"✔ config:", "✔ certificate authnode auth1.example.test: valid until",
		"✔ browser policy Chrome, Edge: AuthServerAllowlist = auth1.example.test",
		"✔ browser policy Firefox: network.negotiate-auth.trusted-uris = https://auth1.example.test",
		"✔ keytab HTTP/auth1.example.test@EXAMPLE.TEST: kvno", "✔ ldap: proxy bind works",
		"✔ clock: within the allowed skew", "✔ kdc_self_test: KDC issued a ticket for HTTP/auth1.example.test",
		"✔ spn HTTP/auth1.example.test: registered on " + env["AD_SVC_USER"] + " only",
		"✔ account " + env["AD_SVC_USER"] + ": key version",
	})

	stale := keytab.New()
	for _, e := range good.Entries {
		e.KVNO, e.KVNO8 = e.KVNO-1, e.KVNO8-1 // the keys of before a password change
		stale.Entries = append(stale.Entries, e)
	}
	code, out = doctorRun(doctorConfig(t, env, stale, in(10)))
	if code != 1 {
		t.Fatalf("a stale keytab: exit %d, want 1\n%s", code, out)
	}
	containsInOrder(t, "doctor", out, []string{
		"! certificate authnode auth1.example.test: expires on", "fix: renew it",
		"✘ kdc_self_test:", "fix: the keytab's keys are not the account's current ones", "samba-tool domain exportkeytab",
		"✘ account " + env["AD_SVC_USER"] + ": the keytab's key version is not the account's", "fix: export the keytab again",
	})

	// A keytab holding an SPN that is another account's.
	other := keytab.New()
	other.Entries = append(other.Entries, good.Entries...)
	if err := other.AddEntry(env["AD_OTHER_SPN"], env["AD_REALM"], "whatever", time.Now(), 2, 18); err != nil {
		t.Fatal(err)
	}
	code, out = doctorRun(doctorConfig(t, env, other, in(365)))
	if code != 1 || !strings.Contains(out, "✘ spn "+env["AD_OTHER_SPN"]+": the SPN is registered on another account") ||
		!strings.Contains(out, "fix: keep it on "+env["AD_SVC_USER"]+" alone: samba-tool spn delete "+env["AD_OTHER_SPN"]+" svc_other (Windows: setspn -D "+env["AD_OTHER_SPN"]+" svc_other;") {
		t.Fatalf("an SPN of another account: exit %d\n%s", code, out)
	}

	rc4 := keytab.New()
	if err := rc4.AddEntry("HTTP/auth1.example.test", env["AD_REALM"], "not-the-password", time.Now(), 2, 23); err != nil {
		t.Fatal(err)
	}
	path := doctorConfig(t, env, rc4, in(365))
	code, out = doctorRun(path)
	if code != 1 || !strings.Contains(out, "✘ keytab HTTP/auth1.example.test@EXAMPLE.TEST: only weak keys (rc4-hmac)") ||
		!strings.Contains(out, "msDS-SupportedEncryptionTypes = 24") {
		t.Fatalf("an RC4-only keytab: exit %d\n%s", code, out)
	}

	code, out = doctorRun(path, "-json")
	var lines []doctorLine
	if err := json.Unmarshal([]byte(out), &lines); err != nil || code != 1 {
		t.Fatalf("-json: exit %d, %v\n%s", code, err, out)
	}
	var problems []string
	for _, l := range lines {
		if l.Status == "problem" {
			problems = append(problems, l.Check)
		}
	}
	if !strings.Contains(strings.Join(problems, ","), "keytab") {
		t.Errorf("-json problems: %v", problems)
	}
}

// TestDoctorRedis: with the tokens in Redis, doctor says whether Redis
// answers.
func TestDoctorRedis(t *testing.T) {
	env := adtest.Env(t)
	good := testKeytab(t, env)
	// Nothing listens on port 1; the password file is any secret file.
	dead := "  store:\n    type: redis\n    redis: {addrs: [127.0.0.1:1], password_file: bind, dial_timeout: 1s}\n"
	// The OIDC provider's generated keys are in Redis too.
	const oidcOn = "  oidc: {enabled: true, issuer: \"https://lb.example.test\", clients: [{id: a, redirect_uris: [\"https://a.example.test/cb\"]}]}\n"
	var out strings.Builder
	code := run([]string{"doctor", "-config", doctorConfig(t, env, good, time.Now().Add(time.Hour*24*365), dead+oidcOn)}, &out, &out)
	if code != 1 || !strings.Contains(out.String(), "✘ store:") || !strings.Contains(out.String(), "fix: Redis does not answer") {
		t.Fatalf("a Redis that does not answer: exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "✘ oidc_keys:") || !strings.Contains(out.String(), "fix: the provider could not read or write its signing keys") {
		t.Errorf("the OIDC keys in a Redis that does not answer: exit %d\n%s", code, out.String())
	}

	renv := redistest.Env(t)
	live := fmt.Sprintf("  store:\n    type: redis\n    redis: {addrs: [%s], username: %s, password_file: %s, prefix: %q}\n",
		renv["IWALB_REDIS_ADDR"], renv["IWALB_REDIS_USERNAME"], renv["IWALB_REDIS_PASSWORD_FILE"], redistest.Prefix(t))
	out.Reset()
	code = run([]string{"doctor", "-config", doctorConfig(t, env, good, time.Now().Add(time.Hour*24*365), live+oidcOn)}, &out, &out)
	if !strings.Contains(out.String(), "✔ store: Redis answers") || !strings.Contains(out.String(), "✔ oidc_keys: the OpenID Connect provider has a key to sign with") {
		t.Fatalf("the test Redis: exit %d\n%s", code, out.String())
	}
}

// TestDoctorBrowserPolicy: a balancer's file names every name browsers
// reach through it, for their Negotiate allow-lists.
func TestDoctorBrowserPolicy(t *testing.T) {
	lines := browserPolicy([]string{"auth1.example.test", "lb.example.test", "*.apps.example.test"})
	want := []string{
		"AuthServerAllowlist = auth1.example.test,lb.example.test,*.apps.example.test",
		"network.negotiate-auth.trusted-uris = https://auth1.example.test,https://lb.example.test,.apps.example.test",
		"Local intranet (1): https://auth1.example.test, https://lb.example.test, https://*.apps.example.test",
	}
	for i, w := range want {
		if i >= len(lines) || !strings.Contains(lines[i].Message, w) {
			t.Errorf("policy line %d: %+v, want %q", i, lines, w)
		}
	}
	if browserPolicy(nil) != nil {
		t.Error("a file serving no name prints a policy")
	}
}

// TestDoctorBadConfig: a file that does not load is one problem, with the
// command that lists its lines.
func TestDoctorBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "iwalb.yaml")
	if err := os.WriteFile(path, []byte("authnode: {fqdn: x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if code := run([]string{"doctor", "-config", path}, &out, &out); code != 1 {
		t.Fatalf("exit %d\n%s", code, out.String())
	}
	containsInOrder(t, "doctor", out.String(), []string{"✘ config:", "fix: iwalb check -config " + path})
}
