/**
 * Redis backend (ioredis, Redis >= 7.0, one standalone server by host and port) for several KMS
 * nodes sharing state. The layout and how index facts map onto set names: keys.ts; every change of
 * a key is one Lua script (scripts.ts) that checks and writes the record and all it implies
 * atomically; listing: list-query.ts; change notification: changes.ts; repair: repair.ts.
 * Opened through the one Redis opener (redis-client.ts): refuses a server with neither AOF nor RDB
 * persistence unless `allowVolatile` is set, and fails with `StoreUnavailableError` while the
 * server cannot be reached.
 */
import Redis from 'ioredis';
import type { KeyState } from '../../common/key-states';
import { KEY_STATES } from '../../common/key-states';
import {
  applyPatch,
  checkClusterState,
  checkClusterWalk,
  checkDueQuery,
  checkLease,
  checkNewRecord,
  checkQuery,
  decodeDoc,
  emptyStateCounts,
  encodeDoc,
  KeyDoc,
  parseUsageBatch,
  tombstoneOf,
  withVersion,
} from '../record';
import { DUE_KINDS, indexFacts, quotaLimitFor } from '../record-facts';
import { closeRedis, execAll, openRedis, RedisConnectionOptions, reportingUnavailable } from '../redis-client';
import {
  AliasExistsError,
  ClusterKeysPage,
  ClusterState,
  ClusterStateConflictError,
  ConflictError,
  CreateLimits,
  DataKeyLimits,
  DataKeyPatch,
  DataKeyRecord,
  DataKeyRef,
  DueKind,
  KeyChange,
  KeyNotFoundError,
  KeyPatch,
  KeyRecord,
  KeyRef,
  KeyVersion,
  ListDataKeysQuery,
  ListDataKeysResult,
  ListKeysQuery,
  ListKeysResult,
  MetadataStore,
  NewDataKeyRecord,
  NewKeyRecord,
  QuotaExceededError,
  StoreInputError,
  Tombstone,
} from '../store';
import { ChangeSubscription } from './changes';
import { RedisDataKeys } from './data-keys';
import {
  aliasName,
  clusterName,
  dueMember,
  dueName,
  keyName,
  leaseName,
  memberships,
  parseDueMember,
  quotaSets,
  TERM,
  tombName,
  useName,
  verName,
} from './keys';
import { listPage } from './list-query';
import { repairRedis } from './repair';
import { ACQUIRE, ADD_USAGE, COMMIT, PUT_CLUSTER_STATE, RELEASE } from './scripts';

export type RedisStoreOptions = RedisConnectionOptions;

/** Attempts of addVersion / deleteKey when other writers keep changing the key in between. */
const MAX_ATTEMPTS = 20;

type VersionsOp = { op: 'keep' } | { op: 'add'; version: KeyVersion } | { op: 'replace'; versions: KeyVersion[] } | { op: 'drop' };
type CommitStatus = 'OK' | 'EXISTS' | 'NOTFOUND' | 'CONFLICT' | 'ALIAS' | 'DUP' | 'QUOTA';

export class RedisMetadataStore implements MetadataStore {
  private readonly changes: ChangeSubscription;
  private readonly dataKeys: RedisDataKeys;

  private constructor(private readonly redis: Redis) {
    this.changes = new ChangeSubscription(redis);
    this.dataKeys = new RedisDataKeys(redis);
  }

  /** A store whose every failure to reach Redis is a `StoreUnavailableError`. */
  static async open(options: RedisStoreOptions): Promise<RedisMetadataStore> {
    return reportingUnavailable(new RedisMetadataStore(await openRedis(options, { keeps: 'key metadata' })));
  }

  async createKey(record: NewKeyRecord, limits: CreateLimits = {}): Promise<KeyRecord> {
    checkNewRecord(record);
    const stored: KeyRecord = { ...record, revision: 1 };
    const maxKeys = quotaLimitFor(record, limits.maxKeys);
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
    const { counted, excluded } = quotaSets(ownerUin, region);
    const [all, notCounted] = await execAll<number>(this.redis.multi().zcard(counted).zintercard(2, counted, excluded));
    return all - notCounted;
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
    const { total, ids } = await listPage(this.redis, q);
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

  createDataKey(record: NewDataKeyRecord, limits?: DataKeyLimits): Promise<DataKeyRecord> {
    return this.dataKeys.create(record, limits);
  }

  countDataKeys(ownerUin: string, region: string): Promise<number> {
    return this.dataKeys.count(ownerUin, region);
  }

  getDataKey(ownerUin: string, dataKeyId: string): Promise<DataKeyRecord | undefined> {
    return this.dataKeys.get(ownerUin, dataKeyId);
  }

  updateDataKey(ownerUin: string, dataKeyId: string, expectedRevision: number, patch: DataKeyPatch): Promise<DataKeyRecord> {
    return this.dataKeys.update(ownerUin, dataKeyId, expectedRevision, patch);
  }

  deleteDataKey(ownerUin: string, dataKeyId: string): Promise<boolean> {
    return this.dataKeys.delete(ownerUin, dataKeyId);
  }

  listDataKeys(query: ListDataKeysQuery): Promise<ListDataKeysResult> {
    return this.dataKeys.list(query);
  }

  dueDataKeys(before: number, limit: number): Promise<DataKeyRef[]> {
    return this.dataKeys.due(before, limit);
  }

  watch(listener: (change: KeyChange) => void): () => void {
    return this.changes.watch(listener);
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

  /** Compares every index with the records and fixes what disagrees (repair.ts). */
  async repair(): Promise<string[]> {
    return repairRedis(this.redis);
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  async close(): Promise<void> {
    this.changes.close();
    await closeRedis(this.redis);
  }

  private async commit(
    current: KeyRecord | undefined,
    next: KeyRecord | undefined,
    versions: VersionsOp,
    opts: { maxKeys?: number; tombstone?: Tombstone } = {},
  ): Promise<CommitStatus> {
    const r = (next ?? current) as KeyRecord;
    const oldSets = current === undefined ? [] : memberships(indexFacts(current));
    const newFacts = next === undefined ? undefined : indexFacts(next);
    const newSets = newFacts === undefined ? [] : memberships(newFacts);
    const due = newFacts?.due ?? {};
    const quota = quotaSets(r.ownerUin, r.region);
    const keys = [
      keyName(r.keyId),
      verName(r.keyId),
      aliasName(r.ownerUin, r.region),
      useName(r.keyId),
      tombName(r.keyId),
      ...DUE_KINDS.map(dueName),
      quota.counted,
      quota.excluded,
      ...oldSets,
      ...newSets,
    ];
    const args: Array<string | number | Buffer> = [
      String(current?.revision ?? 0),
      r.keyId,
      current?.alias ?? '',
      next?.alias ?? '',
      next === undefined ? '' : encodeDoc(next),
      r.createTime,
      oldSets.length,
      newSets.length,
      dueMember(r),
      ...DUE_KINDS.map((k) => due[k] ?? ''),
      opts.maxKeys ?? '',
      opts.tombstone === undefined ? '' : JSON.stringify(opts.tombstone),
      versions.op,
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
