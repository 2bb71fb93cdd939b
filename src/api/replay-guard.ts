/**
 * The replay cache: a signature is good for one request. Every signature that verified is claimed
 * here under a hash of SecretId and signature, until its timestamp leaves the ±5 minute window. A
 * second claim is refused unless the front-end calls that use repeatable (reads with no effect and
 * no secret or fresh cryptographic output). Because the SDKs sign only content-type and host, this
 * is also what stops a captured request from being re-aimed at another X-TC-Action or X-TC-Region:
 * the re-aimed copy is a second use. Protocol-neutral: any front-end that verifies signatures
 * claims them here.
 *
 * Three guards of one interface: in this process (ReplayCache behind MemoryReplayGuard); on the
 * supervisor for worker processes (SharedReplayGuard, one IPC question per batch of claims); and in
 * Redis for several nodes (RedisReplayGuard, `SET NX PX`, after this process's own cache). When the
 * authority cannot answer, the claim is `unavailable` and the request is refused (fail closed).
 */
import { createHash } from 'node:crypto';
import type Redis from 'ioredis';
import { withDeadline } from '../common/deadline';
import { Clock, systemClock } from '../common/clock';

/**
 * fresh: first use, now recorded; repeat: seen before, and this use is repeatable; used: seen before
 * within its window; unavailable: cannot tell (refuse).
 */
export type ClaimResult = 'fresh' | 'repeat' | 'used' | 'unavailable';
/** What the cache itself answers (`full`: no room, nothing evicted). */
export type CacheAnswer = 'fresh' | 'repeat' | 'used' | 'full';

export interface Claim {
  key: string;
  /** Clock ms after which the signature is refused anyway. */
  expiresAt: number;
  /** This use may be served even if the signature was used before. */
  repeatable: boolean;
}

export interface ReplayGuard {
  claim(c: Claim): Promise<ClaimResult>;
}

function seen(c: Claim): 'repeat' | 'used' {
  return c.repeatable ? 'repeat' : 'used';
}

/** Entries a cache holds by default (about 140 bytes each): 5 minutes at 6,000 requests a second. */
export const DEFAULT_REPLAY_ENTRIES = 2_000_000;

/** The cache key: a hash, so neither memory nor Redis holds a usable signature. */
export function replayKey(secretId: string, signature: Buffer): string {
  return createHash('sha256').update(secretId).update('\0').update(signature).digest().subarray(0, 18).toString('base64');
}

/** When a TC3 signature made at `timestampSeconds` stops being accepted (clock ms), with a second to spare. */
export function signatureExpiry(timestampSeconds: number, windowSeconds: number): number {
  return (timestampSeconds + windowSeconds + 1) * 1000;
}

/**
 * Keys until they expire, bounded. Expiry is by whole seconds: each second's keys are kept
 * together and dropped together. Full (every entry still live) answers `full`: nothing is evicted,
 * since an evicted signature could be replayed.
 */
export class ReplayCache {
  private readonly expiries = new Map<string, number>();
  private readonly bySecond = new Map<number, string[]>();
  private sweptTo = -1;

  constructor(
    private readonly maxEntries = DEFAULT_REPLAY_ENTRIES,
    private readonly clock: Clock = systemClock,
  ) {
    if (!(Number.isInteger(maxEntries) && maxEntries >= 1)) throw new RangeError('replay cache size must be a positive integer');
  }

  get size(): number {
    return this.expiries.size;
  }

  claim(c: Claim): CacheAnswer {
    const { key, expiresAt } = c;
    const now = this.clock.now();
    this.sweep(Math.floor(now / 1000));
    const known = this.expiries.get(key);
    if (known !== undefined && known > now) return seen(c);
    if (expiresAt <= now) return 'fresh';
    if (this.expiries.size >= this.maxEntries) return 'full';
    const second = Math.ceil(expiresAt / 1000);
    this.expiries.set(key, second * 1000);
    const keys = this.bySecond.get(second);
    if (keys) keys.push(key);
    else this.bySecond.set(second, [key]);
    return 'fresh';
  }

  /** Drops every second up to `second` (all of them at once when the clock jumped further than the buckets reach). */
  private sweep(second: number): void {
    if (this.sweptTo < 0 || second - this.sweptTo > this.bySecond.size) {
      for (const s of [...this.bySecond.keys()]) if (s <= second) this.drop(s);
    } else {
      for (let s = this.sweptTo + 1; s <= second; s++) this.drop(s);
    }
    this.sweptTo = Math.max(this.sweptTo, second);
  }

  private drop(second: number): void {
    const keys = this.bySecond.get(second);
    if (!keys) return;
    for (const k of keys) if (this.expiries.get(k) === second * 1000) this.expiries.delete(k);
    this.bySecond.delete(second);
  }
}

/** One process (and the supervisor's side of SharedReplayGuard). */
export class MemoryReplayGuard implements ReplayGuard {
  constructor(readonly cache: ReplayCache = new ReplayCache()) {}

  async claim(c: Claim): Promise<ClaimResult> {
    const r = this.cache.claim(c);
    return r === 'full' ? 'unavailable' : r;
  }
}

function fromCache(a: CacheAnswer | undefined): ClaimResult {
  return a === 'fresh' || a === 'repeat' || a === 'used' ? a : 'unavailable';
}

export interface SharedReplayGuardOptions {
  /** Asks the supervisor to claim these keys; resolves with one answer per key, in order. */
  ask: (claims: Claim[]) => Promise<CacheAnswer[]>;
  /** This process's own cache, checked first (a replay to the same worker is refused without asking). */
  local?: ReplayCache;
}

/**
 * A worker's side: claims go to the supervisor's cache, the claims of one turn of the event loop
 * in one message. An answer that does not come (the supervisor's PendingReplies time out) is
 * `unavailable`.
 */
export class SharedReplayGuard implements ReplayGuard {
  private batch: Array<{ claim: Claim; settle: (r: ClaimResult) => void }> = [];
  private readonly local: ReplayCache;

  constructor(private readonly options: SharedReplayGuardOptions) {
    this.local = options.local ?? new ReplayCache();
  }

  claim(claim: Claim): Promise<ClaimResult> {
    if (this.local.claim(claim) === 'used') return Promise.resolve('used');
    return new Promise((settle) => {
      if (this.batch.length === 0) setImmediate(() => this.send());
      this.batch.push({ claim, settle });
    });
  }

  private send(): void {
    const batch = this.batch;
    this.batch = [];
    this.options.ask(batch.map((b) => b.claim)).then(
      (answers) => batch.forEach((b, i) => b.settle(fromCache(answers[i]))),
      () => batch.forEach((b) => b.settle('unavailable')),
    );
  }
}

export interface RedisReplayGuardOptions {
  clock?: Clock;
  keyPrefix?: string;
  /** An answer later than this counts as Redis unavailable. */
  timeoutMs?: number;
  onError?: (e: unknown) => void;
  local?: ReplayCache;
}

class ReplayCheckTimeout extends Error {}

/** Several nodes: this process's cache first, then `SET key 1 PX ttl NX` in Redis (the first node to set it wins). */
export class RedisReplayGuard implements ReplayGuard {
  private readonly local: ReplayCache;
  private readonly clock: Clock;
  private failures = 0;

  constructor(
    private readonly redis: Redis,
    private readonly options: RedisReplayGuardOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.local = options.local ?? new ReplayCache(DEFAULT_REPLAY_ENTRIES, this.clock);
  }

  /** Claims refused because Redis did not answer. */
  get unavailableCount(): number {
    return this.failures;
  }

  disconnect(): void {
    this.redis.disconnect();
  }

  async claim(c: Claim): Promise<ClaimResult> {
    const mine = this.local.claim(c);
    if (mine === 'used' || mine === 'full') return mine === 'used' ? 'used' : 'unavailable';
    const ttl = Math.max(1, Math.ceil(c.expiresAt - this.clock.now()));
    try {
      const set = await withDeadline(
        this.redis.set(`${this.options.keyPrefix ?? 'kms:replay:'}${c.key}`, '1', 'PX', ttl, 'NX'),
        this.options.timeoutMs ?? 250,
        (): never => {
          throw new ReplayCheckTimeout('redis did not answer the replay check in time');
        },
      );
      return set === 'OK' ? 'fresh' : seen(c);
    } catch (e) {
      this.failures += 1;
      this.options.onError?.(e);
      return 'unavailable';
    }
  }
}
