package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/iwalb/iwalb/authnode/negotiate"
)

// RedisReplay is the Kerberos replay cache of several auth nodes, in Redis:
// an authenticator accepted at any node is refused at every other, and a
// client's quota of live authenticators counts its logins at all of them.
// It implements negotiate.ReplayStore.
//
// Each client has one sorted set, its key hash-tagged by the client, whose
// members are its live authenticators scored by the last instant each
// could be accepted (Unix milliseconds, rounded up). One script drops the
// expired members, looks the authenticator up, checks the quota and adds
// it; Redis runs it atomically, so two nodes offered the same
// authenticator at once cannot both record it, and a client's set never
// exceeds its quota. The set expires with its last member.
type RedisReplay struct {
	r     *Redis
	quota int
}

// ReplayCache returns the replay cache on r with quota live authenticators
// per client (at least 1).
func (r *Redis) ReplayCache(quota int) *RedisReplay {
	return &RedisReplay{r: r, quota: max(quota, 1)}
}

// replayKeyMargin keeps a client's set a little past its last member, so
// that Redis's clock, if a little ahead of the node's, cannot drop it early.
const replayKeyMargin = time.Second

// Record is negotiate.ReplayStore.Record. Errors wrap ErrUnavailable (or
// ErrFull, when Redis is at its maxmemory); nothing is recorded then.
func (c *RedisReplay) Record(ctx context.Context, k negotiate.ReplayKey, now, until time.Time) (negotiate.ReplayResult, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, c.r.opTimeout)
	defer cancel()
	sum := sha256.Sum256([]byte(k.Client))
	key := c.r.prefix + "replay:{" + hex.EncodeToString(sum[:16]) + "}"
	member := strconv.FormatInt(k.CTime, 10) + "." + strconv.FormatInt(int64(k.Cusec), 10) + "." + strconv.FormatUint(uint64(k.Key), 10)
	nowMS := now.UnixMilli()
	// Rounded up: an entry is never forgotten before its time.
	untilMS := (until.UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	res, err := c.r.replay.Run(ctx, c.r.client, []string{key}, member, nowMS, untilMS, c.quota, replayKeyMargin.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, 0, c.r.fail("replay record", err)
	}
	if len(res) != 2 {
		return 0, 0, fmt.Errorf("redis replay record: unexpected reply of %d elements", len(res))
	}
	retry := time.Duration(max(res[1], 0)) * time.Millisecond
	switch res[0] {
	case 0:
		return negotiate.ReplayRecorded, 0, nil
	case 1:
		return negotiate.ReplayReplayed, 0, nil
	case 2:
		return negotiate.ReplayOverQuota, retry, nil
	}
	return 0, 0, errors.New("redis replay record: unexpected outcome " + strconv.FormatInt(res[0], 10))
}

// replayScript: KEYS[1] the client's set; ARGV[1] the authenticator,
// ARGV[2] now and ARGV[3] its last instant (Unix ms), ARGV[4] the quota,
// ARGV[5] the margin (ms) the set outlives its last member by. It answers
// {0, 0} recorded, {1, 0} replayed, {2, ms until a slot frees} over quota.
// Members scored before now have expired. Refusals write nothing; ZADD is
// the first write, so that a Redis at its maxmemory refuses the script
// before it changes anything. Expired members are removed after it (each
// once), so the set holds at most quota live members and the expired ones
// since the client's last recorded login; every call costs O(log of that).
const replayScript = `
local now = tonumber(ARGV[2])
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if seen and tonumber(seen) >= now then return {1, 0} end
if redis.call('ZCOUNT', KEYS[1], now, '+inf') >= tonumber(ARGV[4]) then
  local first = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return {2, tonumber(first[2]) - now}
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(last[2]) - now, 0) + tonumber(ARGV[5]))
return {0, 0}`
