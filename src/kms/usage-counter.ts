/**
 * AES-GCM with random 96-bit IVs is safe for at most 2^32 encryptions under one key (NIST SP
 * 800-38D, 8.3). We rotate long before: at ROTATION_THRESHOLD = 2^30 encryptions per key version,
 * a quarter of the limit, which leaves margin for counts lost in a crash between flushes and for
 * several nodes counting at once.
 *
 * Counting is batched: increments accumulate in memory and `flush` hands them to the store in one
 * call (not a store write per request).
 */
export const NIST_GCM_RANDOM_IV_LIMIT = 2 ** 32;
export const ROTATION_THRESHOLD = 2 ** 30;

export type VersionKey = `${string}#${number}`;

export function versionKey(keyId: string, version: number): VersionKey {
  return `${keyId}#${version}`;
}

export class UsageCounter {
  private pending = new Map<VersionKey, number>();

  /** Counts one encryption under (keyId, version). */
  add(keyId: string, version: number, count = 1): void {
    const k = versionKey(keyId, version);
    this.pending.set(k, (this.pending.get(k) ?? 0) + count);
  }

  get size(): number {
    return this.pending.size;
  }

  /** Hands the batch to `persist` (which returns the new totals); returns the versions now due for rotation. */
  async flush(persist: (batch: ReadonlyMap<VersionKey, number>) => Promise<ReadonlyMap<VersionKey, number>>): Promise<VersionKey[]> {
    if (this.pending.size === 0) return [];
    const batch = this.pending;
    this.pending = new Map();
    let totals: ReadonlyMap<VersionKey, number>;
    try {
      totals = await persist(batch);
    } catch (e) {
      for (const [k, n] of batch) this.pending.set(k, (this.pending.get(k) ?? 0) + n);
      throw e;
    }
    return [...totals].filter(([, total]) => total >= ROTATION_THRESHOLD).map(([k]) => k);
  }
}
