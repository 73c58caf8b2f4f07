package store

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// ErrUnavailable means the shared store could not be reached, or did not
// answer in time, and nothing was stored or taken; the caller should answer
// "try again later" and never fall back to a private store, which would let
// a token redeem twice or an authenticator replay.
var ErrUnavailable = errors.New("store unavailable")

// DefaultRedisPrefix starts every key iwalb writes to Redis.
const DefaultRedisPrefix = "iwalb:"

// Defaults of RedisConfig's timeouts: an auth node answers a browser, so a
// slow Redis fails a login in seconds rather than holding it.
const (
	DefaultRedisDialTimeout  = 2 * time.Second
	DefaultRedisReadTimeout  = time.Second
	DefaultRedisWriteTimeout = time.Second
)

// maxPrefix bounds the key prefix: it is repeated in every key.
const maxPrefix = 64

// RedisConfig says how to reach Redis. Zero fields take the defaults named
// on each.
type RedisConfig struct {
	// Addrs are host:port addresses: one Redis server; several: the seed
	// nodes of a Redis Cluster; with MasterName: the Sentinels.
	Addrs []string
	// MasterName, when set, is the name the Sentinels know the master by.
	MasterName string
	// Username and Password authenticate to Redis (AUTH); both optional.
	Username, Password string
	// SentinelUsername and SentinelPassword authenticate to the Sentinels;
	// both optional.
	SentinelUsername, SentinelPassword string
	// DB is the database number (0 with a Cluster).
	DB int
	// Prefix starts every key (default DefaultRedisPrefix). It may not hold
	// '{' or '}', which would break the keys' Cluster hash tags.
	Prefix string
	// TLS, when set, makes every connection TLS with it, to the
	// Sentinels too.
	TLS *tls.Config
	// DialTimeout bounds a connect (default DefaultRedisDialTimeout);
	// ReadTimeout and WriteTimeout a command's reply and its sending
	// (defaults DefaultRedisReadTimeout, DefaultRedisWriteTimeout). Their
	// sum bounds each store operation, retries and waiting for a pooled
	// connection included.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// PoolSize is the connections kept per server (default: go-redis's,
	// 10 per CPU).
	PoolSize int
}

// CheckPrefix says whether p can be RedisConfig.Prefix.
func CheckPrefix(p string) error {
	switch {
	case len(p) > maxPrefix:
		return fmt.Errorf("%d bytes is too long (at most %d)", len(p), maxPrefix)
	case strings.ContainsAny(p, "{}"):
		return errors.New("may not hold '{' or '}': they would break the keys' Cluster hash tags")
	}
	for _, r := range p {
		if r <= ' ' || r == 0x7f {
			return errors.New("may hold no spaces or control characters")
		}
	}
	return nil
}

// Redis is a connection (pool) to Redis, shared by the stores and the
// replay cache made from it. It is safe for concurrent use.
//
// Every key is Prefix + a space ("tok:", "sess:", "replay:") + a hash tag
// "{...}": the keys one script touches share the tag, hence the Cluster
// slot, and each script runs atomically on the server that holds it.
type Redis struct {
	client    redis.UniversalClient
	prefix    string
	opTimeout time.Duration

	put, get, take, replay, cas *redis.Script
}

// NewRedis returns a Redis for cfg. It dials nothing: connections are made
// on first use, and remade by themselves after Redis comes back.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("redis: no address")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultRedisPrefix
	}
	if err := CheckPrefix(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("redis: prefix %q: %w", cfg.Prefix, err)
	}
	cluster := cfg.MasterName == "" && len(cfg.Addrs) > 1
	if cluster && cfg.DB != 0 {
		return nil, fmt.Errorf("redis: database %d: a Redis Cluster has database 0 only", cfg.DB)
	}
	if cfg.DB < 0 {
		return nil, fmt.Errorf("redis: database %d is negative", cfg.DB)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultRedisDialTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultRedisReadTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultRedisWriteTimeout
	}
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:      cfg.Addrs,
		MasterName: cfg.MasterName,
		Username:   cfg.Username,
		Password:   cfg.Password,
		// Not Password: Sentinels often have none, and AUTH would fail.
		SentinelUsername: cfg.SentinelUsername,
		SentinelPassword: cfg.SentinelPassword,
		DB:               cfg.DB,
		TLSConfig:        cfg.TLS,
		DialTimeout:      cfg.DialTimeout,
		ReadTimeout:      cfg.ReadTimeout,
		WriteTimeout:     cfg.WriteTimeout,
		PoolSize:         cfg.PoolSize,
		// Retries happen within the operation's deadline.
		ContextTimeoutEnabled: true,
		// One dial attempt per try: a down server costs DialTimeout, not
		// five of them.
		DialerRetries: 1,
		// Redis 7.0 knows neither; asking costs a round trip per connection.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	return &Redis{
		client:    client,
		prefix:    cfg.Prefix,
		opTimeout: cfg.DialTimeout + cfg.WriteTimeout + cfg.ReadTimeout,
		put:       redis.NewScript(putScript),
		get:       redis.NewScript(getScript),
		take:      redis.NewScript(takeScript),
		replay:    redis.NewScript(replayScript),
		cas:       redis.NewScript(casScript),
	}, nil
}

// Close closes the connections.
func (r *Redis) Close() error { return r.client.Close() }

// Check pings Redis (the master, with Sentinel; every known node, with a
// Cluster) within the operation timeout.
func (r *Redis) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.opTimeout)
	defer cancel()
	var err error
	if c, ok := r.client.(*redis.ClusterClient); ok {
		err = c.ForEachShard(ctx, func(ctx context.Context, s *redis.Client) error { return s.Ping(ctx).Err() })
	} else {
		err = r.client.Ping(ctx).Err()
	}
	return r.fail("ping", err)
}

// fail wraps an error of op: ErrFull when Redis is at its maxmemory (and,
// with the noeviction policy it needs, refuses writes), else ErrUnavailable.
func (r *Redis) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	var re redis.Error
	if errors.As(err, &re) && strings.HasPrefix(re.Error(), "OOM ") {
		return fmt.Errorf("redis %s: %w (%v)", op, ErrFull, err)
	}
	return fmt.Errorf("redis %s: %w: %v", op, ErrUnavailable, err)
}

// tag is a key's hash tag content: the key itself when it is plain (the
// node's keys are hex hashes), else its hash, so that no brace in a key
// can move its keys to different slots.
func tag(key string) string {
	if key != "" && !strings.ContainsAny(key, "{}") {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// Store returns the store of one key space (such as "tok" or "sess") on r.
func (r *Redis) Store(space string) *RedisStore {
	return &RedisStore{r: r, base: r.prefix + space + ":{"}
}

// RedisStore keeps values in Redis under one key space. Each key has a
// value key, which lives for the ttl, and a marker key, which lives for the
// ttl plus ExpiredGrace: a missing value with its marker present is
// ErrExpired, neither is ErrNotFound. Both keys are written, taken and
// deleted together, in one script.
type RedisStore struct {
	r    *Redis
	base string
}

func (s *RedisStore) keys(key string) []string {
	k := s.base + tag(key) + "}"
	return []string{k, k + ":exp"}
}

// Put stores value under key for ttl (at least a millisecond), replacing
// any earlier value. When Redis is at its maxmemory nothing is written and
// the error wraps ErrFull.
func (s *RedisStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("store put: ttl must be positive")
	}
	ttl = min(ttl, maxTTL)
	ctx, cancel := context.WithTimeout(ctx, s.r.opTimeout)
	defer cancel()
	ms := max(ttl.Milliseconds(), 1)
	err := s.r.put.Run(ctx, s.r.client, s.keys(key), value, ms, ms+ExpiredGrace.Milliseconds()).Err()
	return s.r.fail("put", err)
}

// Get returns the value under key without removing it.
func (s *RedisStore) Get(ctx context.Context, key string) ([]byte, error) {
	return s.run(ctx, "get", s.r.get, key)
}

// Take removes the value under key and returns it. The script deletes the
// value as it reads it (GETDEL), and Redis runs one script at a time per
// key, so of any number of concurrent Takes, from any number of nodes,
// exactly one gets the value.
func (s *RedisStore) Take(ctx context.Context, key string) ([]byte, error) {
	return s.run(ctx, "take", s.r.take, key)
}

func (s *RedisStore) run(ctx context.Context, op string, script *redis.Script, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.r.opTimeout)
	defer cancel()
	res, err := script.Run(ctx, s.r.client, s.keys(key)).Slice()
	if err != nil {
		return nil, s.r.fail(op, err)
	}
	return valueReply(op, res)
}

// valueReply reads {1, value} or {0, marker present} from the get and take
// scripts.
func valueReply(op string, res []any) ([]byte, error) {
	if len(res) != 2 {
		return nil, fmt.Errorf("redis %s: unexpected reply of %d elements", op, len(res))
	}
	found, _ := res[0].(int64)
	if found == 1 {
		v, ok := res[1].(string)
		if !ok {
			return nil, fmt.Errorf("redis %s: unexpected value of type %T", op, res[1])
		}
		return []byte(v), nil
	}
	if marked, _ := res[1].(int64); marked == 1 {
		return nil, ErrExpired
	}
	return nil, ErrNotFound
}

// Delete removes key and its marker; deleting a missing key is not an
// error.
func (s *RedisStore) Delete(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, s.r.opTimeout)
	defer cancel()
	// One DEL of keys in one slot: atomic, and allowed by a Cluster.
	return s.r.fail("delete", s.r.client.Del(ctx, s.keys(key)...).Err())
}

// CompareAndSwap sets key to new, with no expiry, when its value is old
// (nil or empty: when it has none), and reports whether it did. Of nodes
// racing to write the same key from the same old value, one wins and the
// others read its value: the OIDC provider's signing keys are written so.
// Get reads the value.
func (s *RedisStore) CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error) {
	if len(new) == 0 {
		return false, errors.New("store compare-and-swap: an empty value cannot be told from none")
	}
	ctx, cancel := context.WithTimeout(ctx, s.r.opTimeout)
	defer cancel()
	n, err := s.r.cas.Run(ctx, s.r.client, s.keys(key)[:1], old, new).Int()
	if err != nil {
		return false, s.r.fail("cas", err)
	}
	return n == 1, nil
}

// Check pings Redis; the auth node's readiness calls it.
func (s *RedisStore) Check(ctx context.Context) error { return s.r.Check(ctx) }

// The scripts. KEYS[1] is a value key and KEYS[2] its marker, in one slot.
// A script runs atomically: no other command runs on its server meanwhile.
// A Redis at its maxmemory refuses a script's first command that could
// grow memory (SET), unless the script has written already, so none is
// left half done; deleting (GETDEL, DEL) is never refused.
const (
	// putScript: ARGV[1] value, ARGV[2] ttl in ms, ARGV[3] ttl plus grace.
	putScript = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return 1`
	getScript = `
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
return {0, redis.call('EXISTS', KEYS[2])}`
	// casScript: ARGV[1] the value expected ('' for none), ARGV[2] the
	// new value, kept without expiry.
	casScript = `
local v = redis.call('GET', KEYS[1])
if (v == false and ARGV[1] == '') or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0`
	// takeScript forgets the marker with the value: a token redeemed is
	// unknown afterwards, not expired.
	takeScript = `
local v = redis.call('GETDEL', KEYS[1])
if v then
  redis.call('DEL', KEYS[2])
  return {1, v}
end
return {0, redis.call('EXISTS', KEYS[2])}`
)

// LogRedisTo sends go-redis's own log lines (dial failures, Sentinel
// master switches) to log at debug level; iwalb logs what they mean (a
// store failing readiness, a login refused) itself. go-redis has one
// logger per process, which it reads unlocked: the first call sets it for
// every Redis of the process, and later calls do nothing.
func LogRedisTo(log *slog.Logger) {
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{log}) })
}

// redisLogOnce guards go-redis's process-wide logger.
var redisLogOnce sync.Once

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
