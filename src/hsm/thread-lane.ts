import { availableParallelism } from 'node:os';

/**
 * Slow PKCS#11 calls (key-pair generation, private-key RSA/EC operations) run on libuv's thread
 * pool, which Node shares with fs, crypto and zlib (UV_THREADPOOL_SIZE, default 4). The lane lets
 * at most half of those threads be taken by slow calls, and never as many as there are CPUs (a
 * software token's generation burns a whole core: the event loop keeps one), and hands freed
 * places round-robin over the members that wait, so one member's (one cluster's) backlog never
 * queues another's calls.
 */
export const DEFAULT_THREADPOOL_SIZE = 4;

/** Places for slow calls given UV_THREADPOOL_SIZE and the CPUs: half the threads, at most CPUs - 1, at least one. */
export function lanePlaces(threadpoolSize: string | undefined, cpus: number = availableParallelism()): number {
  const n = Number(threadpoolSize);
  const threads = Number.isInteger(n) && n > 0 ? Math.min(n, 1024) : DEFAULT_THREADPOOL_SIZE;
  return Math.max(1, Math.min(Math.floor(threads / 2), cpus - 1));
}

export class ThreadLane {
  private running = 0;
  private readonly waiting = new Map<string, Array<() => void>>();

  constructor(readonly places: number) {}

  get busy(): number {
    return this.running;
  }

  get queued(): number {
    let n = 0;
    for (const q of this.waiting.values()) n += q.length;
    return n;
  }

  /** Starts `call` when a place is free (at once if one is), on behalf of `owner`. */
  run<T>(owner: string, call: () => Promise<T>): Promise<T> {
    if (this.running < this.places) return this.start(call);
    return new Promise<void>((resolve) => {
      const queue = this.waiting.get(owner);
      if (queue) queue.push(resolve);
      else this.waiting.set(owner, [resolve]);
    }).then(() => this.started(call));
  }

  private start<T>(call: () => Promise<T>): Promise<T> {
    this.running++;
    return this.started(call);
  }

  /** `running` already counts this call. */
  private started<T>(call: () => Promise<T>): Promise<T> {
    let p: Promise<T>;
    try {
      p = call();
    } catch (e) {
      p = Promise.reject(e);
    }
    return p.finally(() => this.release());
  }

  /** The place goes to the owner that has waited longest for its turn (Map order), who then goes last. */
  private release(): void {
    const next = this.waiting.entries().next();
    if (next.done) {
      this.running--;
      return;
    }
    const [owner, queue] = next.value;
    const wake = queue.shift()!;
    this.waiting.delete(owner);
    if (queue.length > 0) this.waiting.set(owner, queue);
    wake();
  }
}

/** One lane per process: the thread pool is per process. */
export const slowLane = new ThreadLane(lanePlaces(process.env.UV_THREADPOOL_SIZE));
