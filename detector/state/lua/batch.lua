-- batch.lua: a whole micro-batch of StateStore ops in one call, applied in order (RedisStore batch mode).
--
-- KEYS     every distinct key the batch's ops name (each op refers to its key by index)
-- ARGV[1]  the ops, one JSON array (cjson): each op is
--            [code, key index, arg1, arg2, ...]
--          code: 1 window, 2 baseline, 3 distinct, 4 counter, 5 claim, 6 hash_get, 7 hash_set,
--          8 field_counters;
--          key index: the op's key is KEYS[key index];
--          argN: the op script's ARGV[N], exactly as the per-op script gets it (strings where the
--          script passes them on to Redis or names keys by them: buckets, members, fields, values,
--          amounts, TTLs, expiry times, since Redis 7.0 formats a Lua number argument of redis.call
--          with "%.17g"; numbers where it only computes with them).
--
-- Returns  one reply per op, in order: what the op's own script returns (window: the span sums;
--          baseline: {mean, var, seen, count} with mean and var as "%.17g" strings; distinct, counter:
--          an integer; claim: 1 or 0; hash_get: {__expires_at_ms, values...}; hash_set: nil;
--          field_counters: {count per field}).
--
-- The op functions above this dispatcher are the bodies of the per-op scripts (detector/state/lua/ops/*.lua),
-- assembled by detector/state/redis.py, so the two modes cannot drift apart. Each op is applied exactly as
-- if its own script had run; the whole batch is one atomic script, so other clients see it all or nothing.
-- Distinct derives its bucket HyperLogLog keys from its KEYS entry (same hash tag), which a standalone
-- Redis allows; Redis Cluster refuses a script whose keys span slots, so on a cluster the store uses the
-- per-op pipeline (RedisStore(url, cluster=True), SMSGUARD_REDIS_CLUSTER).
local run = {window, baseline, distinct, counter, claim, hash_get, hash_set, field_counters}
local ops = cjson.decode(ARGV[1])
local replies = {}
for i = 1, #ops do
  local op = ops[i]
  replies[i] = run[op[1]](KEYS[op[2]], op, 2)
end
return replies
