-- KEYS epoch, seq, log. ARGV new epoch, first entry id not wanted, how many. Returns {epoch,
-- entries before that id, newest first}.
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return {redis.call('GET', KEYS[1]), redis.call('XREVRANGE', KEYS[3], '(' .. ARGV[2], '-', 'COUNT', ARGV[3])}
