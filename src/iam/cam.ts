/**
 * The rules of CAM's users, access keys and policies, for a caller (a tenant's root account or one of
 * its sub-accounts) over IamService. Protocol-neutral: names and shapes of the Tencent wire are the
 * API layer's.
 *  - Everything happens inside the caller's tenant: another tenant's sub-account, key or policy is
 *    "not found", never "forbidden" (so a caller cannot tell it exists).
 *  - A sub-account may not act on its root account's keys (IamForbiddenError); what else it may do
 *    is its policies' business (cam:* actions, decided before these calls).
 *  - At most MAX_KEYS_PER_ACCOUNT API keys per account, as Tencent.
 *  - A tenant policy's document is copied onto each sub-account it is attached to (the copy is what
 *    is evaluated and MACed); UpdatePolicy and DeletePolicy rewrite or remove the copies. Presets are
 *    attached by name and have the fixed ids of PRESET_POLICY_IDS.
 */
import {
  IamAlreadyExistsError,
  IamForbiddenError,
  IamInputError,
  IamLimitError,
  IamStateError,
  PolicyNotFoundError,
  UserNotFoundError,
  AccessKeyNotFoundError,
} from './errors';
import type { ApiKeyInfo, AttachedPolicy, Credentials, IamService, NewUserResult } from './iam-service';
import type { ApiKeyStatus, TenantPolicy, UserProfile, UserRecord } from './identity-store';
import { checkUserName } from './names';
import { PRESET_NAMES, PresetName, presetTemplate } from './presets';
import type { Principal } from './principal';

export const MAX_KEYS_PER_ACCOUNT = 2;

/** Preset ids sit below UIN_BASE.policy, so no tenant policy ever takes one. */
export const PRESET_POLICY_IDS: Readonly<Record<PresetName, string>> = {
  QcloudKMSFullAccess: '1',
  QcloudKMSReadOnlyAccess: '2',
  QcloudKMSCreatorFullAccess: '3',
};

const PRESET_DESCRIPTIONS: Readonly<Record<PresetName, string>> = {
  QcloudKMSFullAccess: 'Full access to the KMS',
  QcloudKMSReadOnlyAccess: 'Read-only access to the KMS',
  QcloudKMSCreatorFullAccess: 'Full access to the keys the sub-account created; may create keys',
};

/** A policy as CAM lists it: a preset (`preset` set, times 0) or one of the tenant's. */
export interface CamPolicy {
  policyId: string;
  name: string;
  description: string;
  preset?: PresetName;
  document: string;
  createdAt: number;
  updatedAt: number;
}

export type PolicyScope = 'All' | 'QCS' | 'Local';
const SCOPES: readonly string[] = ['All', 'QCS', 'Local'];

export interface Page<T> {
  total: number;
  items: T[];
}

export const MAX_PAGE_SIZE = 200;

/** Page `page` (from 1) of `size` items (1 to MAX_PAGE_SIZE). */
export function pageOf<T>(all: readonly T[], page = 1, size = 20): Page<T> {
  if (!Number.isSafeInteger(page) || page < 1) throw new IamInputError('Page must be an integer of at least 1');
  if (!Number.isSafeInteger(size) || size < 1 || size > MAX_PAGE_SIZE) throw new IamInputError(`Rp must be an integer from 1 to ${MAX_PAGE_SIZE}`);
  return { total: all.length, items: all.slice((page - 1) * size, page * size) };
}

export interface NewCamUser {
  name: string;
  remark?: string;
  consoleLogin?: number;
  /** Make a key pair (UseApi 1). */
  useApi: boolean;
}

export interface AttachmentView {
  /** Undefined for an attachment no tenant policy or preset stands for (a custom document kmsctl attached). */
  policy?: CamPolicy;
  name: string;
  attachedAt: number;
}

function presetPolicy(name: PresetName): CamPolicy {
  return {
    policyId: PRESET_POLICY_IDS[name],
    name,
    description: PRESET_DESCRIPTIONS[name],
    preset: name,
    document: JSON.stringify(presetTemplate(name)),
    createdAt: 0,
    updatedAt: 0,
  };
}

const PRESETS: readonly CamPolicy[] = PRESET_NAMES.map(presetPolicy);

function tenantView(p: TenantPolicy): CamPolicy {
  return { policyId: p.policyId, name: p.name, description: p.description, document: p.document, createdAt: p.createdAt, updatedAt: p.updatedAt };
}

export class Cam {
  constructor(private readonly iam: IamService) {}

  // ---- users ----

  async addUser(caller: Principal, u: NewCamUser): Promise<NewUserResult> {
    const options = { remark: u.remark, consoleLogin: u.consoleLogin };
    return u.useApi ? this.iam.createUser(caller.tenantUin, u.name, options) : this.iam.createUser(caller.tenantUin, u.name, { ...options, apiKey: false });
  }

  getUser(caller: Principal, name: string): Promise<UserRecord> {
    return this.userNamed(caller, name);
  }

  listUsers(caller: Principal): Promise<UserRecord[]> {
    return this.iam.listUsers(caller.tenantUin);
  }

  async updateUser(caller: Principal, name: string, profile: UserProfile): Promise<void> {
    await this.iam.updateUser((await this.userNamed(caller, name)).uin, profile);
  }

  /** Without `force`, a sub-account that still has API keys stays (Tencent's Force 0). */
  async deleteUser(caller: Principal, name: string, force: boolean): Promise<void> {
    const user = await this.userNamed(caller, name);
    if (!force && (await this.iam.listApiKeys(user.uin)).length > 0)
      throw new IamStateError(`sub-account ${JSON.stringify(name)} still has API keys: delete them first, or pass Force 1`);
    await this.iam.deleteUser(user.uin);
  }

  // ---- access keys ----

  async createAccessKey(caller: Principal, targetUin?: string): Promise<Credentials> {
    const owner = await this.owner(caller, targetUin);
    if ((await this.iam.listApiKeys(owner)).length >= MAX_KEYS_PER_ACCOUNT)
      throw new IamLimitError(`account ${owner} already has ${MAX_KEYS_PER_ACCOUNT} API keys, the most it may have: delete one first`);
    return this.iam.createApiKey(owner);
  }

  async listAccessKeys(caller: Principal, targetUin?: string): Promise<ApiKeyInfo[]> {
    return this.iam.listApiKeys(await this.owner(caller, targetUin));
  }

  async updateAccessKey(caller: Principal, secretId: string, status: ApiKeyStatus, targetUin?: string): Promise<void> {
    await this.keyOf(caller, secretId, targetUin);
    await (status === 'active' ? this.iam.enableApiKey(secretId) : this.iam.disableApiKey(secretId));
  }

  async deleteAccessKey(caller: Principal, secretId: string, targetUin?: string): Promise<void> {
    await this.keyOf(caller, secretId, targetUin);
    await this.iam.deleteApiKey(secretId);
  }

  // ---- policies ----

  async createPolicy(caller: Principal, name: string, document: string, description = ''): Promise<string> {
    return (await this.iam.createTenantPolicy(caller.tenantUin, name, description, document)).policyId;
  }

  async getPolicy(caller: Principal, policyId: string): Promise<CamPolicy> {
    const preset = PRESETS.find((p) => p.policyId === policyId);
    if (preset) return preset;
    const own = await this.iam.getTenantPolicy(caller.tenantUin, policyId);
    if (!own) throw new PolicyNotFoundError(`policy ${policyId} does not exist`);
    return tenantView(own);
  }

  /** Presets first, then the tenant's by id; `keyword` matches names case-insensitively. With each, how many sub-accounts have it. */
  async listPolicies(caller: Principal, scope: string = 'All', keyword = ''): Promise<Array<{ policy: CamPolicy; attachments: number }>> {
    if (!SCOPES.includes(scope)) throw new IamInputError(`Scope must be one of ${SCOPES.join(', ')}`);
    const own = scope === 'QCS' ? [] : (await this.iam.listTenantPolicies(caller.tenantUin)).map(tenantView);
    const all = [...(scope === 'Local' ? [] : PRESETS), ...own].filter((p) => p.name.toLowerCase().includes(keyword.toLowerCase()));
    const counts = new Map<string, number>();
    for (const { attachments } of await this.attachmentsOfTenant(caller)) for (const a of attachments) counts.set(a.name, (counts.get(a.name) ?? 0) + 1);
    return all.map((policy) => ({ policy, attachments: counts.get(policy.name) ?? 0 }));
  }

  async updatePolicy(caller: Principal, policyId: string, changes: { name?: string; description?: string; document?: string }): Promise<void> {
    const current = await this.ownPolicy(caller, policyId);
    const next = await this.iam.updateTenantPolicy(current, changes);
    for (const { user } of await this.holders(caller, current.name)) {
      await this.iam.attachPolicy(user.uin, next.name, next.document);
      if (next.name !== current.name) await this.iam.detachPolicy(user.uin, current.name);
    }
  }

  /** Each policy is detached from every sub-account, then deleted; the first unknown id stops the request before anything changes. */
  async deletePolicies(caller: Principal, policyIds: readonly string[]): Promise<void> {
    const policies = [];
    for (const id of policyIds) policies.push(await this.ownPolicy(caller, id));
    for (const p of policies) {
      for (const { user } of await this.holders(caller, p.name)) await this.iam.detachPolicy(user.uin, p.name);
      await this.iam.deleteTenantPolicy(caller.tenantUin, p.policyId);
    }
  }

  async attachUserPolicy(caller: Principal, policyId: string, userUin: string): Promise<void> {
    const policy = await this.getPolicy(caller, policyId);
    const user = await this.userOf(caller, userUin);
    const attached = await this.iam.listPolicies(user.uin);
    if (attached.some((a) => a.name === policy.name)) throw new IamAlreadyExistsError(`policy ${policyId} is already attached to sub-account ${userUin}`);
    await this.iam.attachPolicy(user.uin, policy.name, policy.preset ?? policy.document);
  }

  async detachUserPolicy(caller: Principal, policyId: string, userUin: string): Promise<void> {
    const policy = await this.getPolicy(caller, policyId);
    const user = await this.userOf(caller, userUin);
    if (!(await this.iam.listPolicies(user.uin)).some((a) => a.name === policy.name))
      throw new PolicyNotFoundError(`policy ${policyId} is not attached to sub-account ${userUin}`);
    await this.iam.detachPolicy(user.uin, policy.name);
  }

  async listAttachedUserPolicies(caller: Principal, userUin: string): Promise<AttachmentView[]> {
    const user = await this.userOf(caller, userUin);
    const byName = await this.policiesByName(caller);
    return (await this.iam.listPolicies(user.uin)).map((a) => ({ policy: byName.get(a.name), name: a.name, attachedAt: a.attachedAt }));
  }

  async listEntitiesForPolicy(caller: Principal, policyId: string): Promise<Array<{ user: UserRecord; attachedAt: number }>> {
    const policy = await this.getPolicy(caller, policyId);
    return this.holders(caller, policy.name);
  }

  // ---- lookups inside the caller's tenant ----

  private async userNamed(caller: Principal, name: string): Promise<UserRecord> {
    checkUserName(name);
    const user = (await this.iam.listUsers(caller.tenantUin)).find((u) => u.name === name);
    if (!user) throw new UserNotFoundError(`sub-account ${JSON.stringify(name)} does not exist`);
    return user;
  }

  private async userOf(caller: Principal, uin: string): Promise<UserRecord> {
    const user = await this.iam.getUser(uin);
    if (!user || user.tenantUin !== caller.tenantUin) throw new UserNotFoundError(`sub-account ${uin} does not exist`);
    return user;
  }

  /** The account whose keys are meant: the caller's own (no target), its root (root callers only) or a sub-account of its tenant. */
  private async owner(caller: Principal, targetUin?: string): Promise<string> {
    if (targetUin === undefined || targetUin === caller.uin) return caller.uin;
    if (targetUin === caller.tenantUin) throw new IamForbiddenError(`sub-account ${caller.uin} may not act on the root account's API keys`);
    return (await this.userOf(caller, targetUin)).uin;
  }

  private async keyOf(caller: Principal, secretId: string, targetUin?: string): Promise<void> {
    const owner = await this.owner(caller, targetUin);
    const key = await this.iam.getApiKey(secretId);
    if (!key || key.ownerUin !== owner || key.tenantUin !== caller.tenantUin)
      throw new AccessKeyNotFoundError(`API key ${secretId} of account ${owner} does not exist`);
  }

  private async ownPolicy(caller: Principal, policyId: string): Promise<TenantPolicy> {
    if (PRESETS.some((p) => p.policyId === policyId)) throw new IamStateError(`policy ${policyId} is a preset: it cannot be changed or deleted`);
    const own = await this.iam.getTenantPolicy(caller.tenantUin, policyId);
    if (!own) throw new PolicyNotFoundError(`policy ${policyId} does not exist`);
    return own;
  }

  private async policiesByName(caller: Principal): Promise<Map<string, CamPolicy>> {
    const own = (await this.iam.listTenantPolicies(caller.tenantUin)).map(tenantView);
    return new Map([...PRESETS, ...own].map((p) => [p.name, p]));
  }

  private async attachmentsOfTenant(caller: Principal): Promise<Array<{ user: UserRecord; attachments: AttachedPolicy[] }>> {
    const out = [];
    for (const user of await this.iam.listUsers(caller.tenantUin)) out.push({ user, attachments: await this.iam.listPolicies(user.uin) });
    return out;
  }

  /** The sub-accounts that have an attachment named `name`, with when it was attached. */
  private async holders(caller: Principal, name: string): Promise<Array<{ user: UserRecord; attachedAt: number }>> {
    return (await this.attachmentsOfTenant(caller)).flatMap(({ user, attachments }) => {
      const a = attachments.find((p) => p.name === name);
      return a ? [{ user, attachedAt: a.attachedAt }] : [];
    });
  }
}
