import { ManualClock } from '../../../src/common/clock';
import { Claim, MemoryReplayGuard, ReplayCache, replayKey, SharedReplayGuard, signatureExpiry } from '../../../src/api/replay-guard';

const claim = (key: string, expiresAt: number, over: Partial<Claim> = {}): Claim => ({ key, expiresAt, repeatable: false, ...over });

const SIG = Buffer.alloc(32, 7);

describe('ReplayCache', () => {
  test('a key is fresh once, then used until it expires, then fresh again', () => {
    const clock = new ManualClock(1_000_000);
    const cache = new ReplayCache(10, clock);
    const expires = clock.now() + 300_000;
    expect(cache.claim(claim('k', expires))).toBe('fresh');
    expect(cache.claim(claim('k', expires))).toBe('used');
    clock.advance(299);
    expect(cache.claim(claim('k', expires))).toBe('used');
    clock.advance(1);
    expect(cache.claim(claim('k', expires + 300_000))).toBe('fresh');
    expect(cache.size).toBe(1);
  });

  test('expired entries are dropped (the size follows the window, not the history)', () => {
    const clock = new ManualClock(1_000_000);
    const cache = new ReplayCache(100_000, clock);
    for (let i = 0; i < 1_000; i++) {
      cache.claim(claim(`k${i}`, clock.now() + 10_000));
      clock.set(clock.now() + 100);
    }
    // 10 s at 10 a second, expiry rounded up to the whole second
    expect(cache.size).toBeLessThanOrEqual(111);
    clock.advance(3_600);
    cache.claim(claim('last', clock.now() + 1_000));
    expect(cache.size).toBe(1);
  });

  test('full of live entries: "full", nothing evicted (an evicted signature could be replayed)', () => {
    const clock = new ManualClock(1_000_000);
    const cache = new ReplayCache(3, clock);
    for (const k of ['a', 'b', 'c']) expect(cache.claim(claim(k, clock.now() + 60_000))).toBe('fresh');
    expect(cache.claim(claim('d', clock.now() + 60_000))).toBe('full');
    for (const k of ['a', 'b', 'c']) expect(cache.claim(claim(k, clock.now() + 60_000))).toBe('used');
  });

  test('a repeatable use (an effect-free read) is served on a used signature; nothing else is, also not after a read', () => {
    const clock = new ManualClock(1_000_000);
    const cache = new ReplayCache(10, clock);
    const t = clock.now() + 60_000;
    expect(cache.claim(claim('d', t, { repeatable: true }))).toBe('fresh');
    expect(cache.claim(claim('d', t, { repeatable: true }))).toBe('repeat');
    expect(cache.claim(claim('d', t))).toBe('used');
    expect(cache.claim(claim('e', t))).toBe('fresh');
    expect(cache.claim(claim('e', t))).toBe('used');
    expect(cache.claim(claim('e', t, { repeatable: true }))).toBe('repeat');
  });

  test('an already expired signature is not recorded', () => {
    const clock = new ManualClock(1_000_000);
    const cache = new ReplayCache(3, clock);
    expect(cache.claim(claim('old', clock.now() - 1))).toBe('fresh');
    expect(cache.size).toBe(0);
  });
});

describe('keys and expiry', () => {
  test('the key depends on SecretId and signature and is not the signature', () => {
    expect(replayKey('AKIDa', SIG)).not.toBe(replayKey('AKIDb', SIG));
    expect(replayKey('AKIDa', SIG)).not.toContain(SIG.toString('hex'));
    expect(replayKey('AKIDa', SIG)).toBe(replayKey('AKIDa', Buffer.from(SIG)));
  });

  test('a signature expires when its timestamp leaves the window (plus a second)', () => {
    expect(signatureExpiry(1_700_000_000, 300)).toBe(1_700_000_301_000);
  });
});

describe('MemoryReplayGuard', () => {
  test('full is refused as unavailable (fail closed)', async () => {
    const guard = new MemoryReplayGuard(new ReplayCache(1));
    expect(await guard.claim(claim('a', Date.now() + 60_000))).toBe('fresh');
    expect(await guard.claim(claim('b', Date.now() + 60_000))).toBe('unavailable');
  });
});

describe('SharedReplayGuard (a worker)', () => {
  test('claims of one turn go in one question; answers come back in order', async () => {
    const supervisor = new ReplayCache();
    const asked: Claim[][] = [];
    const guard = new SharedReplayGuard({ ask: async (claims) => (asked.push(claims), claims.map((c) => supervisor.claim(c))) });
    supervisor.claim(claim('seen-elsewhere', Date.now() + 60_000));
    const answers = await Promise.all(['x', 'y', 'seen-elsewhere', 'x'].map((k) => guard.claim(claim(k, Date.now() + 60_000))));
    expect(answers).toEqual(['fresh', 'fresh', 'used', 'used']);
    expect(asked).toHaveLength(1);
    expect(asked[0]?.map((c) => c.key)).toEqual(['x', 'y', 'seen-elsewhere']);
  });

  test('no answer from the supervisor (or a full cache there) is unavailable', async () => {
    const silent = new SharedReplayGuard({ ask: () => Promise.reject(new Error('no replay check within 1000 ms')) });
    expect(await silent.claim(claim('k', Date.now() + 60_000))).toBe('unavailable');
    const full = new SharedReplayGuard({ ask: async (claims) => claims.map(() => 'full' as const) });
    expect(await full.claim(claim('k', Date.now() + 60_000))).toBe('unavailable');
  });
});
