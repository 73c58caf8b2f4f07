package authnode

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode/adtest"
)

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// formClient is a browser-like client of a's sign-in form: it keeps the
// node's cookies.
type formClient struct {
	t    *testing.T
	a    *adNode
	http *http.Client
}

func (a *adNode) formClient(t *testing.T) *formClient {
	c := a.client()
	jar, _ := cookiejar.New(nil)
	c.Jar = jar
	return &formClient{t: t, a: a, http: c}
}

// get fetches path and returns the status, the page and the form's
// anti-forgery token.
func (f *formClient) get(path string) (int, string, string, http.Header) {
	f.t.Helper()
	resp, err := f.http.Get(f.a.url("auth1.example.test", path))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var csrf string
	if m := csrfField.FindStringSubmatch(string(b)); m != nil {
		csrf = m[1]
	}
	return resp.StatusCode, string(b), csrf, resp.Header
}

// post signs in with the form and returns the status, the Location and the
// page.
func (f *formClient) post(csrf, user, password string) (int, string, string, http.Header) {
	f.t.Helper()
	req, _ := http.NewRequest("POST", f.a.url("auth1.example.test", "/login"),
		strings.NewReader(url.Values{"csrf": {csrf}, "username": {user}, "password": {password}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://auth1.example.test")
	resp, err := f.http.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b), resp.Header
}

// TestADFormSignIn: a client that sends no Negotiate gets the sign-in form
// with its 401; alice's password signs her in with the same token and
// identity as Kerberos (from the PAC: her SID and groups), marked
// "password"; a wrong password, an unknown account and a disabled one get
// the same answer; after form.user_failures failures an account is refused
// without asking the KDC, even with its right password; no password is
// ever logged.
func TestADFormSignIn(t *testing.T) {
	env := adtest.Env(t)
	a := startADNode(t, env, func(c *Config, _ *Options) {
		c.Form = FormConfig{Enabled: true, UserFailures: 3, ClientFailures: 50, Organisation: "Example Corp"}
	})
	f := a.formClient(t)

	status, page, csrf, hdr := f.get("/sso")
	if status != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") != "Negotiate" || csrf == "" ||
		!strings.Contains(page, `<form method="post" action="/login">`) || !strings.Contains(page, "Sign in to Example Corp") {
		t.Fatalf("GET /sso without Negotiate: %d %q, csrf %q\n%s", status, hdr.Get("WWW-Authenticate"), csrf, page)
	}

	status, loc, page, _ := f.post(csrf, `EXAMPLE\`+env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
	if status != http.StatusSeeOther {
		t.Fatalf("alice's password: %d\n%s", status, page)
	}
	code, id := a.redeem(t, tokenOf(t, loc))
	if code != http.StatusOK || id.SAMAccountName != env["AD_ALICE_USER"] || id.AuthMethod != "password" ||
		!contains(id.Groups, env["AD_GROUP"]) || !strings.HasPrefix(id.SID, "S-1-5-21-") {
		t.Fatalf("redeem: %d %+v", code, id)
	}

	var generic string
	for _, c := range []struct{ name, user, password string }{
		{"wrong password", env["AD_ALICE_USER"], "Wrong-Passw0rd1"},
		{"unknown account", "nobody-at-all", "Wrong-Passw0rd1"},
		{"disabled account", env["AD_BOB_USER"], env["AD_BOB_PASSWORD"]},
	} {
		_, _, csrf, _ := f.get("/login")
		began := time.Now()
		status, _, page, _ := f.post(csrf, c.user, c.password)
		if took := time.Since(began); took < minRefusalTime {
			t.Errorf("%s: answered in %s, sooner than every refusal takes (%s)", c.name, took, minRefusalTime)
		}
		msg := regexp.MustCompile(`<p class="err" role="alert">([^<]*)</p>`).FindStringSubmatch(page)
		if status != http.StatusUnauthorized || msg == nil {
			t.Fatalf("%s: %d\n%s", c.name, status, page)
		}
		if generic == "" {
			generic = msg[1]
		} else if msg[1] != generic {
			t.Errorf("%s: message %q differs from %q: it tells which accounts exist", c.name, msg[1], generic)
		}
	}

	// dave: three wrong passwords, then even his right one is refused
	// here, without a word to the KDC.
	dave, davePass := env["AD_DAVE_USER"], env["AD_DAVE_PASSWORD"]
	for i := range 3 {
		_, _, csrf, _ := f.get("/login")
		if status, _, _, _ := f.post(csrf, dave, "Not-Dave-Passw0rd1"); status != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i+1, status)
		}
	}
	_, _, csrf, _ = f.get("/login")
	status, _, page, hdr = f.post(csrf, dave+"@"+strings.ToLower(env["AD_REALM"]), davePass)
	if status != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || !strings.Contains(page, "Too many failed sign-ins") {
		t.Fatalf("after 3 failures, dave's right password: %d Retry-After %q\n%s", status, hdr.Get("Retry-After"), page)
	}

	logs := a.logs.String()
	for _, p := range []string{env["AD_ALICE_PASSWORD"], env["AD_BOB_PASSWORD"], davePass, "Wrong-Passw0rd1", "Not-Dave-Passw0rd1"} {
		if strings.Contains(logs, p) {
			t.Fatalf("a password is in the log")
		}
	}
	if !strings.Contains(logs, "reason=bad_credentials") || !strings.Contains(logs, "method=password") {
		t.Errorf("the log does not record the form's sign-ins:\n%s", logs)
	}
}

// TestADFormSignInWithCurl: curl, as a user would script it: fetch the
// form, keep its cookie, post the form.
func TestADFormSignInWithCurl(t *testing.T) {
	env := adtest.Env(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl")
	}
	a := startADNode(t, env, func(c *Config, _ *Options) { c.Form.Enabled = true })
	jar := t.TempDir() + "/cookies"
	resolve := "auth1.example.test:" + strconv.Itoa(a.port) + ":127.0.0.1"
	out, err := exec.Command("curl", "-sS", "--cacert", a.pki.CAFile, "--resolve", resolve, "-c", jar,
		a.url("auth1.example.test", "/login")).CombinedOutput()
	m := csrfField.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		t.Fatalf("curl GET /login: %v\n%s", err, out)
	}
	out, err = exec.Command("curl", "-sS", "--cacert", a.pki.CAFile, "--resolve", resolve, "-b", jar,
		"-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
		"--data-urlencode", "csrf="+m[1], "--data-urlencode", "username="+env["AD_ALICE_USER"],
		"--data-urlencode", "password="+env["AD_ALICE_PASSWORD"],
		a.url("auth1.example.test", "/login")).CombinedOutput()
	status, loc, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if err != nil || status != "303" {
		t.Fatalf("curl POST /login: %v: %s", err, out)
	}
	if code, id := a.redeem(t, tokenOf(t, loc)); code != http.StatusOK || id.SAMAccountName != env["AD_ALICE_USER"] {
		t.Fatalf("redeem: %d %+v", code, id)
	}
}

// TestADSSOSession: after alice signs in with the form, her browser's
// cookie brings her back without signing in (a fresh token, her identity
// confirmed in the directory again); GET /logoff ends that.
func TestADSSOSession(t *testing.T) {
	env := adtest.Env(t)
	a := startADNode(t, env, func(c *Config, _ *Options) {
		c.Form.Enabled = true
		c.SSOSession = SSOSessionConfig{Enabled: true}
	})
	f := a.formClient(t)
	_, _, csrf, _ := f.get("/login")
	if status, _, page, _ := f.post(csrf, env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"]); status != http.StatusSeeOther {
		t.Fatalf("form sign-in: %d\n%s", status, page)
	}
	resp, err := f.http.Get(a.url("auth1.example.test", "/sso"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("the next visit with the cookie: %d, want 302 without signing in", resp.StatusCode)
	}
	if code, id := a.redeem(t, tokenOf(t, resp.Header.Get("Location"))); code != http.StatusOK || id.SAMAccountName != env["AD_ALICE_USER"] || !contains(id.Groups, env["AD_GROUP"]) {
		t.Fatalf("redeem the cookie's token: %d %+v", code, id)
	}
	if status, page, _, _ := f.get("/logoff"); status != http.StatusOK || !strings.Contains(page, "You are signed out") {
		t.Fatalf("logoff: %d\n%s", status, page)
	}
	if status, _, _, _ := f.get("/sso"); status != http.StatusUnauthorized {
		t.Fatalf("after logoff: %d, want 401", status)
	}
	if !strings.Contains(a.logs.String(), "method=cookie") {
		t.Error("the log does not say the login came from the cookie")
	}
}

// TestADFormDoesNotLockAccountsOut: an account whose password policy locks
// it out after 5 bad passwords, and a form that allows 3 failures: 8 wrong
// passwords through the form reach the KDC 3 times only (badPwdCount 3 in
// the directory, no lockoutTime), and kinit with the right password still
// works.
func TestADFormDoesNotLockAccountsOut(t *testing.T) {
	env := adtest.Env(t)
	admin := adtest.NewAdmin(t, env)
	name := adtest.UniqueName("frm")
	const password = "Form-Passw0rd1"
	dn := admin.CreateUser(name, password)
	admin.CreatePSO(adtest.UniqueName("pso"), 5, dn)
	a := startADNode(t, env, func(c *Config, _ *Options) {
		c.Form = FormConfig{Enabled: true, UserFailures: 3, ClientFailures: 100}
		c.LDAP.RequiredGroup = "" // the new account is in no group
	})
	f := a.formClient(t)
	statuses := map[int]int{}
	for range 8 {
		_, _, csrf, _ := f.get("/login")
		status, _, _, _ := f.post(csrf, name, "Wrong-Passw0rd1")
		statuses[status]++
	}
	if statuses[http.StatusUnauthorized] != 3 || statuses[http.StatusTooManyRequests] != 5 {
		t.Errorf("8 wrong passwords: %v; want 3 refused by the KDC and 5 throttled", statuses)
	}
	if got := admin.Attr(dn, "badPwdCount"); got != "3" {
		t.Errorf("badPwdCount = %q, want 3: the throttled attempts must not reach the KDC", got)
	}
	if got := admin.Attr(dn, "lockoutTime"); got != "" && got != "0" {
		t.Errorf("lockoutTime = %q: the account was locked out", got)
	}
	kinit(t, env, name, password) // fails the test if the account cannot sign in
}

// TestADFormSignInByUPN: a UPN whose suffix is not the realm (an
// alternative UPN suffix) signs in: the directory names its account; an
// unknown one is refused like a wrong password.
func TestADFormSignInByUPN(t *testing.T) {
	env := adtest.Env(t)
	admin := adtest.NewAdmin(t, env)
	name := adtest.UniqueName("upn")
	const password = "Upn-Passw0rd1"
	dn := admin.CreateUser(name, password)
	upn := name + ".person@corp.example"
	admin.Modify(dn, "replace", "userPrincipalName", upn)
	a := startADNode(t, env, func(c *Config, _ *Options) {
		c.Form.Enabled = true
		c.LDAP.RequiredGroup = ""
	})
	f := a.formClient(t)
	_, _, csrf, _ := f.get("/login")
	status, loc, page, _ := f.post(csrf, upn, password)
	if status != http.StatusSeeOther {
		t.Fatalf("sign-in as %s: %d\n%s", upn, status, page)
	}
	if code, id := a.redeem(t, tokenOf(t, loc)); code != http.StatusOK || id.SAMAccountName != name || id.UserPrincipalName != upn {
		t.Fatalf("redeem: %d %+v", code, id)
	}
	_, _, csrf, _ = f.get("/login")
	if status, _, page, _ := f.post(csrf, "nobody.here@corp.example", password); status != http.StatusUnauthorized || !strings.Contains(page, formBadCredential) {
		t.Fatalf("an unknown UPN: %d\n%s", status, page)
	}
}
