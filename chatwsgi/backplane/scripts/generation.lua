-- KEYS generation, grace. ARGV new generation, grace (ms), '1' if the caller knew an
-- older one (the data was lost, not never there). Returns the generation.
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[3] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return ARGV[1]
