/**
 * What a client gets before it has authenticated: little work and no memory. A per-source-IP token
 * bucket counts the requests that did not authenticate (bad or missing signatures, unknown
 * SecretIds, replays, unreadable bodies); while an address has no token left, every request from it
 * is refused before its signature is looked at. Requests that authenticate spend nothing. And the
 * requests that did not authenticate are audited as counts (per source IP, SecretId named and code,
 * per minute), not one chained event each. Protocol-neutral: any front-end uses both.
 */
import type { NewAuditEvent } from '../audit/event';
import { Clock, systemClock } from '../common/clock';
import { Bucket, checkRateLimitConfig, RateLimitConfig, refilled, refillMs } from './rate-limit';

export const DEFAULT_PRE_AUTH_LIMIT: RateLimitConfig = { perSecond: 50, burst: 500 };

/** Source addresses and their failures; past `maxSources`, the buckets that are full again are forgotten, then the oldest. */
export class PreAuthLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly config: RateLimitConfig;

  constructor(
    config: RateLimitConfig = DEFAULT_PRE_AUTH_LIMIT,
    private readonly clock: Clock = systemClock,
    private readonly maxSources = 100_000,
  ) {
    this.config = checkRateLimitConfig(config);
  }

  get size(): number {
    return this.buckets.size;
  }

  /** false: this address has used up its failures; refuse without further work. */
  allows(sourceIp: string): boolean {
    const b = this.buckets.get(sourceIp);
    return b === undefined || refilled(b, this.clock.now(), this.config) >= 1;
  }

  /** A request from this address did not authenticate. */
  charge(sourceIp: string): void {
    const now = this.clock.now();
    const prior = this.buckets.get(sourceIp) ?? { tokens: this.config.burst, at: now };
    this.buckets.delete(sourceIp);
    this.buckets.set(sourceIp, { tokens: Math.max(0, refilled(prior, now, this.config) - 1), at: Math.max(now, prior.at) });
    if (this.buckets.size > this.maxSources) this.forget(now);
  }

  private forget(now: number): void {
    for (const [ip, b] of this.buckets) if (now - b.at >= refillMs(this.config)) this.buckets.delete(ip);
    for (const ip of this.buckets.keys()) {
      if (this.buckets.size <= Math.floor(this.maxSources * 0.9)) break;
      this.buckets.delete(ip);
    }
  }
}

/** The event name of an aggregate; its `resource` is `count/N`. */
export const FAILURE_EVENT_NAME = 'UnauthenticatedRequests';
/** Groups kept per minute; past that, new (address, SecretId) pairs count under address and SecretId `*` (one group per code). */
export const MAX_FAILURE_GROUPS = 1_000;

export interface Failure {
  sourceIp: string;
  /** The SecretId the request named ('' when it named none that is well-formed). */
  secretId: string;
  code: string;
  requestId: string;
  /** Known for a replayed signature (it did verify). */
  accountUin?: string;
  subAccountUin?: string;
}

interface Group extends Failure {
  minute: number;
  first: number;
  count: number;
}

/**
 * Failed authentications, counted per (minute, source IP, SecretId, code). A minute's groups are
 * appended to the audit trail once the minute is over (checked every few seconds) and on flush().
 */
export class FailureAudit {
  private groups = new Map<string, Group>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly append: (e: NewAuditEvent) => void,
    private readonly clock: Clock = systemClock,
    private readonly maxGroups = MAX_FAILURE_GROUPS,
  ) {
    this.timer = setInterval(() => this.flush(false), 5_000);
    this.timer.unref();
  }

  get pending(): number {
    return this.groups.size;
  }

  record(f: Failure): void {
    const now = this.clock.now();
    const minute = Math.floor(now / 60_000);
    let id = `${minute}\n${f.sourceIp}\n${f.secretId}\n${f.code}`;
    if (!this.groups.has(id) && this.groups.size >= this.maxGroups) {
      f = { ...f, sourceIp: '*', secretId: '*', accountUin: undefined, subAccountUin: undefined };
      id = `${minute}\n*\n*\n${f.code}`;
    }
    const g = this.groups.get(id);
    if (g) g.count += 1;
    else this.groups.set(id, { ...f, minute, first: now, count: 1 });
  }

  /** Appends the groups of minutes that are over (every group with `all`, as on close). */
  flush(all = true): void {
    const minute = Math.floor(this.clock.now() / 60_000);
    for (const [id, g] of this.groups) {
      if (!all && g.minute >= minute) continue;
      this.groups.delete(id);
      this.append({
        eventName: FAILURE_EVENT_NAME,
        accountUin: g.accountUin ?? '',
        subAccountUin: g.subAccountUin ?? '',
        secretId: g.secretId,
        sourceIp: g.sourceIp,
        region: '',
        requestId: g.requestId,
        resource: `count/${g.count}`,
        errorCode: g.code,
        time: g.first,
      });
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.flush(true);
  }
}
