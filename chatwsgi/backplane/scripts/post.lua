-- KEYS {room}:seq, {room}:log, {room}:ids, {room}:epoch (one hash tag: one slot). ARGV
-- message JSON without seq, ts, shown, seconds, most, ids remembered, channel, new
-- epoch, (author, id) key, publish command (PUBLISH or SPUBLISH), '1' if a WAIT follows.
-- An empty channel: the caller publishes (a fan-out bus outside Redis).
-- Returns {seq, created}.
--
-- Retention: at most ``most`` entries; past ``shown`` ones, those older than ``seconds``
-- go, two per post at most (a stream that ages empties faster than it fills, and no post
-- pays for a long trim). De-duplication: {room}:ids scores each (author, id) with its seq
-- and keeps those of the last max(retained, ids remembered) messages, so its size is
-- bounded by the stream's, not by time.
local seen = redis.call('ZSCORE', KEYS[3], ARGV[9])
if seen then
  -- A retry. If the caller WAITs for a replica next (ARGV[11] '1'), write something (the epoch,
  -- unchanged): the WAIT then covers this write, and so the original one before it.
  local epoch = redis.call('GET', KEYS[4])
  if ARGV[11] == '1' and epoch then redis.call('SET', KEYS[4], epoch) end
  return {tonumber(seen), 0}
end
redis.call('SET', KEYS[4], ARGV[8], 'NX')
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], seq .. '-0', 't', ARGV[2], 'm', ARGV[1])
local shown, most = tonumber(ARGV[3]), tonumber(ARGV[5])
local cutoff = tonumber(ARGV[2]) - tonumber(ARGV[4])
local kept = redis.call('XLEN', KEYS[2])
if kept > most then
  redis.call('XTRIM', KEYS[2], 'MAXLEN', most)
  kept = most
end
for _ = 1, 2 do
  if kept <= shown then break end
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  if tonumber(oldest[2][2]) >= cutoff then break end
  redis.call('XTRIM', KEYS[2], 'MINID', (tonumber(string.match(oldest[1], '^%d+')) + 1) .. '-0')
  kept = kept - 1
end
redis.call('ZADD', KEYS[3], seq, ARGV[9])
local window = math.max(kept, tonumber(ARGV[6]))
if seq > window then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', seq - window) end
if ARGV[7] ~= '' then redis.call(ARGV[10], ARGV[7], 'm' .. seq .. ' ' .. ARGV[1]) end
return {seq, 1}
