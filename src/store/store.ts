/**
 * CMK metadata persistence: the one interface every backend implements. The store knows nothing of
 * HSMs; key material is an opaque record (`WrappedMaterial.toBuffer()`) it persists as bytes.
 */
import { DataKeyState, DataKeyTableState } from '../common/data-key-states';
import { KeyState, TableState } from '../common/key-states';

export * from './errors';

export type KeyOrigin = 'TENCENT_KMS' | 'EXTERNAL';

export interface KeyRotation {
  enabled: boolean;
  rotateDays: number;
  nextRotateTime?: number;
  lastRotateTime?: number;
}

export interface KeyVersion {
  version: number;
  /** Opaque wrapped material record. */
  material: Buffer;
  createTime: number;
}

/** Parameters handed out by GetParametersForImport; the token itself is never stored, only its hash. */
export interface ImportParameters {
  /** SHA-256 (hex) of the ImportToken. */
  tokenHash: string;
  wrappingAlgorithm: string;
  /** Opaque wrapped RSA-2048 wrapping key record (its private half never leaves the HSM in clear). */
  wrappingKey: Buffer;
  /** Unix seconds after which the token is refused. */
  validTo: number;
}

/** A cloud resource bound to a key (BindCloudResource). */
export interface CloudBinding {
  productId: string;
  resourceId: string;
}

/** A CMK as given to `createKey`. Times are Unix seconds. */
export interface NewKeyRecord {
  keyId: string;
  alias: string;
  description: string;
  keyUsage: string;
  origin: KeyOrigin;
  keyState: KeyState;
  creatorUin: string;
  /** The tenant. */
  ownerUin: string;
  /** `user` or a cloud product's name. */
  owner: string;
  region: string;
  hsmClusterId: string;
  tags: Record<string, string>;
  rotation: KeyRotation;
  deletionDate?: number;
  validTo?: number;
  createTime: number;
  versions: KeyVersion[];
  /** EXTERNAL keys: the outstanding import parameters (only the latest is kept). */
  importParameters?: ImportParameters;
  /** EXTERNAL keys: check value (hex) of the imported material; kept after the material is deleted so a re-import must match. */
  materialCheckValue?: string;
  cloudBindings?: CloudBinding[];
  /**
   * Base64 MAC over the key's ownership (id, tenant, region, owner, cluster, usage, origin, creator),
   * set and checked above the store (src/kms/sealed-store.ts); opaque here, kept in the document.
   */
  authority?: string;
}

/** A stored CMK: `revision` grows by one with every change and is the compare-and-set token. */
export interface KeyRecord extends NewKeyRecord {
  revision: number;
}

/** Fields `updateKey` may change; `null` clears an optional field. */
export interface KeyPatch {
  alias?: string;
  description?: string;
  /** Only the state machine (`src/kms/key-state.ts`) makes one: a raw string does not compile. */
  keyState?: TableState;
  tags?: Record<string, string>;
  rotation?: KeyRotation;
  deletionDate?: number | null;
  validTo?: number | null;
  importParameters?: ImportParameters | null;
  materialCheckValue?: string | null;
  cloudBindings?: CloudBinding[];
  /** Replaces every version (import, deletion or expiry of imported material); durable write. */
  versions?: KeyVersion[];
  /** The ownership MAC (set once, by the start-up migration of rows written before it existed). */
  authority?: string;
}

/** What remains of a deleted key: enough for audit and lists to stay explainable; no material. */
export interface Tombstone {
  keyId: string;
  ownerUin: string;
  region: string;
  alias: string;
  keyUsage: string;
  origin: KeyOrigin;
  hsmClusterId: string;
  createTime: number;
  /** Unix seconds. */
  deletedAt: number;
}

export interface KeyRef {
  ownerUin: string;
  keyId: string;
}

/**
 * Background work found through indexes (never a scan):
 *  - rotation: rotation.enabled and rotation.nextRotateTime <= before
 *  - deletion: keyState PendingDelete and deletionDate <= before
 *  - expiry:   validTo set (non-zero) and validTo <= before, and the key still has versions
 */
export type DueKind = 'rotation' | 'deletion' | 'expiry';

/** A change seen by `watch`: one key, or `undefined` keyId when anything may have changed (reconnect, another process). */
export interface KeyChange {
  keyId?: string;
}

/** A key matches when it has tag `key` and, if `values` is non-empty, one of those values. */
export interface TagFilter {
  key: string;
  values?: string[];
}

export const MAX_LIST_LIMIT = 200;

export interface ListKeysQuery {
  ownerUin: string;
  region: string;
  offset: number;
  /** 1..200 */
  limit: number;
  order: 'asc' | 'desc';
  /** Any of these states (absent or empty: every state). */
  keyStates?: KeyState[];
  /** `user`: owner is "user"; `product`: owner is a cloud product. Absent: both. */
  role?: 'user' | 'product';
  /** Substring of the alias or of the key id. */
  searchAlias?: string;
  origin?: KeyOrigin;
  keyUsage?: string;
  hsmClusterId?: string;
  /** All must match. */
  tagFilters?: TagFilter[];
}

export interface ListKeysResult {
  /** Number of keys matching the filters, regardless of offset and limit. */
  total: number;
  keys: KeyRecord[];
}

export interface CreateLimits {
  /** Refuse (`QuotaExceededError`) when the tenant already has this many user keys not PendingDelete in the region. */
  maxKeys?: number;
}

/** One page of a walk over every key of a cluster; `cursor` undefined when the walk is over. */
export interface ClusterKeysPage {
  keys: KeyRef[];
  cursor: string | undefined;
}

/** A cluster's state document (opaque to the store; the KMS core keeps its domain generations there). */
export interface ClusterState {
  doc: string;
  /** Grows by one with every write; the compare-and-set token (0: never written). */
  revision: number;
}

/** A data key hosted by the KMS, as given to `createDataKey`: only its CMK-sealed blob is kept, never the key itself. Times are Unix seconds. */
export interface NewDataKeyRecord {
  dataKeyId: string;
  /** The tenant. */
  ownerUin: string;
  region: string;
  creatorUin: string;
  /** `user` or a cloud product's name. */
  owner: string;
  /** Unique per (ownerUin, region). */
  name: string;
  description: string;
  /** The CMK the blob is sealed under. */
  keyId: string;
  numberOfBytes: number;
  /** TENCENT_KMS: made by the KMS; EXTERNAL: imported in clear. */
  origin: KeyOrigin;
  hsmClusterId: string;
  keyState: DataKeyState;
  tags: Record<string, string>;
  createTime: number;
  deletionDate?: number;
  /** The ciphertext blob of the data key under its CMK (opaque here). */
  ciphertext: Buffer;
  /** The encryption context the blob was sealed with (authenticated data, not secret). */
  context?: Record<string, string>;
}

export interface DataKeyRecord extends NewDataKeyRecord {
  revision: number;
}

/** Fields `updateDataKey` may change; `null` clears an optional field. */
export interface DataKeyPatch {
  name?: string;
  description?: string;
  /** Only the data-key state machine (`src/kms/data-key-state.ts`) makes one. */
  keyState?: DataKeyTableState;
  deletionDate?: number | null;
}

export interface DataKeyRef {
  ownerUin: string;
  dataKeyId: string;
}

export interface ListDataKeysQuery {
  ownerUin: string;
  region: string;
  offset: number;
  /** 1..200 */
  limit: number;
  order: 'asc' | 'desc';
  keyStates?: DataKeyState[];
  role?: 'user' | 'product';
  /** Substring of the name or of the data key id. */
  search?: string;
  origin?: KeyOrigin;
  hsmClusterId?: string;
  /** The CMK. */
  keyId?: string;
  numberOfBytes?: number;
  tagFilters?: TagFilter[];
}

export interface ListDataKeysResult {
  total: number;
  dataKeys: DataKeyRecord[];
}

export interface DataKeyLimits {
  /** Refuse (`DataKeyQuotaExceededError`) when the tenant already has this many data keys in the region; checked atomically with the insert. */
  maxDataKeys?: number;
}

export interface MetadataStore {
  /**
   * Fails with `AliasExistsError` if (ownerUin, region, alias) is taken, `QuotaExceededError` past
   * `limits.maxKeys` (checked atomically with the insert; only keys with owner "user" count, and only
   * when the new key's owner is "user"); durable. Returns revision 1.
   */
  createKey(record: NewKeyRecord, limits?: CreateLimits): Promise<KeyRecord>;
  /** User keys (owner "user") not PendingDelete in the region: what the quota counts. */
  countKeys(ownerUin: string, region: string): Promise<number>;
  /** Keys per state across every tenant and region (metrics); cost grows with tenants, not keys, on Redis. */
  countByState(): Promise<Record<KeyState, number>>;
  /** Undefined when absent or owned by another tenant. */
  getKey(ownerUin: string, keyId: string): Promise<KeyRecord | undefined>;
  /**
   * Applies `patch` if the stored revision is still `expectedRevision` (`ConflictError` otherwise);
   * `KeyNotFoundError` when absent, `AliasExistsError` when renaming onto a taken alias.
   */
  updateKey(ownerUin: string, keyId: string, expectedRevision: number, patch: KeyPatch): Promise<KeyRecord>;
  /**
   * Adds a version (`ConflictError` if that version number exists) and applies `patch` (e.g. rotation
   * times) in the same atomic, durable write; bumps the revision by one.
   */
  addVersion(ownerUin: string, keyId: string, version: KeyVersion, patch?: KeyPatch): Promise<KeyRecord>;
  /**
   * Removes the record and every version (crypto-shred) and writes its tombstone in the same atomic,
   * durable write; frees the alias. False when there was nothing to delete.
   */
  deleteKey(ownerUin: string, keyId: string, deletedAt: number): Promise<boolean>;
  getTombstone(ownerUin: string, keyId: string): Promise<Tombstone | undefined>;
  listKeys(query: ListKeysQuery): Promise<ListKeysResult>;
  /** Keys due for `kind` at `before` (see DueKind), earliest first, at most `limit`; index-backed. */
  dueKeys(kind: DueKind, before: number, limit: number): Promise<KeyRef[]>;
  /**
   * Adds encryption counts per key version (`${keyId}#${version}` -> n) in one write and returns
   * the new totals for those versions. Counts of deleted keys are dropped.
   */
  addUsage(batch: ReadonlyMap<string, number>): Promise<Map<string, number>>;
  /**
   * Calls `listener` for every key changed through any store handle on the same backing (other
   * nodes and processes included) within a second. The listener first hears `{}` once watching is
   * live (changes before that are not reported), and `{}` again whenever changes may have been missed.
   * Returns the unsubscribe function.
   */
  watch(listener: (change: KeyChange) => void): () => void;
  /**
   * Takes lease `name` for `holder` (or renews it if `holder` has it) for `ttlMs`; true when `holder`
   * holds it afterwards. Leases expire by themselves, so a dead node's lease passes on.
   */
  acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean>;
  releaseLease(name: string, holder: string): Promise<void>;
  /**
   * Every key of HSM cluster `clusterId`, whatever its tenant, region or state, a page at a time:
   * start with cursor '' and pass back the cursor returned until it is undefined. A page holds at
   * most about `limit` keys and may be empty before the end; a key present throughout the walk is
   * seen at least once (once on SQLite). For whole-cluster work such as re-wrapping under a new
   * domain generation.
   */
  clusterKeys(clusterId: string, cursor: string, limit: number): Promise<ClusterKeysPage>;
  /** The cluster's state document, undefined when never written. */
  getClusterState(clusterId: string): Promise<ClusterState | undefined>;
  /**
   * Writes the cluster's state document if its revision is still `expectedRevision` (0: absent),
   * `ClusterStateConflictError` otherwise; durable. Returns the new revision.
   */
  putClusterState(clusterId: string, expectedRevision: number, doc: string): Promise<number>;
  /**
   * Hosted data keys. `createDataKey` fails with `DataKeyNameExistsError` if (ownerUin, region, name)
   * is taken, `DataKeyQuotaExceededError` past `limits.maxDataKeys`; durable; revision 1.
   */
  createDataKey(record: NewDataKeyRecord, limits?: DataKeyLimits): Promise<DataKeyRecord>;
  /** Every data key of the tenant in the region, whatever its state: what the quota counts. */
  countDataKeys(ownerUin: string, region: string): Promise<number>;
  /** Undefined when absent or owned by another tenant. */
  getDataKey(ownerUin: string, dataKeyId: string): Promise<DataKeyRecord | undefined>;
  /** Compare-and-set as `updateKey` (`ConflictError`, `DataKeyNotFoundError`, `DataKeyNameExistsError`). */
  updateDataKey(ownerUin: string, dataKeyId: string, expectedRevision: number, patch: DataKeyPatch): Promise<DataKeyRecord>;
  /** Removes the record and its blob (the shred) and frees its name; durable. False when there was nothing to delete. */
  deleteDataKey(ownerUin: string, dataKeyId: string): Promise<boolean>;
  /** Filters as `matchesDataKeyQuery` (data-key-record.ts) says, by create time then id. */
  listDataKeys(query: ListDataKeysQuery): Promise<ListDataKeysResult>;
  /** Data keys PendingDelete whose deletion date is <= before, earliest first, at most `limit`; index-backed. */
  dueDataKeys(before: number, limit: number): Promise<DataKeyRef[]>;
  /** Start-up check: finds derived data (indexes) that disagree with the records, repairs it, and says what it did. */
  repair(): Promise<string[]>;
  /** Resolves when the backing answers (readiness); `StoreUnavailableError` when it cannot be reached. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
