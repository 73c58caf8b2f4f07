// Package configtest writes the files an iwalb configuration refers to
// (keytabs, krb5.conf, secrets) so that tests of the config loader and of
// the command can build valid configurations; certificates come from
// internal/testpki. It is for tests only.
package configtest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/iana/etypeID"
	"github.com/jcmturner/gokrb5/v8/keytab"
)

// Krb5Conf is a krb5.conf like the one scripts/ad-up writes.
const Krb5Conf = `[libdefaults]
	default_realm = EXAMPLE.TEST
	dns_lookup_kdc = false

[realms]
	EXAMPLE.TEST = {
		kdc = 127.0.0.1:88
	}
`

// WriteFile writes data at dir/name, creating folders, and returns the
// file's path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// WriteKeytab writes a keytab holding AES256 keys for the given principals
// ("HTTP/host") in realm.
func WriteKeytab(t testing.TB, dir, name, realm string, principals ...string) {
	t.Helper()
	kt := keytab.New()
	for _, p := range principals {
		if err := kt.AddEntry(p, realm, "Test-Passw0rd", time.Now(), 1, etypeID.AES256_CTS_HMAC_SHA1_96); err != nil {
			t.Fatal(err)
		}
	}
	b, err := kt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	WriteFile(t, dir, name, b)
}
