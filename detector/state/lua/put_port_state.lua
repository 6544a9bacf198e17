-- put_port_state.lua: store a port's new state record and append it to the port's history, atomically, and
-- (for the engine) only if the record it was decided from is still the port's record (RedisStore.put_port_state).
--
-- KEYS[1]  sg:portstate:{PORT}, the hash of the current record (json plus the flat fields of PORT_STATE_FIELDS
--          in detector/state/redis.py; ts_ms among them)
-- KEYS[2]  sg:porthist:{PORT}, a list of the port's records as json, newest first
-- ARGV[1]  the condition: "*" writes whatever the port holds (operators: their decisions win); "" writes only
--          if the port has no record; a number writes only if the current record's ts_ms is that number
-- ARGV[2]  how many records the history keeps (>= 1)
-- ARGV[3]  the new record's json (pushed to the history)
-- ARGV[4..] field, value pairs of the new record's hash (json among them)
--
-- Returns  1 when stored, 0 when the condition failed (nothing written).
--
-- Why a script: the engine decides a port's next state from the record it read at the start of a micro-batch;
-- an operator's block stored while the batch ran must not be overwritten by an engine throttle decided without
-- it (a plain HSET is last-write-wins). Both keys carry the port's hash tag: one slot, so Redis Cluster runs it.
-- The ports index sg:ports (no hash tag) is updated by the client once the record is stored.
-- The record compared is the one RedisStore reads, the json: a hash without it holds no record, and the flat ts_ms
-- is its copy (a hash lacking the copy, written by hand or by another tool, is compared by the json's own ts_ms;
-- else the engine could never replace what it read there).
local condition = ARGV[1]
if condition ~= '*' then
  local record = redis.call('HMGET', KEYS[1], 'json', 'ts_ms')
  local current = ''
  if record[1] then
    current = record[2] or string.format('%d', cjson.decode(record[1])['ts_ms'])
  end
  if current ~= condition then
    return 0
  end
end
local fields = {}
for i = 4, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
return 1
