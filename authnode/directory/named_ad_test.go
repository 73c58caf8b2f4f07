package directory

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/iwalb/iwalb/authnode/adtest"
)

// TestNamedPrincipalAD: an NTLM login names its account; NamedPrincipal
// finds the account's SID and group SIDs, those a Kerberos ticket's PAC
// would carry, so that Lookup confirms it as it confirms a ticket's user.
func TestNamedPrincipalAD(t *testing.T) {
	env := adtest.Env(t)
	d := mustNew(t, adConfigs(t, env)["ldaps"])
	ctx := context.Background()
	realm := env["AD_REALM"]

	for _, user := range []string{env["AD_ALICE_USER"], env["AD_CAROL_USER"]} {
		want := adPrincipal(t, env, user)
		want.GroupSIDs = slices.DeleteFunc(want.GroupSIDs, func(s string) bool { return strings.HasPrefix(s, "S-1-5-32-") })
		// AD compares names without regard to case, as the DC did.
		got, ops, err := d.NamedPrincipal(ctx, strings.ToUpper(user), realm)
		if err != nil {
			t.Fatalf("NamedPrincipal(%s): %v", user, err)
		}
		if got.Name != user || got.Realm != realm || got.SID != want.SID || ops < 2 || ops > 3 {
			// Two searches, and a bind when the pool opens a connection.
			t.Errorf("NamedPrincipal(%s) = %s@%s %s in %d operations; want %s@%s %s in 2 or 3", user, got.Name, got.Realm, got.SID, ops, user, realm, want.SID)
		}
		slices.Sort(got.GroupSIDs)
		slices.Sort(want.GroupSIDs)
		if !slices.Equal(got.GroupSIDs, want.GroupSIDs) || len(got.GroupSIDs) == 0 {
			t.Errorf("NamedPrincipal(%s) groups %v; want the token's domain groups %v", user, got.GroupSIDs, want.GroupSIDs)
		}
		u, _, err := d.Lookup(ctx, got)
		if err != nil {
			t.Fatalf("Lookup of NamedPrincipal(%s): %v", user, err)
		}
		// With the group names cached: the account's entry, read by
		// NamedPrincipal, is not searched for again; a ticket's
		// principal (no entry) takes its one search.
		if _, ops, err := d.Lookup(ctx, got); err != nil || ops != 0 {
			t.Errorf("Lookup of NamedPrincipal(%s) again: %d operations, %v; want 0", user, ops, err)
		}
		ticket := Principal{Name: got.Name, Realm: got.Realm, SID: got.SID, GroupSIDs: got.GroupSIDs}
		if _, ops, err := d.Lookup(ctx, ticket); err != nil || ops != 1 {
			t.Errorf("Lookup of a ticket's principal for %s: %d operations, %v; want 1", user, ops, err)
		}
		if user == env["AD_ALICE_USER"] && !slices.Contains(u.Groups, env["AD_GROUP"]) {
			t.Errorf("alice's groups %v lack %s", u.Groups, env["AD_GROUP"])
		}
	}

	for _, tt := range []struct{ name, account string }{
		{"unknown", "no-such-user-x"},
		{"a group", env["AD_GROUP"]},
		{"a wildcard", "ali*"},
		{"empty", ""},
	} {
		if _, _, err := d.NamedPrincipal(ctx, tt.account, realm); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: NamedPrincipal(%q) error %v; want ErrNotFound", tt.name, tt.account, err)
		}
	}
	// The disabled bob is found: Lookup, not this, refuses him.
	p, _, err := d.NamedPrincipal(ctx, env["AD_BOB_USER"], realm)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Lookup(ctx, p); !errors.Is(err, ErrDisabled) {
		t.Errorf("Lookup(bob) error %v; want ErrDisabled", err)
	}
}

// TestPrincipalBySIDAD: a refresh knows the account by SID only;
// PrincipalBySID finds the same account and groups as NamedPrincipal, and
// refuses a SID of no account, a group's, and a malformed one.
func TestPrincipalBySIDAD(t *testing.T) {
	env := adtest.Env(t)
	d := mustNew(t, adConfigs(t, env)["ldaps"])
	ctx := context.Background()
	realm := env["AD_REALM"]
	byName, _, err := d.NamedPrincipal(ctx, env["AD_ALICE_USER"], realm)
	if err != nil {
		t.Fatal(err)
	}
	bySID, _, err := d.PrincipalBySID(ctx, byName.SID, realm)
	if err != nil {
		t.Fatalf("PrincipalBySID(alice's SID): %v", err)
	}
	slices.Sort(byName.GroupSIDs)
	slices.Sort(bySID.GroupSIDs)
	if bySID.Name != byName.Name || bySID.SID != byName.SID || !slices.Equal(bySID.GroupSIDs, byName.GroupSIDs) {
		t.Errorf("PrincipalBySID = %+v; want %+v", bySID, byName)
	}
	// Another spelling of the same SID finds the same account.
	if other, _, err := d.PrincipalBySID(ctx, "s"+byName.SID[1:], realm); err != nil || other.SID != byName.SID {
		t.Errorf("PrincipalBySID(lower-case s): %+v, %v; want alice", other, err)
	}
	domain := byName.SID[:strings.LastIndexByte(byName.SID, '-')]
	for _, s := range []string{domain + "-99999", adtest.ObjectSID(t, env, env["AD_GROUP"]), "S-1-x", ""} {
		if _, _, err := d.PrincipalBySID(ctx, s, realm); !errors.Is(err, ErrNotFound) {
			t.Errorf("PrincipalBySID(%q) error %v; want ErrNotFound", s, err)
		}
	}
}
