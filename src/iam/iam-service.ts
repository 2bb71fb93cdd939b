/**
 * Accounts, sub-accounts, API keys and policy attachments, over an IdentityStore, with SecretKeys
 * sealed by a SecretSealer (the server's is a key in the HSMs). A SecretKey is returned once, when
 * its key is created, and is stored only sealed, together with the SecretId and account it belongs to.
 *
 * `resolve` and `policiesFor` are cached per process (bounded, CACHE_TTL_MS by default: 5 s). Every
 * change made through this service (the API's CAM actions, kmsctl) raises the store's change
 * generation; each process reads it at most every GENERATION_POLL_MS (250 ms) and drops its caches
 * when it moved, so a change takes effect on every worker and node within that interval. When the
 * generation cannot be read (store away), the TTL still bounds what a cache may keep.
 */
import { Clock, systemClock, unixNow } from '../common/clock';
import { bindSecret, isSecretId, KeyBinding, newSecretId, newSecretKey, unbindSecret } from './credentials';
import { IamInputError, IamIntegrityError, IamNotFoundError, PolicyError } from './errors';
import {
  ApiKeyRecord,
  ApiKeyStatus,
  checkProfile,
  IdentityStore,
  NewApiKey,
  PolicyAttachment,
  PolicyBody,
  TenantPolicy,
  TenantRecord,
  UserProfile,
  UserRecord,
} from './identity-store';
import { checkPolicyName, checkTenantName, checkUserName } from './names';
import { Policy, parsePolicy } from './policy';
import { PRESET_NAMES, PresetName, instantiatePreset, isPresetName } from './presets';
import { Principal } from './principal';
import { TtlCache } from './ttl-cache';

export interface SecretSealer {
  seal(plain: Buffer): Promise<Buffer>;
  open(sealed: Buffer): Promise<Buffer>;
}

export const CACHE_TTL_MS = 5_000;
export const GENERATION_POLL_MS = 250;
export const CACHE_SIZE = 10_000;

export interface IamServiceOptions {
  store: IdentityStore;
  sealer: SecretSealer;
  clock?: Clock;
  /** How long a resolved key or a principal's policies are reused; default CACHE_TTL_MS (5 s). */
  cacheTtlMs?: number;
  /** Entries per cache; default CACHE_SIZE. */
  cacheSize?: number;
  /** How often the store's change generation is read; default GENERATION_POLL_MS. */
  generationPollMs?: number;
  /** Told when a stored API key does not belong to its account or tenant (the store was changed outside the service). */
  onIntegrity?: (t: { uin: string; detail: string }) => void;
}

/** A new key pair; SecretKey is shown this once. */
export interface Credentials {
  Uin: number;
  SecretId: string;
  SecretKey: string;
}

/** A new sub-account: its uin, and its first key pair unless none was asked for. */
export interface NewUserResult {
  Uin: number;
  SecretId?: string;
  SecretKey?: string;
}

export interface ResolvedKey {
  principal: Principal;
  /** The SecretKey's bytes (ASCII), for signature checks; a copy the caller may wipe. */
  secretKey: Buffer;
}

export interface UserOptions {
  /** CAM's remark and console-login flag. */
  remark?: string;
  consoleLogin?: number;
  /** Make the sub-account's first key pair (default true; CAM's AddUser with UseApi 0 makes none). */
  apiKey?: boolean;
  /** A preset to attach, under its own name. */
  preset?: string;
  /** A custom policy document (object or JSON text) to attach as `policyName`. */
  policy?: unknown;
  /** Default "policy". */
  policyName?: string;
}

export interface ApiKeyInfo {
  SecretId: string;
  OwnerUin: string;
  Status: ApiKeyStatus;
  CreatedAt: number;
}

export interface AttachedPolicy {
  name: string;
  /** Set when the attachment is a preset. */
  preset?: PresetName;
  /** The document as evaluated (presets instantiated for the sub-account). */
  document: Policy;
  attachedAt: number;
}

const DEFAULT_POLICY_NAME = 'policy';

export class IamService {
  private readonly store: IdentityStore;
  private readonly sealer: SecretSealer;
  private readonly clock: Clock;
  private readonly keys: TtlCache<ResolvedKey>;
  private readonly policies: TtlCache<readonly Policy[]>;
  private readonly onIntegrity: NonNullable<IamServiceOptions['onIntegrity']>;
  private readonly pollMs: number;
  private generation: { value?: number; checkedAt: number; pending?: Promise<void> } = { checkedAt: -Infinity };

  constructor(options: IamServiceOptions) {
    this.store = options.store;
    this.onIntegrity = options.onIntegrity ?? (() => undefined);
    this.sealer = options.sealer;
    this.clock = options.clock ?? systemClock;
    const ttl = options.cacheTtlMs ?? CACHE_TTL_MS;
    const size = options.cacheSize ?? CACHE_SIZE;
    this.keys = new TtlCache(ttl, size, this.clock);
    this.policies = new TtlCache(ttl, size, this.clock);
    this.pollMs = options.generationPollMs ?? GENERATION_POLL_MS;
  }

  async createTenant(name: string): Promise<Credentials> {
    checkTenantName(name);
    const uin = await this.store.allocateUin('tenant');
    const { apiKey, credentials } = await this.newKey(uin, uin);
    await this.store.createTenant({ uin, name, createdAt: this.now(), apiKey });
    return credentials;
  }

  async createUser(tenantUin: string, name: string, options: UserOptions & { apiKey: false }): Promise<NewUserResult>;
  async createUser(tenantUin: string, name: string, options?: UserOptions): Promise<Credentials>;
  async createUser(tenantUin: string, name: string, options: UserOptions = {}): Promise<NewUserResult> {
    checkUserName(name);
    const profile = { remark: options.remark, consoleLogin: options.consoleLogin };
    checkProfile(profile);
    const policies = this.initialPolicies(options);
    await this.tenant(tenantUin);
    const uin = await this.store.allocateUin('user');
    const key = options.apiKey === false ? undefined : await this.newKey(uin, tenantUin);
    await this.store.createUser({ uin, tenantUin, name, createdAt: this.now(), apiKey: key?.apiKey, policies, ...definedOnly(profile) });
    await this.changed();
    return key?.credentials ?? { Uin: Number(uin) };
  }

  async updateUser(uin: string, profile: UserProfile): Promise<void> {
    await this.store.updateUser(uin, profile);
    await this.changed();
  }

  /** The sub-account, its keys and its attachments; its keys stop resolving on every process within GENERATION_POLL_MS. */
  async deleteUser(uin: string): Promise<void> {
    await this.user(uin);
    const keys = await this.store.listApiKeys(uin);
    await this.store.deleteUser(uin);
    for (const k of keys) this.keys.delete(k.secretId);
    this.policies.delete(uin);
    await this.changed();
  }

  /** A further key pair for a tenant (root key) or a sub-account. */
  async createApiKey(uin: string): Promise<Credentials> {
    const tenantUin = (await this.store.getTenant(uin))?.uin ?? (await this.user(uin)).tenantUin;
    const { apiKey, credentials } = await this.newKey(uin, tenantUin);
    await this.store.addApiKey(uin, apiKey);
    await this.changed();
    return credentials;
  }

  async disableApiKey(secretId: string): Promise<void> {
    await this.store.setApiKeyStatus(secretId, 'disabled');
    this.keys.delete(secretId);
    await this.changed();
  }

  async enableApiKey(secretId: string): Promise<void> {
    await this.store.setApiKeyStatus(secretId, 'active');
    this.keys.delete(secretId);
    await this.changed();
  }

  async deleteApiKey(secretId: string): Promise<void> {
    await this.store.deleteApiKey(secretId);
    this.keys.delete(secretId);
    await this.changed();
  }

  getApiKey(secretId: string): Promise<ApiKeyRecord | undefined> {
    return isSecretId(secretId) ? this.store.getApiKey(secretId) : Promise.resolve(undefined);
  }

  /** A tenant policy: its document checked and normalised, its id allocated. */
  async createTenantPolicy(tenantUin: string, name: string, description: string, source: unknown): Promise<TenantPolicy> {
    checkPolicyName(name);
    if (isPresetName(name)) throw new PolicyError(`${name} is the name of a preset; give the policy another name`);
    const document = JSON.stringify(parsePolicy(source));
    const now = this.now();
    const policy = { policyId: await this.store.allocateUin('policy'), tenantUin, name, description, document, createdAt: now, updatedAt: now };
    await this.store.createTenantPolicy(policy);
    await this.changed();
    return policy;
  }

  getTenantPolicy(tenantUin: string, policyId: string): Promise<TenantPolicy | undefined> {
    return this.store.getTenantPolicy(tenantUin, policyId);
  }

  listTenantPolicies(tenantUin: string): Promise<TenantPolicy[]> {
    return this.store.listTenantPolicies(tenantUin);
  }

  /** Stores the changed policy (`changes.document` checked first); the caller re-attaches the copies. */
  async updateTenantPolicy(current: TenantPolicy, changes: { name?: string; description?: string; document?: unknown }): Promise<TenantPolicy> {
    if (changes.name !== undefined) {
      checkPolicyName(changes.name);
      if (isPresetName(changes.name)) throw new PolicyError(`${changes.name} is the name of a preset; give the policy another name`);
    }
    const next: TenantPolicy = {
      ...current,
      name: changes.name ?? current.name,
      description: changes.description ?? current.description,
      document: changes.document === undefined ? current.document : JSON.stringify(parsePolicy(changes.document)),
      updatedAt: this.now(),
    };
    await this.store.updateTenantPolicy(next);
    await this.changed();
    return next;
  }

  async deleteTenantPolicy(tenantUin: string, policyId: string): Promise<void> {
    await this.store.deleteTenantPolicy(tenantUin, policyId);
    await this.changed();
  }

  /** The account's keys, without secrets. */
  async listApiKeys(uin: string): Promise<ApiKeyInfo[]> {
    return (await this.store.listApiKeys(uin)).map((k) => ({ SecretId: k.secretId, OwnerUin: k.ownerUin, Status: k.status, CreatedAt: k.createdAt }));
  }

  /** Who signs with `secretId` and the SecretKey to check the signature; undefined for an unknown or disabled key. */
  async resolve(secretId: string): Promise<ResolvedKey | undefined> {
    if (!isSecretId(secretId)) return undefined;
    await this.fresh();
    const found = await this.keys.get(secretId, () => this.loadKey(secretId));
    return found && { principal: { ...found.principal }, secretKey: Buffer.from(found.secretKey) };
  }

  /**
   * Attaches a preset (`source` is its name) or a custom document (object or JSON text) to a
   * sub-account as `name`, replacing a policy of that name. Root accounts take no policies.
   */
  async attachPolicy(uin: string, name: string, source: unknown): Promise<void> {
    checkPolicyName(name);
    const body = policyBody(name, source);
    await this.user(uin);
    await this.store.attachPolicy(uin, { name, body, attachedAt: this.now() });
    this.policies.delete(uin);
    await this.changed();
  }

  async detachPolicy(uin: string, name: string): Promise<void> {
    await this.store.detachPolicy(uin, name);
    this.policies.delete(uin);
    await this.changed();
  }

  async listPolicies(uin: string): Promise<AttachedPolicy[]> {
    const user = await this.user(uin);
    return (await this.store.listPolicies(uin)).map((a) => ({
      name: a.name,
      ...(a.body.kind === 'preset' && isPresetName(a.body.preset) ? { preset: a.body.preset } : {}),
      document: documentOf(a.body, user),
      attachedAt: a.attachedAt,
    }));
  }

  /**
   * The policies that govern `principal` (none for a root account, which policies do not restrict).
   * Shared with the cache, hence frozen.
   */
  async policiesFor(principal: Principal): Promise<readonly Policy[]> {
    if (principal.kind === 'root') return [];
    await this.fresh();
    const found = await this.policies.get(principal.uin, async () => {
      const attachments = await this.store.listPolicies(principal.uin);
      return deepFreeze(attachments.map((a) => documentOf(a.body, principal)));
    });
    return found ?? [];
  }

  getTenant(uin: string): Promise<TenantRecord | undefined> {
    return this.store.getTenant(uin);
  }

  listTenants(): Promise<TenantRecord[]> {
    return this.store.listTenants();
  }

  getUser(uin: string): Promise<UserRecord | undefined> {
    return this.store.getUser(uin);
  }

  async listUsers(tenantUin: string): Promise<UserRecord[]> {
    await this.tenant(tenantUin);
    return this.store.listUsers(tenantUin);
  }

  private now(): number {
    return unixNow(this.clock);
  }

  /** Raises the store's change generation (other processes drop their caches) and drops this one's. */
  private async changed(): Promise<void> {
    this.generation = { value: await this.store.noteChange(), checkedAt: this.clock.now() };
    this.keys.clear();
    this.policies.clear();
  }

  /** At most every pollMs: the store's change generation; moved, the caches are dropped. A failed read leaves them to their TTL. */
  private fresh(): Promise<void> {
    const g = this.generation;
    if (g.pending) return g.pending;
    if (this.clock.now() - g.checkedAt < this.pollMs) return Promise.resolve();
    const pending = this.store.changeGeneration().then(
      (value) => {
        if (g.value !== undefined && value !== g.value) {
          this.keys.clear();
          this.policies.clear();
        }
        this.generation = { value, checkedAt: this.clock.now() };
      },
      () => {
        this.generation = { value: g.value, checkedAt: this.clock.now() };
      },
    );
    g.pending = pending;
    return pending;
  }

  private async tenant(uin: string): Promise<TenantRecord> {
    const t = await this.store.getTenant(uin);
    if (!t) throw new IamNotFoundError(`tenant ${uin} does not exist`);
    return t;
  }

  private async user(uin: string): Promise<UserRecord> {
    const u = await this.store.getUser(uin);
    if (u) return u;
    if (await this.store.getTenant(uin)) throw new IamInputError(`${uin} is a root account: policies do not apply to it`);
    throw new IamNotFoundError(`sub-account ${uin} does not exist`);
  }

  private initialPolicies(options: UserOptions): PolicyAttachment[] {
    const attachedAt = this.now();
    const out: PolicyAttachment[] = [];
    if (options.preset !== undefined) out.push({ name: options.preset, body: policyBody(options.preset, options.preset), attachedAt });
    if (options.policy !== undefined) {
      const name = options.policyName ?? DEFAULT_POLICY_NAME;
      checkPolicyName(name);
      out.push({ name, body: policyBody(name, options.policy), attachedAt });
    }
    return out;
  }

  /** A fresh key pair for `ownerUin`, its SecretKey sealed with its binding; the plaintext is wiped. */
  private async newKey(ownerUin: string, tenantUin: string): Promise<{ apiKey: NewApiKey; credentials: Credentials }> {
    const secretId = newSecretId();
    const secretKey = newSecretKey();
    const plain = bindSecret({ secretId, ownerUin, tenantUin }, secretKey);
    try {
      const sealedSecret = await this.sealer.seal(plain);
      return {
        apiKey: { secretId, sealedSecret, createdAt: this.now() },
        credentials: { Uin: Number(ownerUin), SecretId: secretId, SecretKey: secretKey },
      };
    } finally {
      plain.fill(0);
    }
  }

  private async loadKey(secretId: string): Promise<ResolvedKey | undefined> {
    const record = await this.store.getApiKey(secretId);
    if (!record || record.status !== 'active') return undefined;
    try {
      return await this.openKey(record);
    } catch (e) {
      if (e instanceof IamIntegrityError) this.onIntegrity({ uin: record.ownerUin, detail: e.message });
      throw e;
    }
  }

  private async openKey(record: ApiKeyRecord): Promise<ResolvedKey | undefined> {
    const principal = await this.principalOf(record);
    if (!principal) return undefined;
    const opened = await this.sealer.open(record.sealedSecret);
    try {
      return { principal, secretKey: unbindSecret(bindingOf(record), opened) };
    } finally {
      opened.fill(0);
    }
  }

  private async principalOf(k: ApiKeyRecord): Promise<Principal | undefined> {
    const base = { tenantUin: k.tenantUin, uin: k.ownerUin, secretId: k.secretId };
    if (k.ownerUin === k.tenantUin) {
      const tenant = await this.store.getTenant(k.tenantUin);
      return tenant && { ...base, kind: 'root', name: tenant.name };
    }
    const user = await this.store.getUser(k.ownerUin);
    if (!user) return undefined;
    if (user.tenantUin !== k.tenantUin) throw new IamIntegrityError(`API key ${k.secretId} names a tenant its sub-account does not belong to`);
    return { ...base, kind: 'user', name: user.name };
  }
}

function bindingOf(k: ApiKeyRecord): KeyBinding {
  return { secretId: k.secretId, ownerUin: k.ownerUin, tenantUin: k.tenantUin };
}

/** A preset by name, or a custom document (checked); a custom document may not take a preset's name. */
function policyBody(name: string, source: unknown): PolicyBody {
  if (typeof source === 'string' && isPresetName(source)) return { kind: 'preset', preset: source };
  if (typeof source === 'string' && !source.trim().startsWith('{')) {
    throw new PolicyError(`unknown preset ${JSON.stringify(source)} (presets: ${PRESET_NAMES.join(', ')})`);
  }
  if (isPresetName(name)) throw new PolicyError(`${name} is the name of a preset; give the custom policy another name`);
  return { kind: 'custom', document: JSON.stringify(parsePolicy(source)) };
}

/** The document an attachment stands for, for the sub-account it is attached to. */
function documentOf(body: PolicyBody, user: { uin: string; tenantUin: string }): Policy {
  if (body.kind === 'custom') return parsePolicy(body.document);
  if (!isPresetName(body.preset)) throw new PolicyError(`attached preset ${JSON.stringify(body.preset)} is unknown to this build`);
  return instantiatePreset(body.preset, user);
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
