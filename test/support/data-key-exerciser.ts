/**
 * The hosted-data-key part of the MetadataStore conformance suite, run by `exerciseStore` on every
 * backend inside its own setup (a fresh backing per test): create/get/update/delete, compare-and-set,
 * name uniqueness, the quota, tenant isolation, every listing filter and the deletion index.
 */
import { randomUUID } from 'crypto';
import type { DataKeyState, DataKeyTableState } from '../../src/common/data-key-states';
import {
  ConflictError,
  DataKeyNameExistsError,
  DataKeyNotFoundError,
  DataKeyQuotaExceededError,
  ListDataKeysQuery,
  MetadataStore,
  NewDataKeyRecord,
  StoreInputError,
} from '../../src/store/store';

/** The store is tested below the state machine. */
const dk = (s: DataKeyState): DataKeyTableState => s as DataKeyTableState;

let clock = 1_700_000_000;
export function newDataKey(over: Partial<NewDataKeyRecord> = {}): NewDataKeyRecord {
  const dataKeyId = over.dataKeyId ?? randomUUID();
  return {
    dataKeyId,
    ownerUin: '100',
    region: 'ap-guangzhou',
    creatorUin: '100',
    owner: 'user',
    name: `dk-${dataKeyId.slice(0, 8)}`,
    description: 'a data key',
    keyId: randomUUID(),
    numberOfBytes: 32,
    origin: 'TENCENT_KMS',
    hsmClusterId: 'default',
    keyState: 'Enabled',
    tags: {},
    createTime: clock++,
    ciphertext: Buffer.from(`sealed-${dataKeyId}`),
    ...over,
  };
}

export function exerciseDataKeys(store: () => MetadataStore, another: () => Promise<MetadataStore>): void {
  test('create, get (blob bytes intact), update with compare-and-set, delete', async () => {
    const d = newDataKey({ tags: { env: 'prod' }, context: { app: 'x' } });
    expect((await store().createDataKey(d)).revision).toBe(1);
    const other = await another();
    const got = await other.getDataKey(d.ownerUin, d.dataKeyId);
    expect(got).toEqual({ ...d, revision: 1 });
    expect(Buffer.isBuffer(got!.ciphertext)).toBe(true);
    const next = await store().updateDataKey(d.ownerUin, d.dataKeyId, 1, { keyState: dk('Disabled'), description: 'changed' });
    expect(next).toMatchObject({ revision: 2, keyState: 'Disabled', description: 'changed' });
    await expect(other.updateDataKey(d.ownerUin, d.dataKeyId, 1, { description: 'late' })).rejects.toThrow(ConflictError);
    await expect(store().updateDataKey(d.ownerUin, randomUUID(), 1, { description: 'x' })).rejects.toThrow(DataKeyNotFoundError);
    expect(await store().deleteDataKey(d.ownerUin, d.dataKeyId)).toBe(true);
    expect(await other.getDataKey(d.ownerUin, d.dataKeyId)).toBeUndefined();
    expect(await store().deleteDataKey(d.ownerUin, d.dataKeyId)).toBe(false);
    await expect(store().createDataKey({ ...d, ciphertext: Buffer.alloc(0) })).rejects.toThrow(StoreInputError);
  });

  test('another tenant sees nothing and cannot change or delete it', async () => {
    const d = newDataKey();
    await store().createDataKey(d);
    expect(await store().getDataKey('999', d.dataKeyId)).toBeUndefined();
    await expect(store().updateDataKey('999', d.dataKeyId, 1, { description: 'x' })).rejects.toThrow(DataKeyNotFoundError);
    expect(await store().deleteDataKey('999', d.dataKeyId)).toBe(false);
    expect((await store().listDataKeys({ ownerUin: '999', region: d.region, offset: 0, limit: 10, order: 'asc' })).total).toBe(0);
    expect(await store().getDataKey(d.ownerUin, d.dataKeyId)).toBeDefined();
  });

  test('names are unique per tenant and region; a rename frees the old name, a deletion frees it too', async () => {
    const a = newDataKey({ name: 'same' });
    await store().createDataKey(a);
    await expect(store().createDataKey(newDataKey({ name: 'same' }))).rejects.toThrow(DataKeyNameExistsError);
    await store().createDataKey(newDataKey({ name: 'same', ownerUin: '200' }));
    await store().createDataKey(newDataKey({ name: 'same', region: 'ap-beijing' }));
    const b = newDataKey({ name: 'other' });
    await store().createDataKey(b);
    await expect(store().updateDataKey(b.ownerUin, b.dataKeyId, 1, { name: 'same' })).rejects.toThrow(DataKeyNameExistsError);
    await store().updateDataKey(a.ownerUin, a.dataKeyId, 1, { name: 'renamed' });
    await store().updateDataKey(b.ownerUin, b.dataKeyId, 1, { name: 'same' });
    await store().deleteDataKey(b.ownerUin, b.dataKeyId);
    await store().createDataKey(newDataKey({ name: 'same' }));
    await expect(store().createDataKey({ ...newDataKey(), dataKeyId: a.dataKeyId })).rejects.toThrow(ConflictError);
  });

  test('the quota counts every data key of the tenant in the region, atomically with concurrent inserts', async () => {
    const others = await Promise.all([another(), another()]);
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => (i % 2 ? others[0] : others[1]).createDataKey(newDataKey(), { maxDataKeys: 5 })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(DataKeyQuotaExceededError);
    expect(await store().countDataKeys('100', 'ap-guangzhou')).toBe(5);
    expect(await store().countDataKeys('100', 'ap-beijing')).toBe(0);
  });

  test('listing: every filter, both orders, paging and the total', async () => {
    const cmk = randomUUID();
    const made: NewDataKeyRecord[] = [];
    for (let i = 0; i < 12; i++) {
      const d = newDataKey({
        name: i % 3 === 0 ? `alpha-${i}` : `beta-${i}`,
        keyState: (['Enabled', 'Disabled', 'PendingDelete'] as const)[i % 3],
        deletionDate: i % 3 === 2 ? 1_800_000_000 + i : undefined,
        owner: i === 11 ? 'cvm' : 'user',
        origin: i % 2 ? 'EXTERNAL' : 'TENCENT_KMS',
        hsmClusterId: i % 4 === 0 ? 'cls-1' : 'default',
        keyId: i < 6 ? cmk : randomUUID(),
        numberOfBytes: i % 2 ? 16 : 32,
        tags: i % 5 === 0 ? { t: String(i % 2) } : {},
      });
      made.push(d);
      await store().createDataKey(d);
    }
    const base: ListDataKeysQuery = { ownerUin: '100', region: 'ap-guangzhou', offset: 0, limit: 200, order: 'asc' };
    const ids = async (q: Partial<ListDataKeysQuery>) => (await store().listDataKeys({ ...base, ...q })).dataKeys.map((d) => d.dataKeyId);
    const expected = (pred: (d: NewDataKeyRecord) => boolean) => made.filter(pred).map((d) => d.dataKeyId);
    expect(await ids({})).toEqual(made.map((d) => d.dataKeyId));
    expect(await ids({ order: 'desc' })).toEqual(made.map((d) => d.dataKeyId).reverse());
    expect(await ids({ keyStates: ['Disabled'] })).toEqual(expected((d) => d.keyState === 'Disabled'));
    expect(await ids({ role: 'product' })).toEqual(expected((d) => d.owner !== 'user'));
    expect(await ids({ role: 'user' })).toEqual(expected((d) => d.owner === 'user'));
    expect(await ids({ search: 'alpha' })).toEqual(expected((d) => d.name.includes('alpha')));
    expect(await ids({ search: made[4].dataKeyId.slice(0, 13) })).toEqual([made[4].dataKeyId]);
    expect(await ids({ origin: 'EXTERNAL' })).toEqual(expected((d) => d.origin === 'EXTERNAL'));
    expect(await ids({ hsmClusterId: 'cls-1' })).toEqual(expected((d) => d.hsmClusterId === 'cls-1'));
    expect(await ids({ keyId: cmk })).toEqual(expected((d) => d.keyId === cmk));
    expect(await ids({ numberOfBytes: 16 })).toEqual(expected((d) => d.numberOfBytes === 16));
    expect(await ids({ tagFilters: [{ key: 't' }] })).toEqual(expected((d) => 't' in d.tags));
    expect(await ids({ tagFilters: [{ key: 't', values: ['0'] }] })).toEqual(expected((d) => d.tags.t === '0'));
    expect(await ids({ tagFilters: [{ key: 'constructor' }] })).toEqual([]);
    const page = await store().listDataKeys({ ...base, offset: 3, limit: 4, keyStates: ['Enabled', 'Disabled'] });
    expect(page.total).toBe(8);
    expect(page.dataKeys.map((d) => d.dataKeyId)).toEqual(expected((d) => d.keyState !== 'PendingDelete').slice(3, 7));
    await expect(store().listDataKeys({ ...base, limit: 201 })).rejects.toThrow(StoreInputError);
  });

  test('due deletions: PendingDelete with a date, earliest first; cancelling takes the key out', async () => {
    const late = newDataKey({ keyState: 'PendingDelete', deletionDate: 2_000 });
    const early = newDataKey({ keyState: 'PendingDelete', deletionDate: 1_000 });
    const future = newDataKey({ keyState: 'PendingDelete', deletionDate: 9_000 });
    for (const d of [late, early, future, newDataKey({ deletionDate: 500 })]) await store().createDataKey(d);
    expect(await store().dueDataKeys(5_000, 10)).toEqual([
      { ownerUin: '100', dataKeyId: early.dataKeyId },
      { ownerUin: '100', dataKeyId: late.dataKeyId },
    ]);
    expect(await store().dueDataKeys(5_000, 1)).toHaveLength(1);
    await store().updateDataKey(late.ownerUin, late.dataKeyId, 1, { keyState: dk('Disabled'), deletionDate: null });
    expect(await store().dueDataKeys(5_000, 10)).toEqual([{ ownerUin: '100', dataKeyId: early.dataKeyId }]);
    await store().deleteDataKey(early.ownerUin, early.dataKeyId);
    expect(await store().dueDataKeys(10_000, 10)).toEqual([{ ownerUin: '100', dataKeyId: future.dataKeyId }]);
  });
}
