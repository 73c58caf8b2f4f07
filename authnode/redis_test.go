package authnode

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/iwalb/iwalb/authnode/store"
	"github.com/iwalb/iwalb/authnode/store/redistest"
)

// These tests run the node's handlers on a real Redis (scripts/redis-up, or
// a private redis-server), with stand-ins for Kerberos and the directory;
// redis_ad_test.go runs the same flows with real tickets.

func TestMain(m *testing.M) {
	// go-redis logs each failed dial; the tests that stop Redis make many.
	store.LogRedisTo(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// redisNode is newTestNode with its tokens and sessions in r.
func redisNode(t *testing.T, r *store.Redis, logs *syncBuffer) *Node {
	t.Helper()
	var w io.Writer // nil: discarded
	if logs != nil {
		w = logs
	}
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, w)
	n.tokens, n.sessions = r.Store("tok"), r.Store("sess")
	n.storeCheck = r.Check
	n.ready.store.Store(&checkResult{Detail: "not checked yet"})
	return n
}

func openTestRedis(t *testing.T, cfg store.RedisConfig) *store.Redis {
	t.Helper()
	r, err := store.NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func validateSession(n *Node, sid string) *httptest.ResponseRecorder {
	body, _ := json.Marshal(map[string]string{"session": sid})
	r := httptest.NewRequest("POST", "/api/v1/sessions/validate", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+testAPIKey)
	w := httptest.NewRecorder()
	n.Handler().ServeHTTP(w, r)
	return w
}

// TestRedisTokensAcrossNodes: a token issued at one node redeems at the
// other once, of 50 concurrent redeems at both exactly one wins, and the
// session validates at either. Redis holds no secret.
func TestRedisTokensAcrossNodes(t *testing.T) {
	env := redistest.Env(t)
	cfg := redistest.Config(t, env)
	n1, n2 := redisNode(t, openTestRedis(t, cfg), nil), redisNode(t, openTestRedis(t, cfg), nil)

	token := tokenFrom(t, ssoRequest(n1, "Negotiate YQ=="))
	w := redeem(n2, testAPIKey, token)
	if w.Code != http.StatusOK {
		t.Fatalf("redeem at node 2 of node 1's token: %d %s", w.Code, w.Body)
	}
	var got redeemResponse
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got.SAMAccountName != "alice" {
		t.Fatalf("redeem answer %s: %v", w.Body, err)
	}
	for i, n := range []*Node{n1, n2} {
		if w := redeem(n, testAPIKey, token); w.Code != http.StatusNotFound {
			t.Fatalf("second redeem at node %d: %d, want 404", i+1, w.Code)
		}
	}
	if w := validateSession(n1, got.Session.ID); w.Code != http.StatusOK {
		t.Fatalf("node 2's session at node 1: %d %s", w.Code, w.Body)
	}

	token = tokenFrom(t, ssoRequest(n2, "Negotiate YQ=="))
	var ok, notFound atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 50 {
		n := []*Node{n1, n2}[i%2]
		wg.Go(func() {
			<-start
			switch c := redeem(n, testAPIKey, token).Code; c {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusNotFound:
				notFound.Add(1)
			default:
				t.Errorf("redeem: %d", c)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || notFound.Load() != 49 {
		t.Fatalf("50 concurrent redeems at two nodes: %d won, %d got 404; want 1 and 49", ok.Load(), notFound.Load())
	}

	// Keys and values hold hashes and identities, never a token or a
	// session id.
	c := redistest.Client(t, cfg.Addrs[0], cfg.Password)
	keys := c.Keys(context.Background(), cfg.Prefix+"*").Val()
	if len(keys) == 0 {
		t.Fatal("nothing in Redis under the prefix")
	}
	for _, k := range keys {
		v := c.Get(context.Background(), k).Val()
		for _, secret := range []string{token, got.Session.ID} {
			if strings.Contains(k, secret) || strings.Contains(v, secret) {
				t.Fatalf("a secret is in Redis under %s", k)
			}
		}
	}
}

// TestRedisDownAnswers503: with Redis stopped, a login and a redeem answer
// 503 store_unavailable (counted), session checks 503, and /readyz turns
// not ready; when Redis is back all of it recovers by itself.
func TestRedisDownAnswers503(t *testing.T) {
	env := redistest.Env(t)
	srv := redistest.StartServer(t, env, "pw-node-down")
	r := openTestRedis(t, store.RedisConfig{Addrs: []string{srv.Addr()}, Password: "pw-node-down",
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	var logs syncBuffer
	n := redisNode(t, r, &logs)
	n.checkNow(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); n.storeCheckLoop(ctx) }()
	t.Cleanup(func() { cancel(); <-loopDone })
	readyz := func() (int, map[string]any) {
		w := httptest.NewRecorder()
		n.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		var v map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &v)
		return w.Code, v
	}
	waitReady := func(want int) map[string]any {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			c, v := readyz()
			if c == want {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz still %d %v after 60 s, want %d", c, v, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitReady(http.StatusOK)

	pending := tokenFrom(t, ssoRequest(n, "Negotiate YQ=="))
	w := redeem(n, testAPIKey, tokenFrom(t, ssoRequest(n, "Negotiate YQ==")))
	var sess redeemResponse
	_ = json.Unmarshal(w.Body.Bytes(), &sess)

	srv.Stop()
	if w := ssoRequest(n, "Negotiate YQ=="); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "store_unavailable") {
		t.Fatalf("login with Redis stopped: %d %s", w.Code, w.Body)
	}
	for name, w := range map[string]*httptest.ResponseRecorder{
		"redeem": redeem(n, testAPIKey, pending), "session validate": validateSession(n, sess.Session.ID),
	} {
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"error":"store_unavailable"`) {
			t.Fatalf("%s with Redis stopped: %d %s", name, w.Code, w.Body)
		}
	}
	v := waitReady(http.StatusServiceUnavailable)
	if checks, _ := v["checks"].(map[string]any); checks["store"] != false || checks["ldap"] != true {
		t.Fatalf("/readyz with Redis stopped: %v; want the store check failing, the others passing", v)
	}
	if got := testutil.ToFloat64(n.metrics.logins.WithLabelValues("failure", "store_unavailable", "kerberos")); got != 1 {
		t.Fatalf("logins_total{failure,store_unavailable} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(n.metrics.redeemFailures.WithLabelValues("store_unavailable")); got != 1 {
		t.Fatalf("token_redeem_failures_total{store_unavailable} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(n.metrics.ready.WithLabelValues("overall")); got != 0 {
		t.Fatalf("ready{overall} = %v with Redis stopped", got)
	}
	if !strings.Contains(logs.String(), `msg="readiness check failing" check=store`) {
		t.Fatalf("the log does not say the store check fails:\n%s", logs.String())
	}

	srv.Start()
	waitReady(http.StatusOK)
	// A Redis restarted empty has forgotten the earlier token: 404, not 503.
	if w := redeem(n, testAPIKey, pending); w.Code != http.StatusNotFound {
		t.Fatalf("redeem of a token Redis lost: %d %s", w.Code, w.Body)
	}
	if w := redeem(n, testAPIKey, tokenFrom(t, ssoRequest(n, "Negotiate YQ=="))); w.Code != http.StatusOK {
		t.Fatalf("login and redeem after Redis came back: %d %s", w.Code, w.Body)
	}
}

// BenchmarkLoginAndRedeem is a login (token stored) and its redemption
// (token taken, session stored) through the handlers, with the in-memory
// store and with Redis.
func BenchmarkLoginAndRedeem(b *testing.B) {
	for _, kind := range []string{"memory", "redis"} {
		b.Run(kind, func(b *testing.B) {
			n := newTestNode(b, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, nil)
			if kind == "redis" {
				env := redistest.Env(b)
				r, err := store.NewRedis(redistest.Config(b, env))
				if err != nil {
					b.Fatal(err)
				}
				defer r.Close()
				n.tokens, n.sessions = r.Store("tok"), r.Store("sess")
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w := ssoRequest(n, "Negotiate YQ==")
					loc, _ := url.Parse(w.Header().Get("Location"))
					if c := redeem(n, testAPIKey, loc.Query().Get("ssoToken")).Code; c != http.StatusOK {
						b.Fatalf("redeem: %d", c)
					}
				}
			})
		})
	}
}
