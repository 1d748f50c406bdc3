-- Tollgate budgets, shared store: settle a request's counters to what it really used (or refund
-- what it did not), once. Sent by EVALSHA (after SCRIPT LOAD; EVAL when Redis answers NOSCRIPT).
-- Contract and measurements: docs/redis-store.md.
--
-- KEYS[1]            the operation's idempotency key, tollgate:budget-op:<uuid> (one per settlement,
--                    never the reservation's)
-- KEYS[1 + i]        counter i (i = 1..N): tollgate:budget:<scope key>:<window id>
-- ARGV[1]            seconds the operation's answer is kept for retries (e.g. 3600)
-- ARGV[2i]           counter i's delta: a whole number, may be negative (-9223372036854775807 ..
--                    9223372036854775807); the counter never goes below 0
-- ARGV[2i + 1]       counter i's TTL in seconds, set when the counter has none
--
-- A missing counter with a delta of 0 or less is left missing (its window rolled over, or it was
-- reset: there is nothing to refund) and answers "0".
-- Answer, a flat array: {"value_1", ..., "value_N"}, each counter after (decimal strings, as in
-- reserve.lua). The same operation key again (a retry) gets the first answer and changes nothing.
-- Error replies, after which nothing has changed:
--   TOLLGATE_CORRUPT <key>    a counter holds something other than a whole number 0 .. 2^63-1,
--                             or the operation key holds something other than a settlement's answer
--   TOLLGATE_OVERFLOW <key>   the counter would pass 2^63-1
--   TOLLGATE_BADARG <what>    the arguments break the contract above

-- helpers: begin (the same in reserve.lua and settle.lua; a test keeps them equal)
-- Whole numbers 0 .. 2^63-1 as {high, low} halves around 10^9, each exact in a double.
local BASE = 1000000000
local MAX_TEXT = '9223372036854775807'

local function is_whole(text)
  return type(text) == 'string' and #text >= 1 and #text <= 19 and string.match(text, '^%d+$') ~= nil
    and (#text < 19 or text <= MAX_TEXT)
end

local function whole(text)
  local n = #text
  if n <= 9 then
    return {0, tonumber(text)}
  end
  return {tonumber(string.sub(text, 1, n - 9)), tonumber(string.sub(text, n - 8))}
end

local MAX = whole(MAX_TEXT)

local function text_of(a)
  if a[1] == 0 then
    return string.format('%d', a[2])
  end
  return string.format('%d%09d', a[1], a[2])
end

local function less(a, b)
  return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2])
end

local function plus(a, b)
  local high, low = a[1] + b[1], a[2] + b[2]
  if low >= BASE then
    high, low = high + 1, low - BASE
  end
  return {high, low}
end

-- a - b, never below 0
local function minus(a, b)
  if not less(b, a) then
    return {0, 0}
  end
  local high, low = a[1] - b[1], a[2] - b[2]
  if low < 0 then
    high, low = high - 1, low + BASE
  end
  return {high, low}
end

local function is_ttl(text)
  return type(text) == 'string' and string.match(text, '^%d+$') ~= nil and #text <= 10 and tonumber(text) > 0
end

-- A counter's value: {high, low}, {0, 0} when missing (second result false), or nil when it is
-- not a whole number (wrong type, text, negative, too large).
local function read_counter(key)
  local value = redis.pcall('GET', key)
  if value == false then
    return {0, 0}, false
  end
  if not is_whole(value) then
    return nil, true
  end
  return whole(value), true
end

-- Writes a counter; sets its TTL when it has none (a new key, or one written without expiry).
local function write_counter(key, value, ttl)
  if redis.call('TTL', key) < 0 then
    redis.call('SET', key, text_of(value), 'EX', ttl)
  else
    redis.call('SET', key, text_of(value), 'KEEPTTL')
  end
end

local function split(text)
  local words = {}
  for word in string.gmatch(text, '%S+') do
    words[#words + 1] = word
  end
  return words
end
-- helpers: end

local n = #KEYS - 1
if n < 0 then
  return redis.error_reply('TOLLGATE_BADARG KEYS needs the operation key first')
end
if #ARGV ~= 1 + 2 * n then
  return redis.error_reply('TOLLGATE_BADARG ARGV needs 1 + 2 per counter, got ' .. #ARGV)
end
local op_key, op_ttl = KEYS[1], ARGV[1]
if not is_ttl(op_ttl) then
  return redis.error_reply('TOLLGATE_BADARG ARGV[1] (operation TTL)')
end

-- A retry: the first answer, unchanged. The record is "settle value_1 .. value_N".
local done = redis.pcall('GET', op_key)
if done ~= false then
  local words = type(done) == 'string' and split(done) or {}
  if words[1] ~= 'settle' then
    return redis.error_reply('TOLLGATE_CORRUPT ' .. op_key)
  end
  local answer = {}
  for at = 2, #words do
    answer[#answer + 1] = words[at]
  end
  return answer
end

local deltas, negative, ttls = {}, {}, {}
for i = 1, n do
  local delta, ttl = ARGV[2 * i], ARGV[2 * i + 1]
  local sign, digits = string.match(delta, '^(%-?)(%d+)$')
  if not sign or not is_whole(digits) then
    return redis.error_reply('TOLLGATE_BADARG ARGV[' .. (2 * i) .. '] (delta of ' .. KEYS[1 + i] .. ')')
  end
  if not is_ttl(ttl) then
    return redis.error_reply('TOLLGATE_BADARG ARGV[' .. (2 * i + 1) .. '] (TTL of ' .. KEYS[1 + i] .. ')')
  end
  deltas[i], negative[i], ttls[i] = whole(digits), sign == '-', ttl
end

-- Read every counter first (a key named twice takes both deltas, in order), decide, then write.
local after, exists, order = {}, {}, {}
for i = 1, n do
  local key = KEYS[1 + i]
  if after[key] == nil then
    local value, present = read_counter(key)
    if value == nil then
      return redis.error_reply('TOLLGATE_CORRUPT ' .. key)
    end
    after[key], exists[key] = value, present
    order[#order + 1] = i
  end
end

local zero = {0, 0}
for i = 1, n do
  local key = KEYS[1 + i]
  if negative[i] then
    if exists[key] then
      after[key] = minus(after[key], deltas[i])
    end
  elseif less(zero, deltas[i]) then
    local value = plus(after[key], deltas[i])
    if less(MAX, value) then
      return redis.error_reply('TOLLGATE_OVERFLOW ' .. key)
    end
    after[key], exists[key] = value, true
  end
end

local answer = {}
for i = 1, n do
  answer[i] = text_of(after[KEYS[1 + i]])
end
for _, i in ipairs(order) do
  local key = KEYS[1 + i]
  if exists[key] then
    write_counter(key, after[key], ttls[i])
  end
end

redis.call('SET', op_key, 'settle ' .. table.concat(answer, ' '), 'EX', op_ttl)
return answer
