/**
 * The replay cache: a signature is good for one request. Every signature that verified is claimed
 * here under a hash of SecretId and signature, until its timestamp leaves the ±5 minute window,
 * bound to what its first use did (the front-end's binding: action and region). A second claim is
 * refused, except an exact repeat (same binding) that the front-end calls repeatable (reads with no
 * effect and no secret or fresh cryptographic output: the answer is what the first use got). A claim
 * with another binding is always refused: because the SDKs sign only content-type and host, this is
 * what stops a captured request from being re-aimed at another X-TC-Action or X-TC-Region.
 * Protocol-neutral: any front-end that verifies signatures claims them here.
 *
 * Three guards of one interface: in this process (ReplayCache behind MemoryReplayGuard); on the
 * supervisor for worker processes (SharedReplayGuard, one IPC question per batch of claims); and in
 * Redis for several nodes (RedisReplayGuard, `SET NX PX`, after this process's own cache). When the
 * authority cannot answer, the claim is `unavailable` and the request is refused (fail closed).
 */
import { createHash } from 'node:crypto';
import type Redis from 'ioredis';
import { withDeadline } from '../deadline';
import { Clock, systemClock } from '../kms/clock';

/**
 * fresh: first use, now recorded; repeat: an exact repeat of a repeatable first use; used: seen before
 * within its window (and not such a repeat); unavailable: cannot tell (refuse).
 */
export type ClaimResult = 'fresh' | 'repeat' | 'used' | 'unavailable';
/** What the cache itself answers (`full`: no room, nothing evicted). */
export type CacheAnswer = 'fresh' | 'repeat' | 'used' | 'full';

export interface Claim {
  key: string;
  /** Clock ms after which the signature is refused anyway. */
  expiresAt: number;
  /** What this use does (a short string; compared, never parsed). */
  binding: string;
  /** An exact repeat of this use may be served. */
  repeatable: boolean;
}

export interface ReplayGuard {
  claim(c: Claim): Promise<ClaimResult>;
}

/** Whether a later claim finds the recorded use an acceptable repeat. */
function compare(recorded: string, c: Claim): 'repeat' | 'used' {
  return c.repeatable && recorded === `r:${c.binding}` ? 'repeat' : 'used';
}

/** Bindings repeat (a few actions × regions): one string each, not one per entry. */
const records = new Map<string, string>();

function recordOf(c: Claim): string {
  const record = `${c.repeatable ? 'r' : 'x'}:${c.binding}`;
  const known = records.get(record);
  if (known !== undefined) return known;
  if (records.size < 4_096) records.set(record, record);
  return record;
}

/** Entries a cache holds by default (about 150 bytes each): 5 minutes at 6,000 requests a second. */
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
  private readonly expiries = new Map<string, { at: number; record: string }>();
  private readonly bySecond = new Map<number, string[]>();
  private sweptTo = -1;

  constructor(private readonly maxEntries = DEFAULT_REPLAY_ENTRIES, private readonly clock: Clock = systemClock) {
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
    if (known !== undefined && known.at > now) return compare(known.record, c);
    if (expiresAt <= now) return 'fresh';
    if (this.expiries.size >= this.maxEntries) return 'full';
    const second = Math.ceil(expiresAt / 1000);
    this.expiries.set(key, { at: second * 1000, record: recordOf(c) });
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
    for (const k of keys) if (this.expiries.get(k)?.at === second * 1000) this.expiries.delete(k);
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

/**
 * Several nodes: this process's cache first, then `SET key <binding> PX ttl NX GET` in Redis (the
 * first node to set it wins; the others get the first use's binding back to compare).
 */
export class RedisReplayGuard implements ReplayGuard {
  private readonly local: ReplayCache;
  private readonly clock: Clock;
  private failures = 0;

  constructor(private readonly redis: Redis, private readonly options: RedisReplayGuardOptions = {}) {
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
      const set = this.redis.call('SET', `${this.options.keyPrefix ?? 'kms:replay:'}${c.key}`, recordOf(c), 'PX', String(ttl), 'NX', 'GET');
      const previous = await withDeadline(set, this.options.timeoutMs ?? 250, (): never => {
        throw new ReplayCheckTimeout('redis did not answer the replay check in time');
      });
      return typeof previous === 'string' ? compare(previous, c) : 'fresh';
    } catch (e) {
      this.failures += 1;
      this.options.onError?.(e);
      return 'unavailable';
    }
  }
}
