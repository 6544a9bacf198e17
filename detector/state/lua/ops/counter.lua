-- counter.lua: fixed event-time window counter (StateStore op Counter).
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
local key = KEYS[1]
local ts = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local exp = redis.call('HGET', key, 'exp')
if not exp or tonumber(exp) <= ts then
  if amount == 0 then
    return 0
  end
  redis.call('HSET', key, 'n', 0, 'exp', ARGV[3])
  redis.call('EXPIRE', key, math.max(tonumber(ARGV[4]), 1))
end
return redis.call('HINCRBY', key, 'n', ARGV[2])
