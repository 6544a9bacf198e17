-- hash_set: write one field of a hash with an event-time expiry (StateStore op HashSet).
--
-- KEYS[1]  the hash; besides the caller's fields it keeps
--            __expires_at_ms  event time (ms) at which the whole hash expires (the last write's ts + ttl)
-- ARGV[1]  field
-- ARGV[2]  value
-- ARGV[3]  ts_ms + ttl_s * 1000 (the new __expires_at_ms)
-- ARGV[4]  the store's event clock (the newest ts_ms it has seen): a hash expired by then starts empty
-- ARGV[5]  max(ttl_s, 1): the key's TTL (server clock), bounding memory
--
-- Returns  nothing (false, which Redis answers as nil and which, unlike nil, keeps its place in
--          batch.lua's reply array). Readers (hash_get, HMGET) treat the hash as absent when
--          __expires_at_ms <= their event clock.
--
-- As a function: hash_set(key, a, o) reads ARGV[i] as a[o + i].
local function hash_set(key, a, o)
  local exp = redis.call('HGET', key, '__expires_at_ms')
  if exp and tonumber(exp) <= tonumber(a[o + 4]) then
    redis.call('DEL', key)
  end
  redis.call('HSET', key, a[o + 1], a[o + 2], '__expires_at_ms', a[o + 3])
  redis.call('EXPIRE', key, a[o + 5])
  return false
end
