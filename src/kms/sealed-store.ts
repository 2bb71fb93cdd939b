/**
 * Key ownership the store cannot change: a decorator over any MetadataStore backend that MACs the
 * fields of a key that say whose it is (id, tenant, region, owner, cluster, usage, origin, creator:
 * none of them ever changes after creation) when the key is created, and verifies that MAC on every
 * record read from the backend (getKey, listKeys, and the records writes return). A record whose
 * MAC is missing or wrong is refused with StoreIntegrityError and a StoreIntegrity alarm, so a key
 * re-pointed at another tenant in the SQLite file or the Redis keys is neither usable nor listed nor
 * described by that tenant. Verification costs one HSM MAC per record loaded; the KMS core caches
 * records (key-cache.ts), so a cached hit costs nothing.
 */
import type {
  ClusterKeysPage,
  ClusterState,
  CreateLimits,
  DataKeyLimits,
  DataKeyPatch,
  DataKeyRecord,
  DataKeyRef,
  DueKind,
  KeyChange,
  KeyPatch,
  KeyRecord,
  KeyRef,
  KeyVersion,
  ListDataKeysQuery,
  ListDataKeysResult,
  ListKeysQuery,
  ListKeysResult,
  MetadataStore,
  NewDataKeyRecord,
  NewKeyRecord,
  Tombstone,
} from '../store/store';
import { RowAuthenticator, rowBytes } from '../store/row-mac';
import type { KeyState } from './key-state';
import type { Alarms } from './alarms';
import { Clock, systemClock, unixNow } from '../common/clock';
import { StoreIntegrityError } from './errors';

type Owned = Pick<NewKeyRecord, 'keyId' | 'ownerUin' | 'region' | 'owner' | 'hsmClusterId' | 'keyUsage' | 'origin' | 'creatorUin'>;

/** The bytes a key's ownership MAC covers. */
export function ownershipBytes(r: Owned): Buffer {
  return rowBytes('kms-key-ownership/1', [r.keyId, r.ownerUin, r.region, r.owner, r.hsmClusterId, r.keyUsage, r.origin, r.creatorUin]);
}

/** The ownership MAC of a record (base64), as stored in its `authority` field. */
export async function ownershipMac(auth: RowAuthenticator, r: Owned): Promise<string> {
  return (await auth.mac(ownershipBytes(r))).toString('base64');
}

export class SealedMetadataStore implements MetadataStore {
  constructor(
    private readonly inner: MetadataStore,
    private readonly auth: RowAuthenticator,
    private readonly alarms: Alarms,
    private readonly clock: Clock = systemClock,
  ) {}

  async createKey(record: NewKeyRecord, limits?: CreateLimits): Promise<KeyRecord> {
    const sealed = { ...record, authority: await ownershipMac(this.auth, record) };
    return this.checked(await this.inner.createKey(sealed, limits));
  }

  countKeys(ownerUin: string, region: string): Promise<number> {
    return this.inner.countKeys(ownerUin, region);
  }

  countByState(): Promise<Record<KeyState, number>> {
    return this.inner.countByState();
  }

  async getKey(ownerUin: string, keyId: string): Promise<KeyRecord | undefined> {
    const r = await this.inner.getKey(ownerUin, keyId);
    return r && this.checked(r);
  }

  async updateKey(ownerUin: string, keyId: string, expectedRevision: number, patch: KeyPatch): Promise<KeyRecord> {
    if (patch.authority !== undefined) throw new StoreIntegrityError('the ownership MAC is set at creation only');
    return this.checked(await this.inner.updateKey(ownerUin, keyId, expectedRevision, patch));
  }

  async addVersion(ownerUin: string, keyId: string, version: KeyVersion, patch?: KeyPatch): Promise<KeyRecord> {
    return this.checked(await this.inner.addVersion(ownerUin, keyId, version, patch));
  }

  deleteKey(ownerUin: string, keyId: string, deletedAt: number): Promise<boolean> {
    return this.inner.deleteKey(ownerUin, keyId, deletedAt);
  }

  getTombstone(ownerUin: string, keyId: string): Promise<Tombstone | undefined> {
    return this.inner.getTombstone(ownerUin, keyId);
  }

  /** Fails closed: one record of the page that fails its check refuses the whole listing. */
  async listKeys(query: ListKeysQuery): Promise<ListKeysResult> {
    const found = await this.inner.listKeys(query);
    for (const r of found.keys) await this.checked(r);
    return found;
  }

  dueKeys(kind: DueKind, before: number, limit: number): Promise<KeyRef[]> {
    return this.inner.dueKeys(kind, before, limit);
  }

  addUsage(batch: ReadonlyMap<string, number>): Promise<Map<string, number>> {
    return this.inner.addUsage(batch);
  }

  /**
   * Hosted data keys pass through unsealed: their blob authenticates itself under the tenant's CMK
   * (a record moved to another tenant or region names a CMK that is not found there).
   */
  createDataKey(record: NewDataKeyRecord, limits?: DataKeyLimits): Promise<DataKeyRecord> {
    return this.inner.createDataKey(record, limits);
  }

  countDataKeys(ownerUin: string, region: string): Promise<number> {
    return this.inner.countDataKeys(ownerUin, region);
  }

  getDataKey(ownerUin: string, dataKeyId: string): Promise<DataKeyRecord | undefined> {
    return this.inner.getDataKey(ownerUin, dataKeyId);
  }

  updateDataKey(ownerUin: string, dataKeyId: string, expectedRevision: number, patch: DataKeyPatch): Promise<DataKeyRecord> {
    return this.inner.updateDataKey(ownerUin, dataKeyId, expectedRevision, patch);
  }

  deleteDataKey(ownerUin: string, dataKeyId: string): Promise<boolean> {
    return this.inner.deleteDataKey(ownerUin, dataKeyId);
  }

  listDataKeys(query: ListDataKeysQuery): Promise<ListDataKeysResult> {
    return this.inner.listDataKeys(query);
  }

  dueDataKeys(before: number, limit: number): Promise<DataKeyRef[]> {
    return this.inner.dueDataKeys(before, limit);
  }

  watch(listener: (change: KeyChange) => void): () => void {
    return this.inner.watch(listener);
  }

  acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    return this.inner.acquireLease(name, holder, ttlMs);
  }

  releaseLease(name: string, holder: string): Promise<void> {
    return this.inner.releaseLease(name, holder);
  }

  clusterKeys(clusterId: string, cursor: string, limit: number): Promise<ClusterKeysPage> {
    return this.inner.clusterKeys(clusterId, cursor, limit);
  }

  getClusterState(clusterId: string): Promise<ClusterState | undefined> {
    return this.inner.getClusterState(clusterId);
  }

  putClusterState(clusterId: string, expectedRevision: number, doc: string): Promise<number> {
    return this.inner.putClusterState(clusterId, expectedRevision, doc);
  }

  repair(): Promise<string[]> {
    return this.inner.repair();
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** The record if its ownership MAC verifies; otherwise an alarm and StoreIntegrityError. */
  private async checked(r: KeyRecord): Promise<KeyRecord> {
    const mac = r.authority === undefined ? undefined : Buffer.from(r.authority, 'base64');
    if (mac !== undefined && mac.length > 0 && (await this.auth.verify(ownershipBytes(r), mac))) return r;
    const detail = `key ${r.keyId}: its stored ownership ${mac === undefined ? 'has no MAC' : 'does not match its MAC'} (changed outside the service)`;
    this.alarms.raise({ kind: 'StoreIntegrity', time: unixNow(this.clock), ownerUin: r.ownerUin, keyId: r.keyId, detail });
    throw new StoreIntegrityError(`the stored record of key ${r.keyId} failed its integrity check: refused, and an alarm was raised`);
  }
}
