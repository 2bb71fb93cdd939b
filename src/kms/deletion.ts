import { randomUUID } from 'node:crypto';
import { WrappedMaterial } from '../hsm/material';
import type { KeyRecord } from '../store/store';
import { DAY_SECONDS, unixNow } from '../common/clock';
import type { KmsContext } from './context';
import { afterEvent } from './key-state';

/**
 * What happens when dates come: keys past their deletion date are crypto-shredded (every wrapped
 * version erased, a tombstone kept), imported material past its ValidTo is destroyed (key back to
 * PendingImport), and keys in their last days before deletion raise one alarm a day.
 */
export class DueWork {
  constructor(
    private readonly ctx: KmsContext,
    private readonly node: string,
  ) {}

  private get access() {
    return this.ctx.access;
  }

  /** Erases keys whose deletion date has passed; returns their ids. */
  async deleteDue(limit = 100): Promise<string[]> {
    const now = unixNow(this.access.clock);
    const done: string[] = [];
    for (const ref of await this.access.store.dueKeys('deletion', now, limit)) {
      const r = await this.access.store.getKey(ref.ownerUin, ref.keyId);
      if (!r || r.keyState !== 'PendingDelete' || (r.deletionDate ?? Infinity) > now) continue;
      if (await this.access.store.deleteKey(r.ownerUin, r.keyId, now)) {
        this.forget(r);
        this.access.alarms.raise({ kind: 'KeyDeleted', time: now, ownerUin: r.ownerUin, keyId: r.keyId, deletionDate: r.deletionDate });
        done.push(r.keyId);
      }
    }
    return done;
  }

  /** Destroys imported material whose ValidTo has passed; the key returns to PendingImport (or stays PendingDelete). */
  async expireDue(limit = 100): Promise<string[]> {
    const now = unixNow(this.access.clock);
    const done: string[] = [];
    for (const ref of await this.access.store.dueKeys('expiry', now, limit)) {
      const r = await this.access.store.getKey(ref.ownerUin, ref.keyId);
      if (!r || r.validTo === undefined || r.validTo === 0 || r.validTo > now || r.versions.length === 0) continue;
      const keyState = afterEvent(r.keyState, 'MaterialExpired');
      const ok = await this.access.store.updateKey(r.ownerUin, r.keyId, r.revision, { versions: [], keyState, validTo: null }).then(
        () => true,
        () => false,
      );
      if (ok) {
        this.forget(r);
        done.push(r.keyId);
      }
    }
    return done;
  }

  /** One alarm per key and day during the last `deletionAlarmDays` before deletion, whichever node runs it. */
  async alarmImminent(limit = 1000): Promise<string[]> {
    const now = unixNow(this.access.clock);
    const horizon = now + this.ctx.config.deletionAlarmDays * DAY_SECONDS;
    const raised: string[] = [];
    for (const ref of await this.access.store.dueKeys('deletion', horizon, limit)) {
      const r = await this.access.store.getKey(ref.ownerUin, ref.keyId);
      if (!r || r.keyState !== 'PendingDelete' || r.deletionDate === undefined || r.deletionDate <= now) continue;
      const day = Math.floor(now / DAY_SECONDS);
      // a holder name of its own per attempt: the lease exists once per key and day, whoever asks again
      if (!(await this.access.store.acquireLease(`alarm:${r.keyId}:${day}`, `${this.node}:${randomUUID()}`, 2 * DAY_SECONDS * 1000))) continue;
      const daysLeft = Math.ceil((r.deletionDate - now) / DAY_SECONDS);
      this.access.alarms.raise({
        kind: 'KeyDeletionImminent',
        time: now,
        ownerUin: r.ownerUin,
        keyId: r.keyId,
        deletionDate: r.deletionDate,
        detail: `${daysLeft} day(s) left`,
      });
      raised.push(r.keyId);
    }
    return raised;
  }

  /** Drops this node's cached handles of the key's versions (other nodes follow the change notification). */
  private forget(r: KeyRecord): void {
    this.access.cache.invalidate(r.keyId);
    const cluster = this.access.clusters.get(r.hsmClusterId);
    if (!cluster) return;
    for (const v of r.versions) {
      try {
        cluster.forget(WrappedMaterial.fromBuffer(v.material));
      } catch {
        // a malformed record has no handle to forget
      }
    }
  }
}
