/**
 * Hosted data keys in Redis, URI-encoded tenant and region in names:
 *   kms:dk:{dataKeyId}              hash: doc (JSON, the CMK-sealed blob inside), rev
 *   kms:dkname:{owner}:{region}     hash: name -> dataKeyId (uniqueness)
 *   kms:dkidx:{owner}:{region}      sorted set: the tenant's data key ids in the region, by create time
 *   kms:dkdue                       sorted set: "{dataKeyId}/{owner}" by deletion date (PendingDelete only)
 * Every change is one Lua script (DK_COMMIT) that checks the revision, the name and the quota and
 * writes the record and all it implies atomically.
 */
import type Redis from 'ioredis';
import {
  applyDataKeyPatch,
  checkDataKeyQuery,
  checkNewDataKey,
  dataKeyDeletionDue,
  decodeDataKeyDoc,
  encodeDataKeyDoc,
  selectDataKeys,
} from '../data-key-record';
import { execAll } from '../redis-client';
import {
  ConflictError,
  DataKeyLimits,
  DataKeyNameExistsError,
  DataKeyNotFoundError,
  DataKeyPatch,
  DataKeyQuotaExceededError,
  DataKeyRecord,
  DataKeyRef,
  ListDataKeysQuery,
  ListDataKeysResult,
  NewDataKeyRecord,
  StoreInputError,
} from '../store';

const enc = encodeURIComponent;
const recordName = (id: string): string => `kms:dk:${id}`;
const namesName = (owner: string, region: string): string => `kms:dkname:${enc(owner)}:${enc(region)}`;
const indexName = (owner: string, region: string): string => `kms:dkidx:${enc(owner)}:${enc(region)}`;
const DUE = 'kms:dkdue';

// KEYS: 1 record, 2 names hash, 3 tenant index, 4 due set.
// ARGV: 1 expected rev ('0': must not exist), 2 id, 3 old name, 4 new name, 5 doc ('' deletes), 6 create time,
//       7 due member, 8 due time ('' none), 9 max data keys ('' none)
const DK_COMMIT = `
local rev = redis.call('HGET', KEYS[1], 'rev')
local id, oldName, newName = ARGV[2], ARGV[3], ARGV[4]
if ARGV[1] ~= '0' then
  if not rev then return 'NOTFOUND' end
  if rev ~= ARGV[1] then return 'CONFLICT' end
else
  if rev then return 'EXISTS' end
  if ARGV[9] ~= '' and redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[9]) then return 'QUOTA' end
end
if ARGV[5] ~= '' and newName ~= oldName and redis.call('HEXISTS', KEYS[2], newName) == 1 then return 'NAME' end
if oldName ~= '' and (ARGV[5] == '' or oldName ~= newName) and redis.call('HGET', KEYS[2], oldName) == id then redis.call('HDEL', KEYS[2], oldName) end
if ARGV[8] == '' then redis.call('ZREM', KEYS[4], ARGV[7]) else redis.call('ZADD', KEYS[4], ARGV[8], ARGV[7]) end
if ARGV[5] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], id)
else
  redis.call('HSET', KEYS[2], newName, id)
  redis.call('ZADD', KEYS[3], ARGV[6], id)
  redis.call('HSET', KEYS[1], 'doc', ARGV[5], 'rev', (tonumber(rev) or 0) + 1)
end
return 'OK'`;

type Status = 'OK' | 'NOTFOUND' | 'CONFLICT' | 'EXISTS' | 'QUOTA' | 'NAME';

export class RedisDataKeys {
  constructor(private readonly redis: Redis) {}

  async create(record: NewDataKeyRecord, limits: DataKeyLimits = {}): Promise<DataKeyRecord> {
    checkNewDataKey(record);
    const stored: DataKeyRecord = { ...record, revision: 1 };
    const status = await this.commit(undefined, stored, limits.maxDataKeys);
    if (status === 'EXISTS') throw new ConflictError(record.dataKeyId, 'data key id already exists');
    if (status === 'QUOTA') throw new DataKeyQuotaExceededError(record.region, limits.maxDataKeys ?? 0);
    raise(status, stored);
    return stored;
  }

  async count(ownerUin: string, region: string): Promise<number> {
    return this.redis.zcard(indexName(ownerUin, region));
  }

  async get(ownerUin: string, dataKeyId: string): Promise<DataKeyRecord | undefined> {
    return (await this.load(ownerUin, [dataKeyId]))[0];
  }

  async update(ownerUin: string, dataKeyId: string, expectedRevision: number, patch: DataKeyPatch): Promise<DataKeyRecord> {
    const current = await this.get(ownerUin, dataKeyId);
    if (current === undefined) throw new DataKeyNotFoundError(dataKeyId);
    if (current.revision !== expectedRevision) throw new ConflictError(dataKeyId, `expected revision ${expectedRevision}, found ${current.revision}`);
    const next = applyDataKeyPatch(current, patch);
    raise(await this.commit(current, next), next);
    return next;
  }

  async delete(ownerUin: string, dataKeyId: string): Promise<boolean> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const current = await this.get(ownerUin, dataKeyId);
      if (current === undefined) return false;
      const status = await this.commit(current, undefined);
      if (status !== 'CONFLICT') return status === 'OK';
    }
    throw new ConflictError(dataKeyId, 'still changing after 20 attempts');
  }

  async list(q: ListDataKeysQuery): Promise<ListDataKeysResult> {
    checkDataKeyQuery(q);
    const ids = await this.redis.zrange(indexName(q.ownerUin, q.region), '0', '-1');
    return selectDataKeys(await this.load(q.ownerUin, ids), q);
  }

  async due(before: number, limit: number): Promise<DataKeyRef[]> {
    if (!Number.isFinite(before) || !Number.isInteger(limit) || limit < 1) throw new StoreInputError('before must be a number and limit an integer >= 1');
    const members = await this.redis.zrange(DUE, '-inf', String(before), 'BYSCORE', 'LIMIT', 0, limit);
    return members.map((m) => {
      const slash = m.indexOf('/');
      return { dataKeyId: m.slice(0, slash), ownerUin: m.slice(slash + 1) };
    });
  }

  private async commit(current: DataKeyRecord | undefined, next: DataKeyRecord | undefined, maxDataKeys?: number): Promise<Status> {
    const r = (next ?? current) as DataKeyRecord;
    const keys = [recordName(r.dataKeyId), namesName(r.ownerUin, r.region), indexName(r.ownerUin, r.region), DUE];
    const due = next === undefined ? undefined : dataKeyDeletionDue(next);
    const args = [
      String(current?.revision ?? 0),
      r.dataKeyId,
      current?.name ?? '',
      next?.name ?? '',
      next === undefined ? '' : encodeDataKeyDoc(next),
      String(r.createTime),
      `${r.dataKeyId}/${r.ownerUin}`,
      due === undefined ? '' : String(due),
      maxDataKeys === undefined ? '' : String(maxDataKeys),
    ];
    return (await this.redis.eval(DK_COMMIT, keys.length, ...keys, ...args)) as Status;
  }

  /** The tenant's data keys with these ids, in this order (others' and missing ones left out). */
  private async load(ownerUin: string, ids: string[]): Promise<DataKeyRecord[]> {
    if (ids.length === 0) return [];
    const rows = await execAll<[string | null, string | null]>(ids.reduce((m, id) => m.hmget(recordName(id), 'doc', 'rev'), this.redis.multi()));
    const out: DataKeyRecord[] = [];
    for (const [doc, rev] of rows) {
      if (doc === null || rev === null) continue;
      const r = decodeDataKeyDoc(doc, Number(rev));
      if (r.ownerUin === ownerUin) out.push(r);
    }
    return out;
  }
}

function raise(status: Status, r: DataKeyRecord): void {
  if (status === 'OK') return;
  if (status === 'NOTFOUND') throw new DataKeyNotFoundError(r.dataKeyId);
  if (status === 'NAME') throw new DataKeyNameExistsError(r.region, r.name);
  throw new ConflictError(r.dataKeyId, status === 'CONFLICT' ? `revision ${r.revision - 1} is gone` : status);
}
