-- distinct: distinct members over an event-time span, one HyperLogLog per bucket (StateStore op Distinct).
--
-- KEYS[1]  the bucket index, a sorted set: member = score = bucket number.
--          The HyperLogLog of bucket k is the key KEYS[1] .. ':' .. k (same {hash tag}, same cluster slot;
--          derived here like rspamd's ratelimit scripts derive their keys from KEYS[1]).
-- ARGV[1]  bucket number b of the event (ts_ms // bucket width in ms), decimal string
-- ARGV[2]  the member to add
-- ARGV[3]  n = span // bucket width (>= 1): the span covers buckets b - n < k <= b
-- ARGV[4]  TTL in seconds (span + one bucket) for the index and the bucket's HyperLogLog; raised, never lowered
--
-- Returns  PFCOUNT over the span's bucket HyperLogLogs (approximate, ~0.81% standard error; exact-ish when small).
--
-- Once the index holds more than 2n + 4 buckets, buckets k <= b - n are deleted (HyperLogLog and index
-- entry), like MemoryStore. For an event in order (b is the newest bucket) the answer is the distinct count
-- of the span in both backends; for a late event both are approximations (see detector/state/redis.py).
--
-- As a function: distinct(key, a, o) reads ARGV[i] as a[o + i].
local function raise_ttl(key, ttl)
  if redis.call('TTL', key) < ttl then
    redis.call('EXPIRE', key, ttl)
  end
end

local function distinct(index, a, o)
  local bucket = a[o + 1]
  local b = tonumber(bucket)
  local n = tonumber(a[o + 3])
  local ttl = tonumber(a[o + 4])

  local bucket_key = index .. ':' .. bucket
  redis.call('PFADD', bucket_key, a[o + 2])
  raise_ttl(bucket_key, ttl)
  redis.call('ZADD', index, b, bucket)
  raise_ttl(index, ttl)

  if redis.call('ZCARD', index) > 2 * n + 4 then
    local old = redis.call('ZRANGEBYSCORE', index, '-inf', b - n)
    for _, k in ipairs(old) do
      redis.call('DEL', index .. ':' .. k)
    end
    redis.call('ZREMRANGEBYSCORE', index, '-inf', b - n)
  end

  local live = redis.call('ZRANGEBYSCORE', index, '(' .. (b - n), b)
  local keys = {}
  for i, k in ipairs(live) do
    keys[i] = index .. ':' .. k
  end
  return redis.call('PFCOUNT', unpack(keys))
end
