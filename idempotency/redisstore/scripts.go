package redisstore

import (
	"fmt"
	"time"

	"github.com/rebound-http/rebound/idempotency"
	"github.com/redis/go-redis/v9"
)

// The scripts run with go-redis's Script.Run: EVALSHA, then EVAL the first
// time a server has not seen a script. Each touches only KEYS[1], so they
// work on Redis Cluster. They use GET, SET, DEL and PTTL, which every
// Redis since 2.6 and miniredis support. A script never returns a Lua
// false or nil inside a table (RESP2 and RESP3 convert those differently):
// "nothing" is the integer 0, "done" the integer 1.

// reserveScript creates KEYS[1] with the in-flight record ARGV[1] and an
// expiry of ARGV[2] milliseconds if the key is absent, and returns 1; a
// lease of 0 creates nothing (it has already expired). If the key exists it
// returns {value, milliseconds to live} unchanged.
var reserveScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  return {v, redis.call('PTTL', KEYS[1])}
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
`)

// completeScript checks that KEYS[1] begins with ARGV[1] (in flight, the
// caller's token) and then replaces it with the completed record: ARGV[2]
// (completed, same token), the stored fingerprint, and the response
// ARGV[3], expiring after ARGV[4] milliseconds (0 deletes the key at once).
// It returns 1, or 0 when the check fails. A key that already holds exactly
// that completed record also gives 1: the same script has run before and
// its reply was lost (go-redis runs a command again after a connection
// fails), so the caller's response is stored.
var completeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 10) == ARGV[2] and string.sub(v, 43) == ARGV[3] then
  return 1
end
if not v or string.sub(v, 1, 10) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2] .. string.sub(v, 11, 42) .. ARGV[3], 'PX', ARGV[4])
else
  redis.call('DEL', KEYS[1])
end
return 1
`)

// renewScript sets the expiry of KEYS[1] to ARGV[2] milliseconds (0
// deletes it: the lease has ended) if it begins with ARGV[1] (in flight,
// the caller's token) and returns 1, or returns 0. Running it twice (a
// lost reply) gives the same result.
var renewScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, 10) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
`)

// releaseScript deletes KEYS[1] if it begins with ARGV[1] (in flight, the
// caller's token) and returns 1, or returns 0.
var releaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, 10) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
`)

// lookupScript returns {value, milliseconds to live} of KEYS[1], or 0 when
// it is absent. A script rather than two commands, so both describe the
// same record.
var lookupScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  return 0
end
return {v, redis.call('PTTL', KEYS[1])}
`)

// parseExisting decodes the {value, milliseconds to live} reply of
// reserveScript or lookupScript, read at now. A key without an expiry
// (written by hand) gets a zero Expires.
func parseExisting(reply any, now time.Time) (idempotency.Record, error) {
	pair, ok := reply.([]any)
	if !ok || len(pair) != 2 {
		return idempotency.Record{}, fmt.Errorf("%w: unexpected reply %T", ErrMalformed, reply)
	}
	v, ok1 := pair[0].(string)
	pttl, ok2 := pair[1].(int64)
	if !ok1 || !ok2 {
		return idempotency.Record{}, fmt.Errorf("%w: unexpected reply types %T, %T", ErrMalformed, pair[0], pair[1])
	}
	rec, err := decodeRecord(v)
	if err != nil {
		return idempotency.Record{}, err
	}
	if pttl >= 0 {
		rec.Expires = now.Add(time.Duration(pttl) * time.Millisecond)
	}
	return rec, nil
}
