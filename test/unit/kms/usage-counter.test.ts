import { GCM_RANDOM_IV_LIMIT } from '../../../src/common/gcm';
import { ROTATION_THRESHOLD, UsageCounter, VersionKey } from '../../../src/kms/usage-counter';

describe('GCM usage counting', () => {
  test('the threshold is well below the NIST limit', () => {
    expect(ROTATION_THRESHOLD).toBeLessThanOrEqual(GCM_RANDOM_IV_LIMIT / 4);
  });

  test('increments are batched into one persist call per flush, and reported due versions cross the threshold', async () => {
    const stored = new Map<VersionKey, number>([['k1#1', ROTATION_THRESHOLD - 2]]);
    const counter = new UsageCounter();
    for (let i = 0; i < 3; i++) counter.add('k1', 1);
    counter.add('k2', 4, 10);
    let calls = 0;
    const due = await counter.flush(async (batch) => {
      calls++;
      const totals = new Map<VersionKey, number>();
      for (const [k, n] of batch) {
        stored.set(k, (stored.get(k) ?? 0) + n);
        totals.set(k, stored.get(k)!);
      }
      return totals;
    });
    expect(calls).toBe(1);
    expect(stored.get('k2#4')).toBe(10);
    expect(due).toEqual(['k1#1']);
    expect(counter.size).toBe(0);
    expect(await counter.flush(async () => new Map())).toEqual([]);
  });

  test('a failed flush keeps the counts for the next one', async () => {
    const counter = new UsageCounter();
    counter.add('k', 1, 5);
    await expect(counter.flush(async () => Promise.reject(new Error('store down')))).rejects.toThrow('store down');
    counter.add('k', 1, 2);
    let seen = 0;
    await counter.flush(async (batch) => {
      seen = batch.get('k#1') ?? 0;
      return new Map();
    });
    expect(seen).toBe(7);
  });
});
