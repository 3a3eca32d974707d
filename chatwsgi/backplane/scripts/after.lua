-- KEYS epoch, seq, log. ARGV new epoch, first entry id wanted, how many. Returns {epoch,
-- last seq, oldest entry id ('' if none), entries from the first wanted, oldest first}.
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
return {
  redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]) or '0', oldest and oldest[1] or '',
  redis.call('XRANGE', KEYS[3], ARGV[2], '+', 'COUNT', ARGV[3])
}
