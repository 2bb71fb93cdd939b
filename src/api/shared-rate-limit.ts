/**
 * Rate limits when one node runs several worker processes on the embedded store (workers: N): the
 * supervisor holds every account's bucket (the ledger); each worker decides requests from its share
 * of it and reports what it let through every SYNC_MS. The ledger charges the reports and answers
 * the levels; a worker's share is then level / N less what it let through since its report, and it
 * refills at perSecond / N up to burst / N between reports. The shares of all workers never add up
 * to more than the bucket holds, so an account gets its configured rate and burst across all
 * workers, not per worker. A worker alone (an account on one connection) reaches the whole burst
 * over a few reports, as its shares of what is left come back; its sustained rate is the full rate.
 * (With Redis, RedisRateLimiter is shared by every process and node: none of this is needed.)
 */
import { Clock, systemClock } from '../kms/clock';
import { Bucket, checkRateLimitConfig, RateLimitConfig, RateLimiter, refilled } from './rate-limit';

export const SYNC_MS = 50;

/** Requests let through per account since the last report. */
export type Usage = Record<string, number>;
/** Each account's bucket level (tokens, may be negative) as the ledger sees it. */
export type Levels = Record<string, number>;

/** A worker's part of the bucket: 1/N of the rate and of the burst. */
function shareOf(c: RateLimitConfig, workers: number): RateLimitConfig {
  return { perSecond: c.perSecond / workers, burst: c.burst / workers };
}

/** The supervisor's buckets: charges what workers let through, answers the levels. */
export class RateLedger {
  private readonly buckets = new Map<string, Bucket>();
  private readonly changed = new Set<string>();
  private readonly config: RateLimitConfig;

  constructor(config: RateLimitConfig, private readonly clock: Clock = systemClock, private readonly maxAccounts = 100_000) {
    this.config = checkRateLimitConfig(config);
  }

  get size(): number {
    return this.buckets.size;
  }

  charge(used: Usage): Levels {
    const now = this.clock.now();
    const levels: Levels = {};
    for (const [uin, n] of Object.entries(used)) {
      if (!Number.isFinite(n) || n < 0) continue;
      const prior = this.buckets.get(uin) ?? { tokens: this.config.burst, at: now };
      const tokens = Math.max(-this.config.burst, refilled(prior, now, this.config) - n);
      this.buckets.delete(uin);
      this.buckets.set(uin, { tokens, at: Math.max(now, prior.at) });
      levels[uin] = tokens;
      this.changed.add(uin);
    }
    // the least recently charged go first (an account forgotten starts full again)
    while (this.buckets.size > this.maxAccounts) this.buckets.delete(this.buckets.keys().next().value as string);
    return levels;
  }

  /** Levels (now) of the accounts charged since the last call: what every worker should hear. */
  takeChanged(): Levels {
    const now = this.clock.now();
    const levels: Levels = {};
    for (const uin of this.changed) {
      const b = this.buckets.get(uin);
      if (b) levels[uin] = refilled(b, now, this.config);
    }
    this.changed.clear();
    return levels;
  }
}

export interface SharedRateLimiterOptions {
  workers: number;
  /** Sends a report to the ledger; the answer comes back through `apply`. */
  report: (used: Usage) => void;
  clock?: Clock;
  maxAccounts?: number;
}

/** A worker's side: decides from its shares, reports usage every SYNC_MS (at once for an account it has not seen). */
export class SharedRateLimiter implements RateLimiter {
  private readonly views = new Map<string, Bucket>();
  private pending = new Map<string, number>();
  /** Accounts seen for the first time, not yet reported. */
  private readonly fresh = new Set<string>();
  private soon: NodeJS.Immediate | undefined;
  private readonly timer: NodeJS.Timeout;
  /** This worker's part: perSecond / N, burst / N. */
  private readonly share: RateLimitConfig;
  private readonly clock: Clock;

  constructor(config: RateLimitConfig, private readonly options: SharedRateLimiterOptions) {
    this.share = shareOf(checkRateLimitConfig(config), options.workers);
    this.clock = options.clock ?? systemClock;
    this.timer = setInterval(() => this.flush(), SYNC_MS);
    this.timer.unref();
  }

  async take(accountUin: string): Promise<boolean> {
    return this.takeNow(accountUin);
  }

  takeNow(accountUin: string): boolean {
    const now = this.clock.now();
    let view = this.views.get(accountUin);
    if (view === undefined) {
      view = { tokens: this.share.burst, at: now };
      this.views.set(accountUin, view);
      this.fresh.add(accountUin);
      this.soon ??= setImmediate(() => this.flush());
      if (this.views.size > (this.options.maxAccounts ?? 100_000)) this.views.delete(this.views.keys().next().value as string);
    }
    view.tokens = refilled(view, now, this.share);
    view.at = Math.max(now, view.at);
    if (view.tokens < 1) return false;
    view.tokens -= 1;
    this.pending.set(accountUin, (this.pending.get(accountUin) ?? 0) + 1);
    return true;
  }

  /** Levels from the ledger: each share becomes level / N less what this worker let through since its report. */
  apply(levels: Levels): void {
    const now = this.clock.now();
    for (const [uin, level] of Object.entries(levels)) {
      if (typeof level !== 'number' || !Number.isFinite(level)) continue;
      this.views.set(uin, { tokens: level / this.options.workers - (this.pending.get(uin) ?? 0), at: now });
    }
  }

  /** Reports what was let through (and, as zero, accounts seen for the first time); nothing to say, nothing sent. */
  flush(): void {
    if (this.soon) clearImmediate(this.soon);
    this.soon = undefined;
    if (this.pending.size === 0 && this.fresh.size === 0) return;
    const used: Usage = {};
    for (const uin of this.fresh) used[uin] = 0;
    for (const [uin, n] of this.pending) used[uin] = n;
    this.fresh.clear();
    this.pending = new Map();
    this.options.report(used);
  }

  close(): void {
    clearInterval(this.timer);
    if (this.soon) clearImmediate(this.soon);
    this.soon = undefined;
  }
}
