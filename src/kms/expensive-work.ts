import { ExpensiveLimitError } from './errors';

export const DEFAULT_EXPENSIVE_PER_TENANT = 4;

/**
 * The per-tenant cap on expensive actions in flight in this process (key-pair generation, RSA
 * decryption, signing). Past it a request is refused at once, not queued: a tenant cannot make
 * the HSMs' and the thread pool's slow work wait behind its own backlog. 0 means no cap.
 */
export class ExpensiveWork {
  private readonly inFlight = new Map<string, number>();

  constructor(readonly perTenant: number = DEFAULT_EXPENSIVE_PER_TENANT) {}

  held(tenant: string): number {
    return this.inFlight.get(tenant) ?? 0;
  }

  /** Takes one of the tenant's places or throws ExpensiveLimitError; call the result once to give it back. */
  acquire(tenant: string, action: string): () => void {
    const held = this.held(tenant);
    if (this.perTenant > 0 && held >= this.perTenant) {
      throw new ExpensiveLimitError(
        `account ${tenant} already has ${held} expensive requests in progress (the limit); ${action} refused, retry when one has finished`,
      );
    }
    this.inFlight.set(tenant, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = this.held(tenant) - 1;
      if (left > 0) this.inFlight.set(tenant, left);
      else this.inFlight.delete(tenant);
    };
  }

  /** Runs `work` holding one place; the place is taken before `work` starts (synchronously). */
  async run<T>(tenant: string, action: string, work: () => Promise<T>): Promise<T> {
    const release = this.acquire(tenant, action);
    try {
      return await work();
    } finally {
      release();
    }
  }
}
