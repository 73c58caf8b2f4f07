package adtest

import (
	"testing"

	"github.com/iwalb/iwalb/internal/testpki"
)

// PKI is a throw-away CA and one certificate (for servers and clients), as
// PEM files: testpki.Files, which new tests use directly.
type PKI = testpki.Files

// NewPKI makes a CA and a certificate for names (the first is also the
// subject CN) in a temporary folder of t: testpki.NewFiles.
func NewPKI(t testing.TB, names ...string) PKI {
	t.Helper()
	return testpki.NewFiles(t, names...)
}
