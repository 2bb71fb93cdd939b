import { SlowQueueFullError } from './errors';

export interface SlowQueueLimits {
  /** Slow operations of the cluster admitted at once (each then waits for a session and a thread-lane place). */
  running: number;
  /** Operations waiting for one of those places; one more is refused with SlowQueueFullError. */
  queued: number;
}

/**
 * A cluster's bounded FIFO in front of its slow operations. Waiting here holds no session and no
 * thread, so a backlog of generations never takes what Encrypt needs, and its length is bounded:
 * past it a caller is told at once to back off instead of waiting minutes.
 */
export class SlowQueue {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  /** Operations refused since start (metrics). */
  refused = 0;

  constructor(
    private readonly cluster: string,
    readonly limits: SlowQueueLimits,
  ) {}

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  run<T>(op: () => Promise<T>): Promise<T> {
    if (this.active < this.limits.running) {
      this.active++;
      return this.started(op);
    }
    if (this.waiting.length >= this.limits.queued) {
      this.refused++;
      return Promise.reject(new SlowQueueFullError(this.cluster, this.waiting.length));
    }
    return new Promise<void>((resolve) => this.waiting.push(resolve)).then(() => this.started(op));
  }

  /** `active` already counts this operation; its place passes to the next in line when it settles. */
  private started<T>(op: () => Promise<T>): Promise<T> {
    let p: Promise<T>;
    try {
      p = op();
    } catch (e) {
      p = Promise.reject(e);
    }
    return p.finally(() => this.release());
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}
