import { RateLedger, SharedRateLimiter, Usage } from '../../../src/api/shared-rate-limit';
import { ManualClock } from '../../../src/kms/clock';

/** Two workers, the ledger between them, reports delivered when `sync()` is called (as the supervisor would, without IPC). */
function lab(config = { perSecond: 2, burst: 10 }, workers = 2) {
  const clock = new ManualClock();
  const ledger = new RateLedger(config, clock);
  const outbox: Array<{ from: number; used: Usage }> = [];
  const limiters = Array.from({ length: workers }, (_, i) => new SharedRateLimiter(config, { workers, clock, report: (used) => outbox.push({ from: i, used }) }));
  const sync = () => {
    for (const l of limiters) l.flush();
    for (const { from, used } of outbox.splice(0)) limiters[from].apply(ledger.charge(used));
    const changed = ledger.takeChanged();
    for (const l of limiters) l.apply(changed);
  };
  const take = (worker: number, account: string, n: number) => Array.from({ length: n }, () => limiters[worker].takeNow(account)).filter(Boolean).length;
  return { clock, ledger, limiters, outbox, sync, take, close: () => limiters.forEach((l) => l.close()) };
}

describe('RateLedger', () => {
  test.each<[string, Array<[number, Usage]>, Record<string, number>]>([
    ['an account first charged starts full', [[0, { a: 3 }]], { a: 7 }],
    ['charges add up', [[0, { a: 3 }], [0, { a: 4 }]], { a: 3 }],
    ['a bucket refills with time, up to burst', [[0, { a: 10 }], [2, { a: 0 }]], { a: 4 }],
    ['refill stops at burst', [[0, { a: 1 }], [3600, { a: 0 }]], { a: 10 }],
    ['overspending goes into debt', [[0, { a: 14 }]], { a: -4 }],
    ['debt is at most one burst', [[0, { a: 100 }]], { a: -10 }],
    ['accounts are separate', [[0, { a: 5, b: 1 }]], { a: 5, b: 9 }],
    ['negative or odd counts are ignored', [[0, { a: -5, b: Number.NaN }]], {}],
  ])('%s', (_name, steps, expected) => {
    const clock = new ManualClock();
    const ledger = new RateLedger({ perSecond: 2, burst: 10 }, clock);
    let levels: Record<string, number> = {};
    for (const [seconds, used] of steps) {
      clock.advance(seconds);
      levels = { ...levels, ...ledger.charge(used) };
    }
    expect(levels).toEqual(expected);
  });

  test('takeChanged names each charged account once, refilled to now', () => {
    const clock = new ManualClock();
    const ledger = new RateLedger({ perSecond: 2, burst: 10 }, clock);
    ledger.charge({ a: 10 });
    ledger.charge({ b: 1 });
    clock.advance(1);
    expect(ledger.takeChanged()).toEqual({ a: 2, b: 10 });
    expect(ledger.takeChanged()).toEqual({});
  });

  test('bounded: the least recently charged accounts are forgotten', () => {
    const ledger = new RateLedger({ perSecond: 1, burst: 5 }, new ManualClock(), 3);
    for (const a of ['a', 'b', 'c', 'd']) ledger.charge({ [a]: 1 });
    expect(ledger.size).toBe(3);
  });
});

describe('SharedRateLimiter (workers and ledger)', () => {
  test('an account first seen gets burst / workers on each worker until the ledger answers', () => {
    const l = lab();
    expect(l.take(0, 'a', 20)).toBe(5);
    expect(l.take(1, 'a', 20)).toBe(5);
    l.sync();
    // the whole burst is spent across the workers: nothing more anywhere until it refills
    expect(l.take(0, 'a', 5) + l.take(1, 'a', 5)).toBe(0);
    l.close();
  });

  test('shares never add up to more than the bucket holds', () => {
    const l = lab({ perSecond: 2, burst: 10 }, 4);
    let allowed = 0;
    for (let round = 0; round < 10; round++) {
      for (let w = 0; w < 4; w++) allowed += l.take(w, 'a', 20);
      l.sync();
    }
    expect(allowed).toBeLessThanOrEqual(10);
    expect(allowed).toBeGreaterThanOrEqual(8);
    l.close();
  });

  test('one worker alone reaches (nearly) the whole burst over a few reports', () => {
    const l = lab();
    let allowed = l.take(0, 'a', 20);
    expect(allowed).toBe(5);
    for (let i = 0; i < 6; i++) {
      l.sync();
      allowed += l.take(0, 'a', 20);
    }
    expect(allowed).toBeGreaterThanOrEqual(9);
    expect(allowed).toBeLessThanOrEqual(10);
    l.close();
  });

  test('over time the account gets its rate across all workers, not a rate per worker', () => {
    const l = lab({ perSecond: 2, burst: 10 }, 4);
    let allowed = 0;
    // 60 s in 50 ms steps, every worker trying 5 requests per step
    for (let step = 0; step < 1200; step++) {
      l.clock.advance(0.05);
      for (let w = 0; w < 4; w++) allowed += l.take(w, 'a', 5);
      l.sync();
    }
    // burst + 60 s x 2/s = 130 with one bucket (4 buckets of their own would give 520)
    expect(allowed).toBeGreaterThanOrEqual(120);
    expect(allowed).toBeLessThanOrEqual(130);
    l.close();
  });

  test('usage since a report is not forgotten when the levels arrive', () => {
    const l = lab();
    l.take(0, 'a', 1);
    l.sync();
    l.take(0, 'a', 4);
    // levels of an older report (the 4 not yet charged): this worker's share 18 / 2 less those 4
    l.limiters[0].apply({ a: 18 });
    expect(l.take(0, 'a', 20)).toBe(5);
    l.close();
  });

  test('nothing to report, nothing sent; a new account is reported (as zero) at once', () => {
    const l = lab();
    l.limiters[0].flush();
    expect(l.outbox).toHaveLength(0);
    l.limiters[0].takeNow('a');
    l.limiters[1].takeNow('b');
    l.limiters[1].flush();
    expect(l.outbox).toEqual([{ from: 1, used: { b: 1 } }]);
    l.close();
  });
});
