import { countsTowardQuota, indexFacts, quotaLimitFor, QUOTA_RULE } from '../../../src/store/record-facts';
import { describeStep, planRepair, removalsFirst } from '../../../src/store/repair-plan';
import type { NewKeyRecord } from '../../../src/store/store';

const record = (over: Partial<NewKeyRecord> = {}): NewKeyRecord => ({
  keyId: '8f4c2a9e-1b3d-4c5e-9f70-0a1b2c3d4e5f',
  alias: 'a',
  description: '',
  keyUsage: 'ENCRYPT_DECRYPT',
  origin: 'TENCENT_KMS',
  keyState: 'Enabled',
  creatorUin: '1',
  ownerUin: '1',
  owner: 'user',
  region: 'r',
  hsmClusterId: 'c',
  tags: { env: 'prod' },
  rotation: { enabled: false, rotateDays: 365 },
  createTime: 10,
  versions: [{ version: 1, material: Buffer.from('m'), createTime: 10 }],
  ...over,
});

describe('indexFacts and the quota rule', () => {
  test('the quota counts user keys not pending deletion, and is checked only for a new user key', () => {
    expect(QUOTA_RULE).toEqual({ role: 'user', notState: 'PendingDelete' });
    expect(indexFacts(record()).quota).toBe(true);
    expect(indexFacts(record({ keyState: 'PendingDelete' })).quota).toBe(false);
    expect(indexFacts(record({ owner: 'cos' })).quota).toBe(false);
    expect(countsTowardQuota({ role: 'user', keyState: 'Archived' })).toBe(true);
    expect(quotaLimitFor(record(), 5)).toBe(5);
    expect(quotaLimitFor(record({ owner: 'cos' }), 5)).toBeUndefined();
  });

  test('due work: rotation when enabled with a time, deletion only pending deletion, expiry only with material', () => {
    const r = record({ rotation: { enabled: true, rotateDays: 30, nextRotateTime: 100 }, deletionDate: 200, validTo: 300 });
    expect(indexFacts(r).due).toEqual({ rotation: 100, expiry: 300 });
    expect(indexFacts({ ...r, keyState: 'PendingDelete' }).due).toEqual({ rotation: 100, deletion: 200, expiry: 300 });
    expect(indexFacts({ ...r, versions: [], validTo: 300 }).due).toEqual({ rotation: 100 });
    expect(indexFacts({ ...r, validTo: 0, rotation: { enabled: false, rotateDays: 30, nextRotateTime: 100 } }).due).toEqual({});
  });

  test('the facts of a record: its filters, role and tags', () => {
    expect(indexFacts(record({ owner: 'cbs' }))).toMatchObject({ role: 'product', alias: 'a', keyState: 'Enabled', tags: [['env', 'prod']], createTime: 10 });
  });
});

describe('planRepair', () => {
  test('removes what is found and not implied, writes what is implied and missing or different, removals first', () => {
    const want = new Map<string, string | number | null>([
      ['a', 1],
      ['b', 2],
      ['c', null],
    ]);
    const found = new Map<string, string | number | null>([
      ['a', 1],
      ['b', 3],
      ['x', 'stale'],
    ]);
    const steps = planRepair(want, found);
    expect(steps).toEqual([
      { kind: 'remove', entry: 'x', found: 'stale' },
      { kind: 'write', entry: 'b', found: 3, want: 2 },
      { kind: 'write', entry: 'c', found: undefined, want: null },
    ]);
    expect(planRepair(want, new Map(want))).toEqual([]);
    expect(planRepair(undefined, found).map((s) => s.kind)).toEqual(['remove', 'remove', 'remove']);
    expect(describeStep('k1', steps[1])).toBe('key k1: b was 3, re-derived 2');
    const planned = [...planRepair(want, new Map()), ...planRepair(undefined, found)].map((step) => ({ step }));
    expect(removalsFirst(planned).map((p) => p.step.kind)).toEqual(['remove', 'remove', 'remove', 'write', 'write', 'write']);
  });
});
