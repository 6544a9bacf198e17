-- respell_signatures.lua: move a key's signatures from an old spelling to today's canonical one
-- (RedisStore.respell_signatures, `smsguard signatures respell`), after canonical_signature changed.
--
-- KEYS[1]  sg:optout:{RECIPIENT} (a hash: field s:<signature> -> ts_ms of the opt-out, besides p:<port> fields and
--          __expires_at_ms) or sg:sigreg:{PORT} (a set of signatures)
-- ARGV[1]  "hash" or "set": which of the two KEYS[1] is
-- ARGV[2..] pairs: old spelling, new spelling (hash: whole field names, "s:优 品 汇", "s:优品汇"; set: members)
--
-- Returns  how many pairs were moved (an old spelling that is no longer there is skipped).
--
-- Hash: the new field takes the later of the two opt-out times, then the old field goes. Set: the new member is
-- added, then the old one removed. One script per key, so a reader never sees the signature missing (the engine
-- reads the new spelling, an old reader the old one until the call). Both keys' kinds carry a hash tag: one slot.
local moved = 0
for i = 2, #ARGV, 2 do
  local old, new = ARGV[i], ARGV[i + 1]
  if ARGV[1] == 'hash' then
    local value = redis.call('HGET', KEYS[1], old)
    if value then
      local current = redis.call('HGET', KEYS[1], new)
      if (not current) or tonumber(current) < tonumber(value) then
        redis.call('HSET', KEYS[1], new, value)
      end
      redis.call('HDEL', KEYS[1], old)
      moved = moved + 1
    end
  elseif redis.call('SISMEMBER', KEYS[1], old) == 1 then
    redis.call('SADD', KEYS[1], new)
    redis.call('SREM', KEYS[1], old)
    moved = moved + 1
  end
end
return moved
