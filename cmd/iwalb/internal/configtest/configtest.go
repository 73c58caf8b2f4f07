// Package configtest writes the files an iwalb configuration refers to
// (certificates, keytabs, krb5.conf, secrets) so that tests of the config
// loader and of the command can build valid configurations. It is for tests
// only.
package configtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
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

// WriteCert writes a self-signed certificate naming dnsName (PEM, at
// certName) and its key (at keyName).
func WriteCert(t testing.TB, dir, certName, keyName, dnsName string, notAfter time.Time) {
	t.Helper()
	WriteCertNames(t, dir, certName, keyName, notAfter, dnsName)
}

// WriteCertNames is WriteCert for a certificate naming several hosts, as an
// auth node's names both itself and the balancer; the first is its CN.
func WriteCertNames(t testing.TB, dir, certName, keyName string, notAfter time.Time, dnsNames ...string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: dnsNames[0]},
		DNSNames:              dnsNames,
		NotBefore:             notAfter.Add(-48 * time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	WriteFile(t, dir, certName, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	WriteFile(t, dir, keyName, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
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
