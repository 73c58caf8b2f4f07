package directory

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/iwalb/iwalb/authnode/adtest"
)

// These tests make users and groups of their own in the test domain (and
// delete them), so that they can change them without disturbing the
// accounts other tests rely on.

// TestSIDCacheRefreshAD: a login names its groups from the ticket's SIDs;
// with the cache warm it costs one search; a group renamed in the directory
// keeps its old name until the cache entry's TTL passes, then shows the new
// one; SIDs that name no group of the directory stay in GroupSIDs.
func TestSIDCacheRefreshAD(t *testing.T) {
	env := adtest.Env(t)
	admin := adtest.NewAdmin(t, env)
	name := adtest.UniqueName("iwg-")
	groupDN := admin.CreateGroup(name)
	user := adtest.UniqueName("iwu-")
	userDN := admin.CreateUser(user, "Iw-"+user+"-Pw1!")
	admin.Modify(groupDN, "add", "member", userDN)
	userSID := admin.ObjectSID(userDN)
	domain := userSID[:strings.LastIndex(userSID, "-")]
	groupSID := admin.ObjectSID(groupDN)
	unknown := domain + "-999999" // a SID of the domain that nothing has
	p := Principal{Name: user, Realm: env["AD_REALM"], SID: userSID,
		GroupSIDs: append(admin.TokenGroups(userDN), unknown, "S-1-18-1", groupSID)}

	cfg := adConfigs(t, env)["ldaps"]
	// Absences are remembered longer here, so that the renamed group's is
	// the only entry to lapse.
	cfg.SIDCacheTTL, cfg.SIDCacheNegativeTTL = time.Hour, 2*time.Hour
	d := mustNew(t, cfg)
	now := time.Now()
	d.now = func() time.Time { return now }
	lookup := func(t *testing.T) (*User, int) {
		t.Helper()
		u, ops, err := d.Lookup(context.Background(), p)
		if err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		return u, ops
	}

	u, ops := lookup(t)
	if !slices.Equal(u.Groups, []string{"Domain Users", name}) {
		t.Errorf("groups %v, want [Domain Users %s]", u.Groups, name)
	}
	for _, s := range []string{unknown, "S-1-18-1", "S-1-5-32-545", groupSID} {
		if !slices.Contains(u.GroupSIDs, s) {
			t.Errorf("group SIDs %v lack %s", u.GroupSIDs, s)
		}
	}
	// Bind, user search, one search for the 3 SIDs of the domain.
	if ops != 3 {
		t.Errorf("cold login: %d LDAP operations, want 3 (bind, user, group SIDs)", ops)
	}
	if _, ops := lookup(t); ops != 1 {
		t.Errorf("warm login: %d LDAP operations, want 1", ops)
	}

	renamed := adtest.UniqueName("iwr-")
	admin.Modify(groupDN, "replace", "sAMAccountName", renamed)
	now = now.Add(59 * time.Minute)
	if u, ops := lookup(t); !slices.Contains(u.Groups, name) || ops != 1 {
		t.Errorf("before the TTL: groups %v in %d operations, want the old name %s from the cache in 1", u.Groups, ops, name)
	}
	now = now.Add(2 * time.Minute)
	u, ops = lookup(t)
	if !slices.Contains(u.Groups, renamed) || slices.Contains(u.Groups, name) {
		t.Errorf("after the TTL: groups %v, want the new name %s", u.Groups, renamed)
	}
	if ops != 2 {
		t.Errorf("after the TTL: %d operations, want 2 (user, the expired SIDs)", ops)
	}
}

// TestRequiredGroupAD: the required group is found by its DN however it is
// written, and membership then read from the ticket's SIDs (a user added
// after the ticket was made is refused) or asked of the directory (the
// same user is admitted); a required group that does not exist fails Check
// and refuses everyone.
func TestRequiredGroupAD(t *testing.T) {
	env := adtest.Env(t)
	admin := adtest.NewAdmin(t, env)
	group := adtest.UniqueName("iwg-")
	groupDN := admin.CreateGroup(group)
	user := adtest.UniqueName("iwu-")
	userDN := admin.CreateUser(user, "Iw-"+user+"-Pw1!")
	userSID := admin.ObjectSID(userDN)
	// The ticket was made before the user joined the group.
	before := Principal{Name: user, Realm: env["AD_REALM"], SID: userSID, GroupSIDs: admin.TokenGroups(userDN)}
	admin.Modify(groupDN, "add", "member", userDN)
	after := before
	after.GroupSIDs = admin.TokenGroups(userDN)

	for _, tt := range []struct {
		name    string
		check   GroupCheck
		dn      string
		who     Principal
		wantErr error
	}{
		{"ticket before joining", GroupCheckTicket, groupDN, before, ErrNotInGroup},
		{"directory before the next ticket", GroupCheckDirectory, groupDN, before, nil},
		{"ticket after joining", GroupCheckTicket, groupDN, after, nil},
		{"DN in other case and spacing", GroupCheckTicket, strings.ToUpper(strings.ReplaceAll(groupDN, ",", ", ")), after, nil},
		{"DN in other case, directory", GroupCheckDirectory, strings.ToUpper(groupDN), before, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := adConfigs(t, env)["ldaps"]
			cfg.RequiredGroup, cfg.RequiredGroupCheck = tt.dn, tt.check
			d := mustNew(t, cfg)
			if err := d.Check(context.Background()); err != nil {
				t.Fatalf("Check: %v", err)
			}
			if g := d.required.Load(); g == nil || g.sid != admin.ObjectSID(groupDN) {
				t.Fatalf("required group resolved to %+v, want SID %s", g, admin.ObjectSID(groupDN))
			}
			u, _, err := d.Lookup(context.Background(), tt.who)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Lookup = %v, want %v", err, tt.wantErr)
			}
			// The names come from the ticket, whichever check admitted.
			if inTicket := len(tt.who.GroupSIDs) == len(after.GroupSIDs); err == nil && slices.Contains(u.Groups, group) != inTicket {
				t.Errorf("groups %v; want %s in them only when the ticket has it", u.Groups, group)
			}
		})
	}

	t.Run("resolved at the first login when Check has not run", func(t *testing.T) {
		cfg := adConfigs(t, env)["ldaps"]
		cfg.RequiredGroup = groupDN
		d := mustNew(t, cfg)
		if _, ops, err := d.Lookup(context.Background(), after); err != nil || ops != 4 {
			t.Fatalf("first login: %d operations, %v; want 4 (bind, group, user, group SIDs)", ops, err)
		}
		if _, ops, err := d.Lookup(context.Background(), after); err != nil || ops != 1 {
			t.Fatalf("second login: %d operations, %v; want 1", ops, err)
		}
	})

	t.Run("no such group", func(t *testing.T) {
		cfg := adConfigs(t, env)["ldaps"]
		cfg.RequiredGroup = "CN=" + adtest.UniqueName("iwnone-") + "," + env["AD_USERS_DN"]
		d := mustNew(t, cfg)
		err := d.Check(context.Background())
		if err == nil || !strings.Contains(err.Error(), "does not exist") || errors.Is(err, ErrUnavailable) {
			t.Fatalf("Check = %v, want the group named as missing", err)
		}
		if _, _, err := d.Lookup(context.Background(), after); !errors.Is(err, ErrNotInGroup) || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("Lookup = %v, want ErrNotInGroup saying the group does not exist", err)
		}
	})
}

// TestLockedOutAD: an account locked out by bad passwords (under a password
// policy of the test's own: the domain's has no lockout) is refused with
// ErrLockedOut, read in the same one search.
func TestLockedOutAD(t *testing.T) {
	env := adtest.Env(t)
	admin := adtest.NewAdmin(t, env)
	user := adtest.UniqueName("iwu-")
	userDN := admin.CreateUser(user, "Iw-"+user+"-Pw1!")
	admin.CreatePSO(adtest.UniqueName("iwpso-"), 2, userDN)
	p := Principal{Name: user, Realm: env["AD_REALM"], SID: admin.ObjectSID(userDN), GroupSIDs: admin.TokenGroups(userDN)}

	d := mustNew(t, adConfigs(t, env)["ldaps"])
	if _, _, err := d.Lookup(context.Background(), p); err != nil {
		t.Fatalf("Lookup before the lockout: %v", err)
	}
	for range 3 {
		c, err := ldap.DialURL(env["AD_LDAP_URL"])
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Bind(userDN, "wrong-password"); err == nil {
			t.Fatal("bind with a wrong password succeeded")
		}
		c.Close()
	}
	u, ops, err := d.Lookup(context.Background(), p)
	if !errors.Is(err, ErrLockedOut) || u == nil || !u.Disabled || ops != 1 {
		t.Fatalf("Lookup after the lockout = %+v, %d operations, %v; want ErrLockedOut in 1", u, ops, err)
	}
}

// TestColdLookupsShareSearchesAD: logins that lack the same group SIDs at
// the same moment wait for one search rather than each sending its own.
func TestColdLookupsShareSearchesAD(t *testing.T) {
	env := adtest.Env(t)
	carol := adPrincipal(t, env, env["AD_CAROL_USER"])
	cfg := adConfigs(t, env)["ldaps"]
	const logins = 8
	cfg.PoolSize = logins
	d := mustNew(t, cfg)
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	start := make(chan struct{})
	for range logins {
		wg.Go(func() {
			<-start
			_, ops, err := d.Lookup(context.Background(), carol)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			total += ops
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	// Each login binds a connection and searches for carol; her 1,100
	// group SIDs take two searches of up to 900, sent once. Each login
	// sending its own would be 16.
	batches := (len(carol.GroupSIDs) + d.sidBatch - 1) / d.sidBatch
	if want := 2*logins + batches; total > want {
		t.Errorf("%d LDAP operations for %d concurrent cold logins, want at most %d", total, logins, want)
	}
	t.Logf("%d operations for %d concurrent cold logins of carol", total, logins)
}
