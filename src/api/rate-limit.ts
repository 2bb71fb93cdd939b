/**
 * Per-account request-rate limits: a token bucket per account uin holding at most `burst` tokens,
 * refilled at `perSecond`; each request takes one. Two implementations of one interface: in memory
 * (one node) and Redis (every node shares the buckets; one Lua script per request). The Redis one
 * fails open: when Redis cannot answer, the request is allowed and the failure counted.
 */
import type Redis from 'ioredis';
import { withDeadline } from '../common/deadline';
import { Clock, systemClock } from '../common/clock';

export interface RateLimitConfig {
  /** Sustained requests per second per account. */
  perSecond: number;
  /** Requests an idle account may make at once. */
  burst: number;
}

export interface RateLimiter {
  /** true: the request may proceed (one token taken); false: over the limit. */
  take(accountUin: string): Promise<boolean>;
}

export interface Bucket {
  tokens: number;
  /** Clock time (ms) of the last refill. */
  at: number;
}

export function checkRateLimitConfig(c: RateLimitConfig): RateLimitConfig {
  if (!(Number.isFinite(c.perSecond) && c.perSecond > 0)) throw new RangeError('rate limit perSecond must be a positive number');
  if (!(Number.isInteger(c.burst) && c.burst >= 1)) throw new RangeError('rate limit burst must be a positive integer');
  return c;
}

/** A bucket's tokens at `now`: refilled since its last refill, never above burst; time running backwards refills nothing. */
export function refilled(b: Bucket, now: number, c: RateLimitConfig): number {
  return Math.min(c.burst, b.tokens + (Math.max(0, now - b.at) * c.perSecond) / 1000);
}

/**
 * One request against a bucket at `now` (a missing bucket is full). Time that runs backwards
 * (another node's clock) refills nothing and never moves the bucket back.
 */
export function takeToken(b: Bucket | undefined, now: number, c: RateLimitConfig): { allowed: boolean; bucket: Bucket } {
  const prior = b ?? { tokens: c.burst, at: now };
  const tokens = refilled(prior, now, c);
  const allowed = tokens >= 1;
  return { allowed, bucket: { tokens: allowed ? tokens - 1 : tokens, at: Math.max(now, prior.at) } };
}

/** How long an untouched bucket takes to become full again: after that, forgetting it changes nothing. */
export function refillMs(c: RateLimitConfig): number {
  return Math.ceil((c.burst * 1000) / c.perSecond);
}

/** Buckets in this process. Past `maxAccounts` buckets, full ones are forgotten first. */
export class MemoryRateLimiter implements RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly config: RateLimitConfig;

  constructor(
    config: RateLimitConfig,
    private readonly clock: Clock = systemClock,
    private readonly maxAccounts = 100_000,
  ) {
    this.config = checkRateLimitConfig(config);
  }

  get size(): number {
    return this.buckets.size;
  }

  async take(accountUin: string): Promise<boolean> {
    const now = this.clock.now();
    const { allowed, bucket } = takeToken(this.buckets.get(accountUin), now, this.config);
    this.buckets.set(accountUin, bucket);
    if (this.buckets.size > this.maxAccounts) this.forgetFull(now);
    return allowed;
  }

  /** Full buckets go first; if that is not enough, the oldest down to 90% (those accounts get a fresh burst). */
  private forgetFull(now: number): void {
    for (const [uin, b] of this.buckets) {
      if (now - b.at >= refillMs(this.config)) this.buckets.delete(uin);
    }
    for (const uin of this.buckets.keys()) {
      if (this.buckets.size <= Math.floor(this.maxAccounts * 0.9)) break;
      this.buckets.delete(uin);
    }
  }
}

/** takeToken in Lua: KEYS[1] bucket hash; ARGV perSecond, burst, now (ms), ttl (ms). Returns 1 allowed, 0 refused. */
const TAKE = `
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local perSecond, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, at = tonumber(b[1]), tonumber(b[2])
if tokens == nil or at == nil then tokens = burst; at = now end
tokens = math.min(burst, tokens + math.max(0, now - at) * perSecond / 1000)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%d', math.max(now, at)))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return allowed
`;

export interface RedisRateLimiterOptions {
  /** Time source (ms); every node should be NTP-synchronised. Tests inject a ManualClock. */
  clock?: Clock;
  keyPrefix?: string;
  /** An answer later than this counts as a Redis failure (fail open). */
  timeoutMs?: number;
  /** Called on every failure that was failed open (metrics, logs). */
  onError?: (e: unknown) => void;
}

class RateLimitTimeout extends Error {}

/** Buckets in Redis, shared by every node. Give it a client with `enableOfflineQueue: false` so an outage fails fast. */
export class RedisRateLimiter implements RateLimiter {
  private readonly config: RateLimitConfig;
  private readonly clock: Clock;
  private failures = 0;

  constructor(
    private readonly redis: Redis,
    config: RateLimitConfig,
    private readonly options: RedisRateLimiterOptions = {},
  ) {
    this.config = checkRateLimitConfig(config);
    this.clock = options.clock ?? systemClock;
  }

  /** Drops the Redis connection (the limiter owns it). */
  disconnect(): void {
    this.redis.disconnect();
  }

  /** Requests allowed because Redis did not answer. */
  get failOpenCount(): number {
    return this.failures;
  }

  async take(accountUin: string): Promise<boolean> {
    const key = `${this.options.keyPrefix ?? 'kms:ratelimit:'}${accountUin}`;
    const args = [this.config.perSecond, this.config.burst, this.clock.now(), refillMs(this.config) + 1000];
    try {
      return (await this.withTimeout(this.redis.eval(TAKE, 1, key, ...args))) === 1;
    } catch (e) {
      this.failures += 1;
      this.options.onError?.(e);
      return true;
    }
  }

  private withTimeout<T>(p: Promise<T>): Promise<T> {
    return withDeadline(p, this.options.timeoutMs ?? 250, (): never => {
      throw new RateLimitTimeout('redis did not answer in time');
    });
  }
}
