package ntlm

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/internal/testkit"
)

// ntlmEnv returns the test domain's settings, skipping as adtest.Env does
// (-short, IWALB_AD_ENV unset) and failing when the domain runs without
// winbindd, as the authnode NTLM tests do.
func ntlmEnv(t testing.TB) map[string]string {
	t.Helper()
	env := adtest.Env(t)
	if env["AD_NTLM"] != "1" {
		t.Fatal("the test domain runs without winbindd: start it with AD_NTLM=1 scripts/ad-up DIR (scripts/test does)")
	}
	if env["AD_NTLM_AUTH_CONF"] == "" {
		t.Fatal("the test domain's env has no AD_NTLM_AUTH_CONF (an env file from an older ad-up?)")
	}
	return env
}

// testServer is the identity of the CHALLENGEs of the tests.
func testServer(env map[string]string) *Server {
	return &Server{Domain: env["AD_DOMAIN"], DNSDomain: env["AD_DNS_DOMAIN"], Computer: "AUTH1", DNSComputer: "auth1." + env["AD_DNS_DOMAIN"]}
}

// newADVerifier returns a Verifier of the test domain, closed at the end of
// the test.
func newADVerifier(t testing.TB, env map[string]string, maxHelpers int) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{
		Args:       []string{"--configfile=" + env["AD_NTLM_AUTH_CONF"]},
		MaxHelpers: maxHelpers,
		Timeout:    10 * time.Second,
		Logger:     testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// clientHelper is a real NTLM client: Samba's ntlm_auth in a client helper
// mode (ntlmssp-client-1 for raw NTLMSSP, gss-spnego-client for SPNEGO),
// driven over its squid-style protocol: "YR" starts an exchange and is
// answered "YR <first token>" (or "TT" in SPNEGO), "TT <server token>" is
// answered "KK <token>" or "AF <token>".
type clientHelper struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// newClient starts a client helper logged in as user with password.
func newClient(t testing.TB, env map[string]string, proto, user, password string, extra ...string) *clientHelper {
	t.Helper()
	return newClientEnv(t, env, nil, proto, user, password, extra...)
}

// newClientEnv starts a client helper with environ added to its
// environment.
func newClientEnv(t testing.TB, env map[string]string, environ []string, proto, user, password string, extra ...string) *clientHelper {
	t.Helper()
	args := append([]string{"--configfile=" + env["AD_NTLM_AUTH_CONF"], "--helper-protocol=" + proto,
		"--username=" + user, "--password=" + password}, extra...)
	if !slices.ContainsFunc(extra, func(s string) bool { return strings.HasPrefix(s, "--domain=") }) {
		args = append(args, "--domain="+env["AD_DOMAIN"])
	}
	cmd := exec.Command("ntlm_auth", args...)
	cmd.Env = append(os.Environ(), environ...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &testWriter{t: t, prefix: "client ntlm_auth: "}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ntlm_auth client: %v", err)
	}
	c := &clientHelper{t: t, cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	return c
}

// say sends a line and returns the answer's code and token.
func (c *clientHelper) say(line string) (code string, tok []byte) {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		c.t.Fatalf("ntlm_auth client: %v", err)
	}
	ans, err := c.out.ReadString('\n')
	if err != nil {
		c.t.Fatalf("ntlm_auth client: %v", err)
	}
	code, rest, _ := strings.Cut(strings.TrimSpace(ans), " ")
	if code == "BH" || code == "NA" {
		c.t.Logf("ntlm_auth client answered %s", strings.TrimSpace(ans))
		return code, nil
	}
	if rest != "" && rest != "*" {
		rest, _, _ = strings.Cut(rest, " ")
		if tok, err = base64.StdEncoding.DecodeString(rest); err != nil {
			c.t.Fatalf("ntlm_auth client answered %q: %v", ans, err)
		}
	}
	return code, tok
}

// features asks the client for GENSEC features before an exchange
// ("NTLMSSP_FEATURE_SIGN" makes Samba's client negotiate signing and, when
// the CHALLENGE has a timestamp, send a MIC as Windows does).
func (c *clientHelper) features(list string) {
	c.t.Helper()
	if code, _ := c.say("SF " + list); code != "OK" {
		c.t.Fatalf("ntlm_auth client answered SF with %s", code)
	}
}

// sessionKey returns the client's session key after an exchange.
func (c *clientHelper) sessionKey() []byte {
	c.t.Helper()
	code, key := c.say("GK")
	if code != "GK" {
		c.t.Fatalf("ntlm_auth client answered GK with %s", code)
	}
	return key
}

// start begins an exchange and returns the client's first token.
func (c *clientHelper) start() []byte {
	c.t.Helper()
	code, tok := c.say("YR")
	if (code != "YR" && code != "TT") || tok == nil {
		c.t.Fatalf("ntlm_auth client answered YR with %s", code)
	}
	return tok
}

// answer gives the client the server's token and returns its answer.
func (c *clientHelper) answer(tok []byte) (code string, out []byte) {
	c.t.Helper()
	return c.say("TT " + base64.StdEncoding.EncodeToString(tok))
}

// loginMessages runs one exchange of client against srv: its NEGOTIATE,
// the CHALLENGE, its AUTHENTICATE.
func loginMessages(t testing.TB, srv *Server, client *clientHelper) (Challenge, *Authenticate) {
	t.Helper()
	neg, err := ParseNegotiate(client.start())
	if err != nil {
		t.Fatalf("client's NEGOTIATE: %v", err)
	}
	chal, c, err := srv.Challenge(neg)
	if err != nil {
		t.Fatal(err)
	}
	code, auth := client.answer(chal)
	if code != "AF" && code != "KK" {
		t.Fatalf("ntlm_auth client answered the CHALLENGE with %s", code)
	}
	a, err := ParseAuthenticate(auth)
	if err != nil {
		t.Fatalf("client's AUTHENTICATE: %v", err)
	}
	return c, a
}

// testWriter logs what a process writes.
type testWriter struct {
	t      testing.TB
	prefix string
}

func (w *testWriter) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Log(w.prefix + l)
	}
	return len(b), nil
}

// waitNoProcs waits up to 5 s until no process named comm that a
// Verifier started (a child of this process leading its own process group)
// is alive, and fails with those left.
func waitNoProcs(t testing.TB, comm string) {
	t.Helper()
	var left []procStat
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if left = verifierProcs(t, comm); len(left) == 0 {
			return
		}
	}
	t.Fatalf("%s processes left behind: %+v", comm, left)
}

// verifierProcs returns the live children of this process named comm that
// lead their own process group: those a Verifier started (the tests' own
// client helpers stay in the test's group).
func verifierProcs(t testing.TB, comm string) []procStat {
	var out []procStat
	for _, p := range procs(t) {
		if p.ppid == os.Getpid() && p.comm == comm && p.pgrp == p.pid && p.state != "Z" {
			out = append(out, p)
		}
	}
	return out
}

func hexdump(b []byte) string { return fmt.Sprintf("%x", b) }

// testLogger returns a logger into a buffer that the test prints when it
// fails, and the buffer, for checks of what was logged.
func testLogBuffer(t testing.TB) (*slog.Logger, *testkit.Buffer) {
	t.Helper()
	b := &testkit.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("verifier log:\n%s", b.String())
		}
	})
	return b.JSONLogger(), b
}

func testLogger(t testing.TB) *slog.Logger {
	l, _ := testLogBuffer(t)
	return l
}
