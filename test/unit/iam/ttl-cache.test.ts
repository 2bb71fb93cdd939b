import { ManualClock } from '../../../src/common/clock';
import { TtlCache } from '../../../src/iam/ttl-cache';

describe('TtlCache', () => {
  function setUp(ttlMs = 5000, max = 3) {
    const clock = new ManualClock();
    const cache = new TtlCache<string>(ttlMs, max, clock);
    const loads: string[] = [];
    const loader = (key: string, value: string | undefined) => () => {
      loads.push(key);
      return Promise.resolve(value);
    };
    const load = (key: string, value = `v-${key}`) => loader(key, value);
    const absent = (key: string) => loader(key, undefined);
    return { clock, cache, loads, load, absent };
  }

  test('a value is reused within the TTL and reloaded after it', async () => {
    const { clock, cache, loads, load } = setUp();
    expect(await cache.get('a', load('a'))).toBe('v-a');
    clock.advance(4.999);
    expect(await cache.get('a', load('a'))).toBe('v-a');
    expect(loads).toEqual(['a']);
    clock.advance(0.001);
    expect(await cache.get('a', load('a', 'new'))).toBe('new');
    expect(loads).toEqual(['a', 'a']);
  });

  test('one load in flight per key', async () => {
    const { cache, loads, load } = setUp();
    const [x, y] = await Promise.all([cache.get('a', load('a')), cache.get('a', load('a'))]);
    expect([x, y]).toEqual(['v-a', 'v-a']);
    expect(loads).toEqual(['a']);
  });

  test('absent values and failures are not kept', async () => {
    const { cache, loads, load, absent } = setUp();
    expect(await cache.get('a', absent('a'))).toBeUndefined();
    expect(await cache.get('a', load('a'))).toBe('v-a');
    await expect(cache.get('b', () => Promise.reject(new Error('store down')))).rejects.toThrow('store down');
    expect(await cache.get('b', load('b'))).toBe('v-b');
    expect(loads).toEqual(['a', 'a', 'b']);
  });

  test('bounded: the least recently used entry goes first', async () => {
    const { cache, loads, load } = setUp(5000, 2);
    await cache.get('a', load('a'));
    await cache.get('b', load('b'));
    await cache.get('a', load('a'));
    await cache.get('c', load('c'));
    expect(cache.size).toBe(2);
    await cache.get('a', load('a'));
    await cache.get('b', load('b'));
    expect(loads).toEqual(['a', 'b', 'c', 'b']);
  });

  test('delete forgets at once; a load in flight then does not come back', async () => {
    const { cache, loads, load } = setUp();
    let release: (v: string) => void = () => undefined;
    const pending = cache.get(
      'a',
      () =>
        new Promise<string>((r) => {
          release = r;
        }),
    );
    cache.delete('a');
    release('old');
    expect(await pending).toBe('old');
    expect(await cache.get('a', load('a', 'fresh'))).toBe('fresh');
    cache.clear();
    expect(cache.size).toBe(0);
    expect(loads).toEqual(['a']);
  });
});
