package authnode

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/jcmturner/gokrb5/v8/client"

	"github.com/iwalb/iwalb/authnode/adtest"
)

// These tests sign in users of their own making (adtest.Admin creates and
// deletes them) and change them between the ticket and the login, against
// the real test domain.

// blobLogin sends one login with a fresh authenticator of cl and returns
// the status, the body and the headers.
func (a *adNode) blobLogin(t *testing.T, cl *client.Client) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", a.url("auth1.example.test", "/sso"), nil)
	req.Header.Set("Authorization", "Negotiate "+base64.StdEncoding.EncodeToString(adtest.NegotiateBlob(t, cl, "HTTP/auth1.example.test")))
	resp, err := a.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusFound {
		return resp.StatusCode, resp.Header.Get("Location"), resp.Header
	}
	return resp.StatusCode, string(b), resp.Header
}

// testUser is a user of the test's own, with a password.
type testUser struct {
	name, dn, password string
}

func newTestUser(t *testing.T, admin *adtest.Admin) testUser {
	t.Helper()
	name := adtest.UniqueName("iwu-")
	pw := "Iw-" + name + "-Pw1!"
	return testUser{name: name, dn: admin.CreateUser(name, pw), password: pw}
}

// TestADNestedGroupsFromTheTicket: dave is in lb-ops, which is nested in
// lb-users; his identity names both (and his primary group), from the
// PAC, and carries every SID of it.
func TestADNestedGroupsFromTheTicket(t *testing.T) {
	env := adtest.Env(t)
	a := startADNode(t, env, nil)
	status, loc, body := a.curlNegotiate(t, env, kinit(t, env, env["AD_DAVE_USER"], env["AD_DAVE_PASSWORD"]), "auth1.example.test")
	if status != http.StatusFound {
		t.Fatalf("dave: %d %s", status, body)
	}
	_, id := a.redeem(t, tokenOf(t, loc))
	for _, g := range []string{env["AD_NESTED_GROUP"], env["AD_GROUP"], "Domain Users"} {
		if !slices.Contains(id.Groups, g) {
			t.Errorf("dave's groups %v lack %s", id.Groups, g)
		}
	}
	for _, s := range []string{adtest.ObjectSID(t, env, env["AD_NESTED_GROUP"]), adtest.ObjectSID(t, env, env["AD_GROUP"]), "S-1-18-1"} {
		if !slices.Contains(id.GroupSIDs, s) {
			t.Errorf("dave's group SIDs %v lack %s", id.GroupSIDs, s)
		}
	}
	if !slices.IsSorted(id.Groups) || !slices.IsSorted(id.GroupSIDs) {
		t.Errorf("groups %v or SIDs %v not sorted", id.Groups, id.GroupSIDs)
	}
}

// TestADGroupJoinedAfterTheTicket: a user added to the required group after
// getting a ticket is refused under required_group_check ticket (the ticket
// says he is not a member) and admitted under directory; his next ticket
// admits him under both.
func TestADGroupJoinedAfterTheTicket(t *testing.T) {
	env := adtest.Env(t)
	admin := adtest.NewAdmin(t, env)
	groupDN := admin.CreateGroup(adtest.UniqueName("iwg-"))
	u := newTestUser(t, admin)
	byTicket := startADNode(t, env, func(c *Config, _ *Options) { c.LDAP.RequiredGroup = groupDN })
	byDirectory := startADNode(t, env, func(c *Config, _ *Options) {
		c.LDAP.RequiredGroup, c.LDAP.RequiredGroupCheck = groupDN, "directory"
	})

	old := adtest.Login(t, env, u.name, u.password)
	// The service ticket is fetched (and kept by the client) before the
	// user joins.
	if status, body, _ := byTicket.blobLogin(t, old); status != http.StatusForbidden || !strings.Contains(body, "not_in_group") {
		t.Fatalf("before joining: %d %s", status, body)
	}
	admin.Modify(groupDN, "add", "member", u.dn)

	if status, body, _ := byTicket.blobLogin(t, old); status != http.StatusForbidden || !strings.Contains(body, "not_in_group") {
		t.Errorf("ticket check, ticket from before joining: %d %s; want 403 not_in_group", status, body)
	}
	if status, body, _ := byDirectory.blobLogin(t, old); status != http.StatusFound {
		t.Errorf("directory check, ticket from before joining: %d %s; want 302", status, body)
	}
	fresh := adtest.Login(t, env, u.name, u.password)
	if status, body, _ := byTicket.blobLogin(t, fresh); status != http.StatusFound {
		t.Errorf("ticket check, ticket from after joining: %d %s; want 302", status, body)
	}
}

// TestADDisabledAfterTheTicket: a user disabled after getting a ticket is
// refused under either group check: every login reads the account.
func TestADDisabledAfterTheTicket(t *testing.T) {
	env := adtest.Env(t)
	admin := adtest.NewAdmin(t, env)
	groupDN := admin.CreateGroup(adtest.UniqueName("iwg-"))
	u := newTestUser(t, admin)
	admin.Modify(groupDN, "add", "member", u.dn)
	cl := adtest.Login(t, env, u.name, u.password)
	for _, check := range []string{"ticket", "directory"} {
		t.Run(check, func(t *testing.T) {
			a := startADNode(t, env, func(c *Config, _ *Options) {
				c.LDAP.RequiredGroup, c.LDAP.RequiredGroupCheck = groupDN, check
			})
			admin.SetDisabled(u.dn, false)
			if status, body, _ := a.blobLogin(t, cl); status != http.StatusFound {
				t.Fatalf("enabled: %d %s", status, body)
			}
			admin.SetDisabled(u.dn, true)
			if status, body, _ := a.blobLogin(t, cl); status != http.StatusForbidden || !strings.Contains(body, "user_disabled") {
				t.Fatalf("disabled after the ticket: %d %s; want 403 user_disabled", status, body)
			}
		})
	}
}

// TestADRequiredGroupDNCase: the required group written in other case
// still admits its members; it is the directory that compares the DN.
func TestADRequiredGroupDNCase(t *testing.T) {
	env := adtest.Env(t)
	for _, check := range []string{"ticket", "directory"} {
		t.Run(check, func(t *testing.T) {
			a := startADNode(t, env, func(c *Config, _ *Options) {
				c.LDAP.RequiredGroup, c.LDAP.RequiredGroupCheck = strings.ToUpper(env["AD_GROUP_DN"]), check
			})
			if rep := a.node.ready.last.Load(); !rep.Checks["ldap"].OK {
				t.Fatalf("readiness with the upper-case DN: %+v", rep)
			}
			cl := adtest.Login(t, env, env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
			if status, body, _ := a.blobLogin(t, cl); status != http.StatusFound {
				t.Fatalf("alice: %d %s", status, body)
			}
			cl = adtest.Login(t, env, env["AD_CAROL_USER"], env["AD_CAROL_PASSWORD"])
			if status, body, _ := a.blobLogin(t, cl); status != http.StatusForbidden || !strings.Contains(body, "not_in_group") {
				t.Fatalf("carol: %d %s", status, body)
			}
		})
	}
}

// TestADCarolsGroups: carol, in 1,100 groups, logs in and every one of them
// comes back by name, as the directory lists them; the first login asks
// for the names, the next costs one search.
func TestADCarolsGroups(t *testing.T) {
	env := adtest.Env(t)
	a := startADNode(t, env, func(c *Config, _ *Options) { c.LDAP.RequiredGroup = "" })
	want := inChainGroups(t, env, adtest.NewAdmin(t, env).DN(env["AD_CAROL_USER"]))
	want = append(want, "Domain Users") // her primary group, which member does not record
	sort.Strings(want)
	if n := adtest.Int(t, env, "AD_CAROL_GROUPS"); len(want) < n {
		t.Fatalf("the directory lists %d groups of carol, want at least %d", len(want), n)
	}

	cl := adtest.Login(t, env, env["AD_CAROL_USER"], env["AD_CAROL_PASSWORD"])
	for i, what := range []string{"cold", "warm"} {
		start := time.Now()
		status, loc, _ := a.blobLogin(t, cl)
		took := time.Since(start)
		if status != http.StatusFound {
			t.Fatalf("%s login: %d %s", what, status, loc)
		}
		_, id := a.redeem(t, tokenOf(t, loc))
		if !slices.Equal(id.Groups, want) {
			t.Fatalf("%s login: %d groups, the directory lists %d; first differences: %v", what, len(id.Groups), len(want), firstDiff(id.Groups, want))
		}
		if len(id.GroupSIDs) != len(want)+1 { // and S-1-18-1
			t.Errorf("%s login: %d group SIDs, want %d", what, len(id.GroupSIDs), len(want)+1)
		}
		ops := loginOps(t, a, i)
		if what == "warm" && ops != "1" {
			t.Errorf("warm login: ldap_ops=%s, want 1", ops)
		}
		t.Logf("%s login of carol (%d groups): %s, %s LDAP operations", what, len(id.Groups), took.Round(time.Millisecond), ops)
	}
}

// loginOps returns the ldap_ops of the i-th successful login in a's log.
func loginOps(t *testing.T, a *adNode, i int) string {
	t.Helper()
	var ops []string
	for _, l := range strings.Split(a.logs.String(), "\n") {
		if strings.Contains(l, "msg=login ") && strings.Contains(l, " outcome=success") {
			_, v, _ := strings.Cut(l, " ldap_ops=")
			v, _, _ = strings.Cut(v, " ")
			ops = append(ops, v)
		}
	}
	if i >= len(ops) {
		t.Fatalf("no login %d in the log:\n%s", i, a.logs)
	}
	return ops[i]
}

// inChainGroups lists the sAMAccountName of every group under the base DN
// that has dn as a member, nesting included: the whole-subtree search the
// node no longer makes.
func inChainGroups(t *testing.T, env map[string]string, dn string) []string {
	t.Helper()
	c, err := ldap.DialURL(env["AD_LDAP_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(env["AD_BIND_DN"], env["AD_BIND_PASSWORD"]); err != nil {
		t.Fatal(err)
	}
	res, err := c.SearchWithPaging(ldap.NewSearchRequest(env["AD_BASE_DN"], ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 0, false, "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:="+ldap.EscapeFilter(dn)+"))",
		[]string{"sAMAccountName"}, nil), 500)
	if err != nil {
		t.Fatalf("in-chain group search: %v", err)
	}
	var out []string
	for _, e := range res.Entries {
		out = append(out, e.GetAttributeValue("sAMAccountName"))
	}
	return out
}

func firstDiff(got, want []string) []string {
	var d []string
	for _, g := range got {
		if !slices.Contains(want, g) {
			d = append(d, "+"+g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			d = append(d, "-"+w)
		}
	}
	return d[:min(len(d), 10)]
}

// delayingForwarder relays a loopback port to the directory and holds every
// answer back for a delay that the test sets: a directory that is up but
// slow. It can also be stopped and started, as a directory that goes down.
type delayingForwarder struct {
	*tcpForwarder
	delay atomic.Int64 // nanoseconds
}

func newDelayingForwarder(t *testing.T, target string) *delayingForwarder {
	f := &delayingForwarder{tcpForwarder: &tcpForwarder{t: t, target: target, addr: "127.0.0.1:0"}}
	f.relay = func(c, up net.Conn) {
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 {
					time.Sleep(time.Duration(f.delay.Load()))
					if _, werr := c.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			c.Close()
		}()
	}
	f.start()
	t.Cleanup(f.stop)
	return f
}

// TestADSlowIsNotDown: the same directory, reached through a relay, is
// answered for as slow (503 ldap_timeout) when it holds its answers past
// the timeout, as busy (503 ldap_busy, Retry-After) when the node's one
// connection is taken by a slow login, and as down (503 ldap_unavailable)
// when it refuses connections; the node recovers by itself each time.
func TestADSlowIsNotDown(t *testing.T) {
	env := adtest.Env(t)
	u, err := url.Parse(env["AD_LDAPS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	fwd := newDelayingForwarder(t, u.Host)
	a := startADNode(t, env, func(c *Config, _ *Options) {
		c.LDAP.URL = "ldaps://" + fwd.addr
		c.LDAP.Timeout = 3 * time.Second
		c.LDAP.PoolSize, c.LDAP.QueueTimeout = 1, 300*time.Millisecond
	})
	cl := adtest.Login(t, env, env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
	login := func() (int, string, http.Header) { return a.blobLogin(t, cl) }
	if status, body, _ := login(); status != http.StatusFound {
		t.Fatalf("directory up: %d %s", status, body)
	}

	fwd.delay.Store(int64(5 * time.Second))
	if status, body, _ := login(); status != http.StatusServiceUnavailable || !strings.Contains(body, "ldap_timeout") {
		t.Errorf("directory slower than the timeout: %d %s; want 503 ldap_timeout", status, body)
	}
	fwd.delay.Store(0)
	if status, body, _ := login(); status != http.StatusFound {
		t.Fatalf("directory fast again: %d %s", status, body)
	}

	// One login holds the only connection for two seconds; the other
	// waits 300 ms for it and is told the node is busy.
	fwd.delay.Store(int64(2 * time.Second))
	var wg sync.WaitGroup
	results := make([]string, 2)
	for i := range 2 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 300 * time.Millisecond)
			status, body, h := login()
			results[i] = fmt.Sprintf("%d %s %s", status, reasonOf(body), h.Get("Retry-After"))
		})
	}
	wg.Wait()
	slices.Sort(results)
	if !slices.Equal(results, []string{"302  ", "503 ldap_busy 1"}) {
		t.Errorf("two logins on one slow connection: %q; want one 302 and one 503 ldap_busy with Retry-After 1", results)
	}

	fwd.delay.Store(0)
	fwd.stop()
	if status, body, _ := login(); status != http.StatusServiceUnavailable || !strings.Contains(body, "ldap_unavailable") {
		t.Errorf("directory down: %d %s; want 503 ldap_unavailable", status, body)
	}
	fwd.start()
	if status, body, _ := login(); status != http.StatusFound {
		t.Errorf("directory back: %d %s", status, body)
	}
}

// reasonOf picks the failure reason out of a login page ("" for none).
func reasonOf(body string) string {
	for _, r := range []string{"ldap_busy", "ldap_timeout", "ldap_unavailable"} {
		if strings.Contains(body, r) {
			return r
		}
	}
	return ""
}

// TestADEightKeepAliveClients: eight clients on keep-alive connections log
// in over and over with the default pool: not one is refused, and with the
// SID cache warm each login costs one LDAP search (and a bind for each
// connection the pool opens).
func TestADEightKeepAliveClients(t *testing.T) {
	env := adtest.Env(t)
	admin := adtest.NewAdmin(t, env)
	groupDN := admin.CreateGroup(adtest.UniqueName("iwg-"))
	const clients, each = 8, 10
	var users []*client.Client
	for range clients {
		u := newTestUser(t, admin)
		admin.Modify(groupDN, "add", "member", u.dn)
		users = append(users, adtest.Login(t, env, u.name, u.password))
	}
	a := startADNode(t, env, func(c *Config, _ *Options) { c.LDAP.RequiredGroup = groupDN })
	// Fresh authenticators, made before the clock starts.
	blobs := make([][]string, clients)
	for i, cl := range users {
		for range each + 1 {
			blobs[i] = append(blobs[i], "Negotiate "+base64.StdEncoding.EncodeToString(adtest.NegotiateBlob(t, cl, "HTTP/auth1.example.test")))
		}
	}
	send := func(c *http.Client, authz string) (int, string) {
		req, _ := http.NewRequest("GET", a.url("auth1.example.test", "/sso"), nil)
		req.Header.Set("Authorization", authz)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	// One login per user warms the pool and the SID cache.
	for i := range clients {
		if status, body := send(a.client(), blobs[i][0]); status != http.StatusFound {
			t.Fatalf("warm-up login: %d %s", status, body)
		}
	}
	var mu sync.Mutex
	var took []time.Duration
	refused := map[string]int{}
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			c := a.client() // one keep-alive connection per client
			for _, authz := range blobs[i][1:] {
				start := time.Now()
				status, body := send(c, authz)
				mu.Lock()
				took = append(took, time.Since(start))
				if status != http.StatusFound {
					refused[fmt.Sprint(status, " ", reasonOf(body))]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(refused) > 0 {
		t.Errorf("%d concurrent clients: refused %v", clients, refused)
	}
	// Each login searches once; the first on each of the pool's
	// connections also binds it.
	binds := 0
	for i := clients; i < clients*(each+1); i++ {
		switch ops := loginOps(t, a, i); ops {
		case "1":
		case "2":
			binds++
		default:
			t.Errorf("login %d: ldap_ops=%s, want 1 (or 2 with a bind)", i, ops)
		}
	}
	if binds > clients {
		t.Errorf("%d logins bound a connection, want at most the pool's %d", binds, clients)
	}
	slices.Sort(took)
	t.Logf("%d logins from %d keep-alive clients: p50 %s, p99 %s", len(took), clients,
		took[len(took)/2].Round(time.Millisecond), took[len(took)*99/100].Round(time.Millisecond))
}
