/**
 * One conformance suite for every MetadataStore backend. A backend is a factory that makes a fresh
 * backing (temp file, server) and opens any number of stores on it, so concurrency is tested across
 * handles, as between KMS nodes.
 */
import { randomUUID } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  AliasExistsError, ConflictError, KeyNotFoundError, KeyRecord, MetadataStore, NewKeyRecord, StoreInputError,
} from '../../src/store/store';
import { SqliteMetadataStore } from '../../src/store/sqlite-store';
import { RedisMetadataStore } from '../../src/store/redis-store';
import { StoreConfigError } from '../../src/store/store';
import { startRedis } from '../support/redis';

export interface StoreBackend {
  name: string;
  /** Makes a fresh, empty backing and returns a way to open stores on it and to remove it. */
  setUp(): Promise<{ open(): Promise<MetadataStore>; tearDown(): Promise<void> }>;
}

const sqliteBackend: StoreBackend = {
  name: 'sqlite',
  async setUp() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-store-'));
    const file = path.join(dir, 'kms.db');
    return {
      open: async () => new SqliteMetadataStore(file),
      tearDown: async () => fs.rmSync(dir, { recursive: true, force: true }),
    };
  },
};

const redisBackend: StoreBackend = {
  name: 'redis',
  async setUp() {
    const server = await startRedis({ persistent: true });
    return {
      open: async () => RedisMetadataStore.open({ port: server.port }),
      tearDown: async () => server.stop(),
    };
  },
};

const BACKENDS: StoreBackend[] = [sqliteBackend, redisBackend];

let clock = 1_700_000_000;
function newKey(over: Partial<NewKeyRecord> = {}): NewKeyRecord {
  const keyId = over.keyId ?? randomUUID();
  return {
    keyId,
    alias: `alias-${keyId.slice(0, 8)}`,
    description: 'test key',
    keyUsage: 'ENCRYPT_DECRYPT',
    origin: 'TENCENT_KMS',
    keyState: 'Enabled',
    creatorUin: '100',
    ownerUin: '100',
    owner: 'user',
    region: 'ap-guangzhou',
    hsmClusterId: 'default',
    tags: {},
    rotation: { enabled: false, rotateDays: 365 },
    createTime: clock++,
    versions: [{ version: 1, material: Buffer.from(`material-${keyId}-1`), createTime: clock }],
    ...over,
  };
}

function stripRevision(r: KeyRecord): NewKeyRecord {
  const { revision: _revision, ...rest } = r;
  return rest;
}

describe.each(BACKENDS)('MetadataStore conformance: $name', (backend) => {
  let backing: { open(): Promise<MetadataStore>; tearDown(): Promise<void> };
  let store: MetadataStore;
  const extra: MetadataStore[] = [];

  beforeEach(async () => {
    backing = await backend.setUp();
    store = await backing.open();
  });
  afterEach(async () => {
    for (const s of extra.splice(0)) await s.close();
    await store.close();
    await backing.tearDown();
  });
  async function openAnother(): Promise<MetadataStore> {
    const s = await backing.open();
    extra.push(s);
    return s;
  }

  test('create then get returns the same record at revision 1, material bytes intact', async () => {
    const k = newKey({
      tags: { env: 'prod', team: 'a' },
      rotation: { enabled: true, rotateDays: 30, nextRotateTime: 1_800_000_000 },
      validTo: 1_900_000_000,
      origin: 'EXTERNAL',
      keyState: 'PendingImport',
    });
    const created = await store.createKey(k);
    expect(created.revision).toBe(1);
    const got = await store.getKey(k.ownerUin, k.keyId);
    expect(got).toBeDefined();
    expect(got!.revision).toBe(1);
    expect(stripRevision(got!)).toEqual(k);
    expect(Buffer.isBuffer(got!.versions[0].material)).toBe(true);
    expect(got!.versions[0].material.equals(k.versions[0].material)).toBe(true);
    expect(await store.getKey(k.ownerUin, randomUUID())).toBeUndefined();
  });

  test('a second handle on the same backing sees the key (persisted, not cached)', async () => {
    const k = newKey();
    await store.createKey(k);
    const other = await openAnother();
    expect((await other.getKey(k.ownerUin, k.keyId))?.alias).toBe(k.alias);
  });

  test('alias is unique per (tenant, region); other tenant or region may reuse it', async () => {
    await store.createKey(newKey({ alias: 'shared' }));
    await expect(store.createKey(newKey({ alias: 'shared' }))).rejects.toBeInstanceOf(AliasExistsError);
    await expect(store.createKey(newKey({ alias: 'shared', ownerUin: '200' }))).resolves.toBeDefined();
    await expect(store.createKey(newKey({ alias: 'shared', region: 'ap-shanghai' }))).resolves.toBeDefined();
  });

  test('concurrent creates with one alias across handles: exactly one wins, nothing half-written', async () => {
    const stores = [store, await openAnother(), await openAnother()];
    const attempts = Array.from({ length: 30 }, () => newKey({ alias: 'race' }))
      .map((k, i) => ({ k, p: stores[i % stores.length].createKey(k) }));
    const results = await Promise.allSettled(attempts.map((a) => a.p));
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(29);
    for (const r of lost) expect(r.reason).toBeInstanceOf(AliasExistsError);
    const list = await store.listKeys({ ownerUin: '100', region: 'ap-guangzhou', offset: 0, limit: 200, order: 'asc' });
    expect(list.total).toBe(1);
    for (const a of attempts) {
      const got = await store.getKey('100', a.k.keyId);
      if (got !== undefined) expect(got.versions).toHaveLength(1);
    }
  });

  test('tenant isolation: another tenant cannot get, list, update, version or delete a key', async () => {
    const mine = newKey({ ownerUin: '100', alias: 'mine' });
    await store.createKey(mine);
    await store.createKey(newKey({ ownerUin: '200', alias: 'theirs' }));
    expect(await store.getKey('200', mine.keyId)).toBeUndefined();
    const theirs = await store.listKeys({ ownerUin: '200', region: 'ap-guangzhou', offset: 0, limit: 200, order: 'asc' });
    expect(theirs.total).toBe(1);
    expect(theirs.keys.map((k) => k.alias)).toEqual(['theirs']);
    const search = await store.listKeys({ ownerUin: '200', region: 'ap-guangzhou', offset: 0, limit: 200, order: 'asc', searchAlias: mine.keyId });
    expect(search.total).toBe(0);
    await expect(store.updateKey('200', mine.keyId, 1, { description: 'x' })).rejects.toBeInstanceOf(KeyNotFoundError);
    await expect(store.addVersion('200', mine.keyId, { version: 2, material: Buffer.from('m'), createTime: 1 }))
      .rejects.toBeInstanceOf(KeyNotFoundError);
    expect(await store.deleteKey('200', mine.keyId)).toBe(false);
    expect((await store.getKey('100', mine.keyId))?.revision).toBe(1);
  });

  test('optimistic concurrency: a stale revision gets ConflictError and changes nothing', async () => {
    const k = newKey();
    await store.createKey(k);
    const other = await openAnother();
    const a = await store.updateKey(k.ownerUin, k.keyId, 1, { keyState: 'Disabled' });
    expect(a.revision).toBe(2);
    expect(a.keyState).toBe('Disabled');
    await expect(other.updateKey(k.ownerUin, k.keyId, 1, { keyState: 'Archived' })).rejects.toBeInstanceOf(ConflictError);
    const got = await other.getKey(k.ownerUin, k.keyId);
    expect(got?.keyState).toBe('Disabled');
    expect(got?.revision).toBe(2);
    await expect(store.updateKey(k.ownerUin, randomUUID(), 1, {})).rejects.toBeInstanceOf(KeyNotFoundError);
  });

  test('concurrent updates on one revision across handles: exactly one wins', async () => {
    const k = newKey();
    await store.createKey(k);
    const stores = [store, await openAnother(), await openAnother()];
    const results = await Promise.allSettled(
      stores.map((s, i) => s.updateKey(k.ownerUin, k.keyId, 1, { description: `writer ${i}` })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
    expect((await store.getKey(k.ownerUin, k.keyId))?.revision).toBe(2);
  });

  test('updateKey applies and clears fields, replaces tags, and keeps alias uniqueness', async () => {
    const k = newKey({ tags: { a: '1' }, deletionDate: 123 });
    await store.createKey(k);
    await store.createKey(newKey({ alias: 'taken' }));
    const u = await store.updateKey(k.ownerUin, k.keyId, 1, {
      description: 'new', tags: { b: '2' }, deletionDate: null, validTo: 999,
      rotation: { enabled: true, rotateDays: 90, lastRotateTime: 5, nextRotateTime: 6 },
    });
    const got = await store.getKey(k.ownerUin, k.keyId);
    expect(got).toEqual(u);
    expect(got?.description).toBe('new');
    expect(got?.tags).toEqual({ b: '2' });
    expect(got?.deletionDate).toBeUndefined();
    expect(got?.validTo).toBe(999);
    expect(got?.rotation).toEqual({ enabled: true, rotateDays: 90, lastRotateTime: 5, nextRotateTime: 6 });
    await expect(store.updateKey(k.ownerUin, k.keyId, 2, { alias: 'taken' })).rejects.toBeInstanceOf(AliasExistsError);
    expect((await store.getKey(k.ownerUin, k.keyId))?.alias).toBe(k.alias);
    const renamed = await store.updateKey(k.ownerUin, k.keyId, 2, { alias: 'renamed' });
    expect(renamed.alias).toBe('renamed');
    // the old alias is free again
    await expect(store.createKey(newKey({ alias: k.alias }))).resolves.toBeDefined();
  });

  test('addVersion appends atomically, bumps the revision, refuses a duplicate version', async () => {
    const k = newKey();
    await store.createKey(k);
    const v2 = { version: 2, material: Buffer.from([0, 1, 2, 255]), createTime: 1_700_100_000 };
    const r = await store.addVersion(k.ownerUin, k.keyId, v2);
    expect(r.revision).toBe(2);
    const got = await store.getKey(k.ownerUin, k.keyId);
    expect(got?.versions.map((v) => v.version)).toEqual([1, 2]);
    expect(got?.versions[1].material.equals(v2.material)).toBe(true);
    expect(got?.versions[1].createTime).toBe(v2.createTime);
    await expect(store.addVersion(k.ownerUin, k.keyId, { ...v2, material: Buffer.from('other') })).rejects.toBeInstanceOf(ConflictError);
    const after = await store.getKey(k.ownerUin, k.keyId);
    expect(after?.revision).toBe(2);
    expect(after?.versions[1].material.equals(v2.material)).toBe(true);
    // a writer holding revision 1 now conflicts
    await expect(store.updateKey(k.ownerUin, k.keyId, 1, { description: 'stale' })).rejects.toBeInstanceOf(ConflictError);
  });

  test('deleteKey removes the record and every version; the alias becomes free', async () => {
    const k = newKey({ tags: { env: 'prod' } });
    await store.createKey(k);
    await store.addVersion(k.ownerUin, k.keyId, { version: 2, material: Buffer.from('v2'), createTime: 1 });
    expect(await store.deleteKey(k.ownerUin, k.keyId)).toBe(true);
    expect(await store.getKey(k.ownerUin, k.keyId)).toBeUndefined();
    expect(await store.deleteKey(k.ownerUin, k.keyId)).toBe(false);
    const tagged = await store.listKeys({ ownerUin: k.ownerUin, region: k.region, offset: 0, limit: 10, order: 'asc', tagFilters: [{ key: 'env' }] });
    expect(tagged.total).toBe(0);
    // re-creating the same id starts with only the new versions: nothing of the old material survives
    const again = await store.createKey({ ...k, versions: [{ version: 1, material: Buffer.from('fresh'), createTime: 2 }] });
    expect(again.versions).toHaveLength(1);
    const got = await store.getKey(k.ownerUin, k.keyId);
    expect(got?.versions.map((v) => v.material.toString())).toEqual(['fresh']);
  });

  describe('listing', () => {
    const base = { ownerUin: '100', region: 'ap-guangzhou', offset: 0, limit: 200, order: 'asc' as const };
    let keys: NewKeyRecord[];
    beforeEach(async () => {
      keys = [];
      for (let i = 0; i < 25; i++) {
        keys.push(newKey({
          alias: `app-${String(i).padStart(2, '0')}${i % 5 === 0 ? '_db' : ''}`,
          keyState: i % 3 === 0 ? 'Disabled' : 'Enabled',
          origin: i % 4 === 0 ? 'EXTERNAL' : 'TENCENT_KMS',
          keyUsage: i % 2 === 0 ? 'ENCRYPT_DECRYPT' : 'ASYMMETRIC_SIGN_VERIFY_ECC',
          hsmClusterId: i < 20 ? 'default' : 'dedicated-1',
          tags: i % 2 === 0 ? { env: i % 4 === 0 ? 'prod' : 'dev', team: 'a' } : { team: 'b' },
        }));
      }
      for (const k of keys) await store.createKey(k);
      // noise: other tenant and other region
      await store.createKey(newKey({ ownerUin: '200', alias: 'app-other-tenant', tags: { env: 'prod' } }));
      await store.createKey(newKey({ region: 'ap-shanghai', alias: 'app-other-region', tags: { env: 'prod' } }));
    });
    const ids = (r: { keys: KeyRecord[] }): string[] => r.keys.map((k) => k.keyId);

    test('paging: offset/limit/order and total', async () => {
      const all = await store.listKeys(base);
      expect(all.total).toBe(25);
      expect(ids(all)).toEqual(keys.map((k) => k.keyId));
      const page = await store.listKeys({ ...base, offset: 10, limit: 10 });
      expect(page.total).toBe(25);
      expect(ids(page)).toEqual(keys.slice(10, 20).map((k) => k.keyId));
      const last = await store.listKeys({ ...base, offset: 20, limit: 10 });
      expect(ids(last)).toEqual(keys.slice(20).map((k) => k.keyId));
      const beyond = await store.listKeys({ ...base, offset: 100, limit: 10 });
      expect(beyond).toEqual({ total: 25, keys: [] });
      const desc = await store.listKeys({ ...base, order: 'desc', limit: 5 });
      expect(ids(desc)).toEqual(keys.slice(-5).reverse().map((k) => k.keyId));
      expect(desc.keys[0].versions).toHaveLength(1);
    });

    test('filters: state, origin, usage, cluster, search on alias or id, combined', async () => {
      const by = async (f: object): Promise<string[]> => ids(await store.listKeys({ ...base, ...f }));
      const expectIds = (pred: (k: NewKeyRecord, i: number) => boolean): string[] => keys.filter(pred).map((k) => k.keyId);
      expect(await by({ keyState: 'Disabled' })).toEqual(expectIds((k) => k.keyState === 'Disabled'));
      expect(await by({ keyState: 'PendingDelete' })).toEqual([]);
      expect(await by({ origin: 'EXTERNAL' })).toEqual(expectIds((k) => k.origin === 'EXTERNAL'));
      expect(await by({ keyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC' })).toEqual(expectIds((k) => k.keyUsage === 'ASYMMETRIC_SIGN_VERIFY_ECC'));
      expect(await by({ hsmClusterId: 'dedicated-1' })).toEqual(expectIds((_k, i) => i >= 20));
      expect(await by({ searchAlias: '_db' })).toEqual(expectIds((_k, i) => i % 5 === 0));
      expect(await by({ searchAlias: keys[7].keyId.slice(4, 20) })).toEqual([keys[7].keyId]);
      expect(await by({ searchAlias: 'app-' })).toHaveLength(25);
      const combined = await store.listKeys({ ...base, keyState: 'Enabled', origin: 'TENCENT_KMS', searchAlias: '_db' });
      expect(ids(combined)).toEqual(expectIds((k, i) => i % 5 === 0 && k.keyState === 'Enabled' && k.origin === 'TENCENT_KMS'));
      expect(combined.total).toBe(combined.keys.length);
    });

    test('tag filters: key only, key with values, several filters AND-ed, paging total', async () => {
      const by = async (tagFilters: object[], extra: object = {}) => store.listKeys({ ...base, ...extra, tagFilters } as typeof base);
      expect(ids(await by([{ key: 'env' }]))).toEqual(keys.filter((k) => 'env' in k.tags).map((k) => k.keyId));
      expect(ids(await by([{ key: 'env', values: ['prod'] }]))).toEqual(keys.filter((k) => k.tags.env === 'prod').map((k) => k.keyId));
      expect(ids(await by([{ key: 'env', values: ['prod', 'dev'] }]))).toHaveLength(13);
      expect(ids(await by([{ key: 'team', values: ['b'] }, { key: 'env' }]))).toEqual([]);
      expect(ids(await by([{ key: 'team', values: ['a'] }, { key: 'env', values: ['dev'] }])))
        .toEqual(keys.filter((k) => k.tags.env === 'dev').map((k) => k.keyId));
      expect(ids(await by([{ key: 'nope' }]))).toEqual([]);
      const paged = await by([{ key: 'team', values: ['b'] }], { offset: 2, limit: 3, order: 'desc' });
      const teamB = keys.filter((k) => k.tags.team === 'b').map((k) => k.keyId).reverse();
      expect(paged.total).toBe(teamB.length);
      expect(ids(paged)).toEqual(teamB.slice(2, 5));
    });

    test('listing follows updates (state, tags, alias)', async () => {
      const k = keys[1];
      await store.updateKey(k.ownerUin, k.keyId, 1, { keyState: 'PendingDelete', tags: { env: 'qa' }, alias: 'zzz-renamed' });
      expect(ids(await store.listKeys({ ...base, keyState: 'PendingDelete' }))).toEqual([k.keyId]);
      expect(ids(await store.listKeys({ ...base, tagFilters: [{ key: 'env', values: ['qa'] }] }))).toEqual([k.keyId]);
      expect(ids(await store.listKeys({ ...base, searchAlias: 'zzz' }))).toEqual([k.keyId]);
      expect(ids(await store.listKeys({ ...base, tagFilters: [{ key: 'team', values: ['b'] }] }))).not.toContain(k.keyId);
    });
  });

  test('bad input is refused with StoreInputError', async () => {
    const q = { ownerUin: '100', region: 'ap-guangzhou', offset: 0, limit: 20, order: 'asc' as const };
    await expect(store.listKeys({ ...q, limit: 201 })).rejects.toBeInstanceOf(StoreInputError);
    await expect(store.listKeys({ ...q, limit: 0 })).rejects.toBeInstanceOf(StoreInputError);
    await expect(store.listKeys({ ...q, limit: 2.5 })).rejects.toBeInstanceOf(StoreInputError);
    await expect(store.listKeys({ ...q, offset: -1 })).rejects.toBeInstanceOf(StoreInputError);
    await expect(store.listKeys({ ...q, ownerUin: '' })).rejects.toBeInstanceOf(StoreInputError);
    await expect(store.listKeys({ ...q, limit: 200 })).resolves.toEqual({ total: 0, keys: [] });
    await expect(store.createKey(newKey({ keyId: 'not-a-uuid' }))).rejects.toBeInstanceOf(StoreInputError);
    await expect(store.createKey(newKey({ alias: '' }))).rejects.toBeInstanceOf(StoreInputError);
    const dup = newKey();
    await expect(store.createKey({ ...dup, versions: [...dup.versions, ...dup.versions] })).rejects.toBeInstanceOf(StoreInputError);
    await store.createKey(dup);
    await expect(store.addVersion(dup.ownerUin, dup.keyId, { version: 0, material: Buffer.from('x'), createTime: 1 }))
      .rejects.toBeInstanceOf(StoreInputError);
    await expect(store.addVersion(dup.ownerUin, dup.keyId, { version: 2, material: Buffer.alloc(0), createTime: 1 }))
      .rejects.toBeInstanceOf(StoreInputError);
    await expect(store.createKey(dup)).rejects.toBeInstanceOf(AliasExistsError);
  });
});

describe('SqliteMetadataStore specifics', () => {
  test('the list query is served by the tenant index, not a table scan', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-store-'));
    const s = new SqliteMetadataStore(path.join(dir, 'kms.db'));
    try {
      const plan = s.explainList('100', 'ap-guangzhou').join('\n');
      expect(plan).toMatch(/USING (COVERING )?INDEX keys_list/);
      expect(plan).not.toMatch(/SCAN keys(?! USING)/);
    } finally {
      await s.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('RedisMetadataStore specifics', () => {
  test('refuses a server with neither AOF nor RDB unless allowVolatile', async () => {
    const server = await startRedis({ persistent: false });
    try {
      await expect(RedisMetadataStore.open({ port: server.port })).rejects.toBeInstanceOf(StoreConfigError);
      const s = await RedisMetadataStore.open({ port: server.port, allowVolatile: true });
      await s.close();
    } finally {
      await server.stop();
    }
  });
});
