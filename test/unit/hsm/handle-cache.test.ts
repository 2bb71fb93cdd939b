import { HandleCache } from '../../../src/hsm/handle-cache';

/** A cache of numeric handles that records every destroy call, with a manual clock. */
function setup(maxEntries: number, ttlMs = 60_000) {
  const destroyed: number[] = [];
  const clock = { t: 1_000 };
  const cache = new HandleCache<number>(
    maxEntries,
    ttlMs,
    (h) => destroyed.push(h),
    () => clock.t,
  );
  return { cache, destroyed, clock };
}

/** A promise with its resolve/reject exposed. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('HandleCache: LRU', () => {
  test('put beyond capacity evicts the least recently inserted, destroying it once', () => {
    const { cache, destroyed } = setup(3);
    cache.put('a', 1);
    cache.put('b', 2);
    cache.put('c', 3);
    expect(destroyed).toEqual([]);
    expect(cache.size).toBe(3);
    cache.put('d', 4);
    expect(destroyed).toEqual([1]);
    expect(cache.size).toBe(3);
    expect(cache.get('a')).toBeUndefined();
    expect([cache.get('b'), cache.get('c'), cache.get('d')]).toEqual([2, 3, 4]);
    expect(destroyed).toEqual([1]);
  });

  test.each<[string, string[], number[], string[]]>([
    // [name, keys read after inserting a, b, c; handles destroyed by inserting d, e; keys left]
    ['no reads', [], [1, 2], ['c', 'd', 'e']],
    ['a read', ['a'], [2, 3], ['a', 'd', 'e']],
    ['a and b read', ['a', 'b'], [3, 1], ['b', 'd', 'e']],
    ['c, b, a read', ['c', 'b', 'a'], [3, 2], ['a', 'd', 'e']],
    ['a read twice, then c', ['a', 'a', 'c'], [2, 1], ['c', 'd', 'e']],
    ['a missing key read', ['zz'], [1, 2], ['c', 'd', 'e']],
  ])('eviction order with %s', (_name, reads, expectedDestroyed, left) => {
    const { cache, destroyed } = setup(3);
    cache.put('a', 1);
    cache.put('b', 2);
    cache.put('c', 3);
    for (const k of reads) cache.get(k);
    cache.put('d', 4);
    cache.put('e', 5);
    expect(destroyed).toEqual(expectedDestroyed);
    for (const k of ['a', 'b', 'c', 'd', 'e']) {
      if (left.includes(k)) expect(cache.get(k)).toBeDefined();
      else expect(cache.get(k)).toBeUndefined();
    }
    // Reads above may reorder but never destroy.
    expect(destroyed).toEqual(expectedDestroyed);
  });

  test('each evicted handle is destroyed exactly once over a long run', () => {
    const { cache, destroyed } = setup(5);
    for (let i = 0; i < 100; i++) cache.put(`k${i}`, i);
    expect(destroyed).toEqual(Array.from({ length: 95 }, (_, i) => i));
    expect(new Set(destroyed).size).toBe(destroyed.length);
    expect(cache.size).toBe(5);
  });

  test('replacing a key destroys the old handle and keeps the new one', () => {
    const { cache, destroyed } = setup(3);
    cache.put('a', 1);
    cache.put('a', 2);
    expect(destroyed).toEqual([1]);
    expect(cache.get('a')).toBe(2);
    expect(cache.size).toBe(1);
  });

  test('evict destroys once; evicting again or an unknown key does nothing', () => {
    const { cache, destroyed } = setup(3);
    cache.put('a', 1);
    cache.evict('a');
    cache.evict('a');
    cache.evict('nope');
    expect(destroyed).toEqual([1]);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  test('a throwing destroy callback does not break eviction', () => {
    const calls: number[] = [];
    const cache = new HandleCache<number>(1, 60_000, (h) => {
      calls.push(h);
      throw new Error('object already gone');
    });
    cache.put('a', 1);
    expect(() => cache.put('b', 2)).not.toThrow();
    expect(calls).toEqual([1]);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('b')).toBe(2);
  });
});

describe('HandleCache: TTL', () => {
  test('an entry lives until its TTL and is destroyed on the first read after', () => {
    const { cache, destroyed, clock } = setup(10, 500);
    cache.put('a', 1);
    clock.t += 499;
    expect(cache.get('a')).toBe(1);
    clock.t += 1;
    expect(cache.get('a')).toBeUndefined();
    expect(destroyed).toEqual([1]);
    expect(cache.size).toBe(0);
    expect(cache.get('a')).toBeUndefined();
    expect(destroyed).toEqual([1]);
  });

  test('reads do not extend the TTL', () => {
    const { cache, clock } = setup(10, 500);
    cache.put('a', 1);
    for (let i = 0; i < 4; i++) {
      clock.t += 100;
      expect(cache.get('a')).toBe(1);
    }
    clock.t += 100;
    expect(cache.get('a')).toBeUndefined();
  });

  test('re-putting restarts the TTL', () => {
    const { cache, destroyed, clock } = setup(10, 500);
    cache.put('a', 1);
    clock.t += 400;
    cache.put('a', 2);
    clock.t += 400;
    expect(cache.get('a')).toBe(2);
    expect(destroyed).toEqual([1]);
  });

  test('each entry has its own expiry', () => {
    const { cache, destroyed, clock } = setup(10, 500);
    cache.put('a', 1);
    clock.t += 300;
    cache.put('b', 2);
    clock.t += 250;
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('b')).toBe(2);
    clock.t += 250;
    expect(cache.get('b')).toBeUndefined();
    expect(destroyed).toEqual([1, 2]);
  });

  test('getOrLoad reloads an expired entry', async () => {
    const { cache, destroyed, clock } = setup(10, 500);
    let loads = 0;
    const load = async () => ++loads * 10;
    expect(await cache.getOrLoad('a', load)).toBe(10);
    clock.t += 100;
    expect(await cache.getOrLoad('a', load)).toBe(10);
    expect(loads).toBe(1);
    clock.t += 400;
    expect(await cache.getOrLoad('a', load)).toBe(20);
    expect(loads).toBe(2);
    expect(destroyed).toEqual([10]);
  });
});

describe('HandleCache: getOrLoad', () => {
  test('10 concurrent calls share one load', async () => {
    const { cache } = setup(10);
    const gate = deferred<number>();
    const loader = jest.fn(() => gate.promise);
    const calls = Array.from({ length: 10 }, () => cache.getOrLoad('k', loader));
    expect(loader).toHaveBeenCalledTimes(1);
    gate.resolve(42);
    expect(await Promise.all(calls)).toEqual(Array(10).fill(42));
    expect(loader).toHaveBeenCalledTimes(1);
    expect(cache.get('k')).toBe(42);
    expect(cache.size).toBe(1);
    // Later calls hit the cache.
    expect(await cache.getOrLoad('k', loader)).toBe(42);
    expect(loader).toHaveBeenCalledTimes(1);
  });

  test('different keys load independently', async () => {
    const { cache } = setup(10);
    const loader = jest.fn(async (v: number) => v);
    const [a, b] = await Promise.all([cache.getOrLoad('a', () => loader(1)), cache.getOrLoad('b', () => loader(2))]);
    expect([a, b]).toEqual([1, 2]);
    expect(loader).toHaveBeenCalledTimes(2);
  });

  test('a failing load is shared by its concurrent callers, not cached, and the next call retries', async () => {
    const { cache, destroyed } = setup(10);
    const gate = deferred<number>();
    const failing = jest.fn(() => gate.promise);
    const calls = Array.from({ length: 5 }, () => cache.getOrLoad('k', failing));
    gate.reject(new Error('unwrap failed'));
    const results = await Promise.allSettled(calls);
    expect(results.map((r) => r.status)).toEqual(Array(5).fill('rejected'));
    for (const r of results) if (r.status === 'rejected') expect((r.reason as Error).message).toBe('unwrap failed');
    expect(failing).toHaveBeenCalledTimes(1);
    expect(cache.size).toBe(0);
    expect(cache.get('k')).toBeUndefined();

    const ok = jest.fn(async () => 7);
    expect(await cache.getOrLoad('k', ok)).toBe(7);
    expect(ok).toHaveBeenCalledTimes(1);
    expect(cache.get('k')).toBe(7);
    expect(destroyed).toEqual([]);
  });

  test('a loader that throws synchronously propagates and is not remembered', async () => {
    const { cache } = setup(10);
    await expect(
      cache.getOrLoad('k', () => {
        throw new Error('sync failure');
      }),
    ).rejects.toThrow('sync failure');
    expect(await cache.getOrLoad('k', async () => 3)).toBe(3);
  });

  test('loaded entries take part in LRU eviction', async () => {
    const { cache, destroyed } = setup(2);
    await cache.getOrLoad('a', async () => 1);
    await cache.getOrLoad('b', async () => 2);
    await cache.getOrLoad('c', async () => 3);
    expect(destroyed).toEqual([1]);
    expect(cache.get('a')).toBeUndefined();
  });
});

describe('HandleCache: clear', () => {
  test('clear(true) destroys every handle exactly once', () => {
    const { cache, destroyed } = setup(10);
    cache.put('a', 1);
    cache.put('b', 2);
    cache.put('c', 3);
    cache.clear(true);
    expect([...destroyed].sort()).toEqual([1, 2, 3]);
    expect(cache.size).toBe(0);
    for (const k of ['a', 'b', 'c']) expect(cache.get(k)).toBeUndefined();
    cache.clear(true);
    expect(destroyed).toHaveLength(3);
  });

  test('clear(false) forgets every handle without destroying any', () => {
    const { cache, destroyed } = setup(10);
    cache.put('a', 1);
    cache.put('b', 2);
    cache.clear(false);
    expect(destroyed).toEqual([]);
    expect(cache.size).toBe(0);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('b')).toBeUndefined();
    // Nothing forgotten is destroyed later either.
    cache.put('c', 3);
    cache.clear(true);
    expect(destroyed).toEqual([3]);
  });
});

describe('clear() while an unwrap is in flight (module reset mid-load)', () => {
  test('the old load does not fill the cache and a new request starts a new load', async () => {
    const { cache } = setup(10);
    const first = deferred<number>();
    const p1 = cache.getOrLoad('k', () => first.promise);
    cache.clear(false);
    let loads = 0;
    const p2 = cache.getOrLoad('k', async () => {
      loads++;
      return 2;
    });
    first.resolve(1);
    expect(await p1).toBe(1);
    expect(await p2).toBe(2);
    expect(loads).toBe(1);
    expect(cache.get('k')).toBe(2);
  });

  test('putting the same handle again under its key does not destroy it', () => {
    const { cache, destroyed } = setup(10);
    cache.put('k', 7);
    cache.put('k', 7);
    expect(destroyed).toEqual([]);
    expect(cache.get('k')).toBe(7);
  });
});
