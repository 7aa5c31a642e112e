-- GCRA over every bucket of one request, charged all or none (see ratelimit.py).
-- KEYS: bucket keys. ARGV: (interval_us, burst) per key.
-- Returns {allowed, retry_after_us, index of the tightest bucket (1-based), remaining, reset_us}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local allowed = 1
local retry = 0
local tats = {}
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  local allow_at = tat + interval - burst * interval
  if now < allow_at then
    allowed = 0
    if allow_at - now > retry then retry = allow_at - now end
  end
end
local tightest = 1
local least = nil
local least_reset = 0
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tats[i]
  if allowed == 1 then
    tat = tat + interval
    -- %d: Lua's default number format keeps only 14 digits of a microsecond clock.
    redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  end
  local remaining = math.floor((now - (tat - burst * interval)) / interval)
  if remaining < 0 then remaining = 0 end
  if least == nil or remaining < least then
    least = remaining
    tightest = i
    least_reset = tat - now
  end
end
return {allowed, retry, tightest, least, least_reset}
