import type { KmsContext } from './context';
import type { DueWork } from './deletion';
import { DomainRotation, RotationBusyError } from './domain-rotation';
import type { DomainStates } from './domain-state';
import type { Rotation } from './rotation';

export interface JobReport {
  leader: boolean;
  usageFlushed: boolean;
  rotated: string[];
  deleted: string[];
  /** Hosted data keys shredded after their deletion date. */
  dataKeysDeleted: string[];
  expired: string[];
  alarmed: string[];
  /** Clusters whose unfinished domain rotation this tick finished. */
  domainsRotated: string[];
  errors: string[];
}

/** Domain generations: every node follows the current one; the lease holder finishes a rotation a crashed kmsctl left. */
export interface DomainJobs {
  states: DomainStates;
  rotation: DomainRotation;
  clusters: readonly string[];
}

export const JOBS_LEASE = 'kms-background-jobs';
const ROTATION_RETRY_MS = 60_000;

/**
 * Background work. Every node flushes its own usage counts; only the node holding the lease (one at
 * a time, renewed each tick, passed on when a node dies) rotates, deletes, expires and alarms.
 */
export class BackgroundJobs {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<JobReport> | undefined;
  private finishing: Promise<void> | undefined;
  private readonly rotationsFinished: string[] = [];
  /** After a failed attempt (a member away, say), a cluster's rotation is tried again only after this time (each attempt walks every key). */
  private readonly rotationRetryAt = new Map<string, number>();

  constructor(
    private readonly ctx: KmsContext,
    private readonly rotation: Rotation,
    private readonly due: DueWork,
    private readonly node: string,
    private readonly intervalMs = 5_000,
    private readonly onError: (message: string) => void = () => undefined,
    private readonly domains?: DomainJobs,
    private readonly dataKeys?: { deleteDue(): Promise<string[]> },
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.runOnce(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    await this.finishing;
    await this.flushUsage([]);
    await this.ctx.access.store.releaseLease(JOBS_LEASE, this.node).catch(() => undefined);
  }

  /** One tick; concurrent calls share the tick in progress. */
  runOnce(): Promise<JobReport> {
    this.running ??= this.tick().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async tick(): Promise<JobReport> {
    const report: JobReport = {
      leader: false,
      usageFlushed: false,
      rotated: [],
      deleted: [],
      dataKeysDeleted: [],
      expired: [],
      alarmed: [],
      domainsRotated: [],
      errors: [],
    };
    const worn = await this.flushUsage(report.errors);
    report.usageFlushed = worn !== undefined;
    const step = async <T>(name: string, fn: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await fn();
      } catch (e) {
        const message = `${name}: ${(e as Error).message}`;
        report.errors.push(message);
        this.onError(message);
        return undefined;
      }
    };
    for (const problem of this.domains ? ((await step('domain generation', () => this.domains!.states.apply())) ?? []) : []) {
      report.errors.push(`domain generation: ${problem}`);
      this.onError(`domain generation: ${problem}`);
    }
    // the node that saw a version wear out rotates it, leader or not (a concurrent rotation is refused)
    report.rotated = (await step('usage rotation', () => this.rotation.rotateWornOut(worn ?? []))) ?? [];
    const store = this.ctx.access.store;
    report.leader = (await step('lease', () => store.acquireLease(JOBS_LEASE, this.node, Math.max(3 * this.intervalMs, 15_000)))) === true;
    if (!report.leader) return report;
    report.rotated.push(...((await step('rotation', () => this.rotation.rotateDue())) ?? []));
    report.deleted = (await step('deletion', () => this.due.deleteDue())) ?? [];
    if (this.dataKeys) report.dataKeysDeleted = (await step('data-key deletion', () => this.dataKeys!.deleteDue())) ?? [];
    report.expired = (await step('expiry', () => this.due.expireDue())) ?? [];
    report.alarmed = (await step('alarms', () => this.due.alarmImminent())) ?? [];
    report.domainsRotated = (await step('domain rotation', () => this.finishRotations())) ?? [];
    return report;
  }

  /**
   * Starts finishing unfinished domain rotations, apart from the tick (a walk of a large cluster
   * must not hold up usage flushes); one walker per cluster, so a kmsctl run holding the lease is
   * left alone. Returns the clusters whose rotation finished since the last tick.
   */
  private async finishRotations(): Promise<string[]> {
    const finished = this.rotationsFinished.splice(0);
    if (this.finishing || !this.domains) return finished;
    const pending: string[] = [];
    const now = Date.now();
    for (const id of this.domains.clusters) {
      // a state that cannot be read (members away) is reported by the domain-generation step
      if ((this.rotationRetryAt.get(id) ?? 0) <= now && (await this.domains.rotation.unfinished(id).catch(() => false))) pending.push(id);
    }
    if (pending.length === 0) return finished;
    const rotation = this.domains.rotation;
    this.finishing = (async () => {
      for (const id of pending) {
        try {
          const r = await rotation.rotate(id, { resumeOnly: true, leaseWaitMs: 0 });
          if (r.generation !== undefined) this.rotationsFinished.push(id);
        } catch (e) {
          if (e instanceof RotationBusyError) continue;
          this.rotationRetryAt.set(id, Date.now() + ROTATION_RETRY_MS);
          this.onError(`domain rotation of ${id}: ${(e as Error).message}`);
        }
      }
    })().finally(() => {
      this.finishing = undefined;
    });
    return finished;
  }

  /** Hands batched usage counts to the store; returns versions due for rotation (undefined on failure). */
  private async flushUsage(errors: string[]): Promise<string[] | undefined> {
    try {
      return await this.ctx.usage.flush((batch) => this.ctx.access.store.addUsage(batch));
    } catch (e) {
      errors.push(`usage: ${(e as Error).message}`);
      return undefined;
    }
  }
}
