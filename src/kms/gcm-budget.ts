import type { Alarms } from './alarms';
import { Clock, unixNow } from '../common/clock';
import { versionKey, VersionKey } from './usage-counter';

/**
 * The AES-GCM use limit of key versions that cannot rotate (imported material). Random 96-bit IVs
 * are safe for 2^32 encryptions per key (NIST SP 800-38D 8.3); a version that cannot be replaced
 * by rotation must stop encrypting there. Unlike the batched rotation counter, this is exact across
 * nodes: each node reserves invocations from the store's count (one atomic add) before using them,
 * a block at a time, so the store's count is never below what was used. Reservations a node did not
 * use (it stopped, crashed) are lost: the limit errs on the safe side.
 */
export const ALARM_FRACTION = 0.9;

/** Invocations reserved per store write: 1 for small limits (exact), at most 4096 (NIST's 2^32: one write per 4096 encryptions). */
export function reservationBlock(limit: number): number {
  return Math.max(1, Math.min(4096, Math.floor(limit / 2 ** 20)));
}

/** Adds `n` to a version's stored count and returns the new total (undefined: the key is gone). */
export type Reserve = (ref: VersionKey, n: number) => Promise<number | undefined>;

interface Slot {
  left: number;
  exhausted: boolean;
  pending?: Promise<void>;
}

export interface BudgetedKey {
  keyId: string;
  ownerUin: string;
}

export class GcmBudget {
  private readonly slots = new Map<VersionKey, Slot>();

  constructor(
    readonly limit: number,
    private readonly reserve: Reserve,
    private readonly alarms: Alarms,
    private readonly clock: Clock,
  ) {}

  /** Takes one encryption of (key, version); false when the version has none left. */
  async take(key: BudgetedKey, version: number): Promise<boolean> {
    const ref = versionKey(key.keyId, version);
    let slot = this.slots.get(ref);
    if (slot === undefined) this.slots.set(ref, (slot = { left: 0, exhausted: false }));
    for (;;) {
      if (slot.left > 0) {
        slot.left--;
        return true;
      }
      if (slot.exhausted) return false;
      const s = slot;
      s.pending ??= this.refill(key, version, s).finally(() => {
        s.pending = undefined;
      });
      await s.pending;
    }
  }

  private async refill(key: BudgetedKey, version: number, slot: Slot): Promise<void> {
    const block = reservationBlock(this.limit);
    const total = await this.reserve(versionKey(key.keyId, version), block);
    if (total === undefined) {
      slot.exhausted = true;
      return;
    }
    const before = total - block;
    slot.left += Math.max(0, Math.min(block, this.limit - before));
    slot.exhausted = total >= this.limit;
    this.alarmOnCrossing(key, version, before, total);
  }

  /** One alarm at 90 % and one at the limit, raised by the node whose reservation crosses the mark (so once in all). */
  private alarmOnCrossing(key: BudgetedKey, version: number, before: number, total: number): void {
    const marks = [
      ['UsageLimitApproaching', Math.ceil(this.limit * ALARM_FRACTION)],
      ['UsageLimitReached', this.limit],
    ] as const;
    for (const [kind, mark] of marks) {
      if (before >= mark || total < mark) continue;
      const used = Math.min(total, this.limit);
      this.alarms.raise({
        kind,
        time: unixNow(this.clock),
        ownerUin: key.ownerUin,
        keyId: key.keyId,
        detail:
          `version ${version} has used ${used} of ${this.limit} AES-GCM encryptions (random IVs) and cannot rotate` +
          (kind === 'UsageLimitReached' ? ': Encrypt and GenerateDataKey are refused, Decrypt goes on' : ''),
      });
    }
  }
}
