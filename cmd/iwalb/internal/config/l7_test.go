package config

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/testpki"
	"github.com/iwalb/iwalb/l4"
	"github.com/iwalb/iwalb/l7redirect"
	"github.com/iwalb/iwalb/lb"
)

// l7Base is a valid file with pools, an L7 front door and an L4 listener
// that routes one name to the front door and another to a pool. Cases edit
// it line by line, as with base.
const l7Base = `pools:
  - name: authnodes
    backends:
      - {name: auth1, addr: "127.0.0.1:8443", fqdn: auth1.example.test}
      - {name: auth2, addr: "127.0.0.1:8445", fqdn: auth2.example.test}
  - name: bare
    backends:
      - {name: b1, addr: "10.0.0.1:443"}
l7redirect:
  listeners:
    - name: sso
      listen: 127.0.0.1:8446
      certificates:
        - {cert: tls/sso.pem, key: tls/sso.key}
      http_redirect_listen: 127.0.0.1:8080
      names: [sso.example.test]
      proxy_protocol: {enabled: true, trusted: [127.0.0.1]}
      sticky_cookie: iwalb_node
      cookie_ttl: 1h
      retry_after: 10s
      rules:
        - host: sso.example.test
          path_prefix: /app
          pool: authnodes
          rewrite_prefix: /sso
          port: 443
        - host: sso.example.test
          path_prefix: /
          pool: authnodes
      default_rule: {pool: authnodes}
l4:
  listeners:
    - name: public
      listen: 127.0.0.1:443
      routes:
        - server_names: [sso.example.test]
          l7redirect: sso
        - server_names: [lb.example.test]
          pool: authnodes
`

func editL7(lines map[int]string, extra string) string {
	ls := strings.Split(l7Base, "\n")
	for n, s := range lines {
		ls[n-1] = s
	}
	return strings.Join(ls, "\n") + extra
}

// l7Fixture is fixture plus the front door's certificates.
func l7Fixture(t *testing.T) string {
	t.Helper()
	dir := fixture(t)
	ca := testpki.NewCA(t, "ca.example.test")
	ca.Issue(t, "sso.example.test").WriteFiles(t, dir, "tls/sso.pem", "tls/sso.key")
	ca.Issue(t, "*.example.test").WriteFiles(t, dir, "tls/wild.pem", "tls/wild.key")
	now := time.Now()
	ca.IssueValid(t, now.Add(-48*time.Hour), now.Add(-time.Hour), "sso.example.test").WriteFiles(t, dir, "tls/sso-expired.pem", "tls/sso-expired.key")
	return dir
}

func TestLoadL7Redirect(t *testing.T) {
	dir := l7Fixture(t)
	f, err := Load(writeConfig(t, dir, l7Base))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	set, err := f.Pools(lb.NewRegistry(), lb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	doors, err := f.L7Redirect(set)
	if err != nil || len(doors) != 1 {
		t.Fatalf("L7Redirect() = %d listeners, %v; want 1", len(doors), err)
	}
	d := doors[0]
	auth := set.Pool("authnodes")
	checks := []struct {
		name      string
		got, want any
	}{
		{"name", d.Name, "sso"},
		{"listen", d.Listen, "127.0.0.1:8446"},
		{"http_redirect_listen", d.HTTPRedirectListen, "127.0.0.1:8080"},
		{"https port from listen", d.HTTPSPort, 8446},
		{"names", d.Names, []string{"sso.example.test"}},
		{"certificates", len(d.TLS.Certificates), 1},
		{"certificate", d.TLS.Certificates[0].Leaf.DNSNames, []string{"sso.example.test"}},
		{"proxy protocol", d.ProxyProtocol, true},
		{"trusted", d.ProxyTrusted, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
		{"config name", d.Config.Name, "sso"},
		{"sticky cookie", d.Config.StickyCookie, "iwalb_node"},
		{"cookie ttl", d.Config.CookieTTL, time.Hour},
		{"retry after", d.Config.RetryAfter, 10 * time.Second},
		{"rules", d.Config.Rules, []l7redirect.Rule{
			{Host: "sso.example.test", PathPrefix: "/app", Pool: auth, RewritePrefix: "/sso", Port: 443},
			{Host: "sso.example.test", PathPrefix: "/", Pool: auth},
		}},
		{"default", d.Config.Default, &l7redirect.Rule{Pool: auth}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if _, err := l7redirect.New(d.Config, l7redirect.Options{}); err != nil {
		t.Errorf("l7redirect.New refuses the loaded config: %v", err)
	}

	// The L4 listener hands sso.example.test to the front door's handler
	// and relays lb.example.test to the pool.
	handler := l4.NewHandoffListener(nil)
	ls, err := f.L4(set, map[string]l4.ConnHandler{"sso": handler})
	if err != nil || len(ls) != 1 {
		t.Fatalf("L4() = %d listeners, %v; want 1", len(ls), err)
	}
	r := ls[0].Config.Router
	if rt := r.Match("sso.example.test"); rt == nil || rt.Handler != handler || rt.Pool != nil || rt.Name != "l7redirect/sso" {
		t.Errorf("sso.example.test routes to %+v, want the front door's handler", rt)
	}
	if rt := r.Match("lb.example.test"); rt == nil || rt.Pool != auth || rt.Handler != nil {
		t.Errorf("lb.example.test routes to %+v, want pool authnodes", rt)
	}
	if _, err := f.L4(set, nil); err == nil || !strings.Contains(err.Error(), `no L7 front door "sso"`) {
		t.Errorf("L4 without the front door's handler = %v, want an error naming it", err)
	}

	// Immutable: changing what L7Redirect returned changes nothing.
	d.Names[0], d.ProxyTrusted[0] = "changed", netip.Prefix{}
	d.TLS.Certificates = nil
	again, _ := f.L7Redirect(set)
	if again[0].Names[0] != "sso.example.test" || !again[0].ProxyTrusted[0].IsValid() || len(again[0].TLS.Certificates) != 1 {
		t.Error("L7Redirect() returned values shared with the File")
	}
}

// TestLoadL7OnlyBehindL4: a front door without its own listen address is
// reached through the L4 listener, and its 301 sends browsers to that
// listener's port. Defaults apply.
func TestLoadL7OnlyBehindL4(t *testing.T) {
	dir := l7Fixture(t)
	text := editL7(map[int]string{
		12: "#", 15: "      http_redirect_listen: 127.0.0.1:8080", 17: "#", 18: "#", 19: "#", 20: "#",
		34: "      listen: 127.0.0.1:9443",
	}, "")
	f, err := Load(writeConfig(t, dir, text))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	set, _ := f.Pools(lb.NewRegistry(), lb.Options{})
	doors, err := f.L7Redirect(set)
	if err != nil {
		t.Fatal(err)
	}
	d := doors[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", d.Listen, ""},
		{"https port from the l4 listener", d.HTTPSPort, 9443},
		{"no proxy protocol", d.ProxyProtocol, false},
		{"no sticky cookie", d.Config.StickyCookie, ""},
		{"retry after default", d.Config.RetryAfter, 5 * time.Second},
		{"cookie ttl default", d.Config.CookieTTL, time.Duration(0)},
		{"max_request_target default", d.Config.MaxRequestTarget, 8192},
		{"hsts_max_age default: a year", d.Config.HSTSMaxAge, 8760 * time.Hour},
		{"hsts_include_subdomains default", d.Config.HSTSIncludeSubdomains, false},
		{"max_conns default", d.MaxConns, 10000},
		{"max_conns_per_source default", d.MaxConnsPerSource, 256},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestLoadL7Limits: the keys that bound a client's cost, and HSTS, reach
// the front door's configuration; 0 turns HSTS and the per-source cap off.
func TestLoadL7Limits(t *testing.T) {
	dir := l7Fixture(t)
	for _, tt := range []struct {
		name, keys               string
		target, conns, perSource int
		hsts                     time.Duration
		subdomains               bool
	}{
		{
			name:   "set",
			keys:   "      max_request_target: 16384\n      hsts_max_age: 720h\n      hsts_include_subdomains: true\n      max_conns: 500\n      max_conns_per_source: 20",
			target: 16384, hsts: 720 * time.Hour, subdomains: true, conns: 500, perSource: 20,
		},
		{
			name:   "off",
			keys:   "      hsts_max_age: 0s\n      max_conns_per_source: 0",
			target: 8192, hsts: -1, conns: 10000, perSource: -1,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Load(writeConfig(t, dir, editL7(map[int]string{20: "      retry_after: 10s\n" + tt.keys}, "")))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			set, _ := f.Pools(lb.NewRegistry(), lb.Options{})
			doors, err := f.L7Redirect(set)
			if err != nil {
				t.Fatal(err)
			}
			d := doors[0]
			if d.Config.MaxRequestTarget != tt.target || d.Config.HSTSMaxAge != tt.hsts || d.Config.HSTSIncludeSubdomains != tt.subdomains ||
				d.MaxConns != tt.conns || d.MaxConnsPerSource != tt.perSource {
				t.Errorf("max_request_target %d, hsts %v %v, max_conns %d, max_conns_per_source %d; want %d, %v %v, %d, %d",
					d.Config.MaxRequestTarget, d.Config.HSTSMaxAge, d.Config.HSTSIncludeSubdomains, d.MaxConns, d.MaxConnsPerSource,
					tt.target, tt.hsts, tt.subdomains, tt.conns, tt.perSource)
			}
			if _, err := l7redirect.New(d.Config, l7redirect.Options{}); err != nil {
				t.Errorf("l7redirect.New refuses the loaded config: %v", err)
			}
		})
	}
}

// TestLoadL7Only: a file with only pools and a front door runs.
func TestLoadL7Only(t *testing.T) {
	dir := l7Fixture(t)
	text := l7Base[:strings.Index(l7Base, "l4:\n")]
	if _, err := Load(writeConfig(t, dir, text)); err != nil {
		t.Fatalf("Load: %v", err)
	}
}

func TestLoadL7Problems(t *testing.T) {
	dir := l7Fixture(t)
	abs := func(p string) string { return filepath.Join(dir, p) }
	tests := []struct {
		name  string
		lines map[int]string
		extra string
		want  []string // "LINE: reason" substrings, one per expected problem
	}{
		{
			name:  "unknown keys in a listener, a certificate and a rule",
			lines: map[int]string{14: "        - {cert: tls/sso.pem, key: tls/sso.key, chain: x}", 17: "      proxy: {enabled: false}", 26: "          prot: 443"},
			want: []string{
				`14: unknown key "chain" in l7redirect.listeners[0].certificates[0]; known keys: cert, key`,
				`17: unknown key "proxy" in l7redirect.listeners[0]; known keys: name, listen, certificates, tls, names, http_redirect_listen, https_port, proxy_protocol, sticky_cookie, cookie_ttl, retry_after, max_request_target, hsts_max_age, hsts_include_subdomains, max_conns, max_conns_per_source, rules, default_rule`,
				`26: unknown key "prot" in l7redirect.listeners[0].rules[0]; known keys: name, host, path_prefix, pool, rewrite_prefix, port`,
			},
		},
		{
			name:  "a rule naming an unknown pool",
			lines: map[int]string{24: "          pool: authnode"},
			want:  []string{`24: l7redirect.listeners[0].rules[0].pool: no pool named "authnode" under pools (defined: authnodes, bare)`},
		},
		{
			name:  "a rule's pool whose backend has no name to redirect to",
			lines: map[int]string{29: "          pool: bare"},
			want: []string{
				`29: l7redirect.listeners[0].rules[1].pool: backend "b1" of pool "bare" has no fqdn (its address 10.0.0.1:443 is an IP); a redirect sends the browser to the node's own name, so set fqdn`,
			},
		},
		{
			name:  "a rule without a pool",
			lines: map[int]string{29: "#"},
			want:  []string{`27: missing required key "pool" in l7redirect.listeners[0].rules[1]`},
		},
		{
			name:  "an unreadable certificate and a missing key",
			lines: map[int]string{14: "        - {cert: tls/none.pem, key: tls/sso.key}\n        - {cert: tls/sso.pem}"},
			want: []string{
				`14: l7redirect.listeners[0].certificates[0].cert: cannot read "tls/none.pem" (` + abs("tls/none.pem") + `): no such file or directory`,
				`15: missing required key "key" in l7redirect.listeners[0].certificates[1]`,
			},
		},
		{
			name:  "a certificate with another certificate's key",
			lines: map[int]string{14: "        - {cert: tls/sso.pem, key: tls/other.key}"},
			want: []string{
				`14: l7redirect.listeners[0].certificates[0]: cert "tls/sso.pem" (` + abs("tls/sso.pem") + `) and key "tls/other.key" (` + abs("tls/other.key") +
					`) do not load as a pair: tls: private key does not match public key`,
			},
		},
		{
			name:  "a certificate that names none of the names",
			lines: map[int]string{14: "        - {cert: tls/other.pem, key: tls/other.key}"},
			want: []string{
				`14: l7redirect.listeners[0].certificates[0].cert: the certificate names none of the listener's names (sso.example.test); it names other.example.test`,
				`16: l7redirect.listeners[0].names: no certificate names sso.example.test, so browsers would refuse the front door under it`,
			},
		},
		{
			name:  "a name no certificate covers, next to one that is",
			lines: map[int]string{16: "      names: [sso.example.test, login.example.test]"},
			want:  []string{`16: l7redirect.listeners[0].names: no certificate names login.example.test`},
		},
		{
			name:  "a wildcard certificate covers names under it and a wildcard name",
			lines: map[int]string{14: "        - {cert: tls/wild.pem, key: tls/wild.key}", 16: `      names: [sso.example.test, "*.example.test"]`},
		},
		{
			name:  "an expired certificate",
			lines: map[int]string{14: "        - {cert: tls/sso-expired.pem, key: tls/sso-expired.key}"},
			want:  []string{`14: l7redirect.listeners[0].certificates[0].cert: the certificate expired on`},
		},
		{
			name:  "no certificates and no names",
			lines: map[int]string{13: "      certificates: []", 14: "#", 16: "#"},
			want: []string{
				`11: l7redirect.listeners[0]: at least one certificate is required under certificates`,
				`11: missing required key "names" in l7redirect.listeners[0]`,
			},
		},
		{
			name:  "bad names",
			lines: map[int]string{16: `      names: [sso.example.test, "sso example.test", "*sso.example.test", sso.example.test]`},
			want: []string{
				`16: l7redirect.listeners[0].names: "sso example.test" is not a host name`,
				`16: l7redirect.listeners[0].names: "*sso.example.test" is not a wildcard of the form *.<domain>`,
				`16: l7redirect.listeners[0].names: "sso.example.test" is already listed at line 16`,
			},
		},
		{
			name: "bad rule hosts and path prefixes",
			lines: map[int]string{
				22: `        - host: "sso example.test"`, 23: "          path_prefix: app",
				27: "        - host: login.example.test", 28: "          path_prefix: //evil.example",
			},
			want: []string{
				`22: l7redirect.listeners[0].rules[0].host: "sso example.test" is not a host name`,
				`23: l7redirect.listeners[0].rules[0].path_prefix: "app" must start with "/"`,
				`27: l7redirect.listeners[0].rules[1].host: "login.example.test" is none of the listener's names (sso.example.test), so no certificate here covers it`,
				`28: l7redirect.listeners[0].rules[1].path_prefix: "//evil.example" must not start with "//" or "/\" (browsers read that as a host)`,
			},
		},
		{
			name: "path prefixes that could never match",
			lines: map[int]string{
				23: "          path_prefix: /a/../b", 25: "          rewrite_prefix: /sso?x=1",
				28: "          path_prefix: /a b",
			},
			want: []string{
				`23: l7redirect.listeners[0].rules[0].path_prefix: "/a/../b" must not contain . or .. segments`,
				`25: l7redirect.listeners[0].rules[0].rewrite_prefix: "/sso?x=1" must be a path without query or fragment`,
				`28: l7redirect.listeners[0].rules[1].path_prefix: "/a b" must be written escaped, as "/a%20b"`,
			},
		},
		{
			name:  "a rewrite without a prefix to replace, and a port out of range",
			lines: map[int]string{23: "          path_prefix: /", 26: "          port: 70000"},
			want: []string{
				`25: l7redirect.listeners[0].rules[0].rewrite_prefix: needs a path_prefix other than / to replace`,
				`26: l7redirect.listeners[0].rules[0].port: 70000 is not a port`,
			},
		},
		{
			name:  "two rules for the same host and prefix, whatever the trailing slash and case",
			lines: map[int]string{27: "        - host: SSO.example.test", 28: "          path_prefix: /app/"},
			want:  []string{`27: l7redirect.listeners[0].rules[1]: another rule (line 22) has the same host "SSO.example.test" and path_prefix "/app/"`},
		},
		{
			name:  "a default rule with a host; no rules at all",
			lines: map[int]string{21: "      rules: []", 22: "#", 23: "#", 24: "#", 25: "#", 26: "#", 27: "#", 28: "#", 29: "#", 30: "      default_rule: {pool: authnodes, host: sso.example.test}"},
			want:  []string{`30: l7redirect.listeners[0].default_rule.host: the default rule takes every request no rule matches, whatever its host; remove host`},
		},
		{
			name:  "no rules and no default rule",
			lines: map[int]string{21: "      rules: []", 22: "#", 23: "#", 24: "#", 25: "#", 26: "#", 27: "#", 28: "#", 29: "#", 30: "#"},
			want:  []string{`11: l7redirect.listeners[0]: redirects nothing; add rules or a default_rule`},
		},
		{
			name:  "sticky cookie, cookie_ttl and retry_after",
			lines: map[int]string{18: `      sticky_cookie: "iwalb node"`, 19: "      cookie_ttl: -1s", 20: "      retry_after: 0s"},
			want: []string{
				`18: l7redirect.listeners[0].sticky_cookie: "iwalb node" is not a valid cookie name`,
				`19: l7redirect.listeners[0].cookie_ttl: must not be negative, got -1s (0 is a session cookie)`,
				`20: l7redirect.listeners[0].retry_after: must be more than zero, got 0s`,
			},
		},
		{
			name:  "limits out of range",
			lines: map[int]string{20: "      retry_after: 10s\n      max_request_target: 100\n      hsts_max_age: -1s\n      max_conns: 0\n      max_conns_per_source: -1"},
			want: []string{
				`21: l7redirect.listeners[0].max_request_target: 100 is out of range; use 1024 to 65536 bytes`,
				`22: l7redirect.listeners[0].hsts_max_age: must not be negative, got -1s (0 sends no Strict-Transport-Security)`,
				`23: l7redirect.listeners[0].max_conns: must be a positive number, got 0`,
				`24: l7redirect.listeners[0].max_conns_per_source: must not be negative, got -1 (0: no per-source limit)`,
			},
		},
		{
			name:  "a request-target bound beyond what the HTTP server reads; includeSubDomains without HSTS",
			lines: map[int]string{20: "      retry_after: 10s\n      max_request_target: 131072\n      hsts_max_age: 0s\n      hsts_include_subdomains: true"},
			want: []string{
				`21: l7redirect.listeners[0].max_request_target: 131072 is out of range; use 1024 to 65536 bytes`,
				`23: l7redirect.listeners[0].hsts_include_subdomains: applies only with hsts_max_age above 0`,
			},
		},
		{
			name:  "cookie_ttl without a sticky cookie",
			lines: map[int]string{18: "#"},
			want:  []string{`19: l7redirect.listeners[0].cookie_ttl: applies only with sticky_cookie`},
		},
		{
			name:  "proxy protocol enabled without trusted addresses",
			lines: map[int]string{17: "      proxy_protocol: {enabled: true}"},
			want:  []string{`17: l7redirect.listeners[0].proxy_protocol: enabled with no trusted addresses`},
		},
		{
			name:  "addresses: bad, taken by the L4 listener, used twice",
			lines: map[int]string{12: "      listen: 127.0.0.1:443", 15: "      http_redirect_listen: 127.0.0.1:443", 16: "      names: [sso.example.test]\n      https_port: 0"},
			want: []string{
				`12: l7redirect.listeners[0].listen: 127.0.0.1:443 is already the address of the listener at line 35`,
				`15: l7redirect.listeners[0].http_redirect_listen: 127.0.0.1:443 is already the address of the listener at line 12`,
				`17: l7redirect.listeners[0].https_port: 0 is not a port from 1 to 65535`,
			},
		},
		{
			name:  "no listen address and no l4 route leading here",
			lines: map[int]string{12: "#", 17: "#", 37: "          pool: authnodes"},
			want:  []string{`11: l7redirect.listeners[0]: no listen address and no l4 route with l7redirect: sso, so nothing reaches it`},
		},
		{
			name:  "duplicate listener names",
			extra: "",
			lines: map[int]string{30: "      default_rule: {pool: authnodes}\n    - name: sso\n      listen: 127.0.0.1:8447\n      certificates: [{cert: tls/sso.pem, key: tls/sso.key}]\n      names: [sso.example.test]\n      default_rule: {pool: authnodes}"},
			want:  []string{`31: l7redirect.listeners[1].name: duplicate listener name "sso" (first at line 11)`},
		},
		{
			name:  "an l4 route naming an unknown front door",
			lines: map[int]string{37: "          l7redirect: ssoo"},
			want:  []string{`37: l4.listeners[0].routes[0].l7redirect: no listener named "ssoo" under l7redirect.listeners (defined: sso)`},
		},
		{
			name:  "an l4 route with both a pool and a front door, and a PROXY version",
			lines: map[int]string{37: "          l7redirect: sso\n          pool: authnodes\n          proxy_protocol: v2"},
			want: []string{
				`38: l4.listeners[0].routes[0]: give pool or l7redirect, not both`,
				`39: l4.listeners[0].routes[0].proxy_protocol: applies to routes to a pool only; the L7 front door takes the connection itself`,
			},
		},
		{
			name:  "an l4 route to the front door for a name that is not the door's",
			lines: map[int]string{36: "        - server_names: [sso.example.test, login.example.test]"},
			want:  []string{`36: l4.listeners[0].routes[0].server_names: "login.example.test" is none of the names of l7redirect listener "sso" (sso.example.test), so its certificates do not cover it`},
		},
		{
			name:  "l7redirect without listeners",
			lines: map[int]string{10: "  listeners: []", 11: "#", 12: "#", 13: "#", 14: "#", 15: "#", 16: "#", 17: "#", 18: "#", 19: "#", 20: "#", 21: "#", 22: "#", 23: "#", 24: "#", 25: "#", 26: "#", 27: "#", 28: "#", 29: "#", 30: "#"},
			want: []string{
				`9: l7redirect.listeners: at least one listener is required`,
				`37: l4.listeners[0].routes[0].l7redirect: no listener named "sso" under l7redirect.listeners (there are none)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, dir, editL7(tt.lines, tt.extra))
			_, err := Load(path)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			assertProblems(t, path, err, tt.want)
		})
	}
}
