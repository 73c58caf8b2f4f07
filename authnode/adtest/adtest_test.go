package adtest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEnvParsesFile(t *testing.T) {
	if testing.Short() {
		t.Skip("Env skips under -short by design")
	}
	path := filepath.Join(t.TempDir(), "env")
	content := "# comment\n\nKRB5_CONFIG=/x/krb5.conf\nAD_BASE_DN=DC=example,DC=test\n  # indented comment\nNOEQUALS\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvVar, path)
	env := Env(t)
	want := map[string]string{"KRB5_CONFIG": "/x/krb5.conf", "AD_BASE_DN": "DC=example,DC=test"}
	if len(env) != len(want) {
		t.Fatalf("Env = %v, want %v", env, want)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env[%s] = %q, want %q", k, env[k], v)
		}
	}
}
