-- baseline: per-minute rate baseline, an EWMA of per-minute counts and its variance (StateStore op Baseline).
--
-- KEYS[1]  a hash with fields
--            mean    EWMA of the per-minute count (double, "%.17g" so it round-trips exactly)
--            var     EWMA variance (double, "%.17g")
--            seen    minutes folded so far (integer)
--            minute  the current event minute (ts_ms // 60000)
--            count   the count of the current minute so far (integer)
-- ARGV[1]  event minute (ts_ms // 60000)
-- ARGV[2]  amount to add to the current minute (integer, decimal string)
-- ARGV[3]  alpha, the EWMA weight (Python repr of a float)
-- ARGV[4]  TTL in seconds (a week: an untouched baseline has decayed to nothing), set when the key's
--          current minute starts (like MemoryStore, which forgets a baseline whose minute is a week old)
--
-- Returns  {mean, var, seen, count}; mean and var as "%.17g" strings (Lua numbers would be truncated
--          to integers on the way out).
--
-- When the event minute moves past the stored minute, the stored minute's count is folded in (once 30
-- minutes are seen, at most 3 standard deviations above the mean), then
-- every empty minute in between; otherwise only the count is incremented (HINCRBY), and mean and var
-- are answered as stored, unformatted. The arithmetic is exactly detector.state.memory.fold_baseline
-- (IEEE doubles in the same order); keep the two in step.
--
-- As a function: baseline(key, a, o) reads ARGV[i] as a[o + i].
local function baseline(key, a, o)
  local minute = tonumber(a[o + 1])
  local amount = tonumber(a[o + 2])
  local alpha = tonumber(a[o + 3])

  local mean, var, seen, cur, count = 0.0, 0.0, 0, minute, 0
  local stored = redis.call('HMGET', key, 'mean', 'var', 'seen', 'minute', 'count')
  if stored[4] then
    cur = tonumber(stored[4])
    if minute <= cur then     -- the current minute (or a late event): only the count moves
      count = tonumber(stored[5])
      if amount ~= 0 then
        count = redis.call('HINCRBY', key, 'count', a[o + 2])
      end
      return {stored[1], stored[2], tonumber(stored[3]), count}
    end
    mean, var = tonumber(stored[1]), tonumber(stored[2])
    seen, count = tonumber(stored[3]), tonumber(stored[5])
  end

  if minute > cur then
    local gap = minute - cur
    local diff = count - mean
    if seen >= 30 then        -- BASELINE_WARM_MINUTES: a warm baseline folds a burst in at most 3 sd above
      local limit = 3.0 * math.sqrt(var + mean + 1.0)      -- BASELINE_CLIP_SD
      if diff > limit then
        diff = limit
      end
    end
    local incr = alpha * diff
    mean = mean + incr
    var = (1 - alpha) * (var + diff * incr)
    seen = seen + 1
    local empty = math.min(gap - 1, 10000)
    for _ = 1, math.min(empty, 120) do
      diff = -mean
      incr = alpha * diff
      mean = mean + incr
      var = (1 - alpha) * (var + diff * incr)
    end
    if empty > 120 then
      mean = mean * (1 - alpha) ^ (empty - 120)
      var = var * (1 - alpha) ^ (empty - 120)
    end
    seen = seen + empty
    cur, count = minute, 0
  end
  count = count + amount

  local mean_s, var_s = string.format('%.17g', mean), string.format('%.17g', var)
  redis.call('HSET', key, 'mean', mean_s, 'var', var_s, 'seen', string.format('%d', seen),
             'minute', string.format('%d', cur), 'count', string.format('%d', count))
  redis.call('EXPIRE', key, a[o + 4])
  return {mean_s, var_s, seen, count}
end
