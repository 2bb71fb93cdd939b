/**
 * Data keys hosted by the KMS: made by GenerateDataKey (hosted) or imported (a ciphertext blob of
 * this service, or plaintext sealed under a CMK now), kept only as the blob sealed under their CMK,
 * and given back (plaintext or blob) while both the data key and its CMK allow it. Their states are
 * data-key-state.ts's; deletion is scheduled, and the background jobs shred them after the date.
 */
import { randomUUID } from 'node:crypto';
import { DAY_SECONDS, unixNow } from '../common/clock';
import { isUuid } from '../common/ids';
import {
  ConflictError,
  DataKeyNameExistsError,
  DataKeyNotFoundError as StoreDataKeyNotFound,
  DataKeyPatch,
  DataKeyQuotaExceededError,
  DataKeyRecord,
  KeyOrigin,
  ListDataKeysQuery,
  TagFilter,
} from '../store/store';
import type { EncryptionContext } from './ciphertext';
import type { KmsContext } from './context';
import { DataKeyAction, DataKeyRefusal, DataKeyState, dataKeyTransition, initialDataKeyState, nextDataKeyState } from './data-key-state';
import type { DataKeyResult, Envelope, GenerateDataKeyRequest } from './envelope';
import {
  DataKeyDisabledError,
  DataKeyLimitExceededError,
  DataKeyNameTakenError,
  DataKeyNotFoundError,
  DataKeyNotPendingDeleteError,
  DataKeyPendingDeleteError,
  DataKeyStateNotSupportedError,
  DuplicatedDataKeyIdError,
  InvalidDataKeyIdError,
  InvalidDataKeyNameError,
  InvalidHsmClusterError,
  InvalidImportMaterialError,
  InvalidKeyIdError,
  InvalidParameterError,
  InvalidPendingWindowError,
  InvalidTypeError,
  KeyNotFoundError,
  about,
  KmsError,
  quoted,
  RequestField,
} from './errors';
import { Caller, domainError } from './key-access';
import { dataKeyDescriptionProblem, dataKeyNameProblem, pendingWindowProblem, Tag } from './key-rules';
import { tagsOf } from './lifecycle';
import { MAX_RANDOM_BYTES } from './envelope';

export const DEFAULT_MAX_DATA_KEYS_PER_REGION = 1000;
export const MAX_DATA_KEY_BATCH = 100;

/** What makes a data key hosted: its name (unique per account and region), description and tags. */
export interface HostedDataKeyRequest extends GenerateDataKeyRequest {
  name: string;
  description?: string;
  tags?: readonly Tag[];
}

export interface HostedDataKeyResult extends DataKeyResult {
  dataKeyId: string;
}

export interface ImportDataKeyRequest {
  name: string;
  /** `ciphertext`: a blob of this service (GenerateDataKey's, made without an encryption context); `plaintext`: the key itself. */
  importType: 'ciphertext' | 'plaintext';
  material: Buffer;
  description?: string;
  /** Required for a plaintext import (the CMK to seal it under); for a ciphertext, checked against the blob's. */
  keyId?: string;
  /** Checked against the CMK's cluster. */
  hsmClusterId?: string;
  tags?: readonly Tag[];
}

export interface DataKeyDescription {
  dataKeyId: string;
  keyId: string;
  /** The CMK's alias (empty when the CMK no longer exists). */
  keyName: string;
  name: string;
  numberOfBytes: number;
  createTime: number;
  description: string;
  keyState: DataKeyState;
  creatorUin: string;
  accountUin: string;
  owner: string;
  deletionDate: number | undefined;
  origin: KeyOrigin;
  /** As the API shows it: empty for the shared pool. */
  hsmClusterId: string;
  region: string;
}

export interface DataKeyListRequest {
  offset?: number;
  limit?: number;
  role?: 'user' | 'product';
  order?: 'asc' | 'desc';
  /** Absent: every state. */
  state?: DataKeyState;
  /** Substring of the name or of the data key id. */
  search?: string;
  origin?: KeyOrigin;
  /** `default`: the shared pool; absent or empty: every cluster. */
  hsmClusterId?: string;
  keyId?: string;
  numberOfBytes?: number;
  tagFilters?: TagFilter[];
}

export interface DataKeyList<K> {
  dataKeys: K[];
  totalCount: number;
}

const REFUSALS: Record<DataKeyRefusal, (id: string, state: string, action: string) => KmsError> = {
  DataKeyDisabled: (id) => new DataKeyDisabledError(`data key ${id} is disabled`),
  DataKeyPendingDelete: (id, _s, a) => new DataKeyPendingDeleteError(`data key ${id} is pending deletion: ${a} refused`),
  StateNotSupported: (id, s, a) => new DataKeyStateNotSupportedError(`${a} is not possible on data key ${id} in state ${s}`),
  NotPendingDelete: (id) => new DataKeyNotPendingDeleteError(`data key ${id} is not pending deletion`),
};

/** Store refusals in data-key terms; anything else as every action translates it. */
function dataKeyError(e: unknown): unknown {
  if (e instanceof DataKeyNameExistsError) return new DataKeyNameTakenError(`data key name ${quoted(e.dataKeyName)} already exists in region ${e.region}`);
  if (e instanceof DataKeyQuotaExceededError)
    return new DataKeyLimitExceededError(`the account already has ${e.limit} hosted data keys in region ${e.region} (the configured limit)`);
  if (e instanceof StoreDataKeyNotFound) return new DataKeyNotFoundError(e.dataKeyId);
  return domainError(e);
}

function intIn(name: RequestField, v: number | undefined, fallback: number, min: number, max: number): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v < min || v > max) throw new InvalidParameterError(`${name} must be an integer from ${min} to ${max}`, about(name));
  return v;
}

function uniqueIds(ids: readonly string[]): readonly string[] {
  const listed: unknown = ids;
  if (!Array.isArray(listed) || ids.length === 0 || ids.length > MAX_DATA_KEY_BATCH)
    throw new InvalidParameterError(`dataKeyIds must list 1 to ${MAX_DATA_KEY_BATCH} data key ids`, about('dataKeyIds'));
  if (new Set(ids).size !== ids.length) throw new DuplicatedDataKeyIdError('dataKeyIds lists the same data key more than once', about('dataKeyIds'));
  return ids;
}

function checkNaming(name: string, description: string | undefined): void {
  const nameIssue = dataKeyNameProblem(name);
  if (nameIssue) throw new InvalidDataKeyNameError(nameIssue, about('dataKeyName'));
  const descIssue = dataKeyDescriptionProblem(description);
  if (descIssue) throw new InvalidParameterError(descIssue, about('description'));
}

/** The plaintext a sealed data key holds is wiped once `use` is done with it. */
async function wiping<T>(plaintext: Buffer, use: (p: Buffer) => Promise<T>): Promise<T> {
  try {
    return await use(plaintext);
  } finally {
    plaintext.fill(0);
  }
}

export class DataKeys {
  constructor(
    private readonly ctx: KmsContext,
    private readonly envelope: Envelope,
  ) {}

  private get access() {
    return this.ctx.access;
  }

  /** GenerateDataKey with hosting: the data key is made and sealed as by GenerateDataKey, and its blob kept. */
  async generate(caller: Caller, p: HostedDataKeyRequest): Promise<HostedDataKeyResult> {
    checkNaming(p.name, p.description);
    const tags = tagsOf(p.tags);
    await this.checkRoom(caller);
    const made = await this.envelope.generateDataKey(caller, p);
    try {
      const cmk = await this.access.load(caller, made.keyId);
      const r = await this.store(caller, { ...p, tags }, cmk.hsmClusterId, made, 'TENCENT_KMS', p.context);
      return { ...made, dataKeyId: r.dataKeyId };
    } catch (e) {
      made.plaintext.fill(0);
      throw e;
    }
  }

  /** ImportDataKey: a ciphertext blob is checked by decrypting it (then kept as it is); plaintext is sealed under `keyId` now. */
  async importDataKey(caller: Caller, p: ImportDataKeyRequest): Promise<{ keyId: string; dataKeyId: string }> {
    checkNaming(p.name, p.description);
    const tags = tagsOf(p.tags);
    if (p.importType !== 'ciphertext' && p.importType !== 'plaintext')
      throw new InvalidTypeError('importType must be ciphertext or plaintext', about('importType'));
    if (p.importType === 'plaintext' && (p.keyId === undefined || p.keyId === ''))
      throw new InvalidParameterError('keyId is required to import a plaintext data key: it names the CMK that seals it', about('keyId'));
    await this.checkRoom(caller);
    const sealed =
      p.importType === 'ciphertext'
        ? await this.openImported(caller, p.material, p.keyId)
        : await this.envelope
            .encrypt(caller, { keyId: p.keyId as string, plaintext: this.checkedMaterial(p.material) })
            .then((r) => ({ ...r, length: p.material.length }));
    const cmk = await this.access.load(caller, sealed.keyId);
    if (p.hsmClusterId && this.access.clusters.forList(caller.tenant, p.hsmClusterId) !== cmk.hsmClusterId) {
      throw new InvalidHsmClusterError(`key ${cmk.keyId} is not in HSM cluster ${quoted(p.hsmClusterId)}`);
    }
    const origin: KeyOrigin = p.importType === 'ciphertext' ? 'TENCENT_KMS' : 'EXTERNAL';
    const r = await this.store(caller, { ...p, tags }, cmk.hsmClusterId, { keyId: sealed.keyId, ciphertext: sealed.ciphertext, length: sealed.length }, origin);
    return { keyId: r.keyId, dataKeyId: r.dataKeyId };
  }

  async describe(caller: Caller, dataKeyId: string): Promise<DataKeyDescription> {
    return this.described(caller, await this.use(caller, dataKeyId, 'Describe'));
  }

  /** Up to 100; data keys that do not exist (for this account) are left out. */
  async describeMany(caller: Caller, ids: readonly string[]): Promise<DataKeyDescription[]> {
    const out: DataKeyDescription[] = [];
    for (const id of uniqueIds(ids)) {
      try {
        out.push(await this.describe(caller, id));
      } catch (e) {
        if (!(e instanceof DataKeyNotFoundError)) throw e;
      }
    }
    return out;
  }

  async list(caller: Caller, p: DataKeyListRequest): Promise<DataKeyList<DataKeyDescription>> {
    const res = await this.access.store.listDataKeys(this.query(caller, p)).catch((e: unknown) => Promise.reject(dataKeyError(e)));
    const dataKeys: DataKeyDescription[] = [];
    for (const r of res.dataKeys) dataKeys.push(await this.described(caller, r));
    return { dataKeys, totalCount: res.total };
  }

  /** The caller's hosted data keys in its region and the limit (0: none). */
  async quota(caller: Caller): Promise<{ used: number; limit: number }> {
    return { used: await this.access.store.countDataKeys(caller.tenant, caller.region), limit: this.ctx.config.maxDataKeysPerRegion };
  }

  enable(caller: Caller, dataKeyId: string): Promise<void> {
    return this.transit(caller, dataKeyId, 'EnableDataKey');
  }

  disable(caller: Caller, dataKeyId: string): Promise<void> {
    return this.transit(caller, dataKeyId, 'DisableDataKey');
  }

  /** Each data key on its own; the first refusal is reported after the others were changed. */
  async batch(caller: Caller, ids: readonly string[], action: 'EnableDataKey' | 'DisableDataKey'): Promise<void> {
    let failed: Error | undefined;
    for (const id of uniqueIds(ids)) {
      try {
        await this.transit(caller, id, action);
      } catch (e) {
        failed ??= e as Error;
      }
    }
    if (failed !== undefined) throw failed;
  }

  async scheduleDeletion(caller: Caller, dataKeyId: string, days: number): Promise<{ dataKeyId: string; deletionDate: number }> {
    const issue = pendingWindowProblem(days);
    if (issue) throw new InvalidPendingWindowError(issue);
    const deletionDate = unixNow(this.access.clock) + days * DAY_SECONDS;
    const r = await this.change(caller, dataKeyId, 'ScheduleDataKeyDeletion', (cur) => ({
      keyState: nextDataKeyState(cur.keyState, 'ScheduleDataKeyDeletion'),
      deletionDate,
    }));
    return { dataKeyId: r.dataKeyId, deletionDate: r.deletionDate ?? deletionDate };
  }

  /** Back to Disabled. */
  async cancelDeletion(caller: Caller, dataKeyId: string): Promise<{ dataKeyId: string }> {
    await this.change(caller, dataKeyId, 'CancelDataKeyDeletion', (cur) => ({
      keyState: nextDataKeyState(cur.keyState, 'CancelDataKeyDeletion'),
      deletionDate: null,
    }));
    return { dataKeyId };
  }

  async rename(caller: Caller, dataKeyId: string, name: string): Promise<void> {
    checkNaming(name, undefined);
    await this.change(caller, dataKeyId, 'UpdateMetadata', (cur) => (cur.name === name ? undefined : { name }));
  }

  async updateDescription(caller: Caller, dataKeyId: string, description: string): Promise<void> {
    const issue = dataKeyDescriptionProblem(description);
    if (issue) throw new InvalidParameterError(issue, about('description'));
    await this.change(caller, dataKeyId, 'UpdateMetadata', (cur) => (cur.description === description ? undefined : { description }));
  }

  /** The data key in clear, opened under its CMK (which must allow Decrypt: disabled or deleted, it refuses). */
  async plaintext(caller: Caller, dataKeyId: string): Promise<Buffer> {
    const r = await this.use(caller, dataKeyId, 'GetDataKeyPlaintext');
    return (await this.envelope.decrypt(caller, { ciphertext: r.ciphertext, context: r.context })).plaintext;
  }

  /** The blob under the CMK, while the CMK could open it. */
  async ciphertextBlob(caller: Caller, dataKeyId: string): Promise<Buffer> {
    const r = await this.use(caller, dataKeyId, 'GetDataKeyCiphertextBlob');
    await this.access.use(caller, r.keyId, 'Decrypt');
    return Buffer.from(r.ciphertext);
  }

  /** The background jobs' shred: data keys past their deletion date are erased (blob and record); returns their ids. */
  async deleteDue(limit = 100): Promise<string[]> {
    const now = unixNow(this.access.clock);
    const done: string[] = [];
    for (const ref of await this.access.store.dueDataKeys(now, limit)) {
      const r = await this.access.store.getDataKey(ref.ownerUin, ref.dataKeyId);
      if (!r || r.keyState !== 'PendingDelete' || (r.deletionDate ?? Infinity) > now) continue;
      if (await this.access.store.deleteDataKey(r.ownerUin, r.dataKeyId)) done.push(r.dataKeyId);
    }
    return done;
  }

  private async checkRoom(caller: Caller): Promise<void> {
    const limit = this.ctx.config.maxDataKeysPerRegion;
    if (limit > 0 && (await this.access.store.countDataKeys(caller.tenant, caller.region)) >= limit) {
      throw dataKeyError(new DataKeyQuotaExceededError(caller.region, limit));
    }
  }

  private checkedMaterial(material: Buffer): Buffer {
    if (material.length === 0 || material.length > MAX_RANDOM_BYTES) {
      throw new InvalidImportMaterialError(`ImportKeyMaterial must be a data key of 1 to ${MAX_RANDOM_BYTES} bytes, got ${material.length}`);
    }
    return material;
  }

  /** A blob of this service under one of the caller's CMKs (`keyId`, when given), holding a data key of 1 to 1024 bytes. */
  private async openImported(caller: Caller, blob: Buffer, keyId: string | undefined): Promise<{ keyId: string; ciphertext: Buffer; length: number }> {
    const opened = await this.envelope.decrypt(caller, { ciphertext: blob });
    return wiping(opened.plaintext, async (plaintext) => {
      if (keyId && keyId !== opened.keyId)
        throw new InvalidParameterError(`keyId ${quoted(keyId)} is not the CMK the ciphertext was made under`, about('keyId'));
      this.checkedMaterial(plaintext);
      return { keyId: opened.keyId, ciphertext: Buffer.from(blob), length: plaintext.length };
    });
  }

  private async store(
    caller: Caller,
    p: { name: string; description?: string; tags: Record<string, string> },
    hsmClusterId: string,
    sealed: { keyId: string; ciphertext: Buffer; length?: number; plaintext?: Buffer },
    origin: KeyOrigin,
    context?: EncryptionContext,
  ): Promise<DataKeyRecord> {
    const limit = this.ctx.config.maxDataKeysPerRegion;
    return this.access.store
      .createDataKey(
        {
          dataKeyId: randomUUID(),
          ownerUin: caller.tenant,
          region: caller.region,
          creatorUin: caller.uin,
          owner: 'user',
          name: p.name,
          description: p.description ?? '',
          keyId: sealed.keyId,
          numberOfBytes: sealed.length ?? sealed.plaintext?.length ?? 0,
          origin,
          hsmClusterId,
          keyState: initialDataKeyState(),
          tags: p.tags,
          createTime: unixNow(this.access.clock),
          ciphertext: sealed.ciphertext,
          context: context && Object.keys(context).length > 0 ? { ...context } : undefined,
        },
        { maxDataKeys: limit > 0 ? limit : undefined },
      )
      .catch((e: unknown) => Promise.reject(dataKeyError(e)));
  }

  private query(caller: Caller, p: DataKeyListRequest): ListDataKeysQuery {
    const q: ListDataKeysQuery = {
      ownerUin: caller.tenant,
      region: caller.region,
      offset: intIn('offset', p.offset, 0, 0, Number.MAX_SAFE_INTEGER),
      limit: intIn('limit', p.limit, 10, 1, 200),
      order: p.order ?? 'desc',
      role: p.role ?? 'user',
    };
    if (p.state) q.keyStates = [p.state];
    if (p.search) q.search = p.search;
    if (p.origin) q.origin = p.origin;
    const cluster = this.access.clusters.forList(caller.tenant, p.hsmClusterId);
    if (cluster !== undefined) q.hsmClusterId = cluster;
    if (p.keyId) {
      if (!isUuid(p.keyId)) throw new InvalidKeyIdError(`keyId ${quoted(p.keyId)} is not a key id (a lowercase UUID)`, about('keyId'));
      q.keyId = p.keyId;
    }
    if (p.numberOfBytes !== undefined && p.numberOfBytes !== 0) q.numberOfBytes = intIn('dataKeyLength', p.numberOfBytes, 0, 1, MAX_RANDOM_BYTES);
    if (p.tagFilters?.length) q.tagFilters = p.tagFilters;
    return q;
  }

  private async described(caller: Caller, r: DataKeyRecord): Promise<DataKeyDescription> {
    const keyName = await this.access.load(caller, r.keyId).then(
      (k) => k.alias,
      (e: unknown) => (e instanceof KeyNotFoundError ? '' : Promise.reject(e)),
    );
    return {
      dataKeyId: r.dataKeyId,
      keyId: r.keyId,
      keyName,
      name: r.name,
      numberOfBytes: r.numberOfBytes,
      createTime: r.createTime,
      description: r.description,
      keyState: r.keyState,
      creatorUin: r.creatorUin,
      accountUin: r.ownerUin,
      owner: r.owner,
      deletionDate: r.deletionDate || undefined,
      origin: r.origin,
      hsmClusterId: this.access.clusters.reportedId(r.hsmClusterId),
      region: r.region,
    };
  }

  /** The caller's data key in the caller's region; anything else is "not found". */
  private async load(caller: Caller, dataKeyId: unknown): Promise<DataKeyRecord> {
    if (typeof dataKeyId !== 'string' || !isUuid(dataKeyId))
      throw new InvalidDataKeyIdError(
        `dataKeyId ${typeof dataKeyId === 'string' ? quoted(dataKeyId) : typeof dataKeyId} is not a data key id (a lowercase UUID)`,
        about('dataKeyId'),
      );
    const r = await this.access.store.getDataKey(caller.tenant, dataKeyId).catch((e: unknown) => Promise.reject(dataKeyError(e)));
    if (r === undefined || r.ownerUin !== caller.tenant || r.region !== caller.region) throw new DataKeyNotFoundError(dataKeyId);
    return r;
  }

  private check(r: DataKeyRecord, action: DataKeyAction): void {
    const t = dataKeyTransition(r.keyState, action);
    if (!t.allowed) throw REFUSALS[t.reason](r.dataKeyId, r.keyState, action);
  }

  private async use(caller: Caller, dataKeyId: string, action: DataKeyAction): Promise<DataKeyRecord> {
    const r = await this.load(caller, dataKeyId);
    this.check(r, action);
    return r;
  }

  /** Read, check `action`, write `decide`'s patch with compare-and-set (retried when another writer came first). */
  private async change(
    caller: Caller,
    dataKeyId: string,
    action: DataKeyAction,
    decide: (r: DataKeyRecord) => DataKeyPatch | undefined,
  ): Promise<DataKeyRecord> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.use(caller, dataKeyId, action);
      const patch = decide(r);
      if (patch === undefined) return r;
      try {
        return await this.access.store.updateDataKey(r.ownerUin, r.dataKeyId, r.revision, patch);
      } catch (e) {
        if (e instanceof ConflictError && attempt < 5) continue;
        throw dataKeyError(e);
      }
    }
  }

  private async transit(caller: Caller, dataKeyId: string, action: DataKeyAction): Promise<void> {
    await this.change(caller, dataKeyId, action, (r) => {
      const to = nextDataKeyState(r.keyState, action);
      return to === r.keyState ? undefined : { keyState: to };
    });
  }
}
