/**
 * Redis backend (ioredis, Redis >= 7.0, one standalone server by host and port; no Sentinel or Cluster) for several KMS nodes sharing state.
 * Layout, with tenant, region, tag keys and values URI-encoded in names:
 *   kms:key:{keyId}             hash: doc (JSON record without versions), rev
 *   kms:ver:{keyId}             hash: version number -> 8-byte big-endian create time + material
 *   kms:use:{keyId}             hash: version number -> encryption count
 *   kms:tomb:{keyId}            string: the tombstone (JSON) of a deleted key
 *   kms:alias:{owner}:{region}  hash: alias -> keyId (uniqueness; the search reads it)
 *   kms:idx:{owner}:{region}    sorted set: every keyId of the tenant in the region, by create time
 *   kms:idx:{owner}:{region}:{term}  sorted sets by create time, one per filter value:
 *       state:{S}, usage:{U}, origin:{O}, cluster:{C}, role:{user|product}, tag:{k}, tagv:{k}={v}
 *   kms:due:{rotation|deletion|expiry}  sorted sets of "{keyId}/{owner}" by due time (all tenants)
 *   kms:lease:{name}            string: holder, with a TTL
 *   kms:cluster:{id}            hash: doc (the cluster's state document), rev
 *
 * Every change of a key (create, update, add version, delete) is one Lua script (COMMIT): it checks
 * the revision the client read (compare-and-set), alias uniqueness, version uniqueness and the quota,
 * then writes the record, versions, tombstone, the alias hash, every index set and due set, and
 * publishes the key id on `kms:changes`, all atomically. The client computes the old and new index
 * memberships from the record at the revision the script checks, so both are exact.
 *
 * Listing: the sets named by the filters are intersected (ZINTERSTORE, with ZUNIONSTORE for "any of"
 * filters) into short-lived keys inside one MULTI, ZCARD gives the total and ZRANGE the page; only the
 * page's records are read. The cost is that of the intersection (bounded by the smallest set named)
 * plus the page, never the tenant's other keys. Exception: the alias/key-id substring search
 * HSCANs the tenant's alias hash (aliases and ids only, no records), so it costs the tenant's key
 * count in that region; a substring has no index.
 *
 * `watch` subscribes a second connection to `kms:changes` while there are listeners; listeners hear
 * {} once the subscription is in place (a listener added later: at once) and after every reconnect,
 * since changes before that may have been missed.
 * Refuses a server with neither AOF nor RDB persistence unless `allowVolatile` is set.
 */
import { randomUUID } from 'crypto';
import Redis, { ChainableCommander } from 'ioredis';
import { closeRedis, openPersistentRedis, RedisConnectionOptions } from '../redis-client';
import {
  AliasExistsError, ClusterKeysPage, ClusterState, ClusterStateConflictError, ConflictError, CreateLimits, DUE_KINDS, DueKind, KeyChange, KeyDoc, KeyNotFoundError, KeyPatch,
  KeyRecord, KeyRef, KeyVersion, ListKeysQuery, ListKeysResult, MetadataStore, NewKeyRecord, QuotaExceededError,
  StoreConfigError, StoreInputError, Tombstone, applyPatch, checkClusterState, checkClusterWalk, checkDueQuery, checkLease, checkNewRecord, checkQuery,
  decodeDoc, dueTimes, emitChange, encodeDoc, matchesSearch, parseUsageBatch, roleOf, tombstoneOf, withVersion,
  emptyStateCounts,
} from '../store';
import { KEY_STATES, KeyState } from '../../common/key-states';

export type RedisStoreOptions = RedisConnectionOptions;

type Listener = (change: KeyChange) => void;

const CHANNEL = 'kms:changes';
/** Attempts of addVersion / deleteKey when other writers keep changing the key in between. */
const MAX_ATTEMPTS = 20;
const enc = encodeURIComponent;
const keyName = (keyId: string): string => `kms:key:${keyId}`;
const verName = (keyId: string): string => `kms:ver:${keyId}`;
const useName = (keyId: string): string => `kms:use:${keyId}`;
const tombName = (keyId: string): string => `kms:tomb:${keyId}`;
const aliasName = (owner: string, region: string): string => `kms:alias:${enc(owner)}:${enc(region)}`;
const idxName = (owner: string, region: string): string => `kms:idx:${enc(owner)}:${enc(region)}`;
const termName = (owner: string, region: string, term: string): string => `${idxName(owner, region)}:${term}`;
const dueName = (kind: DueKind): string => `kms:due:${kind}`;
const dueMember = (r: { keyId: string; ownerUin: string }): string => `${r.keyId}/${r.ownerUin}`;
const leaseName = (name: string): string => `kms:lease:${enc(name)}`;
const clusterName = (id: string): string => `kms:cluster:${enc(id)}`;
const tmpName = (): string => `kms:tmp:${randomUUID()}`;

/** Index terms, shared by the writers (memberships) and the listing (filters). */
const TERM = {
  state: (s: string) => `state:${enc(s)}`,
  usage: (u: string) => `usage:${enc(u)}`,
  origin: (o: string) => `origin:${enc(o)}`,
  cluster: (c: string) => `cluster:${enc(c)}`,
  role: (r: string) => `role:${r}`,
  tag: (k: string) => `tag:${enc(k)}`,
  tagValue: (k: string, v: string) => `tagv:${enc(k)}=${enc(v)}`,
};

/** Every index set the record belongs to (the tenant's listing set first). */
function memberships(r: NewKeyRecord): string[] {
  const terms = [
    TERM.state(r.keyState), TERM.usage(r.keyUsage), TERM.origin(r.origin), TERM.cluster(r.hsmClusterId), TERM.role(roleOf(r.owner)),
    ...Object.entries(r.tags).flatMap(([k, v]) => [TERM.tag(k), TERM.tagValue(k, v)]),
  ];
  return [idxName(r.ownerUin, r.region), ...terms.map((t) => termName(r.ownerUin, r.region, t))];
}

// KEYS: 1 key, 2 versions, 3 alias hash, 4 usage, 5 tombstone, 6-8 due rotation/deletion/expiry,
//       9 role:user set, 10 state:PendingDelete set, then nOld old index sets, then nNew new index sets.
// ARGV: 1 expected rev ('0': must not exist), 2 keyId, 3 old alias, 4 new alias ('' when deleting),
//       5 doc ('' when deleting), 6 create time, 7 nOld, 8 nNew, 9 due member, 10-12 due times ('' none),
//       13 max keys ('' none), 14 tombstone ('' none), 15 versions op (keep|add|replace|drop), 16.. version, value pairs
const COMMIT = `
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
const ADD_USAGE = `
local out = {}
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then out[#out + 1] = redis.call('HINCRBY', KEYS[i + 1], ARGV[i], ARGV[i + 1])
  else out[#out + 1] = -1 end
end
return out`;

// KEYS: cluster state. ARGV: expected rev, doc. Returns the revision found (written when it was the expected one).
const PUT_CLUSTER_STATE = `
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev == tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'rev', rev + 1) end
return rev
`;

// KEYS: lease. ARGV: holder, ttl ms
const ACQUIRE = `
local cur = redis.call('GET', KEYS[1])
if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0`;

// KEYS: lease. ARGV: holder
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`;

// Repair's one fix, applied only if the record is still at the revision repair judged it by.
// KEYS: record, target. ARGV: expected rev ('' = record absent), op (zadd|zrem|hset|hdel|del), args
const REPAIR_FIX = `
if (redis.call('HGET', KEYS[1], 'rev') or '') ~= ARGV[1] then return 0 end
local op = ARGV[2]
if op == 'zadd' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
elseif op == 'zrem' then redis.call('ZREM', KEYS[2], ARGV[3])
elseif op == 'hset' then redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
elseif op == 'hdel' then redis.call('HDEL', KEYS[2], ARGV[3])
else redis.call('DEL', KEYS[2]) end
return 1`;

type VersionsOp =
  | { op: 'keep' } | { op: 'add'; version: KeyVersion } | { op: 'replace'; versions: KeyVersion[] } | { op: 'drop' };
type CommitStatus = 'OK' | 'EXISTS' | 'NOTFOUND' | 'CONFLICT' | 'ALIAS' | 'DUP' | 'QUOTA';

/** One repair: `op` on `target` with `args`, applied only if key `keyId` is still as repair saw it. */
interface Fix {
  keyId: string;
  target: string;
  op: 'zadd' | 'zrem' | 'hset' | 'hdel' | 'del';
  args: Array<string | number>;
  what: string;
}

/** What a record implies for the derived data; repair compares the indexes with it. */
interface Expected {
  rev: string;
  ownerUin: string;
  alias: string;
  aliasHash: string;
  createTime: number;
  sets: string[];
  due: Partial<Record<DueKind, number>>;
}

export class RedisMetadataStore implements MetadataStore {
  private readonly listeners = new Set<Listener>();
  private subscriber: Redis | undefined;
  /** The subscriber's subscription is confirmed (a new listener is live at once). */
  private subscribed = false;

  private constructor(private readonly redis: Redis) {}

  static async open(options: RedisStoreOptions): Promise<RedisMetadataStore> {
    return new RedisMetadataStore(await openPersistentRedis(options, 'key metadata', (m) => new StoreConfigError(m)));
  }

  async createKey(record: NewKeyRecord, limits: CreateLimits = {}): Promise<KeyRecord> {
    checkNewRecord(record);
    const stored: KeyRecord = { ...record, revision: 1 };
    const maxKeys = roleOf(record.owner) === 'user' ? limits.maxKeys : undefined;
    const status = await this.commit(undefined, stored, { op: 'replace', versions: record.versions }, { maxKeys });
    if (status === 'EXISTS') throw new ConflictError(record.keyId, 'key id already exists');
    if (status === 'QUOTA') throw new QuotaExceededError(record.ownerUin, record.region, maxKeys ?? 0);
    raise(status, stored);
    return stored;
  }

  async countByState(): Promise<Record<KeyState, number>> {
    const counts = emptyStateCounts();
    for (const state of KEY_STATES) {
      const sets: string[] = [];
      const stream = this.redis.scanStream({ match: `kms:idx:*:*:${TERM.state(state)}`, count: 500 });
      for await (const batch of stream) sets.push(...(batch as string[]));
      const sizes = sets.length ? await execAll<number>(sets.reduce((m, k) => m.zcard(k), this.redis.multi())) : [];
      counts[state] = sizes.reduce((a, b) => a + b, 0);
    }
    return counts;
  }

  async countKeys(ownerUin: string, region: string): Promise<number> {
    const user = termName(ownerUin, region, TERM.role('user'));
    const pending = termName(ownerUin, region, TERM.state('PendingDelete'));
    const [all, deleting] = await execAll<number>(this.redis.multi().zcard(user).zintercard(2, user, pending));
    return all - deleting;
  }

  async getKey(ownerUin: string, keyId: string): Promise<KeyRecord | undefined> {
    return (await this.load(ownerUin, [keyId]))[0];
  }

  async updateKey(ownerUin: string, keyId: string, expectedRevision: number, patch: KeyPatch): Promise<KeyRecord> {
    const current = await this.mustGet(ownerUin, keyId);
    if (current.revision !== expectedRevision) {
      throw new ConflictError(keyId, `expected revision ${expectedRevision}, found ${current.revision}`);
    }
    const next = applyPatch(current, patch);
    const versions: VersionsOp = patch.versions === undefined ? { op: 'keep' } : { op: 'replace', versions: next.versions };
    raise(await this.commit(current, next, versions), next);
    return next;
  }

  async addVersion(ownerUin: string, keyId: string, version: KeyVersion, patch: KeyPatch = {}): Promise<KeyRecord> {
    return this.retrying(keyId, async () => {
      const current = await this.mustGet(ownerUin, keyId);
      const next = withVersion(current, version, patch);
      const status = await this.commit(current, next, { op: 'add', version });
      if (status === 'CONFLICT') return status;
      if (status === 'DUP') throw new ConflictError(keyId, `version ${version.version} already exists`);
      raise(status, next);
      return next;
    });
  }

  async deleteKey(ownerUin: string, keyId: string, deletedAt: number): Promise<boolean> {
    if (!Number.isFinite(deletedAt)) throw new StoreInputError(`deletedAt must be a number, got ${deletedAt}`);
    return this.retrying(keyId, async () => {
      const current = await this.getKey(ownerUin, keyId);
      if (current === undefined) return false;
      const status = await this.commit(current, undefined, { op: 'drop' }, { tombstone: tombstoneOf(current, deletedAt) });
      return status === 'CONFLICT' ? status : status === 'OK';
    });
  }

  async getTombstone(ownerUin: string, keyId: string): Promise<Tombstone | undefined> {
    const raw = await this.redis.get(tombName(keyId));
    const tomb = raw === null ? undefined : (JSON.parse(raw) as Tombstone);
    return tomb?.ownerUin === ownerUin ? tomb : undefined;
  }

  async listKeys(q: ListKeysQuery): Promise<ListKeysResult> {
    checkQuery(q);
    let search: string[] | undefined;
    if ((q.searchAlias ?? '') !== '') {
      search = await this.searchAliases(q.ownerUin, q.region, q.searchAlias as string);
      if (search.length === 0) return { total: 0, keys: [] };
    }
    const multi = this.redis.multi();
    const temps: string[] = [];
    const inputs = filterGroups(q).map((group) => (group.length === 1 ? group[0] : union(multi, group, temps)));
    if (search !== undefined) {
      const t = tmpName();
      temps.push(t);
      multi.zadd(t, ...search.flatMap((id) => ['-inf', id]));
      inputs.push(t);
    }
    if (inputs.length === 0 || search !== undefined) inputs.unshift(idxName(q.ownerUin, q.region));
    const result = inputs.length === 1 ? inputs[0] : intersect(multi, inputs, temps);
    const stop = String(q.offset + q.limit - 1);
    multi.zcard(result);
    if (q.order === 'asc') multi.zrange(result, q.offset, stop);
    else multi.zrange(result, q.offset, stop, 'REV');
    if (temps.length > 0) multi.del(...temps);
    const replies = await execAll<unknown>(multi);
    const [total, ids] = replies.slice(replies.length - (temps.length > 0 ? 3 : 2)) as [number, string[]];
    return { total, keys: await this.load(q.ownerUin, ids) };
  }

  async dueKeys(kind: DueKind, before: number, limit: number): Promise<KeyRef[]> {
    checkDueQuery(kind, before, limit);
    const members = await this.redis.zrange(dueName(kind), '-inf', String(before), 'BYSCORE', 'LIMIT', 0, limit);
    return members.map(parseDueMember);
  }

  async addUsage(batch: ReadonlyMap<string, number>): Promise<Map<string, number>> {
    const entries = parseUsageBatch(batch);
    const totals = new Map<string, number>();
    if (entries.length === 0) return totals;
    const keys = entries.flatMap((e) => [keyName(e.keyId), useName(e.keyId)]);
    const args = entries.flatMap((e) => [e.version, e.count]);
    const replies = (await this.redis.eval(ADD_USAGE, keys.length, ...keys, ...args)) as number[];
    entries.forEach((e, i) => {
      if (replies[i] >= 0) totals.set(e.ref, replies[i]);
    });
    return totals;
  }

  watch(listener: (change: KeyChange) => void): () => void {
    const entry: Listener = (change) => listener(change);
    this.listeners.add(entry);
    if (this.subscriber === undefined && this.redis.status !== 'end') this.subscribe();
    else if (this.subscribed) queueMicrotask(() => { if (this.listeners.has(entry)) emitChange([entry], {}); });
    return () => {
      this.listeners.delete(entry);
      if (this.listeners.size === 0) this.unsubscribe();
    };
  }

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    checkLease(name, holder, ttlMs);
    return (await this.redis.eval(ACQUIRE, 1, leaseName(name), holder, ttlMs)) === 1;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    checkLease(name, holder);
    await this.redis.eval(RELEASE, 1, leaseName(name), holder);
  }

  /** A SCAN of kms:key:* (its cursor is the walk's), keeping the keys of the cluster: a whole-cluster walk has no index, like repair. */
  async clusterKeys(clusterId: string, cursor: string, limit: number): Promise<ClusterKeysPage> {
    checkClusterWalk(clusterId, cursor, limit);
    if (cursor !== '' && !/^\d+$/.test(cursor)) throw new StoreInputError(`not a cursor of this store: ${JSON.stringify(cursor)}`);
    const [next, names] = await this.redis.scan(cursor || '0', 'MATCH', 'kms:key:*', 'COUNT', limit, 'TYPE', 'hash');
    const keys: KeyRef[] = [];
    if (names.length) {
      const rows = await execAll<string | null>(names.reduce((m, n) => m.hget(n, 'doc'), this.redis.multi()));
      for (const doc of rows) {
        const d = doc === null ? undefined : decodeDoc(doc);
        if (d?.hsmClusterId === clusterId) keys.push({ ownerUin: d.ownerUin, keyId: d.keyId });
      }
    }
    return { keys, cursor: next === '0' ? undefined : next };
  }

  async getClusterState(clusterId: string): Promise<ClusterState | undefined> {
    checkClusterState(clusterId, 0);
    const [doc, rev] = await this.redis.hmget(clusterName(clusterId), 'doc', 'rev');
    return doc === null || rev === null ? undefined : { doc, revision: Number(rev) };
  }

  async putClusterState(clusterId: string, expectedRevision: number, doc: string): Promise<number> {
    checkClusterState(clusterId, expectedRevision, doc);
    const found = Number(await this.redis.eval(PUT_CLUSTER_STATE, 1, clusterName(clusterId), String(expectedRevision), doc));
    if (found !== expectedRevision) throw new ClusterStateConflictError(clusterId, expectedRevision, found);
    return expectedRevision + 1;
  }

  /**
   * Compares every index with the records (SCAN of kms:key:*, then of every index set and hash) and
   * fixes what disagrees. Each fix is applied only if its record is still at the revision it was
   * judged by, so nodes writing meanwhile are never undone.
   */
  async repair(): Promise<string[]> {
    const findings: string[] = [];
    const missing: Fix[] = [];
    const expected = new Map<string, Expected>();
    const unreadable = new Set<string>();
    for (const name of await this.scan('kms:key:*', 'hash')) {
      const keyId = name.slice('kms:key:'.length);
      const e = await this.expectedOf(keyId);
      if (e === 'gone') continue;
      if (e === undefined) {
        unreadable.add(keyId);
        findings.push(`key ${keyId}: unreadable record; its index entries are left as they are`);
        continue;
      }
      expected.set(keyId, e);
      missing.push(...(await this.missingEntries(keyId, e)));
    }
    // removals first: an alias entry may be dropped for one key and then set for the key that has it
    const fixes = [...(await this.staleEntries(expected)), ...missing];
    for (const f of fixes.filter((fix) => !unreadable.has(fix.keyId))) {
      const rev = expected.get(f.keyId)?.rev ?? '';
      if ((await this.redis.eval(REPAIR_FIX, 2, keyName(f.keyId), f.target, rev, f.op, ...f.args)) === 1) findings.push(f.what);
    }
    return findings;
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.unsubscribe();
    await closeRedis(this.redis);
  }

  private async commit(
    current: KeyRecord | undefined, next: KeyRecord | undefined, versions: VersionsOp,
    opts: { maxKeys?: number; tombstone?: Tombstone } = {},
  ): Promise<CommitStatus> {
    const r = (next ?? current) as KeyRecord;
    const oldSets = current === undefined ? [] : memberships(current);
    const newSets = next === undefined ? [] : memberships(next);
    const due = next === undefined ? {} : dueTimes(next);
    const keys = [
      keyName(r.keyId), verName(r.keyId), aliasName(r.ownerUin, r.region), useName(r.keyId), tombName(r.keyId),
      ...DUE_KINDS.map(dueName), termName(r.ownerUin, r.region, TERM.role('user')),
      termName(r.ownerUin, r.region, TERM.state('PendingDelete')), ...oldSets, ...newSets,
    ];
    const args: Array<string | number | Buffer> = [
      String(current?.revision ?? 0), r.keyId, current?.alias ?? '', next?.alias ?? '', next === undefined ? '' : encodeDoc(next),
      r.createTime, oldSets.length, newSets.length, dueMember(r), ...DUE_KINDS.map((k) => due[k] ?? ''),
      opts.maxKeys ?? '', opts.tombstone === undefined ? '' : JSON.stringify(opts.tombstone), versions.op,
      ...versionArgs(versions),
    ];
    return (await this.redis.eval(COMMIT, keys.length, ...keys, ...args)) as CommitStatus;
  }

  /** Runs `attempt` again while another writer changed the key between its read and its write. */
  private async retrying<T>(keyId: string, attempt: () => Promise<T | 'CONFLICT'>): Promise<T> {
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      const result = await attempt();
      if (result !== 'CONFLICT') return result;
    }
    throw new ConflictError(keyId, `still changing after ${MAX_ATTEMPTS} attempts`);
  }

  private async mustGet(ownerUin: string, keyId: string): Promise<KeyRecord> {
    const current = await this.getKey(ownerUin, keyId);
    if (current === undefined) throw new KeyNotFoundError(keyId);
    return current;
  }

  /** The tenant's records with these ids, in this order, each read atomically with its versions. */
  private async load(ownerUin: string, ids: string[]): Promise<KeyRecord[]> {
    if (ids.length === 0) return [];
    const multi = this.redis.multi();
    for (const id of ids) multi.hgetall(keyName(id)).hgetallBuffer(verName(id));
    const replies = await execAll<Record<string, string> | Record<string, Buffer>>(multi);
    const out: KeyRecord[] = [];
    for (let i = 0; i < replies.length; i += 2) {
      const hash = replies[i] as Record<string, string>;
      if (hash.doc === undefined) continue;
      const doc = decodeDoc(hash.doc);
      if (doc.ownerUin === ownerUin) out.push(toRecord(doc, hash.rev, replies[i + 1] as Record<string, Buffer>));
    }
    return out;
  }

  /** Key ids of the tenant whose alias or id contains `search`: an HSCAN of the alias hash. */
  private async searchAliases(ownerUin: string, region: string, search: string): Promise<string[]> {
    const pairs = await this.scanPairs('hscan', aliasName(ownerUin, region));
    return pairs.filter(([alias, keyId]) => matchesSearch(search, alias, keyId)).map(([, keyId]) => keyId);
  }

  private subscribe(): void {
    // the SUBSCRIBE below is issued before this connection is up: it waits in the offline queue
    const sub = this.redis.duplicate({ enableOfflineQueue: true });
    this.subscriber = sub;
    let connectedBefore = false;
    sub.on('message', (_channel: string, keyId: string) => emitChange(this.listeners, { keyId }));
    sub.on('ready', () => {
      if (connectedBefore) this.confirmSubscription(sub);
      connectedBefore = true;
    });
    sub.on('close', () => { if (this.subscriber === sub) this.subscribed = false; });
    sub.on('error', () => undefined); // ioredis reconnects by itself; listeners hear {} when it has
    this.confirmSubscription(sub);
  }

  /** (Re)subscribes and, once the server confirms, tells listeners anything may have changed meanwhile. */
  private confirmSubscription(sub: Redis): void {
    sub.subscribe(CHANNEL).then(() => {
      if (this.subscriber !== sub) return;
      this.subscribed = true;
      emitChange(this.listeners, {});
    }, () => undefined);
  }

  private unsubscribe(): void {
    const sub = this.subscriber;
    this.subscriber = undefined;
    this.subscribed = false;
    sub?.disconnect();
  }

  private async scan(pattern: string, type: string): Promise<string[]> {
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, names] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000, 'TYPE', type);
      out.push(...names);
      cursor = next;
    } while (cursor !== '0');
    return out;
  }

  /** All (field, value) pairs of a hash, or (member, score) pairs of a sorted set, read in chunks. */
  private async scanPairs(cmd: 'hscan' | 'zscan', key: string): Promise<Array<[string, string]>> {
    const out: Array<[string, string]> = [];
    let cursor = '0';
    do {
      const [next, flat] = await this.redis[cmd](key, cursor, 'COUNT', 1000);
      for (let i = 0; i < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
      cursor = next;
    } while (cursor !== '0');
    return out;
  }

  /** What the record implies, 'gone' when it was deleted meanwhile, undefined when it cannot be read. */
  private async expectedOf(keyId: string): Promise<Expected | 'gone' | undefined> {
    const [hash, versions] = await execAll<unknown>(this.redis.multi().hgetall(keyName(keyId)).hlen(verName(keyId)));
    const { doc, rev } = hash as Record<string, string>;
    if (doc === undefined && rev === undefined) return 'gone';
    let record: KeyDoc;
    try {
      record = decodeDoc(doc);
    } catch {
      return undefined;
    }
    if (rev === undefined || record.keyId !== keyId) return undefined;
    const withVersions = { ...record, versions: new Array<KeyVersion>(versions as number) };
    return {
      rev, ownerUin: record.ownerUin, alias: record.alias, aliasHash: aliasName(record.ownerUin, record.region),
      createTime: record.createTime, sets: [...new Set(memberships(withVersions))], due: dueTimes(withVersions),
    };
  }

  /** What the record implies and its indexes lack: alias entry, index memberships, due entries. */
  private async missingEntries(keyId: string, e: Expected): Promise<Fix[]> {
    const member = dueMember({ keyId, ownerUin: e.ownerUin });
    const wanted = [
      ...e.sets.map((set) => ({ set, score: e.createTime, member: keyId })),
      ...DUE_KINDS.filter((k) => e.due[k] !== undefined).map((k) => ({ set: dueName(k), score: e.due[k] as number, member })),
    ];
    const read = this.redis.multi().hget(e.aliasHash, e.alias);
    for (const w of wanted) read.zscore(w.set, w.member);
    const [aliasTarget, ...scores] = await execAll<string | null>(read);
    const fixes: Fix[] = [];
    if (aliasTarget !== keyId) {
      const what = `key ${keyId}: alias ${JSON.stringify(e.alias)} did not point at it; fixed`;
      fixes.push({ keyId, target: e.aliasHash, op: 'hset', args: [e.alias, keyId], what });
    }
    wanted.forEach((w, i) => {
      if (scores[i] !== null && Number(scores[i]) === w.score) return;
      const what = `key ${keyId}: ${scores[i] === null ? 'missing from' : 'misplaced in'} ${w.set}; fixed`;
      fixes.push({ keyId, target: w.set, op: 'zadd', args: [w.score, w.member], what });
    });
    return fixes;
  }

  /** Index entries that point at missing records or that their record does not imply, and orphan hashes. */
  private async staleEntries(expected: Map<string, Expected>): Promise<Fix[]> {
    const fixes: Fix[] = [];
    const drop = (keyId: string, target: string, op: Fix['op'], args: string[], what: string): void => {
      fixes.push({ keyId, target, op, args, what: `${target}: ${what}` });
    };
    for (const set of await this.scan('kms:idx:*', 'zset')) {
      for (const [keyId] of await this.scanPairs('zscan', set)) {
        if (!expected.get(keyId)?.sets.includes(set)) drop(keyId, set, 'zrem', [keyId], `removed ${keyId}, which no record places there`);
      }
    }
    for (const hash of await this.scan('kms:alias:*', 'hash')) {
      for (const [alias, keyId] of await this.scanPairs('hscan', hash)) {
        const e = expected.get(keyId);
        if (e?.aliasHash === hash && e.alias === alias) continue;
        drop(keyId, hash, 'hdel', [alias], `removed alias ${JSON.stringify(alias)} of ${keyId}, which no record has`);
      }
    }
    for (const kind of DUE_KINDS) {
      for (const [member] of await this.scanPairs('zscan', dueName(kind))) {
        const { keyId } = parseDueMember(member);
        if (expected.get(keyId)?.due[kind] === undefined) drop(keyId, dueName(kind), 'zrem', [member], `removed ${member}, not due by its record`);
      }
    }
    for (const prefix of ['kms:ver:', 'kms:use:']) {
      for (const name of await this.scan(`${prefix}*`, 'hash')) {
        const keyId = name.slice(prefix.length);
        if (!expected.has(keyId)) drop(keyId, name, 'del', [], 'removed, its key no longer exists');
      }
    }
    return fixes;
  }
}

/** The index sets to intersect for a query, each a list of sets of which any may match. */
function filterGroups(q: ListKeysQuery): string[][] {
  const t = (term: string): string => termName(q.ownerUin, q.region, term);
  const groups: string[][] = [];
  if ((q.keyStates ?? []).length > 0) groups.push([...new Set(q.keyStates)].map((s) => t(TERM.state(s))));
  if (q.role !== undefined) groups.push([t(TERM.role(q.role))]);
  if (q.origin !== undefined) groups.push([t(TERM.origin(q.origin))]);
  if (q.keyUsage !== undefined) groups.push([t(TERM.usage(q.keyUsage))]);
  if (q.hsmClusterId !== undefined) groups.push([t(TERM.cluster(q.hsmClusterId))]);
  for (const f of q.tagFilters ?? []) {
    const values = [...new Set(f.values ?? [])];
    groups.push(values.length === 0 ? [t(TERM.tag(f.key))] : values.map((v) => t(TERM.tagValue(f.key, v))));
  }
  return groups;
}

/** Queues a union of `sets` into a new temporary key; scores stay the create time. */
function union(multi: ChainableCommander, sets: string[], temps: string[]): string {
  const t = tmpName();
  temps.push(t);
  multi.zunionstore(t, sets.length, ...sets, 'AGGREGATE', 'MAX');
  return t;
}

/** Queues an intersection; AGGREGATE MAX keeps the create time (the search set is scored -inf). */
function intersect(multi: ChainableCommander, sets: string[], temps: string[]): string {
  const t = tmpName();
  temps.push(t);
  multi.zinterstore(t, sets.length, ...sets, 'AGGREGATE', 'MAX');
  return t;
}

async function execAll<T>(multi: ChainableCommander): Promise<T[]> {
  const replies = await multi.exec();
  if (replies === null) throw new Error('Redis transaction aborted');
  return replies.map(([err, value]) => {
    if (err) throw err;
    return value as T;
  });
}

/** Throws the error a COMMIT status stands for (nothing for OK). */
function raise(status: CommitStatus, r: KeyRecord): void {
  if (status === 'OK') return;
  if (status === 'NOTFOUND') throw new KeyNotFoundError(r.keyId);
  if (status === 'ALIAS') throw new AliasExistsError(r.ownerUin, r.region, r.alias);
  throw new ConflictError(r.keyId, status === 'CONFLICT' ? `revision ${r.revision - 1} is gone` : status);
}

function versionArgs(versions: VersionsOp): Array<number | Buffer> {
  const list = versions.op === 'add' ? [versions.version] : versions.op === 'replace' ? versions.versions : [];
  // the version's create time travels inside the stored value: 8-byte big-endian prefix
  return list.flatMap((v) => [v.version, Buffer.concat([u64(v.createTime), v.material])]);
}

function parseDueMember(member: string): KeyRef {
  const slash = member.indexOf('/');
  return { keyId: member.slice(0, slash), ownerUin: member.slice(slash + 1) };
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(n));
  return b;
}

function toRecord(doc: KeyDoc, rev: string, vers: Record<string, Buffer>): KeyRecord {
  const versions: KeyVersion[] = Object.entries(vers)
    .map(([n, value]) => ({ version: Number(n), createTime: Number(value.readBigInt64BE(0)), material: value.subarray(8) }))
    .sort((a, b) => a.version - b.version);
  return { ...doc, revision: Number(rev), versions };
}
