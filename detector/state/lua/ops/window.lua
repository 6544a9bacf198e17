-- window: an event-time sliding window of counts (StateStore op Window).
--
-- KEYS[1]  the window hash. Field: a bucket number (event ts_ms // bucket width in ms),
--          value: the sum of the amounts added to that bucket (integer).
-- ARGV[1]  bucket number b of the event (integer, decimal string)
-- ARGV[2]  amount to add to bucket b (integer; 0 only reads)
-- ARGV[3]  TTL in seconds: longest span + one bucket, set again by every op on an existing key (like
--          MemoryStore, whose expiry is the last op's ts + this TTL). The engine always passes one key the
--          same spans, so the expiry only ever moves later.
-- ARGV[4]  L = longest span // bucket width (whole buckets)
-- ARGV[5..] n for each span: the span's width in buckets (>= 1)
--
-- Returns  one integer per span: the sum of the buckets k with b - n < k <= b.
--
-- Fields older than b - L are deleted once the hash holds more than 2L + 4 fields, exactly like
-- MemoryStore, so out-of-order events see the same buckets in both backends.
--
-- As a function: window(key, a, o) reads ARGV[i] as a[o + i] (window.lua passes ARGV and 0,
-- batch.lua an op of its batch and 2).
local function window(key, a, o)
  local b = tonumber(a[o + 1])
  local amount = tonumber(a[o + 2])
  local ttl = tonumber(a[o + 3])
  local longest = tonumber(a[o + 4])
  local spans = {}
  for s = o + 5, #a do
    spans[#spans + 1] = tonumber(a[s])
  end

  if amount ~= 0 then
    redis.call('HINCRBY', key, a[o + 1], a[o + 2])
  end
  redis.call('EXPIRE', key, ttl)           -- no key (a read of nothing): a no-op

  local flat = redis.call('HGETALL', key)
  local sums = {}
  for s = 1, #spans do
    sums[s] = 0
  end
  for i = 1, #flat, 2 do
    local k = tonumber(flat[i])
    local v = tonumber(flat[i + 1])
    for s = 1, #spans do
      if k <= b and k > b - spans[s] then
        sums[s] = sums[s] + v
      end
    end
  end

  if #flat / 2 > 2 * longest + 4 then
    local oldest = b - longest
    local old = {}
    for i = 1, #flat, 2 do
      if tonumber(flat[i]) < oldest then
        old[#old + 1] = flat[i]
      end
    end
    if #old > 0 then
      redis.call('HDEL', key, unpack(old))
    end
  end
  return sums
end
