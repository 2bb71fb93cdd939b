/**
 * The pure record logic every backend shares: input checks, patches, the stored document's codec,
 * tombstones, usage batches and the delivery of change notifications. What a record implies for
 * indexes is in record-facts.ts.
 */
import { isUuid } from '../common/ids';
import { KEY_STATES, KeyState } from '../common/key-states';
import { ConflictError, StoreInputError } from './errors';
import { DUE_KINDS } from './record-facts';
import { DueKind, ImportParameters, KeyChange, KeyPatch, KeyRecord, KeyVersion, ListKeysQuery, MAX_LIST_LIMIT, NewKeyRecord, Tombstone } from './store';

export function checkNewRecord(record: NewKeyRecord): void {
  if (!isUuid(record.keyId)) throw new StoreInputError(`keyId is not a UUID: ${JSON.stringify(record.keyId)}`);
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

export interface UsageEntry {
  ref: string;
  keyId: string;
  version: number;
  count: number;
}

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
  if (!Number.isInteger(expectedRevision) || expectedRevision < 0)
    throw new StoreInputError(`expected revision must be an integer >= 0, got ${expectedRevision}`);
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
