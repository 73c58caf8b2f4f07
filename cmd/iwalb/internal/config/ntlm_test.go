package config

import (
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode"
)

// TestAuthNodeNTLM: NTLM is off unless enabled (the node is Kerberos
// only); enabled, its domain defaults to the realm's first label and its
// helper is found in PATH; a missing helper, a bad domain name and too
// many helpers are reported at their lines.
func TestAuthNodeNTLM(t *testing.T) {
	dir := fixture(t)
	at := "  application_url: https://app.example.test/sso/callback\n"
	line := strings.Count(base[:strings.Index(base, at)+len(at)], "\n")
	load := func(t *testing.T, section string) authnode.NTLMConfig {
		t.Helper()
		f, err := Load(writeConfig(t, dir, strings.Replace(base, at, at+section, 1)))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := f.AuthNode()
		return cfg.NTLM
	}
	if got := load(t, ""); got.Enabled {
		t.Errorf("without an ntlm section: %+v, want NTLM off", got)
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	got := load(t, "  ntlm: {enabled: true, helper: true, timeout: 2s}\n")
	want := authnode.NTLMConfig{Enabled: true, Domain: "EXAMPLE", Helper: truePath, MaxHelpers: authnode.DefaultNTLMMaxHelpers,
		Timeout: 2 * time.Second, ChallengeTTL: authnode.DefaultNTLMChallengeTTL}
	if got != want {
		t.Errorf("ntlm = %+v, want %+v", got, want)
	}

	path := writeConfig(t, dir, strings.Replace(base, at, at+"  ntlm:\n    enabled: true\n    domain: example.test\n    helper: /nonexistent/ntlm_auth\n    max_helpers: 1000\n    smb_conf: missing.conf\n", 1))
	_, err = Load(path)
	assertProblems(t, path, err, []string{
		strconv.Itoa(line+3) + `: authnode.ntlm.domain: "EXAMPLE.TEST" is not a NetBIOS domain name (1 to 15 characters, no dot)`,
		strconv.Itoa(line+4) + ": authnode.ntlm.helper: /nonexistent/ntlm_auth: ",
		strconv.Itoa(line+5) + ": authnode.ntlm.max_helpers: 1000 is more helper processes than a node needs (at most 64)",
		strconv.Itoa(line+6) + ": authnode.ntlm.smb_conf: ",
	})

	if !strings.Contains(err.Error(), "(install Debian's winbind package, which has ntlm_auth)") {
		t.Errorf("a missing helper: %v; want the package to install", err)
	}

	path = writeConfig(t, dir, strings.Replace(base, at, at+"  ntlm:\n    helper: /usr/bin/ntlm_auth\n", 1))
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if w := f.Warnings(); w == nil || !strings.Contains(w.Error(), strconv.Itoa(line+1)+": warning: authnode.ntlm: ignored: NTLM is not enabled") {
		t.Errorf("warnings %v; want the ignored ntlm section at line %d", w, line+1)
	}
}

// TestNegotiateNames: the names a browser asks a ticket for are the L4
// names routed to a pool (a wildcard as it is) and the redirect targets of
// the L7 front door, not the front door's own name, which takes no ticket;
// each says what serves it and the node FQDNs it reaches.
func TestNegotiateNames(t *testing.T) {
	f, err := Load(writeConfig(t, l7Fixture(t), editL7(map[int]string{38: `        - server_names: [lb.example.test, "*.apps.example.test"]`}, "")))
	if err != nil {
		t.Fatal(err)
	}
	got := f.NegotiateNames()
	nodes := []string{"auth1.example.test", "auth2.example.test"}
	want := []NegotiateName{
		{"lb.example.test", "l4 listener public, route to pool authnodes", nodes},
		{"*.apps.example.test", "l4 listener public, route to pool authnodes", nodes},
		{"auth1.example.test", "l7redirect sso, a redirect target of pool authnodes", nodes[:1]},
		{"auth2.example.test", "l7redirect sso, a redirect target of pool authnodes", nodes[1:]},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NegotiateNames() = %v\nwant %v", got, want)
	}
	node, err := Load(writeConfig(t, fixture(t), base))
	if err != nil {
		t.Fatal(err)
	}
	if got := node.NegotiateNames(); len(got) != 1 || got[0].Via != "authnode.fqdn" || !slices.Equal(got[0].Backends, []string{got[0].Name}) {
		t.Errorf("an auth node's file: %v; want its fqdn, reaching itself", got)
	}
}
