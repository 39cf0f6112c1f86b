-- observe.lua: decides observations of ONE (rule, group) window atomically.
--
-- This is a line-by-line mirror of auditflow_core::window::GroupWindow::observe
-- (count members in [t - window, t]; fire when count >= threshold and no
-- fired member lies strictly within cooldown of t; record; prune members that
-- are both behind the event-time horizon and past the decision grace).
-- Change one, change the other: the proptest in tests/semantics.rs compares
-- them on random sequences.
--
-- All times are integer microseconds. Numbers are formatted with
-- string.format('%d') (exact up to 2^53) and never with tostring (which
-- rounds to 14 digits).
--
-- KEYS[1] epoch marker: "<random id>:<created micros, server clock>"
-- KEYS[2] z: sorted set  event_id -> event time
-- KEYS[3] o: sorted set  event_id -> first observed (processing time)
-- KEYS[4] f: sorted set  FIRED event_id -> event time
-- KEYS[5] h: hash        event_id -> "fire:count:observed", and
--                        "_epoch" -> the epoch the group was built under
--
-- ARGV[1] the caller's epoch
-- ARGV[2] processing time ("now"), or "" for the server's clock
-- ARGV[3] decision grace
-- ARGV[4] TTL slack
-- ARGV[5] number of rebuild members the caller brings, or -1 for none
-- then 5 per rebuild member:  event_id, time, fire (0|1), count, observed
-- then 5 per observation:     event_id, time, window, cooldown, threshold
--
-- Returns {'OK', fire1, count1, fire2, count2, ...}  decided and recorded
--       | {'LOST'}            the epoch marker is gone: Redis lost its data
--       | {'EPOCH', current}  the caller's epoch is outdated
--       | {'REBUILD'}         the group may have lost members: call again
--                             with the members from the durable source

local function fmt(n)
  return string.format('%d', n)
end

local epoch = redis.call('GET', KEYS[1])
if not epoch then
  return {'LOST'}
end
if epoch ~= ARGV[1] then
  return {'EPOCH', epoch}
end

local z, o, f, h = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local clock = redis.call('TIME')
local server_now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local now = server_now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
end
local grace = tonumber(ARGV[3])
local slack = tonumber(ARGV[4])
local nrebuild = tonumber(ARGV[5])
local first_obs = 6 + 5 * math.max(nrebuild, 0)

-- The keys live for the longest retention of the observations' specs, plus
-- the decision grace, plus slack (processing time, refreshed on write).
local ttl = 0
for i = first_obs, #ARGV, 5 do
  local retention = 2 * tonumber(ARGV[i + 2]) + tonumber(ARGV[i + 3])
  ttl = math.max(ttl, retention + grace + slack)
end

-- Is the group complete under the current epoch?
local built = redis.call('HGET', h, '_epoch')
if built ~= epoch then
  -- Built under another epoch (stale), or absent. An absent group is new or
  -- expired, unless the epoch is younger than the TTL: then it may have
  -- held members when Redis lost its data.
  local stale = built or redis.call('EXISTS', z, o, f, h) > 0
  local created = tonumber(string.match(epoch, ':(%d+)$')) or 0
  if (stale or server_now - created < ttl) and nrebuild < 0 then
    return {'REBUILD'}
  end
  redis.call('DEL', z, o, f, h)
  for i = 6, first_obs - 1, 5 do
    local id, t, fire, count, observed = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    redis.call('ZADD', z, t, id)
    redis.call('ZADD', o, observed, id)
    if fire == '1' then
      redis.call('ZADD', f, t, id)
    end
    redis.call('HSET', h, id, fire .. ':' .. count .. ':' .. observed)
  end
  redis.call('HSET', h, '_epoch', epoch)
  for _, key in ipairs({z, o, f, h}) do
    redis.call('PEXPIRE', key, math.ceil(ttl / 1000))
  end
end

-- Forgets members behind the event-time horizon (retention before the
-- newest member) that were first observed before now - grace. Scans the
-- smaller of the two candidate sets.
local function prune(retention)
  local newest = tonumber(redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')[2])
  local horizon = '(' .. fmt(newest - retention)
  local before = '(' .. fmt(now - grace)
  local old = redis.call('ZCOUNT', z, '-inf', horizon)
  if old == 0 then
    return
  end
  local done = redis.call('ZCOUNT', o, '-inf', before)
  if done == 0 then
    return
  end
  local ids, other, bound
  if old <= done then
    ids, other, bound = redis.call('ZRANGEBYSCORE', z, '-inf', horizon), o, now - grace
  else
    ids, other, bound = redis.call('ZRANGEBYSCORE', o, '-inf', before), z, newest - retention
  end
  for _, id in ipairs(ids) do
    local score = tonumber(redis.call('ZSCORE', other, id))
    if score and score < bound then
      redis.call('ZREM', z, id)
      redis.call('ZREM', o, id)
      redis.call('ZREM', f, id)
      redis.call('HDEL', h, id)
    end
  end
end

local out = {'OK'}
local wrote = false
for i = first_obs, #ARGV, 5 do
  local id = ARGV[i]
  local recorded = redis.call('HGET', h, id)
  local rfire, rcount, robserved
  if recorded then
    rfire, rcount, robserved = string.match(recorded, '^(%d+):(%d+):(%d+)')
  end
  if recorded and robserved ~= '0' then
    -- Observed before: the recorded decision.
    out[#out + 1] = tonumber(rfire)
    out[#out + 1] = tonumber(rcount)
  else
    -- New, or loaded by a rebuild (observed 0: stored but maybe never
    -- evaluated). A rebuilt member is already in the window, counted once,
    -- and stays fired if the store says it raised an alert (GroupWindow).
    local rebuilt = recorded ~= nil and recorded ~= false
    local t = tonumber(ARGV[i + 1])
    local window = tonumber(ARGV[i + 2])
    local cooldown = tonumber(ARGV[i + 3])
    local threshold = tonumber(ARGV[i + 4])
    local count = redis.call('ZCOUNT', z, fmt(t - window), fmt(t))
    if not rebuilt then
      count = count + 1
    end
    local cooling = false
    if cooldown > 0 then
      local fired = redis.call('ZRANGEBYSCORE', f, '(' .. fmt(t - cooldown), '(' .. fmt(t + cooldown))
      for _, other in ipairs(fired) do
        if other ~= id then
          cooling = true
          break
        end
      end
    end
    local fire = 0
    if (rebuilt and rfire == '1') or (count >= threshold and not cooling) then
      fire = 1
    end
    redis.call('ZADD', z, ARGV[i + 1], id)
    redis.call('ZADD', o, fmt(now), id)
    if fire == 1 then
      redis.call('ZADD', f, ARGV[i + 1], id)
    end
    redis.call('HSET', h, id, fire .. ':' .. fmt(count) .. ':' .. fmt(now))
    out[#out + 1] = fire
    out[#out + 1] = count
    wrote = true
    prune(2 * window + cooldown)
  end
end

if wrote then
  for _, key in ipairs({z, o, f, h}) do
    redis.call('PEXPIRE', key, math.ceil(ttl / 1000))
  end
end
return out
