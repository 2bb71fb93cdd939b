import fc from 'fast-check';
import { ASK_TIMEOUT_MS, Grant, LEASE_MS, RateLedger, SharedRateLimiter, Tokens } from '../../../src/api/shared-rate-limit';
import { ManualClock } from '../../../src/common/clock';

type ToLedger = { from: number; ask?: { uin: string; want: number; answer: (g: Grant) => void }; settle?: Tokens };

/**
 * N workers and the ledger, with the IPC channel made explicit: questions and settlements queue
 * in order towards the ledger and are handled when the test says (`deliver`), as the supervisor would.
 */
function lab(config = { perSecond: 2, burst: 10 }, workers = 2) {
  const clock = new ManualClock();
  const ledger = new RateLedger(config, clock);
  const queue: ToLedger[] = [];
  const asks = Array(workers).fill(0) as number[];
  /** The process id of each worker slot (a restarted worker is a new process, as with node:cluster). */
  const ids = Array.from({ length: workers }, (_, i) => i);
  const dead = new Set<number>();
  let nextId = workers;
  const spawn = (slot: number, from: number) =>
    new SharedRateLimiter(config, {
      workers,
      clock,
      ask: (uin, want) => new Promise<Grant>((answer) => ((asks[slot] += 1), queue.push({ from, ask: { uin, want, answer } }))),
      settle: (unused) => void (dead.has(from) || queue.push({ from, settle: unused })),
    });
  const limiters = ids.map((id, slot) => spawn(slot, id));
  /** The worker in `slot` dies (what it had sent and not yet been handled is lost) and a new one takes its place. */
  const kill = (slot: number) => {
    const id = ids[slot];
    dead.add(id);
    for (const m of queue.filter((q) => q.from === id)) m.ask?.answer({ granted: 0, waitMs: 0 });
    queue.splice(0, queue.length, ...queue.filter((q) => q.from !== id));
    ledger.forget(id);
    limiters[slot].close();
    ids[slot] = nextId++;
    limiters[slot] = spawn(slot, ids[slot]);
    return id;
  };
  const handle = (m: ToLedger) => {
    if (m.ask) m.ask.answer(ledger.grant(m.from, m.ask.uin, m.ask.want));
    if (m.settle) ledger.settle(m.from, m.settle);
  };
  /** Handles the oldest message; returns false when there was none. */
  const deliverOne = async () => {
    const m = queue.shift();
    if (m) handle(m);
    await settled();
    return m !== undefined;
  };
  /** Handles messages until none are left (answers lead to new questions). */
  const deliver = async () => {
    while (await deliverOne());
  };
  /** `n` requests on one worker at once, each answered as the ledger would; how many got through. */
  const take = async (worker: number, account: string, n: number) => {
    const all = Promise.all(Array.from({ length: n }, () => limiters[worker].take(account)));
    await deliver();
    return (await all).filter(Boolean).length;
  };
  const settleAll = async () => {
    for (const l of limiters) l.settleDue();
    await deliver();
  };
  return { clock, ledger, limiters, queue, asks, ids, dead, kill, deliverOne, deliver, take, settleAll, close: () => limiters.forEach((l) => l.close()) };
}

const settled = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('RateLedger', () => {
  type Step = [seconds: number, op: (l: RateLedger) => unknown];
  test.each<[string, Step[], unknown]>([
    ['an account first seen is full', [[0, (l) => l.level('a')]], 10],
    ['a grant hands out what was asked for', [[0, (l) => l.grant(0, 'a', 5)]], { granted: 5, waitMs: 0 }],
    [
      'and no more than the bucket holds',
      [
        [0, (l) => l.grant(0, 'a', 8)],
        [0, (l) => l.grant(1, 'a', 8)],
      ],
      { granted: 2, waitMs: 0 },
    ],
    [
      'whole tokens only',
      [
        [0, (l) => l.grant(0, 'a', 9.7)],
        [0, (l) => l.level('a')],
      ],
      1,
    ],
    [
      'empty: says when the next token is there',
      [
        [0, (l) => l.grant(0, 'a', 10)],
        [0, (l) => l.settle(0, { a: 0 })],
        [0.2, (l) => l.grant(1, 'a', 5)],
      ],
      { granted: 0, waitMs: 300 },
    ],
    [
      'tokens held are inside the bucket: it refills around them only',
      [
        [0, (l) => l.grant(0, 'a', 5)],
        [3600, (l) => l.level('a')],
      ],
      5,
    ],
    [
      'settling gives back what was not used',
      [
        [0, (l) => l.grant(0, 'a', 5)],
        [0, (l) => l.settle(0, { a: 2 })],
        [0, (l) => l.level('a')],
      ],
      7,
    ],
    [
      'and the bucket refills to burst once settled',
      [
        [0, (l) => l.grant(0, 'a', 5)],
        [0, (l) => l.settle(0, { a: 0 })],
        [3600, (l) => l.level('a')],
      ],
      10,
    ],
    [
      'giving back more than was held counts only what was held',
      [
        [0, (l) => l.grant(0, 'a', 5)],
        [0, (l) => l.settle(0, { a: 99 })],
        [0, (l) => l.level('a')],
      ],
      10,
    ],
    [
      'settling what another worker holds does nothing',
      [
        [0, (l) => l.grant(0, 'a', 5)],
        [0, (l) => l.settle(1, { a: 5 })],
        [0, (l) => l.level('a')],
      ],
      5,
    ],
    [
      'odd counts give nothing back',
      [
        [0, (l) => l.grant(0, 'a', 5)],
        [0, (l) => l.settle(0, { a: Number.NaN })],
        [0, (l) => l.level('a')],
      ],
      5,
    ],
    [
      'asking again means the earlier grant was spent',
      [
        [0, (l) => l.grant(0, 'a', 5)],
        [0, (l) => l.grant(0, 'a', 5)],
        [3600, (l) => l.level('a')],
      ],
      5,
    ],
    [
      'a worker forgotten used all it held',
      [
        [0, (l) => l.grant(0, 'a', 5)],
        [0, (l) => l.forget(0)],
        [0, (l) => l.level('a')],
      ],
      5,
    ],
    [
      'and the bucket then refills to burst',
      [
        [0, (l) => l.grant(0, 'a', 5)],
        [0, (l) => l.forget(0)],
        [3600, (l) => l.level('a')],
      ],
      10,
    ],
    [
      'accounts are separate',
      [
        [0, (l) => l.grant(0, 'a', 10)],
        [0, (l) => l.grant(0, 'b', 3)],
      ],
      { granted: 3, waitMs: 0 },
    ],
  ])('%s', (_name, steps, expected) => {
    const clock = new ManualClock();
    const ledger = new RateLedger({ perSecond: 2, burst: 10 }, clock);
    let last: unknown;
    for (const [seconds, op] of steps) {
      clock.advance(seconds);
      last = op(ledger);
    }
    expect(last).toEqual(expected);
  });

  test('bounded: the least recently used accounts are forgotten', () => {
    const ledger = new RateLedger({ perSecond: 1, burst: 5 }, new ManualClock(), 3);
    for (const uin of ['a', 'b', 'c', 'd']) ledger.grant(0, uin, 1);
    expect(ledger.size).toBe(3);
  });
});

describe('SharedRateLimiter (workers and ledger)', () => {
  test('the whole burst across workers, and not one request more', async () => {
    const l = lab();
    const allowed = await Promise.all([l.take(0, 'a', 20), l.take(1, 'a', 20)]);
    expect(allowed[0] + allowed[1]).toBe(10);
    l.close();
  });

  test('one worker alone gets the whole burst (asking again while the ledger has more)', async () => {
    const l = lab();
    expect(await l.take(0, 'a', 15)).toBe(10);
    l.close();
  });

  test('requests waiting at once share one question to the ledger', async () => {
    const l = lab({ perSecond: 2, burst: 10 }, 2);
    expect(await l.take(0, 'a', 5)).toBe(5);
    expect(l.asks[0]).toBe(1);
    l.close();
  });

  test('the ledger empty: refused without asking until it says a token is there', async () => {
    const l = lab({ perSecond: 2, burst: 4 }, 2);
    expect(await l.take(0, 'a', 6)).toBe(4);
    const asked = l.asks[0];
    expect(await l.take(0, 'a', 3)).toBe(0);
    expect(l.asks[0]).toBe(asked);
    l.clock.advance(0.5);
    expect(await l.take(0, 'a', 3)).toBe(1);
    expect(l.asks[0]).toBeGreaterThan(asked);
    l.close();
  });

  test('tokens a worker does not use go back after LEASE_MS and serve the other worker', async () => {
    const l = lab({ perSecond: 0.001, burst: 10 }, 2);
    expect(await l.take(0, 'a', 1)).toBe(1);
    expect(await l.take(1, 'a', 9)).toBe(5);
    l.clock.advance(LEASE_MS / 1000);
    await l.settleAll();
    expect(l.ledger.level('a')).toBeCloseTo(4, 3);
    expect(await l.take(1, 'a', 9)).toBe(4);
    l.close();
  });

  test('over time the account gets its rate across all workers, not a rate per worker', async () => {
    const l = lab({ perSecond: 2, burst: 10 }, 4);
    let allowed = 0;
    for (let tick = 0; tick < 600; tick++) {
      l.clock.advance(0.1);
      await l.settleAll();
      for (let w = 0; w < 4; w++) allowed += await l.take(w, 'a', 5);
    }
    // burst + 60 s x 2/s = 130 with one bucket (4 buckets of their own would give 520)
    expect(allowed).toBeGreaterThanOrEqual(120);
    expect(allowed).toBeLessThanOrEqual(130);
    l.close();
  });

  test('whatever the order messages cross in, no window of time lets through more than burst + rate x its length (property)', async () => {
    const event = fc.oneof(
      fc.record({ kind: fc.constant('take' as const), worker: fc.nat(3), n: fc.integer({ min: 1, max: 6 }) }),
      fc.record({ kind: fc.constant('deliver' as const), n: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ kind: fc.constant('settle' as const), worker: fc.nat(3) }),
      fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 3000 }) }),
      fc.record({ kind: fc.constant('die' as const), worker: fc.nat(3) }),
    );
    const config = { perSecond: 5, burst: 10 };
    let runs = 0;
    let checked = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 4 }), fc.array(event, { maxLength: 80, size: 'large' }), async (workers, events) => {
        runs += 1;
        const l = lab(config, workers);
        const times: number[] = [];
        const pending: Array<Promise<void>> = [];
        // a request answered by a worker that has died since never reached its caller
        const take = (w: number) => {
          const id = l.ids[w];
          return l.limiters[w].take('a').then((ok) => void (ok && !l.dead.has(id) && times.push(l.clock.now())));
        };
        for (const e of events) {
          if (e.kind === 'take') for (let i = 0; i < e.n; i++) pending.push(take(e.worker % workers));
          else if (e.kind === 'deliver') for (let i = 0; i < e.n; i++) await l.deliverOne();
          else if (e.kind === 'settle') l.limiters[e.worker % workers].settleDue();
          else if (e.kind === 'tick') l.clock.advance(e.ms / 1000);
          else l.kill(e.worker % workers);
          await settled();
        }
        await l.deliver();
        await Promise.all(pending);
        l.close();
        times.sort((a, b) => a - b);
        for (let i = 0; i < times.length; i++) {
          for (let j = i; j < times.length; j++) {
            checked += 1;
            if (j - i + 1 > config.burst + (config.perSecond * (times[j] - times[i])) / 1000 + 1e-9) return false;
          }
        }
        return true;
      }),
      { numRuns: Number(process.env.RATE_RUNS ?? 3000) },
    );
    expect(runs).toBe(Number(process.env.RATE_RUNS ?? 3000));
    expect(checked).toBeGreaterThan(1000);
  });

  test('no answer from the ledger within ASK_TIMEOUT_MS: the request goes through (fail open); a late answer still counts', async () => {
    const clock = new ManualClock();
    const ledger = new RateLedger({ perSecond: 2, burst: 10 }, clock);
    const late: Array<() => void> = [];
    const settlements: Tokens[] = [];
    const limiter = new SharedRateLimiter(
      { perSecond: 2, burst: 10 },
      {
        workers: 2,
        clock,
        ask: (uin, want) => new Promise<Grant>((answer) => late.push(() => answer(ledger.grant(0, uin, want)))),
        settle: (unused) => settlements.push(unused),
      },
    );
    const t0 = Date.now();
    expect(await limiter.take('a')).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(ASK_TIMEOUT_MS - 50);
    late.forEach((answer) => answer());
    await settled();
    expect(await limiter.take('a')).toBe(true);
    clock.advance(LEASE_MS / 1000);
    limiter.settleDue();
    expect(settlements).toEqual([{ a: 4 }]);
    limiter.close();
  }, 10_000);

  test('close gives back every lease', async () => {
    const l = lab();
    expect(await l.take(0, 'a', 2)).toBe(2);
    expect(await l.take(0, 'b', 1)).toBe(1);
    l.close();
    expect(l.queue.map((m) => m.settle)).toEqual([{ a: 3, b: 4 }]);
  });

  test('bounded: past maxAccounts the oldest lease is settled and dropped', async () => {
    const clock = new ManualClock();
    const ledger = new RateLedger({ perSecond: 2, burst: 10 }, clock);
    const settlements: Tokens[] = [];
    const limiter = new SharedRateLimiter(
      { perSecond: 2, burst: 10 },
      {
        workers: 2,
        clock,
        maxAccounts: 2,
        ask: async (uin, want) => ledger.grant(0, uin, want),
        settle: (unused) => settlements.push(unused),
      },
    );
    for (const uin of ['a', 'b', 'c']) expect(await limiter.take(uin)).toBe(true);
    expect(settlements).toEqual([{ a: 4 }]);
    limiter.close();
  });
});
