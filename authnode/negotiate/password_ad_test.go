package negotiate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode/adtest"
)

// TestPasswordLoginAD: a right password gives a token the node's
// validator accepts, with the user's SID and groups from the PAC; a wrong
// password, an unknown account and a disabled one are all ErrBadCredentials
// (their difference stays in the error text, for the log); the password
// never appears in an error.
func TestPasswordLoginAD(t *testing.T) {
	env := adtest.Env(t)
	conf := adConfig(t, env)
	realm := env["AD_REALM"]
	const spn = "HTTP/auth1.example.test"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	blob, err := PasswordLogin(ctx, conf, env["AD_ALICE_USER"], realm, env["AD_ALICE_PASSWORD"], spn)
	if err != nil {
		t.Fatalf("alice's password: %v", err)
	}
	id, err := NewValidator(adKeytab(t, env), Options{}).Validate(blob)
	if err != nil {
		t.Fatalf("the token of a password sign-in fails validation: %v", err)
	}
	if !strings.EqualFold(id.User, env["AD_ALICE_USER"]) || id.UserSID == "" || len(id.GroupSIDs) == 0 || !strings.HasPrefix(id.SPN, spn) {
		t.Errorf("identity = user %q sid %q groups %d spn %q", id.User, id.UserSID, len(id.GroupSIDs), id.SPN)
	}

	for _, tc := range []struct {
		name, user, password, inText string
	}{
		{"wrong password", env["AD_ALICE_USER"], "Not-Alice-Passw0rd1", "PREAUTH_FAILED"},
		{"unknown account", "nobody-here", "Whatever-Passw0rd1", "C_PRINCIPAL_UNKNOWN"},
		{"disabled account", env["AD_BOB_USER"], env["AD_BOB_PASSWORD"], "CLIENT_REVOKED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PasswordLogin(ctx, conf, tc.user, realm, tc.password, spn)
			if !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), tc.inText) {
				t.Fatalf("PasswordLogin = %v, want ErrBadCredentials naming %s", err, tc.inText)
			}
			if strings.Contains(err.Error(), tc.password) {
				t.Fatal("the error holds the password")
			}
		})
	}
}
