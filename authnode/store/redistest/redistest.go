// Package redistest gives tests the throw-away Redis started by
// scripts/redis-up, and private redis-server processes (a server to stop
// and start again, a Sentinel group to fail over) made from the same
// binary.
//
// Typical use in a test that needs Redis:
//
//	env := redistest.Env(t) // skips under -short or when IWALB_REDIS_ENV is unset
//	cfg := redistest.Config(t, env) // the shared server, a prefix of the test's own
//
// It is for tests only; nothing outside _test.go files should import it.
package redistest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/iwalb/iwalb/authnode/store"
)

// EnvVar names the environment variable that points at the env file
// written by scripts/redis-up (for example /tmp/iwalb-redis/env).
const EnvVar = "IWALB_REDIS_ENV"

// Env returns the settings of the running test Redis. It skips the test
// under -short or when IWALB_REDIS_ENV is unset, and fails it when the file
// named there cannot be read.
func Env(t testing.TB) map[string]string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping test against a real Redis")
	}
	path := os.Getenv(EnvVar)
	if path == "" {
		t.Skip("IWALB_REDIS_ENV not set: start the test Redis with scripts/redis-up DIR and set IWALB_REDIS_ENV=DIR/env")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("read test Redis settings (%s=%s): %v", EnvVar, path, err)
	}
	defer f.Close()
	env := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read test Redis settings %s: %v", path, err)
	}
	for _, k := range []string{"IWALB_REDIS_ADDR", "IWALB_REDIS_PASSWORD_FILE", "IWALB_REDIS_SERVER"} {
		if env[k] == "" {
			t.Fatalf("test Redis settings %s: %s is missing (an env file from an older redis-up?)", path, k)
		}
	}
	return env
}

// Password returns the test Redis's password.
func Password(t testing.TB, env map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(env["IWALB_REDIS_PASSWORD_FILE"])
	if err != nil {
		t.Fatalf("read the test Redis password: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// Prefix returns a key prefix no other test uses, so that tests sharing the
// server never see each other's keys.
func Prefix(t testing.TB) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "test:" + hex.EncodeToString(b[:]) + ":"
}

// Config returns a store configuration for the shared test server (plain
// TCP, the default user) with a prefix of the test's own and timeouts
// generous enough for a loaded machine.
func Config(t testing.TB, env map[string]string) store.RedisConfig {
	t.Helper()
	return store.RedisConfig{
		Addrs: []string{env["IWALB_REDIS_ADDR"]}, Password: Password(t, env), Prefix: Prefix(t),
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
	}
}

// Client returns a go-redis client for addr with password, closed when the
// test ends, to look at what the store wrote.
func Client(t testing.TB, addr, password string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Server is a redis-server process of the test's own (a server or a
// Sentinel) on a loopback port, that the test may stop and start again. It
// is stopped when the test ends.
type Server struct {
	t        testing.TB
	bin      string
	dir      string
	port     int
	password string // "" for a Sentinel
	sentinel bool
	lines    func(port int) []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done <-chan error
}

// StartServer starts a private Redis with password, from the binary named
// in env, with extra configuration lines (such as "replicaof 127.0.0.1
// 6379" or "maxmemory 2mb").
func StartServer(t testing.TB, env map[string]string, password string, extra ...string) *Server {
	t.Helper()
	return startProcess(t, env, password, false, func(port int) []string {
		return append([]string{"requirepass " + password, "masterauth " + password, "maxmemory-policy noeviction"}, extra...)
	})
}

func startProcess(t testing.TB, env map[string]string, password string, sentinel bool, lines func(port int) []string) *Server {
	t.Helper()
	s := &Server{t: t, bin: env["IWALB_REDIS_SERVER"], dir: t.TempDir(), password: password, sentinel: sentinel, lines: lines}
	for try := 0; ; try++ {
		s.port = freePort(t)
		err := s.start()
		if err == nil {
			break
		}
		if try == 2 {
			t.Fatalf("start redis-server: %v", err)
		}
	}
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's address.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Start starts the server again on its port after Stop.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("start redis-server again: %v", err)
	}
}

func (s *Server) start() error {
	conf := filepath.Join(s.dir, "redis.conf")
	lines := append([]string{
		"bind 127.0.0.1", "port " + strconv.Itoa(s.port), "dir " + s.dir, `save ""`, "appendonly no",
		"logfile " + filepath.Join(s.dir, "redis.log"),
	}, s.lines(s.port)...)
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	args := []string{conf}
	if s.sentinel {
		args = append(args, "--sentinel")
	}
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password, DisableIdentity: true, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redis-server on port %d exited (%v): %s", s.port, err, tail(string(log)))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			s.mu.Lock()
			s.cmd, s.done = cmd, exited
			s.mu.Unlock()
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on port %d did not answer in 15 s: %v", s.port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and waits for
// it; stopping a stopped server does nothing.
func (s *Server) Stop() { s.signal(false) }

// Kill kills the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() { s.signal(true) }

func (s *Server) signal(kill bool) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if kill {
		_ = cmd.Process.Kill()
	} else {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-5, 0):], "\n")
}

// MasterName is the name the Sentinels of StartSentinels know the master by.
const MasterName = "iwalb"

// Sentinels is a Redis master with one replica, watched by three Sentinels
// (quorum 2, down after 1 s), all of the test's own on loopback.
type Sentinels struct {
	t         testing.TB
	Password  string
	servers   []*Server // the first master, then the replica
	sentinels []*Server
}

// StartSentinels starts the group and waits until the replica is in sync
// and every Sentinel knows the replica and the other two Sentinels, so that
// a failover can happen.
func StartSentinels(t testing.TB, env map[string]string, password string) *Sentinels {
	t.Helper()
	g := &Sentinels{t: t, Password: password}
	master := StartServer(t, env, password)
	g.servers = []*Server{master, StartServer(t, env, password, "replicaof 127.0.0.1 "+strconv.Itoa(master.port))}
	for range 3 {
		g.sentinels = append(g.sentinels, startProcess(t, env, "", true, func(int) []string {
			return []string{
				fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", MasterName, master.port),
				fmt.Sprintf("sentinel auth-pass %s %s", MasterName, password),
				"sentinel down-after-milliseconds " + MasterName + " 1000",
				"sentinel failover-timeout " + MasterName + " 10000",
			}
		}))
	}
	g.waitFor(90*time.Second, "the Sentinels to know the replica and each other", func(ctx context.Context, sc *redis.SentinelClient) error {
		reps, err := sc.Replicas(ctx, MasterName).Result()
		if err != nil {
			return err
		}
		if len(reps) != 1 || strings.Contains(reps[0]["flags"], "down") || reps[0]["master-link-status"] != "ok" {
			return fmt.Errorf("replicas %v", reps)
		}
		others, err := sc.Sentinels(ctx, MasterName).Result()
		if err != nil {
			return err
		}
		if len(others) != 2 {
			return fmt.Errorf("%d other Sentinels known", len(others))
		}
		return nil
	})
	return g
}

// Addrs are the Sentinels' addresses.
func (g *Sentinels) Addrs() []string {
	var out []string
	for _, s := range g.sentinels {
		out = append(out, s.Addr())
	}
	return out
}

// Master returns the master's address as the first Sentinel tells it.
func (g *Sentinels) Master() string {
	g.t.Helper()
	sc := redis.NewSentinelClient(&redis.Options{Addr: g.sentinels[0].Addr(), DisableIdentity: true})
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := sc.GetMasterAddrByName(ctx, MasterName).Result()
	if err != nil {
		g.t.Fatalf("ask the Sentinel for the master: %v", err)
	}
	return net.JoinHostPort(a[0], a[1])
}

// KillMaster kills the current master (SIGKILL) and waits until every
// Sentinel names the replica as the new master and it says it is one. It
// returns the old master, which the caller may Start again (it comes back
// as a replica).
func (g *Sentinels) KillMaster() *Server {
	g.t.Helper()
	old := g.Master()
	var victim *Server
	for _, s := range g.servers {
		if s.Addr() == old {
			victim = s
		}
	}
	if victim == nil {
		g.t.Fatalf("the master %s is none of the group's servers", old)
	}
	victim.Kill()
	g.waitFor(90*time.Second, "a failover away from "+old, func(ctx context.Context, sc *redis.SentinelClient) error {
		a, err := sc.GetMasterAddrByName(ctx, MasterName).Result()
		if err != nil {
			return err
		}
		if addr := net.JoinHostPort(a[0], a[1]); addr == old {
			return fmt.Errorf("master still %s", addr)
		}
		return nil
	})
	c := Client(g.t, g.Master(), g.Password)
	g.waitForFunc(60*time.Second, "the new master to take writes", func(ctx context.Context) error {
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:master") {
			return fmt.Errorf("not a master yet")
		}
		return nil
	})
	return victim
}

// waitFor polls check on every Sentinel until it holds for all.
func (g *Sentinels) waitFor(d time.Duration, what string, check func(context.Context, *redis.SentinelClient) error) {
	g.t.Helper()
	var clients []*redis.SentinelClient
	for _, s := range g.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), DisableIdentity: true})
		defer sc.Close()
		clients = append(clients, sc)
	}
	g.waitForFunc(d, what, func(ctx context.Context) error {
		for i, sc := range clients {
			if err := check(ctx, sc); err != nil {
				return fmt.Errorf("sentinel %d: %w", i, err)
			}
		}
		return nil
	})
}

func (g *Sentinels) waitForFunc(d time.Duration, what string, check func(context.Context) error) {
	g.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := check(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("waited %s for %s: %v", d, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StartCluster starts a Redis Cluster of three masters (no replicas) of the
// test's own with password, made with redis-cli --cluster create, and
// returns their addresses once every node says the cluster is ok.
func StartCluster(t testing.TB, env map[string]string, password string) []string {
	t.Helper()
	if env["IWALB_REDIS_CLI"] == "" {
		t.Skip("the test Redis settings name no redis-cli")
	}
	var addrs []string
	for range 3 {
		busPort := freePort(t)
		s := startProcess(t, env, password, false, func(int) []string {
			return []string{"requirepass " + password, "masterauth " + password, "maxmemory-policy noeviction",
				"cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 5000",
				"cluster-port " + strconv.Itoa(busPort)}
		})
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	cmd := exec.Command(env["IWALB_REDIS_CLI"], append(args, "--cluster-yes", "--no-auth-warning", "-a", password)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, a := range addrs {
		c := Client(t, a, password)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			info, err := c.ClusterInfo(ctx).Result()
			cancel()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the cluster at %s is not ok after 60 s: %v %s", a, err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return addrs
}
