// Package testpki makes throw-away certificate authorities and the
// certificates they sign, for tests: in memory (tls.Certificate,
// x509.CertPool) and as PEM files (keys mode 0600, as `iwalb run` requires).
// It plays the part of Go's net/http/internal/testcert, but makes a fresh
// key pair per call, so that every test can have its own CA, names and
// validity.
//
//	ca := testpki.NewCA(t, "iwalb test CA")
//	leaf := ca.Issue(t, "auth1.example.test", "lb.example.test")
//	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{leaf.TLS()}}
//	client.TLSClientConfig = &tls.Config{RootCAs: ca.Pool()}
//	certFile, keyFile := leaf.WriteFiles(t, dir, "tls/auth1.pem", "tls/auth1.key")
//
// It is test support only: nothing outside _test.go files (and other test
// support packages) should import it. Keys are ECDSA P-256; serial numbers
// are random.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Cert is a certificate with its private key and the chain above it: a CA
// made by NewCA, or a certificate a CA issued.
type Cert struct {
	// X509 is the certificate.
	X509 *x509.Certificate
	// Key is its private key.
	Key *ecdsa.PrivateKey
	// Chain is the DER of X509 and of the CA that issued it, leaf first, as
	// a server sends it (Chromium's SPKI allow-list needs the CA in it). A
	// CA's chain is its own certificate alone.
	Chain [][]byte

	root *x509.Certificate // the CA at the top of Chain
}

// NewCA returns a self-signed certificate authority whose subject CN is
// name, valid from an hour ago for a day.
func NewCA(t testing.TB, name string) *Cert {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	c := create(t, tmpl, nil)
	c.root = c.X509
	return c
}

// Issue returns a certificate for servers and clients naming the DNS names
// (the first is also its subject CN), signed by ca and valid from an hour
// ago for a day.
func (ca *Cert) Issue(t testing.TB, names ...string) *Cert {
	t.Helper()
	now := time.Now()
	return ca.IssueValid(t, now.Add(-time.Hour), now.Add(24*time.Hour), names...)
}

// IssueValid is Issue with a validity period of its own: an expired
// certificate, or one not valid yet.
func (ca *Cert) IssueValid(t testing.TB, notBefore, notAfter time.Time, names ...string) *Cert {
	t.Helper()
	if len(names) == 0 {
		t.Fatal("testpki: Issue needs at least one name")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		DNSNames:    names,
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	c := create(t, tmpl, ca)
	c.Chain = append(c.Chain, ca.root.Raw)
	c.root = ca.root
	return c
}

// create makes a key and a certificate from tmpl, signed by parent, or
// self-signed when parent is nil.
func create(t testing.TB, tmpl *x509.Certificate, parent *Cert) *Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	tmpl.SerialNumber = serial
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.X509, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		t.Fatalf("testpki: create certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return &Cert{X509: cert, Key: key, Chain: [][]byte{der}}
}

// TLS returns c as a server (or client) certificate that sends its chain.
func (c *Cert) TLS() tls.Certificate {
	return tls.Certificate{Certificate: c.Chain, PrivateKey: c.Key, Leaf: c.X509}
}

// Pool returns a pool that trusts the CA at the top of c's chain, and only
// it.
func (c *Cert) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.root)
	return p
}

// PEM returns c's chain as PEM.
func (c *Cert) PEM() []byte {
	var b []byte
	for _, der := range c.Chain {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return b
}

// KeyPEM returns c's private key as PKCS #8 PEM.
func (c *Cert) KeyPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteFiles writes c's chain (PEM) at dir/certName and, unless keyName is
// empty, its key (PKCS #8 PEM) at dir/keyName, creating folders; both files
// have mode 0600. It returns their paths (keyFile is empty with keyName).
func (c *Cert) WriteFiles(t testing.TB, dir, certName, keyName string) (certFile, keyFile string) {
	t.Helper()
	certFile = write(t, filepath.Join(dir, certName), c.PEM())
	if keyName != "" {
		keyFile = write(t, filepath.Join(dir, keyName), c.KeyPEM(t))
	}
	return certFile, keyFile
}

// CertFile writes c's chain as PEM in a temporary folder of t and returns
// its path: a CA file for a client such as curl or Chromium.
func (c *Cert) CertFile(t testing.TB) string {
	t.Helper()
	return write(t, filepath.Join(t.TempDir(), "cert.pem"), c.PEM())
}

func write(t testing.TB, path string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatalf("testpki: %v", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return path
}

// Files is a CA and one certificate it issued, as PEM files in a temporary
// folder of the test: what a server's and a client's configuration name.
type Files struct {
	// CAFile holds the CA's certificate.
	CAFile string
	// CertFile holds the certificate's chain, leaf then CA; KeyFile its key.
	CertFile, KeyFile string
	// Pool trusts the CA, for a Go client's RootCAs.
	Pool *x509.CertPool
}

// NewFiles makes a CA and a certificate it issued for names (the first is
// also the subject CN) and writes them in a temporary folder of t.
func NewFiles(t testing.TB, names ...string) Files {
	t.Helper()
	dir := t.TempDir()
	ca := NewCA(t, "iwalb test CA")
	f := Files{Pool: ca.Pool()}
	f.CAFile, _ = ca.WriteFiles(t, dir, "ca.pem", "")
	f.CertFile, f.KeyFile = ca.Issue(t, names...).WriteFiles(t, dir, "server.pem", "server.key")
	return f
}
