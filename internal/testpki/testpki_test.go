package testpki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"testing"
	"time"
)

// TestIssuedCertificateVerifies: a leaf verifies for its names against its
// CA's pool and no other, for servers and clients, and its files load as a
// key pair that sends the chain.
func TestIssuedCertificateVerifies(t *testing.T) {
	ca := NewCA(t, "test CA")
	leaf := ca.Issue(t, "a.example.test", "b.example.test")
	if leaf.X509.Subject.CommonName != "a.example.test" || len(leaf.Chain) != 2 || !bytes.Equal(leaf.Chain[1], ca.X509.Raw) {
		t.Fatalf("leaf CN %q, chain of %d", leaf.X509.Subject.CommonName, len(leaf.Chain))
	}
	for _, name := range []string{"a.example.test", "b.example.test"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			opts := x509.VerifyOptions{DNSName: name, Roots: leaf.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}}
			if _, err := leaf.X509.Verify(opts); err != nil {
				t.Errorf("verify %s for usage %v: %v", name, usage, err)
			}
		}
	}
	if _, err := leaf.X509.Verify(x509.VerifyOptions{DNSName: "c.example.test", Roots: ca.Pool()}); err == nil {
		t.Error("the leaf verifies for a name it does not hold")
	}
	other := NewCA(t, "test CA")
	if _, err := leaf.X509.Verify(x509.VerifyOptions{DNSName: "a.example.test", Roots: other.Pool()}); err == nil {
		t.Error("the leaf verifies against another CA of the same name")
	}

	dir := t.TempDir()
	certFile, keyFile := leaf.WriteFiles(t, dir, "tls/leaf.pem", "tls/leaf.key")
	for _, f := range []string{certFile, keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(pair.Certificate) != 2 || !bytes.Equal(pair.Certificate[0], leaf.X509.Raw) {
		t.Errorf("the files hold %d certificates, want the leaf then the CA", len(pair.Certificate))
	}
	if caFile, noKey := ca.WriteFiles(t, dir, "ca.pem", ""); noKey != "" {
		t.Errorf("a key was written for an empty key name: %s", noKey)
	} else if b, _ := os.ReadFile(caFile); !bytes.Equal(b, ca.PEM()) {
		t.Errorf("%s is not the CA's PEM", caFile)
	}
	if b, err := os.ReadFile(leaf.CertFile(t)); err != nil || !bytes.Equal(b, leaf.PEM()) {
		t.Errorf("CertFile does not hold the chain's PEM: %v", err)
	}
}

// TestValidity: IssueValid makes expired and not-yet-valid certificates
// that a client refuses for that reason.
func TestValidity(t *testing.T) {
	ca := NewCA(t, "test CA")
	now := time.Now()
	for name, c := range map[string]*Cert{
		"expired":       ca.IssueValid(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "a.example.test"),
		"not yet valid": ca.IssueValid(t, now.Add(24*time.Hour), now.Add(48*time.Hour), "a.example.test"),
	} {
		_, err := c.X509.Verify(x509.VerifyOptions{DNSName: "a.example.test", Roots: ca.Pool()})
		var invalid x509.CertificateInvalidError
		if !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
			t.Errorf("%s: verify = %v, want a certificate outside its validity", name, err)
		}
	}
}

// TestNewFiles: the files of NewFiles serve TLS that a client trusting the
// pool accepts.
func TestNewFiles(t *testing.T) {
	f := NewFiles(t, "auth1.example.test")
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: "auth1.example.test", Roots: f.Pool}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) || !pool.Equal(f.Pool) {
		t.Error("CAFile does not hold the pool's CA")
	}
}
