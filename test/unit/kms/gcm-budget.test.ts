import { Alarms } from '../../../src/kms/alarms';
import { ManualClock } from '../../../src/common/clock';
import { GcmBudget, reservationBlock } from '../../../src/kms/gcm-budget';
import { rotationThreshold, ROTATION_THRESHOLD } from '../../../src/kms/usage-counter';

/** Two nodes' budgets over one shared count (the store's atomic add). */
function fixture(limit: number) {
  const counts = new Map<string, number>();
  let writes = 0;
  const reserve = async (ref: string, n: number) => {
    writes++;
    counts.set(ref, (counts.get(ref) ?? 0) + n);
    return counts.get(ref);
  };
  const alarms = new Alarms();
  const clock = new ManualClock(Date.UTC(2026, 10, 23));
  return { counts, alarms, writes: () => writes, node: () => new GcmBudget(limit, reserve, alarms, clock) };
}

const key = { keyId: 'k1', ownerUin: '1001' };

describe('GCM budget of versions that cannot rotate', () => {
  test('reservation blocks: 1 for small limits, 4096 for NIST 2^32; rotation at a quarter of the limit', () => {
    expect(reservationBlock(20)).toBe(1);
    expect(reservationBlock(2 ** 32)).toBe(4096);
    expect(rotationThreshold(2 ** 32)).toBe(ROTATION_THRESHOLD);
    expect(rotationThreshold(20)).toBe(5);
    expect(rotationThreshold(2)).toBe(1);
  });

  test('two nodes together never take more than the limit; one alarm at 90 % and one at the limit', async () => {
    const f = fixture(20);
    const [a, b] = [f.node(), f.node()];
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).take(key, 1)));
    expect(results.filter(Boolean)).toHaveLength(20);
    expect(await a.take(key, 1)).toBe(false);
    expect(await b.take(key, 1)).toBe(false);
    expect(f.alarms.list('k1').map((x) => x.kind)).toEqual(['UsageLimitApproaching', 'UsageLimitReached']);
    expect(f.alarms.list('k1')[0].detail).toMatch(/18 of 20/);
  });

  test('an exhausted version asks the store no more; another version has its own budget', async () => {
    const f = fixture(3);
    const a = f.node();
    for (let i = 0; i < 3; i++) expect(await a.take(key, 1)).toBe(true);
    const writes = f.writes();
    expect(await a.take(key, 1)).toBe(false);
    expect(await a.take(key, 1)).toBe(false);
    expect(f.writes()).toBe(writes);
    expect(await a.take(key, 2)).toBe(true);
  });

  test('with NIST blocks, concurrent takes share one reservation', async () => {
    const f = fixture(2 ** 32);
    const a = f.node();
    await Promise.all(Array.from({ length: 100 }, () => a.take(key, 1)));
    expect(f.writes()).toBe(1);
    expect(f.counts.get('k1#1')).toBe(4096);
  });

  test('a deleted key (no total) is refused', async () => {
    const alarms = new Alarms();
    const budget = new GcmBudget(20, async () => undefined, alarms, new ManualClock(0));
    expect(await budget.take(key, 1)).toBe(false);
  });
});
