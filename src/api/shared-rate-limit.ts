/**
 * Rate limits when one node runs several worker processes on the embedded store (workers: N): the
 * supervisor holds every account's bucket (the ledger) and hands its tokens out to workers; a worker
 * lets a request through only with a token it was handed. The ledger counts the tokens a worker
 * holds inside the bucket until the worker settles (its level never refills past burst less those),
 * so all workers together let through at most burst at once and perSecond after that, as one bucket
 * would, whatever the order in which messages cross.
 *
 * A worker asks for up to burst / N tokens once it has none left (one IPC round trip, shared by the
 * requests that wait on it; asking settles what it held before, all spent). LEASE_MS after a grant it
 * settles what it still holds: it gives back what it did not use. A worker that dies is settled as
 * having used everything. When the ledger has nothing, it says when the next token will be there,
 * and the worker refuses without asking until then (LEASE_MS at most: settlements bring tokens
 * back). The price of exactness is on the other side: tokens spent from a lease not yet settled
 * still count as held, so for at most LEASE_MS a bucket near full refills up to burst less those.
 * (With Redis, RedisRateLimiter is shared by every process and node: none of this is needed.)
 */
import { withDeadline } from '../common/deadline';
import { Clock, systemClock } from '../common/clock';
import { Bucket, checkRateLimitConfig, RateLimitConfig, RateLimiter, refilled } from './rate-limit';

/** How long a worker keeps tokens before giving back what it has not used. */
export const LEASE_MS = 100;
/** A worker that hears nothing from the ledger in this time lets the request through (fail open, as with Redis). */
export const ASK_TIMEOUT_MS = 1_000;

/** Tokens per account. */
export type Tokens = Record<string, number>;

export interface Grant {
  granted: number;
  /** With nothing granted: ms until the bucket holds a whole token again. */
  waitMs: number;
}

/** The supervisor's buckets, and what each worker holds of them. */
export class RateLedger {
  private readonly buckets = new Map<string, Bucket>();
  /** worker → account → tokens handed out, not yet settled. */
  private readonly held = new Map<number, Map<string, number>>();
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

  /** Tokens the account's bucket holds now, never more than burst less what workers hold. */
  level(uin: string): number {
    return this.bucket(uin, this.clock.now()).tokens;
  }

  /** Hands `worker` up to `want` whole tokens of the account; what it held of it before is all spent. */
  grant(worker: number, uin: string, want: number): Grant {
    const b = this.release(worker, uin, this.clock.now());
    const granted = Math.max(0, Math.min(Math.floor(want), Math.floor(b.tokens)));
    if (granted === 0) return { granted, waitMs: Math.ceil(((1 - b.tokens) * 1000) / this.config.perSecond) };
    b.tokens -= granted;
    const mine = this.held.get(worker) ?? new Map<string, number>();
    this.held.set(worker, mine);
    mine.set(uin, granted);
    return { granted, waitMs: 0 };
  }

  /** `worker` is done with what it held of these accounts and gives back what it did not use. */
  settle(worker: number, unused: Tokens): void {
    const now = this.clock.now();
    for (const [uin, n] of Object.entries(unused)) {
      const held = this.held.get(worker)?.get(uin) ?? 0;
      if (held === 0) continue;
      const b = this.release(worker, uin, now);
      b.tokens += Number.isFinite(n) ? Math.max(0, Math.min(n, held)) : 0;
    }
  }

  /** `worker` is gone: whatever it held counts as used. */
  forget(worker: number): void {
    const now = this.clock.now();
    for (const uin of [...(this.held.get(worker)?.keys() ?? [])]) this.release(worker, uin, now);
    this.held.delete(worker);
  }

  /** Ends what `worker` holds of the account: the bucket is brought to `now` first, refilled only around what was held. */
  private release(worker: number, uin: string, now: number): Bucket {
    const b = this.bucket(uin, now);
    this.held.get(worker)?.delete(uin);
    return b;
  }

  /** Tokens of the account that workers hold (a handful of workers: summing is cheaper than keeping a total in step). */
  private out(uin: string): number {
    let n = 0;
    for (const mine of this.held.values()) n += mine.get(uin) ?? 0;
    return n;
  }

  /** The account's bucket refilled to `now` (least recently used first out when there are too many). */
  private bucket(uin: string, now: number): Bucket {
    const cap = { perSecond: this.config.perSecond, burst: this.config.burst - this.out(uin) };
    const prior = this.buckets.get(uin) ?? { tokens: cap.burst, at: now };
    const b = { tokens: refilled(prior, now, cap), at: Math.max(now, prior.at) };
    this.buckets.delete(uin);
    this.buckets.set(uin, b);
    while (this.buckets.size > this.maxAccounts) this.buckets.delete(this.buckets.keys().next().value as string);
    return b;
  }
}

export interface SharedRateLimiterOptions {
  workers: number;
  /** Asks the ledger for tokens; resolves with its grant. */
  ask: (uin: string, want: number) => Promise<Grant>;
  /** Gives back unused tokens (and ends what this worker holds of those accounts). */
  settle: (unused: Tokens) => void;
  clock?: Clock;
  maxAccounts?: number;
}

interface Lease {
  credit: number;
  /** Anything granted since the last settlement (the ledger counts it as held). */
  holds: boolean;
  settleAt: number;
  /** The ledger had nothing: refuse without asking until then. */
  dryUntil: number;
  asking?: Promise<Grant | undefined>;
}

/** A worker's side: spends tokens the ledger handed it, asks for more when it has none. */
export class SharedRateLimiter implements RateLimiter {
  private readonly leases = new Map<string, Lease>();
  private readonly want: number;
  private readonly clock: Clock;
  private readonly timer: NodeJS.Timeout;

  constructor(
    config: RateLimitConfig,
    private readonly options: SharedRateLimiterOptions,
  ) {
    const c = checkRateLimitConfig(config);
    this.want = Math.max(1, Math.ceil(c.burst / options.workers));
    this.clock = options.clock ?? systemClock;
    this.timer = setInterval(() => this.settleDue(), LEASE_MS);
    this.timer.unref();
  }

  async take(uin: string): Promise<boolean> {
    for (;;) {
      const lease = this.lease(uin);
      if (lease.credit >= 1) {
        lease.credit -= 1;
        return true;
      }
      if (!lease.asking && this.clock.now() < lease.dryUntil) return false;
      const grant = await (lease.asking ?? this.ask(uin, lease));
      if (grant === undefined) return true;
      // the ledger had less than asked for: what it gave is all there is until it refills
      if (grant.granted < this.want && lease.credit < 1) return false;
    }
  }

  /** Settles every lease whose time is up (and, with `all`, every lease not waiting for an answer: on close). */
  settleDue(all = false): void {
    const now = this.clock.now();
    const unused: Tokens = {};
    let any = false;
    for (const [uin, lease] of this.leases) {
      if (lease.asking || (!all && lease.settleAt > now)) continue;
      if (lease.holds) {
        unused[uin] = lease.credit;
        any = true;
      }
      if (!all && now < lease.dryUntil) Object.assign(lease, { credit: 0, holds: false, settleAt: lease.dryUntil });
      else this.leases.delete(uin);
    }
    if (any) this.options.settle(unused);
  }

  close(): void {
    clearInterval(this.timer);
    this.settleDue(true);
  }

  private lease(uin: string): Lease {
    let lease = this.leases.get(uin);
    if (lease === undefined) {
      lease = { credit: 0, holds: false, settleAt: 0, dryUntil: 0 };
      this.leases.set(uin, lease);
      if (this.leases.size > (this.options.maxAccounts ?? 100_000)) this.evictOldest();
    }
    return lease;
  }

  private evictOldest(): void {
    for (const [uin, lease] of this.leases) {
      if (lease.asking) continue;
      this.leases.delete(uin);
      if (lease.holds) this.options.settle({ [uin]: lease.credit });
      return;
    }
  }

  /** One question to the ledger at a time per account; a late answer still counts (the ledger counts it as held). */
  private ask(uin: string, lease: Lease): Promise<Grant | undefined> {
    const answered = this.options.ask(uin, this.want).then(
      (grant) => {
        lease.asking = undefined;
        const now = this.clock.now();
        if (grant.granted > 0) Object.assign(lease, { credit: lease.credit + grant.granted, holds: true, settleAt: now + LEASE_MS });
        // tokens may come back sooner than the bucket refills, when another worker settles
        else lease.dryUntil = now + Math.min(grant.waitMs, LEASE_MS);
        return grant;
      },
      () => ((lease.asking = undefined), undefined),
    );
    lease.asking = withDeadline(answered, ASK_TIMEOUT_MS, () => undefined);
    return lease.asking;
  }
}
