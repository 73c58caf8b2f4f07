package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/iwalb/iwalb/authnode"
	"github.com/iwalb/iwalb/authnode/store"
	"github.com/iwalb/iwalb/cmd/iwalb/internal/configtest"
	"github.com/iwalb/iwalb/internal/testpki"
)

// base is a valid file. Cases edit it line by line (replacing a line with
// "#" to drop it) so that the line numbers below stay put.
const base = `log:
  level: info
  format: text
metrics:
  listen: 127.0.0.1:9101
authnode:
  fqdn: auth1.example.test
  listen: 127.0.0.1:8443
  tls:
    cert: tls/auth1.pem
    key: tls/auth1.key
  application_url: https://app.example.test/sso/callback
  kerberos:
    keytab: http.keytab
    krb5_conf: krb5.conf
    realm: EXAMPLE.TEST
    account: svc_http
  ldap:
    url: ldaps://127.0.0.1:636
    ca_file: tls/ca.pem
    bind_dn: CN=svc_ldap,CN=Users,DC=example,DC=test
    bind_password_file: secrets/bind
    base_dn: DC=example,DC=test
  api:
    clients:
      - name: app
        key_file: secrets/app-key
`

const appKey = "0123456789abcdef0123456789abcdef"

// fixture writes every file that base and the cases refer to.
func fixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca.example.test")
	ca.WriteFiles(t, dir, "tls/ca.pem", "")
	ca.Issue(t, "auth1.example.test").WriteFiles(t, dir, "tls/auth1.pem", "tls/auth1.key")
	ca.Issue(t, "other.example.test").WriteFiles(t, dir, "tls/other.pem", "tls/other.key")
	now := time.Now()
	ca.IssueValid(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "auth1.example.test").WriteFiles(t, dir, "tls/expired.pem", "tls/expired.key")
	configtest.WriteKeytab(t, dir, "http.keytab", "EXAMPLE.TEST", "HTTP/auth1.example.test", "HTTP/auth2.example.test")
	configtest.WriteKeytab(t, dir, "other.keytab", "EXAMPLE.TEST", "HTTP/other.example.test")
	configtest.WriteFile(t, dir, "bad.keytab", []byte("not a keytab\n"))
	good, err := os.ReadFile(filepath.Join(dir, "http.keytab"))
	if err != nil {
		t.Fatal(err)
	}
	configtest.WriteFile(t, dir, "cut.keytab", good[:len(good)-10])
	configtest.WriteFile(t, dir, "krb5.conf", []byte(configtest.Krb5Conf))
	configtest.WriteFile(t, dir, "bad-krb5.conf", []byte("[libdefaults]\n  default_realm\n"))
	configtest.WriteFile(t, dir, "secrets/bind", []byte("SvcLdap-Passw0rd1\n"))
	configtest.WriteFile(t, dir, "secrets/app-key", []byte(appKey+"\n"))
	configtest.WriteFile(t, dir, "secrets/app2-key", []byte("fedcba9876543210fedcba9876543210"))
	configtest.WriteFile(t, dir, "secrets/short-key", []byte("short\n"))
	configtest.WriteFile(t, dir, "secrets/padded-key", []byte("   0123456789ab   \n"))
	configtest.WriteFile(t, dir, "secrets/empty", []byte("\n"))
	return dir
}

// edit replaces lines of base (1-based); extra is appended.
func edit(lines map[int]string, extra string) string {
	ls := strings.Split(base, "\n")
	for n, s := range lines {
		ls[n-1] = s
	}
	return strings.Join(ls, "\n") + extra
}

func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	return configtest.WriteFile(t, dir, "iwalb.yaml", []byte(text))
}

// TestSecretFilePermissions: a keytab, private key or secret file open to
// group or others is a warning that Load reports with the file, and that
// rides along with real problems when the file is refused.
func TestSecretFilePermissions(t *testing.T) {
	dir := fixture(t)
	path := writeConfig(t, dir, base)
	for name, mode := range map[string]os.FileMode{"http.keytab": 0o644, "tls/auth1.key": 0o640, "secrets/bind": 0o604, "secrets/app-key": 0o660} {
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var got []string
	for _, w := range f.Warnings() {
		if !w.Warning {
			t.Errorf("%v is not marked a warning", w)
		}
		got = append(got, w.String())
	}
	want := []string{
		path + `:11: warning: authnode.tls.key: "tls/auth1.key" (` + filepath.Join(dir, "tls/auth1.key") + `) is open to group or others (mode 0640); it holds a secret: chmod 600 ` + filepath.Join(dir, "tls/auth1.key") + ` (iwalb run refuses it)`,
		path + `:14: warning: authnode.kerberos.keytab: "http.keytab" (` + filepath.Join(dir, "http.keytab") + `) is open to group or others (mode 0644)`,
		path + `:22: warning: authnode.ldap.bind_password_file: "secrets/bind" (` + filepath.Join(dir, "secrets/bind") + `) is open to group or others (mode 0604)`,
		path + `:27: warning: authnode.api.clients[0].key_file: "secrets/app-key" (` + filepath.Join(dir, "secrets/app-key") + `) is open to group or others (mode 0660)`,
	}
	if len(got) != len(want) {
		t.Fatalf("warnings:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("warning %d = %q\nwant prefix %q", i, got[i], want[i])
		}
	}

	// Owner-only files give no warning.
	for _, name := range []string{"http.keytab", "tls/auth1.key", "secrets/bind", "secrets/app-key"} {
		os.Chmod(filepath.Join(dir, name), 0o400)
	}
	if f, err := Load(path); err != nil || len(f.Warnings()) != 0 {
		t.Fatalf("owner-only files: err=%v warnings=%v", err, f.Warnings())
	}

	// With a real problem the file is refused, and the warning is listed
	// with it.
	os.Chmod(filepath.Join(dir, "http.keytab"), 0o644)
	_, err = Load(writeConfig(t, dir, edit(map[int]string{2: "  level: loud"}, "")))
	if err == nil || !strings.Contains(err.Error(), `:2: log.level: unknown level "loud"`) ||
		!strings.Contains(err.Error(), ":14: warning: authnode.kerberos.keytab:") {
		t.Fatalf("refused file's error = %v, want the problem and the warning", err)
	}
}

// TestLDAPKeys: the LDAP pool, queue, group check and SID cache keys reach
// the node's configuration.
func TestLDAPKeys(t *testing.T) {
	dir := fixture(t)
	path := writeConfig(t, dir, edit(map[int]string{23: "    base_dn: DC=example,DC=test\n" +
		"    required_group: CN=lb-users,CN=Users,DC=example,DC=test\n    required_group_check: directory\n" +
		"    pool_size: 16\n    queue_timeout: 2s\n    sid_cache_size: 5000\n    sid_cache_ttl: 15m\n    sid_cache_negative_ttl: 1m"}, ""))
	f, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	cfg, _ := f.AuthNode()
	want := authnode.LDAPConfig{
		URL: "ldaps://127.0.0.1:636", CAFile: filepath.Join(dir, "tls/ca.pem"),
		BindDN: "CN=svc_ldap,CN=Users,DC=example,DC=test", BindPassword: "SvcLdap-Passw0rd1", BaseDN: "DC=example,DC=test",
		RequiredGroup: "CN=lb-users,CN=Users,DC=example,DC=test", RequiredGroupCheck: "directory",
		Timeout: 5 * time.Second, PoolSize: 16, QueueTimeout: 2 * time.Second,
		SIDCacheSize: 5000, SIDCacheTTL: 15 * time.Minute, SIDCacheNegativeTTL: time.Minute,
	}
	if !reflect.DeepEqual(cfg.LDAP, want) {
		t.Errorf("LDAP = %+v\nwant %+v", cfg.LDAP, want)
	}
}

// TestHashAndDrainTimeout: the hash names the file's contents, and the
// drain timeout is read or defaulted.
func TestHashAndDrainTimeout(t *testing.T) {
	dir := fixture(t)
	f1, err := Load(writeConfig(t, dir, base))
	if err != nil {
		t.Fatal(err)
	}
	f2, err := Load(writeConfig(t, dir, base))
	if err != nil {
		t.Fatal(err)
	}
	f3, err := Load(writeConfig(t, dir, base+"shutdown: {drain_timeout: 30s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(f1.Hash()) != 12 || f1.Hash() != f2.Hash() || f1.Hash() == f3.Hash() {
		t.Errorf("hashes %q %q %q: want 12 hex digits, equal for equal files only", f1.Hash(), f2.Hash(), f3.Hash())
	}
	if f1.DrainTimeout() != DefaultDrainTimeout || f3.DrainTimeout() != 30*time.Second {
		t.Errorf("drain timeouts %v and %v, want the default and 30s", f1.DrainTimeout(), f3.DrainTimeout())
	}
}

func TestLoadValid(t *testing.T) {
	dir := fixture(t)
	t.Setenv("IWALB_TEST_APP2_KEY", " fedcba9876543210fedcba9876543210\n")
	path := writeConfig(t, dir, edit(nil, `      - name: app2
        key_env: IWALB_TEST_APP2_KEY
  proxy_protocol:
    enabled: true
    trusted: [10.0.0.0/8, 192.0.2.7, "2001:db8::1", 10.1.2.3/16]
`))
	f, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	cfg, ok := f.AuthNode()
	if !ok {
		t.Fatal("AuthNode() = false for a file with an authnode section")
	}
	if got := f.Metrics(); got != (PrivateListener{Listen: "127.0.0.1:9101", MaxConns: DefaultPrivateMaxConns}) {
		t.Errorf("Metrics() = %+v", got)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"FQDN", cfg.FQDN, "auth1.example.test"},
		{"CertFile", cfg.CertFile, filepath.Join(dir, "tls/auth1.pem")},
		{"KeyFile", cfg.KeyFile, filepath.Join(dir, "tls/auth1.key")},
		{"Keytab", cfg.Keytab, filepath.Join(dir, "http.keytab")},
		{"Krb5Conf", cfg.Krb5Conf, filepath.Join(dir, "krb5.conf")},
		{"LDAP.CAFile", cfg.LDAP.CAFile, filepath.Join(dir, "tls/ca.pem")},
		{"LDAP.BindPassword (one newline stripped)", cfg.LDAP.BindPassword, "SvcLdap-Passw0rd1"},
		{"APIClients[0].Key (one newline stripped)", cfg.APIClients[0].Key, appKey},
		{"APIClients[1].Key (from env, trimmed)", cfg.APIClients[1].Key, "fedcba9876543210fedcba9876543210"},
		{"ProxyProtocol", cfg.ProxyProtocol, true},
		{"ProxyTrusted", cfg.ProxyTrusted, []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"),
			netip.MustParsePrefix("2001:db8::1/128"), netip.MustParsePrefix("10.1.0.0/16"),
		}},
		// Defaults, as documented on authnode.Config.
		{"MaxHeaderBytes", cfg.MaxHeaderBytes, 128 << 10},
		{"ReadHeaderTimeout", cfg.ReadHeaderTimeout, 10 * time.Second},
		{"IdleTimeout", cfg.IdleTimeout, 120 * time.Second},
		{"SSOPath", cfg.SSOPath, "/sso"},
		{"TokenParam", cfg.TokenParam, "ssoToken"},
		{"TokenTTL", cfg.TokenTTL, 60 * time.Second},
		{"SessionTTL", cfg.SessionTTL, 8 * time.Hour},
		{"CookieName", cfg.CookieName, "iwalb_session"},
		{"SelfTestSPN", cfg.SelfTestSPN, "HTTP/auth1.example.test"},
		{"SelfTestInterval", cfg.SelfTestInterval, 60 * time.Second},
		{"KeytabCheckInterval", cfg.KeytabCheckInterval, 10 * time.Second},
		{"PreviousKeysTTL", cfg.PreviousKeysTTL, 10 * time.Hour},
		{"MaxClockSkew", cfg.MaxClockSkew, 5 * time.Minute},
		{"MaxFutureSkew", cfg.MaxFutureSkew, 30 * time.Second},
		{"ReplayCacheMax", cfg.ReplayCacheMax, 100000},
		{"ReplayQuota", cfg.ReplayQuota, 50},
		{"LDAP.Timeout", cfg.LDAP.Timeout, 5 * time.Second},
		{"LDAP.PoolSize", cfg.LDAP.PoolSize, 8},
		{"LDAP.QueueTimeout", cfg.LDAP.QueueTimeout, 5 * time.Second},
		{"LDAP.RequiredGroupCheck", cfg.LDAP.RequiredGroupCheck, "ticket"},
		{"LDAP.SIDCacheSize", cfg.LDAP.SIDCacheSize, 100000},
		{"LDAP.SIDCacheTTL", cfg.LDAP.SIDCacheTTL, time.Hour},
		{"LDAP.SIDCacheNegativeTTL", cfg.LDAP.SIDCacheNegativeTTL, 10 * time.Minute},
		{"MaxConns", cfg.MaxConns, 10000},
		{"MaxConnsPerSource", cfg.MaxConnsPerSource, 256},
		{"StoreMaxEntries", cfg.StoreMaxEntries, 1_000_000},
		{"StoreMaxBytes", cfg.StoreMaxBytes, int64(256 << 20)},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// The keytab and krb5.conf are handed over as checked, parsed once.
	if f := cfg.Files; f == nil || f.Keytab == nil || f.Krb5 == nil {
		t.Errorf("Files = %+v, want the keytab and krb5.conf parsed by the checks", f)
	} else if got := principals(f.Keytab); !slices.Contains(got, "HTTP/auth1.example.test@EXAMPLE.TEST") {
		t.Errorf("the handed-over keytab holds %v, want HTTP/auth1.example.test@EXAMPLE.TEST", got)
	}

	// The File is immutable: changing a returned Config changes nothing.
	cfg.APIClients[0].Key = "changed"
	cfg.ProxyTrusted[0] = netip.Prefix{}
	again, _ := f.AuthNode()
	if again.APIClients[0].Key != appKey || !again.ProxyTrusted[0].IsValid() {
		t.Error("AuthNode() returned slices shared with the File")
	}
}

func TestLoadProblems(t *testing.T) {
	dir := fixture(t)
	abs := func(p string) string { return filepath.Join(dir, p) }
	tests := []struct {
		name  string
		lines map[int]string
		extra string
		env   map[string]string
		want  []string // "LINE: reason" substrings, one per expected problem
	}{
		{
			name:  "YAML syntax error has its line",
			lines: map[int]string{8: "  listen: [127.0.0.1:8443"},
			want:  []string{`8: YAML syntax: did not find expected ',' or ']'`},
		},
		{
			name:  "YAML syntax error from the scanner has its line",
			lines: map[int]string{12: "  application_url: https://app.example.test/: x"},
			want:  []string{`12: YAML syntax: mapping values are not allowed in this context`},
		},
		{
			name:  "unknown key, and the key it replaced is missing",
			lines: map[int]string{10: "    cretificate: tls/auth1.pem"},
			want: []string{
				`10: unknown key "cretificate" in authnode.tls`,
				`9: missing required key "cert" in authnode.tls`,
			},
		},
		{
			name:  "unknown section at the top level",
			extra: "cluster: {}\n",
			want:  []string{`28: unknown key "cluster" in the top level; known keys: log, metrics, authnode, pools, l4`},
		},
		{
			name:  "unknown key in a list item",
			extra: "        secret: x\n",
			want:  []string{`28: unknown key "secret" in authnode.api.clients[0]`},
		},
		{
			name:  "duplicate key",
			lines: map[int]string{8: "  fqdn: auth2.example.test"},
			want: []string{
				`8: duplicate key "fqdn" in authnode (first at line 7)`,
				`6: missing required key "listen" in authnode`,
			},
		},
		{
			name:  "missing required keys of authnode, at the section's line",
			lines: map[int]string{7: "#", 8: "#", 12: "#"},
			want: []string{
				`6: missing required key "fqdn" in authnode`,
				`6: missing required key "listen" in authnode`,
				`6: missing required key "application_url" in authnode`,
			},
		},
		{
			name:  "empty required value, at the key's line",
			lines: map[int]string{7: "  fqdn:"},
			want:  []string{`7: authnode.fqdn is empty`},
		},
		{
			name:  "missing tls section",
			lines: map[int]string{9: "#", 10: "#", 11: "#"},
			want:  []string{`6: missing required key "tls" in authnode`},
		},
		{
			name:  "missing kerberos keys",
			lines: map[int]string{14: "#", 15: "#", 16: "#", 17: "#"},
			want: []string{
				`13: missing required key "keytab" in authnode.kerberos`,
				`13: missing required key "krb5_conf" in authnode.kerberos`,
				`13: missing required key "realm" in authnode.kerberos`,
				`13: missing required key "account" in authnode.kerberos`,
			},
		},
		{
			name:  "missing ldap keys",
			lines: map[int]string{19: "#", 21: "#", 22: "#", 23: "#"},
			want: []string{
				`18: missing required key "url" in authnode.ldap`,
				`18: missing required key "bind_dn" in authnode.ldap`,
				`18: missing bind_password_file or bind_password_env in authnode.ldap`,
				`18: missing required key "base_dn" in authnode.ldap`,
			},
		},
		{
			name:  "no api clients",
			lines: map[int]string{25: "    clients: []", 26: "#", 27: "#"},
			want:  []string{`24: authnode.api.clients: at least one API client is required`},
		},
		{
			name:  "files that do not exist, named as written and as resolved",
			lines: map[int]string{10: "    cert: tls/nope.pem", 15: "    krb5_conf: /nonexistent/krb5.conf", 22: "    bind_password_file: secrets/nope"},
			want: []string{
				fmt.Sprintf(`10: authnode.tls.cert: cannot read "tls/nope.pem" (%s): no such file or directory`, abs("tls/nope.pem")),
				`15: authnode.kerberos.krb5_conf: cannot read "/nonexistent/krb5.conf": no such file or directory`,
				fmt.Sprintf(`22: authnode.ldap.bind_password_file: cannot read "secrets/nope" (%s): no such file or directory`, abs("secrets/nope")),
			},
		},
		{
			name:  "a folder where a file should be",
			lines: map[int]string{14: "    keytab: tls"},
			want:  []string{fmt.Sprintf(`14: authnode.kerberos.keytab: cannot read "tls" (%s): is a directory`, abs("tls"))},
		},
		{
			name:  "cert and key that are not a pair",
			lines: map[int]string{11: "    key: tls/other.key"},
			want:  []string{`10: authnode.tls: cert "tls/auth1.pem" (` + abs("tls/auth1.pem") + `) and key "tls/other.key" (` + abs("tls/other.key") + `) do not load as a pair: tls: private key does not match public key`},
		},
		{
			name:  "certificate for another name",
			lines: map[int]string{10: "    cert: tls/other.pem", 11: "    key: tls/other.key"},
			want:  []string{`10: authnode.tls.cert: the certificate does not name the fqdn auth1.example.test, so browsers would refuse it: x509: certificate is valid for other.example.test, not auth1.example.test`},
		},
		{
			name:  "expired certificate",
			lines: map[int]string{10: "    cert: tls/expired.pem", 11: "    key: tls/expired.key"},
			want:  []string{`10: authnode.tls.cert: the certificate expired on `},
		},
		{
			name:  "client_ca and ca_file that hold no certificate",
			lines: map[int]string{11: "    key: tls/auth1.key\n    client_ca: secrets/bind", 12: "#", 20: "    ca_file: http.keytab"},
			extra: "  application_url: https://app.example.test/\n",
			want: []string{
				`12: authnode.tls.client_ca: "secrets/bind" (` + abs("secrets/bind") + `) holds no PEM certificate`,
				`21: authnode.ldap.ca_file: "http.keytab" (` + abs("http.keytab") + `) holds no PEM certificate`,
			},
		},
		{
			name:  "keytab that does not parse",
			lines: map[int]string{14: "    keytab: bad.keytab"},
			want:  []string{`14: authnode.kerberos.keytab: "bad.keytab" (` + abs("bad.keytab") + `) does not load: not a keytab (a keytab file starts with byte 0x05)`},
		},
		{
			// gokrb5's own error would print the file, keys included.
			name:  "keytab cut short",
			lines: map[int]string{14: "    keytab: cut.keytab"},
			want:  []string{`14: authnode.kerberos.keytab: "cut.keytab" (` + abs("cut.keytab") + `) does not load: malformed keytab: it ends inside an entry (cut short, or still being written)`},
		},
		{
			name:  "keytab rotation",
			lines: map[int]string{17: "    account: svc_http\n    keytab_check_interval: 500ms\n    previous_keys_ttl: -1h"},
			want: []string{
				`18: authnode.kerberos.keytab_check_interval: 500ms is not between 1s and 1h0m0s`,
				`19: authnode.kerberos.previous_keys_ttl: must be 0 (keep no previous key) or more, got -1h0m0s`,
			},
		},
		{
			name:  "keytab rotation bounds",
			lines: map[int]string{17: "    account: svc_http\n    keytab_check_interval: 0s\n    previous_keys_ttl: 200h"},
			want: []string{
				`18: authnode.kerberos.keytab_check_interval: must be more than zero, got 0s`,
				`19: authnode.kerberos.previous_keys_ttl: 200h0m0s is more than 168h0m0s; tickets last 10h by default, and a retired key stays usable as long as it is kept`,
			},
		},
		{
			name:  "keytab without the node's SPN",
			lines: map[int]string{14: "    keytab: other.keytab"},
			want:  []string{`14: authnode.kerberos.keytab: "other.keytab" (` + abs("other.keytab") + `) has no key for HTTP/auth1.example.test@EXAMPLE.TEST, so this node could log no one in (it holds HTTP/other.example.test@EXAMPLE.TEST)`},
		},
		{
			name:  "keytab for another realm",
			lines: map[int]string{16: "    realm: OTHER.TEST"},
			want:  []string{`14: authnode.kerberos.keytab: "http.keytab" (` + abs("http.keytab") + `) has no key for HTTP/auth1.example.test@OTHER.TEST, so this node could log no one in (it holds HTTP/auth1.example.test@EXAMPLE.TEST, HTTP/auth2.example.test@EXAMPLE.TEST)`},
		},
		{
			name:  "krb5.conf that does not parse",
			lines: map[int]string{15: "    krb5_conf: bad-krb5.conf"},
			want:  []string{`15: authnode.kerberos.krb5_conf: "bad-krb5.conf" (` + abs("bad-krb5.conf") + `) does not parse: `},
		},
		{
			name:  "addresses that are not host:port",
			lines: map[int]string{5: "  listen: 9101", 8: "  listen: 127.0.0.1:99999"},
			want: []string{
				`5: metrics.listen: "9101" is not host:port (like 127.0.0.1:8443 or :8443)`,
				`8: authnode.listen: port "99999" in "127.0.0.1:99999" is not a number from 1 to 65535`,
			},
		},
		{
			name:  "port 0 and service names are refused",
			lines: map[int]string{5: "  listen: :0", 8: "  listen: :https"},
			want: []string{
				`5: metrics.listen: port "0" in ":0" is not a number from 1 to 65535`,
				`8: authnode.listen: port "https" in ":https" is not a number from 1 to 65535`,
			},
		},
		{
			name:  "admin API off loopback",
			extra: "admin: {listen: 0.0.0.0:9110}\n",
			want:  []string{`28: admin.listen: "0.0.0.0:9110" is not a loopback address; the admin API has no authentication, so it listens on loopback only`},
		},
		{
			name:  "max_conns of the private listeners must be positive",
			lines: map[int]string{5: "  listen: 127.0.0.1:9101\n  max_conns: 0"},
			extra: "admin: {listen: 127.0.0.1:9110, max_conns: -3}\n",
			want: []string{
				`6: metrics.max_conns: must be a positive number, got 0`,
				`29: admin.max_conns: must be a positive number, got -3`,
			},
		},
		{
			name:  "drain timeout not positive",
			extra: "shutdown: {drain_timeout: 0s}\n",
			want:  []string{`28: shutdown.drain_timeout: must be more than zero, got 0s`},
		},
		{
			name:  "metrics section without listen",
			lines: map[int]string{5: "#"},
			want:  []string{`4: missing required key "listen" in metrics`},
		},
		{
			name:  "bad CIDRs, each at its own line",
			extra: "  proxy_protocol:\n    enabled: true\n    trusted:\n      - 10.0.0.0/33\n      - 10.0.0.1\n      - lb1.example.test\n",
			want: []string{
				`31: authnode.proxy_protocol.trusted: "10.0.0.0/33" is not an address or CIDR`,
				`33: authnode.proxy_protocol.trusted: "lb1.example.test" is not an address or CIDR`,
			},
		},
		{
			name:  "proxy protocol with no trusted addresses",
			extra: "  proxy_protocol:\n    enabled: true\n",
			want:  []string{`29: authnode.proxy_protocol: enabled with no trusted addresses`},
		},
		{
			name:  "a boolean that is not one",
			extra: "  proxy_protocol:\n    enabled: maybe\n",
			want:  []string{`29: authnode.proxy_protocol.enabled: want true or false, got "maybe"`},
		},
		{
			name:  "ldap scheme",
			lines: map[int]string{19: "    url: https://dc1.example.test"},
			want:  []string{`19: authnode.ldap.url: scheme "https" is not ldap or ldaps`},
		},
		{
			name:  "plain ldap",
			lines: map[int]string{19: "    url: ldap://127.0.0.1:389"},
			want:  []string{`19: authnode.ldap.url: plain LDAP would send the bind password in clear; use ldaps://, start_tls: true, or allow_plaintext: true`},
		},
		{
			name:  "start_tls on ldaps",
			lines: map[int]string{20: "    start_tls: true"},
			want:  []string{`20: authnode.ldap.start_tls: ldaps:// is TLS already; start_tls applies to ldap:// only`},
		},
		{
			name:  "bad distinguished names",
			lines: map[int]string{23: "    base_dn: example.test"},
			want:  []string{`23: authnode.ldap.base_dn: "example.test" is not a distinguished name`},
		},
		{
			name: "ldap pool, queue and SID cache bounds",
			lines: map[int]string{23: "    base_dn: DC=example,DC=test\n    pool_size: 0\n    queue_timeout: 2m\n" +
				"    sid_cache_size: 20000000\n    sid_cache_ttl: 48h\n    sid_cache_negative_ttl: 0s"},
			want: []string{
				`24: authnode.ldap.pool_size: must be between 1 and 256, got 0`,
				`25: authnode.ldap.queue_timeout: 2m0s is too long; a login waits at most 1m0s for a free connection`,
				`26: authnode.ldap.sid_cache_size: must be between 1 and 10000000 (about 250 bytes an entry), got 20000000`,
				`27: authnode.ldap.sid_cache_ttl: 48h0m0s is more than 24h0m0s; a renamed or new group would keep its old answer that long`,
				`28: authnode.ldap.sid_cache_negative_ttl: must be more than zero, got 0s`,
			},
		},
		{
			name:  "required_group_check unknown",
			lines: map[int]string{23: "    base_dn: DC=example,DC=test\n    required_group: CN=lb-users,CN=Users,DC=example,DC=test\n    required_group_check: pac"},
			want:  []string{`25: authnode.ldap.required_group_check: "pac" is neither ticket (the group's SID in the user's ticket) nor directory (asked of the directory at each login)`},
		},
		{
			name:  "required_group_check without a group",
			lines: map[int]string{23: "    base_dn: DC=example,DC=test\n    required_group_check: directory"},
			want:  []string{`24: authnode.ldap.required_group_check: set without required_group, so it checks nothing`},
		},
		{
			name:  "application_url not absolute",
			lines: map[int]string{12: "  application_url: /sso/callback"},
			want:  []string{`12: authnode.application_url: "/sso/callback" is not an absolute https:// URL`},
		},
		{
			name:  "application_url plain http",
			lines: map[int]string{12: "  application_url: http://app.example.test/sso/callback"},
			want:  []string{`12: authnode.application_url: "http://app.example.test/sso/callback" is not an absolute https:// URL; the one-time token travels in it`},
		},
		{
			name:  "connection limits",
			extra: "  max_conns: 0\n  max_conns_per_source: -1\n",
			want: []string{
				`28: authnode.max_conns: must be a positive number, got 0`,
				`29: authnode.max_conns_per_source: must be 0 (no bound) or more, got -1`,
			},
		},
		{
			name:  "store bounds",
			extra: "  store:\n    max_entries: 0\n    max_bytes: 65536\n",
			want: []string{
				`29: authnode.store.max_entries: must be a positive number, got 0`,
				`30: authnode.store.max_bytes: 65536 is too small; use at least 1048576 (1 MiB)`,
			},
		},
		{
			name:  "durations",
			extra: "  token_ttl: 11m\n  session_ttl: 0s\n  read_header_timeout: 30x\n  idle_timeout: 60\n",
			want: []string{
				`28: authnode.token_ttl: 11m0s is too long; one-time tokens must be short-lived (at most 10m0s)`,
				`29: authnode.session_ttl: must be more than zero, got 0s`,
				`30: authnode.read_header_timeout: "30x" is not a duration; write it like 30s, 5m or 8h`,
				`31: authnode.idle_timeout: "60" is not a duration`,
			},
		},
		{
			name:  "durations under kerberos and ldap",
			lines: map[int]string{17: "    account: svc_http\n    max_clock_skew: -5m", 18: "#", 19: "#", 20: "#", 21: "#", 22: "#", 23: "#"},
			extra: "  ldap:\n    url: ldaps://127.0.0.1:636\n    bind_dn: CN=x,DC=example,DC=test\n    bind_password_file: secrets/bind\n    base_dn: DC=example,DC=test\n    timeout: 0s\n",
			want: []string{
				`18: authnode.kerberos.max_clock_skew: must be more than zero, got -5m0s`,
				`34: authnode.ldap.timeout: must be more than zero, got 0s`,
			},
		},
		{
			name:  "replay limits",
			lines: map[int]string{17: "    account: svc_http\n    max_future_skew: 6m\n    replay_quota: 0\n    replay_cache_size: 20000000"},
			want: []string{
				`18: authnode.kerberos.max_future_skew: 6m0s is more than max_clock_skew (5m0s)`,
				`19: authnode.kerberos.replay_quota: must be at least 1, got 0`,
				`20: authnode.kerberos.replay_cache_size: 20000000 is more than 10000000 (up to 250 bytes an entry)`,
			},
		},
		{
			name:  "replay limits that contradict each other",
			lines: map[int]string{17: "    account: svc_http\n    max_clock_skew: 1m\n    max_future_skew: 1s\n    replay_quota: 100\n    replay_cache_size: 99"},
			want: []string{
				`19: authnode.kerberos.max_future_skew: 1s is too small; the domain controller's clock is read to the second (at least 2s)`,
				`21: authnode.kerberos.replay_cache_size: 99 is less than replay_quota (100)`,
			},
		},
		{
			name:  "max_header_bytes",
			extra: "  max_header_bytes: 8192\n",
			want:  []string{`28: authnode.max_header_bytes: 8192 is too small; Kerberos tickets with large PACs need 64 KiB (65536)`},
		},
		{
			name:  "a size that is not a number",
			extra: "  max_header_bytes: 128KiB\n",
			want:  []string{`28: authnode.max_header_bytes: want a whole number, got "128KiB"`},
		},
		{
			name:  "sso_path",
			extra: "  sso_path: sso\n",
			want:  []string{`28: authnode.sso_path: "sso" must start with "/"`},
		},
		{
			name:  "sso_path on one of the node's own endpoints",
			extra: "  sso_path: /readyz\n",
			want:  []string{`28: authnode.sso_path: "/readyz" is taken by the node's own endpoints (/healthz, /readyz, /logout, /login, /logoff, /api/)`},
		},
		{
			name:  "store redis without its section",
			extra: "  store:\n    type: redis\n",
			want:  []string{`29: authnode.store: type redis needs a redis section with addrs`},
		},
		{
			name: "store redis addresses, prefix, db and timeouts",
			extra: "  store:\n    type: redis\n    redis:\n      addrs: [redis1:6379, 'redis2', ':6379', 'redis3:0', redis1:6379]\n" +
				"      password_file: secrets/bind\n      db: 3\n      prefix: 'iwalb{1}:'\n" +
				"      dial_timeout: 0s\n      read_timeout: 2m\n      pool_size: 0\n",
			want: []string{
				`31: authnode.store.redis.addrs: "redis2" is not host:port`,
				`31: authnode.store.redis.addrs: ":6379" is not host:port`,
				`31: authnode.store.redis.addrs: port "0" in "redis3:0" is not a number from 1 to 65535`,
				`31: authnode.store.redis.addrs: redis1:6379 is listed twice (first at line 31)`,
				`33: authnode.store.redis.db: several addrs without master_name is a Redis Cluster, which has database 0 only`,
				`34: authnode.store.redis.prefix: "iwalb{1}:" may not hold '{' or '}'`,
				`35: authnode.store.redis.dial_timeout: must be more than zero, got 0s`,
				`36: authnode.store.redis.read_timeout: 2m0s is too long; logins wait on Redis (at most 1m0s)`,
				`37: authnode.store.redis.pool_size: must be at least 1, got 0`,
			},
		},
		{
			name: "store redis secrets: never inline, username needs a password, sentinel keys need master_name",
			extra: "  store:\n    type: redis\n    redis:\n      addrs: [redis1:6379]\n      password: hunter2\n" +
				"      username: iwalb\n      sentinel_password_env: NOT_SET_ANYWHERE\n",
			want: []string{
				`32: authnode.store.redis.password: inline secrets are not allowed; use password_file or password_env`,
				`33: authnode.store.redis.username: needs password_file or password_env`,
				`34: authnode.store.redis: sentinel_username and sentinel_password_* apply with master_name only`,
				`34: authnode.store.redis.sentinel_password_env: environment variable NOT_SET_ANYWHERE is not set`,
				`30: warning: authnode.store.redis: no password_file or password_env`,
			},
		},
		{
			name: "store redis TLS files",
			extra: "  store:\n    type: redis\n    redis:\n      addrs: [redis1:6379]\n      password_file: secrets/bind\n" +
				"      tls:\n        ca_file: secrets/bind\n        cert: tls/auth1.pem\n        key: tls/other.key\n        server_name: ''\n" +
				"      sentinel_username: x\n",
			want: []string{
				`34: authnode.store.redis.tls.ca_file: "secrets/bind" (` + abs("secrets/bind") + `) holds no PEM certificate`,
				`35: authnode.store.redis.tls: cert "tls/auth1.pem" (` + abs("tls/auth1.pem") + `) and key "tls/other.key" (` + abs("tls/other.key") + `) do not load as a pair`,
				`37: authnode.store.redis.tls.server_name is empty`,
				`38: authnode.store.redis: sentinel_username and sentinel_password_* apply with master_name only`,
				`38: authnode.store.redis.sentinel_username: needs sentinel_password_file or sentinel_password_env`,
			},
		},
		{
			name:  "store redis client certificate without its key",
			extra: "  store:\n    type: redis\n    redis:\n      addrs: [redis1:6379]\n      password_file: secrets/bind\n      tls: {cert: tls/auth1.pem}\n",
			want:  []string{`33: authnode.store.redis.tls: a client certificate needs both cert and key`},
		},
		{
			name:  "store unknown",
			extra: "  store: {type: etcd}\n",
			want:  []string{`28: authnode.store.type: unknown store "etcd"; use memory or redis`},
		},
		{
			name:  "log level and format",
			lines: map[int]string{2: "  level: verbose", 3: "  format: xml"},
			want: []string{
				`2: log.level: unknown level "verbose"; use debug, info, warn or error`,
				`3: log.format: unknown format "xml"; use text or json`,
			},
		},
		{
			name:  "inline bind password",
			lines: map[int]string{22: "    bind_password: hunter2"},
			want: []string{
				`22: authnode.ldap.bind_password: inline secrets are not allowed; use bind_password_file or bind_password_env`,
				`18: missing bind_password_file or bind_password_env in authnode.ldap`,
			},
		},
		{
			name: "api clients: duplicate name, both, neither, short, inline, env unset and empty",
			extra: `      - name: app
        key_file: secrets/app2-key
      - name: both
        key_file: secrets/app2-key
        key_env: IWALB_TEST_KEY
      - name: neither
      - name: short
        key_file: secrets/short-key
      - name: inline
        key: 0123456789abcdef0123456789abcdef
      - name: unset
        key_env: IWALB_TEST_UNSET
      - name: empty
        key_env: IWALB_TEST_EMPTY
      - name: emptyfile
        key_file: secrets/empty
      - name: samekey
        key_file: secrets/app-key
`,
			env: map[string]string{"IWALB_TEST_KEY": appKey + "-env", "IWALB_TEST_EMPTY": ""},
			want: []string{
				`28: authnode.api.clients[1].name: duplicate client name "app" (first at line 26)`,
				`32: authnode.api.clients[2]: give key_file or key_env, not both`,
				`33: missing key_file or key_env in authnode.api.clients[3]`,
				`35: authnode.api.clients[4]: the key is 5 bytes; use at least 16`,
				`37: authnode.api.clients[5].key: inline secrets are not allowed; use key_file or key_env`,
				`36: missing key_file or key_env in authnode.api.clients[5]`,
				`39: authnode.api.clients[6].key_env: environment variable IWALB_TEST_UNSET is not set`,
				`41: authnode.api.clients[7].key_env: environment variable IWALB_TEST_EMPTY is empty`,
				`43: authnode.api.clients[8].key_file: "secrets/empty" (` + abs("secrets/empty") + `) is empty`,
				`45: authnode.api.clients[9]: same key as client "app"`,
			},
		},
		{
			name: "api keys padded with whitespace",
			extra: `      - name: padded
        key_file: secrets/padded-key
      - name: samepadded
        key_env: IWALB_TEST_PADDED
`,
			env: map[string]string{"IWALB_TEST_PADDED": "  " + appKey + "\t"},
			want: []string{
				`29: authnode.api.clients[1]: the key is 12 bytes without its surrounding whitespace; use at least 16`,
				`31: authnode.api.clients[2]: same key as client "app"`,
			},
		},
		{
			name:  "wildcard cert_name",
			lines: map[int]string{11: "    key: tls/auth1.key\n    client_ca: tls/ca.pem"},
			extra: "        cert_name: '*.example.test'\n",
			want:  []string{`29: authnode.api.clients[0].cert_name: "*.example.test": names are matched exactly; wildcards are not allowed`},
		},
		{
			name:  "cert_name without client_ca",
			extra: "        cert_name: app.example.test\n",
			want:  []string{`28: authnode.api.clients[0].cert_name: needs authnode.tls.client_ca`},
		},
		{
			name:  "a mapping where a value belongs, and a value where a mapping belongs",
			lines: map[int]string{7: "  fqdn: {name: auth1.example.test}", 13: "  kerberos: yes", 14: "#", 15: "#", 16: "#", 17: "#"},
			want: []string{
				`7: authnode.fqdn: want a single value, got a mapping`,
				`13: authnode.kerberos: want a mapping of keys to values, got a single value`,
				`13: missing required key "keytab" in authnode.kerberos`,
				`13: missing required key "krb5_conf" in authnode.kerberos`,
				`13: missing required key "realm" in authnode.kerberos`,
				`13: missing required key "account" in authnode.kerberos`,
			},
		},
		{
			name:  "a second document",
			extra: "---\nlog: {level: debug}\n",
			want:  []string{`28: a second YAML document (after ---) is not allowed`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			os.Unsetenv("IWALB_TEST_UNSET")
			path := writeConfig(t, dir, edit(tt.lines, tt.extra))
			_, err := Load(path)
			assertProblems(t, path, err, tt.want)
		})
	}
}

// assertProblems checks that err is Problems holding exactly the wanted
// problems ("LINE: reason" substrings), in any order.
func assertProblems(t *testing.T, path string, err error, want []string) {
	t.Helper()
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("Load error = %v (%T), want Problems", err, err)
	}
	lines := strings.Split(ps.Error(), "\n")
	used := make([]bool, len(lines))
	for _, w := range want {
		w = path + ":" + w
		found := false
		for i, l := range lines {
			if !used[i] && strings.Contains(l, w) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing problem %q", w)
		}
	}
	for i, l := range lines {
		if !used[i] {
			t.Errorf("unexpected problem %q", l)
		}
	}
}

func TestLoadUnusableFiles(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, file, text string
		want             string
	}{
		{"empty file", "empty.yaml", "", "empty.yaml: nothing to run: add an authnode, l4 or l7redirect section"},
		{"only log", "log.yaml", "log: {level: debug}\n", "log.yaml: nothing to run: add an authnode, l4 or l7redirect section"},
		{"not a mapping", "list.yaml", "- a\n- b\n", "list.yaml:1: the top level: want a mapping of keys to values, got a list"},
		{"tabs", "tabs.yaml", "log:\n\tlevel: info\n", "tabs.yaml:2: YAML syntax: found character that cannot start any token"},
		{"unreadable", "missing.yaml", "", "missing.yaml: cannot read: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.file)
			if tt.file != "missing.yaml" {
				configtest.WriteFile(t, dir, tt.file, []byte(tt.text))
			}
			_, err := Load(path)
			if err == nil || !strings.HasSuffix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Load error = %v, want one problem ending in %q", err, tt.want)
			}
		})
	}
}

// TestLogger checks that level and format reach the logger.
func TestLogger(t *testing.T) {
	dir := fixture(t)
	path := writeConfig(t, dir, edit(map[int]string{2: "  level: warn", 3: "  format: json"}, ""))
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	log := f.Logger(&b, nil)
	log.Info("hidden")
	log.Warn("shown", "k", "v")
	if got := b.String(); strings.Contains(got, "hidden") || !strings.Contains(got, `"msg":"shown","k":"v"`) {
		t.Errorf("log output = %q, want only the warning, as JSON", got)
	}
}

// TestExamplesLoad keeps configs/*.yaml valid: each is copied into a temp
// folder with the files it names generated at their relative paths.
func TestExamplesLoad(t *testing.T) {
	examples, err := filepath.Glob("../../../../configs/*.yaml")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, ex := range examples {
		t.Run(filepath.Base(ex), func(t *testing.T) {
			data, err := os.ReadFile(ex)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			path := configtest.WriteFile(t, dir, filepath.Base(ex), data)
			materialize(t, dir, data)
			if _, err := Load(path); err != nil {
				t.Fatalf("example does not load:\n%v", err)
			}
		})
	}
}

// materialize creates every file and environment variable that the
// example refers to: its authnode section, its pools' CA files and its
// front doors' certificates.
func materialize(t *testing.T, dir string, data []byte) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	c := &checker{file: "example", dir: dir}
	var raw rawFile
	c.decodeMapping(doc.Content[0], "", reflect.ValueOf(&raw).Elem())
	if len(c.problems) > 0 {
		t.Fatalf("example does not decode:\n%v", c.problems)
	}
	ca := testpki.NewCA(t, "ca.example.test")
	for _, p := range raw.Pools {
		if caFile := p.Health.CAFile; caFile.Set {
			ca.WriteFiles(t, dir, caFile.V, "")
		}
	}
	for _, l := range raw.L7.Listeners {
		var names []string
		for _, n := range l.Names.V {
			names = append(names, n.V)
		}
		for _, ck := range l.Certificates {
			ca.Issue(t, names...).WriteFiles(t, dir, ck.Cert.V, ck.Key.V)
		}
	}
	a := raw.AuthNode
	if !a.At.Set {
		return
	}
	ca.Issue(t, a.FQDN.V).WriteFiles(t, dir, a.TLS.Cert.V, a.TLS.Key.V)
	for _, caFile := range []str{a.TLS.ClientCA, a.LDAP.CAFile} {
		if caFile.Set {
			ca.WriteFiles(t, dir, caFile.V, "")
		}
	}
	configtest.WriteKeytab(t, dir, a.Kerberos.Keytab.V, a.Kerberos.Realm.V, "HTTP/"+a.FQDN.V)
	if a.Kerberos.Krb5Conf.Set {
		configtest.WriteFile(t, dir, a.Kerberos.Krb5Conf.V, []byte(configtest.Krb5Conf))
	}
	secret := func(file, env str) {
		switch {
		case file.Set:
			configtest.WriteFile(t, dir, file.V, []byte(appKey+"\n"))
		case env.Set:
			t.Setenv(env.V, appKey)
		}
	}
	secret(a.LDAP.BindPasswordFile, a.LDAP.BindPasswordEnv)
	if r := a.Store.Redis; r.At.Set {
		if r.PasswordFile.Set || r.PasswordEnv.Set {
			secret(r.PasswordFile, r.PasswordEnv)
		}
		if r.SentinelPasswordFile.Set || r.SentinelPasswordEnv.Set {
			secret(r.SentinelPasswordFile, r.SentinelPasswordEnv)
		}
		if caFile := r.TLS.CAFile; caFile.Set {
			ca.WriteFiles(t, dir, caFile.V, "")
		}
		if r.TLS.Cert.Set {
			ca.Issue(t, "client.example.test").WriteFiles(t, dir, r.TLS.Cert.V, r.TLS.Key.V)
		}
	}
	for _, cl := range a.API.Clients {
		secret(cl.KeyFile, cl.KeyEnv)
	}
}

func TestAuthNodeLimits(t *testing.T) {
	dir := fixture(t)
	path := writeConfig(t, dir, edit(nil, "  max_conns: 500\n  max_conns_per_source: 0\n  store: {type: memory, max_entries: 2000, max_bytes: 1048576}\n"))
	f, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	cfg, _ := f.AuthNode()
	if cfg.MaxConns != 500 || cfg.MaxConnsPerSource >= 0 || cfg.StoreMaxEntries != 2000 || cfg.StoreMaxBytes != 1<<20 {
		t.Fatalf("MaxConns %d, MaxConnsPerSource %d (want negative: no bound), StoreMaxEntries %d, StoreMaxBytes %d",
			cfg.MaxConns, cfg.MaxConnsPerSource, cfg.StoreMaxEntries, cfg.StoreMaxBytes)
	}
}

// TestKeytabRotationKeys: the keytab check interval and previous keys'
// lifetime reach the node; previous_keys_ttl 0 keeps no previous key.
func TestKeytabRotationKeys(t *testing.T) {
	for _, tc := range []struct {
		yaml           string
		check, keepFor time.Duration
	}{
		{"    keytab_check_interval: 2s\n    previous_keys_ttl: 24h", 2 * time.Second, 24 * time.Hour},
		{"    previous_keys_ttl: 0s", 10 * time.Second, -1},
	} {
		dir := fixture(t)
		f, err := Load(writeConfig(t, dir, edit(map[int]string{17: "    account: svc_http\n" + tc.yaml}, "")))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		cfg, _ := f.AuthNode()
		if cfg.KeytabCheckInterval != tc.check || cfg.PreviousKeysTTL != tc.keepFor {
			t.Errorf("%q: KeytabCheckInterval %s, PreviousKeysTTL %s; want %s, %s", tc.yaml, cfg.KeytabCheckInterval, cfg.PreviousKeysTTL, tc.check, tc.keepFor)
		}
	}
}

// TestAuthNodeRedis: a redis store section becomes the node's Redis
// configuration, with defaults, absolute paths and secrets read; keys that
// then do nothing are warned about.
func TestAuthNodeRedis(t *testing.T) {
	dir := fixture(t)
	t.Setenv("IWALB_TEST_SENTINEL_PASSWORD", "sentinel-secret")
	path := writeConfig(t, dir, edit(nil, `  store:
    type: redis
    max_entries: 5000
    redis:
      addrs: [10.0.0.5:26379, 10.0.0.6:26379, 10.0.0.7:26379]
      master_name: iwalb
      username: iwalb
      password_file: secrets/app2-key
      sentinel_password_env: IWALB_TEST_SENTINEL_PASSWORD
      db: 2
      tls:
        ca_file: tls/ca.pem
        server_name: redis.example.test
        cert: tls/auth1.pem
        key: tls/auth1.key
      read_timeout: 500ms
      pool_size: 20
`))
	f, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	cfg, _ := f.AuthNode()
	want := &authnode.RedisConfig{
		RedisConfig: store.RedisConfig{
			Addrs: []string{"10.0.0.5:26379", "10.0.0.6:26379", "10.0.0.7:26379"}, MasterName: "iwalb",
			Username: "iwalb", Password: "fedcba9876543210fedcba9876543210", SentinelPassword: "sentinel-secret",
			DB: 2, Prefix: "iwalb:",
			DialTimeout: 2 * time.Second, ReadTimeout: 500 * time.Millisecond, WriteTimeout: time.Second, PoolSize: 20,
		},
		TLSFiles: &authnode.RedisTLSFiles{
			CAFile: filepath.Join(dir, "tls/ca.pem"), ServerName: "redis.example.test",
			CertFile: filepath.Join(dir, "tls/auth1.pem"), KeyFile: filepath.Join(dir, "tls/auth1.key"),
		},
	}
	if !reflect.DeepEqual(cfg.Redis, want) {
		t.Fatalf("Redis config\n%+v\nwant\n%+v", cfg.Redis, want)
	}
	var warnings []string
	for _, w := range f.Warnings() {
		warnings = append(warnings, w.String())
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], ":30: warning: authnode.store: max_entries and max_bytes bound the in-memory store only") {
		t.Fatalf("warnings %q, want one about max_entries", warnings)
	}

	// The default is memory; a redis section with it is ignored, and said so.
	f, err = Load(writeConfig(t, dir, edit(nil, "  store:\n    redis: {addrs: [redis1:6379]}\n")))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg, _ := f.AuthNode(); cfg.Redis != nil {
		t.Fatalf("memory store with a Redis config: %+v", cfg.Redis)
	}
	if w := f.Warnings(); len(w) != 1 || !strings.Contains(w[0].String(), ":29: warning: authnode.store.redis: ignored: store.type is memory") {
		t.Fatalf("warnings %v", w)
	}
}
