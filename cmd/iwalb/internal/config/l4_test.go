package config

import (
	"context"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/configtest"
	"github.com/iwalb/iwalb/internal/testpki"
	"github.com/iwalb/iwalb/lb"
)

// l4Base is a valid file with pools and an L4 listener and no auth node.
// Cases edit it line by line, as with base.
const l4Base = `pools:
  - name: authnodes
    policy: client_ip_hash
    backends:
      - name: auth1
        addr: 127.0.0.1:8443
        fqdn: auth1.example.test
      - name: auth2
        addr: 127.0.0.1:8445
        fqdn: auth2.example.test
        weight: 2
        max_conns: 100
    health:
      check: https
      path: /readyz
      ca_file: tls/ca.pem
      interval: 3s
      timeout: 1500ms
      rise: 4
      fall: 5
  - name: spare
    backends:
      - {name: spare1, addr: "[2001:db8::9]:443"}
l4:
  listeners:
    - name: public
      listen: 127.0.0.1:443
      trusted_proxies: [10.0.0.0/8]
      routes:
        - server_names: [lb.example.test, "*.Example.test"]
          pool: authnodes
          proxy_protocol: v2
      default_pool: authnodes
      default_proxy_protocol: v2
`

func editL4(lines map[int]string, extra string) string {
	ls := strings.Split(l4Base, "\n")
	for n, s := range lines {
		ls[n-1] = s
	}
	return strings.Join(ls, "\n") + extra
}

func TestLoadPoolsAndL4(t *testing.T) {
	dir := fixture(t)
	path := writeConfig(t, dir, editL4(nil, `    - name: internal
      listen: :8443
      peek_timeout: 2s
      max_hello_bytes: 32768
      max_hello_records: 2
      dial_timeout: 1s
      dial_attempts: 1
      idle_timeout: 1h
      max_conns: 500
      max_conns_per_source: 64
      default_pool: spare
`))
	f, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if _, ok := f.AuthNode(); ok {
		t.Error("AuthNode() = true for a file without an authnode section")
	}

	pools := f.PoolConfigs()
	if len(pools) != 2 {
		t.Fatalf("PoolConfigs() has %d pools, want 2", len(pools))
	}
	auth, spare := pools[0], pools[1]
	checks := []struct {
		name      string
		got, want any
	}{
		{"pool name", auth.Name, "authnodes"},
		{"policy", auth.Policy, lb.PolicyClientIPHash},
		{"backends", auth.Backends, []lb.BackendConfig{
			{Name: "auth1", Addr: "127.0.0.1:8443", FQDN: "auth1.example.test", Weight: 1},
			{Name: "auth2", Addr: "127.0.0.1:8445", FQDN: "auth2.example.test", Weight: 2, MaxConns: 100},
		}},
		{"interval", auth.Health.Interval, 3 * time.Second},
		{"timeout", auth.Health.Timeout, 1500 * time.Millisecond},
		{"rise", auth.Health.Rise, 4},
		{"fall", auth.Health.Fall, 5},
		{"probe set", auth.Health.Probe != nil, true},
		{"check", f.pools[0].Check, "https"},
		{"path", f.pools[0].Path, "/readyz"},
		{"expect_status default", f.pools[0].ExpectStatus, 200},
		{"ca_file absolute", f.pools[0].CAFile, filepath.Join(dir, "tls/ca.pem")},
		// A pool without a health section: round-robin, passive marking
		// only (no interval), nothing else set.
		{"default policy", spare.Policy, lb.PolicyRoundRobin},
		{"no active checks", spare.Health, lb.HealthCheck{}},
		{"IPv6 backend", spare.Backends[0].Addr, "[2001:db8::9]:443"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	set, err := f.Pools(lb.NewRegistry(), lb.Options{})
	if err != nil {
		t.Fatalf("Pools: %v", err)
	}
	ls, err := f.L4(set, nil)
	if err != nil {
		t.Fatalf("L4: %v", err)
	}
	if len(ls) != 2 {
		t.Fatalf("L4() has %d listeners, want 2", len(ls))
	}
	pub, internal := ls[0], ls[1]
	checks = []struct {
		name      string
		got, want any
	}{
		{"listen", pub.Listen, "127.0.0.1:443"},
		{"name", pub.Config.Name, "public"},
		{"trusted proxies", pub.Config.TrustedProxies, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		// Defaults, as documented in configs/l4.yaml.
		{"peek_timeout default", pub.Config.PeekTimeout, 5 * time.Second},
		{"max_hello_bytes default", pub.Config.MaxHelloSize, 16384},
		{"dial_timeout default", pub.Config.DialTimeout, 5 * time.Second},
		{"dial_attempts default", pub.Config.DialAttempts, 3},
		{"idle_timeout default", pub.Config.IdleTimeout, 10 * time.Minute},
		{"max_conns default", pub.Config.MaxConns, 10000},
		{"max_conns_per_source default (no limit)", pub.Config.MaxConnsPerSource, 0},
		{"max_hello_records default", pub.Config.MaxHelloRecords, 8},
		{"listen (all addresses)", internal.Listen, ":8443"},
		{"peek_timeout", internal.Config.PeekTimeout, 2 * time.Second},
		{"max_hello_bytes", internal.Config.MaxHelloSize, 32768},
		{"dial_timeout", internal.Config.DialTimeout, time.Second},
		{"dial_attempts", internal.Config.DialAttempts, 1},
		{"idle_timeout", internal.Config.IdleTimeout, time.Hour},
		{"max_conns", internal.Config.MaxConns, 500},
		{"max_conns_per_source", internal.Config.MaxConnsPerSource, 64},
		{"max_hello_records", internal.Config.MaxHelloRecords, 2},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// The routers lead to the pools of the set, with the PROXY version.
	routes := []struct {
		listener   int
		serverName string
		pool       string // "" for no route
		proxy      int
	}{
		{0, "lb.example.test", "authnodes", 2},
		{0, "auth1.example.test", "authnodes", 2}, // the wildcard, written with capitals
		{0, "a.b.example.test", "authnodes", 2},   // one label only: the default
		{0, "", "authnodes", 2},                   // no SNI: the default
		{1, "lb.example.test", "spare", 0},
	}
	for _, r := range routes {
		rt := ls[r.listener].Config.Router.Match(r.serverName)
		switch {
		case rt == nil:
			t.Errorf("listener %d: no route for %q", r.listener, r.serverName)
		case rt.Pool != set.Pool(r.pool) || rt.ProxyProtocol != r.proxy || rt.Name != r.pool:
			t.Errorf("listener %d: %q routes to pool %s (route %q) with PROXY v%d, want %s with v%d",
				r.listener, r.serverName, rt.Pool.Name(), rt.Name, rt.ProxyProtocol, r.pool, r.proxy)
		}
	}

	// The File is immutable.
	pools[0].Backends[0].Addr = "changed"
	pub.Config.TrustedProxies[0] = netip.Prefix{}
	again, _ := f.L4(set, nil)
	if f.PoolConfigs()[0].Backends[0].Addr != "127.0.0.1:8443" || !again[0].Config.TrustedProxies[0].IsValid() {
		t.Error("PoolConfigs() or L4() returned slices shared with the File")
	}
}

// TestLoadAuthNodeAndL4 loads one file that runs an auth node and an L4
// door in front of it: both sections build.
func TestLoadAuthNodeAndL4(t *testing.T) {
	dir := fixture(t)
	path := writeConfig(t, dir, edit(nil, l4Base))
	f, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if _, ok := f.AuthNode(); !ok {
		t.Error("AuthNode() = false")
	}
	set, err := f.Pools(lb.NewRegistry(), lb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ls, err := f.L4(set, nil); err != nil || len(ls) != 1 {
		t.Errorf("L4() = %d listeners, %v; want 1", len(ls), err)
	}
}

// TestHealthProbeFromConfig runs the probe the https check builds against a
// real TLS server, so path, expect_status and ca_file are shown to reach it.
func TestHealthProbeFromConfig(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point of some cases
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	configtest.WriteFile(t, dir, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	testpki.NewCA(t, "ca.example.test").WriteFiles(t, dir, "other-ca.pem", "")
	addr := srv.Listener.Addr().String()

	tests := []struct {
		name    string
		health  string
		wantErr string // "" for a healthy backend
	}{
		{"tcp", "{check: tcp}", ""},
		{"tls with the CA", "{check: tls, ca_file: ca.pem}", ""},
		{"tls with another CA", "{check: tls, ca_file: other-ca.pem}", "certificate signed by unknown authority"},
		{"https default path and status", "{check: https, ca_file: ca.pem}", ""},
		{"https wrong path", "{check: https, ca_file: ca.pem, path: /healthz}", "GET /healthz: status 404, want 200"},
		{"https other status", "{check: https, ca_file: ca.pem, expect_status: 204}", "GET /readyz: status 200, want 204"},
		{"https with system roots", "{check: https}", "certificate signed by unknown authority"},
		{"timeout at most the interval by default", "{check: tcp, interval: 300ms}", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := "pools:\n  - name: p\n    backends: [{name: b, addr: \"" + addr + "\"}]\n    health: " + tt.health +
				"\nl4:\n  listeners: [{name: l, listen: \"127.0.0.1:443\", default_pool: p}]\n"
			f, err := Load(configtest.WriteFile(t, dir, "iwalb.yaml", []byte(text)))
			if err != nil {
				t.Fatal(err)
			}
			pool, err := lb.NewPool(f.PoolConfigs()[0], lb.Options{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if h := f.PoolConfigs()[0].Health; h.Timeout > h.Interval {
				t.Errorf("health timeout %s is longer than the interval %s", h.Timeout, h.Interval)
			}
			err = pool.CheckNow(ctx, pool.Backends()[0])
			if got := errString(err); tt.wantErr == "" && err != nil || !strings.Contains(got, tt.wantErr) {
				t.Errorf("check = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestLoadPoolsAndL4Problems(t *testing.T) {
	dir := fixture(t)
	abs := func(p string) string { return filepath.Join(dir, p) }
	tests := []struct {
		name  string
		lines map[int]string
		extra string
		want  []string // "LINE: reason" substrings, one per expected problem
	}{
		{
			name:  "unknown keys in a backend, a health section and a listener",
			lines: map[int]string{7: "        fqnd: auth1.example.test", 18: "      timeuot: 1s", 28: "      trusted: [10.0.0.0/8]"},
			want: []string{
				`7: unknown key "fqnd" in pools[0].backends[0]; known keys: name, addr, fqdn, weight, max_conns`,
				`18: unknown key "timeuot" in pools[0].health; known keys: check, path, expect_status, ca_file, interval, timeout, rise, fall`,
				`28: unknown key "trusted" in l4.listeners[0]; known keys: name, listen, peek_timeout, max_hello_bytes, max_hello_records, dial_timeout, dial_attempts, idle_timeout, max_conns, max_conns_per_source, trusted_proxies, routes, default_pool, default_proxy_protocol`,
			},
		},
		{
			name:  "duplicate pool name",
			lines: map[int]string{21: "  - name: authnodes"},
			want:  []string{`21: pools[1].name: duplicate pool name "authnodes" (first at line 2)`},
		},
		{
			name:  "duplicate backend name",
			lines: map[int]string{8: "      - name: auth1"},
			want:  []string{`8: pools[0].backends[1].name: duplicate backend name "auth1" in the pool (first at line 5)`},
		},
		{
			name:  "names that cannot be metric labels",
			lines: map[int]string{2: `  - name: "auth nodes"`, 5: "      - name: auth/1", 26: "    - name: -public"},
			want: []string{
				`2: pools[0].name: "auth nodes" is not a plain name`,
				`5: pools[0].backends[0].name: "auth/1" is not a plain name`,
				`26: l4.listeners[0].name: "-public" is not a plain name`,
				// The pool's name was refused, so the routes' references fail too.
				`31: l4.listeners[0].routes[0].pool: no pool named "authnodes" under pools (defined: spare)`,
				`33: l4.listeners[0].default_pool: no pool named "authnodes" under pools (defined: spare)`,
			},
		},
		{
			name:  "a pool with no backends",
			lines: map[int]string{22: "    backends: []", 23: "#"},
			want:  []string{`21: pools[1]: a pool needs at least one backend under backends`},
		},
		{
			name:  "a pool with no backends key, and a backend with no name or addr",
			lines: map[int]string{22: "    policy: least_conn", 23: "#", 8: "      - fqdn: auth2.example.test", 9: "#", 10: "#"},
			want: []string{
				`21: pools[1]: a pool needs at least one backend under backends`,
				`8: missing required key "name" in pools[0].backends[1]`,
				`8: missing required key "addr" in pools[0].backends[1]`,
			},
		},
		{
			name:  "unknown policy and check",
			lines: map[int]string{3: "    policy: random", 14: "      check: icmp"},
			want: []string{
				`3: pools[0].policy: unknown policy "random"; use round_robin, least_conn or client_ip_hash`,
				`14: pools[0].health.check: unknown check "icmp"; use tcp, tls or https`,
			},
		},
		{
			name: "bad addresses",
			lines: map[int]string{
				6: "        addr: 127.0.0.1", 9: "        addr: :8445", 23: "      - {name: spare1, addr: spare.example.test:https}",
				27: "      listen: 127.0.0.1:99999",
			},
			want: []string{
				`6: pools[0].backends[0].addr: "127.0.0.1" is not host:port (like 127.0.0.1:8443 or :8443)`,
				`9: pools[0].backends[1].addr: ":8445" has no host; name the backend (like 10.0.0.11:8443)`,
				`23: pools[1].backends[0].addr: port "https" in "spare.example.test:https" is not a number from 1 to 65535`,
				`27: l4.listeners[0].listen: port "99999" in "127.0.0.1:99999" is not a number from 1 to 65535`,
			},
		},
		{
			name:  "bad CIDRs",
			lines: map[int]string{28: "      trusted_proxies:\n        - 10.0.0.0/40\n        - lb1.example.test"},
			want: []string{
				`29: l4.listeners[0].trusted_proxies: "10.0.0.0/40" is not an address or CIDR (like 10.0.0.0/24 or 10.0.0.5)`,
				`30: l4.listeners[0].trusted_proxies: "lb1.example.test" is not an address or CIDR`,
			},
		},
		{
			name:  "bad durations",
			lines: map[int]string{17: "      interval: 2", 18: "      timeout: 0s", 28: "      peek_timeout: 5 s\n      idle_timeout: -1m"},
			want: []string{
				`17: pools[0].health.interval: "2" is not a duration; write it like 30s, 5m or 8h`,
				`18: pools[0].health.timeout: must be more than zero, got 0s`,
				`28: l4.listeners[0].peek_timeout: "5 s" is not a duration`,
				`29: l4.listeners[0].idle_timeout: must be more than zero, got -1m0s`,
			},
		},
		{
			name:  "timeout longer than the interval",
			lines: map[int]string{17: "      interval: 1s", 18: "      timeout: 2s"},
			want:  []string{`18: pools[0].health.timeout: 2s is longer than the interval 1s; a check must end before the next begins`},
		},
		{
			name:  "rise and fall below 1, and dial_attempts",
			lines: map[int]string{19: "      rise: 0", 20: "      fall: -1", 28: "      dial_attempts: 0"},
			want: []string{
				`19: pools[0].health.rise: must be at least 1, got 0`,
				`20: pools[0].health.fall: must be at least 1, got -1`,
				`28: l4.listeners[0].dial_attempts: must be at least 1, got 0`,
			},
		},
		{
			name:  "https settings under a tcp check",
			lines: map[int]string{14: "      check: tcp", 15: "      path: /readyz\n      expect_status: 200"},
			want: []string{
				`15: pools[0].health.path: applies to check: https only`,
				`16: pools[0].health.expect_status: applies to check: https only`,
				`17: pools[0].health.ca_file: applies to check: tls or https only`,
			},
		},
		{
			name:  "path without a slash and a status that is not one",
			lines: map[int]string{15: "      path: readyz\n      expect_status: 99"},
			want: []string{
				`15: pools[0].health.path: "readyz" must start with "/"`,
				`16: pools[0].health.expect_status: 99 is not an HTTP status (100 to 599)`,
			},
		},
		{
			name:  "ca_file missing or not a certificate",
			lines: map[int]string{16: "      ca_file: tls/none.pem", 23: `      - {name: spare1, addr: "[2001:db8::9]:443"}` + "\n    health: {check: tls, ca_file: secrets/bind}"},
			want: []string{
				`16: pools[0].health.ca_file: cannot read "tls/none.pem" (` + abs("tls/none.pem") + `): no such file or directory`,
				`24: pools[1].health.ca_file: "secrets/bind" (` + abs("secrets/bind") + `) holds no PEM certificate`,
			},
		},
		{
			name:  "weight, max_conns and fqdn",
			lines: map[int]string{10: "        fqdn: auth2", 11: "        weight: 0", 12: "        max_conns: -1"},
			want: []string{
				`10: pools[0].backends[1].fqdn: "auth2" is not a fully qualified host name (like auth1.example.test)`,
				`11: pools[0].backends[1].weight: must be at least 1, got 0`,
				`12: pools[0].backends[1].max_conns: must be 0 (no limit) or more, got -1`,
			},
		},
		{
			name:  "a route naming an unknown pool",
			lines: map[int]string{31: "          pool: authnode"},
			want:  []string{`31: l4.listeners[0].routes[0].pool: no pool named "authnode" under pools (defined: authnodes, spare)`},
		},
		{
			name:  "a server name routed twice in one listener, whatever its case",
			lines: map[int]string{32: "          proxy_protocol: v2\n        - server_names: [LB.example.test, other.example.test, other.example.test]\n          pool: spare"},
			want: []string{
				`33: l4.listeners[0].routes[1].server_names: "LB.example.test" is already routed at line 30`,
				`33: l4.listeners[0].routes[1].server_names: "other.example.test" is already routed at line 33`,
			},
		},
		{
			name:  "the same server name on two listeners is fine",
			extra: "    - name: second\n      listen: 127.0.0.1:8444\n      routes: [{server_names: [lb.example.test], pool: spare}]\n",
		},
		{
			name: "wildcards that are not *.<domain>, and names that are not host names",
			lines: map[int]string{30: `        - server_names:
            - "*example.test"
            - "a.*.example.test"
            - "*"
            - "*."
            - "*.*.example.test"
            - lb.example.test.
            - lb_1.example.test
            - "lb example.test"`},
			want: []string{
				`31: l4.listeners[0].routes[0].server_names: "*example.test" is not a wildcard of the form *.<domain> (like *.example.test)`,
				`32: l4.listeners[0].routes[0].server_names: "a.*.example.test" is not a wildcard of the form *.<domain>`,
				`33: l4.listeners[0].routes[0].server_names: "*" is not a wildcard of the form *.<domain>`,
				`34: l4.listeners[0].routes[0].server_names: "*." is not a wildcard of the form *.<domain>`,
				`35: l4.listeners[0].routes[0].server_names: "*.*.example.test" is not a wildcard of the form *.<domain>`,
				`36: l4.listeners[0].routes[0].server_names: "lb.example.test." is not a host name (like lb.example.test)`,
				`38: l4.listeners[0].routes[0].server_names: "lb example.test" is not a host name`,
			},
		},
		{
			name:  "a route without server names",
			lines: map[int]string{30: "        - server_names: []"},
			want:  []string{`30: l4.listeners[0].routes[0].server_names is empty`},
		},
		{
			name:  "a route without a pool",
			lines: map[int]string{31: "#"},
			want:  []string{`30: missing required key "pool" in l4.listeners[0].routes[0]`},
		},
		{
			name:  "unknown PROXY protocol versions",
			lines: map[int]string{32: "          proxy_protocol: v3", 34: "      default_proxy_protocol: yes"},
			want: []string{
				`32: l4.listeners[0].routes[0].proxy_protocol: unknown PROXY protocol "v3"; use none, v1 or v2`,
				`34: l4.listeners[0].default_proxy_protocol: unknown PROXY protocol "yes"; use none, v1 or v2`,
			},
		},
		{
			name:  "the default route sends a pool another PROXY version than a route",
			lines: map[int]string{34: "#"},
			want:  []string{`33: l4.listeners[0].default_pool: sends PROXY protocol none to pool "authnodes", but the route at line 32 sends v2; its backends expect one or the other`},
		},
		{
			name:  "default_proxy_protocol without default_pool",
			lines: map[int]string{33: "#"},
			want:  []string{`34: l4.listeners[0].default_proxy_protocol: applies only with default_pool`},
		},
		{
			name:  "duplicate listener name and address; a listener that routes nothing",
			extra: "    - name: public\n      listen: 127.0.0.1:443\n",
			want: []string{
				`35: l4.listeners[1].name: duplicate listener name "public" (first at line 26)`,
				`36: l4.listeners[1].listen: 127.0.0.1:443 is already the address of the listener at line 27`,
				`35: l4.listeners[1]: routes nothing; add routes or a default_pool`,
			},
		},
		{
			name:  "a listener without name or listen",
			extra: "    - default_pool: spare\n",
			want: []string{
				`35: missing required key "name" in l4.listeners[1]`,
				`35: missing required key "listen" in l4.listeners[1]`,
			},
		},
		{
			name:  "max_hello_bytes out of range",
			lines: map[int]string{28: "      max_hello_bytes: 1024"},
			want:  []string{`28: l4.listeners[0].max_hello_bytes: 1024 is out of range; use 4096 to 65536`},
		},
		{
			name:  "max_conns that is not a positive number",
			lines: map[int]string{28: "      max_conns: 0"},
			extra: "    - {name: second, listen: 127.0.0.1:8444, default_pool: spare, max_conns: -5}\n" +
				"    - {name: third, listen: 127.0.0.1:8445, default_pool: spare, max_conns: 1e4}\n" +
				"    - {name: fourth, listen: 127.0.0.1:8446, default_pool: spare, max_conns: 1}\n",
			want: []string{
				`28: l4.listeners[0].max_conns: must be a positive number, got 0`,
				`35: l4.listeners[1].max_conns: must be a positive number, got -5`,
				`36: l4.listeners[2].max_conns: want a whole number, got`,
			},
		},
		{
			name:  "max_conns_per_source below 0",
			lines: map[int]string{28: "      max_conns_per_source: -1"},
			extra: "    - {name: second, listen: 127.0.0.1:8444, default_pool: spare, max_conns_per_source: 0}\n" +
				"    - {name: third, listen: 127.0.0.1:8445, default_pool: spare, max_conns_per_source: many}\n",
			want: []string{
				`28: l4.listeners[0].max_conns_per_source: must be 0 (no limit) or more, got -1`,
				`36: l4.listeners[2].max_conns_per_source: want a whole number, got`,
			},
		},
		{
			name:  "max_hello_records that is not a positive number",
			lines: map[int]string{28: "      max_hello_records: 0"},
			extra: "    - {name: second, listen: 127.0.0.1:8444, default_pool: spare, max_hello_records: -3}\n" +
				"    - {name: third, listen: 127.0.0.1:8445, default_pool: spare, max_hello_records: 1}\n",
			want: []string{
				`28: l4.listeners[0].max_hello_records: must be a positive number, got 0`,
				`35: l4.listeners[1].max_hello_records: must be a positive number, got -3`,
			},
		},
		{
			name:  "l4 without listeners",
			lines: map[int]string{25: "  listeners: []", 26: "#", 27: "#", 28: "#", 29: "#", 30: "#", 31: "#", 32: "#", 33: "#", 34: "#"},
			want:  []string{`24: l4.listeners: at least one listener is required`},
		},
		{
			name:  "pools that are not a list",
			lines: map[int]string{1: "pools: {authnodes: {}}", 2: "#", 3: "#", 4: "#", 5: "#", 6: "#", 7: "#", 8: "#", 9: "#", 10: "#", 11: "#", 12: "#", 13: "#", 14: "#", 15: "#", 16: "#", 17: "#", 18: "#", 19: "#", 20: "#", 21: "#", 22: "#", 23: "#"},
			want: []string{
				`1: pools: want a list, got a mapping`,
				`31: l4.listeners[0].routes[0].pool: no pool named "authnodes" under pools (there are none)`,
				`33: l4.listeners[0].default_pool: no pool named "authnodes" under pools (there are none)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, dir, editL4(tt.lines, tt.extra))
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

func TestLoadOnlyPoolsIsNothingToRun(t *testing.T) {
	dir := fixture(t)
	path := writeConfig(t, dir, l4Base[:strings.Index(l4Base, "l4:\n")])
	_, err := Load(path)
	if err == nil || !strings.HasSuffix(err.Error(), "iwalb.yaml: nothing to run: add an authnode, l4 or l7redirect section") {
		t.Errorf("Load error = %v, want nothing to run", err)
	}
}
