"""The job store's Lua scripts (one per state change, see :mod:`.jobs` for the keys).

Each runs atomically in Redis, so two gateway instances sharing a Redis never
both hold a job; every step after ``CLAIM`` names its owner (fencing).
"""

ADD = """
local P, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local due_at, original_at, merge_window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local open_key, open_set = ARGV[7], ARGV[8]
local jk = P .. ':job:' .. id
if redis.call('EXISTS', jk) == 1 then return {'exists', id} end
if open_key ~= '' and merge_window >= 0 then
  local existing = redis.call('GET', open_key)
  if existing then
    local ek = P .. ':job:' .. existing
    local st = redis.call('HGET', ek, 'state')
    local created = tonumber(redis.call('HGET', ek, 'created_at') or '0')
    if st and st ~= 'done' and now - created <= merge_window then
      redis.call('HINCRBY', ek, 'merged', 1)
      if open_set ~= '' then
        -- a job written before the open set existed joins it here
        redis.call('HSET', ek, 'open_set', open_set)
        redis.call('SADD', open_set, existing)
      end
      redis.call('RPUSH', P .. ':history:' .. existing,
        cjson.encode({at = now, event = 'merged', source_id = id}))
      if st == 'pending' then
        local orig = tonumber(redis.call('HGET', ek, 'original_at') or now)
        if original_at < orig then
          redis.call('HSET', ek, 'original_at', ARGV[5])
          local cur = tonumber(redis.call('ZSCORE', P .. ':due', existing) or due_at)
          if due_at < cur then redis.call('ZADD', P .. ':due', due_at, existing) end
        end
      end
      return {'merged', existing}
    end
  end
end
for i = 9, #ARGV, 2 do redis.call('HSET', jk, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', jk, 'id', id, 'state', 'pending', 'attempts', 0, 'merged', 0,
  'created_at', ARGV[3], 'original_at', ARGV[5], 'due_at', ARGV[4])
redis.call('ZADD', P .. ':due', due_at, id)
redis.call('ZADD', P .. ':jobs', now, id)
if open_key ~= '' then redis.call('SET', open_key, id) end
if open_set ~= '' then redis.call('SADD', open_set, id) end
redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = now, event = 'scheduled'}))
return {'added', id}
"""

CLAIM = """
local P, now, limit, owner, till, scan = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[6])
-- gate (optional): jobs of the gated modes take one of their queue's room (queue → n) or are
-- skipped this time, left in place (FIFO within a queue kept); other jobs go in due order
local gated, room = nil, {}
if ARGV[7] ~= '' then
  local gate = cjson.decode(ARGV[7])
  gated, room = {}, gate.room
  for _, mode in ipairs(gate.modes) do gated[mode] = true end
end
local out, skipped, seen = {}, 0, 0
while #out < limit and seen < scan do
  local ids = redis.call('ZRANGEBYSCORE', P .. ':due', '-inf', now, 'LIMIT', skipped, limit - #out)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    seen = seen + 1
    local jk = P .. ':job:' .. id
    if redis.call('HGET', jk, 'state') ~= 'pending' then
      redis.call('ZREM', P .. ':due', id)
    else
      local take = true
      if gated then
        local job = redis.call('HMGET', jk, 'mode', 'queue')
        if gated[job[1] or ''] then
          local left = tonumber(room[job[2] or ''] or 0)
          if left >= 1 then room[job[2]] = left - 1 else take = false end
        end
      end
      if take then
        redis.call('ZREM', P .. ':due', id)
        redis.call('HSET', jk, 'state', 'leased', 'phase', 'claimed', 'owner', owner, 'lease_until', till)
        redis.call('ZADD', P .. ':leases', till, id)
        table.insert(out, redis.call('HGETALL', jk))
      else
        skipped = skipped + 1
      end
    end
  end
end
return out
"""

DIALING_FN = """
local function dialing(P, id, owner, now_s, attempt_id, till, cap, node)
  local now = tonumber(now_s)
  local jk = P .. ':job:' .. id
  if redis.call('HGET', jk, 'owner') ~= owner or redis.call('HGET', jk, 'state') ~= 'leased' then return {'lost', ''} end
  if redis.call('HGET', jk, 'cancel') == '1' then return {'cancelled', ''} end
  local e164 = redis.call('HGET', jk, 'e164') or ''
  if e164 ~= '' and redis.call('SISMEMBER', P .. ':dnc', e164) == 1 then return {'dnc', ''} end
  local dials = P .. ':dials:' .. e164
  redis.call('ZREMRANGEBYSCORE', dials, '-inf', now - 86400)
  if cap > 0 and redis.call('ZCARD', dials) >= cap then
    local oldest = redis.call('ZRANGE', dials, 0, 0, 'WITHSCORES')
    return {'capped', tostring(tonumber(oldest[2]) + 86400)}
  end
  redis.call('ZADD', dials, now, attempt_id)
  redis.call('EXPIRE', dials, 86400)
  local n = redis.call('HINCRBY', jk, 'attempts', 1)
  redis.call('HSET', jk, 'phase', 'dialing', 'attempt_id', attempt_id, 'dialed_at', now_s, 'lease_until', till, 'node', node)
  redis.call('ZADD', P .. ':leases', till, id)
  redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = now, event = 'dialing', attempt = n, attempt_id = attempt_id, owner = owner}))
  return {'ok', tostring(n)}
end
"""

DIALING = DIALING_FN + """
return dialing(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8])
"""

# the write-ahead of a whole tick in one round trip: each job still on its own terms (one status per job)
DIALING_MANY = DIALING_FN + """
local P, owner, now, till, cap, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local out = {}
for i = 7, #ARGV, 2 do
  local r = dialing(P, ARGV[i], owner, now, ARGV[i + 1], till, cap, node)
  table.insert(out, r[1])
  table.insert(out, r[2])
end
return out
"""

RENEW = """
local P, owner, till = ARGV[1], ARGV[2], ARGV[3]
local kept = 0
for i = 4, #ARGV do
  local jk = P .. ':job:' .. ARGV[i]
  if redis.call('HGET', jk, 'owner') == owner and redis.call('HGET', jk, 'state') == 'leased' then
    redis.call('HSET', jk, 'lease_until', till)
    redis.call('ZADD', P .. ':leases', till, ARGV[i])
    kept = kept + 1
  end
end
return kept
"""

RELEASE = """
-- the job no longer holds its number: drop it from the open set and the newest-job pointer
local function release_number(P, jk, id)
  local open_key = redis.call('HGET', jk, 'open_key')
  if open_key and open_key ~= '' and redis.call('GET', open_key) == id then redis.call('DEL', open_key) end
  local open_set = redis.call('HGET', jk, 'open_set')
  if open_set and open_set ~= '' then redis.call('SREM', open_set, id) end
end
"""

FINISH_FN = RELEASE + """
local function finish(P, id, owner, now, entry, final, retry_at, ttl)
  local jk = P .. ':job:' .. id
  if redis.call('HGET', jk, 'owner') ~= owner or redis.call('HGET', jk, 'state') ~= 'leased' then return 0 end
  if entry ~= '' then redis.call('RPUSH', P .. ':history:' .. id, entry) end
  redis.call('ZREM', P .. ':leases', id)
  if final == '' and redis.call('HGET', jk, 'cancel') == '1' then final = 'cancelled' end
  if final ~= '' then
    redis.call('HSET', jk, 'state', 'done', 'outcome', final, 'finished_at', now, 'owner', '', 'phase', '')
    release_number(P, jk, id)
    redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = tonumber(now), event = 'final', outcome = final}))
    redis.call('EXPIRE', jk, ttl)
    redis.call('EXPIRE', P .. ':history:' .. id, ttl)
    return 2
  end
  redis.call('HSET', jk, 'state', 'pending', 'phase', '', 'owner', '', 'due_at', retry_at)
  redis.call('ZADD', P .. ':due', retry_at, id)
  return 1
end
"""

FINISH = FINISH_FN + """
return finish(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]))
"""

# several finishes in one round trip, each on its own terms (one result per job, in order)
FINISH_MANY = FINISH_FN + """
local P, owner, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, 5 do
  table.insert(out, finish(P, ARGV[i], owner, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ttl))
end
return out
"""

# An attempt in progress is settled from the AstDB of the Asterisk node that placed it: only an
# instance of that node (or any, for attempts without a node) takes it over; others leave it.
RECOVER = """
local P, now, owner, till, limit, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local ids = redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, id in ipairs(ids) do
  local jk = P .. ':job:' .. id
  local st = redis.call('HGET', jk, 'state')
  if st ~= 'leased' then
    redis.call('ZREM', P .. ':leases', id)
  elseif redis.call('HGET', jk, 'phase') == 'dialing' then
    local placed_on = redis.call('HGET', jk, 'node') or ''
    if placed_on == '' or placed_on == node then
      local previous = redis.call('HGET', jk, 'owner')
      redis.call('HSET', jk, 'owner', owner, 'lease_until', till)
      redis.call('ZADD', P .. ':leases', till, id)
      redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = tonumber(now), event = 'lease-recovered', from = previous, owner = owner}))
      table.insert(out, redis.call('HGETALL', jk))
    end
  else
    redis.call('ZREM', P .. ':leases', id)
    redis.call('HSET', jk, 'state', 'pending', 'phase', '', 'owner', '')
    redis.call('ZADD', P .. ':due', redis.call('HGET', jk, 'due_at') or now, id)
    redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = tonumber(now), event = 'lease-expired-requeued'}))
  end
end
return out
"""

CANCEL_ONE = RELEASE + """
-- 0 unknown/finished (or, with again = false, a cancel already requested), 1 cancel requested, 2 cancelled
local function cancel_one(P, id, now, reason, ttl, again)
  local jk = P .. ':job:' .. id
  local st = redis.call('HGET', jk, 'state')
  if not st or st == 'done' then return 0 end
  if st == 'pending' then
    redis.call('ZREM', P .. ':due', id)
    redis.call('HSET', jk, 'state', 'done', 'outcome', 'cancelled', 'finished_at', now, 'cancel_reason', reason)
    release_number(P, jk, id)
    redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = tonumber(now), event = 'final', outcome = 'cancelled', reason = reason}))
    redis.call('EXPIRE', jk, ttl)
    redis.call('EXPIRE', P .. ':history:' .. id, ttl)
    return 2
  end
  if not again and redis.call('HGET', jk, 'cancel') == '1' then return 0 end
  redis.call('HSET', jk, 'cancel', '1', 'cancel_reason', reason)
  redis.call('RPUSH', P .. ':history:' .. id, cjson.encode({at = tonumber(now), event = 'cancel-requested', reason = reason}))
  return 1
end
"""

CANCEL = CANCEL_ONE + """
local P, id, now, reason, ttl, campaign = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
if campaign ~= '' and redis.call('HGET', P .. ':job:' .. id, 'campaign') ~= campaign then return 0 end
return cancel_one(P, id, now, reason, ttl, true)
"""

CANCEL_OPEN = CANCEL_ONE + """
-- every open job of one number (the set, and the newest-job pointer for jobs older than the set)
local P, open_key, open_set, now, reason, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local ids = redis.call('SMEMBERS', open_set)
local newest = redis.call('GET', open_key)
if newest then table.insert(ids, newest) end
local seen, out = {}, {}
for _, id in ipairs(ids) do
  if not seen[id] then
    seen[id] = true
    local result = cancel_one(P, id, now, reason, ttl, false)
    if result > 0 then
      table.insert(out, id)
      table.insert(out, tostring(result))
    elseif redis.call('HGET', P .. ':job:' .. id, 'state') ~= 'leased' then
      redis.call('SREM', open_set, id)  -- finished or gone: not open any more
    end
  end
end
return out
"""
