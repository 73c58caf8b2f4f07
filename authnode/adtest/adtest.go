// Package adtest gives tests access to the throw-away Active Directory test
// domain started by scripts/ad-up: its settings, logged-in Kerberos clients
// and fresh Negotiate blobs.
//
// Typical use in a test that needs the real domain:
//
//	env := adtest.Env(t) // skips under -short or when IWALB_AD_ENV is unset
//	cl := adtest.Login(t, env, env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
//	blob := adtest.NegotiateBlob(t, cl, "HTTP/auth1.example.test")
//
// It is for tests only; nothing outside _test.go files should import it.
package adtest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/krberror"
	"github.com/jcmturner/gokrb5/v8/spnego"
)

// EnvVar names the environment variable that points at the env file
// written by scripts/ad-up (for example /tmp/iwalb-ad/env).
const EnvVar = "IWALB_AD_ENV"

// Env returns the KEY=value settings of the running test domain. It skips
// the test under -short or when IWALB_AD_ENV is unset, and fails it when the
// file named there cannot be read. Blank lines and #comments are ignored.
func Env(t testing.TB) map[string]string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping test against the real Active Directory")
	}
	path := os.Getenv(EnvVar)
	if path == "" {
		t.Skip("IWALB_AD_ENV not set: start the test domain with scripts/ad-up DIR and set IWALB_AD_ENV=DIR/env")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("read test AD settings (%s=%s): %v", EnvVar, path, err)
	}
	defer f.Close()
	env := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		env[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read test AD settings %s: %v", path, err)
	}
	return env
}

// Int returns the setting key of env as a number, failing t when it is
// missing or not a number.
func Int(t testing.TB, env map[string]string, key string) int {
	t.Helper()
	n, err := strconv.Atoi(env[key])
	if err != nil {
		t.Fatalf("test AD setting %s=%q: not a number (an env file from an older ad-up?)", key, env[key])
	}
	return n
}

// Login returns a gokrb5 client logged in (AS exchange done) as user with
// password, using the krb5.conf named by env["KRB5_CONFIG"]. The client is
// destroyed when the test ends.
func Login(t testing.TB, env map[string]string, user, password string) *client.Client {
	t.Helper()
	conf, err := config.Load(env["KRB5_CONFIG"])
	if err != nil {
		t.Fatalf("load krb5 config %q: %v", env["KRB5_CONFIG"], err)
	}
	cl := client.NewWithPassword(user, env["AD_REALM"], password, conf, client.DisablePAFXFAST(true))
	// The test DC serves every test package at once with two KDC
	// processes; on a loaded machine one AS exchange can miss gokrb5's 5 s
	// timeout. That is the DC's load, not what a test asks, so a network
	// error is tried again (a wrong password is not).
	for attempt := 1; attempt <= 3; attempt++ {
		if err = cl.Login(); err == nil || !isNetworkError(err) {
			break
		}
	}
	if err != nil {
		t.Fatalf("kerberos login as %s@%s: %v", user, env["AD_REALM"], err)
	}
	t.Cleanup(cl.Destroy)
	return cl
}

// NegotiateBlob returns a fresh SPNEGO NegTokenInit carrying a Kerberos
// AP-REQ for spn (e.g. "HTTP/auth1.example.test"): the bytes a browser
// base64-encodes into "Authorization: Negotiate ...". Each call makes a new
// authenticator, so two blobs are never replays of each other.
func NegotiateBlob(t testing.TB, cl *client.Client, spn string) []byte {
	t.Helper()
	tok, err := spnego.SPNEGOClient(cl, spn).InitSecContext()
	if err != nil {
		t.Fatalf("SPNEGO token for %s: %v", spn, err)
	}
	b, err := tok.Marshal()
	if err != nil {
		t.Fatalf("marshal SPNEGO token for %s: %v", spn, err)
	}
	return b
}

// ObjectSID returns the objectSid of the account whose sAMAccountName is
// sam, as a string (S-1-5-21-…), read from the directory as the proxy
// account: what a PAC's user SID must equal.
func ObjectSID(t testing.TB, env map[string]string, sam string) string {
	t.Helper()
	c, err := ldap.DialURL(env["AD_LDAP_URL"])
	if err != nil {
		t.Fatalf("dial %s: %v", env["AD_LDAP_URL"], err)
	}
	defer c.Close()
	if err := c.Bind(env["AD_BIND_DN"], env["AD_BIND_PASSWORD"]); err != nil {
		t.Fatalf("bind as %s: %v", env["AD_BIND_DN"], err)
	}
	res, err := c.Search(ldap.NewSearchRequest(env["AD_BASE_DN"], ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, 0, false, "(sAMAccountName="+ldap.EscapeFilter(sam)+")", []string{"objectSid"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("search for %s: %v (%d entries)", sam, err, len(res.Entries))
	}
	sid, err := SIDString(res.Entries[0].GetRawAttributeValue("objectSid"))
	if err != nil {
		t.Fatalf("objectSid of %s: %v", sam, err)
	}
	return sid
}

// SIDString formats a binary SID ([MS-DTYP] 2.4.2.2) as S-1-….
func SIDString(b []byte) (string, error) {
	if len(b) < 8 || b[0] != 1 || len(b) != 8+4*int(b[1]) {
		return "", fmt.Errorf("not a binary SID: %x", b)
	}
	var auth uint64
	for _, c := range b[2:8] {
		auth = auth<<8 | uint64(c)
	}
	s := fmt.Sprintf("S-1-%d", auth)
	for i := 8; i < len(b); i += 4 {
		s += fmt.Sprintf("-%d", binary.LittleEndian.Uint32(b[i:]))
	}
	return s, nil
}

// isNetworkError reports whether a gokrb5 error is a failure to reach the
// KDC (as opposed to an answer from it).
func isNetworkError(err error) bool {
	var kerr krberror.Krberror
	return errors.As(err, &kerr) && kerr.RootCause == krberror.NetworkingError
}
