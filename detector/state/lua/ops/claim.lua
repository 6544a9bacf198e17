-- claim: set-if-absent with an event-time TTL (StateStore op Claim, e.g. msg_id de-duplication).
--
-- KEYS[1]  a string holding the event time (ms) at which the claim lapses
-- ARGV[1]  ts_ms of the event
-- ARGV[2]  ts_ms + ttl_s * 1000
-- ARGV[3]  max(ttl_s, 1): the key's TTL (server clock), bounding memory
--
-- Returns  1 when the claim is taken (absent or lapsed in event time), 0 when it is held.
--
-- As a function: claim(key, a, o) reads ARGV[i] as a[o + i].
local function claim(key, a, o)
  local held = redis.call('GET', key)
  if held and tonumber(held) > tonumber(a[o + 1]) then
    return 0
  end
  redis.call('SET', key, a[o + 2], 'EX', a[o + 3])
  return 1
end
