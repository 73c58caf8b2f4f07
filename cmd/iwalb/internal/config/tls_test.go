package config

import (
	"crypto/tls"
	"encoding/pem"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode"
	"github.com/iwalb/iwalb/internal/testpki"
	"github.com/iwalb/iwalb/internal/tlspolicy"
	"github.com/iwalb/iwalb/lb"
)

// TestTLSSettings: with no tls keys, both servers get Mozilla's
// intermediate settings with tickets off; the keys set what they name.
func TestTLSSettings(t *testing.T) {
	dir := l7Fixture(t)
	door := func(text string) L7Listener {
		t.Helper()
		f, err := Load(writeConfig(t, dir, text))
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		set, err := f.Pools(lb.NewRegistry(), lb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		doors, err := f.L7Redirect(set)
		if err != nil {
			t.Fatal(err)
		}
		return doors[0]
	}
	d := door(l7Base)
	if c := d.TLS; c.MinVersion != tls.VersionTLS12 || !c.SessionTicketsDisabled ||
		!reflect.DeepEqual(c.CipherSuites, tlspolicy.IntermediateSuites()) {
		t.Errorf("default front door TLS: min %x, tickets off %v, suites %v; want TLS 1.2, off, intermediate",
			c.MinVersion, c.SessionTicketsDisabled, c.CipherSuites)
	}
	d = door(editL7(map[int]string{14: `        - {cert: tls/sso.pem, key: tls/sso.key}
      tls:
        min_version: "1.2"
        cipher_suites: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
        session_tickets: true
        session_ticket_key_rotation: 30m`}, ""))
	want := []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
	if c := d.TLS; c.SessionTicketsDisabled || !reflect.DeepEqual(c.CipherSuites, want) || d.TicketKeyRotation != 30*time.Minute {
		t.Errorf("front door TLS: tickets off %v, suites %v, rotation %s; want on, %v, 30m", c.SessionTicketsDisabled, c.CipherSuites, d.TicketKeyRotation, want)
	}

	dir = fixture(t)
	node := func(text string) tlspolicy.Settings {
		t.Helper()
		f, err := Load(writeConfig(t, dir, text))
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		cfg, _ := f.AuthNode()
		return cfg.TLS
	}
	f, err := Load(writeConfig(t, dir, base))
	if err != nil {
		t.Fatal(err)
	}
	if cs := f.Certificates(); len(cs) != 1 || cs[0].Server != "authnode" || cs[0].Name != "auth1.example.test" || cs[0].NotAfter.IsZero() {
		t.Errorf("Certificates() = %+v, want the auth node's for auth1.example.test", cs)
	}
	if s := node(base); !reflect.DeepEqual(s, tlspolicy.Settings{}) {
		t.Errorf("default auth node TLS settings = %+v, want the zero (intermediate) settings", s)
	}
	s := node(strings.Replace(base, "    key: tls/auth1.key\n", "    key: tls/auth1.key\n    min_version: \"1.3\"\n    session_tickets: true\n", 1))
	if s.MinVersion != tls.VersionTLS13 || !s.SessionTickets || s.Rotation() != tlspolicy.DefaultTicketKeyRotation {
		t.Errorf("auth node TLS settings = %+v, want TLS 1.3 with tickets rotated hourly", s)
	}
}

// TestTLSSettingsProblems: each bad TLS key is reported at its line.
func TestTLSSettingsProblems(t *testing.T) {
	dir := l7Fixture(t)
	ca := testpki.NewCA(t, "ca.example.test")
	other := testpki.NewCA(t, "other CA")
	leaf := ca.Issue(t, "sso.example.test")
	certFile, _ := leaf.WriteFiles(t, dir, "tls/disordered.pem", "tls/disordered.key")
	// The leaf, then a CA that did not issue it.
	disordered := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.X509.Raw}), other.PEM()...)
	if err := os.WriteFile(certFile, disordered, 0o644); err != nil {
		t.Fatal(err)
	}

	const p = "l7redirect.listeners[0]"
	for _, tt := range []struct {
		name string
		tls  string
		want []string
	}{
		{
			name: "versions and suites",
			tls: `      tls:
        min_version: "1.1"
        cipher_suites: [TLS_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256, ECDHE-RSA-AES128-GCM-SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
        session_ticket_key_rotation: 1h
        session_tickets: "no"`,
			want: []string{
				`16: ` + p + `.tls.min_version: TLS 1.1 is obsolete (RFC 8996); use 1.2 or 1.3`,
				`17: ` + p + `.tls.cipher_suites: TLS_RSA_WITH_AES_128_GCM_SHA256 is insecure`,
				`17: ` + p + `.tls.cipher_suites: TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite; TLS 1.3's suites are not configurable`,
				`17: ` + p + `.tls.cipher_suites: "ECDHE-RSA-AES128-GCM-SHA256" is not a TLS cipher suite name; use IANA names`,
				`17: ` + p + `.tls.cipher_suites: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 is already listed at line 17`,
				`18: ` + p + `.tls.session_ticket_key_rotation: applies only with session_tickets: true`,
				`19: ` + p + `.tls.session_tickets: want true or false, got "no"`,
			},
		},
		{
			name: "rotation out of range, an empty list, an unknown key",
			tls: `      tls:
        session_tickets: true
        session_ticket_key_rotation: 10s
        cipher_suites: []
        ciphers: x`,
			want: []string{
				`17: ` + p + `.tls.session_ticket_key_rotation: 10s is out of range; use 1m0s to 24h0m0s`,
				`18: ` + p + `.tls.cipher_suites: lists no suite`,
				`19: unknown key "ciphers" in ` + p + `.tls; known keys: min_version, cipher_suites, session_tickets, session_ticket_key_rotation`,
			},
		},
		{
			name: "warnings only: CBC, and suites with TLS 1.3 as the floor",
			tls: `      tls:
        min_version: "1.3"
        cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA]`,
			want: []string{
				`17: warning: ` + p + `.tls.cipher_suites: TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA uses CBC with SHA-1`,
				`17: warning: ` + p + `.tls.cipher_suites: apply to TLS 1.2 only, and min_version is 1.3`,
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, dir, editL7(map[int]string{14: "        - {cert: tls/sso.pem, key: tls/sso.key}\n" + tt.tls}, ""))
			f, err := Load(path)
			if strings.HasPrefix(tt.name, "warnings only") {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				err = f.Warnings()
			}
			assertProblems(t, path, err, tt.want)
		})
	}

	t.Run("a chain out of order", func(t *testing.T) {
		path := writeConfig(t, dir, editL7(map[int]string{14: "        - {cert: tls/disordered.pem, key: tls/disordered.key}"}, ""))
		_, err := Load(path)
		assertProblems(t, path, err, []string{
			`14: ` + p + `.certificates[0].cert: certificate 2 of the file (other CA) did not issue certificate 1 (sso.example.test); list the leaf first, then each issuer in turn`,
		})
	})
}

// TestAuthNodeForm: the form's keys reach the node's configuration with
// their defaults, and bad ones are reported at their lines.
func TestAuthNodeForm(t *testing.T) {
	dir := fixture(t)
	at := "  application_url: https://app.example.test/sso/callback\n"
	if !strings.Contains(base, at) {
		t.Fatal("the base file changed")
	}
	f, err := Load(writeConfig(t, dir, strings.Replace(base, at, at+"  form: {enabled: true, user_failures: 3, organisation: Example Corp, negotiate_networks: [10.0.0.0/8, 192.0.2.1]}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := f.AuthNode()
	if want := (authnode.FormConfig{Enabled: true, UserFailures: 3, ClientFailures: authnode.DefaultFormClientFailures,
		Window: authnode.DefaultFormWindow, Organisation: "Example Corp",
		NegotiateNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}}); !reflect.DeepEqual(cfg.Form, want) {
		t.Errorf("form = %+v, want %+v", cfg.Form, want)
	}
	path := writeConfig(t, dir, strings.Replace(base, at, at+"  form:\n    enabled: true\n    user_failures: 0\n    window: -1m\n    help: "+strings.Repeat("x", 2000)+"\n", 1))
	_, err = Load(path)
	line := strings.Count(base[:strings.Index(base, at)+len(at)], "\n")
	assertProblems(t, path, err, []string{
		strconv.Itoa(line+3) + ": authnode.form.user_failures: must be at least 1, got 0",
		strconv.Itoa(line+4) + ": authnode.form.window: must be more than zero, got -1m0s",
		strconv.Itoa(line+5) + ": authnode.form.help: 2000 bytes is too long for the sign-in page (at most 1024)",
	})
}

func TestAuthNodeSSOSession(t *testing.T) {
	dir := fixture(t)
	at := "  application_url: https://app.example.test/sso/callback\n"
	f, err := Load(writeConfig(t, dir, strings.Replace(base, at, at+"  sso_session: {enabled: true, idle_timeout: 30m}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := f.AuthNode()
	if want := (authnode.SSOSessionConfig{Enabled: true, Lifetime: authnode.DefaultSSOSessionLifetime, Idle: 30 * time.Minute}); cfg.SSOSession != want {
		t.Errorf("sso_session = %+v, want %+v", cfg.SSOSession, want)
	}
	path := writeConfig(t, dir, strings.Replace(base, at, at+"  sso_session:\n    enabled: true\n    lifetime: 720h\n    idle_timeout: 960h\n", 1))
	_, err = Load(path)
	line := strings.Count(base[:strings.Index(base, at)+len(at)], "\n")
	assertProblems(t, path, err, []string{
		strconv.Itoa(line+4) + ": authnode.sso_session.idle_timeout: 960h0m0s is longer than lifetime (720h0m0s)",
		strconv.Itoa(line+3) + ": authnode.sso_session.lifetime: 720h0m0s is too long; a sign-in session must end within 168h0m0s",
	})
}
