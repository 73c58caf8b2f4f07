package authnode

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
)

// A node given its Kerberos files already parsed (as iwalb run does, from
// the checks of iwalb check) serves with them and does not read the files
// again: here they are gone from disk by the time New runs.
func TestNewServesWithParsedFiles(t *testing.T) {
	kt := offlineKeytab(t)
	r := newReloadNode(t, func(c *Config) {
		dir := filepath.Dir(c.Keytab)
		ktData, err := os.ReadFile(c.Keytab)
		if err != nil {
			t.Fatal(err)
		}
		krb5Data, err := os.ReadFile(c.Krb5Conf)
		if err != nil {
			t.Fatal(err)
		}
		files := &KerberosFiles{Keytab: kt, KeytabSum: sha256.Sum256(ktData)}
		if files.Krb5, err = ParseKrb5Conf(krb5Data); err != nil {
			t.Fatal(err)
		}
		c.Files = files
		c.Krb5Conf = filepath.Join(dir, "gone", "krb5.conf")
	})
	if h := locationHost(t, ssoRequest(r.Node, ticketsFor(t, kt, 2)())); h != "app.example.test" {
		t.Fatalf("login with the handed-over keytab went to %q, want app.example.test", h)
	}
}

// krb5.conf directives gokrb5 does not know are skipped, by iwalb check
// and the node alike (the node used to refuse what the check let pass).
func TestParseKrb5ConfSkipsUnsupported(t *testing.T) {
	c, err := ParseKrb5Conf([]byte("include /etc/krb5.conf.d/extra\n[libdefaults]\n default_realm = EXAMPLE.TEST\n"))
	if err != nil {
		t.Fatalf("ParseKrb5Conf with an include: %v", err)
	}
	if c.LibDefaults.DefaultRealm != "EXAMPLE.TEST" {
		t.Fatalf("default realm %q, want EXAMPLE.TEST", c.LibDefaults.DefaultRealm)
	}
	if _, err := ParseKrb5Conf([]byte("[libdefaults]\n ticket_lifetime = ten hours\n")); err == nil {
		t.Fatal("a krb5.conf with a malformed ticket_lifetime parsed")
	}
}
