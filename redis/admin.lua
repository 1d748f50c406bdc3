-- Tollgate budgets, shared store: the admin API's reads and resets of counters (`GET` and
-- `POST`/`DELETE` on budgets.admin.path; README, "Operators"). Sent by EVALSHA (EVAL when Redis
-- answers NOSCRIPT), like reserve.lua and settle.lua; atomic like them, so a reset never lands
-- between a reservation's read and its write, and a listing is one instant's.
--
-- KEYS[1..N]   the counters to read or delete, each tollgate:budget:<scope key>:<window id>;
--              none: every key matching ARGV[2]
-- ARGV[1]      "read" or "delete"
-- ARGV[2]      with no KEYS, a SCAN MATCH pattern under tollgate:budget: (tollgate:budget:* or
--              tollgate:budget:<limit>:*); ignored otherwise
-- ARGV[3]      the most counters answered (and deleted): 1 .. 100000
--
-- Answer, a flat array (webdis 0.1.9 turns nested arrays into null):
--   {more, key_1, value_1, ..., key_M, value_M}
-- more is 1 when more keys matched than ARGV[3] (those are neither answered nor deleted), else
-- 0; each key that exists, with its value as stored (before it was deleted). A key holding
-- something other than a string answers the value "WRONGTYPE" (and is deleted by "delete").
-- Walking the keyspace (no KEYS) runs SCAN to its end inside the script: Redis serves nothing
-- else meanwhile, about 1 s per million keys in the database (README, "Operators").
-- Error replies, after which nothing has changed:
--   TOLLGATE_BADARG <what>    the arguments break the contract above

local PREFIX = 'tollgate:budget:'
local mode, pattern, max = ARGV[1], ARGV[2], tonumber(ARGV[3])
if #ARGV ~= 3 or (mode ~= 'read' and mode ~= 'delete') then
  return redis.error_reply('TOLLGATE_BADARG ARGV needs read|delete, a pattern and a count')
end
if max == nil or max < 1 or max > 100000 or max ~= math.floor(max) then
  return redis.error_reply('TOLLGATE_BADARG ARGV[3] (count)')
end
local function under_prefix(text)
  return type(text) == 'string' and string.sub(text, 1, #PREFIX) == PREFIX
end

local keys, seen, more = {}, {}, 0
if #KEYS > 0 then
  for i = 1, #KEYS do
    if not under_prefix(KEYS[i]) then
      return redis.error_reply('TOLLGATE_BADARG KEYS[' .. i .. '] is not a counter')
    end
    if not seen[KEYS[i]] then
      if #keys >= max then
        more = 1
        break
      end
      seen[KEYS[i]] = true
      keys[#keys + 1] = KEYS[i]
    end
  end
else
  if not under_prefix(pattern) then
    return redis.error_reply('TOLLGATE_BADARG ARGV[2] (pattern) is not under ' .. PREFIX)
  end
  local cursor = '0'
  repeat
    local reply = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = reply[1]
    for _, key in ipairs(reply[2]) do
      if not seen[key] then
        if #keys >= max then
          more = 1
          break
        end
        seen[key] = true
        keys[#keys + 1] = key
      end
    end
  until cursor == '0' or more == 1
end

local answer = {more}
for _, key in ipairs(keys) do
  local value = redis.pcall('GET', key)
  if type(value) == 'table' then
    value = 'WRONGTYPE'
  end
  if value ~= false then
    answer[#answer + 1] = key
    answer[#answer + 1] = value
    if mode == 'delete' then
      redis.call('DEL', key)
    end
  end
end
return answer
