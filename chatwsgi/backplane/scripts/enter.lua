-- KEYS {room}:members, {room}:epoch. ARGV owner, nickname, new epoch. Returns 1 newly
-- on the roster, 0 already.
redis.call('SET', KEYS[2], ARGV[3], 'NX')
return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
