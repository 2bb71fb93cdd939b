/**
 * The audit trail's background work, on the node holding its lease (one at a time, like the KMS
 * jobs in kms/jobs.ts): every interval, push the head to the anchor sink when it moved, and, with a
 * retention period, archive and remove the events older than it.
 */
import { AuditLog, RetainedRange } from './audit-log';
import { ANCHOR_KIND, AnchorSink } from './anchors';

export const AUDIT_LEASE = 'kms-audit-jobs';
const DAY_MS = 86_400_000;

/** The store's lease, as this job needs it. */
export interface Lease {
  acquire(ttlMs: number): Promise<boolean>;
  release(): Promise<void>;
}

export interface AuditJobsOptions {
  log: AuditLog;
  lease: Lease;
  sink?: AnchorSink;
  intervalMs: number;
  retentionDays?: number;
  archive: (range: RetainedRange) => Promise<void>;
  now?: () => number;
  onError: (message: string) => void;
  /** Told how many events a tick archived and removed (when any). */
  onRetained?: (count: number) => void;
}

export interface AuditJobReport {
  leader: boolean;
  /** The seq anchored this tick, if any. */
  anchored?: number;
  retained: number;
}

export class AuditJobs {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<AuditJobReport> | undefined;
  private lastAnchored: string | undefined;
  private readonly now: () => number;

  constructor(private readonly o: AuditJobsOptions) {
    this.now = o.now ?? Date.now;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.runOnce(), this.o.intervalMs);
    this.timer.unref();
  }

  /** Stops the timer; the lease holder pushes a last anchor (after the final flush) and lets the lease go. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    await this.o.log.flush().catch(() => undefined);
    if (await this.leader()) await this.step('anchor', () => this.anchor());
    await this.o.lease.release().catch(() => undefined);
  }

  /** One tick; concurrent calls share the tick in progress. */
  runOnce(): Promise<AuditJobReport> {
    this.running ??= this.tick().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async tick(): Promise<AuditJobReport> {
    const report: AuditJobReport = { leader: await this.leader(), retained: 0 };
    if (!report.leader) return report;
    report.retained = (await this.step('retention', () => this.retain())) ?? 0;
    if (report.retained > 0) this.o.onRetained?.(report.retained);
    report.anchored = await this.step('anchor', () => this.anchor());
    return report;
  }

  private async leader(): Promise<boolean> {
    return (await this.step('lease', () => this.o.lease.acquire(Math.max(3 * this.o.intervalMs, 15_000)))) === true;
  }

  private async anchor(): Promise<number | undefined> {
    const head = await this.o.log.head();
    if (this.o.sink === undefined || head === undefined || `${head.seq}:${head.hash}` === this.lastAnchored) return undefined;
    await this.o.sink({ kind: ANCHOR_KIND, seq: head.seq, hash: head.hash, time: this.now() });
    this.lastAnchored = `${head.seq}:${head.hash}`;
    return head.seq;
  }

  private async retain(): Promise<number> {
    if (this.o.retentionDays === undefined) return 0;
    const cutoff = this.now() - this.o.retentionDays * DAY_MS;
    for (let total = 0; ;) {
      const n = await this.o.log.retainOlderThan(cutoff, this.o.archive);
      if (n === 0) return total;
      total += n;
    }
  }

  private async step<T>(name: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (e) {
      this.o.onError(`audit ${name}: ${(e as Error).message}`);
      return undefined;
    }
  }
}
