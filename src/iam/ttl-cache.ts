/**
 * A small in-memory cache of asynchronously loaded values: bounded (least recently used goes
 * first), each entry kept at most `ttlMs` from the start of its load, and one load in flight per
 * key. Absent results (undefined) and failed loads are not kept.
 */
import { Clock } from '../common/clock';

interface Entry<V> {
  value: Promise<V | undefined>;
  loadedAt: number;
}

export class TtlCache<V> {
  private readonly entries = new Map<string, Entry<V>>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
    private readonly clock: Clock,
  ) {}

  get(key: string, load: () => Promise<V | undefined>): Promise<V | undefined> {
    const hit = this.entries.get(key);
    this.entries.delete(key);
    if (hit && this.clock.now() - hit.loadedAt < this.ttlMs) {
      this.entries.set(key, hit);
      return hit.value;
    }
    const entry: Entry<V> = { value: load(), loadedAt: this.clock.now() };
    this.entries.set(key, entry);
    this.evict();
    entry.value.then(
      (v) => {
        if (v === undefined) this.forget(key, entry);
      },
      () => this.forget(key, entry),
    );
    return entry.value;
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }

  private forget(key: string, entry: Entry<V>): void {
    if (this.entries.get(key) === entry) this.entries.delete(key);
  }

  private evict(): void {
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) return;
      this.entries.delete(oldest);
    }
  }
}
