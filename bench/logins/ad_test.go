package main

// Tests against the test domain of scripts/ad-up; they skip without
// IWALB_AD_ENV.

import (
	"encoding/base64"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jcmturner/gokrb5/v8/config"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/authnode/negotiate"
)

// TestADHeadersValidate: the headers the tool makes are what the node
// accepts, one fresh authenticator each, with mutual authentication when
// asked; two clients of one user share a clock and never collide.
func TestADHeadersValidate(t *testing.T) {
	env := adtest.Env(t)
	conf, err := config.Load(env["KRB5_CONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	kt, err := negotiate.LoadKeytab(env["AD_HTTP_KEYTAB"])
	if err != nil {
		t.Fatal(err)
	}
	const spn = "HTTP/auth1.example.test"
	cred := credential{user: env["AD_ALICE_USER"], password: env["AD_ALICE_PASSWORD"]}
	clock := &usecClock{}
	var makers []*blobMaker
	for _, mutual := range []bool{false, true} {
		cl, err := login(cred, conf, env["AD_REALM"], spn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Destroy)
		makers = append(makers, &blobMaker{cl: cl, spn: spn, clock: clock, mutual: mutual})
	}
	const n = 200
	v := negotiate.NewValidator(kt, negotiate.Options{ReplayQuota: 2 * n})
	for i := range n {
		for _, m := range makers {
			h, err := m.header()
			if err != nil {
				t.Fatal(err)
			}
			blob, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "Negotiate "))
			if err != nil {
				t.Fatal(err)
			}
			id, err := v.Validate(blob)
			if err != nil {
				t.Fatalf("login %d (mutual %v): %v", i, m.mutual, err)
			}
			if id.User != "alice" || id.Etype != 18 || len(id.GroupSIDs) == 0 {
				t.Fatalf("identity %+v", id)
			}
			// The SPNEGO answer carries an AP-REP only when asked for.
			if hasAPRep := len(id.ResponseToken) > 40; hasAPRep != m.mutual {
				t.Fatalf("mutual %v: response token of %d bytes", m.mutual, len(id.ResponseToken))
			}
		}
	}
}

func TestADLoginErrors(t *testing.T) {
	env := adtest.Env(t)
	conf, err := config.Load(env["KRB5_CONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	_, err = login(credential{user: env["AD_ALICE_USER"], password: "Wrong-Passw0rd"}, conf, env["AD_REALM"], "HTTP/auth1.example.test")
	if err == nil || !strings.Contains(err.Error(), "kerberos login as alice@"+env["AD_REALM"]) {
		t.Fatalf("wrong password: %v", err)
	}
	_, err = login(credential{user: env["AD_ALICE_USER"], password: env["AD_ALICE_PASSWORD"]}, conf, env["AD_REALM"], "HTTP/nosuch.example.test")
	if err == nil || !strings.Contains(err.Error(), "service ticket for HTTP/nosuch.example.test as alice") {
		t.Fatalf("unknown SPN: %v", err)
	}
	_, err = login(credential{ccache: filepath.Join(t.TempDir(), "none")}, conf, env["AD_REALM"], "HTTP/auth1.example.test")
	if err == nil || !strings.Contains(err.Error(), "load ccache") {
		t.Fatalf("missing ccache: %v", err)
	}
}

// TestADLoginFromCCache: a ticket cache left by kinit serves as well as a
// password.
func TestADLoginFromCCache(t *testing.T) {
	env := adtest.Env(t)
	if _, err := exec.LookPath("kinit"); err != nil {
		t.Skip("kinit not installed")
	}
	cc := filepath.Join(t.TempDir(), "cc")
	kinit := exec.Command("kinit", env["AD_ALICE_USER"])
	kinit.Env = append(kinit.Environ(), "KRB5_CONFIG="+env["KRB5_CONFIG"], "KRB5CCNAME=FILE:"+cc)
	kinit.Stdin = strings.NewReader(env["AD_ALICE_PASSWORD"] + "\n")
	if out, err := kinit.CombinedOutput(); err != nil {
		t.Fatalf("kinit: %v\n%s", err, out)
	}
	conf, err := config.Load(env["KRB5_CONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	cl, err := login(credential{ccache: cc}, conf, "", "HTTP/auth1.example.test")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Destroy()
	if got := cl.Credentials.CName().PrincipalNameString(); got != "alice" {
		t.Fatalf("ccache client %q", got)
	}
}
