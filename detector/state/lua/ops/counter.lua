-- counter: fixed event-time window counter (StateStore op Counter).
--
-- KEYS[1]  a hash with fields
--            n    the count in the current window (integer)
--            exp  event time (ms) at which the window ends: first add's ts_ms + ttl
-- ARGV[1]  ts_ms of the event
-- ARGV[2]  amount to add (integer; 0 only reads and never creates the key)
-- ARGV[3]  ts_ms + ttl_s * 1000, the end of a window that starts now
-- ARGV[4]  max(ttl_s, 1): the key's TTL (server clock) set when a window starts, bounding memory
--
-- Returns  the count after the add (0 when reading a missing or ended window).
--
-- A window has ended when exp <= ts_ms (event time, like MemoryStore); the next add starts a new one,
-- writing n and exp at once. Commands: a read of no live window 1, an add that starts a window 3,
-- anything on a live window 2.
--
-- As a function: counter(key, a, o) reads ARGV[i] as a[o + i].
local function counter(key, a, o)
  local amount = tonumber(a[o + 2])
  local exp = redis.call('HGET', key, 'exp')
  if exp and tonumber(exp) > tonumber(a[o + 1]) then
    if amount == 0 then                     -- a read: no write, nothing propagated to replicas
      return tonumber(redis.call('HGET', key, 'n')) or 0
    end
    return redis.call('HINCRBY', key, 'n', a[o + 2])
  end
  if amount == 0 then
    return 0
  end
  redis.call('HSET', key, 'n', a[o + 2], 'exp', a[o + 3])
  redis.call('EXPIRE', key, a[o + 4])
  return amount
end
