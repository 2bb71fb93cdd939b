/**
 * SQLite backend of the identity store (better-sqlite3, WAL). It may share the key store's database
 * file: its tables are its own (`iam_` prefix) and its schema number lives in `iam_meta`, not in
 * `PRAGMA user_version`, which belongs to the key store. Every write is one IMMEDIATE transaction,
 * so handles and processes sharing the file allocate distinct uins and see each other's writes.
 * This connection runs with synchronous=FULL: identity writes are rare, and a key pair handed out
 * must survive a power cut (the key store's connection keeps its own setting).
 */
import Database from 'better-sqlite3';
import { IamAlreadyExistsError, IamConfigError, IamConflictError, IamNotFoundError } from './errors';
import {
  ApiKeyRecord,
  ApiKeyStatus,
  IdentityStore,
  NewApiKey,
  NewTenant,
  NewUser,
  PolicyAttachment,
  PolicyBody,
  PolicySetSeal,
  TenantPolicy,
  TenantRecord,
  UIN_BASE,
  UinKind,
  UserProfile,
  UserRecord,
  checkApiKey,
  checkProfile,
  checkTenantPolicy,
  newUserRecord,
  checkAttachment,
  checkMarker,
  checkNewTenant,
  checkNewUser,
  checkUin,
  keyRecord,
  messages,
} from './identity-store';

const SCHEMA_VERSION = 3;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS iam_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS iam_tenants (
  uin TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS iam_users (
  uin TEXT PRIMARY KEY, tenant_uin TEXT NOT NULL REFERENCES iam_tenants(uin), name TEXT NOT NULL, created_at INTEGER NOT NULL,
  policies_mac BLOB, UNIQUE (tenant_uin, name));
CREATE TABLE IF NOT EXISTS iam_api_keys (
  secret_id TEXT PRIMARY KEY, owner_uin TEXT NOT NULL, tenant_uin TEXT NOT NULL, sealed BLOB NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active', 'disabled')), created_at INTEGER NOT NULL, mac BLOB);
CREATE INDEX IF NOT EXISTS iam_api_keys_owner ON iam_api_keys (owner_uin, created_at);
CREATE TABLE IF NOT EXISTS iam_policies (
  user_uin TEXT NOT NULL REFERENCES iam_users(uin), name TEXT NOT NULL, preset TEXT, document TEXT, attached_at INTEGER NOT NULL, mac BLOB,
  PRIMARY KEY (user_uin, name), CHECK ((preset IS NULL) <> (document IS NULL)));
CREATE TABLE IF NOT EXISTS iam_tenant_policies (
  policy_id TEXT PRIMARY KEY, tenant_uin TEXT NOT NULL REFERENCES iam_tenants(uin), name TEXT NOT NULL, description TEXT NOT NULL,
  document TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, UNIQUE (tenant_uin, name));
INSERT OR IGNORE INTO iam_meta VALUES ('seq:tenant', ${UIN_BASE.tenant}), ('seq:user', ${UIN_BASE.user}), ('seq:policy', ${UIN_BASE.policy}),
  ('generation', 0);
`;

interface TenantRow {
  uin: string;
  name: string;
  created_at: number;
}
interface UserRow {
  uin: string;
  tenant_uin: string;
  name: string;
  created_at: number;
  policies_mac: Buffer | null;
  remark: string | null;
  console_login: number | null;
}
interface TenantPolicyRow {
  policy_id: string;
  tenant_uin: string;
  name: string;
  description: string;
  document: string;
  created_at: number;
  updated_at: number;
}
interface KeyRow {
  secret_id: string;
  owner_uin: string;
  tenant_uin: string;
  sealed: Buffer;
  status: ApiKeyStatus;
  created_at: number;
  mac: Buffer | null;
}
interface PolicyRow {
  name: string;
  preset: string | null;
  document: string | null;
  attached_at: number;
  mac: Buffer | null;
}

/** Schema 1 had no row MACs, schema 2 no CAM profile: the columns are added (empty) when such a file is opened. */
const ADDED_COLUMNS: ReadonlyArray<readonly [string, string, string]> = [
  ['iam_api_keys', 'mac', 'BLOB'],
  ['iam_policies', 'mac', 'BLOB'],
  ['iam_users', 'policies_mac', 'BLOB'],
  ['iam_users', 'remark', 'TEXT'],
  ['iam_users', 'console_login', 'INTEGER'],
];
const withMac = (mac: Buffer | null): { mac?: Buffer } => (mac === null ? {} : { mac: Buffer.from(mac) });

const tenantOf = (r: TenantRow): TenantRecord => ({ uin: r.uin, name: r.name, createdAt: r.created_at });
const userOf = (r: UserRow): UserRecord => ({
  uin: r.uin,
  tenantUin: r.tenant_uin,
  name: r.name,
  createdAt: r.created_at,
  ...(r.policies_mac === null ? {} : { policiesMac: Buffer.from(r.policies_mac) }),
  ...(r.remark === null ? {} : { remark: r.remark }),
  ...(r.console_login === null ? {} : { consoleLogin: r.console_login }),
});
const tenantPolicyOf = (r: TenantPolicyRow): TenantPolicy => ({
  policyId: r.policy_id,
  tenantUin: r.tenant_uin,
  name: r.name,
  description: r.description,
  document: r.document,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});
const keyOf = (r: KeyRow): ApiKeyRecord => ({
  secretId: r.secret_id,
  ownerUin: r.owner_uin,
  tenantUin: r.tenant_uin,
  sealedSecret: Buffer.from(r.sealed),
  status: r.status,
  createdAt: r.created_at,
  ...withMac(r.mac),
});

function policyOf(r: PolicyRow): PolicyAttachment {
  const body: PolicyBody = r.preset !== null ? { kind: 'preset', preset: r.preset } : { kind: 'custom', document: r.document ?? '' };
  return { name: r.name, body, attachedAt: r.attached_at, ...withMac(r.mac) };
}

export interface SqliteIdentityStoreOptions {
  /** How long to wait for another process's write lock; default 5000 ms. */
  busyTimeoutMs?: number;
}

export class SqliteIdentityStore implements IdentityStore {
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();

  constructor(file: string, options: SqliteIdentityStoreOptions = {}) {
    this.db = new Database(file);
    try {
      this.init(options);
    } catch (e) {
      this.db.close();
      throw e;
    }
  }

  async allocateUin(kind: UinKind): Promise<string> {
    const row = this.write(() => this.stmt('UPDATE iam_meta SET value = value + 1 WHERE name = ? RETURNING value').get(`seq:${kind}`));
    return String((row as { value: number }).value);
  }

  async createTenant(t: NewTenant): Promise<TenantRecord> {
    checkNewTenant(t);
    return this.write(() => {
      if (this.stmt('SELECT 1 FROM iam_tenants WHERE name = ?').get(t.name)) throw new IamAlreadyExistsError(messages.tenantName(t.name));
      this.checkUinFree(t.uin);
      this.stmt('INSERT INTO iam_tenants VALUES (?, ?, ?)').run(t.uin, t.name, t.createdAt);
      if (t.apiKey) this.insertKey(keyRecord(t.uin, t.uin, t.apiKey));
      return { uin: t.uin, name: t.name, createdAt: t.createdAt };
    });
  }

  async getTenant(uin: string): Promise<TenantRecord | undefined> {
    return this.one('SELECT * FROM iam_tenants WHERE uin = ?', tenantOf, uin);
  }

  async listTenants(): Promise<TenantRecord[]> {
    return this.all('SELECT * FROM iam_tenants ORDER BY length(uin), uin', tenantOf);
  }

  async createUser(u: NewUser): Promise<UserRecord> {
    checkNewUser(u);
    return this.write(() => {
      if (!this.stmt('SELECT 1 FROM iam_tenants WHERE uin = ?').get(u.tenantUin)) throw new IamNotFoundError(messages.noTenant(u.tenantUin));
      if (this.stmt('SELECT 1 FROM iam_users WHERE tenant_uin = ? AND name = ?').get(u.tenantUin, u.name)) {
        throw new IamAlreadyExistsError(messages.userName(u.tenantUin, u.name));
      }
      this.checkUinFree(u.uin);
      this.stmt('INSERT INTO iam_users (uin, tenant_uin, name, created_at, policies_mac, remark, console_login) VALUES (?, ?, ?, ?, ?, ?, ?)').run(
        u.uin,
        u.tenantUin,
        u.name,
        u.createdAt,
        u.policiesMac ?? null,
        u.remark ?? null,
        u.consoleLogin ?? null,
      );
      if (u.apiKey) this.insertKey(keyRecord(u.uin, u.tenantUin, u.apiKey));
      for (const p of u.policies ?? []) this.upsertPolicy(u.uin, p);
      return newUserRecord(u);
    });
  }

  async updateUser(uin: string, profile: UserProfile): Promise<void> {
    checkProfile(profile);
    const { changes } = this.write(() =>
      this.stmt('UPDATE iam_users SET remark = coalesce(?, remark), console_login = coalesce(?, console_login) WHERE uin = ?').run(
        profile.remark ?? null,
        profile.consoleLogin ?? null,
        uin,
      ),
    );
    if (changes === 0) throw new IamNotFoundError(messages.noUser(uin));
  }

  async deleteUser(uin: string): Promise<void> {
    this.write(() => {
      this.stmt('DELETE FROM iam_policies WHERE user_uin = ?').run(uin);
      this.stmt('DELETE FROM iam_api_keys WHERE owner_uin = ?').run(uin);
      if (this.stmt('DELETE FROM iam_users WHERE uin = ?').run(uin).changes === 0) throw new IamNotFoundError(messages.noUser(uin));
    });
  }

  async deleteApiKey(secretId: string): Promise<void> {
    const { changes } = this.write(() => this.stmt('DELETE FROM iam_api_keys WHERE secret_id = ?').run(secretId));
    if (changes === 0) throw new IamNotFoundError(messages.noKey(secretId));
  }

  async createTenantPolicy(p: TenantPolicy): Promise<void> {
    checkTenantPolicy(p);
    this.write(() => {
      if (!this.stmt('SELECT 1 FROM iam_tenants WHERE uin = ?').get(p.tenantUin)) throw new IamNotFoundError(messages.noTenant(p.tenantUin));
      this.checkPolicyNameFree(p);
      if (this.stmt('SELECT 1 FROM iam_tenant_policies WHERE policy_id = ?').get(p.policyId)) throw new IamAlreadyExistsError(messages.uin(p.policyId));
      this.stmt('INSERT INTO iam_tenant_policies VALUES (?, ?, ?, ?, ?, ?, ?)').run(
        p.policyId,
        p.tenantUin,
        p.name,
        p.description,
        p.document,
        p.createdAt,
        p.updatedAt,
      );
    });
  }

  async getTenantPolicy(tenantUin: string, policyId: string): Promise<TenantPolicy | undefined> {
    return this.one('SELECT * FROM iam_tenant_policies WHERE tenant_uin = ? AND policy_id = ?', tenantPolicyOf, tenantUin, policyId);
  }

  async listTenantPolicies(tenantUin: string): Promise<TenantPolicy[]> {
    return this.all('SELECT * FROM iam_tenant_policies WHERE tenant_uin = ? ORDER BY length(policy_id), policy_id', tenantPolicyOf, tenantUin);
  }

  async updateTenantPolicy(p: TenantPolicy): Promise<void> {
    checkTenantPolicy(p);
    this.write(() => {
      this.checkPolicyNameFree(p);
      const { changes } = this.stmt(
        'UPDATE iam_tenant_policies SET name = ?, description = ?, document = ?, updated_at = ? WHERE tenant_uin = ? AND policy_id = ?',
      ).run(p.name, p.description, p.document, p.updatedAt, p.tenantUin, p.policyId);
      if (changes === 0) throw new IamNotFoundError(messages.noTenantPolicy(p.policyId));
    });
  }

  async deleteTenantPolicy(tenantUin: string, policyId: string): Promise<void> {
    const { changes } = this.write(() => this.stmt('DELETE FROM iam_tenant_policies WHERE tenant_uin = ? AND policy_id = ?').run(tenantUin, policyId));
    if (changes === 0) throw new IamNotFoundError(messages.noTenantPolicy(policyId));
  }

  async changeGeneration(): Promise<number> {
    return (this.stmt("SELECT value FROM iam_meta WHERE name = 'generation'").get() as { value: number } | undefined)?.value ?? 0;
  }

  async noteChange(): Promise<number> {
    const row = this.write(() => this.stmt("UPDATE iam_meta SET value = value + 1 WHERE name = 'generation' RETURNING value").get());
    return (row as { value: number }).value;
  }

  async getUser(uin: string): Promise<UserRecord | undefined> {
    return this.one('SELECT * FROM iam_users WHERE uin = ?', userOf, uin);
  }

  async listUsers(tenantUin: string): Promise<UserRecord[]> {
    return this.all('SELECT * FROM iam_users WHERE tenant_uin = ? ORDER BY length(uin), uin', userOf, tenantUin);
  }

  async addApiKey(ownerUin: string, key: NewApiKey): Promise<ApiKeyRecord> {
    checkUin(ownerUin, 'owner uin');
    checkApiKey(key);
    return this.write(() => {
      const tenant = this.stmt('SELECT uin FROM iam_tenants WHERE uin = ? UNION ALL SELECT tenant_uin FROM iam_users WHERE uin = ?').get(ownerUin, ownerUin) as
        { uin: string } | undefined;
      if (!tenant) throw new IamNotFoundError(messages.noOwner(ownerUin));
      const record = keyRecord(ownerUin, tenant.uin, key);
      this.insertKey(record);
      return record;
    });
  }

  async getApiKey(secretId: string): Promise<ApiKeyRecord | undefined> {
    return this.one('SELECT * FROM iam_api_keys WHERE secret_id = ?', keyOf, secretId);
  }

  async listApiKeys(ownerUin: string): Promise<ApiKeyRecord[]> {
    return this.all('SELECT * FROM iam_api_keys WHERE owner_uin = ? ORDER BY created_at, secret_id', keyOf, ownerUin);
  }

  async setApiKeyStatus(secretId: string, status: ApiKeyStatus, mac?: Buffer): Promise<void> {
    const { changes } = this.write(() => this.stmt('UPDATE iam_api_keys SET status = ?, mac = ? WHERE secret_id = ?').run(status, mac ?? null, secretId));
    if (changes === 0) throw new IamNotFoundError(messages.noKey(secretId));
  }

  async resealApiKey(secretId: string, expected: Buffer, next: Buffer): Promise<void> {
    this.write(() => {
      const { changes } = this.stmt('UPDATE iam_api_keys SET mac = ? WHERE secret_id = ? AND mac = ?').run(next, secretId, expected);
      if (changes > 0) return;
      if (!this.stmt('SELECT 1 FROM iam_api_keys WHERE secret_id = ?').get(secretId)) throw new IamNotFoundError(messages.noKey(secretId));
      throw new IamConflictError(messages.keyChanged(secretId));
    });
  }

  async attachPolicy(userUin: string, attachment: PolicyAttachment, set?: PolicySetSeal): Promise<void> {
    checkAttachment(attachment);
    this.write(() => {
      if (!this.stmt('SELECT 1 FROM iam_users WHERE uin = ?').get(userUin)) throw new IamNotFoundError(messages.noUser(userUin));
      if (set) this.replacePolicySetMac(userUin, set);
      this.upsertPolicy(userUin, attachment);
    });
  }

  async detachPolicy(userUin: string, name: string, set?: PolicySetSeal): Promise<void> {
    this.write(() => {
      const { changes } = this.stmt('DELETE FROM iam_policies WHERE user_uin = ? AND name = ?').run(userUin, name);
      if (changes === 0) throw new IamNotFoundError(messages.noPolicy(userUin, name));
      if (set) this.replacePolicySetMac(userUin, set);
    });
  }

  async setPolicySetMac(userUin: string, set: PolicySetSeal): Promise<void> {
    this.write(() => {
      if (!this.stmt('SELECT 1 FROM iam_users WHERE uin = ?').get(userUin)) throw new IamNotFoundError(messages.noUser(userUin));
      this.replacePolicySetMac(userUin, set);
    });
  }

  async listPolicies(userUin: string): Promise<PolicyAttachment[]> {
    return this.all('SELECT * FROM iam_policies WHERE user_uin = ? ORDER BY name', policyOf, userUin);
  }

  async hasMarker(name: string): Promise<boolean> {
    checkMarker(name);
    return this.stmt('SELECT 1 FROM iam_meta WHERE name = ?').get(`marker:${name}`) !== undefined;
  }

  async setMarker(name: string): Promise<void> {
    checkMarker(name);
    this.write(() => this.stmt('INSERT OR REPLACE INTO iam_meta VALUES (?, 1)').run(`marker:${name}`));
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private init(options: SqliteIdentityStoreOptions): void {
    this.db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db
      .transaction(() => {
        const hasMeta = this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'iam_meta'").get() !== undefined;
        const row = hasMeta ? (this.db.prepare("SELECT value FROM iam_meta WHERE name = 'schema'").get() as { value: number } | undefined) : undefined;
        if (row && row.value > SCHEMA_VERSION) {
          throw new IamConfigError(`identity schema ${row.value} is newer than this build's (${SCHEMA_VERSION}); upgrade the KMS`);
        }
        this.db.exec(SCHEMA);
        this.addColumns();
        this.db.prepare("INSERT OR REPLACE INTO iam_meta VALUES ('schema', ?)").run(SCHEMA_VERSION);
      })
      .immediate();
  }

  private addColumns(): void {
    for (const [table, column, type] of ADDED_COLUMNS) {
      const columns = this.db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>;
      if (!columns.some((c) => c.name === column)) this.db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
    }
  }

  /** Inside a write: no other policy of the tenant has `p`'s name. */
  private checkPolicyNameFree(p: TenantPolicy): void {
    const other = this.stmt('SELECT policy_id FROM iam_tenant_policies WHERE tenant_uin = ? AND name = ?').get(p.tenantUin, p.name) as
      { policy_id: string } | undefined;
    if (other && other.policy_id !== p.policyId) throw new IamAlreadyExistsError(messages.policyName(p.tenantUin, p.name));
  }

  /** The prepared statement of `sql` (a fixed set of texts, so the map stays small). */
  private stmt(sql: string): Database.Statement {
    const s = this.statements.get(sql) ?? this.db.prepare(sql);
    this.statements.set(sql, s);
    return s;
  }

  private one<R, T>(sql: string, map: (row: R) => T, ...params: string[]): T | undefined {
    const row = this.stmt(sql).get(...params) as R | undefined;
    return row && map(row);
  }

  private all<R, T>(sql: string, map: (row: R) => T, ...params: string[]): T[] {
    return (this.stmt(sql).all(...params) as R[]).map(map);
  }

  private write<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  private checkUinFree(uin: string): void {
    if (this.stmt('SELECT 1 FROM iam_tenants WHERE uin = ? UNION ALL SELECT 1 FROM iam_users WHERE uin = ?').get(uin, uin)) {
      throw new IamAlreadyExistsError(messages.uin(uin));
    }
  }

  private insertKey(k: ApiKeyRecord): void {
    if (this.stmt('SELECT 1 FROM iam_api_keys WHERE secret_id = ?').get(k.secretId)) throw new IamAlreadyExistsError(messages.secretId(k.secretId));
    this.stmt('INSERT INTO iam_api_keys (secret_id, owner_uin, tenant_uin, sealed, status, created_at, mac) VALUES (?, ?, ?, ?, ?, ?, ?)').run(
      k.secretId,
      k.ownerUin,
      k.tenantUin,
      k.sealedSecret,
      k.status,
      k.createdAt,
      k.mac ?? null,
    );
  }

  /** Inside a write: compare-and-set of the sub-account's policy-set MAC. */
  private replacePolicySetMac(userUin: string, set: PolicySetSeal): void {
    const row = this.stmt('SELECT policies_mac FROM iam_users WHERE uin = ?').get(userUin) as { policies_mac: Buffer | null } | undefined;
    const current = row?.policies_mac ?? null;
    const same = current === null || set.expected === null ? current === set.expected : Buffer.from(current).equals(set.expected);
    if (!same) throw new IamConflictError(messages.policySetChanged(userUin));
    this.stmt('UPDATE iam_users SET policies_mac = ? WHERE uin = ?').run(set.next, userUin);
  }

  private upsertPolicy(userUin: string, p: PolicyAttachment): void {
    const [preset, document] = p.body.kind === 'preset' ? [p.body.preset, null] : [null, p.body.document];
    this.stmt('INSERT OR REPLACE INTO iam_policies (user_uin, name, preset, document, attached_at, mac) VALUES (?, ?, ?, ?, ?, ?)').run(
      userUin,
      p.name,
      preset,
      document,
      p.attachedAt,
      p.mac ?? null,
    );
  }
}
