/**
 * The Lua scripts of the Redis backend: each is one atomic step. COMMIT is every change of a key
 * (create, update, add version, delete): it checks the revision the client read (compare-and-set),
 * alias uniqueness, version uniqueness and the quota (QUOTA_RULE, as the two sets of `quotaSets`),
 * then writes the record, versions, tombstone, the alias hash, every index set and due set, and
 * publishes the key id on the change channel. The client computes the old and new index memberships
 * from the index facts of the record at the revision the script checks, so both are exact.
 */
import { CHANNEL } from './keys';

// KEYS: 1 key, 2 versions, 3 alias hash, 4 usage, 5 tombstone, 6-8 due rotation/deletion/expiry,
//       9 the quota's counted set, 10 its excluded set (quotaSets), then nOld old index sets, then nNew new index sets.
// ARGV: 1 expected rev ('0': must not exist), 2 keyId, 3 old alias, 4 new alias ('' when deleting),
//       5 doc ('' when deleting), 6 create time, 7 nOld, 8 nNew, 9 due member, 10-12 due times ('' none),
//       13 max keys ('' none), 14 tombstone ('' none), 15 versions op (keep|add|replace|drop), 16.. version, value pairs
export const COMMIT = `
local rev = redis.call('HGET', KEYS[1], 'rev')
local id, oldAlias, newAlias, op = ARGV[2], ARGV[3], ARGV[4], ARGV[15]
if ARGV[1] ~= '0' then
  if not rev then return 'NOTFOUND' end
  if rev ~= ARGV[1] then return 'CONFLICT' end
end
if ARGV[13] ~= '' then
  local n = redis.call('ZCARD', KEYS[9]) - redis.call('ZINTERCARD', 2, KEYS[9], KEYS[10])
  if n >= tonumber(ARGV[13]) then return 'QUOTA' end
end
if newAlias ~= '' and newAlias ~= oldAlias and redis.call('HEXISTS', KEYS[3], newAlias) == 1 then return 'ALIAS' end
if ARGV[1] == '0' and rev then return 'EXISTS' end
if op == 'add' and redis.call('HEXISTS', KEYS[2], ARGV[16]) == 1 then return 'DUP' end
if oldAlias ~= '' and oldAlias ~= newAlias and redis.call('HGET', KEYS[3], oldAlias) == id then redis.call('HDEL', KEYS[3], oldAlias) end
if newAlias ~= '' then redis.call('HSET', KEYS[3], newAlias, id) end
local nOld, nNew = tonumber(ARGV[7]), tonumber(ARGV[8])
local keep = {}
for i = 11 + nOld, 10 + nOld + nNew do keep[KEYS[i]] = true end
for i = 11, 10 + nOld do if not keep[KEYS[i]] then redis.call('ZREM', KEYS[i], id) end end
for i = 11 + nOld, 10 + nOld + nNew do redis.call('ZADD', KEYS[i], ARGV[6], id) end
for i = 0, 2 do
  if ARGV[10 + i] == '' then redis.call('ZREM', KEYS[6 + i], ARGV[9]) else redis.call('ZADD', KEYS[6 + i], ARGV[10 + i], ARGV[9]) end
end
if op == 'replace' or op == 'drop' then redis.call('DEL', KEYS[2]) end
for i = 16, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
if ARGV[1] == '0' then redis.call('DEL', KEYS[4]) end
if ARGV[5] == '' then
  redis.call('DEL', KEYS[1], KEYS[4])
  redis.call('SET', KEYS[5], ARGV[14])
else
  redis.call('HSET', KEYS[1], 'doc', ARGV[5], 'rev', (tonumber(rev) or 0) + 1)
end
redis.call('PUBLISH', '${CHANNEL}', id)
return 'OK'`;

// KEYS: (key, usage) pairs. ARGV: (version, count) pairs. Returns the new totals, -1 for a missing key.
export const ADD_USAGE = `
local out = {}
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then out[#out + 1] = redis.call('HINCRBY', KEYS[i + 1], ARGV[i], ARGV[i + 1])
  else out[#out + 1] = -1 end
end
return out`;

// KEYS: cluster state. ARGV: expected rev, doc. Returns the revision found (written when it was the expected one).
export const PUT_CLUSTER_STATE = `
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev == tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'rev', rev + 1) end
return rev
`;

// KEYS: lease. ARGV: holder, ttl ms
export const ACQUIRE = `
local cur = redis.call('GET', KEYS[1])
if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0`;

// KEYS: lease. ARGV: holder
export const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`;

// Repair's one fix, applied only if the record is still at the revision repair judged it by.
// KEYS: record, target. ARGV: expected rev ('' = record absent), op (zadd|zrem|hset|hdel|del), args
export const REPAIR_FIX = `
if (redis.call('HGET', KEYS[1], 'rev') or '') ~= ARGV[1] then return 0 end
local op = ARGV[2]
if op == 'zadd' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
elseif op == 'zrem' then redis.call('ZREM', KEYS[2], ARGV[3])
elseif op == 'hset' then redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
elseif op == 'hdel' then redis.call('HDEL', KEYS[2], ARGV[3])
else redis.call('DEL', KEYS[2]) end
return 1`;
