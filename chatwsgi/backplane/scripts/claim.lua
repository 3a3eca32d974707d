-- KEYS nick:<folded>. ARGV owner, offered token, new token. Returns {token, evicted
-- owner}: '' evicted for none, '' token for taken. The holder's token takes the nickname
-- over from a stale owner. Only the nickname's own key: the owner's record (which lists
-- the nickname, so a departure frees it) was written before this runs.
local holder = redis.call('HMGET', KEYS[1], 'owner', 'token')
local token, evicted = ARGV[3], ''
if holder[1] == ARGV[1] then
  token = holder[2]
elseif holder[1] then
  if ARGV[2] == '' or ARGV[2] ~= holder[2] then return {'', ''} end
  token, evicted = holder[2], holder[1]
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token)
return {token, evicted}
