/**
 * The MetadataStore conformance suite as an exerciser: a backend's test calls `exerciseStore` with a
 * `StoreBackend`, a factory that makes a fresh backing (temp file, server) and opens any number of
 * stores on it, so concurrency is tested across handles, as between KMS nodes. It also checks that
 * what the backend indexes agrees with the pure record facts (src/store/record-facts.ts).
 */
import { randomUUID } from 'crypto';
import { KEY_STATES, KeyState, TableState } from '../../src/common/key-states';
import { DUE_KINDS, indexFacts } from '../../src/store/record-facts';
import { exerciseDataKeys } from './data-key-exerciser';
import {
  AliasExistsError,
  ClusterStateConflictError,
  ConflictError,
  KeyChange,
  KeyRecord,
  KeyNotFoundError,
  ListKeysQuery,
  MetadataStore,
  NewKeyRecord,
  QuotaExceededError,
  StoreInputError,
} from '../../src/store/store';

/** The store is tested below the state machine: here any state may be written over any other. */
export const stored = (s: KeyState): TableState => s as TableState;

export interface Backing {
  open(): Promise<MetadataStore>;
  /**
   * Damages the derived data of key `k` behind the store's back (raw client): it drops out of its
   * state, tag and due indexes, its alias is no longer held, it shows up under state Archived, and an
   * index entry, a version and a usage count of a key that does not exist appear.
   */
  corrupt(k: NewKeyRecord): Promise<void>;
  tearDown(): Promise<void>;
}

export interface StoreBackend {
  name: string;
  /** Makes a fresh, empty backing and returns a way to open stores on it and to remove it. */
  setUp(): Promise<Backing>;
}

let clock = 1_700_000_000;
export function newKey(over: Partial<NewKeyRecord> = {}): NewKeyRecord {
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

export function stripRevision(r: KeyRecord): NewKeyRecord {
  const { revision: _revision, ...rest } = r;
  return rest;
}

/** Records what a store's watcher hears; `until` waits (5 s at most) for an event matching `pred`. */
export function record(store: MetadataStore): { events: KeyChange[]; until(pred: (c: KeyChange) => boolean): Promise<void>; stop(): void } {
  const events: KeyChange[] = [];
  const waiters: Array<{ pred: (c: KeyChange) => boolean; resolve: () => void }> = [];
  const stop = store.watch((c) => {
    events.push(c);
    for (const w of waiters.splice(0)) {
      if (w.pred(c)) w.resolve();
      else waiters.push(w);
    }
  });
  const until = (pred: (c: KeyChange) => boolean): Promise<void> => {
    if (events.some(pred)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no such change within 5 s; heard ${JSON.stringify(events)}`)), 5000);
      waiters.push({
        pred,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  };
  return { events, until, stop };
}

export const anything = (c: KeyChange): boolean => c.keyId === undefined;
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function exerciseStore(backend: StoreBackend): void {
  describe(`MetadataStore conformance: ${backend.name}`, () => {
    let backing: Backing;
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

    describe('hosted data keys', () => exerciseDataKeys(() => store, openAnother));

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

    test('ping answers on a reachable backing', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
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
      await expect(store.createKey(newKey({ alias: 'shared', ownerUin: '200' }))).resolves.not.toThrow();
      await expect(store.createKey(newKey({ alias: 'shared', region: 'ap-shanghai' }))).resolves.not.toThrow();
    });

    test('concurrent creates with one alias across handles: exactly one wins, nothing half-written', async () => {
      const stores = [store, await openAnother(), await openAnother()];
      const attempts = Array.from({ length: 30 }, () => newKey({ alias: 'race' })).map((k, i) => ({ k, p: stores[i % stores.length].createKey(k) }));
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
      await expect(store.addVersion('200', mine.keyId, { version: 2, material: Buffer.from('m'), createTime: 1 })).rejects.toBeInstanceOf(KeyNotFoundError);
      expect(await store.deleteKey('200', mine.keyId, 1)).toBe(false);
      expect((await store.getKey('100', mine.keyId))?.revision).toBe(1);
    });

    test('optimistic concurrency: a stale revision gets ConflictError and changes nothing', async () => {
      const k = newKey();
      await store.createKey(k);
      const other = await openAnother();
      const a = await store.updateKey(k.ownerUin, k.keyId, 1, { keyState: stored('Disabled') });
      expect(a.revision).toBe(2);
      expect(a.keyState).toBe('Disabled');
      await expect(other.updateKey(k.ownerUin, k.keyId, 1, { keyState: stored('Archived') })).rejects.toBeInstanceOf(ConflictError);
      const got = await other.getKey(k.ownerUin, k.keyId);
      expect(got?.keyState).toBe('Disabled');
      expect(got?.revision).toBe(2);
      await expect(store.updateKey(k.ownerUin, randomUUID(), 1, {})).rejects.toBeInstanceOf(KeyNotFoundError);
    });

    test('concurrent updates on one revision across handles: exactly one wins', async () => {
      const k = newKey();
      await store.createKey(k);
      const stores = [store, await openAnother(), await openAnother()];
      const results = await Promise.allSettled(stores.map((s, i) => s.updateKey(k.ownerUin, k.keyId, 1, { description: `writer ${i}` })));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
      expect((await store.getKey(k.ownerUin, k.keyId))?.revision).toBe(2);
    });

    test('updateKey applies and clears fields, replaces tags, and keeps alias uniqueness', async () => {
      const k = newKey({ tags: { a: '1' }, deletionDate: 123 });
      await store.createKey(k);
      await store.createKey(newKey({ alias: 'taken' }));
      const u = await store.updateKey(k.ownerUin, k.keyId, 1, {
        description: 'new',
        tags: { b: '2' },
        deletionDate: null,
        validTo: 999,
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
      await expect(store.createKey(newKey({ alias: k.alias }))).resolves.not.toThrow();
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
      expect(await store.deleteKey(k.ownerUin, k.keyId, 1_700_500_000)).toBe(true);
      expect(await store.getKey(k.ownerUin, k.keyId)).toBeUndefined();
      expect(await store.deleteKey(k.ownerUin, k.keyId, 1_700_500_001)).toBe(false);
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
          keys.push(
            newKey({
              alias: `app-${String(i).padStart(2, '0')}${i % 5 === 0 ? '_db' : ''}`,
              keyState: i % 3 === 0 ? 'Disabled' : 'Enabled',
              origin: i % 4 === 0 ? 'EXTERNAL' : 'TENCENT_KMS',
              keyUsage: i % 2 === 0 ? 'ENCRYPT_DECRYPT' : 'ASYMMETRIC_SIGN_VERIFY_ECC',
              hsmClusterId: i < 20 ? 'default' : 'dedicated-1',
              tags: i % 2 === 0 ? { env: i % 4 === 0 ? 'prod' : 'dev', team: 'a' } : { team: 'b' },
            }),
          );
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
        expect(ids(desc)).toEqual(
          keys
            .slice(-5)
            .reverse()
            .map((k) => k.keyId),
        );
        expect(desc.keys[0].versions).toHaveLength(1);
      });

      test('filters: state, origin, usage, cluster, search on alias or id, combined', async () => {
        const by = async (f: object): Promise<string[]> => ids(await store.listKeys({ ...base, ...f }));
        const expectIds = (pred: (k: NewKeyRecord, i: number) => boolean): string[] => keys.filter(pred).map((k) => k.keyId);
        expect(await by({ keyStates: ['Disabled'] })).toEqual(expectIds((k) => k.keyState === 'Disabled'));
        expect(await by({ keyStates: ['PendingDelete'] })).toEqual([]);
        expect(await by({ origin: 'EXTERNAL' })).toEqual(expectIds((k) => k.origin === 'EXTERNAL'));
        expect(await by({ keyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC' })).toEqual(expectIds((k) => k.keyUsage === 'ASYMMETRIC_SIGN_VERIFY_ECC'));
        expect(await by({ hsmClusterId: 'dedicated-1' })).toEqual(expectIds((_k, i) => i >= 20));
        expect(await by({ searchAlias: '_db' })).toEqual(expectIds((_k, i) => i % 5 === 0));
        expect(await by({ searchAlias: keys[7].keyId.slice(4, 20) })).toEqual([keys[7].keyId]);
        expect(await by({ searchAlias: 'app-' })).toHaveLength(25);
        const combined = await store.listKeys({ ...base, keyStates: ['Enabled'], origin: 'TENCENT_KMS', searchAlias: '_db' });
        expect(ids(combined)).toEqual(expectIds((k, i) => i % 5 === 0 && k.keyState === 'Enabled' && k.origin === 'TENCENT_KMS'));
        expect(combined.total).toBe(combined.keys.length);
      });

      test('tag filters: key only, key with values, several filters AND-ed, paging total', async () => {
        const by = async (tagFilters: object[], extra: object = {}) => store.listKeys({ ...base, ...extra, tagFilters } as ListKeysQuery);
        expect(ids(await by([{ key: 'env' }]))).toEqual(keys.filter((k) => 'env' in k.tags).map((k) => k.keyId));
        expect(ids(await by([{ key: 'env', values: ['prod'] }]))).toEqual(keys.filter((k) => k.tags.env === 'prod').map((k) => k.keyId));
        expect(ids(await by([{ key: 'env', values: ['prod', 'dev'] }]))).toHaveLength(13);
        expect(ids(await by([{ key: 'team', values: ['b'] }, { key: 'env' }]))).toEqual([]);
        expect(
          ids(
            await by([
              { key: 'team', values: ['a'] },
              { key: 'env', values: ['dev'] },
            ]),
          ),
        ).toEqual(keys.filter((k) => k.tags.env === 'dev').map((k) => k.keyId));
        expect(ids(await by([{ key: 'nope' }]))).toEqual([]);
        const paged = await by([{ key: 'team', values: ['b'] }], { offset: 2, limit: 3, order: 'desc' });
        const teamB = keys
          .filter((k) => k.tags.team === 'b')
          .map((k) => k.keyId)
          .reverse();
        expect(paged.total).toBe(teamB.length);
        expect(ids(paged)).toEqual(teamB.slice(2, 5));
      });

      test('any of several states, role, and every filter combined with paging', async () => {
        const by = async (f: object): Promise<string[]> => ids(await store.listKeys({ ...base, ...f }));
        const product = newKey({ owner: 'cos', alias: 'app-cos', keyState: 'Disabled', tags: { team: 'a' } });
        await store.createKey(product);
        await store.updateKey(keys[3].ownerUin, keys[3].keyId, 1, { keyState: stored('PendingDelete'), deletionDate: 9 });
        const states = (k: NewKeyRecord): string => (k === keys[3] ? 'PendingDelete' : k.keyState);
        expect(await by({ keyStates: ['PendingDelete', 'Disabled'] })).toEqual(
          [...keys.filter((k) => ['PendingDelete', 'Disabled'].includes(states(k))), product].map((k) => k.keyId),
        );
        expect(await by({ keyStates: [] })).toHaveLength(26);
        expect(await by({ role: 'product' })).toEqual([product.keyId]);
        expect(await by({ role: 'user' })).toEqual(keys.map((k) => k.keyId));
        const filters = {
          keyStates: ['Enabled', 'Disabled'],
          role: 'user',
          origin: 'TENCENT_KMS',
          keyUsage: 'ENCRYPT_DECRYPT',
          hsmClusterId: 'default',
          searchAlias: 'app-',
          tagFilters: [{ key: 'team', values: ['a', 'c'] }, { key: 'env' }],
        };
        const want = keys
          .filter(
            (k) =>
              k !== keys[3] &&
              k.origin === 'TENCENT_KMS' &&
              k.keyUsage === 'ENCRYPT_DECRYPT' &&
              k.hsmClusterId === 'default' &&
              k.tags.team === 'a' &&
              'env' in k.tags,
          )
          .map((k) => k.keyId);
        expect(want.length).toBeGreaterThan(3);
        const page = await store.listKeys({ ...base, ...filters, offset: 1, limit: 2, order: 'desc' } as ListKeysQuery);
        expect(page.total).toBe(want.length);
        expect(ids(page)).toEqual([...want].reverse().slice(1, 3));
      });

      test('keys created in the same second are ordered by key id, both ways, on every path', async () => {
        const same = Array.from({ length: 6 }, () => newKey({ createTime: 1_600_000_000, tags: { batch: 'x' } }));
        for (const k of same) await store.createKey(k);
        const sorted = same.map((k) => k.keyId).sort();
        expect(ids(await store.listKeys({ ...base, limit: 6 }))).toEqual(sorted);
        const filters = [{ searchAlias: 'alias-' }, { tagFilters: [{ key: 'batch' }] }, { tagFilters: [{ key: 'batch' }], keyStates: ['Enabled', 'Disabled'] }];
        for (const f of filters) {
          expect(ids(await store.listKeys({ ...base, ...f, limit: 6 } as ListKeysQuery))).toEqual(sorted);
          expect(ids(await store.listKeys({ ...base, ...f, limit: 3, offset: 2, order: 'desc' } as ListKeysQuery))).toEqual([...sorted].reverse().slice(2, 5));
        }
      });

      test('listing follows updates (state, tags, alias)', async () => {
        const k = keys[1];
        await store.updateKey(k.ownerUin, k.keyId, 1, { keyState: stored('PendingDelete'), tags: { env: 'qa' }, alias: 'zzz-renamed' });
        expect(ids(await store.listKeys({ ...base, keyStates: ['PendingDelete'] }))).toEqual([k.keyId]);
        expect(ids(await store.listKeys({ ...base, tagFilters: [{ key: 'env', values: ['qa'] }] }))).toEqual([k.keyId]);
        expect(ids(await store.listKeys({ ...base, searchAlias: 'zzz' }))).toEqual([k.keyId]);
        expect(ids(await store.listKeys({ ...base, tagFilters: [{ key: 'team', values: ['b'] }] }))).not.toContain(k.keyId);
      });
    });

    test('import parameters, check value and cloud bindings persist, change and clear', async () => {
      const importParameters = {
        tokenHash: 'ab'.repeat(32),
        wrappingAlgorithm: 'RSAES_OAEP_SHA_256',
        wrappingKey: Buffer.from([1, 2, 0, 255]),
        validTo: 1_800_000_000,
      };
      const k = newKey({
        origin: 'EXTERNAL',
        keyState: 'PendingImport',
        versions: [],
        importParameters,
        materialCheckValue: 'c0ffee',
        cloudBindings: [{ productId: 'cos', resourceId: 'bucket-1' }],
      });
      await store.createKey(k);
      const other = await openAnother();
      const got = await other.getKey(k.ownerUin, k.keyId);
      expect(stripRevision(got!)).toEqual(k);
      expect(Buffer.isBuffer(got!.importParameters?.wrappingKey)).toBe(true);
      const next = { ...importParameters, tokenHash: 'cd'.repeat(32), wrappingKey: Buffer.from('other key') };
      await store.updateKey(k.ownerUin, k.keyId, 1, { importParameters: next, cloudBindings: [] });
      expect((await other.getKey(k.ownerUin, k.keyId))?.importParameters).toEqual(next);
      expect((await other.getKey(k.ownerUin, k.keyId))?.cloudBindings).toEqual([]);
      const cleared = await store.updateKey(k.ownerUin, k.keyId, 2, { importParameters: null, materialCheckValue: null });
      const after = await other.getKey(k.ownerUin, k.keyId);
      expect(after).toEqual(cleared);
      expect(after?.importParameters).toBeUndefined();
      expect(after?.materialCheckValue).toBeUndefined();
    });

    test('updateKey with versions replaces every version (import, then deletion of imported material)', async () => {
      const k = newKey({ origin: 'EXTERNAL', keyState: 'PendingImport', versions: [] });
      await store.createKey(k);
      const imported = { version: 1, material: Buffer.from('imported'), createTime: 1_700_200_000 };
      await store.updateKey(k.ownerUin, k.keyId, 1, { versions: [imported], keyState: stored('Enabled'), materialCheckValue: 'aa' });
      const other = await openAnother();
      const got = await other.getKey(k.ownerUin, k.keyId);
      expect(got?.versions).toEqual([imported]);
      expect(got?.revision).toBe(2);
      const gone = await store.updateKey(k.ownerUin, k.keyId, 2, { versions: [], keyState: stored('PendingImport') });
      expect(gone.versions).toEqual([]);
      expect((await other.getKey(k.ownerUin, k.keyId))?.versions).toEqual([]);
      expect((await other.getKey(k.ownerUin, k.keyId))?.materialCheckValue).toBe('aa');
      const dup = { version: 1, material: Buffer.from('x'), createTime: 1 };
      await expect(store.updateKey(k.ownerUin, k.keyId, 3, { versions: [dup, dup] })).rejects.toBeInstanceOf(StoreInputError);
      expect((await store.getKey(k.ownerUin, k.keyId))?.revision).toBe(3);
    });

    test('addVersion applies its patch in the same write; a refused version applies nothing', async () => {
      const k = newKey({ rotation: { enabled: true, rotateDays: 30, nextRotateTime: 1_700_000_100 } });
      await store.createKey(k);
      const rotation = { enabled: true, rotateDays: 30, lastRotateTime: 1_700_000_100, nextRotateTime: 1_702_592_100 };
      const v2 = { version: 2, material: Buffer.from('v2'), createTime: 1_700_000_100 };
      const r = await store.addVersion(k.ownerUin, k.keyId, v2, { rotation });
      expect(r.revision).toBe(2);
      expect(r.rotation).toEqual(rotation);
      const got = await (await openAnother()).getKey(k.ownerUin, k.keyId);
      expect(got).toEqual(r);
      await expect(store.addVersion(k.ownerUin, k.keyId, v2, { description: 'must not apply' })).rejects.toBeInstanceOf(ConflictError);
      const after = await store.getKey(k.ownerUin, k.keyId);
      expect(after?.description).toBe(k.description);
      expect(after?.revision).toBe(2);
      await expect(store.addVersion(k.ownerUin, k.keyId, { ...v2, version: 3 }, { alias: 'taken-by-none' })).resolves.not.toThrow();
      expect((await store.getKey(k.ownerUin, k.keyId))?.alias).toBe('taken-by-none');
    });

    test('concurrent addVersion calls across handles: each version number lands once', async () => {
      const k = newKey();
      await store.createKey(k);
      const stores = [store, await openAnother(), await openAnother()];
      const results = await Promise.allSettled(
        Array.from({ length: 9 }, (_, i) =>
          stores[i % 3].addVersion(k.ownerUin, k.keyId, { version: 2 + (i % 4), material: Buffer.from(`m${i}`), createTime: i }),
        ),
      );
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
      const got = await store.getKey(k.ownerUin, k.keyId);
      expect(got?.versions.map((v) => v.version)).toEqual([1, 2, 3, 4, 5]);
      expect(got?.revision).toBe(5);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(4);
    });

    test('deleteKey writes a tombstone, visible only to the tenant; counts and versions are gone', async () => {
      const k = newKey({ alias: 'to-delete', origin: 'EXTERNAL', hsmClusterId: 'dedicated-1', keyUsage: 'ASYMMETRIC_SIGN_VERIFY_RSA_2048' });
      await store.createKey(k);
      await store.addUsage(new Map([[`${k.keyId}#1`, 7]]));
      expect(await store.getTombstone(k.ownerUin, k.keyId)).toBeUndefined();
      expect(await store.deleteKey(k.ownerUin, k.keyId, 1_700_900_000)).toBe(true);
      expect(await (await openAnother()).getTombstone(k.ownerUin, k.keyId)).toEqual({
        keyId: k.keyId,
        ownerUin: k.ownerUin,
        region: k.region,
        alias: 'to-delete',
        keyUsage: k.keyUsage,
        origin: 'EXTERNAL',
        hsmClusterId: 'dedicated-1',
        createTime: k.createTime,
        deletedAt: 1_700_900_000,
      });
      expect(await store.getTombstone('200', k.keyId)).toBeUndefined();
      expect(await store.getTombstone(k.ownerUin, randomUUID())).toBeUndefined();
      expect((await store.addUsage(new Map([[`${k.keyId}#1`, 1]]))).size).toBe(0);
      await store.createKey(k);
      expect(await store.addUsage(new Map([[`${k.keyId}#1`, 1]]))).toEqual(new Map([[`${k.keyId}#1`, 1]]));
    });

    test('quota: only user keys not pending deletion count, checked atomically with the insert', async () => {
      const limits = { maxKeys: 3 };
      const a = newKey();
      await store.createKey(a, limits);
      await store.createKey(newKey({ keyState: 'PendingDelete', deletionDate: 1 }), limits);
      await store.createKey(newKey({ owner: 'cos' }), limits);
      await store.createKey(newKey({ ownerUin: '200' }), limits);
      await store.createKey(newKey({ region: 'ap-shanghai' }), limits);
      expect(await store.countKeys('100', 'ap-guangzhou')).toBe(1);
      await store.createKey(newKey(), limits);
      await store.createKey(newKey(), limits);
      expect(await store.countKeys('100', 'ap-guangzhou')).toBe(3);
      const refused = newKey();
      const e = await store.createKey(refused, limits).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(QuotaExceededError);
      expect((e as QuotaExceededError).limit).toBe(3);
      expect(await store.getKey(refused.ownerUin, refused.keyId)).toBeUndefined();
      // product keys are never refused; scheduling a deletion frees a place
      await expect(store.createKey(newKey({ owner: 'cbs' }), limits)).resolves.not.toThrow();
      await store.updateKey(a.ownerUin, a.keyId, 1, { keyState: stored('PendingDelete'), deletionDate: 5 });
      expect(await store.countKeys('100', 'ap-guangzhou')).toBe(2);
      await expect(store.createKey(newKey(), limits)).resolves.not.toThrow();
      await expect(store.createKey(newKey(), limits)).rejects.toBeInstanceOf(QuotaExceededError);
      expect(await store.countKeys('100', 'ap-guangzhou')).toBe(3);
    });

    test('countByState counts every tenant and region, and follows changes and deletions', async () => {
      expect(await store.countByState()).toEqual({ Enabled: 0, Disabled: 0, PendingDelete: 0, PendingImport: 0, Archived: 0 });
      const a = newKey();
      await store.createKey(a);
      await store.createKey(newKey({ ownerUin: '200' }));
      await store.createKey(newKey({ region: 'ap-shanghai', keyState: 'Disabled' }));
      await store.createKey(newKey({ keyState: 'PendingImport', origin: 'EXTERNAL', versions: [] }));
      expect(await store.countByState()).toEqual({ Enabled: 2, Disabled: 1, PendingDelete: 0, PendingImport: 1, Archived: 0 });
      await store.updateKey(a.ownerUin, a.keyId, 1, { keyState: stored('PendingDelete'), deletionDate: 9 });
      expect(await store.countByState()).toMatchObject({ Enabled: 1, PendingDelete: 1 });
      await store.deleteKey(a.ownerUin, a.keyId, 10);
      expect(await store.countByState()).toMatchObject({ Enabled: 1, PendingDelete: 0 });
    });

    test('quota under concurrent creates across handles: exactly maxKeys win', async () => {
      const stores = [store, await openAnother(), await openAnother()];
      const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => stores[i % 3].createKey(newKey(), { maxKeys: 5 })));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(QuotaExceededError);
      expect(await store.countKeys('100', 'ap-guangzhou')).toBe(5);
      expect((await store.listKeys({ ownerUin: '100', region: 'ap-guangzhou', offset: 0, limit: 200, order: 'asc' })).total).toBe(5);
    });

    test('dueKeys: rotation, deletion and expiry through the indexes, earliest first, following every change', async () => {
      const rot = (next: number) => ({ enabled: true, rotateDays: 30, nextRotateTime: next });
      const r1 = newKey({ rotation: rot(300) });
      const r2 = newKey({ rotation: rot(100) });
      const r3 = newKey({ rotation: { enabled: false, rotateDays: 30, nextRotateTime: 50 } });
      const d1 = newKey({ keyState: 'PendingDelete', deletionDate: 200 });
      const d2 = newKey({ keyState: 'Disabled', deletionDate: 10 });
      const e1 = newKey({ validTo: 150 });
      const e2 = newKey({ validTo: 120, versions: [] });
      const e3 = newKey({ validTo: 0 });
      for (const k of [r1, r2, r3, d1, d2, e1, e2, e3]) await store.createKey(k);
      const due = async (kind: 'rotation' | 'deletion' | 'expiry', before: number, limit = 10): Promise<string[]> =>
        (await store.dueKeys(kind, before, limit)).map((r) => r.keyId);
      expect(await due('rotation', 1000)).toEqual([r2.keyId, r1.keyId]);
      expect(await due('rotation', 299)).toEqual([r2.keyId]);
      expect(await due('rotation', 1000, 1)).toEqual([r2.keyId]);
      expect(await due('deletion', 1000)).toEqual([d1.keyId]);
      expect(await due('expiry', 1000)).toEqual([e1.keyId]);
      expect(await store.dueKeys('deletion', 1000, 10)).toEqual([{ ownerUin: d1.ownerUin, keyId: d1.keyId }]);
      // changes move keys in and out
      await store.updateKey(r2.ownerUin, r2.keyId, 1, { rotation: { enabled: false, rotateDays: 30 } });
      await store.addVersion(r1.ownerUin, r1.keyId, { version: 2, material: Buffer.from('v2'), createTime: 300 }, { rotation: rot(900) });
      await store.updateKey(d1.ownerUin, d1.keyId, 1, { keyState: stored('Disabled'), deletionDate: null });
      await store.updateKey(d2.ownerUin, d2.keyId, 1, { keyState: stored('PendingDelete') });
      await store.updateKey(e2.ownerUin, e2.keyId, 1, { versions: [{ version: 1, material: Buffer.from('m'), createTime: 1 }] });
      await store.updateKey(e1.ownerUin, e1.keyId, 1, { versions: [] });
      expect(await due('rotation', 1000)).toEqual([r1.keyId]);
      expect(await due('rotation', 899)).toEqual([]);
      expect(await due('deletion', 1000)).toEqual([d2.keyId]);
      expect(await due('expiry', 1000)).toEqual([e2.keyId]);
      await store.deleteKey(d2.ownerUin, d2.keyId, 1000);
      await store.deleteKey(r1.ownerUin, r1.keyId, 1000);
      expect(await due('deletion', 1000)).toEqual([]);
      expect(await due('rotation', 1000)).toEqual([]);
      await expect(store.dueKeys('rotation', 1, 0)).rejects.toBeInstanceOf(StoreInputError);
    });

    test('addUsage: one write per batch, new totals back, unknown keys ignored, shared across handles', async () => {
      const a = newKey();
      const b = newKey();
      await store.createKey(a);
      await store.createKey(b);
      const ghost = randomUUID();
      expect(
        await store.addUsage(
          new Map([
            [`${a.keyId}#1`, 10],
            [`${a.keyId}#2`, 3],
            [`${ghost}#1`, 4],
          ]),
        ),
      ).toEqual(
        new Map([
          [`${a.keyId}#1`, 10],
          [`${a.keyId}#2`, 3],
        ]),
      );
      const other = await openAnother();
      const both = await Promise.all([
        other.addUsage(
          new Map([
            [`${a.keyId}#1`, 5],
            [`${b.keyId}#1`, 1],
          ]),
        ),
        store.addUsage(new Map([[`${a.keyId}#1`, 5]])),
      ]);
      expect([both[0].get(`${a.keyId}#1`), both[1].get(`${a.keyId}#1`)].sort()).toEqual([15, 20]);
      expect(
        await store.addUsage(
          new Map([
            [`${a.keyId}#1`, 0],
            [`${b.keyId}#1`, 0],
          ]),
        ),
      ).toEqual(
        new Map([
          [`${a.keyId}#1`, 20],
          [`${b.keyId}#1`, 1],
        ]),
      );
      expect(await store.addUsage(new Map())).toEqual(new Map());
      await expect(store.addUsage(new Map([[a.keyId, 1]]))).rejects.toBeInstanceOf(StoreInputError);
      await expect(store.addUsage(new Map([[`${a.keyId}#1`, -1]]))).rejects.toBeInstanceOf(StoreInputError);
      // an unknown key leaves nothing behind: once created, it starts from zero
      await store.createKey(newKey({ keyId: ghost }));
      expect(await store.addUsage(new Map([[`${ghost}#1`, 1]]))).toEqual(new Map([[`${ghost}#1`, 1]]));
    });

    test('watch: changes through one handle reach listeners on another', async () => {
      const a = store;
      const b = await openAnother();
      const k = newKey();
      const heard = record(b);
      try {
        await heard.until(anything); // watching is live
        await a.createKey(k);
        await heard.until((c) => c.keyId === k.keyId);
        const n = heard.events.length;
        await a.updateKey(k.ownerUin, k.keyId, 1, { description: 'changed' });
        await heard.until((c) => c.keyId === k.keyId && heard.events.indexOf(c) >= n);
        const m = heard.events.length;
        await a.deleteKey(k.ownerUin, k.keyId, 1);
        await heard.until((c) => c.keyId === k.keyId && heard.events.indexOf(c) >= m);
        // a watcher on the writing handle hears its own writes too
        const own = record(a);
        try {
          await own.until(anything);
          const k2 = newKey();
          await a.createKey(k2);
          await own.until((c) => c.keyId === k2.keyId);
        } finally {
          own.stop();
        }
      } finally {
        heard.stop();
      }
    });

    test('leases: one holder at a time, renewal, expiry and release', async () => {
      const other = await openAnother();
      expect(await store.acquireLease('leader', 'node-a', 60_000)).toBe(true);
      expect(await other.acquireLease('leader', 'node-b', 60_000)).toBe(false);
      expect(await store.acquireLease('leader', 'node-a', 200)).toBe(true); // renewed, now short
      expect(await other.acquireLease('other-lease', 'node-b', 60_000)).toBe(true);
      await sleep(400);
      expect(await other.acquireLease('leader', 'node-b', 60_000)).toBe(true);
      expect(await store.acquireLease('leader', 'node-a', 60_000)).toBe(false);
      await store.releaseLease('leader', 'node-a'); // not the holder: no effect
      expect(await store.acquireLease('leader', 'node-a', 60_000)).toBe(false);
      await other.releaseLease('leader', 'node-b');
      expect(await store.acquireLease('leader', 'node-a', 60_000)).toBe(true);
      await expect(store.acquireLease('leader', '', 1000)).rejects.toBeInstanceOf(StoreInputError);
      await expect(store.acquireLease('leader', 'node-a', 0)).rejects.toBeInstanceOf(StoreInputError);
    });

    test('clusterKeys: every key of the cluster across tenants, regions and states, once, in pages; other clusters left out', async () => {
      const mine: string[] = [];
      for (let i = 0; i < 23; i++) {
        const k = newKey({
          hsmClusterId: 'cls-walk',
          ownerUin: String(100 + (i % 3)),
          region: i % 2 ? 'ap-shanghai' : 'ap-guangzhou',
          keyState: i % 5 ? 'Enabled' : 'PendingDelete',
        });
        await store.createKey(k);
        mine.push(`${k.ownerUin}/${k.keyId}`);
      }
      for (let i = 0; i < 7; i++) await store.createKey(newKey({ hsmClusterId: 'cls-other' }));
      const gone = newKey({ hsmClusterId: 'cls-walk' });
      await store.createKey(gone);
      await store.deleteKey(gone.ownerUin, gone.keyId, 1);
      const seen: string[] = [];
      let cursor: string | undefined = '';
      for (let pages = 0; cursor !== undefined; pages++) {
        expect(pages).toBeLessThan(1000);
        const page = await (await openAnother()).clusterKeys('cls-walk', cursor, 5);
        seen.push(...page.keys.map((k) => `${k.ownerUin}/${k.keyId}`));
        cursor = page.cursor;
      }
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen.sort()).toEqual(mine.sort());
      expect((await store.clusterKeys('cls-none', '', 100)).keys).toEqual([]);
      await expect(store.clusterKeys('', '', 10)).rejects.toBeInstanceOf(StoreInputError);
      await expect(store.clusterKeys('cls-walk', '', 0)).rejects.toBeInstanceOf(StoreInputError);
    });

    test('cluster state: absent, then written with compare-and-set across handles; a stale revision changes nothing', async () => {
      const other = await openAnother();
      expect(await store.getClusterState('cls-a')).toBeUndefined();
      expect(await store.putClusterState('cls-a', 0, '{"v":1}')).toBe(1);
      await expect(other.putClusterState('cls-a', 0, '{"v":"lost"}')).rejects.toBeInstanceOf(ClusterStateConflictError);
      expect(await other.getClusterState('cls-a')).toEqual({ doc: '{"v":1}', revision: 1 });
      const racers = await Promise.allSettled([store.putClusterState('cls-a', 1, '{"v":2}'), other.putClusterState('cls-a', 1, '{"v":3}')]);
      expect(racers.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const now = await store.getClusterState('cls-a');
      expect(now?.revision).toBe(2);
      expect(['{"v":2}', '{"v":3}']).toContain(now?.doc);
      expect(await store.getClusterState('cls-b')).toBeUndefined();
      await expect(store.putClusterState('cls-a', -1, 'x')).rejects.toBeInstanceOf(StoreInputError);
      await expect(store.putClusterState('cls-a', 2, '')).rejects.toBeInstanceOf(StoreInputError);
    });

    test('repair: finds nothing on a sound store, fixes damaged indexes, then finds nothing again', async () => {
      const k = newKey({ alias: 'damaged', tags: { env: 'prod' }, rotation: { enabled: true, rotateDays: 30, nextRotateTime: 500 } });
      const bystander = newKey({ tags: { env: 'prod' } });
      await store.createKey(k);
      await store.createKey(bystander);
      expect(await store.repair()).toEqual([]);
      await backing.corrupt(k);
      const q = { ownerUin: k.ownerUin, region: k.region, offset: 0, limit: 200, order: 'asc' as const };
      const ids = async (f: object): Promise<string[]> => (await store.listKeys({ ...q, ...f })).keys.map((r) => r.keyId);
      expect(await ids({ keyStates: ['Enabled'] })).toEqual([bystander.keyId]);
      expect(await ids({ tagFilters: [{ key: 'env' }] })).toEqual([bystander.keyId]);
      expect(await ids({ keyStates: ['Archived'] })).toEqual([k.keyId]);
      expect(await store.dueKeys('rotation', 1000, 10)).toEqual([]);

      const findings = await store.repair();
      expect(findings.length).toBeGreaterThan(0);
      expect(findings.join('\n')).toContain(k.keyId);
      expect(await ids({ keyStates: ['Enabled'] })).toEqual([k.keyId, bystander.keyId]);
      expect(await ids({ tagFilters: [{ key: 'env', values: ['prod'] }] })).toEqual([k.keyId, bystander.keyId]);
      expect(await ids({ keyStates: ['Archived'] })).toEqual([]);
      expect(await ids({})).toEqual([k.keyId, bystander.keyId]);
      expect(await store.dueKeys('rotation', 1000, 10)).toEqual([{ ownerUin: k.ownerUin, keyId: k.keyId }]);
      await expect(store.createKey(newKey({ alias: 'damaged' }))).rejects.toBeInstanceOf(AliasExistsError);
      expect(await store.repair()).toEqual([]);
      expect((await store.getKey(k.ownerUin, k.keyId))?.revision).toBe(1);
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
      await expect(store.addVersion(dup.ownerUin, dup.keyId, { version: 0, material: Buffer.from('x'), createTime: 1 })).rejects.toBeInstanceOf(
        StoreInputError,
      );
      await expect(store.addVersion(dup.ownerUin, dup.keyId, { version: 2, material: Buffer.alloc(0), createTime: 1 })).rejects.toBeInstanceOf(StoreInputError);
      await expect(store.createKey(dup)).rejects.toBeInstanceOf(AliasExistsError);
      await expect(store.createKey({ ...dup, alias: 'another' })).rejects.toBeInstanceOf(ConflictError);
      await expect(store.deleteKey(dup.ownerUin, dup.keyId, Number.NaN)).rejects.toBeInstanceOf(StoreInputError);
      await expect(store.listKeys({ ...q, role: 'robot' as 'user' })).rejects.toBeInstanceOf(StoreInputError);
      await expect(
        store.addVersion(dup.ownerUin, dup.keyId, { version: 2, material: Buffer.from('x'), createTime: 1 }, { versions: [] }),
      ).rejects.toBeInstanceOf(StoreInputError);
      expect((await store.getKey(dup.ownerUin, dup.keyId))?.revision).toBe(1);
    });

    test('what the backend indexes agrees with indexFacts: quota count and limit, due work, every filter, counts by state', async () => {
      const region = 'ap-facts';
      const records: NewKeyRecord[] = [];
      for (let i = 0; i < 20; i++) {
        records.push(
          newKey({
            region,
            owner: i % 3 === 0 ? 'cos' : 'user',
            keyState: KEY_STATES[i % KEY_STATES.length],
            origin: i % 2 === 0 ? 'TENCENT_KMS' : 'EXTERNAL',
            keyUsage: i % 4 === 0 ? 'SIGN_VERIFY_ECC' : 'ENCRYPT_DECRYPT',
            hsmClusterId: `cls-${i % 3}`,
            tags: { t: String(i % 2), ...(i % 5 === 0 ? { rare: 'yes' } : {}) },
            rotation: { enabled: i % 2 === 1, rotateDays: 30, ...(i % 4 !== 3 ? { nextRotateTime: 1000 + i } : {}) },
            deletionDate: 2000 + i,
            ...(i % 3 !== 2 ? { validTo: 3000 + i } : {}),
            ...(i % 6 === 5 ? { versions: [] } : {}),
          }),
        );
      }
      for (const r of records) await store.createKey(r);
      const facts = records.map((r) => ({ keyId: r.keyId, ...indexFacts(r) }));
      const ids = (pick: (f: (typeof facts)[number]) => boolean): string[] => facts.filter(pick).map((f) => f.keyId);
      const owner = records[0].ownerUin;
      const quota = ids((f) => f.quota).length;
      expect(quota).toBeGreaterThan(0);
      expect(quota).toBeLessThan(records.length);
      expect(await store.countKeys(owner, region)).toBe(quota);
      await expect(store.createKey(newKey({ region }), { maxKeys: quota })).rejects.toBeInstanceOf(QuotaExceededError);
      const product = newKey({ region, owner: 'cos' });
      await store.createKey(product, { maxKeys: quota });
      facts.push({ keyId: product.keyId, ...indexFacts(product) });

      for (const kind of DUE_KINDS) {
        const due = await store.dueKeys(kind, 10_000, 1000);
        expect(
          due
            .filter((d) => d.ownerUin === owner)
            .map((d) => d.keyId)
            .sort(),
        ).toEqual(ids((f) => f.due[kind] !== undefined).sort());
      }
      const q: ListKeysQuery = { ownerUin: owner, region, offset: 0, limit: 200, order: 'asc' };
      const listed = async (over: Partial<ListKeysQuery>): Promise<string[]> => (await store.listKeys({ ...q, ...over })).keys.map((k) => k.keyId).sort();
      for (const keyState of KEY_STATES) expect(await listed({ keyStates: [keyState] })).toEqual(ids((f) => f.keyState === keyState).sort());
      for (const role of ['user', 'product'] as const) expect(await listed({ role })).toEqual(ids((f) => f.role === role).sort());
      for (const origin of ['TENCENT_KMS', 'EXTERNAL'] as const) expect(await listed({ origin })).toEqual(ids((f) => f.origin === origin).sort());
      expect(await listed({ keyUsage: 'SIGN_VERIFY_ECC' })).toEqual(ids((f) => f.keyUsage === 'SIGN_VERIFY_ECC').sort());
      expect(await listed({ hsmClusterId: 'cls-1' })).toEqual(ids((f) => f.hsmClusterId === 'cls-1').sort());
      expect(await listed({ tagFilters: [{ key: 't', values: ['1'] }] })).toEqual(ids((f) => f.tags.some(([k, v]) => k === 't' && v === '1')).sort());
      expect(await listed({ tagFilters: [{ key: 'rare' }] })).toEqual(ids((f) => f.tags.some(([k]) => k === 'rare')).sort());
      const byState = await store.countByState();
      for (const keyState of KEY_STATES) expect(byState[keyState]).toBe(ids((f) => f.keyState === keyState).length);

      // a state change moves the key in or out of the quota as countsTowardQuota says
      const counted = records.find((r) => indexFacts(r).quota) as NewKeyRecord;
      await store.updateKey(counted.ownerUin, counted.keyId, 1, { keyState: stored('PendingDelete') });
      expect(indexFacts({ ...counted, keyState: 'PendingDelete' }).quota).toBe(false);
      expect(await store.countKeys(owner, region)).toBe(quota - 1);
    });
  });
}
