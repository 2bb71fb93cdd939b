/**
 * The pure hosted-data-key record logic every backend shares: input checks, patches, the stored
 * document's codec, and the listing's filters, order and paging. A tenant's data keys in a region
 * are bounded by its data-key limit, so a backend reads them through its per-tenant index and this
 * module selects the page: both backends list by the same rules.
 */
import { DATA_KEY_STATES } from '../common/data-key-states';
import { isUuid } from '../common/ids';
import { StoreInputError } from './errors';
import { roleOf } from './record-facts';
import { DataKeyPatch, DataKeyRecord, ListDataKeysQuery, ListDataKeysResult, MAX_LIST_LIMIT, NewDataKeyRecord } from './store';

export function checkNewDataKey(r: NewDataKeyRecord): void {
  if (!isUuid(r.dataKeyId)) throw new StoreInputError(`dataKeyId is not a UUID: ${JSON.stringify(r.dataKeyId)}`);
  for (const field of ['ownerUin', 'region', 'name', 'owner', 'keyId'] as const) {
    if (r[field] === '') throw new StoreInputError(`${field} is empty`);
  }
  if (!DATA_KEY_STATES.includes(r.keyState)) throw new StoreInputError(`unknown data key state ${JSON.stringify(r.keyState)}`);
  if (!Buffer.isBuffer(r.ciphertext) || r.ciphertext.length === 0) throw new StoreInputError('data key has no ciphertext');
}

export function checkDataKeyQuery(q: ListDataKeysQuery): void {
  if (!Number.isInteger(q.offset) || q.offset < 0) throw new StoreInputError(`offset must be an integer >= 0, got ${q.offset}`);
  if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > MAX_LIST_LIMIT) throw new StoreInputError(`limit must be an integer in 1..${MAX_LIST_LIMIT}`);
  if (q.order !== 'asc' && q.order !== 'desc') throw new StoreInputError('order must be asc or desc');
  if (q.ownerUin === '' || q.region === '') throw new StoreInputError('ownerUin and region are required');
  for (const s of q.keyStates ?? []) if (!DATA_KEY_STATES.includes(s)) throw new StoreInputError(`unknown data key state ${JSON.stringify(s)}`);
}

export function applyDataKeyPatch(r: DataKeyRecord, patch: DataKeyPatch): DataKeyRecord {
  const next: DataKeyRecord = { ...r, revision: r.revision + 1 };
  if (patch.name !== undefined) {
    if (patch.name === '') throw new StoreInputError('name is empty');
    next.name = patch.name;
  }
  if (patch.description !== undefined) next.description = patch.description;
  if (patch.keyState !== undefined) next.keyState = patch.keyState;
  if (patch.deletionDate === null) delete next.deletionDate;
  else if (patch.deletionDate !== undefined) next.deletionDate = patch.deletionDate;
  return next;
}

/** When the data key is due for shredding (PendingDelete with a date), else undefined. */
export function dataKeyDeletionDue(r: NewDataKeyRecord): number | undefined {
  return r.keyState === 'PendingDelete' && r.deletionDate !== undefined ? r.deletionDate : undefined;
}

/** JSON of the record without its revision; the blob as base64. */
export function encodeDataKeyDoc(r: NewDataKeyRecord | DataKeyRecord): string {
  const { revision: _revision, ...doc } = r as Partial<DataKeyRecord> & NewDataKeyRecord;
  return JSON.stringify({ ...doc, ciphertext: r.ciphertext.toString('base64') });
}

export function decodeDataKeyDoc(json: string, revision: number): DataKeyRecord {
  const doc = JSON.parse(json) as Omit<NewDataKeyRecord, 'ciphertext'> & { ciphertext: string };
  return { ...doc, ciphertext: Buffer.from(doc.ciphertext, 'base64'), revision };
}

/** Whether a data key is one the query asks for (every filter given must match). */
export function matchesDataKeyQuery(r: NewDataKeyRecord, q: ListDataKeysQuery): boolean {
  if (r.ownerUin !== q.ownerUin || r.region !== q.region) return false;
  if (q.keyStates?.length && !q.keyStates.includes(r.keyState)) return false;
  if (q.role !== undefined && roleOf(r.owner) !== q.role) return false;
  if (q.search && !r.name.includes(q.search) && !r.dataKeyId.includes(q.search)) return false;
  if (q.origin !== undefined && r.origin !== q.origin) return false;
  if (q.hsmClusterId !== undefined && r.hsmClusterId !== q.hsmClusterId) return false;
  if (q.keyId !== undefined && r.keyId !== q.keyId) return false;
  if (q.numberOfBytes !== undefined && r.numberOfBytes !== q.numberOfBytes) return false;
  return (q.tagFilters ?? []).every((f) => Object.hasOwn(r.tags, f.key) && (!f.values?.length || f.values.includes(r.tags[f.key])));
}

/** The page of `all` (a tenant's data keys in a region, any order) the query asks for, and how many match. */
export function selectDataKeys(all: readonly DataKeyRecord[], q: ListDataKeysQuery): ListDataKeysResult {
  const sign = q.order === 'asc' ? 1 : -1;
  const matching = all
    .filter((r) => matchesDataKeyQuery(r, q))
    .sort((a, b) => sign * (a.createTime - b.createTime || (a.dataKeyId < b.dataKeyId ? -1 : a.dataKeyId > b.dataKeyId ? 1 : 0)));
  return { total: matching.length, dataKeys: matching.slice(q.offset, q.offset + q.limit) };
}
