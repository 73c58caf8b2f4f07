package authnode

import (
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/authnode/store"
	"github.com/iwalb/iwalb/authnode/store/redistest"
)

// These tests run two auth nodes in one process against the real test
// domain and a real Redis they share: tokens redeem at either node once,
// an authenticator accepted by one is refused by the other, and the nodes
// ride out Redis stopping and a Sentinel failover.

// nodeRedis is the auth node's view of a store configuration.
func nodeRedis(c store.RedisConfig) *RedisConfig {
	return &RedisConfig{RedisConfig: c}
}

// startRedisNodes starts two nodes sharing rc; edit may change both
// configurations further.
func startRedisNodes(t *testing.T, env map[string]string, rc *RedisConfig, edit func(*Config)) (*adNode, *adNode) {
	t.Helper()
	var nodes [2]*adNode
	for i := range nodes {
		nodes[i] = startADNode(t, env, func(c *Config, _ *Options) {
			c.Redis = rc
			// The DC is shared with other tests: a slow directory is not
			// what these tests are about.
			c.LDAP.Timeout = 30 * time.Second
			if edit != nil {
				edit(c)
			}
		})
	}
	return nodes[0], nodes[1]
}

// sso sends authz to a's /sso and returns the status, the failure reason
// (from the page) and the Location.
func (a *adNode) sso(t *testing.T, authz string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", a.url("auth1.example.test", "/sso"), nil)
	req.Header.Set("Authorization", authz)
	c := a.client()
	c.Timeout = time.Minute
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	_, reason, _ := strings.Cut(string(b), "Reason: <code>")
	reason, _, _ = strings.Cut(reason, "<")
	return resp.StatusCode, reason, resp.Header.Get("Location")
}

func TestADRedisTokenRedeemsOnceAcrossNodes(t *testing.T) {
	env := adtest.Env(t)
	renv := redistest.Env(t)
	n1, n2 := startRedisNodes(t, env, nodeRedis(redistest.Config(t, renv)), nil)
	cc := kinit(t, env, "alice", env["AD_ALICE_PASSWORD"])

	status, loc, body := n1.curlNegotiate(t, env, cc, "auth1.example.test")
	if status != http.StatusFound {
		t.Fatalf("login at node 1: %d %s\nlog:\n%s", status, body, n1.logs)
	}
	token := tokenOf(t, loc)
	code, id := n2.redeem(t, token)
	if code != http.StatusOK || id.SAMAccountName != "alice" || id.SID != adtest.ObjectSID(t, env, "alice") {
		t.Fatalf("redeem at node 2 of node 1's token: %d %+v", code, id)
	}
	for i, n := range []*adNode{n1, n2} {
		if code, _ := n.redeem(t, token); code != http.StatusNotFound {
			t.Fatalf("second redeem at node %d: %d, want 404", i+1, code)
		}
	}

	// 50 concurrent redeems of one token, half at each node.
	status, loc, body = n2.curlNegotiate(t, env, cc, "auth1.example.test")
	if status != http.StatusFound {
		t.Fatalf("login at node 2: %d %s", status, body)
	}
	token = tokenOf(t, loc)
	var won, notFound atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 50 {
		n := []*adNode{n1, n2}[i%2]
		wg.Go(func() {
			<-start
			switch code, id := n.redeem(t, token); {
			case code == http.StatusOK && id.SAMAccountName == "alice":
				won.Add(1)
			case code == http.StatusNotFound:
				notFound.Add(1)
			default:
				t.Errorf("redeem: %d %+v", code, id)
			}
		})
	}
	close(start)
	wg.Wait()
	if won.Load() != 1 || notFound.Load() != 49 {
		t.Fatalf("50 concurrent redeems at two nodes: %d won, %d got 404; want 1 and 49", won.Load(), notFound.Load())
	}
}

// TestADRedisReplayAcrossNodes: an Authorization header accepted by node 1
// and replayed to node 2 is refused as a replay; alice's replay quota
// counts her logins at both nodes.
func TestADRedisReplayAcrossNodes(t *testing.T) {
	env := adtest.Env(t)
	renv := redistest.Env(t)
	n1, n2 := startRedisNodes(t, env, nodeRedis(redistest.Config(t, renv)), func(c *Config) { c.ReplayQuota = 3 })
	cl := adtest.Login(t, env, "alice", env["AD_ALICE_PASSWORD"])
	fresh := func() string {
		return "Negotiate " + base64.StdEncoding.EncodeToString(adtest.NegotiateBlob(t, cl, "HTTP/auth1.example.test"))
	}

	authz := fresh()
	if status, reason, _ := n1.sso(t, authz); status != http.StatusFound {
		t.Fatalf("first use at node 1: %d %s\nlog:\n%s", status, reason, n1.logs)
	}
	if status, reason, _ := n2.sso(t, authz); status != http.StatusUnauthorized || reason != "replay" {
		t.Fatalf("the same header at node 2: %d %q, want 401 replay", status, reason)
	}
	if status, reason, _ := n1.sso(t, authz); status != http.StatusUnauthorized || reason != "replay" {
		t.Fatalf("the same header at node 1 again: %d %q, want 401 replay", status, reason)
	}
	// Quota 3: her first login, one more at each node, then no more.
	for i, n := range []*adNode{n2, n1} {
		if status, reason, _ := n.sso(t, fresh()); status != http.StatusFound {
			t.Fatalf("login %d: %d %s", i+2, status, reason)
		}
	}
	if status, reason, _ := n2.sso(t, fresh()); status != http.StatusTooManyRequests || reason != "replay_quota" {
		t.Fatalf("fourth login within the window at two nodes with quota 3: %d %q, want 429 replay_quota", status, reason)
	}
}

// TestADRedisStopsAndComesBack: with Redis stopped a login and a redeem
// answer 503 store_unavailable and /readyz is not ready; once Redis is
// started again, logins work without restarting the node.
func TestADRedisStopsAndComesBack(t *testing.T) {
	env := adtest.Env(t)
	renv := redistest.Env(t)
	srv := redistest.StartServer(t, renv, "pw-ad-down")
	n, _ := startRedisNodes(t, env, &RedisConfig{RedisConfig: store.RedisConfig{Addrs: []string{srv.Addr()}, Password: "pw-ad-down",
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second}}, nil)
	cc := kinit(t, env, "alice", env["AD_ALICE_PASSWORD"])
	readyz := func() (int, string) {
		resp, err := n.client().Get(n.url("auth1.example.test", "/readyz"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitReadyz := func(want int, what string) string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, body := readyz()
			if code == want {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz still %d %s after 60 s", what, code, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitReadyz(http.StatusOK, "Redis up")
	status, loc, body := n.curlNegotiate(t, env, cc, "auth1.example.test")
	if status != http.StatusFound {
		t.Fatalf("login with Redis up: %d %s", status, body)
	}
	pending := tokenOf(t, loc)

	srv.Stop()
	if status, _, body := n.curlNegotiate(t, env, cc, "auth1.example.test"); status != http.StatusServiceUnavailable || !strings.Contains(body, "store_unavailable") {
		t.Fatalf("login with Redis stopped: %d %s", status, body)
	}
	if code, _ := n.redeem(t, pending); code != http.StatusServiceUnavailable {
		t.Fatalf("redeem with Redis stopped: %d, want 503", code)
	}
	if body := waitReadyz(http.StatusServiceUnavailable, "Redis stopped"); !strings.Contains(body, `"store":false`) {
		t.Fatalf("/readyz with Redis stopped: %s", body)
	}

	srv.Start()
	waitReadyz(http.StatusOK, "Redis started again")
	status, loc, body = n.curlNegotiate(t, env, cc, "auth1.example.test")
	if status != http.StatusFound {
		t.Fatalf("login after Redis came back: %d %s\nlog:\n%s", status, body, n.logs)
	}
	if code, id := n.redeem(t, tokenOf(t, loc)); code != http.StatusOK || id.SAMAccountName != "alice" {
		t.Fatalf("redeem after Redis came back: %d %+v", code, id)
	}
}

// TestADRedisSentinelFailover: two nodes reach Redis through three
// Sentinels; the master is killed, the Sentinels promote the replica, and
// logins and redemptions resume by themselves. Every login in between is
// either a success or a 503 store_unavailable.
func TestADRedisSentinelFailover(t *testing.T) {
	env := adtest.Env(t)
	renv := redistest.Env(t)
	g := redistest.StartSentinels(t, renv, "pw-ad-sentinel")
	n1, n2 := startRedisNodes(t, env, &RedisConfig{RedisConfig: store.RedisConfig{Addrs: g.Addrs(), MasterName: redistest.MasterName, Password: g.Password,
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second}}, nil)
	cc := kinit(t, env, "alice", env["AD_ALICE_PASSWORD"])
	login := func(n *adNode) (int, string, string) {
		status, loc, body := n.curlNegotiate(t, env, cc, "auth1.example.test")
		if status != http.StatusFound && (status != http.StatusServiceUnavailable || !strings.Contains(body, "store_unavailable")) {
			t.Fatalf("login: %d %s", status, body)
		}
		return status, loc, body
	}
	if status, loc, body := login(n1); status != http.StatusFound {
		t.Fatalf("login before the failover: %d %s", status, body)
	} else if code, _ := n2.redeem(t, tokenOf(t, loc)); code != http.StatusOK {
		t.Fatalf("redeem before the failover: %d", code)
	}

	before := g.Master()
	g.KillMaster()
	t.Logf("failover: master %s killed, now %s", before, g.Master())
	// Each node in turn: logins resume, and the token redeems at the other.
	deadline := time.Now().Add(90 * time.Second)
	for i, n := range []*adNode{n1, n2} {
		other := []*adNode{n2, n1}[i]
		refused := 0
		for {
			status, loc, _ := login(n)
			if status == http.StatusFound {
				if code, id := other.redeem(t, tokenOf(t, loc)); code != http.StatusOK || id.SAMAccountName != "alice" {
					t.Fatalf("redeem after the failover: %d %+v", code, id)
				}
				break
			}
			refused++
			if time.Now().After(deadline) {
				t.Fatalf("node %d: no login succeeded within 90 s of the failover (%d refused)", i+1, refused)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("node %d: %d logins refused with 503 store_unavailable before it found the new master", i+1, refused)
	}
}
