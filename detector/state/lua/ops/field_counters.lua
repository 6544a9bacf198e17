-- field_counters: fixed event-time window counters kept as fields of one hash (StateStore op FieldCounters).
--
-- KEYS[1]  a hash; each counter is one field whose value is "<end>:<count>": end is the event time (ms)
--          at which its window ends (the window's first add's ts_ms + ttl), count the count in that window;
--          the field "#", once the hash has been swept, holds the size at which it is swept next
-- ARGV[1]  ts_ms of the event
-- ARGV[2]  amount to add to every field (integer; 0 only reads and never writes)
-- ARGV[3]  ts_ms + ttl_s * 1000, the end of a window that starts now
-- ARGV[4]  max(ttl_s, 1): the key's TTL (server clock), renewed when a window starts, bounding memory
-- ARGV[5]  how many fields the hash may hold before a window start first sweeps out the ended ones
-- ARGV[6..] the fields
--
-- Returns  each field's count after the add, in ARGV order (0 when reading a missing or ended window).
--
-- A window has ended when end <= ts_ms (event time, like MemoryStore); the next add starts a new one. One
-- key per partition (a recipient) instead of one per counter: a key costs ~100 bytes before its value.
-- Commands: one HMGET; an add also one HSET; a window start renews the TTL (an op kind passes one key the
-- same TTL, so the expiry only moves later) and, when the hash has grown past its sweep size, drops the
-- ended ones (HLEN, then HGETALL and HDEL), so a recipient who gets new contents every day stays small.
-- The next sweep size is twice the fields still live (at least ARGV[5]): a recipient with many live
-- windows is not rescanned on every new one, so a sweep costs O(1) per added field, amortised.
--
-- As a function: field_counters(key, a, o) reads ARGV[i] as a[o + i].
local function field_counters(key, a, o)
  local ts = tonumber(a[o + 1])
  local amount = tonumber(a[o + 2])
  local fields = {}
  for i = o + 6, #a do
    fields[#fields + 1] = a[i]
  end
  fields[#fields + 1] = '#'
  local values = redis.call('HMGET', key, unpack(fields))
  local sweep_at = tonumber(values[#fields]) or tonumber(a[o + 5])
  fields[#fields] = nil
  local counts, writes, started = {}, {}, false
  for i = 1, #fields do
    local value = values[i]
    local sep, ends
    if value then
      sep = string.find(value, ':', 1, true)
      ends = tonumber(string.sub(value, 1, sep - 1))
    end
    if ends and ends > ts then
      local n = tonumber(string.sub(value, sep + 1))
      if amount ~= 0 then
        n = n + amount
        writes[#writes + 1] = fields[i]
        writes[#writes + 1] = string.sub(value, 1, sep) .. string.format('%d', n)
      end
      counts[i] = n
    elseif amount ~= 0 then
      writes[#writes + 1] = fields[i]
      writes[#writes + 1] = a[o + 3] .. ':' .. a[o + 2]
      counts[i] = amount
      started = true
    else
      counts[i] = 0
    end
  end
  if #writes > 0 then
    redis.call('HSET', key, unpack(writes))
  end
  if started then
    redis.call('EXPIRE', key, a[o + 4])
    if redis.call('HLEN', key) > sweep_at then
      local all = redis.call('HGETALL', key)
      local ended, live = {}, 0
      for j = 1, #all, 2 do
        local v = all[j + 1]
        local sep = string.find(v, ':', 1, true)
        if sep then                           -- not the "#" field
          if tonumber(string.sub(v, 1, sep - 1)) <= ts then
            ended[#ended + 1] = all[j]
          else
            live = live + 1
          end
        end
      end
      if #ended > 0 then
        redis.call('HDEL', key, unpack(ended))
      end
      redis.call('HSET', key, '#', string.format('%d', math.max(tonumber(a[o + 5]), 2 * live)))
    end
  end
  return counts
end
