-- counter: fixed event-time window counter (StateStore op Counter).
--
-- KEYS[1]  a hash with fields
--            n    the count in the current window (integer)
--            exp  event time (ms) at which the window ends: first add's ts_ms + ttl
-- ARGV[1]  ts_ms of the event
-- ARGV[2]  amount to add (integer; 0 only reads and never creates the key)
-- ARGV[3]  ts_ms + ttl_s * 1000, the end of a window that starts now
-- ARGV[4]  ttl_s: the key's TTL (server clock) set when a window starts, bounding memory
--
-- Returns  the count after the add (0 when reading a missing or ended window).
--
-- A window has ended when exp <= ts_ms (event time, like MemoryStore); the next add starts a new one.
--
-- As a function: counter(key, a, o) reads ARGV[i] as a[o + i].
local function counter(key, a, o)
  local ts = tonumber(a[o + 1])
  local amount = tonumber(a[o + 2])
  local exp = redis.call('HGET', key, 'exp')
  if not exp or tonumber(exp) <= ts then
    if amount == 0 then
      return 0
    end
    redis.call('HSET', key, 'n', 0, 'exp', a[o + 3])
    redis.call('EXPIRE', key, math.max(tonumber(a[o + 4]), 1))
  end
  return redis.call('HINCRBY', key, 'n', a[o + 2])
end
