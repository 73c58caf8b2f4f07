package authnode

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/internal/ntlm"
	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
)

// These tests sign in with NTLM against the real domain: the client is
// Samba's own (ntlm_auth --helper-protocol=ntlmssp-client-1, which makes
// the NEGOTIATE and AUTHENTICATE messages a Windows client would), the
// node checks the answers through the DC's winbindd.

// ntlmEnv is the test domain's settings, failing the test when the domain
// runs without winbindd.
func ntlmEnv(t *testing.T) map[string]string {
	t.Helper()
	env := adtest.Env(t)
	if env["AD_NTLM"] != "1" {
		t.Fatal("the test domain runs without winbindd: start it with AD_NTLM=1 scripts/ad-up DIR (scripts/test does)")
	}
	return env
}

// startNTLMNode is startADNode with NTLM on.
func startNTLMNode(t *testing.T, env map[string]string, edit func(*Config, *Options)) *adNode {
	t.Helper()
	return startADNode(t, env, func(c *Config, o *Options) {
		c.NTLM = NTLMConfig{Enabled: true, SMBConf: env["AD_NTLM_AUTH_CONF"], MaxHelpers: 2}
		if edit != nil {
			edit(c, o)
		}
	})
}

// ntlmClient is Samba's NTLM client, for one exchange.
type ntlmClient struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// newNTLMClient starts ntlm_auth's client for user@domain with password;
// extra are more ntlm_auth options (an NTLMv1-only client).
func newNTLMClient(t *testing.T, env map[string]string, user, password string, extra ...string) *ntlmClient {
	t.Helper()
	return newSambaClient(t, env, "ntlmssp-client-1", user, password, extra...)
}

// newSambaClient starts ntlm_auth's client of protocol proto:
// ntlmssp-client-1 (bare NTLMSSP) or gss-spnego-client (NTLM in SPNEGO, as
// Windows browsers send it under Negotiate).
func newSambaClient(t *testing.T, env map[string]string, proto, user, password string, extra ...string) *ntlmClient {
	t.Helper()
	args := append([]string{"--configfile=" + env["AD_NTLM_AUTH_CONF"], "--helper-protocol=" + proto,
		"--username=" + user, "--domain=" + env["AD_DOMAIN"], "--password=" + password}, extra...)
	cmd := exec.Command("ntlm_auth", args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ntlm_auth client: %v", err)
	}
	c := &ntlmClient{t: t, cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(c.close)
	return c
}

// close ends the client process.
func (c *ntlmClient) close() {
	c.in.Close()
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// say sends a line and returns the answer's payload after its two-letter
// code, which must be one of want.
func (c *ntlmClient) say(line string, want ...string) []byte {
	c.t.Helper()
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		c.t.Fatalf("ntlm_auth client: %v", err)
	}
	ans, err := c.out.ReadString('\n')
	if err != nil {
		c.t.Fatalf("ntlm_auth client: %v", err)
	}
	code, payload, _ := strings.Cut(strings.TrimSpace(ans), " ")
	payload, _, _ = strings.Cut(payload, " ") // gss-spnego-client: "AF <token> <user>"
	if payload == "*" {
		payload = ""
	}
	for _, w := range want {
		if code == w {
			b, err := base64.StdEncoding.DecodeString(payload)
			if err != nil {
				c.t.Fatalf("ntlm_auth client answered %q: %v", ans, err)
			}
			return b
		}
	}
	c.t.Fatalf("ntlm_auth client answered %q to %.20q, want %v", ans, line, want)
	return nil
}

func (c *ntlmClient) negotiate() []byte { return c.say("YR", "YR") }

func (c *ntlmClient) authenticate(challenge []byte) []byte {
	return c.say("TT "+base64.StdEncoding.EncodeToString(challenge), "AF", "KK")
}

// oneConn is an HTTPS client of a that keeps one connection for all its
// requests, as a browser's NTLM exchange does.
func (a *adNode) oneConn() *http.Client {
	c := a.client()
	c.Transport.(*http.Transport).MaxConnsPerHost = 1
	return c
}

// ntlmGet sends GET /sso with Authorization: scheme msg over c, and
// returns the status, the token of the node's challenge or answer under
// scheme, the Location and the page's reason.
func ntlmGet(t *testing.T, a *adNode, c *http.Client, scheme string, msg []byte) (status int, token []byte, location, reason string) {
	t.Helper()
	req, _ := http.NewRequest("GET", a.url("auth1.example.test", "/sso"), nil)
	req.Header.Set("Authorization", scheme+" "+base64.StdEncoding.EncodeToString(msg))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, v := range resp.Header.Values("WWW-Authenticate") {
		if s, b, ok := strings.Cut(v, " "); ok && strings.EqualFold(s, scheme) {
			token, _ = base64.StdEncoding.DecodeString(b)
		}
	}
	if _, r, ok := strings.Cut(string(body), "Reason: <code>"); ok {
		reason, _, _ = strings.Cut(r, "</code>")
	}
	return resp.StatusCode, token, resp.Header.Get("Location"), reason
}

// ntlmLogin runs one NTLM exchange for user over one connection and returns
// the final status, Location and reason.
func ntlmLogin(t *testing.T, a *adNode, env map[string]string, user, password string, extra ...string) (int, string, string) {
	t.Helper()
	cl := newNTLMClient(t, env, user, password, extra...)
	c := a.oneConn()
	status, chal, _, reason := ntlmGet(t, a, c, "NTLM", cl.negotiate())
	if status != http.StatusUnauthorized || len(chal) == 0 {
		t.Fatalf("NEGOTIATE: %d (%s) with challenge of %d bytes; want 401 and a CHALLENGE", status, reason, len(chal))
	}
	status, _, loc, reason := ntlmGet(t, a, c, "NTLM", cl.authenticate(chal))
	return status, loc, reason
}

func TestADNTLMLogin(t *testing.T) {
	env := ntlmEnv(t)
	a := startNTLMNode(t, env, nil)

	// The 401 offers both schemes.
	resp, err := a.client().Get(a.url("auth1.example.test", "/sso"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("WWW-Authenticate"); strings.Join(got, ",") != "Negotiate,NTLM" {
		t.Errorf("401 offers %q, want Negotiate then NTLM", got)
	}

	status, loc, reason := ntlmLogin(t, a, env, env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
	if status != http.StatusFound {
		t.Fatalf("alice: %d %s; want 302 to the application\n%s", status, reason, a.logs)
	}
	code, id := a.redeem(t, tokenOf(t, loc))
	if code != http.StatusOK || id.Identity.SAMAccountName != env["AD_ALICE_USER"] || id.Identity.AuthMethod != "ntlm" ||
		id.Identity.SID != adtest.ObjectSID(t, env, env["AD_ALICE_USER"]) || !contains(id.Identity.Groups, env["AD_GROUP"]) {
		t.Errorf("redeemed %d %+v; want alice by NTLM with her SID and group %s", code, id.Identity, env["AD_GROUP"])
	}
	if !strings.Contains(a.logs.String(), "mechanism=ntlm") {
		t.Errorf("no login line with mechanism=ntlm in:\n%s", a.logs)
	}

	for _, tt := range []struct {
		name, user, password string
		extra                []string
		status               int
		reason               string
	}{
		{"wrong password", env["AD_ALICE_USER"], "not-" + env["AD_ALICE_PASSWORD"], nil, http.StatusUnauthorized, "bad_credentials"},
		{"unknown user", "nobody-here", "x", nil, http.StatusUnauthorized, "bad_credentials"},
		{"disabled user", env["AD_BOB_USER"], env["AD_BOB_PASSWORD"], nil, http.StatusForbidden, "user_disabled"},
		{"NTLMv1-only client", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"], []string{"--option=client ntlmv2 auth = no", "--option=client lanman auth = yes"},
			http.StatusUnauthorized, "ntlm_v1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, loc, reason := ntlmLogin(t, a, env, tt.user, tt.password, tt.extra...)
			if status != tt.status || reason != tt.reason || loc != "" {
				t.Errorf("%d %s (Location %q); want %d %s", status, reason, loc, tt.status, tt.reason)
			}
		})
	}

	t.Run("answer on another connection", func(t *testing.T) {
		cl := newNTLMClient(t, env, env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
		_, chal, _, _ := ntlmGet(t, a, a.oneConn(), "NTLM", cl.negotiate())
		status, _, loc, reason := ntlmGet(t, a, a.oneConn(), "NTLM", cl.authenticate(chal))
		if status != http.StatusUnauthorized || reason != "ntlm_no_challenge" || loc != "" {
			t.Errorf("%d %s (Location %q); want 401 ntlm_no_challenge", status, reason, loc)
		}
	})

	t.Run("answer twice", func(t *testing.T) {
		cl := newNTLMClient(t, env, env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
		c := a.oneConn()
		_, chal, _, _ := ntlmGet(t, a, c, "NTLM", cl.negotiate())
		auth := cl.authenticate(chal)
		if status, _, _, reason := ntlmGet(t, a, c, "NTLM", auth); status != http.StatusFound {
			t.Fatalf("first answer: %d %s", status, reason)
		}
		if status, _, _, reason := ntlmGet(t, a, c, "NTLM", auth); status != http.StatusUnauthorized || reason != "ntlm_no_challenge" {
			t.Errorf("the same answer again: %d %s; want 401 ntlm_no_challenge", status, reason)
		}
	})
}

// ntlmHelpers returns the PIDs of the node's helpers: the ntlm_auth
// processes in server mode whose parent is this process.
func ntlmHelpers(t *testing.T) []int {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "(ntlm_auth") {
			continue
		}
		f := strings.Fields(s[i+1:])
		cmdline, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		if len(f) > 1 && f[1] == self && strings.Contains(string(cmdline), "ntlm-server-1") {
			pid, _ := strconv.Atoi(filepath.Base(d))
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestADNTLMLoginLoop signs alice in 200 times with NTLM, in a loop bounded
// in time, through a node of two helpers, and checks that no helper is left
// once the node stops; it logs the cost of a login.
func TestADNTLMLoginLoop(t *testing.T) {
	env := ntlmEnv(t)
	reg := prometheus.NewRegistry()
	a := startNTLMNode(t, env, func(_ *Config, o *Options) { o.Registerer = reg })
	// A new client and connection per login, as a browser's fallback.
	const logins = 200
	deadline := time.Now().Add(90 * time.Second)
	start := time.Now()
	var verify time.Duration
	for i := range logins {
		if time.Now().After(deadline) {
			t.Fatalf("only %d logins in 90 s", i)
		}
		cl := newNTLMClient(t, env, env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
		c := a.oneConn()
		_, chal, _, _ := ntlmGet(t, a, c, "NTLM", cl.negotiate())
		auth := cl.authenticate(chal)
		vs := time.Now()
		if status, _, _, reason := ntlmGet(t, a, c, "NTLM", auth); status != http.StatusFound {
			t.Fatalf("login %d: %d %s", i, status, reason)
		}
		verify += time.Since(vs)
		c.CloseIdleConnections()
		cl.close()
	}
	helpers := ntlmHelpers(t)
	// Every LDAP request of a login is counted: the account by name (its
	// SID and groups) and the look-up that confirms it, which reuses that
	// entry; none more once the connections and the SID cache are warm.
	ops := ldapOpsPerLogin(t, reg)
	t.Logf("%d NTLM logins in %v; the AUTHENTICATE leg (check by the domain, directory, token) took %v on average; %.2f LDAP operations a login; %d helper processes running",
		logins, time.Since(start).Round(time.Millisecond), (verify / logins).Round(time.Microsecond), ops, len(helpers))
	if ops < 1 || ops > 2.1 {
		t.Errorf("%.2f LDAP operations a login; want 1 search for the account and its groups, and at most 1 more", ops)
	}
	if len(helpers) == 0 || len(helpers) > 2 {
		t.Errorf("%d helper processes run for a node of max_helpers 2: %v", len(helpers), helpers)
	}
	if got := testkit.Sum(t, reg, "iwalb_authnode_ntlm_helpers"); got != float64(len(helpers)) {
		t.Errorf("iwalb_authnode_ntlm_helpers = %v, want the %d running", got, len(helpers))
	}
	a.stop()
	for _, pid := range helpers {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("helper %d still runs after the node stopped", pid)
		}
	}
}

// TestADNTLMInSPNEGO signs in as a Windows browser does under Negotiate
// when it falls back to NTLM: NTLMSSP in SPNEGO, with the MIC that a client
// negotiating signing sends, Samba's gss-spnego-client checking the node's
// final token and its mechListMIC before it accepts.
func TestADNTLMInSPNEGO(t *testing.T) {
	env := ntlmEnv(t)
	a := startNTLMNode(t, env, nil)
	cl := newSambaClient(t, env, "gss-spnego-client", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
	cl.say("SF NTLMSSP_FEATURE_SIGN", "OK")
	c := a.oneConn()
	status, resp, _, reason := ntlmGet(t, a, c, "Negotiate", cl.say("YR", "YR", "TT"))
	if status != http.StatusUnauthorized || len(resp) == 0 {
		t.Fatalf("NegTokenInit: %d %s, answer of %d bytes; want 401 with a NegTokenResp", status, reason, len(resp))
	}
	status, final, loc, reason := ntlmGet(t, a, c, "Negotiate", cl.say("TT "+base64.StdEncoding.EncodeToString(resp), "KK", "TT", "AF"))
	if status != http.StatusFound || len(final) == 0 {
		t.Fatalf("NegTokenResp with the AUTHENTICATE: %d %s, final token of %d bytes; want 302 and accept-completed\n%s", status, reason, len(final), a.logs)
	}
	// AF: the client checked the node's mechListMIC and accepts.
	cl.say("TT "+base64.StdEncoding.EncodeToString(final), "AF")
	if code, id := a.redeem(t, tokenOf(t, loc)); code != http.StatusOK || id.Identity.SAMAccountName != env["AD_ALICE_USER"] || id.Identity.AuthMethod != "ntlm" {
		t.Errorf("redeemed %d %+v; want alice by NTLM", code, id.Identity)
	}
}

// TestADNTLMDiagnose: doctor's check of NTLM asks the domain through the
// node's helpers, and says so when they cannot.
func TestADNTLMDiagnose(t *testing.T) {
	env := ntlmEnv(t)
	find := func(cs []Check) *Check {
		for i := range cs {
			if cs[i].Name == "ntlm" {
				return &cs[i]
			}
		}
		t.Fatalf("no ntlm check among %+v", cs)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := startNTLMNode(t, env, nil)
	if c := find(a.node.Diagnose(ctx)); c.Err != nil {
		t.Errorf("ntlm check against the test domain: %v", c.Err)
	}
	broken := startNTLMNode(t, env, func(c *Config, _ *Options) { c.NTLM.Helper = "false" })
	if c := find(broken.node.Diagnose(ctx)); !errors.Is(c.Err, ntlm.ErrHelper) || c.Detail == "" {
		t.Errorf("ntlm check with a helper that exits: %v (%q); want ErrHelper", c.Err, c.Detail)
	}
}

// ldapOpsPerLogin is the mean of iwalb_authnode_ldap_operations_per_login
// in reg.
func ldapOpsPerLogin(t *testing.T, reg prometheus.Gatherer) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "iwalb_authnode_ldap_operations_per_login" {
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() == 0 {
				break
			}
			return h.GetSampleSum() / float64(h.GetSampleCount())
		}
	}
	t.Fatal("no login counted in iwalb_authnode_ldap_operations_per_login")
	return 0
}
