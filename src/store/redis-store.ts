/**
 * Redis backend (ioredis) for several KMS nodes sharing state. Every transition is one Lua script,
 * so it is atomic on the server. Layout, with tenant and region URI-encoded in names:
 *   kms:key:{keyId}            hash: doc (JSON, no versions), rev, alias, owner, region
 *   kms:ver:{keyId}            hash: version number -> material bytes
 *   kms:alias:{owner}:{region} hash: alias -> keyId (uniqueness)
 *   kms:idx:{owner}:{region}   sorted set: keyId scored by createTime (listing; ties by keyId)
 * Listing reads only the tenant's own index. Refuses a server with neither AOF nor RDB persistence
 * unless `allowVolatile` is set.
 */
import Redis from 'ioredis';
import {
  AliasExistsError, ConflictError, KeyNotFoundError, KeyPatch, KeyRecord, KeyVersion, ListKeysQuery, ListKeysResult,
  MetadataStore, NewKeyRecord, StoreConfigError, applyPatch, checkNewRecord, checkQuery, checkVersion,
} from './store';

export interface RedisStoreOptions {
  host?: string;
  port: number;
  /** Accept a server without AOF or RDB persistence (tests, caches); default false. */
  allowVolatile?: boolean;
}

type Doc = Omit<NewKeyRecord, 'versions'>;
const enc = encodeURIComponent;
const keyName = (keyId: string): string => `kms:key:${keyId}`;
const verName = (keyId: string): string => `kms:ver:${keyId}`;
const aliasName = (owner: string, region: string): string => `kms:alias:${enc(owner)}:${enc(region)}`;
const idxName = (owner: string, region: string): string => `kms:idx:${enc(owner)}:${enc(region)}`;

// KEYS: key, versions, alias hash, index. ARGV: keyId, alias, doc, createTime, owner, region, [version, material]...
const CREATE = `
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then return 'ALIAS' end
if redis.call('EXISTS', KEYS[1]) == 1 then return 'EXISTS' end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'rev', 1, 'alias', ARGV[2], 'owner', ARGV[5], 'region', ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('DEL', KEYS[2])
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 'OK'`;

// KEYS: key, alias hash. ARGV: keyId, expected rev, new alias, doc
const UPDATE = `
local cur = redis.call('HMGET', KEYS[1], 'rev', 'alias')
if not cur[1] then return 'NOTFOUND' end
if cur[1] ~= ARGV[2] then return 'CONFLICT' end
if cur[2] ~= ARGV[3] then
  if redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[1]) == 0 then return 'ALIAS' end
  redis.call('HDEL', KEYS[2], cur[2])
end
redis.call('HSET', KEYS[1], 'doc', ARGV[4], 'rev', tonumber(ARGV[2]) + 1, 'alias', ARGV[3])
return 'OK'`;

// KEYS: key, versions. ARGV: version, material
const ADD_VERSION = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 'NOTFOUND' end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 'DUP' end
redis.call('HINCRBY', KEYS[1], 'rev', 1)
return 'OK'`;

// KEYS: key, versions, alias hash, index. ARGV: keyId
const DELETE = `
local alias = redis.call('HGET', KEYS[1], 'alias')
if not alias then return 0 end
if redis.call('HGET', KEYS[3], alias) == ARGV[1] then redis.call('HDEL', KEYS[3], alias) end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[2])
return 1`;

export class RedisMetadataStore implements MetadataStore {
  private constructor(private readonly redis: Redis) {}

  static async open(options: RedisStoreOptions): Promise<RedisMetadataStore> {
    const redis = new Redis({ host: options.host ?? '127.0.0.1', port: options.port, lazyConnect: true, maxRetriesPerRequest: 3 });
    await redis.connect();
    try {
      if (!options.allowVolatile) {
        const [, aof] = (await redis.config('GET', 'appendonly')) as string[];
        const [, save] = (await redis.config('GET', 'save')) as string[];
        if (aof !== 'yes' && (save ?? '').trim() === '') {
          throw new StoreConfigError(
            `Redis at ${options.host ?? '127.0.0.1'}:${options.port} has neither AOF nor RDB persistence; ` +
            'key metadata would be lost on restart (set allowVolatile to accept that)',
          );
        }
      }
    } catch (e) {
      redis.disconnect();
      throw e;
    }
    return new RedisMetadataStore(redis);
  }

  async createKey(record: NewKeyRecord): Promise<KeyRecord> {
    checkNewRecord(record);
    const { keyId, ownerUin, region } = record;
    const args: Array<string | number | Buffer> = [keyId, record.alias, toDoc(record), record.createTime, ownerUin, region];
    for (const v of record.versions) args.push(v.version, Buffer.concat([u64(v.createTime), v.material]));
    const r = await this.redis.eval(CREATE, 4, keyName(keyId), verName(keyId), aliasName(ownerUin, region), idxName(ownerUin, region), ...args);
    if (r === 'ALIAS') throw new AliasExistsError(ownerUin, region, record.alias);
    if (r === 'EXISTS') throw new ConflictError(keyId, 'key id already exists');
    return { ...record, revision: 1 };
  }

  async getKey(ownerUin: string, keyId: string): Promise<KeyRecord | undefined> {
    const res = await this.redis.multi().hgetall(keyName(keyId)).hgetallBuffer(verName(keyId)).exec();
    if (res === null) return undefined;
    const [[e1, h], [e2, vers]] = res;
    if (e1) throw e1;
    if (e2) throw e2;
    const hash = h as Record<string, string>;
    if (hash.doc === undefined || hash.owner !== ownerUin) return undefined;
    return toRecord(hash, vers as Record<string, Buffer>);
  }

  async updateKey(ownerUin: string, keyId: string, expectedRevision: number, patch: KeyPatch): Promise<KeyRecord> {
    const current = await this.getKey(ownerUin, keyId);
    if (current === undefined) throw new KeyNotFoundError(keyId);
    if (current.revision !== expectedRevision) {
      throw new ConflictError(keyId, `expected revision ${expectedRevision}, found ${current.revision}`);
    }
    const next = applyPatch(current, patch);
    const r = await this.redis.eval(UPDATE, 2, keyName(keyId), aliasName(ownerUin, current.region),
      keyId, String(expectedRevision), next.alias, toDoc(next));
    if (r === 'NOTFOUND') throw new KeyNotFoundError(keyId);
    if (r === 'CONFLICT') throw new ConflictError(keyId, `revision ${expectedRevision} is gone`);
    if (r === 'ALIAS') throw new AliasExistsError(ownerUin, current.region, next.alias);
    return next;
  }

  async addVersion(ownerUin: string, keyId: string, version: KeyVersion): Promise<KeyRecord> {
    checkVersion(version);
    const current = await this.getKey(ownerUin, keyId);
    if (current === undefined) throw new KeyNotFoundError(keyId);
    // the version's create time travels inside the stored value: 8-byte big-endian prefix
    const value = Buffer.concat([u64(version.createTime), version.material]);
    const r = await this.redis.eval(ADD_VERSION, 2, keyName(keyId), verName(keyId), version.version, value);
    if (r === 'NOTFOUND') throw new KeyNotFoundError(keyId);
    if (r === 'DUP') throw new ConflictError(keyId, `version ${version.version} already exists`);
    const after = await this.getKey(ownerUin, keyId);
    if (after === undefined) throw new KeyNotFoundError(keyId);
    return after;
  }

  async deleteKey(ownerUin: string, keyId: string): Promise<boolean> {
    const current = await this.getKey(ownerUin, keyId);
    if (current === undefined) return false;
    const r = await this.redis.eval(DELETE, 4, keyName(keyId), verName(keyId),
      aliasName(ownerUin, current.region), idxName(ownerUin, current.region), keyId);
    return r === 1;
  }

  async listKeys(q: ListKeysQuery): Promise<ListKeysResult> {
    checkQuery(q);
    const idx = idxName(q.ownerUin, q.region);
    const filtered = q.keyState !== undefined || q.origin !== undefined || q.keyUsage !== undefined ||
      q.hsmClusterId !== undefined || (q.searchAlias ?? '') !== '' || (q.tagFilters ?? []).length > 0;
    if (!filtered) {
      // Unfiltered pages come straight from the index: cost is the page, not the tenant's key count.
      const [total, ids] = await Promise.all([
        this.redis.zcard(idx),
        q.order === 'asc'
          ? this.redis.zrange(idx, String(q.offset), String(q.offset + q.limit - 1))
          : this.redis.zrevrange(idx, String(q.offset), String(q.offset + q.limit - 1)),
      ]);
      return { total, keys: await this.load(q.ownerUin, ids) };
    }
    // Filtered: scan this tenant's own index (never other tenants'), filter on the documents.
    const ids = q.order === 'asc' ? await this.redis.zrange(idx, '0', '-1') : await this.redis.zrevrange(idx, '0', '-1');
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hget(keyName(id), 'doc');
    const docs = (await pipe.exec()) ?? [];
    const matching: string[] = [];
    docs.forEach(([err, raw], i) => {
      if (err || typeof raw !== 'string') return;
      if (matches(JSON.parse(raw) as Doc, q)) matching.push(ids[i]);
    });
    return { total: matching.length, keys: await this.load(q.ownerUin, matching.slice(q.offset, q.offset + q.limit)) };
  }

  async close(): Promise<void> {
    if (this.redis.status !== 'end') await this.redis.quit().catch(() => undefined);
  }

  private async load(ownerUin: string, ids: string[]): Promise<KeyRecord[]> {
    const out: KeyRecord[] = [];
    for (const id of ids) {
      const r = await this.getKey(ownerUin, id);
      if (r !== undefined) out.push(r);
    }
    return out;
  }
}

function matches(d: Doc, q: ListKeysQuery): boolean {
  if (q.keyState !== undefined && d.keyState !== q.keyState) return false;
  if (q.origin !== undefined && d.origin !== q.origin) return false;
  if (q.keyUsage !== undefined && d.keyUsage !== q.keyUsage) return false;
  if (q.hsmClusterId !== undefined && d.hsmClusterId !== q.hsmClusterId) return false;
  const s = q.searchAlias ?? '';
  if (s !== '' && !d.alias.includes(s) && !d.keyId.includes(s)) return false;
  for (const f of q.tagFilters ?? []) {
    if (!Object.prototype.hasOwnProperty.call(d.tags, f.key)) return false;
    const values = f.values ?? [];
    if (values.length > 0 && !values.includes(d.tags[f.key])) return false;
  }
  return true;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(n));
  return b;
}

function toDoc(r: NewKeyRecord | KeyRecord): string {
  const { versions: _versions, ...rest } = r;
  const { revision: _revision, ...doc } = rest as KeyRecord;
  return JSON.stringify(doc);
}

function toRecord(hash: Record<string, string>, vers: Record<string, Buffer>): KeyRecord {
  const doc = JSON.parse(hash.doc) as Doc;
  const versions: KeyVersion[] = Object.entries(vers)
    .map(([n, value]) => ({ version: Number(n), createTime: Number(value.readBigInt64BE(0)), material: value.subarray(8) }))
    .sort((a, b) => a.version - b.version);
  return { ...doc, alias: hash.alias, revision: Number(hash.rev), versions };
}
