import type { HsmCluster } from '../hsm/cluster';
import { ClusterUnavailableError, HsmError, MaterialIntegrityError, MemberUnavailableError, PoolExhaustedError, UnsupportedError } from '../hsm/errors';
import { MaterialBinding, WrappedMaterial } from '../hsm/material';
import {
  AliasExistsError,
  ConflictError,
  KeyNotFoundError as StoreKeyNotFound,
  KeyPatch,
  KeyRecord,
  MetadataStore,
  QuotaExceededError,
  StoreError,
  StoreUnavailableError,
} from '../store/store';
import type { Alarms } from './alarms';
import { Clock, unixNow } from '../common/clock';
import { isUuid } from '../common/ids';
import type { ClusterDirectory } from './cluster-directory';
import {
  about,
  AliasTakenError,
  InvalidKeyIdError,
  KeyArchivedError,
  KeyDisabledError,
  KeyLimitExceededError,
  KeyNotFoundError,
  KeyNotPendingDeleteError,
  KeyPendingDeleteError,
  KeyShouldBeDisabledError,
  KeyStateNotSupportedError,
  KmsError,
  quoted,
  ServiceUnavailableError,
  StoreIntegrityError,
  UnsupportedOperationError,
} from './errors';
import { KeyCache } from './key-cache';
import { KeyAction, RefusalReason, transition } from './key-state';

/** Who is asking: the tenant (root account) that owns keys, the acting uin, and the request's region. */
export interface Caller {
  tenant: string;
  uin: string;
  region: string;
}

const REFUSALS: Record<RefusalReason, (keyId: string, state: string, action: string) => KmsError> = {
  KeyDisabled: (id) => new KeyDisabledError(`key ${id} is disabled`),
  KeyArchived: (id, _s, a) => new KeyArchivedError(`key ${id} is archived: ${a} is not allowed (archived keys only decrypt and verify)`),
  KeyPendingDelete: (id, _s, a) => new KeyPendingDeleteError(`key ${id} is pending deletion: ${a} refused and an alarm raised`),
  StateNotSupported: (id, s, a) => new KeyStateNotSupportedError(`${a} is not possible on key ${id} in state ${s}`),
  ShouldBeDisabled: (id) => new KeyShouldBeDisabledError(`key ${id} must be disabled before it can be scheduled for deletion`),
  NotPendingDelete: (id) => new KeyNotPendingDeleteError(`key ${id} is not pending deletion`),
};

/** Store and HSM failures in domain terms; domain errors pass through. */
export function domainError(e: unknown): unknown {
  if (e instanceof KmsError) return e;
  if (e instanceof AliasExistsError) return new AliasTakenError(`alias ${JSON.stringify(e.alias)} already exists in region ${e.region}`);
  if (e instanceof QuotaExceededError) return new KeyLimitExceededError(`the account already has ${e.limit} keys in region ${e.region} (the configured limit)`);
  if (e instanceof StoreKeyNotFound) return new KeyNotFoundError(e.keyId);
  if (e instanceof ClusterUnavailableError || e instanceof MemberUnavailableError || e instanceof PoolExhaustedError) {
    return new ServiceUnavailableError(`${e.message}; retry later`);
  }
  if (e instanceof UnsupportedError) return new UnsupportedOperationError(e.message);
  // altered, re-pointed (another owner or region) or KMR1 material: the store was changed outside the service
  if (e instanceof MaterialIntegrityError) return new StoreIntegrityError(`key material failed its integrity check: ${e.message}`);
  // the key or identity store is down or not answering: temporary, like an HSM cluster without a healthy member
  if (e instanceof StoreUnavailableError) return new ServiceUnavailableError(`${e.message}; retry later`);
  if (e instanceof StoreError || e instanceof HsmError) return e;
  return e;
}

export interface KeyAccessOptions {
  store: MetadataStore;
  clusters: ClusterDirectory;
  clock: Clock;
  alarms: Alarms;
  cache: KeyCache;
}

/** Loading, state checks, compare-and-set updates and material of keys: the piece every action shares. */
export class KeyAccess {
  readonly store: MetadataStore;
  readonly clusters: ClusterDirectory;
  readonly clock: Clock;
  readonly alarms: Alarms;
  readonly cache: KeyCache;

  constructor(o: KeyAccessOptions) {
    this.store = o.store;
    this.clusters = o.clusters;
    this.clock = o.clock;
    this.alarms = o.alarms;
    this.cache = o.cache;
  }

  /** The caller's key in the caller's region; anything else is "not found". `fresh` bypasses the cache. */
  async load(caller: Caller, keyId: unknown, fresh = false): Promise<KeyRecord> {
    if (typeof keyId !== 'string' || !isUuid(keyId))
      throw new InvalidKeyIdError(`keyId ${typeof keyId === 'string' ? quoted(keyId) : typeof keyId} is not a key id (a lowercase UUID)`, about('keyId'));
    let r = fresh ? undefined : this.cache.get(keyId);
    if (r === undefined) {
      r = await this.store.getKey(caller.tenant, keyId);
      if (r !== undefined) this.cache.set(r);
    }
    if (r === undefined || r.ownerUin !== caller.tenant || r.region !== caller.region) throw new KeyNotFoundError(keyId);
    return r;
  }

  /** Refuses `action` if the state machine does; any attempt to use a key pending deletion raises an alarm. */
  check(record: KeyRecord, action: KeyAction): void {
    const t = transition(record.keyState, action);
    if (t.allowed) return;
    if (t.alarm) {
      this.alarms.raise({
        kind: 'PendingDeleteKeyUsed',
        time: unixNow(this.clock),
        ownerUin: record.ownerUin,
        keyId: record.keyId,
        action,
        deletionDate: record.deletionDate,
      });
    }
    throw REFUSALS[t.reason](record.keyId, record.keyState, action);
  }

  async use(caller: Caller, keyId: unknown, action: KeyAction): Promise<KeyRecord> {
    const r = await this.load(caller, keyId);
    this.check(r, action);
    return r;
  }

  /**
   * Reads the key fresh, checks `action`, asks `decide` for a patch (none: nothing to write) and
   * writes it with compare-and-set, retrying when another writer got there first.
   */
  async change(caller: Caller, keyId: unknown, action: KeyAction, decide: (r: KeyRecord) => KeyPatch | undefined): Promise<KeyRecord> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.load(caller, keyId, true);
      this.check(r, action);
      const patch = decide(r);
      if (patch === undefined) return r;
      try {
        const next = await this.store.updateKey(r.ownerUin, r.keyId, r.revision, patch);
        this.cache.set(next);
        return next;
      } catch (e) {
        if (e instanceof ConflictError && attempt < 5) continue;
        throw domainError(e);
      }
    }
  }

  cluster(record: KeyRecord): HsmCluster {
    const c = this.clusters.get(record.hsmClusterId);
    if (!c) throw new ServiceUnavailableError(`HSM cluster ${record.hsmClusterId} of key ${record.keyId} is not configured on this node`);
    return c;
  }

  /** The newest version of a key (the one Encrypt uses). */
  newest(record: KeyRecord): number {
    const v = record.versions[record.versions.length - 1];
    if (!v) throw new KeyStateNotSupportedError(`key ${record.keyId} has no key material`);
    return v.version;
  }

  /** Parsed material of one version with the binding it must carry; undefined when the version does not exist. */
  /**
   * A record that does not carry this key version's binding (another key's or owner's material, or
   * a KMR1 record after the migration) is refused here, before the HSM, with a StoreIntegrity alarm.
   */
  material(record: KeyRecord, version: number): { material: WrappedMaterial; binding: MaterialBinding } | undefined {
    const material = this.cache.material(record, version);
    if (!material) return undefined;
    const expected = binding(record, version);
    try {
      material.assertBinding(expected);
    } catch (e) {
      const detail = `key ${record.keyId} version ${version}: ${(e as Error).message}`;
      this.alarms.raise({ kind: 'StoreIntegrity', time: unixNow(this.clock), ownerUin: record.ownerUin, keyId: record.keyId, detail });
      throw new StoreIntegrityError(`the stored material of key ${record.keyId} failed its integrity check: refused, and an alarm was raised`);
    }
    return { material, binding: expected };
  }
}

/** The binding of a key version's material: cluster, key, version, usage, and its owner tenant (owner) and region (scope). */
export function binding(record: Pick<KeyRecord, 'hsmClusterId' | 'keyId' | 'keyUsage' | 'ownerUin' | 'region'>, version: number): MaterialBinding {
  return { clusterId: record.hsmClusterId, keyId: record.keyId, keyVersion: version, usage: record.keyUsage, owner: record.ownerUin, scope: record.region };
}
