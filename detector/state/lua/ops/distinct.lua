-- distinct: distinct members over an event-time span, one HyperLogLog per bucket (StateStore op Distinct).
--
-- KEYS[1]  the key's prefix; nothing is stored under it. The HyperLogLog of bucket k is the key
--          KEYS[1] .. ':' .. k (same {hash tag}, same cluster slot; derived here like rspamd's ratelimit
--          scripts derive their keys from KEYS[1]).
-- ARGV[1]  bucket number b of the event (ts_ms // bucket width in ms), decimal string
-- ARGV[2]  the member to add
-- ARGV[3]  n = span // bucket width (>= 1): the span covers buckets b - n < k <= b
-- ARGV[4]  TTL in seconds (span + one bucket) of bucket b's HyperLogLog, set again by every add that
--          changes it (PFADD answers 1; it always does when it creates the key)
-- ARGV[5]  1: count, 0: add only (Distinct.count)
--
-- Returns  PFCOUNT over the span's bucket HyperLogLogs (approximate, ~0.81% standard error; exact-ish when
--          small); buckets that were never written or have expired count as empty. 0 when ARGV[5] is 0:
--          the EXISTS and the PFCOUNT merge are most of the op's cost.
--
-- The bucket names are derived from b, so no index is kept: PFADD, EXPIRE (skipped when the member
-- changed nothing, about half the engine's adds), EXISTS of the span's earlier buckets, PFCOUNT. A
-- bucket's HyperLogLog is deleted by its TTL alone (server clock). Its first add comes at or after the
-- bucket's start (live traffic), and its last use is by events of bucket b + n - 1, which ends one span
-- after b starts; so it outlives that use by a bucket or more. For an event in order (b is the newest
-- bucket) the answer is the distinct count of the span in both backends; for a late event Redis counts
-- the members of the late span's buckets that have not expired, MemoryStore the members whose newest
-- bucket lies in it (see detector/state/redis.py).
--
-- As a function: distinct(key, a, o) reads ARGV[i] as a[o + i].
local function distinct(key, a, o)
  local b = tonumber(a[o + 1])
  local n = tonumber(a[o + 3])
  local bucket_key = key .. ':' .. a[o + 1]
  if redis.call('PFADD', bucket_key, a[o + 2]) == 1 then   -- 0: the HyperLogLog exists and did not change
    redis.call('EXPIRE', bucket_key, a[o + 4])
  end
  if tonumber(a[o + 5]) == 0 then
    return 0
  end
  if n == 1 then
    return redis.call('PFCOUNT', bucket_key)
  end
  local keys = {}
  for i = 1, n - 1 do
    keys[i] = key .. ':' .. string.format('%d', b - n + i)   -- '%d': no floating-point formatting
  end
  -- PFCOUNT of several keys merges them into a fresh HyperLogLog (~16k registers) every time; one key
  -- answers from its cached cardinality. Merge only when an earlier bucket of the span exists.
  if redis.call('EXISTS', unpack(keys)) == 0 then
    return redis.call('PFCOUNT', bucket_key)
  end
  keys[n] = bucket_key
  return redis.call('PFCOUNT', unpack(keys))
end
