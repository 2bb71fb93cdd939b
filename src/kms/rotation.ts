import type { KeySpec } from '../common/key-specs';
import { ConflictError, KeyRecord, KeyRotation } from '../store/store';
import { DAY_SECONDS, unixNow } from '../common/clock';
import type { KmsContext } from './context';
import { about, ExternalKeyCannotRotateError, InvalidParameterError, RotationNotSupportedError, RotationRunningError } from './errors';
import { binding, Caller, domainError } from './key-access';
import { ROTATE_DAYS, rotateDaysProblem } from './key-rules';
import { canRotate, KEY_USAGES, usageOf } from './key-usage';

function requireRotatable(r: KeyRecord): void {
  const usage = usageOf(r);
  const can = canRotate(usage, r.origin);
  if (can === 'external') throw new ExternalKeyCannotRotateError(`key ${r.keyId} holds imported material, which cannot rotate`);
  if (can === 'asymmetric') throw new RotationNotSupportedError(`key ${r.keyId} is asymmetric (${usage}); asymmetric keys do not rotate`);
}

export interface RotationSettings {
  keyId: string;
  /** Days between rotations, 7 to 365; default 365. */
  rotateDays?: number;
}

/** Rotation settings, on-demand rotation, and the rotation of due keys (run by the background jobs). */
export class Rotation {
  private readonly running = new Set<string>();

  constructor(private readonly ctx: KmsContext) {}

  private get access() {
    return this.ctx.access;
  }

  async enableKeyRotation(caller: Caller, p: RotationSettings): Promise<void> {
    const { keyId, rotateDays } = p;
    const issue = rotateDaysProblem(rotateDays);
    if (issue) throw new InvalidParameterError(issue, about('rotateDays'));
    const days = rotateDays ?? ROTATE_DAYS.default;
    const now = unixNow(this.access.clock);
    requireRotatable(await this.access.load(caller, keyId));
    await this.access.change(caller, keyId, 'EnableKeyRotation', (r) => {
      if (r.rotation.enabled && r.rotation.rotateDays === days) return undefined;
      const from = r.rotation.lastRotateTime ?? now;
      return { rotation: { ...r.rotation, enabled: true, rotateDays: days, nextRotateTime: Math.max(now, from) + days * DAY_SECONDS } };
    });
  }

  async disableKeyRotation(caller: Caller, keyId: string): Promise<void> {
    await this.access.change(caller, keyId, 'DisableKeyRotation', (r) => {
      if (!r.rotation.enabled) return undefined;
      const { nextRotateTime: _next, ...rest } = r.rotation;
      return { rotation: { ...rest, enabled: false } };
    });
  }

  async getKeyRotationStatus(caller: Caller, keyId: string): Promise<{ keyId: string; rotationEnabled: boolean }> {
    const r = await this.access.use(caller, keyId, 'Describe');
    return { keyId: r.keyId, rotationEnabled: r.rotation.enabled };
  }

  /** Adds a version made inside the HSM; Encrypt uses it from now on. Returns the new version. */
  async rotateKey(caller: Caller, keyId: string): Promise<{ keyId: string; keyVersion: number }> {
    const r = await this.access.load(caller, keyId, true);
    requireRotatable(r);
    this.access.check(r, 'RotateKey');
    const next = await this.rotate(r);
    return { keyId: next.keyId, keyVersion: Math.max(...next.versions.map((v) => v.version)) };
  }

  /** Rotates one key now; refuses a second rotation of the same key while one runs. */
  async rotate(r: KeyRecord): Promise<KeyRecord> {
    if (this.running.has(r.keyId)) throw new RotationRunningError(`a rotation of key ${r.keyId} is already running`);
    this.running.add(r.keyId);
    try {
      const now = unixNow(this.access.clock);
      const version = Math.max(0, ...r.versions.map((v) => v.version)) + 1;
      const material = await this.access.cluster(r).generate(KEY_USAGES[usageOf(r)].spec as KeySpec, binding(r, version));
      const rotation: KeyRotation = { ...r.rotation, lastRotateTime: now };
      if (r.rotation.enabled) rotation.nextRotateTime = now + r.rotation.rotateDays * DAY_SECONDS;
      const next = await this.access.store.addVersion(r.ownerUin, r.keyId, { version, material: material.toBuffer(), createTime: now }, { rotation });
      this.access.cache.set(next);
      return next;
    } catch (e) {
      if (e instanceof ConflictError) throw new RotationRunningError(`key ${r.keyId} was rotated concurrently`);
      throw domainError(e);
    } finally {
      this.running.delete(r.keyId);
    }
  }

  /**
   * Rotates keys whose date has come. Keys that cannot rotate now (not Enabled) are looked at
   * again in a day rather than blocking the queue. Returns the ids rotated.
   */
  async rotateDue(limit = 100): Promise<string[]> {
    const now = unixNow(this.access.clock);
    const done: string[] = [];
    for (const ref of await this.access.store.dueKeys('rotation', now, limit)) {
      const r = await this.access.store.getKey(ref.ownerUin, ref.keyId);
      if (!r || !r.rotation.enabled || (r.rotation.nextRotateTime ?? Infinity) > now) continue;
      if (r.keyState !== 'Enabled' || canRotate(usageOf(r), r.origin) !== 'yes') {
        await this.access.store
          .updateKey(r.ownerUin, r.keyId, r.revision, { rotation: { ...r.rotation, nextRotateTime: now + DAY_SECONDS } })
          .catch(() => undefined);
        continue;
      }
      await this.rotate(r).then(
        () => done.push(r.keyId),
        () => undefined,
      );
    }
    return done;
  }

  /** Rotates keys whose newest version reached the GCM use threshold (from the usage counter). */
  async rotateWornOut(versions: readonly string[]): Promise<string[]> {
    const done: string[] = [];
    for (const vk of versions) {
      const [keyId, v] = vk.split('#');
      const owner = this.ctx.usage.ownerOf(keyId);
      if (owner === undefined) continue;
      const r = await this.access.store.getKey(owner, keyId);
      if (!r || r.versions[r.versions.length - 1]?.version !== Number(v)) continue;
      if (r.keyState !== 'Enabled' || canRotate(usageOf(r), r.origin) !== 'yes') {
        this.access.alarms.raise({
          kind: 'UsageLimitReached',
          time: unixNow(this.access.clock),
          ownerUin: r.ownerUin,
          keyId,
          detail: `version ${v} reached the GCM use limit and cannot rotate automatically`,
        });
        continue;
      }
      await this.rotate(r).then(
        () => done.push(keyId),
        () => undefined,
      );
    }
    return done;
  }
}
