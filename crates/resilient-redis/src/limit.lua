-- resilient-redis: rate-limit decisions, each for one key over every limit of its quota,
-- in one round trip: a batch of N decisions decided in order, each seeing the writes of
-- the ones before it (exactly as N scripts run one after another at the same instant).
--
-- ARGV[1]: L, the number of limits; then four per limit: algorithm, a, b, c (times in
-- microseconds); then the stride (see below) and the N costs.
-- KEYS[(j-1)*L + i]: the state of limit i for decision j (a decision's keys all under one
-- {hash tag}, so one Cluster slot; a batch on a Cluster shares one tag).
-- Returns, per decision and limit: remaining if it admits (-1 - remaining if not),
-- reset_us, retry_us; a decision is admitted if every limit admits.
--
-- Time is the server's (TIME), in microseconds since 2023-11-14 00:00 UTC (a whole number
-- of days after the Unix epoch, so windows of a day or less start at UTC midnight; the
-- offset keeps times small enough for a Lua double to hold sub-microsecond fractions).
-- Nothing is written for a decision unless every limit admits and the cost is not zero: a
-- denial, or a quota one of whose limits refuses, leaves every state as it was.

if redis.replicate_commands then
  pcall(redis.replicate_commands)
end

local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1699920000) * 1000000 + tonumber(t[2])
local cost = 0

-- A decision's writes, made only if every limit admits: SETs in flat arrays (no table per
-- write), anything else (the sliding log's sorted set) as command tables. With one limit
-- an admission is final, so its SET is made at once.
local direct = false
local wk, wv, wt, nw = {}, {}, {}, 0
local writes = {}
local function put(key, value, ttl)
  if direct then
    redis.call('SET', key, value, 'PX', ttl)
  else
    nw = nw + 1
    wk[nw], wv[nw], wt[nw] = key, value, ttl
  end
end

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
      put(key, string.format('%.17g', nxt), ms(used))
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
      put(key, string.format('%d %d', start, d), ms(time_for(d)))
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
      put(key, string.format('%d %d', idx, u), ms(to_end))
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
      put(key, string.format('%d %d %d', idx, prev, cur), ms(reset()))
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

local L = tonumber(ARGV[1])
local fs, params = {}, {}
for i = 1, L do
  local o = 2 + (i - 1) * 4
  local f = algorithms[ARGV[o]]
  if not f then
    return redis.error_reply('resilient-redis: unknown algorithm ' .. tostring(ARGV[o]))
  end
  fs[i] = f
  params[i] = {tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])}
end

-- ARGV[2 + 4L]: the stride of the costs: 1 (one cost per decision) or 2 (a cost and the
-- units wanted, for leases: the wanted units are tried first, then the cost alone). With
-- stride 2 each decision's reply ends with the units granted (0: denied).
local res = {}
local first_cost = 2 + 4 * L
local stride = tonumber(ARGV[first_cost])
first_cost = first_cost + 1
direct = L == 1 and stride == 1

-- Decision j at cost c, its replies written into out from out[at + 1]; true if every
-- limit admits. Nothing is written to Redis (unless direct) before commit().
local function decide(j, c, out, at)
  cost = c
  nw = 0
  if #writes > 0 then
    writes = {}
  end
  local all = true
  for i = 1, L do
    local p = params[i]
    local allowed, _, remaining, reset, retry = fs[i](KEYS[j * L + i], p[1], p[2], p[3])
    if allowed == 0 then
      all = false
      remaining = -1 - remaining
    end
    local r = at + (i - 1) * 3
    out[r + 1] = remaining
    out[r + 2] = math.ceil(reset)
    out[r + 3] = math.ceil(retry)
  end
  return all
end

local function commit()
  for w = 1, nw do
    redis.call('SET', wk[w], wv[w], 'PX', wt[w])
  end
  for _, cmd in ipairs(writes) do
    redis.call(unpack(cmd))
  end
end

local row = {}
for j = 0, (#ARGV - first_cost + 1) / stride - 1 do
  local at = first_cost + j * stride
  local c = tonumber(ARGV[at])
  local granted = -1
  if stride == 2 then
    local want = tonumber(ARGV[at + 1])
    if want > c and decide(j, want, row, 0) then
      commit()
      for k = 1, 3 * L do
        res[#res + 1] = row[k]
      end
      granted = want
    end
  end
  if granted < 0 then
    if decide(j, c, res, #res) then
      commit()
      granted = c
    else
      granted = 0
    end
  end
  if stride == 2 then
    res[#res + 1] = granted
  end
end
return res
