-- window: an event-time sliding window of counts (StateStore op Window).
--
-- KEYS[1]  the window hash. Field: a bucket number (event ts_ms // bucket width in ms),
--          value: the sum of the amounts added to that bucket (integer).
--          Field "-inf": the sums cached for the newest bucket (below); old scripts, and anything that
--          reads the buckets as numbers, take it for a bucket older than every other.
-- ARGV[1]  bucket number b of the event (integer, decimal string)
-- ARGV[2]  amount to add to bucket b (integer; 0 only reads)
-- ARGV[3]  TTL in seconds: longest span + one bucket, set again by every op on an existing key (like
--          MemoryStore, whose expiry is the last op's ts + this TTL). The engine always passes one key the
--          same spans, so the expiry only ever moves later.
-- ARGV[4]  L = longest span // bucket width (whole buckets)
-- ARGV[5..] n for each span: the span's width in buckets (>= 1), decimal strings (the cache tag joins them
--          as sent)
--
-- Returns  one integer per span: the sum of the buckets k with b - n < k <= b.
--
-- Fields older than b - L are deleted once the hash holds more than 2L + 4 buckets, exactly like
-- MemoryStore, so out-of-order events see the same buckets in both backends.
--
-- A live key holds up to 2L + 4 buckets (124 for an hour of minutes), and reading them all costs tens
-- of µs. Like MemoryStore, the sums are cached for the newest bucket: "-inf" holds
-- "b;n1,n2,...;p1,p2,..." where p is each span's sum without bucket b, which no op changes until an op
-- for a later bucket (which recomputes) or a late op (which deletes the cache, as MemoryStore does).
-- An op in the cached bucket then reads bucket b and the cache: 3 commands, whatever the hash holds.
--
-- As a function: window(key, a, o) reads ARGV[i] as a[o + i] (window.lua passes ARGV and 0,
-- batch.lua an op of its batch and 2).
local function window(key, a, o)
  local field = a[o + 1]
  local b = tonumber(field)
  local amount = tonumber(a[o + 2])
  local longest = tonumber(a[o + 4])
  local spans = {}
  for s = o + 5, #a do
    spans[#spans + 1] = tonumber(a[s])
  end
  local cache_tag = field .. ';' .. table.concat(a, ',', o + 5) .. ';'

  local current, cached
  if amount ~= 0 then
    current = redis.call('HINCRBY', key, field, a[o + 2])
    cached = redis.call('HGET', key, '-inf')
  else
    local got = redis.call('HMGET', key, field, '-inf')
    current, cached = tonumber(got[1]) or 0, got[2]
  end
  redis.call('EXPIRE', key, a[o + 3])         -- no key (a read of nothing): a no-op

  local sums = {}
  if cached and string.sub(cached, 1, #cache_tag) == cache_tag then
    for rest in string.gmatch(string.sub(cached, #cache_tag + 1), '[^,]+') do
      sums[#sums + 1] = tonumber(rest) + current
    end
    return sums
  end

  local flat = redis.call('HGETALL', key)
  local rest = {}
  for s = 1, #spans do
    sums[s], rest[s] = 0, 0
  end
  local buckets, newest = 0, b
  for i = 1, #flat, 2 do
    if flat[i] ~= '-inf' then
      local k = tonumber(flat[i])
      local v = tonumber(flat[i + 1])
      buckets = buckets + 1
      if k > newest then
        newest = k
      end
      for s = 1, #spans do
        if k <= b and k > b - spans[s] then
          sums[s] = sums[s] + v
          if k ~= b then
            rest[s] = rest[s] + v
          end
        end
      end
    end
  end

  if buckets > 2 * longest + 4 then
    local oldest = b - longest
    local old = {}
    for i = 1, #flat, 2 do
      if flat[i] ~= '-inf' and tonumber(flat[i]) < oldest then
        old[#old + 1] = flat[i]
      end
    end
    if #old > 0 then
      redis.call('HDEL', key, unpack(old))
    end
  end
  if b >= newest then
    if amount ~= 0 or buckets > 0 then      -- a read of nothing creates nothing
      redis.call('HSET', key, '-inf', cache_tag .. table.concat(rest, ','))
    end
  elseif cached then
    redis.call('HDEL', key, '-inf')
  end
  return sums
end
