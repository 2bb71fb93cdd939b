import { PoolExhaustedError } from './errors';

interface Waiter<S> {
  resolve(session: S): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * Sessions of one token: grown lazily up to `cap`, handed out one caller at a time; when all are
 * busy a caller waits at most `waitMs` and then gets PoolExhaustedError.
 */
export class SessionPool<S> {
  private readonly idle: S[] = [];
  /** Sessions handed out or idle since the last reset; anything else returned to the pool is ignored. */
  private readonly live = new Set<S>();
  private readonly waiters: Waiter<S>[] = [];
  private open = 0;

  constructor(
    private readonly name: string,
    private readonly openSession: () => S,
    private readonly closeSession: (s: S) => void,
    readonly cap: number,
    private readonly waitMs: number,
  ) {}

  get size(): number {
    return this.open;
  }

  /** Callers waiting for a session. */
  get waiting(): number {
    return this.waiters.length;
  }

  get busy(): number {
    return this.open - this.idle.length;
  }

  /** A session now, or undefined when a caller would have to wait. */
  tryAcquire(): S | undefined {
    const s = this.idle.pop();
    if (s !== undefined) return s;
    if (this.open < this.cap) {
      const opened = this.openSession();
      this.open++;
      this.live.add(opened);
      return opened;
    }
    return undefined;
  }

  acquire(): Promise<S> {
    const s = this.tryAcquire();
    if (s !== undefined) return Promise.resolve(s);
    return new Promise<S>((resolve, reject) => {
      const waiter: Waiter<S> = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          reject(new PoolExhaustedError(this.name, this.cap, this.waitMs));
        }, this.waitMs),
      };
      this.waiters.push(waiter);
    });
  }

  release(s: S): void {
    if (!this.live.has(s)) return;
    const waiter = this.waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve(s);
    } else {
      this.idle.push(s);
    }
  }

  /** Drops a session after a session-level error; a waiter gets a fresh one if one can be opened. */
  discard(s: S): void {
    if (!this.live.delete(s)) return;
    this.open--;
    try {
      this.closeSession(s);
    } catch {
      // the session is already unusable
    }
    const waiter = this.waiters[0];
    if (waiter) {
      try {
        const fresh = this.tryAcquire();
        if (fresh !== undefined) {
          this.waiters.shift();
          clearTimeout(waiter.timer);
          waiter.resolve(fresh);
        }
      } catch {
        // leave the waiter to its timeout
      }
    }
  }

  /** Forgets every session (the module was re-initialised, so they are gone); waiters fail now. */
  reset(error: Error): void {
    this.idle.length = 0;
    this.live.clear();
    this.open = 0;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(error);
    }
  }
}
