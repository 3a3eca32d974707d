-- KEYS nick:<folded>. ARGV owner. Frees the nickname if the owner still holds it.
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
