-- leaky_bucket.lua: the throttle gateways enforce on a port, shared by every gateway process
-- (after rspamd's ratelimit: one atomic script per check, rates written as "60 / 1min").
--
-- KEYS[1]  sg:bucket:{PORT}, a hash with fields
--            level  messages in the bucket after the last leak (double, "%.17g")
--            last   Redis server time (ms) of the last allowed message
-- ARGV[1]  rate: messages per minute the bucket leaks (> 0; the port state's rate_limit_per_min)
-- ARGV[2]  burst: the bucket's capacity in messages (>= 1)
--
-- Returns  {1, 0}                 allowed: the message took one place in the bucket
--          {0, retry_after_ms}    delayed: the bucket is full; one place frees after retry_after_ms.
--                                 Nothing is taken, so a delayed sender asks again later.
--
-- Time is the Redis server's clock (TIME), so gateways on hosts with different clocks share one
-- rate. The bucket leaks continuously at rate / 60000 messages per ms; over a long run the allowed
-- rate is `rate` per minute, after an initial burst of `burst`. The key expires once it would be
-- empty, so idle ports cost no memory.
local key = KEYS[1]
local rate_per_ms = tonumber(ARGV[1]) / 60000
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local level = 0
local stored = redis.call('HMGET', key, 'level', 'last')
if stored[1] then
  level = math.max(0, tonumber(stored[1]) - (now - tonumber(stored[2])) * rate_per_ms)
end

if level + 1 <= burst then
  level = level + 1
  redis.call('HSET', key, 'level', string.format('%.17g', level), 'last', string.format('%d', now))
  redis.call('PEXPIRE', key, math.ceil(level / rate_per_ms) + 1000)
  return {1, 0}
end
return {0, math.ceil((level + 1 - burst) / rate_per_ms)}
