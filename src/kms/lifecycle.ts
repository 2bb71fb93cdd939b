import { randomUUID } from 'node:crypto';
import type { KeySpec } from '../common/key-specs';
import { KeyOrigin, KeyPatch, KeyRecord, NewKeyRecord, QuotaExceededError } from '../store/store';
import { DAY_SECONDS, unixNow } from '../common/clock';
import type { KmsContext } from './context';
import {
  about,
  BindingLimitExceededError,
  BindingNotFoundError,
  DuplicatedKeyIdError,
  InvalidAliasError,
  InvalidKeyUsageError,
  InvalidParameterError,
  InvalidPendingWindowError,
  InvalidTagError,
  KeyNotFoundError,
  KmsError,
  NotUserCreatedError,
  quoted,
  TagKeysDuplicatedError,
  UnsupportedKeyUsageError,
  UsedByCloudProductError,
} from './errors';
import { binding, Caller, domainError } from './key-access';
import { describeRecord, KeyDescription } from './key-metadata';
import { aliasProblem, descriptionProblem, MAX_BINDINGS_PER_KEY, pendingWindowProblem, ROTATE_DAYS, Tag, tagsProblem } from './key-rules';
import { initialState, KeyAction, nextState } from './key-state';
import { DEFAULT_KEY_USAGE, isKeyUsage, KEY_USAGES, KeyUsage, storedUsage, usagesOffered } from './key-usage';
import { listKeyDetailQuery, listKeysQuery, ListRequest } from './list-query';

export interface CreateKeyRequest {
  alias: string;
  description?: string;
  /** Default encrypt-decrypt (symmetric). */
  keyUsage?: KeyUsage;
  /** TENCENT_KMS (default, the stored name of KMS-made material): material made in the HSM now; EXTERNAL: material imported later. */
  origin?: KeyOrigin;
  tags?: readonly Tag[];
  /** A dedicated cluster of the caller's (empty: the shared pool). */
  hsmClusterId?: string;
}

export interface AliasChange {
  keyId: string;
  alias: string;
}

export interface DescriptionChange {
  keyId: string;
  description: string;
}

/** Tags to set (added or replaced) and tag keys to remove. */
export interface TagChange {
  keyId: string;
  set: readonly Tag[];
  remove?: readonly string[];
}

export interface DeletionRequest {
  keyId: string;
  /** Days until the key is deleted, 7 to 30. */
  pendingWindowDays: number;
}

/** A cloud product's resource that uses a key (a key bound to one cannot be disabled or deleted). */
export interface CloudResourceRequest {
  keyId: string;
  productId: string;
  resourceId: string;
}

export interface BatchOutcome {
  keyId: string;
  error?: KmsError | Error;
}

export interface KeyList<K> {
  keys: K[];
  /** All keys matching, not only this page's. */
  totalCount: number;
}

export const MAX_BATCH = 100;

export function tagsOf(tags: readonly Tag[] | undefined): Record<string, string> {
  const list = tags ?? [];
  const problem = tagsProblem(list);
  if (problem.duplicated !== undefined) throw new TagKeysDuplicatedError(`tag key ${JSON.stringify(problem.duplicated)} appears more than once`);
  if (problem.invalid !== undefined) throw new InvalidTagError(problem.invalid, about('tagKey', 'tagValue'));
  return Object.fromEntries(list.map((t) => [t.key, t.value]));
}

function uniqueIds(ids: readonly string[]): readonly string[] {
  const listed: unknown = ids;
  if (!Array.isArray(listed) || ids.length === 0 || ids.length > MAX_BATCH)
    throw new InvalidParameterError(`keyIds must list 1 to ${MAX_BATCH} key ids`, about('keyIds'));
  if (new Set(ids).size !== ids.length) throw new DuplicatedKeyIdError('keyIds lists the same key more than once', about('keyIds'));
  return ids;
}

/** Cloud-product keys and keys bound to cloud resources may not be disabled, archived or deleted. */
function refuseIfInUse(r: KeyRecord, what: string, bindingsCount = true): void {
  if (r.owner !== 'user') throw new UsedByCloudProductError(`key ${r.keyId} belongs to cloud product ${r.owner} and cannot be ${what}`);
  if (bindingsCount && (r.cloudBindings ?? []).length > 0) {
    throw new UsedByCloudProductError(`key ${r.keyId} is bound to ${r.cloudBindings!.length} cloud resource(s); unbind them before it can be ${what}`);
  }
}

/** Create, describe, list, edit, enable/disable, archive, deletion scheduling, tags and cloud bindings. */
export class Lifecycle {
  constructor(private readonly ctx: KmsContext) {}

  private get access() {
    return this.ctx.access;
  }

  describe(r: KeyRecord): KeyDescription {
    return describeRecord(r, (id) => this.access.clusters.reportedId(id));
  }

  /** `owner` is "user" for API callers, a product name for keys a cloud product creates for itself. */
  async createKey(caller: Caller, p: CreateKeyRequest, owner = 'user'): Promise<KeyDescription> {
    const aliasIssue = aliasProblem(p.alias, owner !== 'user');
    if (aliasIssue) throw new InvalidAliasError(aliasIssue, about('alias'));
    const descIssue = descriptionProblem(p.description);
    if (descIssue) throw new InvalidParameterError(descIssue, about('description'));
    const usage = p.keyUsage ?? DEFAULT_KEY_USAGE;
    if (!isKeyUsage(usage))
      throw new InvalidKeyUsageError(`keyUsage ${quoted(String(usage))} is not one of ${Object.keys(KEY_USAGES).join(', ')}`, about('keyUsage'));
    const external = p.origin === 'EXTERNAL';
    if (external && KEY_USAGES[usage].kind !== 'symmetric')
      throw new InvalidKeyUsageError(`imported (EXTERNAL) keys must be ${DEFAULT_KEY_USAGE} keys: external material is symmetric only`);
    const tags = tagsOf(p.tags);
    const cluster = this.access.clusters.forCreate(caller.tenant, p.hsmClusterId);
    if (!usagesOffered(cluster.capabilities.keySpecs).includes(usage)) {
      throw new UnsupportedKeyUsageError(
        `${usage} is not available on HSM cluster ${this.access.clusters.reportedId(cluster.id) || 'default'}: its HSMs cannot make ${KEY_USAGES[usage].spec} keys`,
      );
    }
    const limit = owner === 'user' ? this.ctx.config.maxKeysPerRegion : 0;
    if (limit > 0 && (await this.access.store.countKeys(caller.tenant, caller.region)) >= limit) {
      throw domainError(new QuotaExceededError(caller.tenant, caller.region, limit));
    }
    const now = unixNow(this.access.clock);
    const keyId = randomUUID();
    const record: NewKeyRecord = {
      keyId,
      alias: p.alias,
      description: p.description ?? '',
      keyUsage: storedUsage(usage),
      origin: external ? 'EXTERNAL' : 'TENCENT_KMS',
      keyState: initialState(external),
      creatorUin: caller.uin,
      ownerUin: caller.tenant,
      owner,
      region: caller.region,
      hsmClusterId: cluster.id,
      tags,
      rotation: { enabled: false, rotateDays: ROTATE_DAYS.default },
      createTime: now,
      versions: [],
      cloudBindings: [],
    };
    let stored: KeyRecord;
    try {
      if (!external) {
        const spec = KEY_USAGES[usage].spec as KeySpec;
        const generate = () => cluster.generate(spec, binding(record, 1));
        // a key pair is generated for seconds on the thread pool: asymmetric keys count against the account's cap
        const material = await (spec === 'AES_256' ? generate() : this.ctx.expensive.run(caller.tenant, 'CreateKey', generate));
        record.versions.push({ version: 1, material: material.toBuffer(), createTime: now });
      }
      stored = await this.access.store.createKey(record, { maxKeys: limit > 0 ? limit : undefined });
      this.access.cache.set(stored);
    } catch (e) {
      throw domainError(e);
    }
    return this.describe(stored);
  }

  async describeKey(caller: Caller, keyId: string): Promise<KeyDescription> {
    return this.describe(await this.access.use(caller, keyId, 'Describe'));
  }

  /** Up to 100 keys; keys that do not exist (for this account) are left out of the answer. */
  async describeKeys(caller: Caller, keyIds: readonly string[]): Promise<KeyDescription[]> {
    const out: KeyDescription[] = [];
    for (const id of uniqueIds(keyIds)) {
      try {
        out.push(await this.describeKey(caller, id));
      } catch (e) {
        if (!(e instanceof KeyNotFoundError)) throw e;
      }
    }
    return out;
  }

  /** The caller's user keys in its region (what the quota counts) and the quota (0: none). */
  async keyQuota(caller: Caller): Promise<{ used: number; limit: number }> {
    return { used: await this.access.store.countKeys(caller.tenant, caller.region), limit: this.ctx.config.maxKeysPerRegion };
  }

  async listKeys(caller: Caller, p: ListRequest): Promise<KeyList<{ keyId: string }>> {
    const q = listKeysQuery(caller.tenant, caller.region, p, this.access.clusters.forList(caller.tenant, p.hsmClusterId));
    const res = await this.access.store.listKeys(q);
    return { keys: res.keys.map((k) => ({ keyId: k.keyId })), totalCount: res.total };
  }

  async listKeyDetail(caller: Caller, p: ListRequest): Promise<KeyList<KeyDescription>> {
    const q = listKeyDetailQuery(caller.tenant, caller.region, p, this.access.clusters.forList(caller.tenant, p.hsmClusterId));
    const res = await this.access.store.listKeys(q);
    return { keys: res.keys.map((k) => this.describe(k)), totalCount: res.total };
  }

  async updateAlias(caller: Caller, p: AliasChange): Promise<void> {
    const { keyId, alias } = p;
    await this.access.change(caller, keyId, 'UpdateMetadata', (r) => {
      const issue = aliasProblem(alias, r.owner !== 'user');
      if (issue) throw new InvalidAliasError(issue, about('alias'));
      return r.alias === alias ? undefined : { alias };
    });
  }

  async updateKeyDescription(caller: Caller, p: DescriptionChange): Promise<void> {
    const { keyId, description } = p;
    const issue = descriptionProblem(description);
    if (issue) throw new InvalidParameterError(issue, about('description'));
    await this.access.change(caller, keyId, 'UpdateMetadata', (r) => (r.description === description ? undefined : { description }));
  }

  /** Sets and removes tags; archived keys may be re-tagged. */
  async tagKey(caller: Caller, p: TagChange): Promise<Record<string, string>> {
    const { keyId, remove = [] } = p;
    const add = tagsOf(p.set);
    const r = await this.access.change(caller, keyId, 'UpdateMetadata', (cur) => {
      const tags = { ...cur.tags, ...add };
      for (const k of remove) delete tags[k];
      if (Object.keys(tags).length > 50) throw new InvalidTagError('a key has at most 50 tags');
      return { tags };
    });
    return r.tags;
  }

  enableKey(caller: Caller, keyId: string): Promise<void> {
    return this.transit(caller, keyId, 'EnableKey');
  }

  disableKey(caller: Caller, keyId: string): Promise<void> {
    return this.transit(caller, keyId, 'DisableKey', (r) => refuseIfInUse(r, 'disabled'));
  }

  /** Each key on its own: one key's refusal does not stop the others. */
  async batch(caller: Caller, keyIds: readonly string[], action: 'EnableKey' | 'DisableKey'): Promise<BatchOutcome[]> {
    const out: BatchOutcome[] = [];
    for (const id of uniqueIds(keyIds)) {
      try {
        await (action === 'EnableKey' ? this.enableKey(caller, id) : this.disableKey(caller, id));
        out.push({ keyId: id });
      } catch (e) {
        out.push({ keyId: id, error: e as Error });
      }
    }
    return out;
  }

  archiveKey(caller: Caller, keyId: string): Promise<void> {
    return this.transit(caller, keyId, 'ArchiveKey', (r) => refuseIfInUse(r, 'archived', false));
  }

  cancelKeyArchive(caller: Caller, keyId: string): Promise<void> {
    return this.transit(caller, keyId, 'CancelKeyArchive', (r) => {
      if (r.owner !== 'user') throw new NotUserCreatedError(`key ${r.keyId} was created by cloud product ${r.owner}`);
    });
  }

  async scheduleKeyDeletion(caller: Caller, p: DeletionRequest): Promise<{ keyId: string; deletionDate: number }> {
    const { keyId, pendingWindowDays: days } = p;
    const issue = pendingWindowProblem(days);
    if (issue) throw new InvalidPendingWindowError(issue, about('pendingWindowDays'));
    const deletionDate = unixNow(this.access.clock) + days * DAY_SECONDS;
    const r = await this.access.change(caller, keyId, 'ScheduleKeyDeletion', (cur) => {
      refuseIfInUse(cur, 'scheduled for deletion');
      return { keyState: nextState(cur.keyState, 'ScheduleKeyDeletion', cur.versions.length > 0), deletionDate };
    });
    return { keyId: r.keyId, deletionDate: r.deletionDate ?? deletionDate };
  }

  /** Back to Disabled (or PendingImport for an imported key without material). */
  async cancelKeyDeletion(caller: Caller, keyId: string): Promise<{ keyId: string }> {
    await this.access.change(caller, keyId, 'CancelKeyDeletion', (r) => ({
      keyState: nextState(r.keyState, 'CancelKeyDeletion', r.versions.length > 0),
      deletionDate: null,
    }));
    return { keyId };
  }

  /** Idempotent. */
  async bindCloudResource(caller: Caller, p: CloudResourceRequest): Promise<void> {
    const { keyId, productId, resourceId } = p;
    if (!productId || !resourceId) throw new InvalidParameterError('productId and resourceId are required', about('productId', 'resourceId'));
    await this.access.change(caller, keyId, 'UpdateMetadata', (r) => {
      const list = r.cloudBindings ?? [];
      if (list.some((b) => b.productId === productId && b.resourceId === resourceId)) return undefined;
      if (list.length >= MAX_BINDINGS_PER_KEY)
        throw new BindingLimitExceededError(`key ${r.keyId} already has ${MAX_BINDINGS_PER_KEY} cloud-resource bindings; unbind one first`);
      return { cloudBindings: [...list, { productId, resourceId }] };
    });
  }

  async unbindCloudResource(caller: Caller, p: CloudResourceRequest): Promise<void> {
    const { keyId, productId, resourceId } = p;
    await this.access.change(caller, keyId, 'Describe', (r) => {
      const list = r.cloudBindings ?? [];
      const rest = list.filter((b) => !(b.productId === productId && b.resourceId === resourceId));
      if (rest.length === list.length) throw new BindingNotFoundError(`key ${r.keyId} is not bound to ${quoted(productId)}/${quoted(resourceId)}`);
      return { cloudBindings: rest };
    });
  }

  /** A state-machine transition, after `extra` checks; a no-op when the key is already there. */
  private async transit(caller: Caller, keyId: string, action: KeyAction, extra?: (r: KeyRecord) => void): Promise<void> {
    await this.access.change(caller, keyId, action, (r): KeyPatch | undefined => {
      const to = nextState(r.keyState, action, r.versions.length > 0);
      if (to === r.keyState) return undefined;
      extra?.(r);
      return { keyState: to };
    });
  }
}
