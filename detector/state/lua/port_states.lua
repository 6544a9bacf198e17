-- port_states.lua: the current state record of many ports in one call (RedisStore.get_port_states, batch mode).
--
-- KEYS     one port-state hash per port, sg:portstate:{PORT} (fields: json plus the portable ones, see
--          PORT_STATE_FIELDS in detector/state/redis.py)
-- ARGV     none
--
-- Returns  one reply per key, in order: the hash's json field, or nil when the port has no state record.
--
-- Why a script: the engine reads the state of every port of a micro-batch (often 150-200 ports), and one
-- pipelined HGET per port cost the worker ~18 µs of client CPU each; one call with the ports as KEYS costs
-- a fraction of that. The keys span slots, so on a Redis Cluster the store uses the per-port pipeline
-- (RedisStore(url, cluster=True)), as it does instead of batch.lua.
local states = {}
for i = 1, #KEYS do
  states[i] = redis.call('HGET', KEYS[i], 'json')   -- false when absent: keeps its place, answered as nil
end
return states
