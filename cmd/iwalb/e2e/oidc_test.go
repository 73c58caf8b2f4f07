package e2e

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode/store/redistest"
	"github.com/iwalb/iwalb/internal/testkit/authlibrp"
)

// The auth nodes as one OpenID Connect provider behind each front door:
// two nodes on one Redis, whichever of them the balancer picks for each
// request (that a code made by one redeems at the other, and that both
// publish the same keys, authnode's TestADOIDCSharedAcrossNodes checks
// node by node), and two relying parties no one here wrote
// — the demo application's second mode, on github.com/coreos/go-oidc and
// golang.org/x/oauth2, driven by headless Chromium with alice's Kerberos
// ticket, and Debian's python3-authlib, driven by curl --negotiate.

const authlibRedirect = "https://rp.example.test/callback"

// oidcStack is the front doors with the provider configured for issuer,
// and the demo application as a relying party of it on rpPort.
type oidcStack struct {
	*frontDoors
	issuer string
	rpPort int
}

// startOIDC starts two nodes with the provider, the front doors and the
// demo application in its OIDC mode. issuerAt names the issuer from the
// doors' ports; backchannelAt, when not nil, the URL relying parties'
// servers call.
func (e *e2e) startOIDC(issuerAt, backchannelAt func(*frontDoors) string) *oidcStack {
	e.t.Helper()
	renv := redistest.Env(e.t)
	e.write("secrets/oidc-demo", "demo-oidc-secret-0123456789\n")
	e.write("secrets/oidc-authlib", "authlib-oidc-secret-0123456789\n")
	s := &oidcStack{rpPort: freePortNum(e.t)}
	s.frontDoors = e.startFrontDoorsFor(func(f *frontDoors) string {
		s.issuer = issuerAt(f)
		back := ""
		if backchannelAt != nil {
			back = "    backchannel_url: " + backchannelAt(f) + "\n"
		}
		return fmt.Sprintf(`  store:
    type: redis
    redis: {addrs: [%s], password_file: %s, prefix: %q}
  oidc:
    enabled: true
    issuer: %s
%s    clients:
      - id: demo
        secret_file: secrets/oidc-demo
        redirect_uris: [https://app.example.test:%d/oidc/callback]
        post_logout_redirect_uris: [https://app.example.test:%d/]
      - id: authlib
        secret_file: secrets/oidc-authlib
        token_auth: client_secret_post
        redirect_uris: [%s]
`, renv["IWALB_REDIS_ADDR"], renv["IWALB_REDIS_PASSWORD_FILE"], redistest.Prefix(e.t), s.issuer, back, s.rpPort, s.rpPort, authlibRedirect)
	})
	args := []string{"-listen", fmt.Sprintf("127.0.0.1:%d", s.rpPort),
		"-cert", e.pki.CertFile, "-key", e.pki.KeyFile, "-ca", e.pki.CAFile,
		"-oidc-issuer", s.issuer, "-oidc-client-id", "demo",
		"-oidc-client-secret-file", filepath.Join(e.dir, "secrets/oidc-demo"),
		"-oidc-redirect-url", fmt.Sprintf("https://app.example.test:%d/oidc/callback", s.rpPort),
		"-oidc-post-logout-url", fmt.Sprintf("https://app.example.test:%d/", s.rpPort)}
	for _, h := range []string{"sso", "lb", "auth1", "auth2"} {
		for _, p := range []int{s.l4Port, s.l7Port, s.nodePorts[0], s.nodePorts[1]} {
			args = append(args, "-resolve", fmt.Sprintf("%s.example.test:%d:127.0.0.1", h, p))
		}
	}
	app := e.start("iwalb-demoapp (oidc)", "iwalb-demoapp", args...)
	e.waitReady(app, fmt.Sprintf("https://app.example.test:%d/healthz", s.rpPort))
	return s
}

// authlibSignIn signs alice in to the Python relying party: authlib makes
// the authorization URL, curl --negotiate follows the redirects (the front
// door's, the node's 401) to the redirect URI, and authlib redeems the
// code and verifies the ID token.
func (e *e2e) authlibSignIn(s *oidcStack, krb []string) authlibrp.Result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resolve := map[string]string{}
	for _, h := range []string{"sso", "lb", "auth1", "auth2"} {
		for _, p := range []int{s.l4Port, s.l7Port, s.nodePorts[0], s.nodePorts[1]} {
			resolve[fmt.Sprintf("%s.example.test:%d", h, p)] = "127.0.0.1"
		}
	}
	flow, err := authlibrp.Start(ctx, authlibrp.Params{
		Issuer: s.issuer, ClientID: "authlib", ClientSecret: "authlib-oidc-secret-0123456789",
		AuthMethod: "client_secret_post", RedirectURI: authlibRedirect, CAFile: e.pki.CAFile, Resolve: resolve,
	})
	if err != nil {
		e.t.Fatalf("authlib start: %v", err)
	}
	ports := []int{s.l4Port, s.l7Port, s.nodePorts[0], s.nodePorts[1]}
	next := flow.URL
	for hop := 0; ; hop++ {
		if hop == 5 {
			e.t.Fatalf("no redirect to %s after 5 hops from %s", authlibRedirect, flow.URL)
		}
		out := e.curl(krb, ports, "--negotiate", "-u", ":", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", next)
		code, target, _ := strings.Cut(out, " ")
		if code != "302" && code != "307" {
			e.t.Fatalf("curl --negotiate %s: %s", next, out)
		}
		if strings.HasPrefix(target, authlibRedirect+"?") {
			next = target
			break
		}
		next = target
	}
	res, err := flow.Finish(ctx, next)
	if err != nil {
		e.t.Fatalf("authlib finish with %s: %v", next, err)
	}
	return res
}

// TestE2EOIDCThroughTheFrontDoors: alice signs in to both relying parties
// with her Kerberos ticket through the L4 balancer (the issuer is its
// passthrough name) and through the L7 front door (the issuer is its
// name; the relying parties' servers call the nodes through the L4 name,
// since the L7 door answers every request with a redirect that HTTP
// clients follow without their Authorization header).
func TestE2EOIDCThroughTheFrontDoors(t *testing.T) {
	for _, door := range []struct {
		name        string
		issuer      func(*frontDoors) string
		backchannel func(*frontDoors) string
	}{
		{"L4 passthrough", func(f *frontDoors) string { return fmt.Sprintf("https://lb.example.test:%d", f.l4Port) }, nil},
		{"L7 front door", func(f *frontDoors) string { return fmt.Sprintf("https://sso.example.test:%d", f.l7Port) },
			func(f *frontDoors) string { return fmt.Sprintf("https://lb.example.test:%d", f.l4Port) }},
	} {
		t.Run(door.name, func(t *testing.T) {
			e := newE2E(t)
			s := e.startOIDC(door.issuer, door.backchannel)
			krb := e.kinit("alice", e.env["AD_ALICE_PASSWORD"])

			b := e.chromium(krb)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			page, err := b.Navigate(ctx, fmt.Sprintf("https://app.example.test:%d/", s.rpPort))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(page.URL)
			if u == nil || u.Host != fmt.Sprintf("app.example.test:%d", s.rpPort) ||
				!strings.Contains(page.Text, "Signed in as alice") || !strings.Contains(page.Text, "kerberos") {
				t.Fatalf("Chromium ended on %s:\n%s", page.URL, page.Text)
			}

			res := e.authlibSignIn(s, krb)
			if res.IDToken["preferred_username"] != "alice" || res.IDToken["iss"] != s.issuer || res.UserInfo["sub"] != res.IDToken["sub"] {
				t.Errorf("authlib's verified ID token %v and userinfo %v: want alice, issuer %s, one sub", res.IDToken, res.UserInfo, s.issuer)
			}
			if fmt.Sprint(res.IDToken["amr"]) != "[kerberos]" {
				t.Errorf("authlib's ID token amr %v, want [kerberos]", res.IDToken["amr"])
			}
		})
	}
}
