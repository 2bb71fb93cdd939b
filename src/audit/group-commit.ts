/**
 * Group commit: events wait in memory and are written in batches, one transaction (SQLite) or one
 * script (Redis) per batch, so the request path never waits for the store. A batch goes out when
 * `maxBatch` events are waiting or `intervalMs` after the first of them; one write is in flight at
 * a time, and whatever arrives meanwhile forms the next batch. A failed write leaves its events in
 * place and is retried after a backoff (doubling from `retryMinMs` to `retryMaxMs`); while the
 * store is down the buffer holds at most `maxPending` events and counts the rest as dropped.
 */
import { AuditCounters } from './audit-log';
import { AuditEvent } from './event';
import { AuditInputError, AuditWriteError } from './errors';

export interface GroupCommitOptions {
  /** Events per write; default 200. */
  maxBatch?: number;
  /** How long the first waiting event waits for others; default 10 ms. */
  intervalMs?: number;
  /** Events held while writes fail; default 100,000. */
  maxPending?: number;
  /** First retry delay after a failed write; default 100 ms. */
  retryMinMs?: number;
  /** Longest retry delay; default 5,000 ms. */
  retryMaxMs?: number;
}

/** The options with their defaults, checked (`AuditInputError`); factories call it before opening anything. */
export function commitOptions(options: GroupCommitOptions): Required<GroupCommitOptions> {
  const o = { maxBatch: 200, intervalMs: 10, maxPending: 100_000, retryMinMs: 100, retryMaxMs: 5000, ...options };
  for (const [name, min] of [
    ['maxBatch', 1],
    ['maxPending', 1],
    ['intervalMs', 0],
    ['retryMinMs', 1],
    ['retryMaxMs', o.retryMinMs],
  ] as const) {
    if (!Number.isInteger(o[name]) || o[name] < min) throw new AuditInputError(`${name} must be an integer >= ${min}, got ${o[name]}`);
  }
  return o;
}

export type BatchWriter = (batch: readonly AuditEvent[]) => Promise<void>;

export class GroupCommitter {
  private readonly opts: Required<GroupCommitOptions>;
  private buffer: AuditEvent[] = [];
  private accepted = 0;
  private written = 0;
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<AuditWriteError | undefined> | undefined;
  private retryMs: number;
  /** A write failed and its retry is scheduled: new events wait for it. */
  private backoff = false;
  private closed = false;

  constructor(
    private readonly write: BatchWriter,
    options: GroupCommitOptions = {},
  ) {
    this.opts = commitOptions(options);
    this.retryMs = this.opts.retryMinMs;
  }

  add(e: AuditEvent): void {
    if (this.closed || this.buffer.length >= this.opts.maxPending) {
      this.dropped++;
      return;
    }
    this.buffer.push(e);
    this.accepted++;
    if (this.buffer.length >= this.opts.maxBatch) this.schedule(0);
    else this.schedule(this.opts.intervalMs);
  }

  /** Resolves when every event added before the call is written; rejects when a write attempt fails. */
  async flush(): Promise<void> {
    const target = this.accepted;
    while (this.written + this.lostAtClose() < target) {
      const failure = await this.drain();
      if (failure !== undefined) throw failure;
    }
  }

  /** Flushes, then counts what could not be written as dropped; rejects with the write error then. */
  async close(): Promise<void> {
    this.closed = true;
    const failure = await this.drain();
    this.clearTimer();
    this.dropped += this.buffer.length;
    this.buffer = [];
    if (failure !== undefined) throw new AuditWriteError(`audit log closed with unwritten events: ${failure.message}`, { cause: failure });
  }

  counters(): AuditCounters {
    return { pending: this.buffer.length, dropped: this.dropped, written: this.written };
  }

  /** Events accepted but given up at close (they count as dropped, not pending). */
  private lostAtClose(): number {
    return this.closed ? this.accepted - this.written - this.buffer.length : 0;
  }

  /**
   * Sets a timer to drain in `ms`, unless a write is in flight (it drains on), a retry is pending, or
   * a timer is set already (a full batch replaces it with an immediate one).
   */
  private schedule(ms: number): void {
    if (this.inFlight !== undefined || this.backoff || this.closed) return;
    if (this.timer !== undefined && ms > 0) return;
    this.setTimer(ms);
  }

  private setTimer(ms: number): void {
    this.clearTimer();
    this.timer = setTimeout(() => void this.drain(), ms);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Writes until the buffer is empty (one write in flight); the error of a failed attempt, if any. */
  private drain(): Promise<AuditWriteError | undefined> {
    if (this.inFlight === undefined) {
      this.clearTimer();
      this.inFlight = this.writeAll().finally(() => {
        this.inFlight = undefined;
        // Events added between the last batch and now have no timer yet.
        if (this.buffer.length > 0) this.schedule(this.opts.intervalMs);
      });
    }
    return this.inFlight;
  }

  private async writeAll(): Promise<AuditWriteError | undefined> {
    while (this.buffer.length > 0) {
      const batch = this.buffer.slice(0, this.opts.maxBatch);
      try {
        await this.write(batch);
      } catch (e) {
        return this.failed(e);
      }
      this.buffer.splice(0, batch.length);
      this.written += batch.length;
      this.retryMs = this.opts.retryMinMs;
      this.backoff = false;
    }
    return undefined;
  }

  private failed(e: unknown): AuditWriteError {
    if (!this.closed) {
      this.backoff = true;
      this.setTimer(this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, this.opts.retryMaxMs);
    }
    return e instanceof AuditWriteError ? e : new AuditWriteError(`audit write failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}
