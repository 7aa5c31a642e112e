-- One request's admission, in one round trip: is its token revoked, then GCRA over every bucket
-- of the request, charged all or none (see ratelimit.py).
-- ARGV[1]: r, how many KEYS are revocation keys (0 without a verified token); ARGV[2]: the token's iat.
-- KEYS[1..r]: not-before keys (modelgate_shared.revocation): a token issued before one is revoked.
-- KEYS[r+1..]: bucket keys, with (interval_us, burst) per key in ARGV[3..].
-- Returns {allowed, retry_after_us, index of the tightest bucket (1-based; 0: no bucket),
--          remaining, reset_us, revoked}.
local r = tonumber(ARGV[1])
if r > 0 then
  local iat = tonumber(ARGV[2])
  for i = 1, r do
    local not_before = tonumber(redis.call('GET', KEYS[i]) or '')
    if not_before ~= nil and iat < not_before then
      -- Refused before the buckets: whoever holds a revoked token cannot use up its owner's limit.
      return {0, 0, 0, 0, 0, 1}
    end
  end
end
local n = #KEYS - r
if n == 0 then
  return {1, 0, 0, 0, 0, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local allowed = 1
local retry = 0
local tats = {}
for i = 1, n do
  local interval = tonumber(ARGV[2 * i + 1])
  local burst = tonumber(ARGV[2 * i + 2])
  local tat = tonumber(redis.call('GET', KEYS[r + i]) or '0')
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
  local interval = tonumber(ARGV[2 * i + 1])
  local burst = tonumber(ARGV[2 * i + 2])
  local tat = tats[i]
  if allowed == 1 then
    tat = tat + interval
    -- %d: Lua's default number format keeps only 14 digits of a microsecond clock.
    redis.call('SET', KEYS[r + i], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  end
  local remaining = math.floor((now - (tat - burst * interval)) / interval)
  if remaining < 0 then remaining = 0 end
  if least == nil or remaining < least then
    least = remaining
    tightest = i
    least_reset = tat - now
  end
end
return {allowed, retry, tightest, least, least_reset, 0}
