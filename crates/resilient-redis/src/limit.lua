-- resilient-redis: one rate-limit decision for one key, over every limit of its quota, in
-- one round trip.
--
-- KEYS[i]: the state of limit i (all under one {hash tag}, so one Cluster slot).
-- ARGV[1]: the cost; then four per limit: algorithm, a, b, c (times in microseconds).
-- Returns {all_allowed, then per limit: allowed, limit, remaining, reset_us, retry_us}.
--
-- Time is the server's (TIME), in microseconds since 2023-11-14 00:00 UTC (a whole number
-- of days after the Unix epoch, so windows of a day or less start at UTC midnight; the
-- offset keeps times small enough for a Lua double to hold sub-microsecond fractions).
-- Nothing is written unless every limit admits and the cost is not zero: a denial, or a
-- quota one of whose limits refuses, leaves every state as it was.

-- Redis < 5 replicates scripts verbatim unless told to replicate their effects, and TIME
-- is not deterministic; Redis >= 5 always replicates effects (the call is then a no-op,
-- and absent from Redis 7.x builds that dropped it).
if redis.replicate_commands then
  pcall(redis.replicate_commands)
end

local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1699920000) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local writes = {}

-- A TTL in milliseconds for a state that is fresh again `us` microseconds from now.
local function ms(us)
  return math.max(1, math.ceil(us / 1000))
end

-- Floating point leaves a fraction of a microsecond of error on 1e14 µs clock readings.
local EPS = 0.5

-- GCRA: the state is the theoretical arrival time (TAT).
local function gcra(key, interval, burst)
  local tat = tonumber(redis.call('GET', key)) or 0
  local cap = burst * interval
  local base = math.max(tat, now)
  local nxt = base + cost * interval
  local over = nxt - now - cap
  if over <= EPS then
    local used = nxt - now
    if cost > 0 then
      writes[#writes + 1] = {'SET', key, string.format('%.17g', nxt), 'PX', ms(used)}
    end
    return 1, burst, math.floor((cap - used) / interval + 1e-6), used, 0
  end
  local used = base - now
  return 0, burst, math.max(0, math.floor((cap - used) / interval + 1e-6)), used, over
end

-- Token bucket refilled `amount` tokens every `every` µs: "start deficit", the start of
-- the running refill period and the tokens missing from a full bucket.
local function token_bucket(key, cap, amount, every)
  local start, deficit = now, 0
  local s = redis.call('GET', key)
  if s then
    local a, b = string.match(s, '^(%-?%d+) (%d+)$')
    start, deficit = tonumber(a), tonumber(b)
    if now > start then
      local periods = math.floor((now - start) / every)
      deficit = math.max(0, deficit - periods * amount)
      start = start + periods * every
    end
    if deficit == 0 then
      start = now -- full: the same as a fresh key
    end
  end
  deficit = math.min(deficit, cap)
  local tokens = cap - deficit
  local function time_for(need)
    if need <= 0 then
      return 0
    end
    return math.max(0, start + math.ceil(need / amount) * every - now)
  end
  if cost <= tokens then
    local d = deficit + cost
    if cost > 0 then
      writes[#writes + 1] = {'SET', key, string.format('%d %d', start, d), 'PX', ms(time_for(d))}
    end
    return 1, cap, tokens - cost, time_for(d), 0
  end
  return 0, cap, tokens, time_for(deficit), time_for(cost - tokens)
end

-- Fixed window: "index used", the window's index and the units used in it.
local function fixed_window(key, limit, w)
  local idx = math.floor(now / w)
  local used = 0
  local s = redis.call('GET', key)
  if s then
    local a, b = string.match(s, '^(%d+) (%d+)$')
    a, b = tonumber(a), tonumber(b)
    if a >= idx then
      -- a == idx, or the clock went back: count in the newer window (conservative)
      idx, used = a, b
    end
  end
  local to_end = (idx + 1) * w - now
  if used + cost <= limit then
    local u = used + cost
    if cost > 0 then
      writes[#writes + 1] = {'SET', key, string.format('%d %d', idx, u), 'PX', ms(to_end)}
    end
    local reset = 0
    if u > 0 then
      reset = to_end
    end
    return 1, limit, limit - u, reset, 0
  end
  return 0, limit, math.max(0, limit - used), to_end, to_end
end

-- Sliding window counter: "index previous current".
local function sliding_counter(key, limit, w)
  local idx = math.floor(now / w)
  local off = now - idx * w
  local prev, cur = 0, 0
  local s = redis.call('GET', key)
  if s then
    local a, b, c = string.match(s, '^(%d+) (%d+) (%d+)$')
    a, b, c = tonumber(a), tonumber(b), tonumber(c)
    if a == idx then
      prev, cur = b, c
    elseif a + 1 == idx then
      prev = c
    elseif a > idx then
      idx, off, prev, cur = a, 0, b, c -- the clock went back: the newer window, weighted fully
    end
  end
  local function reset()
    if cur > 0 then
      return 2 * w - off
    elseif prev > 0 then
      return w - off
    end
    return 0
  end
  -- Time from `e` into a window until `prev` weighted by what is left of it fits in `room`.
  local function until_fits(p, room, e)
    if p == 0 then
      return 0
    end
    local keep = math.min(math.floor(room * w / p), w)
    return math.max(0, (w - keep) - e)
  end
  local used = prev * (w - off) / w + cur
  if used + cost <= limit + 1e-9 then
    cur = cur + cost
    if cost > 0 then
      writes[#writes + 1] = {'SET', key, string.format('%d %d %d', idx, prev, cur), 'PX', ms(reset())}
    end
    return 1, limit, math.max(0, math.floor(limit - used - cost + 1e-9)), reset(), 0
  end
  local retry
  if cur + cost <= limit then
    retry = until_fits(prev, limit - cur - cost, off)
  else
    retry = (w - off) + until_fits(cur, math.max(0, limit - cost), 0)
  end
  return 0, limit, math.max(0, math.floor(limit - used + 1e-9)), reset(), math.max(retry, 1)
end

-- Sliding window log: a sorted set of "time:units" scored by time.
local function sliding_log(key, limit, w)
  local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local sum, live = 0, {}
  for j = 1, #entries, 2 do
    local ts = tonumber(entries[j + 1])
    if ts + w > now then
      local c = tonumber(string.match(entries[j], ':(%d+)$'))
      sum = sum + c
      live[#live + 1] = {ts, c, entries[j]}
    end
  end
  local last = live[#live]
  local reset = 0
  if last then
    reset = last[1] + w - now
  end
  if sum + cost <= limit then
    if cost > 0 then
      writes[#writes + 1] = {'ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now - w)}
      if last and last[1] >= now then
        writes[#writes + 1] = {'ZREM', key, last[3]}
        writes[#writes + 1] = {'ZADD', key, string.format('%d', last[1]),
          string.format('%d:%d', last[1], last[2] + cost)}
      else
        writes[#writes + 1] = {'ZADD', key, string.format('%d', now), string.format('%d:%d', now, cost)}
      end
      writes[#writes + 1] = {'PEXPIRE', key, ms(w)}
      reset = w
    end
    return 1, limit, limit - sum - cost, reset, 0
  end
  local need, freed, retry = sum + cost - limit, 0, 0
  for _, e in ipairs(live) do
    freed = freed + e[2]
    if freed >= need then
      retry = e[1] + w - now
      break
    end
  end
  return 0, limit, math.max(0, limit - sum), reset, retry
end

local algorithms = {
  gcra = gcra,
  token_bucket = token_bucket,
  fixed_window = fixed_window,
  sliding_counter = sliding_counter,
  sliding_log = sliding_log,
}

local res = {1}
for i = 1, #KEYS do
  local o = 1 + (i - 1) * 4
  local f = algorithms[ARGV[o + 1]]
  if not f then
    return redis.error_reply('resilient-redis: unknown algorithm ' .. tostring(ARGV[o + 1]))
  end
  local allowed, limit, remaining, reset, retry =
    f(KEYS[i], tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4]))
  if allowed == 0 then
    res[1] = 0
  end
  res[#res + 1] = allowed
  res[#res + 1] = limit
  res[#res + 1] = remaining
  res[#res + 1] = math.ceil(reset)
  res[#res + 1] = math.ceil(retry)
end
if res[1] == 1 then
  for _, cmd in ipairs(writes) do
    redis.call(unpack(cmd))
  end
end
return res
