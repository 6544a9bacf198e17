-- hash_get: read fields of a hash written by hash_set (StateStore op HashGet).
--
-- KEYS[1]  the hash (see hash_set)
-- ARGV[1..] the fields to read
--
-- Returns  {__expires_at_ms, value of each field}, missing ones nil. The caller applies the event-time
--          expiry with its own clock (the hash is absent when __expires_at_ms <= that clock).
--
-- The per-op pipeline sends this as a plain HMGET; batch.lua calls it as a function:
-- hash_get(key, a, o) reads ARGV[i] as a[o + i].
local function hash_get(key, a, o)
  return redis.call('HMGET', key, '__expires_at_ms', unpack(a, o + 1))
end
