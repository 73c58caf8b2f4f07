package store_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iwalb/iwalb/authnode/negotiate"
	"github.com/iwalb/iwalb/authnode/oidc"
	"github.com/iwalb/iwalb/authnode/store"
	"github.com/iwalb/iwalb/authnode/store/redistest"
)

// These tests run the Redis store against a real redis-server: the one
// scripts/redis-up starts (IWALB_REDIS_ENV), and private ones started from
// the same binary when a test stops, fills or fails over its Redis.

func TestMain(m *testing.M) {
	// go-redis logs each failed dial; the tests that stop Redis make many.
	store.LogRedisTo(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

func openRedis(t testing.TB, cfg store.RedisConfig) *store.Redis {
	t.Helper()
	r, err := store.NewRedis(cfg)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// twoNodes returns two connections to the same Redis with one prefix, as
// two auth nodes have.
func twoNodes(t testing.TB, cfg store.RedisConfig) (*store.Redis, *store.Redis) {
	return openRedis(t, cfg), openRedis(t, cfg)
}

func TestRedisStoreRoundTrip(t *testing.T) {
	env := redistest.Env(t)
	cfg := redistest.Config(t, env)
	a, b := twoNodes(t, cfg)
	ctx := context.Background()
	ta, tb := a.Store("tok"), b.Store("tok")

	if err := ta.Put(ctx, "k1", []byte("identity of alice"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := tb.Get(ctx, "k1"); err != nil || string(v) != "identity of alice" {
		t.Fatalf("Get at the other node: %q, %v", v, err)
	}
	if v, err := tb.Take(ctx, "k1"); err != nil || string(v) != "identity of alice" {
		t.Fatalf("Take at the other node: %q, %v", v, err)
	}
	for _, s := range []*store.RedisStore{ta, tb} {
		if _, err := s.Take(ctx, "k1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second Take: %v, want ErrNotFound (taken, not expired)", err)
		}
		if _, err := s.Get(ctx, "k1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get after Take: %v, want ErrNotFound", err)
		}
	}
	if _, err := ta.Get(ctx, "never"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}

	// Spaces are apart: a session key is not a token key.
	if err := a.Store("sess").Put(ctx, "k2", []byte("session"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.Get(ctx, "k2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("token store sees a session: %v", err)
	}
	// Put replaces; Delete forgets value and marker.
	if err := tb.Put(ctx, "k3", []byte("one"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := ta.Put(ctx, "k3", []byte("two"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, _ := tb.Get(ctx, "k3"); string(v) != "two" {
		t.Fatalf("after a second Put: %q", v)
	}
	if err := tb.Delete(ctx, "k3"); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.Get(ctx, "k3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after Delete: %v, want ErrNotFound", err)
	}
	if err := ta.Delete(ctx, "k3"); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
	if err := ta.Put(ctx, "k4", []byte("x"), 0); err == nil {
		t.Fatal("Put with ttl 0 succeeded")
	}
}

// TestRedisKeysArePrefixedAndExpire: every key starts with the prefix, a
// value and its marker share a hash tag, and both carry their TTL in Redis.
func TestRedisKeysArePrefixedAndExpire(t *testing.T) {
	env := redistest.Env(t)
	cfg := redistest.Config(t, env)
	r := openRedis(t, cfg)
	ctx := context.Background()
	const key = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
	if err := r.Store("tok").Put(ctx, key, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := r.Store("tok").Put(ctx, "odd}{key", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	c := redistest.Client(t, cfg.Addrs[0], cfg.Password)
	keys, err := c.Keys(ctx, cfg.Prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{cfg.Prefix + "tok:{" + key + "}": true, cfg.Prefix + "tok:{" + key + "}:exp": true}
	tags := map[string]int{}
	for _, k := range keys {
		if !strings.HasPrefix(k, cfg.Prefix) {
			t.Errorf("key %q lacks the prefix %q", k, cfg.Prefix)
		}
		delete(want, k)
		open, close := strings.IndexByte(k, '{'), strings.IndexByte(k, '}')
		if open < 0 || close < open+2 {
			t.Errorf("key %q has no hash tag", k)
			continue
		}
		tags[k[open+1:close]]++
	}
	if len(want) != 0 || len(keys) != 4 {
		t.Fatalf("keys %q; missing %v", keys, want)
	}
	for tag, n := range tags {
		if n != 2 {
			t.Errorf("hash tag %q is on %d keys, want a value and its marker", tag, n)
		}
	}
	base := cfg.Prefix + "tok:{" + key + "}"
	if d := c.PTTL(ctx, base).Val(); d <= 50*time.Second || d > time.Minute {
		t.Errorf("value TTL %s, want about 1m", d)
	}
	if d := c.PTTL(ctx, base+":exp").Val(); d <= store.ExpiredGrace || d > store.ExpiredGrace+time.Minute {
		t.Errorf("marker TTL %s, want about 1m plus the %s grace", d, store.ExpiredGrace)
	}
}

// TestRedisExpiredIsToldApart: once a value's TTL passes in Redis, Get and
// Take answer ErrExpired (the node's 410), not ErrNotFound.
func TestRedisExpiredIsToldApart(t *testing.T) {
	env := redistest.Env(t)
	r := openRedis(t, redistest.Config(t, env))
	ctx := context.Background()
	s := r.Store("tok")
	if err := s.Put(ctx, "short", []byte("v"), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Get(ctx, "short")
		if errors.Is(err, store.ErrExpired) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("Get: %v; want the value, then ErrExpired", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := s.Take(ctx, "short"); !errors.Is(err, store.ErrExpired) {
		t.Fatalf("Take of an expired key: %v, want ErrExpired", err)
	}
	if err := s.Put(ctx, "short", []byte("again"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Take(ctx, "short"); err != nil || string(v) != "again" {
		t.Fatalf("reused key: %q, %v", v, err)
	}
}

// TestRedisTakeExactlyOnceAcrossNodes: 50 concurrent Takes of each token,
// half through each of two connections: exactly one gets it.
func TestRedisTakeExactlyOnceAcrossNodes(t *testing.T) {
	env := redistest.Env(t)
	a, b := twoNodes(t, redistest.Config(t, env))
	ctx := context.Background()
	const tokens, takers = 20, 50
	for i := range tokens {
		if err := a.Store("tok").Put(ctx, fmt.Sprint("t", i), []byte(fmt.Sprint("v", i)), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for i := range tokens {
		var won, lost atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j := range takers {
			s := a.Store("tok")
			if j%2 == 1 {
				s = b.Store("tok")
			}
			wg.Go(func() {
				<-start
				v, err := s.Take(ctx, fmt.Sprint("t", i))
				switch {
				case err == nil && string(v) == fmt.Sprint("v", i):
					won.Add(1)
				case errors.Is(err, store.ErrNotFound):
					lost.Add(1)
				default:
					t.Errorf("Take: %q, %v", v, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if won.Load() != 1 || lost.Load() != takers-1 {
			t.Fatalf("token %d: %d won, %d not found; want 1 and %d", i, won.Load(), lost.Load(), takers-1)
		}
	}
}

func rk(client string, i int) negotiate.ReplayKey {
	return negotiate.ReplayKey{Client: client, CTime: 1_700_000_000 + int64(i), Cusec: int32(i), Key: 7}
}

// TestRedisReplayAcrossNodes: an authenticator recorded through one node is
// a replay through the other; a client's quota counts its entries at both,
// frees as they expire, and costs no other client anything.
func TestRedisReplayAcrossNodes(t *testing.T) {
	env := redistest.Env(t)
	cfg := redistest.Config(t, env)
	a, b := twoNodes(t, cfg)
	ra, rb := a.ReplayCache(3), b.ReplayCache(3)
	ctx := context.Background()
	t0 := time.Now()
	record := func(c negotiate.ReplayStore, k negotiate.ReplayKey, now, until time.Time, want negotiate.ReplayResult) time.Duration {
		t.Helper()
		res, retry, err := c.Record(ctx, k, now, until)
		if err != nil || res != want {
			t.Fatalf("Record %+v at +%s: %v, %v; want %v", k, now.Sub(t0), res, err, want)
		}
		return retry
	}
	record(ra, rk("alice", 0), t0, t0.Add(time.Minute), negotiate.ReplayRecorded)
	record(rb, rk("alice", 0), t0.Add(time.Second), t0.Add(time.Minute), negotiate.ReplayReplayed)
	// The same time from another key (another service account) is not a replay.
	other := rk("alice", 0)
	other.Key = 8
	record(rb, other, t0, t0.Add(2*time.Minute), negotiate.ReplayRecorded)
	record(rb, rk("alice", 1), t0, t0.Add(3*time.Minute), negotiate.ReplayRecorded)
	retry := record(ra, rk("alice", 2), t0.Add(10*time.Second), t0.Add(3*time.Minute), negotiate.ReplayOverQuota)
	// Entries are kept to the millisecond, rounded up.
	if retry < 50*time.Second || retry > 50*time.Second+time.Millisecond {
		t.Fatalf("over quota: retry after %s, want 50s (when the first entry expires)", retry)
	}
	record(ra, rk("bob", 0), t0, t0.Add(time.Minute), negotiate.ReplayRecorded)
	// Past the first entry's last instant, a slot is free, and that
	// authenticator is forgotten.
	later := t0.Add(time.Minute + 2*time.Millisecond) // kept to the ms, rounded up
	record(ra, rk("alice", 2), later, later.Add(time.Minute), negotiate.ReplayRecorded)
	record(rb, rk("alice", 3), later, later.Add(time.Minute), negotiate.ReplayOverQuota)
	record(rb, rk("alice", 1), later, later.Add(time.Minute), negotiate.ReplayReplayed)

	// The client's set lives as long as its last entry, in Redis.
	c := redistest.Client(t, cfg.Addrs[0], cfg.Password)
	keys, err := c.Keys(ctx, cfg.Prefix+"replay:{*}").Result()
	if err != nil || len(keys) != 2 {
		t.Fatalf("replay keys %q, %v; want one per client", keys, err)
	}
	for _, k := range keys {
		if d := c.PTTL(ctx, k).Val(); d <= 0 || d > 4*time.Minute {
			t.Errorf("%s expires in %s, want within its last entry's time plus a second", k, d)
		}
	}
}

// TestRedisReplayConcurrent: of 50 concurrent records of one authenticator
// through two nodes exactly one is recorded; of 50 distinct authenticators
// of one client with quota 10, exactly 10.
func TestRedisReplayConcurrent(t *testing.T) {
	env := redistest.Env(t)
	a, b := twoNodes(t, redistest.Config(t, env))
	caches := []*store.RedisReplay{a.ReplayCache(10), b.ReplayCache(10)}
	now := time.Now()
	run := func(key func(i int) negotiate.ReplayKey) map[negotiate.ReplayResult]int {
		var mu sync.Mutex
		got := map[negotiate.ReplayResult]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 50 {
			wg.Go(func() {
				<-start
				res, _, err := caches[i%2].Record(context.Background(), key(i), now, now.Add(5*time.Minute))
				if err != nil {
					t.Errorf("Record: %v", err)
				}
				mu.Lock()
				got[res]++
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		return got
	}
	if got := run(func(int) negotiate.ReplayKey { return rk("carol", 0) }); got[negotiate.ReplayRecorded] != 1 || got[negotiate.ReplayReplayed] != 49 {
		t.Fatalf("one authenticator 50 times: %v; want 1 recorded, 49 replays", got)
	}
	if got := run(func(i int) negotiate.ReplayKey { return rk("dave", i) }); got[negotiate.ReplayRecorded] != 10 || got[negotiate.ReplayOverQuota] != 40 {
		t.Fatalf("50 authenticators with quota 10: %v; want 10 recorded, 40 over quota", got)
	}
}

// TestRedisTLSAndAuth: the store reaches Redis over TLS, verifying it by
// the CA and server name, with or without a client certificate, as the
// default user or a named one; a wrong password or name is an unavailable
// store.
func TestRedisTLSAndAuth(t *testing.T) {
	env := redistest.Env(t)
	if env["IWALB_REDIS_TLS_ADDR"] == "" {
		t.Skip("the test Redis has no TLS port")
	}
	pem, err := os.ReadFile(env["IWALB_REDIS_CA_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair(env["IWALB_REDIS_CLIENT_CERT"], env["IWALB_REDIS_CLIENT_KEY"])
	if err != nil {
		t.Fatal(err)
	}
	password := redistest.Password(t, env)
	tlsCfg := func(name string, certs ...tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: pool, ServerName: name, Certificates: certs, MinVersion: tls.VersionTLS12}
	}
	for _, c := range []struct {
		name     string
		cfg      store.RedisConfig
		fails    bool
		wrongPwd bool
	}{
		{name: "TLS", cfg: store.RedisConfig{TLS: tlsCfg(env["IWALB_REDIS_TLS_SERVER_NAME"]), Password: password}},
		{name: "TLS with a client certificate, as a named user", cfg: store.RedisConfig{
			TLS: tlsCfg(env["IWALB_REDIS_TLS_SERVER_NAME"], cert), Username: env["IWALB_REDIS_USERNAME"], Password: password}},
		{name: "TLS to a name the certificate lacks", cfg: store.RedisConfig{TLS: tlsCfg("other.test"), Password: password}, fails: true},
		{name: "TLS without the CA", cfg: store.RedisConfig{TLS: &tls.Config{ServerName: env["IWALB_REDIS_TLS_SERVER_NAME"]}, Password: password}, fails: true},
		{name: "wrong password", cfg: store.RedisConfig{TLS: tlsCfg(env["IWALB_REDIS_TLS_SERVER_NAME"]), Password: "wrong"}, fails: true},
		{name: "unknown user", cfg: store.RedisConfig{TLS: tlsCfg(env["IWALB_REDIS_TLS_SERVER_NAME"]), Username: "mallory", Password: password}, fails: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Addrs = []string{env["IWALB_REDIS_TLS_ADDR"]}
			c.cfg.Prefix = redistest.Prefix(t)
			r := openRedis(t, c.cfg)
			ctx := context.Background()
			err := r.Check(ctx)
			perr := r.Store("tok").Put(ctx, "k", []byte("v"), time.Minute)
			if c.fails {
				if !errors.Is(err, store.ErrUnavailable) || !errors.Is(perr, store.ErrUnavailable) {
					t.Fatalf("Check: %v; Put: %v; want both to wrap ErrUnavailable", err, perr)
				}
				return
			}
			if err != nil || perr != nil {
				t.Fatalf("Check: %v; Put: %v", err, perr)
			}
			if v, err := r.Store("tok").Take(ctx, "k"); err != nil || string(v) != "v" {
				t.Fatalf("Take: %q, %v", v, err)
			}
		})
	}
}

// TestRedisDownAndBack: with its Redis stopped every operation fails with
// ErrUnavailable, within the configured timeouts; once Redis is back the
// same store works again by itself.
func TestRedisDownAndBack(t *testing.T) {
	env := redistest.Env(t)
	srv := redistest.StartServer(t, env, "pw-down-and-back")
	r := openRedis(t, store.RedisConfig{Addrs: []string{srv.Addr()}, Password: "pw-down-and-back",
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	ctx := context.Background()
	s := r.Store("tok")
	if err := s.Put(ctx, "before", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	start := time.Now()
	checks := map[string]error{"Check": r.Check(ctx), "Put": s.Put(ctx, "k", []byte("v"), time.Minute)}
	_, checks["Get"] = s.Get(ctx, "before")
	_, checks["Take"] = s.Take(ctx, "before")
	checks["Delete"] = s.Delete(ctx, "before")
	_, _, checks["Record"] = r.ReplayCache(5).Record(ctx, rk("alice", 0), time.Now(), time.Now().Add(time.Minute))
	for op, err := range checks {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with Redis stopped: %v, want ErrUnavailable", op, err)
		}
	}
	// Each operation is bounded by the sum of the timeouts (6 s); a hang
	// would take far longer.
	if took := time.Since(start); took > time.Minute {
		t.Errorf("six operations against a stopped Redis took %s", took)
	}
	srv.Start()
	deadline := time.Now().Add(30 * time.Second)
	for r.Check(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the store did not recover within 30 s of Redis coming back: %v", r.Check(ctx))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.Put(ctx, "after", []byte("v2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Take(ctx, "after"); err != nil || string(v) != "v2" {
		t.Fatalf("after Redis came back: %q, %v", v, err)
	}
}

// TestRedisSlowIsUnavailable: a Redis that does not answer (paused) fails
// each operation with ErrUnavailable once the configured timeouts pass,
// not when Redis wakes up; then it works again.
func TestRedisSlowIsUnavailable(t *testing.T) {
	env := redistest.Env(t)
	srv := redistest.StartServer(t, env, "pw-slow")
	r := openRedis(t, store.RedisConfig{Addrs: []string{srv.Addr()}, Password: "pw-slow",
		DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	s := r.Store("tok")
	if err := s.Put(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	const pause = 6 * time.Second
	c := redistest.Client(t, srv.Addr(), "pw-slow")
	if err := c.Do(ctx, "CLIENT", "PAUSE", pause.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	_, err := s.Take(ctx, "k")
	if took := time.Since(paused); !errors.Is(err, store.ErrUnavailable) || took > pause/2 {
		t.Fatalf("Take from a paused Redis: %v after %s; want ErrUnavailable well before the %s pause ends", err, took, pause)
	}
	// A paused Redis pauses every client, UNPAUSE too: wait it out.
	time.Sleep(time.Until(paused.Add(pause)))
	if v, err := s.Take(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("Take once Redis answers again: %q, %v (the failed Take must not have taken it)", v, err)
	}
}

// TestRedisFullWritesNothing: a Redis past its maxmemory (noeviction)
// refuses a Put and a replay record whole, with ErrFull: nothing of them
// is left. Taking and deleting still work, and free room.
func TestRedisFullWritesNothing(t *testing.T) {
	env := redistest.Env(t)
	srv := redistest.StartServer(t, env, "pw-full")
	r := openRedis(t, store.RedisConfig{Addrs: []string{srv.Addr()}, Password: "pw-full"})
	ctx := context.Background()
	s := r.Store("sess")
	value := make([]byte, 64<<10)
	for i := range 40 { // 2.5 MiB
		if err := s.Put(ctx, fmt.Sprint("k", i), value, time.Hour); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
	}
	c := redistest.Client(t, srv.Addr(), "pw-full")
	if err := c.ConfigSet(ctx, "maxmemory", "1mb").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "refused", []byte("v"), time.Hour); !errors.Is(err, store.ErrFull) {
		t.Fatalf("Put past maxmemory: %v, want ErrFull", err)
	}
	if n := c.Exists(ctx, "iwalb:sess:{refused}", "iwalb:sess:{refused}:exp").Val(); n != 0 {
		t.Fatalf("the refused Put left %d of its two keys", n)
	}
	if _, _, err := r.ReplayCache(5).Record(ctx, rk("alice", 0), time.Now(), time.Now().Add(time.Minute)); !errors.Is(err, store.ErrFull) {
		t.Fatalf("replay record past maxmemory: %v, want ErrFull", err)
	}
	if keys := c.Keys(ctx, "iwalb:replay:*").Val(); len(keys) != 0 {
		t.Fatalf("the refused record left %q", keys)
	}
	if v, err := s.Take(ctx, "k0"); err != nil || len(v) != len(value) {
		t.Fatalf("Take past maxmemory: %d bytes, %v", len(v), err)
	}
	if err := s.Delete(ctx, "k1"); err != nil {
		t.Fatalf("Delete past maxmemory: %v", err)
	}
}

// TestRedisSentinelFailover: through Sentinels, the store follows the
// master: after the master is killed and a replica promoted, operations
// work again without a new store.
func TestRedisSentinelFailover(t *testing.T) {
	env := redistest.Env(t)
	g := redistest.StartSentinels(t, env, "pw-sentinel")
	r := openRedis(t, store.RedisConfig{Addrs: g.Addrs(), MasterName: redistest.MasterName, Password: g.Password})
	ctx := context.Background()
	s := r.Store("tok")
	if err := s.Put(ctx, "before", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	old := g.Master()
	g.KillMaster()
	if g.Master() == old {
		t.Fatal("no failover")
	}
	deadline := time.Now().Add(60 * time.Second)
	var err error
	for {
		if err = s.Put(ctx, "after", []byte("v2"), time.Minute); err == nil {
			break
		}
		if !errors.Is(err, store.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Put after the failover: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v, err := s.Take(ctx, "after"); err != nil || string(v) != "v2" {
		t.Fatalf("Take after the failover: %q, %v", v, err)
	}
	if err := r.Check(ctx); err != nil {
		t.Fatalf("Check after the failover: %v", err)
	}
}

// TestRedisCluster: on a Redis Cluster of three masters the keys spread
// over the nodes, each script's keys in one slot (their hash tag), and a
// token still redeems exactly once across two connections; the replay
// cache and the readiness check work there too.
func TestRedisCluster(t *testing.T) {
	env := redistest.Env(t)
	addrs := redistest.StartCluster(t, env, "pw-cluster")
	cfg := store.RedisConfig{Addrs: addrs, Password: "pw-cluster"}
	a, b := twoNodes(t, cfg)
	ctx := context.Background()
	if err := a.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	const tokens = 64
	for i := range tokens {
		if err := a.Store("tok").Put(ctx, fmt.Sprint("t", i), []byte("v"), time.Minute); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
	}
	held := 0
	for _, addr := range addrs {
		if n := redistest.Client(t, addr, "pw-cluster").DBSize(ctx).Val(); n > 0 {
			held++
			if n%2 != 0 {
				t.Errorf("%s holds %d keys: a value and its marker were split", addr, n)
			}
		}
	}
	if held < 2 {
		t.Fatalf("%d tokens landed on %d of 3 nodes", tokens, held)
	}
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range tokens {
		for _, r := range []*store.Redis{a, b} {
			wg.Go(func() {
				if _, err := r.Store("tok").Take(ctx, fmt.Sprint("t", i)); err == nil {
					won.Add(1)
				} else if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Take: %v", err)
				}
			})
		}
	}
	wg.Wait()
	if won.Load() != tokens {
		t.Fatalf("%d tokens, each taken at once at two nodes: %d Takes won, want %d", tokens, won.Load(), tokens)
	}
	now := time.Now()
	if res, _, err := a.ReplayCache(5).Record(ctx, rk("alice", 0), now, now.Add(time.Minute)); err != nil || res != negotiate.ReplayRecorded {
		t.Fatalf("Record: %v %v", res, err)
	}
	if res, _, err := b.ReplayCache(5).Record(ctx, rk("alice", 0), now, now.Add(time.Minute)); err != nil || res != negotiate.ReplayReplayed {
		t.Fatalf("Record at the other node: %v %v, want a replay", res, err)
	}
}

func TestNewRedisRefuses(t *testing.T) {
	for _, c := range []struct {
		cfg  store.RedisConfig
		want string
	}{
		{store.RedisConfig{}, "no address"},
		{store.RedisConfig{Addrs: []string{"a:1"}, Prefix: "x{y}:"}, "hash tags"},
		{store.RedisConfig{Addrs: []string{"a:1"}, Prefix: "a b"}, "spaces"},
		{store.RedisConfig{Addrs: []string{"a:1", "b:1"}, DB: 2}, "database 0 only"},
		{store.RedisConfig{Addrs: []string{"a:1"}, DB: -1}, "negative"},
	} {
		if _, err := store.NewRedis(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewRedis(%+v): %v, want an error saying %q", c.cfg, err, c.want)
		}
	}
}

// BenchmarkRedisRedeem is a token's life in Redis: Put at login, Take at
// redemption (one script each).
func BenchmarkRedisRedeem(b *testing.B) {
	env := redistest.Env(b)
	s := openRedis(b, redistest.Config(b, env)).Store("tok")
	ctx := context.Background()
	value := []byte(strings.Repeat("x", 1000))
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		key := fmt.Sprintf("%p", &i)
		for pb.Next() {
			i++
			k := fmt.Sprint(key, i)
			if err := s.Put(ctx, k, value, time.Minute); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Take(ctx, k); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRedisReplayRecord is one login's replay check.
func BenchmarkRedisReplayRecord(b *testing.B) {
	env := redistest.Env(b)
	c := openRedis(b, redistest.Config(b, env)).ReplayCache(50)
	ctx := context.Background()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			now := time.Now()
			if res, _, err := c.Record(ctx, rk(fmt.Sprint("user", i%1000), int(i)), now, now.Add(time.Minute)); err != nil || res == negotiate.ReplayReplayed {
				b.Fatal(res, err)
			}
		}
	})
}

// The OIDC provider keeps its signing keys in a RedisStore.
var _ oidc.KeyStore = (*store.RedisStore)(nil)

// TestRedisCompareAndSwapAcrossNodes: of nodes racing to write a key that
// has no value, exactly one wins; a swap from the value it wrote succeeds
// once; a swap from a stale value fails; Get reads what was written, and
// the value does not expire.
func TestRedisCompareAndSwapAcrossNodes(t *testing.T) {
	env := redistest.Env(t)
	cfg := redistest.Config(t, env)
	a, b := twoNodes(t, cfg)
	ctx := context.Background()
	key := fmt.Sprint("keys-", time.Now().UnixNano())
	t.Cleanup(func() { _ = a.Store("oidc").Delete(ctx, key) })
	const racers = 20
	var won atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for j := range racers {
		s := a.Store("oidc")
		if j%2 == 1 {
			s = b.Store("oidc")
		}
		wg.Go(func() {
			<-start
			ok, err := s.CompareAndSwap(ctx, key, nil, []byte(fmt.Sprint("set-", j)))
			if err != nil {
				t.Errorf("CompareAndSwap: %v", err)
			}
			if ok {
				won.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d of %d racers wrote the key, want 1", won.Load(), racers)
	}
	first, err := b.Store("oidc").Get(ctx, key)
	if err != nil || !strings.HasPrefix(string(first), "set-") {
		t.Fatalf("Get after the race: %q, %v", first, err)
	}
	if ok, err := a.Store("oidc").CompareAndSwap(ctx, key, first, []byte("second")); !ok || err != nil {
		t.Fatalf("swap from the value written: %t, %v", ok, err)
	}
	if ok, err := b.Store("oidc").CompareAndSwap(ctx, key, first, []byte("third")); ok || err != nil {
		t.Fatalf("swap from a stale value: %t, %v; want false", ok, err)
	}
	if v, err := a.Store("oidc").Get(ctx, key); string(v) != "second" || err != nil {
		t.Fatalf("Get: %q, %v; want second", v, err)
	}
	// This test's keys only: other tests share the server, and their
	// codes and tokens do expire.
	c := redistest.Client(t, cfg.Addrs[0], cfg.Password)
	keys, err := c.Keys(ctx, cfg.Prefix+"oidc:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	for _, k := range keys {
		if ttl := c.TTL(ctx, k).Val(); ttl >= 0 {
			t.Errorf("%s expires in %v; a compare-and-swap value must not", k, ttl)
		}
	}
	if _, err := a.Store("oidc").CompareAndSwap(ctx, key, []byte("second"), nil); err == nil {
		t.Error("an empty new value was accepted")
	}
}
