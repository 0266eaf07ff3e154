-- A shared circuit breaker's view, updated by one instance's batch of outcomes.
-- KEYS[1]: the window's counts (a hash of "s<bucket>" and "f<bucket>" fields)
-- KEYS[2]: the instances that reported failures (a sorted set, scored by time in ms)
-- KEYS[3]: the open flag (a string holding the failed-recovery count, with a time to live)
-- KEYS[4]: the generation (incremented by every shared transition)
-- ARGV: instance, successes, failures, window_ms, bucket_ms, min_calls,
--       failure_rate (in thousandths), min_instances, open_ms,
--       proposal ('' | 'open' | 'close'), its end (ms of Redis time), its failed-recovery count
-- Returns {open (0/1), remaining open ms, calls in window, failures in window,
--          failing instances, Redis time in ms, generation, failed-recovery count}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local instance = ARGV[1]
local s = tonumber(ARGV[2])
local f = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local bucket_ms = tonumber(ARGV[5])
local min_calls = tonumber(ARGV[6])
local rate = tonumber(ARGV[7])
local min_instances = tonumber(ARGV[8])
local open_ms = tonumber(ARGV[9])
local proposal = ARGV[10]

-- A recovery that ended in this instance: it failed (the break starts again, longer) or
-- succeeded (the shared circuit closes).
if proposal == 'open' then
  local left = tonumber(ARGV[11]) - now
  if left > 0 then
    redis.call('SET', KEYS[3], ARGV[12], 'PX', left)
    redis.call('INCR', KEYS[4])
    redis.call('DEL', KEYS[1], KEYS[2])
  end
elseif proposal == 'close' then
  redis.call('DEL', KEYS[3])
  redis.call('INCR', KEYS[4])
end

local buckets = math.ceil(window / bucket_ms)
local b = math.floor(now / bucket_ms)
if s > 0 then redis.call('HINCRBY', KEYS[1], 's' .. b, s) end
if f > 0 then
  redis.call('HINCRBY', KEYS[1], 'f' .. b, f)
  redis.call('ZADD', KEYS[2], now, instance)
end
if s > 0 or f > 0 then
  redis.call('PEXPIRE', KEYS[1], window + bucket_ms)
  redis.call('PEXPIRE', KEYS[2], window + bucket_ms)
  -- the bucket that just left the window
  redis.call('HDEL', KEYS[1], 's' .. (b - buckets), 'f' .. (b - buckets))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)

local calls, fails = 0, 0
for i = b - buckets + 1, b do
  calls = calls + tonumber(redis.call('HGET', KEYS[1], 's' .. i) or 0)
  local fi = tonumber(redis.call('HGET', KEYS[1], 'f' .. i) or 0)
  fails = fails + fi
  calls = calls + fi
end
local instances = redis.call('ZCARD', KEYS[2])

local gen = tonumber(redis.call('GET', KEYS[4]) or 0)
local left = redis.call('PTTL', KEYS[3])
if left > 0 then
  local recoveries = tonumber(redis.call('GET', KEYS[3])) or 0
  return {1, left, calls, fails, instances, now, gen, recoveries}
end
if calls >= min_calls and fails * 1000 >= rate * calls and instances >= min_instances then
  redis.call('SET', KEYS[3], '0', 'PX', open_ms)
  gen = redis.call('INCR', KEYS[4])
  -- a fresh start after the break: the counts that opened it are spent
  redis.call('DEL', KEYS[1], KEYS[2])
  return {1, open_ms, calls, fails, instances, now, gen, 0}
end
return {0, 0, calls, fails, instances, now, gen, 0}
