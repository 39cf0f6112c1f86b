-- epoch.lua: returns the epoch marker, creating it if absent.
--
-- KEYS[1] the epoch key; ARGV[1] a fresh random id.
-- The marker is "<id>:<created micros>" (server clock). It has no TTL: it
-- vanishes only when Redis loses its data, which observe.lua then detects.
local current = redis.call('GET', KEYS[1])
if current then
  return current
end
local clock = redis.call('TIME')
local marker = ARGV[1] .. ':' .. clock[1] .. string.format('%06d', tonumber(clock[2]))
redis.call('SET', KEYS[1], marker)
return marker
