package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/iana/etypeID"
	"github.com/jcmturner/gokrb5/v8/keytab"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/configtest"
)

type ktEntry struct {
	principal, realm string
	kvno             uint8
	etype            int32
}

// writeKeytab writes a keytab of entries, all from one password.
func writeKeytab(t *testing.T, dir, name string, entries ...ktEntry) (path string, keys [][]byte) {
	t.Helper()
	kt := keytab.New()
	for _, e := range entries {
		if err := kt.AddEntry(e.principal, e.realm, "Test-Passw0rd", time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), e.kvno, e.etype); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range kt.Entries {
		keys = append(keys, e.Key.KeyValue)
	}
	b, err := kt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return configtest.WriteFile(t, dir, name, b), keys
}

// TestKeytabCommand: iwalb keytab lists what klist -kte lists, never a
// key, and names each problem with its fix; its exit status says whether
// there was a problem.
func TestKeytabCommand(t *testing.T) {
	dir := t.TempDir()
	good, goodKeys := writeKeytab(t, dir, "good.keytab",
		ktEntry{"HTTP/auth1.example.test", "EXAMPLE.TEST", 3, etypeID.AES256_CTS_HMAC_SHA1_96},
		ktEntry{"HTTP/auth1.example.test", "EXAMPLE.TEST", 3, etypeID.AES128_CTS_HMAC_SHA1_96},
		// A rotation's leftover: an older version is not judged.
		ktEntry{"HTTP/auth1.example.test", "EXAMPLE.TEST", 2, etypeID.RC4_HMAC},
	)
	rc4, _ := writeKeytab(t, dir, "rc4.keytab", ktEntry{"HTTP/auth1.example.test", "EXAMPLE.TEST", 2, etypeID.RC4_HMAC})
	mixed, _ := writeKeytab(t, dir, "mixed.keytab",
		ktEntry{"HTTP/auth1.example.test", "EXAMPLE.TEST", 2, etypeID.AES256_CTS_HMAC_SHA1_96},
		ktEntry{"HTTP/auth1.example.test", "EXAMPLE.TEST", 2, etypeID.RC4_HMAC})
	cased, _ := writeKeytab(t, dir, "case.keytab",
		ktEntry{"http/Auth1.example.test", "example.test", 2, etypeID.AES256_CTS_HMAC_SHA1_96})
	notKeytab := configtest.WriteFile(t, dir, "not.keytab", []byte("[libdefaults]\n"))
	huge := filepath.Join(dir, "huge.keytab")
	if err := os.WriteFile(huge, append([]byte{5, 2}, make([]byte, maxKeytabBytes)...), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"good", []string{"keytab", good}, 0, []string{
			"KVNO", "PRINCIPAL", "ENCTYPE",
			"3     2026-12-01 08:00:00  HTTP/auth1.example.test@EXAMPLE.TEST  aes256-cts-hmac-sha1-96",
			"2     2026-12-01 08:00:00  HTTP/auth1.example.test@EXAMPLE.TEST  rc4-hmac",
			"✔ HTTP/auth1.example.test@EXAMPLE.TEST: kvno 3: aes256-cts-hmac-sha1-96, aes128-cts-hmac-sha1-96",
		}, nil},
		{"RC4 only", []string{"keytab", rc4}, 1, []string{
			"✘ HTTP/auth1.example.test@EXAMPLE.TEST: only weak keys (rc4-hmac) at kvno 2: browsers ask for AES256 tickets",
			"fix: allow AES on the account (msDS-SupportedEncryptionTypes = 24",
		}, nil},
		{"AES with RC4 beside it", []string{"keytab", mixed}, 0, []string{
			"! HTTP/auth1.example.test@EXAMPLE.TEST: also holds weak keys (rc4-hmac) at kvno 2",
		}, nil},
		{"case", []string{"keytab", cased}, 1, []string{
			`✘ http/Auth1.example.test@example.test: the service is "http": browsers ask for HTTP/Auth1.example.test`,
			"fix: setspn -S HTTP/Auth1.example.test",
			`! http/Auth1.example.test@example.test: the host "Auth1.example.test" has upper-case letters`,
			`✘ http/Auth1.example.test@example.test: the realm "example.test" is not upper case; an AD realm is its DNS domain in upper case (EXAMPLE.TEST)`,
		}, nil},
		{"not a keytab", []string{"keytab", notKeytab}, 1, nil, []string{"iwalb keytab: " + notKeytab + ": not a keytab"}},
		{"too large", []string{"keytab", huge}, 1, nil, []string{"larger than 1024 KiB"}},
		{"missing", []string{"keytab", filepath.Join(dir, "none")}, 1, nil, []string{"no such file or directory"}},
		{"no file", []string{"keytab"}, 2, nil, []string{"iwalb keytab: want one keytab FILE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			if code := run(tc.args, &stdout, &stderr); code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout.String(), stderr.String())
			}
			containsInOrder(t, "stdout", stdout.String(), tc.stdout)
			containsInOrder(t, "stderr", stderr.String(), tc.stderr)
		})
	}

	t.Run("json, and never a key", func(t *testing.T) {
		var stdout, stderr strings.Builder
		if code := run([]string{"keytab", "-json", good}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		var got struct {
			Entries []struct {
				Principal string `json:"principal"`
				KVNO      int    `json:"kvno"`
				Enctype   string `json:"enctype"`
			} `json:"entries"`
			Findings []struct {
				Severity, Principal, Message string
			} `json:"findings"`
		}
		if err := json.Unmarshal([]byte(stdout.String()), &got); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, stdout.String())
		}
		if len(got.Entries) != 3 || got.Entries[0].Enctype != "aes256-cts-hmac-sha1-96" || got.Entries[0].KVNO != 3 ||
			len(got.Findings) != 1 || got.Findings[0].Severity != "ok" {
			t.Errorf("JSON = %+v", got)
		}
		for _, k := range goodKeys {
			for _, enc := range []string{string(k), hex.EncodeToString(k), base64.StdEncoding.EncodeToString(k)} {
				if strings.Contains(stdout.String(), enc) {
					t.Fatal("the output holds a key")
				}
			}
		}
	})

	// The real tool lists the same entries.
	t.Run("as klist -kte", func(t *testing.T) {
		klist, err := exec.LookPath("klist")
		if err != nil {
			t.Skip("klist (krb5-user) is not installed")
		}
		out, err := exec.Command(klist, "-kte", good).Output()
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for l := range strings.Lines(string(out)) {
			f := strings.Fields(l)
			if len(f) == 5 && strings.HasPrefix(f[4], "(") {
				// MIT spells RC4 "DEPRECATED:arcfour-hmac"; rc4-hmac is its
				// other name.
				etype := strings.TrimPrefix(strings.Trim(f[4], "()"), "DEPRECATED:")
				if etype == "arcfour-hmac" {
					etype = "rc4-hmac"
				}
				want = append(want, f[0]+" "+f[3]+" "+etype)
			}
		}
		keys, err := readKeytabSummary(good)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, k := range keys {
			got = append(got, strings.Join([]string{strconv.Itoa(k.KVNO), k.Principal + "@" + k.Realm, k.EtypeName}, " "))
		}
		slices.Sort(want)
		slices.Sort(got)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("iwalb keytab lists %q\nklist -kte lists %q", got, want)
		}
	})
}
