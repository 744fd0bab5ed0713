"""The Lua scripts that change the shared counters: each runs atomically in Redis (no other
command runs between its reads and its writes), so replicas that call them at once never
take the same room twice. Times inside the scripts are Redis's own (`TIME`), so the expiry
of a replica's slots does not depend on the replicas' clocks. Needs Redis >= 5 (scripts
replicated by their effects). Every key a script touches is in its KEYS (Redis Cluster:
give `key_prefix` a hash tag, e.g. `{warden}:limits:`, so all of them share one slot).

Keys (tenancy/redis_store.py builds them; `<p>` is `key_prefix`, the subject last, so that
any subject name is unambiguous):
- `<p>win:<window>:<subject>`, a hash {r: requests taken, t: tokens taken, n: replicas
  that leased, replica:<id>: 1 for each} in one minute window; expires a minute after its
  window ends.
- `<p>hold:<subject>` (hash replica -> slots held) and `<p>hold-until:<subject>` (sorted set
  replica -> expiry, ms): the leased mode's slot blocks; both expire `slot_ttl` after the
  last change.
- `<p>budget:<day|month>:<period>:<subject>`, a hash like a window's whose `t` counts a
  budget's tokens or cost (millionths) in one UTC day or month (tenancy/budget.py); expires a
  day after its period ends.
- `<p>busy:<subject>`, a sorted set ticket -> expiry (ms): the exact mode's requests in
  flight; expires `slot_ttl` after the last change.
"""

from __future__ import annotations

from typing import Final

# A lease: take up to `want` requests and tokens from one subject's window, never past its
# limits. KEYS[1] the window's hash. ARGV: rpm, tpm (0: no such limit, nothing taken),
# want requests, want tokens, the key's TTL (ms), the replica. Returns {got requests, got
# tokens, requests taken in all, tokens taken in all, replicas that leased in this window}
# (after this lease). Got < want: the window is spent for that limit.
LEASE: Final = """
if redis.call('HSETNX', KEYS[1], 'replica:' .. ARGV[6], 1) == 1 then
  redis.call('HINCRBY', KEYS[1], 'n', 1)
end
local taken_r = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
local taken_t = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local function grant(limit, want, taken)
  if limit <= 0 or want <= 0 or taken >= limit then return 0 end
  return math.min(want, limit - taken)
end
local got_r = grant(tonumber(ARGV[1]), tonumber(ARGV[3]), taken_r)
local got_t = grant(tonumber(ARGV[2]), tonumber(ARGV[4]), taken_t)
if got_r > 0 then taken_r = redis.call('HINCRBY', KEYS[1], 'r', got_r) end
if got_t > 0 then taken_t = redis.call('HINCRBY', KEYS[1], 't', got_t) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {got_r, got_t, taken_r, taken_t, tonumber(redis.call('HGET', KEYS[1], 'n'))}
"""

# A replica's block of slots: set what it holds to `want` (absolute, so a retried call
# changes nothing), at most what the live replicas leave of `max`. Holdings not renewed
# within their TTL are dropped first (a dead replica's slots come back). KEYS[1] holdings,
# KEYS[2] their expiries. ARGV: replica, want, max, TTL (ms). Returns {held now, held by
# the others}. 0 releases the replica's holding.
HOLD: Final = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, replica in ipairs(dead) do redis.call('HDEL', KEYS[1], replica) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
local others = 0
local held = redis.call('HGETALL', KEYS[1])
for i = 1, #held, 2 do
  if held[i] ~= ARGV[1] then others = others + tonumber(held[i + 1]) end
end
local got = math.max(0, math.min(tonumber(ARGV[2]), tonumber(ARGV[3]) - others))
if got > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], got)
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return {got, others}
"""

# Exact mode: one request, all or nothing, on every subject. KEYS: per subject, its
# window's hash, its busy set, its budget's hash (the window's again when it has none).
# ARGV: ticket, window TTL (ms), busy TTL (ms), tokens, then per subject rpm, tpm,
# max_concurrent, budget, the request's charge to the budget, the budget's TTL (ms) (0: no
# such limit). Expired busy entries are dropped first. Admitted: takes 1 request and the
# tokens in each window and the charge from each budget, adds the ticket to each busy set of
# a subject with max_concurrent; returns {1, 0, 0, then per subject requests taken, tokens
# taken, in flight, budget taken}. Refused (nothing taken): {0, the first subject that has no
# room (1-based), which limit (1 rpm, 2 tpm, 3 max_concurrent, 4 budget), then per subject
# the same four counts}.
EXACT_TAKE: Final = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local n = #KEYS / 3
local tokens = tonumber(ARGV[4])
local counts, refused, which = {}, 0, 0
for i = 1, n do
  local a = 6 * i - 2
  local rpm, tpm, most = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local budget, charge = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local r = tonumber(redis.call('HGET', KEYS[3 * i - 2], 'r') or '0')
  local t = tonumber(redis.call('HGET', KEYS[3 * i - 2], 't') or '0')
  local busy, spent = 0, 0
  if most > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[3 * i - 1], '-inf', now)
    busy = redis.call('ZCARD', KEYS[3 * i - 1])
  end
  if budget > 0 then spent = tonumber(redis.call('HGET', KEYS[3 * i], 't') or '0') end
  if refused == 0 then
    if budget > 0 and spent + charge > budget then refused, which = i, 4
    elseif rpm > 0 and r + 1 > rpm then refused, which = i, 1
    elseif tpm > 0 and t + tokens > tpm then refused, which = i, 2
    elseif most > 0 and busy + 1 > most then refused, which = i, 3 end
  end
  counts[4 * i - 3] = r
  counts[4 * i - 2] = t
  counts[4 * i - 1] = busy
  counts[4 * i] = spent
end
if refused > 0 then return {0, refused, which, unpack(counts)} end
for i = 1, n do
  local a = 6 * i - 2
  counts[4 * i - 3] = redis.call('HINCRBY', KEYS[3 * i - 2], 'r', 1)
  counts[4 * i - 2] = redis.call('HINCRBY', KEYS[3 * i - 2], 't', tokens)
  redis.call('PEXPIRE', KEYS[3 * i - 2], ARGV[2])
  if tonumber(ARGV[a + 3]) > 0 then
    redis.call('ZADD', KEYS[3 * i - 1], now + tonumber(ARGV[3]), ARGV[1])
    redis.call('PEXPIRE', KEYS[3 * i - 1], ARGV[3])
    counts[4 * i - 1] = counts[4 * i - 1] + 1
  end
  if tonumber(ARGV[a + 4]) > 0 then
    counts[4 * i] = redis.call('HINCRBY', KEYS[3 * i], 't', tonumber(ARGV[a + 5]))
    redis.call('PEXPIRE', KEYS[3 * i], ARGV[a + 6])
  end
end
return {1, 0, 0, unpack(counts)}
"""

# Exact mode: a request's end. KEYS: per subject, the window it was admitted in, the
# current window, its busy set, its budget's hash for the period it was admitted in and for
# the current one (the window's again when it has no budget). ARGV: ticket, tokens used
# minus reserved, the current window's TTL (ms), then per subject the budget's charge used
# minus reserved (0: none) and its current period's TTL (ms). Drops the ticket from each
# busy set; gives unused tokens (and budget) back to the window (period) they were taken
# from, if it still exists, or charges the excess to the current one (what was used counts
# even past the limit: later requests wait). Last, KEYS: the replica's settle mark; ARGV:
# this settle's number (a replica numbers its settles in the order it sends them): one not
# above the mark was applied before (a batch that timed out, or failed in part, after
# running, sent again) and is skipped, as its deltas must not count twice. Returns 0, or 1
# for a skipped one.
EXACT_SETTLE: Final = """
local seq = tonumber(ARGV[#ARGV])
if seq <= tonumber(redis.call('GET', KEYS[#KEYS]) or '0') then
  return 1
end
redis.call('SET', KEYS[#KEYS], seq, 'PX', 86400000)
local delta = tonumber(ARGV[2])
for i = 1, (#KEYS - 1) / 5 do
  local k = 5 * i - 4
  redis.call('ZREM', KEYS[k + 2], ARGV[1])
  if delta < 0 and redis.call('EXISTS', KEYS[k]) == 1 then
    redis.call('HINCRBY', KEYS[k], 't', delta)
  elseif delta > 0 then
    redis.call('HINCRBY', KEYS[k + 1], 't', delta)
    redis.call('PEXPIRE', KEYS[k + 1], ARGV[3])
  end
  local spent = tonumber(ARGV[2 + 2 * i])
  if spent < 0 and redis.call('EXISTS', KEYS[k + 3]) == 1 then
    redis.call('HINCRBY', KEYS[k + 3], 't', spent)
  elseif spent > 0 then
    redis.call('HINCRBY', KEYS[k + 4], 't', spent)
    redis.call('PEXPIRE', KEYS[k + 4], ARGV[3 + 2 * i])
  end
end
return 0
"""

# Exact mode: a long request's busy entries renewed. KEYS: its busy sets. ARGV: ticket,
# TTL (ms). Only entries still there are renewed (one that expired stays gone). Returns 0.
EXACT_RENEW: Final = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
for i = 1, #KEYS do
  if redis.call('ZSCORE', KEYS[i], ARGV[1]) then
    redis.call('ZADD', KEYS[i], 'XX', now + tonumber(ARGV[2]), ARGV[1])
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return 0
"""

SCRIPTS: Final = {"lease": LEASE, "hold": HOLD, "exact_take": EXACT_TAKE,
                  "exact_settle": EXACT_SETTLE, "exact_renew": EXACT_RENEW}
