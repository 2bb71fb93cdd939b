/**
 * AES-GCM with random 96-bit IVs is safe for at most 2^32 encryptions under one key (NIST SP
 * 800-38D, 8.3). Versions that can rotate are rotated long before: at ROTATION_THRESHOLD = 2^30
 * encryptions per key version, a quarter of the limit (of `gcm.maxInvocationsPerVersion` when that
 * is set lower), which leaves margin for counts lost in a crash between flushes and for several
 * nodes counting at once. Versions that cannot rotate are not counted here but in GcmBudget.
 *
 * Counting is batched: increments accumulate in memory and `flush` hands them to the store in one
 * call (not a store write per request).
 */
export const ROTATION_THRESHOLD = 2 ** 30;

/** The rotation threshold for a configured GCM limit: a quarter of it, at most ROTATION_THRESHOLD. */
export function rotationThreshold(limit: number): number {
  return Math.max(1, Math.min(ROTATION_THRESHOLD, Math.floor(limit / 4)));
}

export type VersionKey = `${string}#${number}`;

export function versionKey(keyId: string, version: number): VersionKey {
  return `${keyId}#${version}`;
}

export class UsageCounter {
  private pending = new Map<VersionKey, number>();
  private owners = new Map<string, string>();
  private flushedOwners = new Map<string, string>();

  constructor(private readonly threshold = ROTATION_THRESHOLD) {}

  /** Counts one encryption under (keyId, version), remembering the key's owner for the rotation that may follow. */
  add(keyId: string, version: number, count = 1, owner?: string): void {
    const k = versionKey(keyId, version);
    this.pending.set(k, (this.pending.get(k) ?? 0) + count);
    if (owner !== undefined) this.owners.set(keyId, owner);
  }

  /** The owner of a key counted in the batch last flushed. */
  ownerOf(keyId: string): string | undefined {
    return this.flushedOwners.get(keyId) ?? this.owners.get(keyId);
  }

  get size(): number {
    return this.pending.size;
  }

  /** Hands the batch to `persist` (which returns the new totals); returns the versions now due for rotation. */
  async flush(persist: (batch: ReadonlyMap<VersionKey, number>) => Promise<ReadonlyMap<string, number>>): Promise<string[]> {
    if (this.pending.size === 0) return [];
    const batch = this.pending;
    this.pending = new Map();
    this.flushedOwners = this.owners;
    this.owners = new Map();
    let totals: ReadonlyMap<string, number>;
    try {
      totals = await persist(batch);
    } catch (e) {
      for (const [k, n] of batch) this.pending.set(k, (this.pending.get(k) ?? 0) + n);
      for (const [k, o] of this.flushedOwners) if (!this.owners.has(k)) this.owners.set(k, o);
      throw e;
    }
    return [...totals].filter(([, total]) => total >= this.threshold).map(([k]) => k);
  }
}
