-- port_registries.lua: the signature registry entries of many ports in one call
-- (RedisStore.registered_signatures, batch mode).
--
-- KEYS     one registry set per port, sg:sigreg:{PORT}: its registered signatures plus the member ""
--          (the entry exists even when it lists no signature)
-- ARGV     none
--
-- Returns  one reply per key, in order: the set's members (an empty array when the port has no entry).
--
-- Why a script: see port_states.lua (one pipelined SMEMBERS per port of every micro-batch otherwise).
local entries = {}
for i = 1, #KEYS do
  entries[i] = redis.call('SMEMBERS', KEYS[i])
end
return entries
