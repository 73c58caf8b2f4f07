// Package authlibrp drives an OpenID Connect relying party made of Debian's
// python3-authlib (authlib_rp.py, embedded), so that tests sign in at
// iwalb's provider with a client stack in another language than go-oidc:
// what both accept, and both refuse, is the protocol rather than one
// library's reading of it.
//
// The flow has two steps because the browser's part happens in between:
//
//	flow, err := authlibrp.Start(ctx, authlibrp.Params{Issuer: issuer, ClientID: "rp", ...})
//	// a browser (curl, Chromium, an http.Client) follows flow.URL to the
//	// redirect URI with code and state
//	res, err := flow.Finish(ctx, callbackURL)
//	res.IDToken["preferred_username"] // verified by authlib
//
// Start does discovery and makes the authorization URL (PKCE S256, state,
// nonce); Finish checks state, redeems the code, verifies the ID token
// against the JWKS (signature, iss, aud, exp, nonce, at_hash) and calls
// userinfo. Every step is a /usr/bin/python3 process bounded by the
// context and by Params.Timeout; a failure is an error with authlib's
// one-line reason.
//
// It is test support only: nothing outside _test.go files should import
// it. Available says whether this machine can run it (Debian's
// python3-authlib and python3-requests).
package authlibrp

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strings"
	"time"
)

//go:embed authlib_rp.py
var script string

// Python is the interpreter: Debian's, which has the Debian packages. The
// python3 first on PATH may be another (pyenv's), without them.
const Python = "/usr/bin/python3"

// DefaultTimeout bounds each step when Params.Timeout is zero: a step is a
// few HTTP requests and an interpreter's start.
const DefaultTimeout = 30 * time.Second

// Params configure the relying party.
type Params struct {
	// Issuer is the provider's issuer URL; discovery is read below it and
	// must name it exactly.
	Issuer string
	// ClientID and ClientSecret are the registered client's; the secret
	// reaches the process in its environment, not on its command line.
	ClientID, ClientSecret string
	// AuthMethod is how the client authenticates at the token endpoint:
	// client_secret_basic, client_secret_post or none. Empty:
	// client_secret_basic with a secret, none without.
	AuthMethod string
	// RedirectURI is the registered redirect URI the browser is sent to.
	RedirectURI string
	// CAFile, when set, is the only CA trusted for the provider's
	// certificate; empty means the system's.
	CAFile string
	// Resolve maps "host:port" to an address to dial instead, as curl
	// --resolve does: the TLS handshake still names and checks host.
	Resolve map[string]string
	// Timeout bounds each step (default DefaultTimeout).
	Timeout time.Duration
}

// Flow is one started sign-in: the URL to send the browser to and the
// secrets Finish needs.
type Flow struct {
	// URL is the authorization URL.
	URL string
	// State, Nonce and CodeVerifier are the request's secrets, as authlib
	// made them.
	State, Nonce, CodeVerifier string

	p Params
}

// Result is what authlib verified.
type Result struct {
	// IDToken holds the ID token's claims, its signature and claims
	// checked.
	IDToken map[string]any
	// UserInfo is the userinfo answer (its sub checked against the ID
	// token's).
	UserInfo map[string]any
}

// Available says whether Python has the modules the script needs, and if
// not which is missing, for a test's t.Skip.
func Available(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Python, "-I", "-c",
		"import authlib.integrations.requests_client, authlib.jose, authlib.oidc.core, requests")
	cmd.Env = baseEnv()
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s cannot run the authlib relying party (apt-get install python3-authlib python3-requests): %v: %s",
			Python, err, lastLine(out))
	}
	return nil
}

// Start does discovery and makes the authorization request.
func Start(ctx context.Context, p Params) (*Flow, error) {
	var out struct {
		URL          string `json:"url"`
		State        string `json:"state"`
		Nonce        string `json:"nonce"`
		CodeVerifier string `json:"code_verifier"`
	}
	if err := run(ctx, p, "start", nil, &out); err != nil {
		return nil, err
	}
	if out.URL == "" || out.State == "" || out.Nonce == "" || out.CodeVerifier == "" {
		return nil, errors.New("authlibrp start: an answer without url, state, nonce or code_verifier")
	}
	return &Flow{URL: out.URL, State: out.State, Nonce: out.Nonce, CodeVerifier: out.CodeVerifier, p: p}, nil
}

// Finish completes the flow with the URL the browser was redirected to
// (the redirect URI with code and state, or with error).
func (f *Flow) Finish(ctx context.Context, callbackURL string) (Result, error) {
	var out struct {
		IDToken  map[string]any `json:"id_token_claims"`
		UserInfo map[string]any `json:"userinfo"`
	}
	args := []string{"--callback-url", callbackURL, "--state", f.State, "--nonce", f.Nonce, "--code-verifier", f.CodeVerifier}
	if err := run(ctx, f.p, "finish", args, &out); err != nil {
		return Result{}, err
	}
	if out.IDToken == nil || out.UserInfo == nil {
		return Result{}, errors.New("authlibrp finish: an answer without id_token_claims or userinfo")
	}
	return Result{IDToken: out.IDToken, UserInfo: out.UserInfo}, nil
}

// run runs one step of the script and decodes its JSON answer into out.
func run(ctx context.Context, p Params, step string, extra []string, out any) error {
	args, err := p.args()
	if err != nil {
		return fmt.Errorf("authlibrp %s: %w", step, err)
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// -I: isolated, so that no PYTHONPATH, user site-packages or the
	// working folder puts other modules before Debian's. The script is
	// given with -c, so it runs from wherever the test binary does.
	cmd := exec.CommandContext(ctx, Python, append(append([]string{"-I", "-c", script, step}, args...), extra...)...)
	cmd.Env = append(baseEnv(), "AUTHLIB_RP_CLIENT_SECRET="+p.ClientSecret)
	// A killed interpreter's pipes are not waited on for ever.
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("authlibrp %s: %w (after %v): %s", step, ctx.Err(), timeout, lastLine(stderr.Bytes()))
		}
		return fmt.Errorf("authlibrp %s: %s", step, lastLine(stderr.Bytes()))
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return fmt.Errorf("authlibrp %s: the answer is not JSON: %w", step, err)
	}
	return nil
}

// args are the command-line arguments common to both steps.
func (p Params) args() ([]string, error) {
	method := p.AuthMethod
	if method == "" {
		method = "client_secret_basic"
		if p.ClientSecret == "" {
			method = "none"
		}
	}
	args := []string{"--issuer", p.Issuer, "--client-id", p.ClientID, "--auth-method", method, "--redirect-uri", p.RedirectURI}
	if p.CAFile != "" {
		args = append(args, "--ca-file", p.CAFile)
	}
	// Sorted, so that a command line reads the same every run.
	hosts := make([]string, 0, len(p.Resolve))
	for hp := range p.Resolve {
		hosts = append(hosts, hp)
	}
	sort.Strings(hosts)
	for _, hp := range hosts {
		if _, _, err := net.SplitHostPort(hp); err != nil {
			return nil, fmt.Errorf("resolve %q: want host:port: %w", hp, err)
		}
		addr := p.Resolve[hp]
		if addr == "" || strings.ContainsAny(addr, " \t") {
			return nil, fmt.Errorf("resolve %q: bad address %q", hp, addr)
		}
		args = append(args, "--resolve", hp+":"+addr)
	}
	return args, nil
}

// baseEnv is the interpreter's whole environment: nothing of the test's
// (proxies, pyenv's variables, a CA bundle) changes what is tested.
func baseEnv() []string {
	return []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=/nonexistent"}
}

// lastLine returns the last non-empty line of b, which is where the script
// (or a traceback) says what failed, bounded in length.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	s := strings.TrimSpace(lines[len(lines)-1])
	if s == "" {
		return "(no message)"
	}
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}
