-- KEYS epoch, seq, log. ARGV new epoch, how many. Returns {epoch, last seq, the last
-- entries, newest first}.
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local entries = {}
if tonumber(ARGV[2]) > 0 then entries = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', ARGV[2]) end
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]) or '0', entries}
