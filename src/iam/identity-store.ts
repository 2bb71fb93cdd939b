/**
 * Persistence of identities: tenants (root accounts), sub-accounts, API keys and policy attachments,
 * behind one interface with two backends (SQLite, Redis) held to one conformance suite.
 *
 * Uins come from `allocateUin`, a counter shared by every handle, process and node on the same
 * backing: tenants from 100000000001, sub-accounts from 200000000001. Allocation is separate from
 * creation so the caller can bind the new uin into an API key's sealed secret before the one atomic
 * write that creates the account and its first key (a failed creation leaves a gap, never a reuse).
 *
 * The store holds API secrets only as the sealed bytes it is given, and never interprets them.
 */
import { IamInputError } from './errors';

export interface TenantRecord {
  uin: string;
  name: string;
  /** Unix seconds. */
  createdAt: number;
}

export interface UserRecord {
  uin: string;
  tenantUin: string;
  name: string;
  createdAt: number;
  /** MAC of the sub-account's whole set of policy attachments (see sealed-identity-store.ts); stored as given. */
  policiesMac?: Buffer;
  /** CAM's free-text remark and console-login flag (0 or 1): descriptive only, they grant nothing. */
  remark?: string;
  consoleLogin?: number;
}

/** What UpdateUser may change on a sub-account (absent: unchanged). */
export interface UserProfile {
  remark?: string;
  consoleLogin?: number;
}

/**
 * A tenant's own (CAM "Local") policy: a named document that attachments copy. The copy on each
 * sub-account is what is evaluated (and MACed); changing this record re-attaches the copies.
 */
export interface TenantPolicy {
  policyId: string;
  tenantUin: string;
  name: string;
  description: string;
  /** The document's JSON text, as parsed and normalised (policy.ts). */
  document: string;
  createdAt: number;
  updatedAt: number;
}

/**
 * The policy-set MAC written with an attachment change: `next` replaces the stored one, if the
 * stored one is still `expected` (null: none stored); otherwise IamConflictError and nothing is written.
 */
export interface PolicySetSeal {
  expected: Buffer | null;
  next: Buffer;
}

export type ApiKeyStatus = 'active' | 'disabled';

export interface ApiKeyRecord {
  secretId: string;
  /** The tenant's uin for a root account's key, else the sub-account's. */
  ownerUin: string;
  tenantUin: string;
  sealedSecret: Buffer;
  status: ApiKeyStatus;
  createdAt: number;
  /** MAC of the row (see sealed-identity-store.ts); stored as given, never interpreted here. */
  mac?: Buffer;
}

/** A new key; its owner is given by the call that stores it. Keys start active. */
export interface NewApiKey {
  secretId: string;
  sealedSecret: Buffer;
  createdAt: number;
  /** MAC of the row the key becomes (active); stored as given. */
  mac?: Buffer;
}

/** A preset attached by name (instantiated when evaluated), or a custom document's JSON text. */
export type PolicyBody = { kind: 'preset'; preset: string } | { kind: 'custom'; document: string };

export interface PolicyAttachment {
  /** Unique per principal. */
  name: string;
  body: PolicyBody;
  attachedAt: number;
  /** MAC of the attachment (see sealed-identity-store.ts); stored as given. */
  mac?: Buffer;
}

export interface NewTenant {
  uin: string;
  name: string;
  createdAt: number;
  apiKey?: NewApiKey;
}

export interface NewUser {
  uin: string;
  tenantUin: string;
  name: string;
  createdAt: number;
  apiKey?: NewApiKey;
  policies?: PolicyAttachment[];
  policiesMac?: Buffer;
  remark?: string;
  consoleLogin?: number;
}

/** `policy` numbers tenant policies (ids below its base are the presets'). */
export type UinKind = 'tenant' | 'user' | 'policy';

/** The counter base per kind: the first uin allocated is base + 1. */
export const UIN_BASE: Readonly<Record<UinKind, number>> = { tenant: 100_000_000_000, user: 200_000_000_000, policy: 100_000 };

export interface IdentityStore {
  /** A uin never handed out before on this backing (atomic across handles, processes and nodes). */
  allocateUin(kind: UinKind): Promise<string>;
  /** Creates the tenant and its first key in one write. AlreadyExists: name, uin or SecretId taken. */
  createTenant(tenant: NewTenant): Promise<TenantRecord>;
  getTenant(uin: string): Promise<TenantRecord | undefined>;
  /** Every tenant, by uin. */
  listTenants(): Promise<TenantRecord[]>;
  /** Creates the sub-account, its first key and policies in one write. NotFound: no such tenant; AlreadyExists: name in the tenant, uin or SecretId taken. */
  createUser(user: NewUser): Promise<UserRecord>;
  getUser(uin: string): Promise<UserRecord | undefined>;
  /** The tenant's sub-accounts, by uin. */
  listUsers(tenantUin: string): Promise<UserRecord[]>;
  /** Adds a key to a tenant (root key) or a sub-account. NotFound: no such owner; AlreadyExists: SecretId taken. */
  addApiKey(ownerUin: string, key: NewApiKey): Promise<ApiKeyRecord>;
  getApiKey(secretId: string): Promise<ApiKeyRecord | undefined>;
  /** The owner's keys, by creation time then SecretId. */
  listApiKeys(ownerUin: string): Promise<ApiKeyRecord[]>;
  /** NotFound: no such key. `mac` replaces the row's MAC in the same write (absent: the MAC is removed). */
  setApiKeyStatus(secretId: string, status: ApiKeyStatus, mac?: Buffer): Promise<void>;
  /** Replaces the key row's MAC only if it is still `expected` (rotate-domain's re-seal). NotFound; IamConflictError: the row changed. */
  resealApiKey(secretId: string, expected: Buffer, next: Buffer): Promise<void>;
  /** Attaches a policy to a sub-account, replacing one of the same name. NotFound: no such sub-account. */
  attachPolicy(userUin: string, attachment: PolicyAttachment, set?: PolicySetSeal): Promise<void>;
  /** NotFound: no policy of that name on that sub-account. */
  detachPolicy(userUin: string, name: string, set?: PolicySetSeal): Promise<void>;
  /** Replaces the sub-account's policy-set MAC (the start-up migration). NotFound: no such sub-account. */
  setPolicySetMac(userUin: string, set: PolicySetSeal): Promise<void>;
  /** The sub-account's policies, by name. */
  listPolicies(userUin: string): Promise<PolicyAttachment[]>;
  /** NotFound: no such sub-account. */
  updateUser(uin: string, profile: UserProfile): Promise<void>;
  /** Removes the sub-account with its API keys and policy attachments in one write. NotFound: no such sub-account. */
  deleteUser(uin: string): Promise<void>;
  /** NotFound: no such key. */
  deleteApiKey(secretId: string): Promise<void>;
  /** AlreadyExists: the tenant has a policy of that name (or the id is taken). NotFound: no such tenant. */
  createTenantPolicy(policy: TenantPolicy): Promise<void>;
  getTenantPolicy(tenantUin: string, policyId: string): Promise<TenantPolicy | undefined>;
  /** The tenant's policies, by id. */
  listTenantPolicies(tenantUin: string): Promise<TenantPolicy[]>;
  /** Replaces the stored policy of that id (its name may change). NotFound: no such policy; AlreadyExists: the new name is another's. */
  updateTenantPolicy(policy: TenantPolicy): Promise<void>;
  /** NotFound: no such policy. */
  deleteTenantPolicy(tenantUin: string, policyId: string): Promise<void>;
  /** A number every identity change made through IamService raises (caches of every process compare it). */
  changeGeneration(): Promise<number>;
  noteChange(): Promise<number>;
  /** Whether the one-time marker `name` was set on this backing (e.g. the authority-row migration). */
  hasMarker(name: string): Promise<boolean>;
  setMarker(name: string): Promise<void>;
  close(): Promise<void>;
}

// ---- input guards both backends apply (the service validates first; this is the store's own) ----

const UIN = /^[1-9]\d{0,18}$/;
const SECRET_ID = /^[A-Za-z0-9]{1,128}$/;

export function checkUin(uin: string, what = 'uin'): void {
  if (!UIN.test(uin)) throw new IamInputError(`${what} must be a decimal account number, not ${JSON.stringify(uin)}`);
}

function checkText(value: string, what: string, max: number): void {
  if (value.length === 0 || value.length > max || /[\u0000-\u001f\u007f]/.test(value)) {
    throw new IamInputError(`${what} must be 1 to ${max} characters without control characters`);
  }
}

const MARKER = /^[a-z0-9-]{1,64}$/;

export function checkMarker(name: string): void {
  if (!MARKER.test(name)) throw new IamInputError('a marker name is 1 to 64 of [a-z0-9-]');
}

export function checkApiKey(key: NewApiKey): void {
  if (!SECRET_ID.test(key.secretId)) throw new IamInputError('SecretId must be letters and digits');
  if (key.sealedSecret.length === 0) throw new IamInputError('sealed secret is empty');
}

export function checkAttachment(a: PolicyAttachment): void {
  checkText(a.name, 'policy name', 128);
  const body = a.body.kind === 'preset' ? a.body.preset : a.body.document;
  checkText(body, a.body.kind === 'preset' ? 'preset name' : 'policy document', 1 << 16);
}

export function checkNewTenant(t: NewTenant): void {
  checkUin(t.uin);
  checkText(t.name, 'tenant name', 64);
  if (t.apiKey) checkApiKey(t.apiKey);
}

/** CAM's limits: a remark of at most 255 characters, console login 0 or 1. */
export function checkProfile(p: UserProfile): void {
  if (p.remark !== undefined && (p.remark.length > 255 || /[\u0000-\u001f\u007f]/.test(p.remark)))
    throw new IamInputError('Remark must be at most 255 characters without control characters');
  if (p.consoleLogin !== undefined && p.consoleLogin !== 0 && p.consoleLogin !== 1) throw new IamInputError('ConsoleLogin must be 0 or 1');
}

export function checkTenantPolicy(p: TenantPolicy): void {
  checkUin(p.policyId, 'policy id');
  checkUin(p.tenantUin, 'tenant uin');
  checkText(p.name, 'policy name', 128);
  if (p.description.length > 300) throw new IamInputError('Description must be at most 300 characters');
  checkText(p.document, 'policy document', 1 << 16);
}

export function checkNewUser(u: NewUser): void {
  checkUin(u.uin);
  checkUin(u.tenantUin, 'tenant uin');
  checkText(u.name, 'sub-account name', 64);
  checkProfile(u);
  if (u.apiKey) checkApiKey(u.apiKey);
  const names = new Set<string>();
  for (const p of u.policies ?? []) {
    checkAttachment(p);
    if (names.has(p.name)) throw new IamInputError(`policy ${JSON.stringify(p.name)} is given twice`);
    names.add(p.name);
  }
}

/** The record a NewUser becomes (both backends return it from createUser). */
export function newUserRecord(u: NewUser): UserRecord {
  return {
    uin: u.uin,
    tenantUin: u.tenantUin,
    name: u.name,
    createdAt: u.createdAt,
    ...(u.policiesMac ? { policiesMac: u.policiesMac } : {}),
    ...(u.remark !== undefined ? { remark: u.remark } : {}),
    ...(u.consoleLogin !== undefined ? { consoleLogin: u.consoleLogin } : {}),
  };
}

export function keyRecord(ownerUin: string, tenantUin: string, key: NewApiKey): ApiKeyRecord {
  return {
    secretId: key.secretId,
    ownerUin,
    tenantUin,
    sealedSecret: key.sealedSecret,
    status: 'active',
    createdAt: key.createdAt,
    ...(key.mac ? { mac: key.mac } : {}),
  };
}

/** The AlreadyExists / NotFound messages, the same from both backends. */
export const messages = {
  tenantName: (name: string) => `a tenant named ${JSON.stringify(name)} already exists`,
  userName: (tenantUin: string, name: string) => `tenant ${tenantUin} already has a sub-account named ${JSON.stringify(name)}`,
  uin: (uin: string) => `uin ${uin} is already in use`,
  secretId: (secretId: string) => `API key ${secretId} already exists`,
  noTenant: (uin: string) => `tenant ${uin} does not exist`,
  noUser: (uin: string) => `sub-account ${uin} does not exist`,
  noOwner: (uin: string) => `account ${uin} does not exist`,
  noKey: (secretId: string) => `API key ${secretId} does not exist`,
  noPolicy: (uin: string, name: string) => `sub-account ${uin} has no policy named ${JSON.stringify(name)}`,
  policySetChanged: (uin: string) => `the policies of sub-account ${uin} changed concurrently`,
  keyChanged: (secretId: string) => `the row of API key ${secretId} changed concurrently`,
  policyName: (tenantUin: string, name: string) => `tenant ${tenantUin} already has a policy named ${JSON.stringify(name)}`,
  noTenantPolicy: (id: string) => `policy ${id} does not exist`,
};
