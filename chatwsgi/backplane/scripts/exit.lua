-- KEYS {room}:members. ARGV owner. Returns {the nickname taken off the roster or '',
-- members left}.
local nickname = redis.call('HGET', KEYS[1], ARGV[1])
if not nickname then return {'', redis.call('HLEN', KEYS[1])} end
redis.call('HDEL', KEYS[1], ARGV[1])
return {nickname, redis.call('HLEN', KEYS[1])}
