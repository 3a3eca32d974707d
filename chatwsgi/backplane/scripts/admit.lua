-- KEYS rooms. ARGV room, max rooms, default room. Returns 1 if the room is (now) listed,
-- -1 if the server holds no more rooms. The default room always counts, as in memory.
redis.call('SADD', KEYS[1], ARGV[3])
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 and redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return -1
end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
