package adtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// ExportKeytab exports the current keys of the principal spn (e.g.
// "HTTP/rot-1a2b.example.test") with samba-tool domain exportkeytab, as an
// administrator of a Samba domain does, and returns the keytab file's
// content. It reads the domain controller's database directly, so it runs
// on the test domain's machine (as the user that started it): the smb.conf
// is the one ad-up wrote next to the env file. It skips the test when
// samba-tool or that smb.conf is not there.
func ExportKeytab(t testing.TB, spn string) []byte {
	t.Helper()
	conf := filepath.Join(filepath.Dir(os.Getenv(EnvVar)), "samba", "etc", "smb.conf")
	if _, err := os.Stat(conf); err != nil {
		t.Skipf("no smb.conf of the test domain to export keytabs with: %v", err)
	}
	tool, err := exec.LookPath("samba-tool")
	if err != nil {
		t.Skipf("samba-tool not found: %v", err)
	}
	// A fresh file: samba-tool adds to an existing keytab.
	out := filepath.Join(t.TempDir(), "export.keytab")
	if b, err := exec.Command(tool, "domain", "exportkeytab", out, "--principal="+spn, "-s", conf).CombinedOutput(); err != nil {
		t.Fatalf("samba-tool domain exportkeytab %s: %v\n%s", spn, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
