/**
 * Unwrapped key handles of one member: bounded LRU with TTL; evicted handles are destroyed;
 * concurrent requests for the same key share one unwrap.
 */
export class HandleCache<H> {
  private readonly entries = new Map<string, { handle: H; expires: number }>();
  private readonly inflight = new Map<string, Promise<H>>();
  /** Bumped by clear(): a load that started before it must not fill the cache after it. */
  private generation = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
    private readonly destroy: (handle: H) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string): H | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    const now = this.now();
    if (e.expires <= now) {
      this.evict(key);
      return undefined;
    }
    this.entries.delete(key);
    this.entries.set(key, e);
    return e.handle;
  }

  async getOrLoad(key: string, load: () => Promise<H>): Promise<H> {
    const hit = this.get(key);
    if (hit !== undefined) return hit;
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const generation = this.generation;
    const settle = () => {
      if (this.generation === generation) this.inflight.delete(key);
    };
    const p = load().then(
      (handle) => {
        settle();
        if (this.generation === generation) this.put(key, handle);
        return handle;
      },
      (e: unknown) => {
        settle();
        throw e;
      },
    );
    this.inflight.set(key, p);
    return p;
  }

  put(key: string, handle: H): void {
    const existing = this.entries.get(key);
    if (existing && existing.handle !== handle) this.evict(key);
    this.entries.delete(key);
    this.entries.set(key, { handle, expires: this.now() + this.ttlMs });
    while (this.entries.size > this.maxEntries) this.evict(this.entries.keys().next().value as string);
  }

  evict(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    try {
      this.destroy(e.handle);
    } catch {
      // the object may already be gone with its session
    }
  }

  clear(destroy: boolean): void {
    if (destroy) for (const key of [...this.entries.keys()]) this.evict(key);
    this.entries.clear();
    this.inflight.clear();
    this.generation++;
  }
}
