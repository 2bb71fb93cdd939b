/**
 * CMK metadata persistence: the one interface every backend implements. The store knows nothing of
 * HSMs; key material is an opaque record (`WrappedMaterial.toBuffer()`) it persists as bytes.
 */
import { KEY_STATES, KeyState, TableState } from '../common/key-states';

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
  /** Start-up check: finds derived data (indexes) that disagree with the records, repairs it, and says what it did. */
  repair(): Promise<string[]>;
  close(): Promise<void>;
}

export abstract class StoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export class AliasExistsError extends StoreError {
  constructor(readonly ownerUin: string, readonly region: string, readonly alias: string) {
    super(`alias ${JSON.stringify(alias)} already exists for this account in region ${region}`);
  }
}

export class ConflictError extends StoreError {
  constructor(readonly keyId: string, detail: string) {
    super(`key ${keyId} changed concurrently: ${detail}`);
  }
}

export class KeyNotFoundError extends StoreError {
  constructor(readonly keyId: string) {
    super(`key ${keyId} not found`);
  }
}

export class ClusterStateConflictError extends StoreError {
  constructor(readonly clusterId: string, expected: number, found: number) {
    super(`state of cluster ${clusterId} changed concurrently: expected revision ${expected}, found ${found}`);
  }
}

export class QuotaExceededError extends StoreError {
  constructor(readonly ownerUin: string, readonly region: string, readonly limit: number) {
    super(`account already has ${limit} keys in region ${region}, the limit`);
  }
}

/** A malformed record or query (the API layer validates first; this is the store's own guard). */
export class StoreInputError extends StoreError {}

/** The store cannot be used as configured (e.g. a Redis without persistence). */
export class StoreConfigError extends StoreError {}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function checkNewRecord(record: NewKeyRecord): void {
  if (!UUID.test(record.keyId)) throw new StoreInputError(`keyId is not a UUID: ${JSON.stringify(record.keyId)}`);
  for (const field of ['ownerUin', 'region', 'alias', 'owner'] as const) {
    if (record[field] === '') throw new StoreInputError(`${field} is empty`);
  }
  const seen = new Set<number>();
  for (const v of record.versions) checkVersion(v, seen);
}

export function checkVersion(v: KeyVersion, seen?: Set<number>): void {
  if (!Number.isInteger(v.version) || v.version < 1) throw new StoreInputError(`bad version number ${v.version}`);
  if (!Buffer.isBuffer(v.material) || v.material.length === 0) throw new StoreInputError(`version ${v.version} has no material`);
  if (seen) {
    if (seen.has(v.version)) throw new StoreInputError(`duplicate version ${v.version}`);
    seen.add(v.version);
  }
}

export function checkQuery(q: ListKeysQuery): void {
  if (!Number.isInteger(q.offset) || q.offset < 0) throw new StoreInputError(`offset must be an integer >= 0, got ${q.offset}`);
  if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > MAX_LIST_LIMIT) {
    throw new StoreInputError(`limit must be an integer in 1..${MAX_LIST_LIMIT}, got ${q.limit}`);
  }
  if (q.order !== 'asc' && q.order !== 'desc') throw new StoreInputError(`order must be asc or desc`);
  if (q.ownerUin === '' || q.region === '') throw new StoreInputError('ownerUin and region are required');
  if (q.role !== undefined && q.role !== 'user' && q.role !== 'product') throw new StoreInputError(`role must be user or product`);
  for (const s of q.keyStates ?? []) {
    if (!KEY_STATES.includes(s)) throw new StoreInputError(`unknown key state ${JSON.stringify(s)}`);
  }
}

/** The record with `patch` applied (pure; shared by backends). */
export function applyPatch(record: KeyRecord, patch: KeyPatch): KeyRecord {
  const next: KeyRecord = { ...record, revision: record.revision + 1 };
  if (patch.alias !== undefined) {
    if (patch.alias === '') throw new StoreInputError('alias is empty');
    next.alias = patch.alias;
  }
  if (patch.description !== undefined) next.description = patch.description;
  if (patch.keyState !== undefined) next.keyState = patch.keyState;
  if (patch.tags !== undefined) next.tags = { ...patch.tags };
  if (patch.rotation !== undefined) next.rotation = { ...patch.rotation };
  if (patch.deletionDate === null) delete next.deletionDate;
  else if (patch.deletionDate !== undefined) next.deletionDate = patch.deletionDate;
  if (patch.validTo === null) delete next.validTo;
  else if (patch.validTo !== undefined) next.validTo = patch.validTo;
  if (patch.importParameters === null) delete next.importParameters;
  else if (patch.importParameters !== undefined) next.importParameters = { ...patch.importParameters };
  if (patch.materialCheckValue === null) delete next.materialCheckValue;
  else if (patch.materialCheckValue !== undefined) next.materialCheckValue = patch.materialCheckValue;
  if (patch.cloudBindings !== undefined) next.cloudBindings = patch.cloudBindings.map((b) => ({ ...b }));
  if (patch.authority !== undefined) next.authority = patch.authority;
  if (patch.versions !== undefined) {
    const seen = new Set<number>();
    for (const v of patch.versions) checkVersion(v, seen);
    next.versions = patch.versions.map((v) => ({ ...v }));
  }
  return next;
}

export type KeyRole = 'user' | 'product';

/** `user` when the key's owner is the tenant itself, `product` when a cloud product owns it. */
export function roleOf(owner: string): KeyRole {
  return owner === 'user' ? 'user' : 'product';
}

export const DUE_KINDS: readonly DueKind[] = ['rotation', 'deletion', 'expiry'];

/** When the key becomes due for each kind of background work (absent: never); see `DueKind`. */
export function dueTimes(r: NewKeyRecord): Partial<Record<DueKind, number>> {
  const due: Partial<Record<DueKind, number>> = {};
  if (r.rotation.enabled && r.rotation.nextRotateTime !== undefined) due.rotation = r.rotation.nextRotateTime;
  if (r.keyState === 'PendingDelete' && r.deletionDate !== undefined) due.deletion = r.deletionDate;
  if (r.validTo !== undefined && r.validTo !== 0 && r.versions.length > 0) due.expiry = r.validTo;
  return due;
}

export function tombstoneOf(r: NewKeyRecord, deletedAt: number): Tombstone {
  const { keyId, ownerUin, region, alias, keyUsage, origin, hsmClusterId, createTime } = r;
  return { keyId, ownerUin, region, alias, keyUsage, origin, hsmClusterId, createTime, deletedAt };
}

/** A record without its versions (kept apart, as material) and revision: what backends store as JSON. */
export type KeyDoc = Omit<NewKeyRecord, 'versions'>;

/** JSON of the record's document; Buffers (the import wrapping key) as base64. */
export function encodeDoc(r: NewKeyRecord | KeyRecord): string {
  const { versions: _versions, ...rest } = r;
  const { revision: _revision, ...doc } = rest as Partial<KeyRecord>;
  const ip = doc.importParameters;
  return JSON.stringify(ip === undefined ? doc : { ...doc, importParameters: { ...ip, wrappingKey: ip.wrappingKey.toString('base64') } });
}

export function decodeDoc(json: string): KeyDoc {
  const doc = JSON.parse(json) as KeyDoc;
  const ip = doc.importParameters as (Omit<ImportParameters, 'wrappingKey'> & { wrappingKey: unknown }) | undefined;
  if (ip !== undefined && typeof ip.wrappingKey === 'string') doc.importParameters = { ...ip, wrappingKey: Buffer.from(ip.wrappingKey, 'base64') };
  return doc;
}

/** `addVersion`'s next record: `patch` applied, `version` appended (ConflictError when the number exists). */
export function withVersion(current: KeyRecord, version: KeyVersion, patch: KeyPatch = {}): KeyRecord {
  checkVersion(version);
  if (patch.versions !== undefined) throw new StoreInputError('addVersion does not take a patch that replaces versions');
  if (current.versions.some((v) => v.version === version.version)) {
    throw new ConflictError(current.keyId, `version ${version.version} already exists`);
  }
  const next = applyPatch(current, patch);
  next.versions = [...next.versions, { ...version }].sort((a, b) => a.version - b.version);
  return next;
}

/** Listing search: a substring of the alias or of the key id (case-sensitive). */
export function matchesSearch(search: string, alias: string, keyId: string): boolean {
  return alias.includes(search) || keyId.includes(search);
}

export interface UsageEntry { ref: string; keyId: string; version: number; count: number }

/** Parses an `addUsage` batch (`${keyId}#${version}` -> count >= 0). */
export function parseUsageBatch(batch: ReadonlyMap<string, number>): UsageEntry[] {
  const out: UsageEntry[] = [];
  for (const [ref, count] of batch) {
    const hash = ref.lastIndexOf('#');
    const version = Number(ref.slice(hash + 1));
    if (hash < 1 || !Number.isInteger(version) || version < 1) throw new StoreInputError(`bad usage key ${JSON.stringify(ref)}`);
    if (!Number.isSafeInteger(count) || count < 0) throw new StoreInputError(`bad usage count ${count} for ${ref}`);
    out.push({ ref, keyId: ref.slice(0, hash), version, count });
  }
  return out;
}

export function checkDueQuery(kind: DueKind, before: number, limit: number): void {
  if (!DUE_KINDS.includes(kind)) throw new StoreInputError(`unknown due kind ${JSON.stringify(kind)}`);
  if (!Number.isFinite(before)) throw new StoreInputError(`before must be a number, got ${before}`);
  if (!Number.isInteger(limit) || limit < 1) throw new StoreInputError(`limit must be an integer >= 1, got ${limit}`);
}

export function checkClusterWalk(clusterId: string, cursor: string, limit: number): void {
  if (clusterId === '') throw new StoreInputError('cluster id is required');
  if (typeof cursor !== 'string') throw new StoreInputError('cursor must be a string');
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new StoreInputError(`limit must be an integer in 1..10000, got ${limit}`);
}

export function checkClusterState(clusterId: string, expectedRevision: number, doc?: string): void {
  if (clusterId === '') throw new StoreInputError('cluster id is required');
  if (!Number.isInteger(expectedRevision) || expectedRevision < 0) throw new StoreInputError(`expected revision must be an integer >= 0, got ${expectedRevision}`);
  if (doc !== undefined && (typeof doc !== 'string' || doc === '')) throw new StoreInputError('cluster state document is empty');
}

export function checkLease(name: string, holder: string, ttlMs = 1): void {
  if (name === '' || holder === '') throw new StoreInputError('lease name and holder are required');
  if (!Number.isInteger(ttlMs) || ttlMs < 1) throw new StoreInputError(`lease ttl must be a positive integer (ms), got ${ttlMs}`);
}

/** Delivers a change to listeners; one listener's exception never reaches the writer or the others. */
export function emitChange(listeners: Iterable<(change: KeyChange) => void>, change: KeyChange): void {
  for (const listener of [...listeners]) {
    try {
      listener(change);
    } catch {
      // a listener's failure is its own
    }
  }
}

/** Zero for every state. */
export function emptyStateCounts(): Record<KeyState, number> {
  return Object.fromEntries(KEY_STATES.map((s) => [s, 0])) as Record<KeyState, number>;
}
