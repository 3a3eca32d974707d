-- KEYS generation, grace. ARGV restoring ('1' or ''). Returns 'reset' (no generation:
-- Redis lost its data), 'grace' (only restoring claims for now) or '' (claim away).
if redis.call('EXISTS', KEYS[1]) == 0 then return 'reset' end
if ARGV[1] == '' and redis.call('EXISTS', KEYS[2]) == 1 then return 'grace' end
return ''
