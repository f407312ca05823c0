"""The Lua scripts of ``RedisStore``: each write or check is one script, atomic and one
round trip. Times are Redis's own (``TIME``, in ms), so the processes' clocks never matter.

The pieces at the top (``NOW``, ``EXTEND``, ``LAPSED``, ``PLACES``) are prepended to the
scripts that use them; the rest are the scripts the store registers.
"""

NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# With ``process_leases`` a process holds one lease for all its streams, and one for all
# its places in the quotas: its id scored with its deadline in a registry (a sorted set),
# renewed in one command whatever it runs. ``extend`` moves a deadline later, never back.
EXTEND = """
local function extend(registry, process, deadline)
  local held = redis.call('ZSCORE', registry, process)
  if not held or tonumber(held) < deadline then redis.call('ZADD', registry, deadline, process) end
end
"""

# Whether an unfinished stream (``state``: its seq, finished, lease, process) lapsed: its
# own lease (a deadline), or that of the process named (gone from the registry: lapsed).
LAPSED = """
local function lapsed(state, registry, now)
  if state[2] then return false end
  if state[3] then return tonumber(state[3]) <= now end
  if not state[4] then return false end
  local deadline = redis.call('ZSCORE', registry, state[4])
  return not deadline or tonumber(deadline) <= now
end
"""

# KEYS: meta, events. ARGV: owner, ttl_active (ms), lease (ms, 0: none), the process
# ("": the stream has a lease of its own), the process registry. 1 if created, 0 if it
# exists.
CREATE = (
    NOW
    + EXTEND
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'seq', 0)
if tonumber(ARGV[3]) > 0 then
  if ARGV[4] == '' then
    redis.call('HSET', KEYS[1], 'lease', now + ARGV[3])
  else
    redis.call('HSET', KEYS[1], 'process', ARGV[4])
    extend(ARGV[5], ARGV[4], now + ARGV[3])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
)

# ARGV: lease (ms), the key prefix, the stream ids (a JSON list). Renews the leases of
# the live streams, one command each: a live stream has its lease field already (``HSET``
# adds none), a finished one's lease is never read (``lapsed``), and a stream gone is
# made again by the ``HSET`` alone (one field added, no seq): removed at once. The ids
# come as one JSON argument, not as thousands of keys: redis-py encodes each argument in
# Python, which cost a process with 10,000 replies more than the script itself (the keys
# span hash slots anyway: no Cluster).
RENEW_LEASE = (
    NOW
    + """
local lease = now + ARGV[1]
for _, id in ipairs(cjson.decode(ARGV[3])) do
  local key = ARGV[2] .. '{' .. id .. '}:meta'
  if redis.call('HSET', key, 'lease', lease) == 1 and redis.call('HEXISTS', key, 'seq') == 0 then
    redis.call('DEL', key)
  end
end
return 1
"""
)

# KEYS: meta, events. ARGV: maxlen, ttl_finished (ms), payload, the process registry. -1
# if the stream is unknown; 1 if its lease had lapsed and the payload ended it; else 0.
INTERRUPT = (
    NOW
    + LAPSED
    + """
local state = redis.call('HMGET', KEYS[1], 'seq', 'finished', 'lease', 'process')
if not state[1] then return -1 end
if not lapsed(state, ARGV[4], now) then return 0 end
local seq = tonumber(state[1]) + 1
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], seq .. '-0', 'd', ARGV[3])
redis.call('XADD', KEYS[2], seq .. '-1', 'end', 1)
redis.call('HSET', KEYS[1], 'seq', seq, 'finished', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""
)

# ARGV: maxlen, ttl_active (ms), the key prefix, the streams (a JSON list of [id, number
# of payloads, 1 to finish it after them, else 0]), every payload in that order, joined
# by newlines (a JSON text never holds a raw one), ttl_finished (ms). For each stream its
# last seq, -1 if it is unknown, -2 if it is finished, joined by commas: one call appends
# for every reply of a process, and ends those that end (as ``FINISH``). Six arguments
# and one string back, whatever the number of events: redis-py packs every argument and
# parses every reply item in Python, which cost more than the script (the keys span hash
# slots anyway: no Cluster).
APPEND = """
local payloads, start = ARGV[5], 1
local function next_payload()
  local stop = string.find(payloads, '\\n', start, true)
  local payload
  if stop then
    payload = string.sub(payloads, start, stop - 1)
    start = stop + 1
  else
    payload = string.sub(payloads, start)
    start = #payloads + 2
  end
  return payload
end
local results = {}
for _, stream in ipairs(cjson.decode(ARGV[4])) do
  local base = ARGV[3] .. '{' .. stream[1] .. '}'
  local meta, events = base .. ':meta', base .. ':events'
  local state = redis.call('HMGET', meta, 'seq', 'finished')
  if not state[1] or state[2] then  -- unknown or finished: its payloads are skipped
    results[#results + 1] = state[1] and -2 or -1
    for _ = 1, stream[2] do next_payload() end
  else
    local seq = tonumber(state[1])
    for _ = 1, stream[2] do
      seq = seq + 1
      redis.call('XADD', events, 'MAXLEN', ARGV[1], seq .. '-0', 'd', next_payload())
    end
    local ttl = ARGV[2]
    if stream[3] == 1 then
      redis.call('HSET', meta, 'seq', seq, 'finished', 1)
      redis.call('XADD', events, seq .. '-1', 'end', 1)
      ttl = ARGV[6]
    else
      redis.call('HSET', meta, 'seq', seq)
    end
    redis.call('PEXPIRE', meta, ttl)
    redis.call('PEXPIRE', events, ttl)
    results[#results + 1] = seq
  end
end
return table.concat(results, ',')
"""

# KEYS: meta, events. ARGV: ttl_finished (ms). 0 if the stream is unknown, else 1.
FINISH = """
local state = redis.call('HMGET', KEYS[1], 'seq', 'finished')
if not state[1] then return 0 end
if state[2] then return 1 end
redis.call('HSET', KEYS[1], 'finished', 1)
redis.call('XADD', KEYS[2], state[1] .. '-1', 'end', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""

# KEYS: meta, events. ARGV: after, count, now. nil if the stream is unknown, else
# {last seq, finished 0/1, entries after the cursor}; records the watch.
READ = """
local state = redis.call('HMGET', KEYS[1], 'seq', 'finished')
if not state[1] then return nil end
redis.call('HSET', KEYS[1], 'watched', ARGV[3])
local seq = tonumber(state[1])
local after = tonumber(ARGV[1])
local finished = state[2] and 1 or 0
if after < 0 or after > seq then return {seq, finished, {}} end
return {seq, finished, redis.call('XRANGE', KEYS[2], '(' .. after .. '-0', '+', 'COUNT', ARGV[2])}
"""

# KEYS: meta. ARGV: field, value. Sets the field only on a live stream: 1 if set, else 0.
SET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# Quotas are sorted sets: member the holder, score the server time (ms) its place lapses,
# or ``HELD`` for a place that lasts while its process's lease does (``process_leases``).
# A key holding such places has no expiry (taking one persists the key, and ``keep``
# sets none while one is held), so ``keep`` looks for one only in a key without expiry:
# a key of timed places has its expiry kept in two commands, not three. A held place
# leaves when released, or when its process lapsed and ``sweep`` gives back its places
# (indexed per process in a hash: holder -> its quota keys as JSON), those of at most
# ``SWEPT`` holders per call: a process dead with 10,000 replies held Redis, and every
# process sharing it, for 35-80 ms in one call (``benchmarks.renewals``); the next calls
# give back the rest, and a quota found full first gives back one of its places held by a
# lapsed process (``free_lapsed``).
PLACES = (
    NOW
    + EXTEND
    + """
local HELD = 4503599627370496
local function keep(key, ms)
  local ttl = redis.call('PTTL', key)
  if ttl >= ms then return end
  if ttl == -1 then
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    if last[2] and tonumber(last[2]) >= HELD then return end
  end
  redis.call('PEXPIRE', key, ms)
end
local SWEPT = 1000
local function lapsed_processes(registry, now)
  return redis.call('ZRANGEBYSCORE', registry, '-inf', now, 'LIMIT', 0, 8)
end
local function give_back(index, holder, keys)
  for _, key in ipairs(cjson.decode(keys)) do redis.call('ZREM', key, holder) end
  redis.call('HDEL', index, holder)
end
local function sweep(registry, index_prefix, now)
  local budget = SWEPT
  for _, process in ipairs(lapsed_processes(registry, now)) do
    if budget <= 0 then return end
    local index, cursor = index_prefix .. process, '0'
    repeat
      local page = redis.call('HSCAN', index, cursor, 'COUNT', budget)
      cursor = page[1]
      local held = page[2]
      for i = 1, #held, 2 do give_back(index, held[i], held[i + 1]) end
      budget = budget - #held / 2
    until cursor == '0' or budget <= 0
    if redis.call('EXISTS', index) == 0 then redis.call('ZREM', registry, process) end
  end
end
-- A full quota's place held on a lapsed process that no sweep reached yet: given back
-- before the quota refuses anyone for it. One is enough, and at most about ``SWEPT``
-- lookups are made (every held place of a quota of 5,000 was 33 ms with 8 processes).
local function free_lapsed(key, registry, index_prefix, now)
  local processes = lapsed_processes(registry, now)
  if #processes == 0 then return end
  local looked = math.ceil(SWEPT / #processes)
  for _, holder in ipairs(redis.call('ZRANGEBYSCORE', key, HELD, '+inf', 'LIMIT', 0, looked)) do
    for _, process in ipairs(processes) do
      local index = index_prefix .. process
      local keys = redis.call('HGET', index, holder)
      if keys then
        give_back(index, holder, keys)
        return
      end
    end
  end
end
"""
)

# KEYS: the quotas. ARGV: holder, the registry of places, the prefix of the processes'
# indexes, the process ("": none), then limit, ms and 1 if renewed (else 0) for each key.
# {0, 0} if every place was taken, else {index of the full quota (1-based), ms until its
# earliest place lapses}. A renewed place of a process is held on the process's lease.
ACQUIRE = (
    PLACES
    + """
local holder, registry, process = ARGV[1], ARGV[2], ARGV[4]
sweep(registry, ARGV[3], now)
local function full(key, limit)
  return not redis.call('ZSCORE', key, holder) and redis.call('ZCARD', key) >= limit
end
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local limit = tonumber(ARGV[3 * i + 2])
  if full(key, limit) then
    free_lapsed(key, registry, ARGV[3], now)
    if full(key, limit) then
      local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      local wait = first[2] and (tonumber(first[2]) - now) or 0
      if first[2] and tonumber(first[2]) >= HELD then wait = tonumber(ARGV[3 * i + 3]) end
      return {i, wait}
    end
  end
end
local tied, longest = {}, 0
for i, key in ipairs(KEYS) do
  local ms = tonumber(ARGV[3 * i + 3])
  if process ~= '' and ARGV[3 * i + 4] == '1' then
    redis.call('ZADD', key, HELD, holder)
    redis.call('PERSIST', key)
    tied[#tied + 1] = key
    longest = math.max(longest, ms)
  else
    redis.call('ZADD', key, now + ms, holder)
    keep(key, ms)
  end
end
if #tied > 0 then
  redis.call('HSET', ARGV[3] .. process, holder, cjson.encode(tied))
  extend(registry, process, now + longest)
end
return {0, 0}
"""
)

# ARGV: a JSON list of [quota key, ms, [holders]]. Extends the places still held, every
# holder of a key in a few ZADD XX (a lapsed place is dropped first, so XX takes back
# neither a lapsed nor a released one): the renewal of all the places of a process is one
# call, whose arguments are encoded once (a JSON string; no KEYS, as ``APPEND``: redis-py
# encoded each of 10,000 keys in Python, most of the renewal's cost).
RENEW_MANY = (
    PLACES
    + """
for _, group in ipairs(cjson.decode(ARGV[1])) do
  local key, ms, holders = group[1], tonumber(group[2]), group[3]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local batch = {}
  for _, holder in ipairs(holders) do
    batch[#batch + 1] = now + ms
    batch[#batch + 1] = holder
    if #batch >= 1000 then
      redis.call('ZADD', key, 'XX', unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then redis.call('ZADD', key, 'XX', unpack(batch)) end
  keep(key, ms)
end
return 1
"""
)

# ARGV: a registry, the process, ms, the prefix of the processes' indexes ("": a registry
# of streams' processes). Renews the process's lease, after dropping the processes that
# lapsed (giving back their places): one command, whatever the process runs.
RENEW_PROCESS = (
    PLACES
    + """
if ARGV[4] == '' then
  redis.call('ZREMRANGEBYSCORE', ARGV[1], '-inf', now)
else
  sweep(ARGV[1], ARGV[4], now)
end
extend(ARGV[1], ARGV[2], now + ARGV[3])
return 1
"""
)

# ARGV: a JSON list of [quota key, [holders]], the index of the process's places ("":
# none), the holders to drop from it (a JSON list). Gives back the places of every reply
# of a process that ended at about the same moment, in one call (no KEYS, as ``APPEND``).
RELEASE_MANY = """
for _, group in ipairs(cjson.decode(ARGV[1])) do
  local key, holders = group[1], group[2]
  for i = 1, #holders, 1000 do
    redis.call('ZREM', key, unpack(holders, i, math.min(i + 999, #holders)))
  end
end
if ARGV[2] ~= '' then
  local holders = cjson.decode(ARGV[3])
  for i = 1, #holders, 1000 do
    redis.call('HDEL', ARGV[2], unpack(holders, i, math.min(i + 999, #holders)))
  end
end
return 1
"""


# KEYS: the metas. ARGV: now (time.time()), the process registry. Marks every live stream
# watched; one code per key: 0 live, 1 unknown or expired, 2 unfinished with a lapsed lease.
WATCH = (
    NOW
    + LAPSED
    + """
local codes = {}
for i, key in ipairs(KEYS) do
  local state = redis.call('HMGET', key, 'seq', 'finished', 'lease', 'process')
  if not state[1] then
    codes[i] = 1
  else
    redis.call('HSET', key, 'watched', ARGV[1])
    codes[i] = lapsed(state, ARGV[2], now) and 2 or 0
  end
end
return codes
"""
)
