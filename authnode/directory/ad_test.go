package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode/adtest"
)

// These tests run against the test domain started by scripts/ad-up; they skip
// under -short or when IWALB_AD_ENV is unset.

// adConfigs returns a Config per transport (ldaps://, StartTLS, plain), all
// trusting the test CA.
func adConfigs(t *testing.T, env map[string]string) map[string]Config {
	t.Helper()
	pem, err := os.ReadFile(env["AD_LDAP_CA_FILE"])
	if err != nil {
		t.Fatalf("read test AD CA: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", env["AD_LDAP_CA_FILE"])
	}
	base := Config{
		TLS:          &tls.Config{RootCAs: roots, ServerName: env["AD_LDAP_TLS_SERVER_NAME"]},
		BindDN:       env["AD_BIND_DN"],
		BindPassword: env["AD_BIND_PASSWORD"],
		BaseDN:       env["AD_BASE_DN"],
		// The test DC is Samba with two LDAP workers on a small machine
		// that other tests share; an in-chain group search costs it about
		// 0.1s. These tests check answers, not latency (the black-hole
		// tests check Timeout), so give it room.
		Timeout: 30 * time.Second,
	}
	ldaps, starttls, plain := base, base, base
	ldaps.URL = env["AD_LDAPS_URL"]
	starttls.URL, starttls.StartTLS = env["AD_LDAP_URL"], true
	plain.URL, plain.AllowPlaintext = env["AD_LDAP_URL"], true
	return map[string]Config{"ldaps": ldaps, "starttls": starttls, "plain": plain}
}

// adPrincipal is how the KDC presents user: name, realm and (from the
// directory) objectSid and the group SIDs of its token, as the PAC has them.
func adPrincipal(t *testing.T, env map[string]string, user string) Principal {
	t.Helper()
	a := adtest.NewAdmin(t, env)
	return Principal{Name: user, Realm: env["AD_REALM"], SID: adtest.ObjectSID(t, env, user), GroupSIDs: a.TokenGroups(a.DN(user))}
}

func TestLookupAD(t *testing.T) {
	env := adtest.Env(t)
	realm := env["AD_REALM"]
	group := env["AD_GROUP_DN"]
	alice := adPrincipal(t, env, env["AD_ALICE_USER"])
	// A SID of the domain that no account has.
	domain := alice.SID[:strings.LastIndex(alice.SID, "-")]
	withName := func(p Principal, name string) Principal { p.Name = name; return p }
	withGroup := func(p Principal, sid string) Principal {
		p.GroupSIDs = append(slices.Clone(p.GroupSIDs), sid)
		return p
	}
	tests := []struct {
		name          string
		who           Principal
		requiredGroup string
		wantErr       error
		check         func(t *testing.T, u *User)
		// directoryOnly: the case holds only with GroupCheckDirectory.
		directoryOnly bool
	}{
		{name: "alice", who: alice, requiredGroup: group, check: func(t *testing.T, u *User) {
			want := User{DN: env["AD_ALICE_DN"], SID: alice.SID, SAMAccountName: "alice", UserPrincipalName: "alice@example.test",
				DisplayName: "Alice Liddell", Mail: "alice@example.test"}
			got := *u
			got.Groups, got.GroupSIDs = nil, nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("user = %+v, want %+v", got, want)
			}
			// The names of the token's groups; the primary group is one.
			if !slices.Contains(u.Groups, env["AD_GROUP"]) || !slices.Contains(u.Groups, "Domain Users") {
				t.Errorf("groups %v lack %s or Domain Users", u.Groups, env["AD_GROUP"])
			}
			// Every SID given is kept, BUILTIN\Users (not a group of the
			// domain, so not named) too.
			if !slices.Equal(u.GroupSIDs, uniqueSorted(alice.GroupSIDs)) || !slices.Contains(u.GroupSIDs, "S-1-5-32-545") {
				t.Errorf("group SIDs %v, want %v", u.GroupSIDs, alice.GroupSIDs)
			}
		}},
		{name: "alice by UPN in realm case", who: withName(alice, "alice@"+realm), requiredGroup: group, check: func(t *testing.T, u *User) {
			if u.DN != env["AD_ALICE_DN"] {
				t.Errorf("DN = %s, want %s", u.DN, env["AD_ALICE_DN"])
			}
		}},
		{name: "alice in upper case", who: withName(alice, "ALICE"), requiredGroup: group},
		// The ticket's name and SID disagree: refused, and the SID's
		// account is named so the operator can see whose it was.
		{name: "alice's SID for dave", who: withName(alice, env["AD_DAVE_USER"]), wantErr: ErrIdentityMismatch, check: func(t *testing.T, u *User) {
			if u == nil || u.DN != env["AD_ALICE_DN"] {
				t.Errorf("refused user = %+v, want alice's DN", u)
			}
		}},
		{name: "alice@another realm", who: withName(alice, "alice@OTHER.TEST"), wantErr: ErrIdentityMismatch},
		{name: "filter injection in the name", who: withName(alice, "alice)(sAMAccountName=*"), wantErr: ErrIdentityMismatch},
		{name: "wildcard name", who: withName(alice, "*"), wantErr: ErrIdentityMismatch},
		{name: "empty name", who: withName(alice, ""), wantErr: ErrIdentityMismatch},
		{name: "bob disabled", who: adPrincipal(t, env, env["AD_BOB_USER"]), wantErr: ErrDisabled, check: func(t *testing.T, u *User) {
			if u == nil || !u.Disabled || u.DN != env["AD_BOB_DN"] {
				t.Errorf("refused user = %+v, want bob's DN and Disabled", u)
			}
		}},
		{name: "carol not in group", who: adPrincipal(t, env, env["AD_CAROL_USER"]), requiredGroup: group, wantErr: ErrNotInGroup},
		// The ticket says carol is in the group, but she is not: only the
		// directory's own answer refuses her.
		{name: "carol with lb-users forged in", who: withGroup(adPrincipal(t, env, env["AD_CAROL_USER"]), adtest.ObjectSID(t, env, env["AD_GROUP"])),
			requiredGroup: group, wantErr: ErrNotInGroup, directoryOnly: true},
		{name: "carol without required group", who: adPrincipal(t, env, env["AD_CAROL_USER"]), check: func(t *testing.T, u *User) {
			if want := adtest.Int(t, env, "AD_CAROL_GROUPS"); len(u.Groups) < want {
				t.Errorf("carol has %d groups, want >= %d", len(u.Groups), want)
			}
			if !slices.IsSorted(u.Groups) || slices.Contains(u.Groups, env["AD_GROUP"]) {
				t.Errorf("carol's groups not sorted or contain %s", env["AD_GROUP"])
			}
		}},
		{name: "dave nested", who: adPrincipal(t, env, env["AD_DAVE_USER"]), requiredGroup: group, check: func(t *testing.T, u *User) {
			if !slices.Contains(u.Groups, env["AD_NESTED_GROUP"]) || !slices.Contains(u.Groups, env["AD_GROUP"]) {
				t.Errorf("dave's groups %v lack %s or %s", u.Groups, env["AD_NESTED_GROUP"], env["AD_GROUP"])
			}
		}},
		{name: "unknown SID", who: Principal{Name: "nobody-here", Realm: realm, SID: domain + "-999999"}, wantErr: ErrNotFound},
		// A group has a SID too, but is not a user.
		{name: "a group's SID", who: Principal{Name: env["AD_GROUP"], Realm: realm, SID: adtest.ObjectSID(t, env, env["AD_GROUP"])}, wantErr: ErrNotFound},
		{name: "malformed SID", who: Principal{Name: "alice", Realm: realm, SID: domain + "-*"}, wantErr: ErrNotFound},
		{name: "no SID", who: Principal{Name: "alice", Realm: realm}, wantErr: ErrNotFound},
	}
	// Every transport with the group checked in the ticket; over LDAPS
	// also with the directory's answer.
	configs := adConfigs(t, env)
	dirCheck := configs["ldaps"]
	dirCheck.RequiredGroupCheck = GroupCheckDirectory
	configs["ldaps, directory check"] = dirCheck
	for tname, cfg := range configs {
		t.Run(tname, func(t *testing.T) {
			for _, tt := range tests {
				if tt.directoryOnly && cfg.RequiredGroupCheck != GroupCheckDirectory {
					continue
				}
				t.Run(tt.name, func(t *testing.T) {
					cfg := cfg
					cfg.RequiredGroup = tt.requiredGroup
					d := mustNew(t, cfg)
					// carol's groups then take several searches of
					// several pages each.
					d.pageSize, d.sidBatch = 250, 500
					u, _, err := d.Lookup(context.Background(), tt.who)
					if tt.wantErr == nil && err != nil {
						t.Fatalf("Lookup(%+v): %v", tt.who, err)
					}
					if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
						t.Fatalf("Lookup(%+v) = %+v, %v; want %v", tt.who, u, err, tt.wantErr)
					}
					if tt.check != nil {
						tt.check(t, u)
					}
				})
			}
		})
	}
}

func TestErrorMessagesAD(t *testing.T) {
	env := adtest.Env(t)
	cfg := adConfigs(t, env)["ldaps"]
	d := mustNew(t, cfg)
	bob := adPrincipal(t, env, "bob")
	alice := adPrincipal(t, env, "alice")
	huge := alice
	huge.Name = strings.Repeat("m", 90<<10)
	tests := []struct {
		who  Principal
		want []string
	}{
		{bob, []string{"ldap search for " + bob.SID + " (bob@EXAMPLE.TEST) at " + cfg.URL, env["AD_BOB_DN"], "account disabled"}},
		{Principal{Name: "nobody", Realm: "EXAMPLE.TEST", SID: bob.SID + "0"}, []string{"ldap search for " + bob.SID + "0 (nobody@EXAMPLE.TEST) at " + cfg.URL, "user not found"}},
		{Principal{Name: "dave", Realm: "EXAMPLE.TEST", SID: alice.SID}, []string{env["AD_ALICE_DN"], "the account with this SID is alice (alice@example.test), not dave"}},
		// A name from the ticket is quoted at most 256 bytes long.
		{huge, []string{"the account with this SID is alice", "…(truncated, 92160 bytes)"}},
	}
	for _, tt := range tests {
		_, _, err := d.Lookup(context.Background(), tt.who)
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Lookup(%.40s) error %.600v does not contain %q", tt.who.Name, err, w)
			}
		}
		if err != nil && len(err.Error()) > 1024 {
			t.Errorf("Lookup(%.40s) error is %d bytes", tt.who.Name, len(err.Error()))
		}
	}
}

func TestWrongBindPasswordAD(t *testing.T) {
	env := adtest.Env(t)
	for tname, cfg := range adConfigs(t, env) {
		t.Run(tname, func(t *testing.T) {
			cfg.BindPassword = "Wrong-Passw0rd-xyz"
			d := mustNew(t, cfg)
			_, _, err := d.Lookup(context.Background(), Principal{Name: "alice", Realm: env["AD_REALM"], SID: "S-1-5-21-1-2-3-1103"})
			if !errors.Is(err, ErrBind) || errors.Is(err, ErrNotFound) {
				t.Fatalf("Lookup = %v, want ErrBind", err)
			}
			if !strings.Contains(err.Error(), "data 52e") || strings.Contains(err.Error(), cfg.BindPassword) {
				t.Errorf("error %q: want AD's data 52e hint and no password", err)
			}
			if err := d.Check(context.Background()); !errors.Is(err, ErrBind) {
				t.Errorf("Check = %v, want ErrBind", err)
			}
			if _, err := d.ServerTime(context.Background()); !errors.Is(err, ErrBind) {
				t.Errorf("ServerTime = %v, want ErrBind", err)
			}
		})
	}
}

func TestWrongServerNameAD(t *testing.T) {
	env := adtest.Env(t)
	for _, tname := range []string{"ldaps", "starttls"} {
		t.Run(tname, func(t *testing.T) {
			cfg := adConfigs(t, env)[tname]
			cfg.TLS.ServerName = "wrong.example.test"
			d := mustNew(t, cfg)
			err := d.Check(context.Background())
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("Check = %v, want ErrUnavailable naming a certificate problem", err)
			}
		})
	}
}

func TestServerTimeAndCheckAD(t *testing.T) {
	env := adtest.Env(t)
	for tname, cfg := range adConfigs(t, env) {
		t.Run(tname, func(t *testing.T) {
			d := mustNew(t, cfg)
			if err := d.Check(context.Background()); err != nil {
				t.Fatalf("Check: %v", err)
			}
			// Again, now on the pooled connection (which Check re-binds).
			if err := d.Check(context.Background()); err != nil {
				t.Fatalf("second Check: %v", err)
			}
			st, err := d.ServerTime(context.Background())
			if err != nil {
				t.Fatalf("ServerTime: %v", err)
			}
			if off := time.Since(st); off > 2*time.Minute || off < -2*time.Minute {
				t.Errorf("server time %s is %s away from ours", st, off)
			}
		})
	}
}

// TestConcurrentLookupsAD runs 50 Lookups at once (run it with -race) and
// checks that the pool never opens more than PoolSize connections nor keeps
// more idle, reuses them afterwards, and that Close leaves no goroutine
// behind.
func TestConcurrentLookupsAD(t *testing.T) {
	env := adtest.Env(t)
	users := []Principal{adPrincipal(t, env, env["AD_ALICE_USER"]), adPrincipal(t, env, env["AD_DAVE_USER"])}
	u, err := url.Parse(env["AD_LDAPS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	relay := newRelay(t, u.Host)
	before := runtime.NumGoroutine()
	cfg := adConfigs(t, env)["ldaps"]
	cfg.URL = "ldaps://" + relay.addr
	cfg.RequiredGroup = env["AD_GROUP_DN"]
	cfg.PoolSize = 3
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			_, _, err := d.Lookup(context.Background(), users[i%len(users)])
			if err != nil {
				errs <- err
			}
			if n := d.idleCount(); n > cfg.PoolSize {
				errs <- errors.New("pool holds too many idle connections")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := d.idleCount(); n == 0 || n > cfg.PoolSize {
		t.Errorf("idle connections after the burst: %d, want 1..%d", n, cfg.PoolSize)
	}
	if n := relay.maxOpen(); n > cfg.PoolSize {
		t.Errorf("%d connections open at once, want at most PoolSize %d", n, cfg.PoolSize)
	}
	d.Close()
	if n := d.idleCount(); n != 0 {
		t.Errorf("idle connections after Close: %d", n)
	}
	waitGoroutines(t, before)
}

// TestStalePooledConnectionAD checks that a pooled connection that has been
// closed while idle (as when AD hangs up after MaxConnIdleTime) is discarded,
// not handed to Lookup.
func TestStalePooledConnectionAD(t *testing.T) {
	env := adtest.Env(t)
	d := mustNew(t, adConfigs(t, env)["plain"])
	if err := d.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	for _, c := range d.idle {
		c.Close() // as if the server had hung up
	}
	d.mu.Unlock()
	if _, _, err := d.Lookup(context.Background(), adPrincipal(t, env, "alice")); err != nil {
		t.Fatalf("Lookup after the pooled connection died: %v", err)
	}
}

// TestFailedRebindDiscardsConnectionAD checks that a pooled connection whose
// re-bind failed (AD then treats it as anonymous) is not reused: otherwise a
// later Lookup would see an empty directory and say "not found".
func TestFailedRebindDiscardsConnectionAD(t *testing.T) {
	env := adtest.Env(t)
	d := mustNew(t, adConfigs(t, env)["ldaps"])
	if err := d.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := d.idleCount(); n != 1 {
		t.Fatalf("idle connections after Check: %d, want 1", n)
	}
	good := d.cfg.BindPassword
	d.cfg.BindPassword = "Wrong-Passw0rd-xyz" // as if rotated in AD
	if err := d.Check(context.Background()); !errors.Is(err, ErrBind) {
		t.Fatalf("Check with a wrong password = %v, want ErrBind", err)
	}
	if n := d.idleCount(); n != 0 {
		t.Fatalf("idle connections after a failed re-bind: %d, want 0", n)
	}
	d.cfg.BindPassword = good
	if _, _, err := d.Lookup(context.Background(), adPrincipal(t, env, "alice")); err != nil {
		t.Fatalf("Lookup after the password is fixed: %v", err)
	}
}

// relay is a TCP relay to the directory that counts the connections open
// through it at once.
type relay struct {
	addr       string
	mu         sync.Mutex
	open, most int
}

func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.open++
			r.most = max(r.most, r.open)
			r.mu.Unlock()
			wg.Go(func() {
				var both sync.WaitGroup
				both.Go(func() { _, _ = io.Copy(up, c); up.Close() })
				_, _ = io.Copy(c, up)
				c.Close()
				both.Wait()
				r.mu.Lock()
				r.open--
				r.mu.Unlock()
			})
		}
	})
	return r
}

func (r *relay) maxOpen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.most
}

// TestServiceAccountAD: what the directory says of the SPNs and the
// service account, as iwalb doctor reads it: each SPN on svc_http alone,
// another SPN on svc_other, none for an unregistered one; svc_http's key
// version and AES-only encryption types; and a password that does not
// expire (the test domain's maxPwdAge is 0).
func TestServiceAccountAD(t *testing.T) {
	env := adtest.Env(t)
	d := mustNew(t, adConfigs(t, env)["ldaps"])
	ctx := context.Background()
	for spn, want := range map[string]string{
		"HTTP/auth1.example.test":   env["AD_SVC_USER"],
		"http/AUTH1.example.test":   env["AD_SVC_USER"], // AD ignores case
		env["AD_OTHER_SPN"]:         "svc_other",
		"HTTP/nowhere.example.test": "",
		"HTTP/x)(objectClass=*":     "", // escaped, not a filter
	} {
		owners, err := d.SPNOwners(ctx, spn)
		if err != nil || strings.Join(owners, ",") != want {
			t.Errorf("SPNOwners(%s) = %v, %v; want %q", spn, owners, err, want)
		}
	}
	a, err := d.AccountKeys(ctx, env["AD_SVC_USER"])
	if err != nil || a.KVNO < 1 || a.Enctypes != 0x18 || a.PasswordMaxAge != 0 {
		t.Errorf("AccountKeys(%s) = %+v, %v; want a key version, 0x18, a password that never expires", env["AD_SVC_USER"], a, err)
	}
	if _, err := d.AccountKeys(ctx, "nobody-at-all"); !errors.Is(err, ErrNotFound) {
		t.Errorf("AccountKeys of no account: %v", err)
	}
}
