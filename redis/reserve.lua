-- Tollgate budgets, shared store: take a request's reservation from every counter it touches, or
-- from none. Sent by EVALSHA (after SCRIPT LOAD; EVAL when Redis answers NOSCRIPT). Contract and
-- measurements: docs/redis-store.md.
--
-- KEYS[1]            the operation's idempotency key, tollgate:budget-op:<uuid> (one per reservation)
-- KEYS[1 + i]        counter i (i = 1..N): tollgate:budget:<scope key>:<window id>
-- ARGV[1]            seconds the operation's answer is kept for retries (e.g. 3600)
-- ARGV[3i - 1]       counter i's amount: a whole number, 0 .. 9223372036854775807
-- ARGV[3i]           counter i's cap, or -1: shadow (counted, never refuses)
-- ARGV[3i + 1]       counter i's TTL in seconds, set when the counter has none (its window's end
--                    plus a grace period)
-- Leases (optional: ARGV has 1 + 5N entries instead of 1 + 3N):
-- ARGV[3N + 2i]      counter i's slice: how much more to take for the proxy's local slice, 0 for none
-- ARGV[3N + 2i + 1]  counter i's slice cap: the slice is taken only if the counter, with the
--                    request's amount and the slice, stays within it (the limit, shadow ones too);
--                    else the request's amount alone is taken (under its own cap, as without leases)
--
-- Answer, a flat array (webdis 0.1.9 turns nested arrays into null):
--   {1, "used_1", ..., "used_N"}  admitted: every counter took its amount; used_i is its value after
--   {1, "used_1", ..., "used_N", "granted_1", ..., "granted_N"}
--                                 the same with leases: granted_i is the slice taken (0 or the slice),
--                                 counted in used_i
--   {0, i, "used_i"}              refused by counter i (the first enforcing one whose used + amount
--                                 would pass its cap); nothing was changed; used_i is its value
-- Counter values are decimal strings: Lua's numbers are doubles, exact only up to 2^53, and an
-- integer reply passes through them (a spend counter in pico-dollars passes 2^53 at $9,007).
-- The same operation key again (a retry) gets the first answer and changes nothing.
-- Error replies, after which nothing has changed:
--   TOLLGATE_CORRUPT <key>    a counter holds something other than a whole number 0 .. 2^63-1,
--                             or the operation key holds something other than a reservation's answer
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
local leasing = #ARGV == 1 + 5 * n and n > 0
if #ARGV ~= 1 + 3 * n and not leasing then
  return redis.error_reply('TOLLGATE_BADARG ARGV needs 1 + 3 per counter (or 1 + 5 with leases), got ' .. #ARGV)
end
local op_key, op_ttl = KEYS[1], ARGV[1]
if not is_ttl(op_ttl) then
  return redis.error_reply('TOLLGATE_BADARG ARGV[1] (operation TTL)')
end

-- A retry: the first answer, unchanged. The record is "reserve 1 used_1 .. used_N" or
-- "reserve 0 i used_i".
local done = redis.pcall('GET', op_key)
if done ~= false then
  local words = type(done) == 'string' and split(done) or {}
  if words[1] ~= 'reserve' or (words[2] ~= '1' and words[2] ~= '0') then
    return redis.error_reply('TOLLGATE_CORRUPT ' .. op_key)
  end
  local answer = {tonumber(words[2])}
  for at = 3, #words do
    answer[#answer + 1] = words[at]
  end
  if words[2] == '0' then
    answer[2] = tonumber(words[3])
  end
  return answer
end

local amounts, caps, ttls = {}, {}, {}
for i = 1, n do
  local amount, cap, ttl = ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1]
  if not is_whole(amount) then
    return redis.error_reply('TOLLGATE_BADARG ARGV[' .. (3 * i - 1) .. '] (amount of ' .. KEYS[1 + i] .. ')')
  end
  if cap ~= '-1' and not is_whole(cap) then
    return redis.error_reply('TOLLGATE_BADARG ARGV[' .. (3 * i) .. '] (cap of ' .. KEYS[1 + i] .. ')')
  end
  if not is_ttl(ttl) then
    return redis.error_reply('TOLLGATE_BADARG ARGV[' .. (3 * i + 1) .. '] (TTL of ' .. KEYS[1 + i] .. ')')
  end
  amounts[i], ttls[i] = whole(amount), ttl
  if cap ~= '-1' then
    caps[i] = whole(cap)
  end
end

local slices, slice_caps = {}, {}
if leasing then
  for i = 1, n do
    local slice, slice_cap = ARGV[3 * n + 2 * i], ARGV[3 * n + 2 * i + 1]
    if not is_whole(slice) then
      return redis.error_reply('TOLLGATE_BADARG ARGV[' .. (3 * n + 2 * i) .. '] (slice of ' .. KEYS[1 + i] .. ')')
    end
    if not is_whole(slice_cap) then
      return redis.error_reply('TOLLGATE_BADARG ARGV[' .. (3 * n + 2 * i + 1) .. '] (slice cap of ' .. KEYS[1 + i] .. ')')
    end
    slices[i], slice_caps[i] = whole(slice), whole(slice_cap)
  end
end

-- Read every counter first (a key named twice counts both amounts), decide, then write.
local stored, after, order = {}, {}, {}
for i = 1, n do
  local key = KEYS[1 + i]
  if stored[key] == nil then
    local value = read_counter(key)
    if value == nil then
      return redis.error_reply('TOLLGATE_CORRUPT ' .. key)
    end
    stored[key], after[key] = value, value
    order[#order + 1] = i
  end
end

local answer = {1}
for i = 1, n do
  local key = KEYS[1 + i]
  local used = plus(after[key], amounts[i])
  if less(MAX, used) then
    return redis.error_reply('TOLLGATE_OVERFLOW ' .. key)
  end
  if caps[i] ~= nil and less(caps[i], used) then
    answer = {0, i, text_of(stored[key])}
    break
  end
  after[key] = used
end

-- Slices, once every counter took the request's amount: each where it fits under its slice cap.
local granted = {}
if answer[1] == 1 and leasing then
  for i = 1, n do
    local key = KEYS[1 + i]
    granted[i] = {0, 0}
    if less({0, 0}, slices[i]) then
      local with_slice = plus(after[key], slices[i])
      if not less(MAX, with_slice) and not less(slice_caps[i], with_slice) then
        after[key], granted[i] = with_slice, slices[i]
      end
    end
  end
end

if answer[1] == 1 then
  for i = 1, n do
    answer[1 + i] = text_of(after[KEYS[1 + i]])
  end
  if leasing then
    for i = 1, n do
      answer[1 + n + i] = text_of(granted[i])
    end
  end
  for _, i in ipairs(order) do
    local key = KEYS[1 + i]
    write_counter(key, after[key], ttls[i])
  end
end

local record = {'reserve'}
for at = 1, #answer do
  record[#record + 1] = tostring(answer[at])
end
redis.call('SET', op_key, table.concat(record, ' '), 'EX', op_ttl)
return answer
