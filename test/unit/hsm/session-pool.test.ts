import { PoolExhaustedError } from '../../../src/hsm/errors';
import { SessionPool } from '../../../src/hsm/session-pool';

/** A pool of numbered fake sessions that records opens and closes. */
function setup(cap: number, waitMs = 50) {
  let next = 1;
  const opened: number[] = [];
  const closed: number[] = [];
  const pool = new SessionPool<number>(
    'member-x',
    () => {
      const s = next++;
      opened.push(s);
      return s;
    },
    (s) => closed.push(s),
    cap,
    waitMs,
  );
  return { pool, opened, closed };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves to 'pending' if `p` has not settled after pending I/O and timers due now. */
async function state<T>(p: Promise<T>): Promise<'pending' | 'resolved' | 'rejected'> {
  let s: 'pending' | 'resolved' | 'rejected' = 'pending';
  p.then(
    () => (s = 'resolved'),
    () => (s = 'rejected'),
  );
  await sleep(0);
  return s;
}

describe('SessionPool: growth', () => {
  test('opens nothing until asked', () => {
    const { pool, opened } = setup(4);
    expect(pool.size).toBe(0);
    expect(pool.busy).toBe(0);
    expect(opened).toEqual([]);
  });

  test.each([1, 2, 5])('grows lazily up to cap %d, then tryAcquire returns undefined', (cap) => {
    const { pool, opened } = setup(cap);
    const got: number[] = [];
    for (let i = 1; i <= cap; i++) {
      const s = pool.tryAcquire();
      expect(s).toBeDefined();
      got.push(s as number);
      expect(pool.size).toBe(i);
      expect(pool.busy).toBe(i);
    }
    expect(new Set(got).size).toBe(cap);
    expect(pool.tryAcquire()).toBeUndefined();
    expect(pool.tryAcquire()).toBeUndefined();
    expect(pool.size).toBe(cap);
    expect(opened).toHaveLength(cap);
  });

  test('a released session is reused instead of opening another', () => {
    const { pool, opened } = setup(3);
    const s = pool.tryAcquire() as number;
    pool.release(s);
    expect(pool.busy).toBe(0);
    expect(pool.size).toBe(1);
    expect(pool.tryAcquire()).toBe(s);
    expect(opened).toEqual([s]);
  });

  test('an openSession failure propagates and does not count as open', () => {
    let fail = true;
    const pool = new SessionPool<number>(
      'm',
      () => {
        if (fail) throw new Error('CKR_SESSION_COUNT');
        return 9;
      },
      () => undefined,
      2,
      50,
    );
    expect(() => pool.tryAcquire()).toThrow('CKR_SESSION_COUNT');
    expect(pool.size).toBe(0);
    fail = false;
    expect(pool.tryAcquire()).toBe(9);
    expect(pool.size).toBe(1);
  });
});

describe('SessionPool: waiting', () => {
  test('acquire resolves immediately while there is room', async () => {
    const { pool } = setup(2);
    await expect(pool.acquire()).resolves.toBe(1);
    await expect(pool.acquire()).resolves.toBe(2);
  });

  test('acquire waits for a busy pool and gets the released session', async () => {
    const { pool, opened } = setup(1, 5_000);
    const s = pool.tryAcquire() as number;
    const waiting = pool.acquire();
    expect(await state(waiting)).toBe('pending');
    pool.release(s);
    await expect(waiting).resolves.toBe(s);
    expect(opened).toEqual([s]);
    expect(pool.busy).toBe(1);
  });

  test('waiters are served in order', async () => {
    const { pool } = setup(2, 5_000);
    const a = pool.tryAcquire() as number;
    const b = pool.tryAcquire() as number;
    const first = pool.acquire();
    const second = pool.acquire();
    pool.release(b);
    await expect(first).resolves.toBe(b);
    expect(await state(second)).toBe('pending');
    pool.release(a);
    await expect(second).resolves.toBe(a);
  });

  test('acquire rejects with PoolExhaustedError after waitMs', async () => {
    const { pool } = setup(1, 50);
    pool.tryAcquire();
    const started = Date.now();
    const waiting = pool.acquire();
    await expect(waiting).rejects.toBeInstanceOf(PoolExhaustedError);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(45);
    expect(waited).toBeLessThan(2_000);
    await expect(waiting).rejects.toThrow(/member-x/);
  });

  test('a timed-out waiter is gone: a later release goes to the next waiter or the idle list', async () => {
    const { pool } = setup(1, 50);
    const s = pool.tryAcquire() as number;
    await expect(pool.acquire()).rejects.toBeInstanceOf(PoolExhaustedError);
    pool.release(s);
    expect(pool.busy).toBe(0);
    expect(pool.tryAcquire()).toBe(s);
  });

  test('a served waiter does not time out later', async () => {
    const { pool } = setup(1, 50);
    const s = pool.tryAcquire() as number;
    const waiting = pool.acquire();
    pool.release(s);
    await expect(waiting).resolves.toBe(s);
    await sleep(80);
    expect(pool.busy).toBe(1);
    pool.release(s);
    expect(pool.busy).toBe(0);
  });
});

describe('SessionPool: discard and reset', () => {
  test('discard closes the session and lowers size', () => {
    const { pool, closed } = setup(2);
    const a = pool.tryAcquire() as number;
    const b = pool.tryAcquire() as number;
    pool.discard(a);
    expect(closed).toEqual([a]);
    expect(pool.size).toBe(1);
    expect(pool.busy).toBe(1);
    const c = pool.tryAcquire();
    expect(c).toBeDefined();
    expect(c).not.toBe(a);
    expect(c).not.toBe(b);
    expect(pool.size).toBe(2);
  });

  test('discard lets a waiter get a freshly opened session', async () => {
    const { pool, opened, closed } = setup(1, 5_000);
    const s = pool.tryAcquire() as number;
    const waiting = pool.acquire();
    expect(await state(waiting)).toBe('pending');
    pool.discard(s);
    const fresh = await waiting;
    expect(fresh).not.toBe(s);
    expect(opened).toEqual([s, fresh]);
    expect(closed).toEqual([s]);
    expect(pool.size).toBe(1);
    expect(pool.busy).toBe(1);
  });

  test('a closeSession failure does not stop discard', () => {
    const pool = new SessionPool<number>(
      'm',
      (() => {
        let n = 0;
        return () => ++n;
      })(),
      () => {
        throw new Error('CKR_SESSION_HANDLE_INVALID');
      },
      1,
      50,
    );
    const s = pool.tryAcquire() as number;
    expect(() => pool.discard(s)).not.toThrow();
    expect(pool.size).toBe(0);
    expect(pool.tryAcquire()).toBe(2);
  });

  test('if the fresh session cannot be opened the waiter times out', async () => {
    let opens = 0;
    const pool = new SessionPool<number>(
      'm',
      () => {
        if (++opens > 1) throw new Error('CKR_DEVICE_ERROR');
        return opens;
      },
      () => undefined,
      1,
      50,
    );
    const s = pool.tryAcquire() as number;
    const waiting = pool.acquire();
    expect(() => pool.discard(s)).not.toThrow();
    await expect(waiting).rejects.toBeInstanceOf(PoolExhaustedError);
  });

  test('reset rejects every waiter with the given error and forgets all sessions', async () => {
    const { pool, closed } = setup(2, 5_000);
    pool.tryAcquire();
    pool.tryAcquire();
    const waiters = [pool.acquire(), pool.acquire(), pool.acquire()];
    const reason = new Error('module re-initialised');
    pool.reset(reason);
    const results = await Promise.allSettled(waiters);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      if (r.status === 'rejected') expect(r.reason).toBe(reason);
    }
    expect(pool.size).toBe(0);
    expect(pool.busy).toBe(0);
    // Forgotten, not closed: the module already dropped them.
    expect(closed).toEqual([]);
    // The pool grows again from scratch.
    expect(pool.tryAcquire()).toBe(3);
    expect(pool.size).toBe(1);
  });

  test('reset clears waiter timers: an old timeout never removes a newer waiter', async () => {
    const { pool } = setup(1, 300);
    pool.tryAcquire();
    const old = pool.acquire();
    await sleep(250);
    const reason = new Error('closed');
    pool.reset(reason);
    await expect(old).rejects.toBe(reason);
    const s = pool.tryAcquire() as number;
    const waiting = pool.acquire();
    // The old waiter's timer would have fired by now (300 ms after it was created); the new one's is 200 ms away.
    await sleep(100);
    expect(await state(waiting)).toBe('pending');
    pool.release(s);
    await expect(waiting).resolves.toBe(s);
  });
});

describe('sessions from before a reset', () => {
  test('releasing or discarding them is ignored: counts stay sane and the cap holds', () => {
    const { pool, closed } = setup(2);
    const a = pool.tryAcquire()!;
    const b = pool.tryAcquire()!;
    pool.reset(new Error('module re-initialised'));
    pool.release(a);
    pool.discard(b);
    expect(closed).toEqual([]);
    expect(pool.size).toBe(0);
    expect(pool.busy).toBe(0);
    const c = pool.tryAcquire()!;
    const d = pool.tryAcquire()!;
    expect([c, d]).not.toContain(a);
    expect([c, d]).not.toContain(b);
    expect(pool.tryAcquire()).toBeUndefined();
    expect(pool.size).toBe(2);
  });
});
