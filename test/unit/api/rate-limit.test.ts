import Redis from 'ioredis';
import { checkRateLimitConfig, MemoryRateLimiter, RateLimitConfig, RateLimiter, RedisRateLimiter, refillMs, takeToken } from '../../../src/api/rate-limit';
import { ManualClock } from '../../../src/common/clock';
import { RedisServer, startRedis } from '../../support/redis';

/**
 * One token per 64 s, burst 3: every step below is a multiple of 8 s, so refills are exact binary
 * fractions in JavaScript and in Lua alike, and the Redis expiry (refill time + 1 s = 193 s of real
 * time) is far longer than the test runs.
 */
const CONFIG: RateLimitConfig = { perSecond: 1 / 64, burst: 3 };

/** [advance the clock by ms, account, expected answer] */
const STEPS: ReadonlyArray<readonly [number, string, boolean]> = [
  [0, 'a', true],
  [0, 'a', true],
  [0, 'a', true],
  [0, 'a', false],
  [0, 'b', true],
  [56_000, 'a', false],
  [8_000, 'a', true],
  [0, 'a', false],
  [32_000, 'a', false],
  [32_000, 'a', true],
  [0, 'a', false],
  [0, 'b', true],
  [0, 'b', true],
  [0, 'b', true],
  [0, 'b', false],
  [3_600_000, 'a', true],
  [0, 'a', true],
  [0, 'a', true],
  [0, 'a', false],
  [-600_000, 'a', false],
  [0, 'c', true],
];

async function run(limiter: RateLimiter, clock: ManualClock, prefix: string): Promise<boolean[]> {
  const out: boolean[] = [];
  for (const [ms, account] of STEPS) {
    clock.advance(ms / 1000);
    out.push(await limiter.take(`${prefix}${account}`));
  }
  return out;
}

describe('takeToken (pure)', () => {
  test.each<[string, Parameters<typeof takeToken>[0], number, boolean, number]>([
    ['a missing bucket is full', undefined, 1000, true, 2],
    ['an empty bucket refuses', { tokens: 0, at: 1000 }, 1000, false, 0],
    ['refill by elapsed time', { tokens: 0, at: 0 }, 64_000, true, 0],
    ['never above burst', { tokens: 2, at: 0 }, 10_000_000, true, 2],
    ['time running backwards refills nothing', { tokens: 0.5, at: 5000 }, 1000, false, 0.5],
  ])('%s', (_name, bucket, now, allowed, tokens) => {
    const r = takeToken(bucket, now, CONFIG);
    expect(r.allowed).toBe(allowed);
    expect(r.bucket.tokens).toBe(tokens);
    expect(r.bucket.at).toBe(Math.max(now, bucket?.at ?? now));
  });

  test.each<[RateLimitConfig, boolean]>([
    [{ perSecond: 100, burst: 200 }, true],
    [{ perSecond: 0.5, burst: 1 }, true],
    [{ perSecond: 0, burst: 1 }, false],
    [{ perSecond: -1, burst: 1 }, false],
    [{ perSecond: Number.NaN, burst: 1 }, false],
    [{ perSecond: 1, burst: 0 }, false],
    [{ perSecond: 1, burst: 1.5 }, false],
  ])('config %p valid=%p', (c, ok) => {
    if (ok) expect(checkRateLimitConfig(c)).toBe(c);
    else expect(() => checkRateLimitConfig(c)).toThrow(RangeError);
  });

  test('refillMs is the time an empty bucket takes to fill', () => {
    expect(refillMs(CONFIG)).toBe(192_000);
    expect(refillMs({ perSecond: 1000, burst: 2000 })).toBe(2000);
  });
});

describe('MemoryRateLimiter', () => {
  test('follows the step table', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    expect(await run(new MemoryRateLimiter(CONFIG, clock), clock, '')).toEqual(STEPS.map(([, , e]) => e));
  });

  test('beyond maxAccounts full buckets are forgotten first, then the earliest added', async () => {
    const clock = new ManualClock();
    const limiter = new MemoryRateLimiter({ perSecond: 1, burst: 1 }, clock, 10);
    for (let i = 0; i < 10; i++) await limiter.take(`old${i}`);
    clock.advance(1);
    await limiter.take('new');
    expect(limiter.size).toBe(1);
    for (let i = 0; i < 20; i++) await limiter.take(`busy${i}`);
    expect(limiter.size).toBeLessThanOrEqual(10);
    expect(await limiter.take('busy19')).toBe(false);
  });
});

describe('RedisRateLimiter', () => {
  let server: RedisServer;
  const clients: Redis[] = [];

  async function connect(port: number): Promise<Redis> {
    const c = new Redis({ host: '127.0.0.1', port, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, disconnectTimeout: 50 });
    c.on('error', () => undefined);
    clients.push(c);
    await c.connect();
    return c;
  }

  beforeAll(async () => {
    server = await startRedis({ persistent: false });
  });

  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await server?.stop();
  });

  test('follows the same step table as the in-memory limiter', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const limiter = new RedisRateLimiter(await connect(server.port), CONFIG, { clock });
    expect(await run(limiter, clock, 'table:')).toEqual(STEPS.map(([, , e]) => e));
    expect(limiter.failOpenCount).toBe(0);
  });

  test('two nodes share one bucket per account', async () => {
    const clock = new ManualClock();
    const nodeA = new RedisRateLimiter(await connect(server.port), CONFIG, { clock });
    const nodeB = new RedisRateLimiter(await connect(server.port), CONFIG, { clock });
    expect([
      await nodeA.take('shared'),
      await nodeB.take('shared'),
      await nodeA.take('shared'),
      await nodeB.take('shared'),
      await nodeA.take('shared'),
    ]).toEqual([true, true, true, false, false]);
  });

  test('buckets expire once they would be full again, under the configured prefix', async () => {
    const redis = await connect(server.port);
    await new RedisRateLimiter(redis, CONFIG, { keyPrefix: 'rl-test:' }).take('10001');
    const ttl = await redis.pttl('rl-test:10001');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(refillMs(CONFIG) + 1000);
  });

  test('a Redis error fails open and is counted', async () => {
    const redis = await connect(server.port);
    await redis.set('kms:ratelimit:wrongtype', 'a string, not a hash');
    const errors: unknown[] = [];
    const limiter = new RedisRateLimiter(redis, { perSecond: 1, burst: 1 }, { onError: (e) => errors.push(e) });
    expect([await limiter.take('wrongtype'), await limiter.take('wrongtype')]).toEqual([true, true]);
    expect(limiter.failOpenCount).toBe(2);
    expect(errors).toHaveLength(2);
  });

  test('Redis gone fails open and is counted', async () => {
    const own = await startRedis({ persistent: false });
    const redis = await connect(own.port);
    const errors: unknown[] = [];
    const limiter = new RedisRateLimiter(redis, { perSecond: 1, burst: 1 }, { onError: (e) => errors.push(e) });
    expect([await limiter.take('gone'), await limiter.take('gone')]).toEqual([true, false]);
    await own.stop();
    expect([await limiter.take('gone'), await limiter.take('gone')]).toEqual([true, true]);
    expect(limiter.failOpenCount).toBe(2);
    expect(errors).toHaveLength(2);
  });
});
