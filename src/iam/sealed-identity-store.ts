/**
 * Identity rows the store cannot forge: a decorator over any IdentityStore backend that MACs the
 * rows that carry authority and verifies them when they are read from the backend.
 *  - API keys: SecretId, owner, tenant, status and creation time (so a disabled key cannot be
 *    re-enabled, nor a key moved, by writing the store). The owner and tenant are also inside the
 *    sealed SecretKey (credentials.ts), which is what binds a sub-account to its tenant: a changed
 *    membership makes the sealed secret refuse to open (IamService.principalOf).
 *  - Policy attachments: sub-account, name, preset or document, attachment time (so an inserted or
 *    rewritten attachment is refused, never evaluated); and each sub-account's whole set of them,
 *    by name and MAC, on its row (so an attachment deleted in the store, a deny among them, is
 *    noticed). Attachment changes write the set's MAC by compare-and-set (IamConflictError: read
 *    again and retry).
 * A row without its MAC, or with a wrong one, raises `onTamper` (the server raises a StoreIntegrity
 * alarm) and throws IamIntegrityError: the request fails closed. Rows written before MACs existed
 * are sealed once by the start-up migration (src/authority.ts). Verification costs one HSM MAC per
 * row loaded; IamService caches what it loads (ttl-cache.ts), so cached hits cost nothing.
 */
import { createHash } from 'node:crypto';
import { RowAuthenticator, rowBytes } from '../store/row-mac';
import { IamConflictError, IamIntegrityError } from './errors';
import {
  ApiKeyRecord,
  ApiKeyStatus,
  IdentityStore,
  NewApiKey,
  NewTenant,
  NewUser,
  PolicyAttachment,
  PolicySetSeal,
  TenantPolicy,
  TenantRecord,
  UinKind,
  UserProfile,
  UserRecord,
} from './identity-store';

export interface Tamper {
  /** The account the row belongs to. */
  uin: string;
  detail: string;
}

type KeyFields = Pick<ApiKeyRecord, 'secretId' | 'ownerUin' | 'tenantUin' | 'status' | 'createdAt' | 'sealedSecret'>;

export function apiKeyBytes(k: KeyFields): Buffer {
  const sealed = createHash('sha256').update(k.sealedSecret).digest('base64');
  return rowBytes('kms-iam-api-key/1', [k.secretId, k.ownerUin, k.tenantUin, k.status, k.createdAt, sealed]);
}

export function policyBytes(userUin: string, p: PolicyAttachment): Buffer {
  const body = p.body.kind === 'preset' ? p.body.preset : p.body.document;
  return rowBytes('kms-iam-policy/1', [userUin, p.name, p.body.kind, body, p.attachedAt]);
}

/** The bytes of a sub-account's set of attachments: each one's name and MAC, by name. */
export function policySetBytes(userUin: string, attachments: readonly PolicyAttachment[]): Buffer {
  const sorted = [...attachments].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return rowBytes('kms-iam-policy-set/1', [userUin, ...sorted.flatMap((p) => [p.name, (p.mac ?? Buffer.alloc(0)).toString('base64')])]);
}

const SET_RETRIES = 5;

export class SealedIdentityStore implements IdentityStore {
  constructor(
    private readonly inner: IdentityStore,
    private readonly auth: RowAuthenticator,
    private readonly onTamper: (t: Tamper) => void = () => undefined,
  ) {}

  allocateUin(kind: UinKind): Promise<string> {
    return this.inner.allocateUin(kind);
  }

  async createTenant(t: NewTenant): Promise<TenantRecord> {
    const apiKey = t.apiKey && (await this.sealKey(t.apiKey, t.uin, t.uin));
    return this.inner.createTenant({ ...t, apiKey });
  }

  getTenant(uin: string): Promise<TenantRecord | undefined> {
    return this.inner.getTenant(uin);
  }

  listTenants(): Promise<TenantRecord[]> {
    return this.inner.listTenants();
  }

  async createUser(u: NewUser): Promise<UserRecord> {
    const apiKey = u.apiKey && (await this.sealKey(u.apiKey, u.uin, u.tenantUin));
    const policies = await Promise.all((u.policies ?? []).map((p) => this.sealPolicy(u.uin, p)));
    return this.inner.createUser({ ...u, apiKey, policies, policiesMac: await this.auth.mac(policySetBytes(u.uin, policies)) });
  }

  getUser(uin: string): Promise<UserRecord | undefined> {
    return this.inner.getUser(uin);
  }

  listUsers(tenantUin: string): Promise<UserRecord[]> {
    return this.inner.listUsers(tenantUin);
  }

  /** The owner's tenant is looked up first: the row's MAC names it (the backend finds the same one). */
  async addApiKey(ownerUin: string, key: NewApiKey): Promise<ApiKeyRecord> {
    const tenantUin = (await this.inner.getTenant(ownerUin))?.uin ?? (await this.inner.getUser(ownerUin))?.tenantUin;
    const sealed = tenantUin === undefined ? key : await this.sealKey(key, ownerUin, tenantUin);
    return this.checkedKey(await this.inner.addApiKey(ownerUin, sealed));
  }

  async getApiKey(secretId: string): Promise<ApiKeyRecord | undefined> {
    const k = await this.inner.getApiKey(secretId);
    return k && this.checkedKey(k);
  }

  async listApiKeys(ownerUin: string): Promise<ApiKeyRecord[]> {
    const keys = await this.inner.listApiKeys(ownerUin);
    for (const k of keys) await this.checkedKey(k);
    return keys;
  }

  /**
   * Only a key whose stored row verifies gets a new MAC (it covers the rest of that row). A key whose
   * row fails can still be disabled: it is written without a MAC, so it stays refused as well.
   */
  async setApiKeyStatus(secretId: string, status: ApiKeyStatus): Promise<void> {
    const current = await this.getApiKey(secretId).catch((e: unknown) => {
      if (e instanceof IamIntegrityError && status === 'disabled') return null;
      throw e;
    });
    if (!current) return this.inner.setApiKeyStatus(secretId, status);
    await this.inner.setApiKeyStatus(secretId, status, await this.auth.mac(apiKeyBytes({ ...current, status })));
  }

  /** Extends the verified set (a set changed in the store is refused, not blessed by the next attachment). */
  async attachPolicy(userUin: string, attachment: PolicyAttachment): Promise<void> {
    const sealed = await this.sealPolicy(userUin, attachment);
    await this.changeSet(
      userUin,
      (current) => [...current.filter((p) => p.name !== sealed.name), sealed],
      (set) => this.inner.attachPolicy(userUin, sealed, set),
    );
  }

  async detachPolicy(userUin: string, name: string): Promise<void> {
    await this.changeSet(
      userUin,
      (current) => current.filter((p) => p.name !== name),
      (set) => this.inner.detachPolicy(userUin, name, set),
    );
  }

  setPolicySetMac(userUin: string, set: PolicySetSeal): Promise<void> {
    return this.inner.setPolicySetMac(userUin, set);
  }

  resealApiKey(secretId: string, expected: Buffer, next: Buffer): Promise<void> {
    return this.inner.resealApiKey(secretId, expected, next);
  }

  /** Every attachment verified, and the set of them against the MAC on the sub-account's row. */
  async listPolicies(userUin: string): Promise<PolicyAttachment[]> {
    return (await this.verifiedSet(userUin)).attachments;
  }

  updateUser(uin: string, profile: UserProfile): Promise<void> {
    return this.inner.updateUser(uin, profile);
  }

  deleteUser(uin: string): Promise<void> {
    return this.inner.deleteUser(uin);
  }

  deleteApiKey(secretId: string): Promise<void> {
    return this.inner.deleteApiKey(secretId);
  }

  /** Tenant policies carry no authority of their own: the attached copies (MACed above) are what is evaluated. */
  createTenantPolicy(policy: TenantPolicy): Promise<void> {
    return this.inner.createTenantPolicy(policy);
  }

  getTenantPolicy(tenantUin: string, policyId: string): Promise<TenantPolicy | undefined> {
    return this.inner.getTenantPolicy(tenantUin, policyId);
  }

  listTenantPolicies(tenantUin: string): Promise<TenantPolicy[]> {
    return this.inner.listTenantPolicies(tenantUin);
  }

  updateTenantPolicy(policy: TenantPolicy): Promise<void> {
    return this.inner.updateTenantPolicy(policy);
  }

  deleteTenantPolicy(tenantUin: string, policyId: string): Promise<void> {
    return this.inner.deleteTenantPolicy(tenantUin, policyId);
  }

  changeGeneration(): Promise<number> {
    return this.inner.changeGeneration();
  }

  noteChange(): Promise<number> {
    return this.inner.noteChange();
  }

  hasMarker(name: string): Promise<boolean> {
    return this.inner.hasMarker(name);
  }

  setMarker(name: string): Promise<void> {
    return this.inner.setMarker(name);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** The sub-account's row and its attachments, as one verified set (the row's MAC of the set matches them). */
  verifiedPolicies(userUin: string): Promise<{ user: UserRecord | undefined; attachments: PolicyAttachment[] }> {
    return this.verifiedSet(userUin);
  }

  private async verifiedSet(userUin: string): Promise<{ user: UserRecord | undefined; attachments: PolicyAttachment[] }> {
    const [user, found] = await Promise.all([this.inner.getUser(userUin), this.inner.listPolicies(userUin)]);
    for (const p of found) await this.checked(p.mac, policyBytes(userUin, p), userUin, `policy ${JSON.stringify(p.name)} of sub-account ${userUin}`);
    if (user || found.length > 0)
      await this.checked(user?.policiesMac, policySetBytes(userUin, found), userUin, `the set of policies of sub-account ${userUin}`);
    return { user, attachments: found };
  }

  /** Writes an attachment change with the MAC of the set it makes, retrying when another writer changed the set first. */
  private async changeSet(
    userUin: string,
    next: (current: PolicyAttachment[]) => PolicyAttachment[],
    write: (set?: PolicySetSeal) => Promise<void>,
  ): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const { user, attachments } = await this.verifiedSet(userUin);
      if (!user) return write();
      const set = { expected: user.policiesMac ?? null, next: await this.auth.mac(policySetBytes(userUin, next(attachments))) };
      try {
        return await write(set);
      } catch (e) {
        if (!(e instanceof IamConflictError) || attempt >= SET_RETRIES) throw e;
      }
    }
  }

  private async sealKey(key: NewApiKey, ownerUin: string, tenantUin: string): Promise<NewApiKey> {
    const row = { ...key, ownerUin, tenantUin, status: 'active' as const };
    return { ...key, mac: await this.auth.mac(apiKeyBytes(row)) };
  }

  private async sealPolicy(userUin: string, p: PolicyAttachment): Promise<PolicyAttachment> {
    return { ...p, mac: await this.auth.mac(policyBytes(userUin, p)) };
  }

  private async checkedKey(k: ApiKeyRecord): Promise<ApiKeyRecord> {
    await this.checked(k.mac, apiKeyBytes(k), k.ownerUin, `API key ${k.secretId}`);
    return k;
  }

  private async checked(mac: Buffer | undefined, data: Buffer, uin: string, what: string): Promise<void> {
    if (mac !== undefined && mac.length > 0 && (await this.auth.verify(data, mac))) return;
    this.onTamper({ uin, detail: `${what}: its stored row ${mac === undefined ? 'has no MAC' : 'does not match its MAC'} (changed outside the service)` });
    throw new IamIntegrityError(`the stored row of ${what} failed its integrity check: refused, and an alarm was raised`);
  }
}
