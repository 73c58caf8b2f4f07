package adtest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/go-ldap/ldap/v3"
)

// Admin is an LDAPS connection to the test domain bound as its
// Administrator, for tests that make users and groups of their own. Every
// object it creates is deleted when the test ends; tests must not change
// the accounts and groups that ad-up made, which other tests rely on.
type Admin struct {
	t    testing.TB
	env  map[string]string
	conn *ldap.Conn
}

// NewAdmin binds to the test domain as Administrator over LDAPS (a
// password can only be set over an encrypted connection). The connection is
// closed when the test ends.
func NewAdmin(t testing.TB, env map[string]string) *Admin {
	t.Helper()
	pem, err := os.ReadFile(env["AD_LDAP_CA_FILE"])
	if err != nil {
		t.Fatalf("read test AD CA: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	c, err := ldap.DialURL(env["AD_LDAPS_URL"], ldap.DialWithTLSConfig(&tls.Config{RootCAs: roots, ServerName: env["AD_LDAP_TLS_SERVER_NAME"]}))
	if err != nil {
		t.Fatalf("dial %s: %v", env["AD_LDAPS_URL"], err)
	}
	if err := c.Bind(env["AD_ADMIN_USER"]+"@"+env["AD_DNS_DOMAIN"], env["AD_ADMIN_PASSWORD"]); err != nil {
		c.Close()
		t.Fatalf("bind as %s: %v", env["AD_ADMIN_USER"], err)
	}
	t.Cleanup(func() { c.Close() })
	return &Admin{t: t, env: env, conn: c}
}

// UniqueName returns prefix and 8 random hex digits: a sAMAccountName (at
// most 20 characters) no other test run uses.
func UniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// CreateGroup makes a global security group named name in CN=Users and
// returns its DN.
func (a *Admin) CreateGroup(name string) string {
	a.t.Helper()
	dn := "CN=" + name + "," + a.env["AD_USERS_DN"]
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"group"})
	req.Attribute("sAMAccountName", []string{name})
	req.Attribute("groupType", []string{"-2147483646"}) // global, security
	a.add(req)
	return dn
}

// CreateUser makes an enabled user named name with password in CN=Users
// (UPN name@dns domain) and returns its DN.
func (a *Admin) CreateUser(name, password string) string {
	a.t.Helper()
	dn := "CN=" + name + "," + a.env["AD_USERS_DN"]
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"user"})
	req.Attribute("sAMAccountName", []string{name})
	req.Attribute("userPrincipalName", []string{name + "@" + a.env["AD_DNS_DOMAIN"]})
	req.Attribute("unicodePwd", []string{unicodePwd(password)})
	req.Attribute("userAccountControl", []string{"512"}) // normal, enabled
	a.add(req)
	return dn
}

// CreatePSO makes a fine-grained password policy that locks out the
// accounts in appliesTo after threshold bad passwords, for an hour, without
// touching the domain's own policy, and returns its DN.
func (a *Admin) CreatePSO(name string, threshold int, appliesTo ...string) string {
	a.t.Helper()
	dn := "CN=" + name + ",CN=Password Settings Container,CN=System," + a.env["AD_BASE_DN"]
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"msDS-PasswordSettings"})
	req.Attribute("msDS-PasswordSettingsPrecedence", []string{"10"})
	req.Attribute("msDS-PasswordReversibleEncryptionEnabled", []string{"FALSE"})
	req.Attribute("msDS-PasswordHistoryLength", []string{"0"})
	req.Attribute("msDS-PasswordComplexityEnabled", []string{"FALSE"})
	req.Attribute("msDS-MinimumPasswordLength", []string{"0"})
	req.Attribute("msDS-MinimumPasswordAge", []string{"0"})
	req.Attribute("msDS-MaximumPasswordAge", []string{"-9223372036854775808"})
	req.Attribute("msDS-LockoutThreshold", []string{strconv.Itoa(threshold)})
	req.Attribute("msDS-LockoutObservationWindow", []string{"-36000000000"}) // 1 h
	req.Attribute("msDS-LockoutDuration", []string{"-36000000000"})
	req.Attribute("msDS-PSOAppliesTo", appliesTo)
	a.add(req)
	return dn
}

// add adds req's entry and deletes it when the test ends.
func (a *Admin) add(req *ldap.AddRequest) {
	a.t.Helper()
	if err := a.conn.Add(req); err != nil {
		a.t.Fatalf("add %s: %v", req.DN, err)
	}
	a.t.Cleanup(func() {
		if err := a.conn.Del(ldap.NewDelRequest(req.DN, nil)); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			a.t.Errorf("delete %s: %v", req.DN, err)
		}
	})
}

// Modify applies one change to the attribute attr of dn: "add", "delete" or
// "replace" of values.
func (a *Admin) Modify(dn, op, attr string, values ...string) {
	a.t.Helper()
	if err := a.TryModify(dn, op, attr, values...); err != nil {
		a.t.Fatal(err)
	}
}

// TryModify is Modify returning the directory's refusal instead of
// failing the test, for tests of what the directory refuses and for
// cleanups.
func (a *Admin) TryModify(dn, op, attr string, values ...string) error {
	m := ldap.NewModifyRequest(dn, nil)
	switch op {
	case "add":
		m.Add(attr, values)
	case "delete":
		m.Delete(attr, values)
	case "replace":
		m.Replace(attr, values)
	default:
		return fmt.Errorf("modify %s of %s: unknown operation %q", attr, dn, op)
	}
	if err := a.conn.Modify(m); err != nil {
		return fmt.Errorf("%s %s of %s: %w", op, attr, dn, err)
	}
	return nil
}

// SetPassword resets the password of the account dn, as an administrator
// does (no old password needed). The account's key version (KVNO) goes up
// by one, and its keys change: what a service account's password change
// does to its keytab.
func (a *Admin) SetPassword(dn, password string) {
	a.t.Helper()
	a.Modify(dn, "replace", "unicodePwd", unicodePwd(password))
}

// SetDisabled sets or clears ACCOUNTDISABLE on the user dn.
func (a *Admin) SetDisabled(dn string, disabled bool) {
	a.t.Helper()
	uac := "512"
	if disabled {
		uac = "514"
	}
	a.Modify(dn, "replace", "userAccountControl", uac)
}

// ObjectSID returns the objectSid of dn as a string (S-1-5-21-…).
func (a *Admin) ObjectSID(dn string) string {
	a.t.Helper()
	res, err := a.conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 0, false, "(objectClass=*)", []string{"objectSid"}, nil))
	if err != nil || len(res.Entries) != 1 {
		a.t.Fatalf("read objectSid of %s: %v", dn, err)
	}
	s, err := SIDString(res.Entries[0].GetRawAttributeValue("objectSid"))
	if err != nil {
		a.t.Fatalf("objectSid of %s: %v", dn, err)
	}
	return s
}

// TokenGroups returns the SIDs of every security group the account dn is
// in, nesting and the primary group included, as the directory computes
// them (tokenGroups): the group SIDs a ticket's PAC carries, plus the
// domain-local BUILTIN groups (S-1-5-32-…) that Windows adds at the server.
func (a *Admin) TokenGroups(dn string) []string {
	a.t.Helper()
	res, err := a.conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 0, false, "(objectClass=*)", []string{"tokenGroups"}, nil))
	if err != nil || len(res.Entries) != 1 {
		a.t.Fatalf("read tokenGroups of %s: %v", dn, err)
	}
	var out []string
	for _, raw := range res.Entries[0].GetRawAttributeValues("tokenGroups") {
		s, err := SIDString(raw)
		if err != nil {
			a.t.Fatalf("tokenGroups of %s: %v", dn, err)
		}
		out = append(out, s)
	}
	return out
}

// GroupName returns the sAMAccountName of the group with SID s, or "" when
// no object under the base DN has it.
func (a *Admin) GroupName(s string) string {
	a.t.Helper()
	res, err := a.conn.Search(ldap.NewSearchRequest("<SID="+s+">", ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 0, false, "(objectClass=group)", []string{"sAMAccountName"}, nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return ""
	}
	if err != nil {
		a.t.Fatalf("read group %s: %v", s, err)
	}
	if len(res.Entries) != 1 || !strings.HasSuffix(strings.ToLower(res.Entries[0].DN), strings.ToLower(a.env["AD_BASE_DN"])) {
		return ""
	}
	return res.Entries[0].GetAttributeValue("sAMAccountName")
}

// unicodePwd encodes password as AD's unicodePwd wants it: quoted,
// UTF-16LE.
func unicodePwd(password string) string {
	u := utf16.Encode([]rune(`"` + password + `"`))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return string(b)
}

// DN returns the DN of the object whose sAMAccountName is sam.
func (a *Admin) DN(sam string) string {
	a.t.Helper()
	res, err := a.conn.Search(ldap.NewSearchRequest(a.env["AD_BASE_DN"], ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, 0, false, "(sAMAccountName="+ldap.EscapeFilter(sam)+")", []string{"1.1"}, nil))
	if err != nil || len(res.Entries) != 1 {
		a.t.Fatalf("search for %s: %v", sam, err)
	}
	return res.Entries[0].DN
}

// Attr returns the first value of attribute attr of dn, or "" when it has
// none.
func (a *Admin) Attr(dn, attr string) string {
	a.t.Helper()
	res, err := a.conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 0, false, "(objectClass=*)", []string{attr}, nil))
	if err != nil || len(res.Entries) != 1 {
		a.t.Fatalf("read %s of %s: %v", attr, dn, err)
	}
	return res.Entries[0].GetAttributeValue(attr)
}
