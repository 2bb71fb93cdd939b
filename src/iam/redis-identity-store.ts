/**
 * Redis backend of the identity store (ioredis), for several KMS nodes. Layout (uins are digits,
 * SecretIds letters and digits, so names need no escaping):
 *   kms:iam:seq:{tenant|user}    counter; uin = base + INCR
 *   kms:iam:tenant:{uin}         hash: name, createdAt
 *   kms:iam:tenant-names         hash: name -> uin (uniqueness)
 *   kms:iam:tenants              sorted set of tenant uins, scored by uin
 *   kms:iam:user:{uin}           hash: tenantUin, name, createdAt, policiesMac? (base64)
 *   kms:iam:users:{tenantUin}    hash: name -> uin (uniqueness within the tenant, listing)
 *   kms:iam:key:{secretId}       hash: ownerUin, tenantUin, sealed (base64), status, createdAt
 *   kms:iam:keys:{ownerUin}      set of SecretIds
 *   kms:iam:key:{secretId}       (also: mac (base64), the row's MAC, when set)
 *   kms:iam:policies:{userUin}   hash: policy name -> JSON { body, attachedAt, mac? (base64) }
 *   kms:iam:markers              hash: marker name -> 1 (one-time migrations)
 *   kms:iam:seq:policy           counter of tenant policy ids
 *   kms:iam:tpolicies:{tenantUin}  hash: policy id -> JSON TenantPolicy
 *   kms:iam:tpolicy-names:{tenantUin}  hash: policy name -> id (uniqueness within the tenant)
 *   kms:iam:generation           counter raised by every identity change (cache freshness)
 * (users also carry remark? and consoleLogin? in their hash)
 *
 * Every write is one Lua script (GUARDED_WRITE) that checks its preconditions (exists / absent /
 * field absent / field present) and then applies its writes, so a creation is all or nothing and
 * two nodes can never both take a name or a SecretId.
 * Refuses a server with neither AOF nor RDB persistence unless `allowVolatile` is set.
 */
import Redis from 'ioredis';
import { closeRedis, openRedis, RedisConnectionOptions, reportingUnavailable } from '../store/redis-client';
import { IamAlreadyExistsError, IamConfigError, IamConflictError, IamError, IamNotFoundError } from './errors';
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

export type RedisIdentityStoreOptions = RedisConnectionOptions;

const K = {
  seq: (kind: UinKind) => `kms:iam:seq:${kind}`,
  tenant: (uin: string) => `kms:iam:tenant:${uin}`,
  tenantNames: 'kms:iam:tenant-names',
  tenants: 'kms:iam:tenants',
  user: (uin: string) => `kms:iam:user:${uin}`,
  users: (tenantUin: string) => `kms:iam:users:${tenantUin}`,
  key: (secretId: string) => `kms:iam:key:${secretId}`,
  keys: (ownerUin: string) => `kms:iam:keys:${ownerUin}`,
  policies: (userUin: string) => `kms:iam:policies:${userUin}`,
  markers: 'kms:iam:markers',
  tenantPolicies: (tenantUin: string) => `kms:iam:tpolicies:${tenantUin}`,
  policyNames: (tenantUin: string) => `kms:iam:tpolicy-names:${tenantUin}`,
  generation: 'kms:iam:generation',
};

// KEYS: every key the plan names. ARGV[1]: {"c": [[keyIndex, op, field?]...], "w": [[command, keyIndex, [args...]]...]}.
// Returns the 1-based index of the first check that fails (nothing written), or 0 once every write is done.
const GUARDED_WRITE = `
local plan = cjson.decode(ARGV[1])
for i, c in ipairs(plan.c) do
  local k, op, ok = KEYS[c[1]], c[2], false
  if op == 'exists' then ok = redis.call('EXISTS', k) == 1
  elseif op == 'absent' then ok = redis.call('EXISTS', k) == 0
  elseif op == 'field-absent' then ok = redis.call('HEXISTS', k, c[3]) == 0
  elseif op == 'field-present' then ok = redis.call('HEXISTS', k, c[3]) == 1
  elseif op == 'field-equals' then ok = redis.call('HGET', k, c[3]) == c[4] end
  if not ok then return i end
end
local allowed = { HSET = true, HDEL = true, ZADD = true, SADD = true, SREM = true, DEL = true }
for _, w in ipairs(plan.w) do
  if not allowed[w[1]] then return redis.error_reply('GUARDED_WRITE: command not allowed') end
  redis.call(w[1], KEYS[w[2]], unpack(w[3]))
end
return 0`;

type CheckOp = 'exists' | 'absent' | 'field-absent' | 'field-present' | 'field-equals';
type WriteCommand = 'HSET' | 'HDEL' | 'ZADD' | 'SADD' | 'SREM' | 'DEL';

/** The preconditions and writes of one atomic change; each check carries the error its failure means. */
class Plan {
  private readonly keys: string[] = [];
  private readonly checks: Array<[number, CheckOp, string?, string?]> = [];
  private readonly errors: IamError[] = [];
  private readonly writes: Array<[WriteCommand, number, string[]]> = [];

  check(key: string, op: CheckOp, error: IamError, field?: string, value?: string): this {
    this.checks.push(field === undefined ? [this.index(key), op] : value === undefined ? [this.index(key), op, field] : [this.index(key), op, field, value]);
    this.errors.push(error);
    return this;
  }

  write(command: WriteCommand, key: string, ...args: string[]): this {
    this.writes.push([command, this.index(key), args]);
    return this;
  }

  async run(redis: Redis): Promise<void> {
    const failed = Number(await redis.eval(GUARDED_WRITE, this.keys.length, ...this.keys, JSON.stringify({ c: this.checks, w: this.writes })));
    if (failed > 0) throw this.errors[failed - 1];
  }

  private index(key: string): number {
    const i = this.keys.indexOf(key);
    if (i >= 0) return i + 1;
    return this.keys.push(key);
  }
}

/** Checks that `uin` names no account yet. */
function uinFree(plan: Plan, uin: string): Plan {
  const taken = new IamAlreadyExistsError(messages.uin(uin));
  return plan.check(K.tenant(uin), 'absent', taken).check(K.user(uin), 'absent', taken);
}

function addKey(plan: Plan, k: ApiKeyRecord): Plan {
  return plan
    .check(K.key(k.secretId), 'absent', new IamAlreadyExistsError(messages.secretId(k.secretId)))
    .write(
      'HSET',
      K.key(k.secretId),
      'ownerUin',
      k.ownerUin,
      'tenantUin',
      k.tenantUin,
      'sealed',
      k.sealedSecret.toString('base64'),
      'status',
      k.status,
      'createdAt',
      String(k.createdAt),
      ...(k.mac ? ['mac', k.mac.toString('base64')] : []),
    )
    .write('SADD', K.keys(k.ownerUin), k.secretId);
}

function addPolicy(plan: Plan, userUin: string, p: PolicyAttachment): Plan {
  const mac = p.mac ? { mac: p.mac.toString('base64') } : {};
  return plan.write('HSET', K.policies(userUin), p.name, JSON.stringify({ body: p.body, attachedAt: p.attachedAt, ...mac }));
}

function policyOf(name: string, json: string): PolicyAttachment {
  const { body, attachedAt, mac } = JSON.parse(json) as { body: PolicyAttachment['body']; attachedAt: number; mac?: string };
  return { name, body, attachedAt, ...(typeof mac === 'string' ? { mac: Buffer.from(mac, 'base64') } : {}) };
}

type Hash = Record<string, string>;
const present = (h: Hash): boolean => Object.keys(h).length > 0;
const tenantOf = (uin: string, h: Hash): TenantRecord => ({ uin, name: h.name, createdAt: Number(h.createdAt) });
const userOf = (uin: string, h: Hash): UserRecord => ({
  uin,
  tenantUin: h.tenantUin,
  name: h.name,
  createdAt: Number(h.createdAt),
  ...(h.policiesMac !== undefined ? { policiesMac: Buffer.from(h.policiesMac, 'base64') } : {}),
  ...(h.remark !== undefined ? { remark: h.remark } : {}),
  ...(h.consoleLogin !== undefined ? { consoleLogin: Number(h.consoleLogin) } : {}),
});
const profileFields = (p: UserProfile): string[] => [
  ...(p.remark !== undefined ? ['remark', p.remark] : []),
  ...(p.consoleLogin !== undefined ? ['consoleLogin', String(p.consoleLogin)] : []),
];

/** Compare-and-set of a sub-account's policy-set MAC, in the same script as the attachment change. */
function policySet(plan: Plan, userUin: string, set: PolicySetSeal | undefined): Plan {
  if (!set) return plan;
  const changed = new IamConflictError(messages.policySetChanged(userUin));
  if (set.expected === null) plan.check(K.user(userUin), 'field-absent', changed, 'policiesMac');
  else plan.check(K.user(userUin), 'field-equals', changed, 'policiesMac', set.expected.toString('base64'));
  return plan.write('HSET', K.user(userUin), 'policiesMac', set.next.toString('base64'));
}
function tenantPolicyOf(json: string): TenantPolicy {
  const p = JSON.parse(json) as TenantPolicy;
  return {
    policyId: p.policyId,
    tenantUin: p.tenantUin,
    name: p.name,
    description: p.description,
    document: p.document,
    createdAt: p.createdAt,
    updatedAt: p.updatedAt,
  };
}
const keyOf = (secretId: string, h: Hash): ApiKeyRecord => ({
  secretId,
  ownerUin: h.ownerUin,
  tenantUin: h.tenantUin,
  sealedSecret: Buffer.from(h.sealed, 'base64'),
  status: h.status as ApiKeyStatus,
  createdAt: Number(h.createdAt),
  ...(h.mac !== undefined ? { mac: Buffer.from(h.mac, 'base64') } : {}),
});
const byUin = (a: { uin: string }, b: { uin: string }): number => a.uin.length - b.uin.length || (a.uin < b.uin ? -1 : a.uin > b.uin ? 1 : 0);

export class RedisIdentityStore implements IdentityStore {
  private constructor(private readonly redis: Redis) {}

  static async open(options: RedisIdentityStoreOptions): Promise<RedisIdentityStore> {
    return reportingUnavailable(new RedisIdentityStore(await openRedis(options, { keeps: 'accounts and API keys', refuse: (m) => new IamConfigError(m) })));
  }

  async allocateUin(kind: UinKind): Promise<string> {
    return String(UIN_BASE[kind] + (await this.redis.incr(K.seq(kind))));
  }

  async createTenant(t: NewTenant): Promise<TenantRecord> {
    checkNewTenant(t);
    const plan = uinFree(new Plan(), t.uin)
      .check(K.tenantNames, 'field-absent', new IamAlreadyExistsError(messages.tenantName(t.name)), t.name)
      .write('HSET', K.tenant(t.uin), 'name', t.name, 'createdAt', String(t.createdAt))
      .write('HSET', K.tenantNames, t.name, t.uin)
      .write('ZADD', K.tenants, t.uin, t.uin);
    if (t.apiKey) addKey(plan, keyRecord(t.uin, t.uin, t.apiKey));
    await plan.run(this.redis);
    return { uin: t.uin, name: t.name, createdAt: t.createdAt };
  }

  async getTenant(uin: string): Promise<TenantRecord | undefined> {
    const h = await this.redis.hgetall(K.tenant(uin));
    return present(h) ? tenantOf(uin, h) : undefined;
  }

  async listTenants(): Promise<TenantRecord[]> {
    const uins = await this.redis.zrange(K.tenants, '0', '-1');
    return (await this.hashes(uins, K.tenant)).map(([uin, h]) => tenantOf(uin, h)).sort(byUin);
  }

  async createUser(u: NewUser): Promise<UserRecord> {
    checkNewUser(u);
    const plan = new Plan()
      .check(K.tenant(u.tenantUin), 'exists', new IamNotFoundError(messages.noTenant(u.tenantUin)))
      .check(K.users(u.tenantUin), 'field-absent', new IamAlreadyExistsError(messages.userName(u.tenantUin, u.name)), u.name);
    uinFree(plan, u.uin)
      .write(
        'HSET',
        K.user(u.uin),
        'tenantUin',
        u.tenantUin,
        'name',
        u.name,
        'createdAt',
        String(u.createdAt),
        ...(u.policiesMac ? ['policiesMac', u.policiesMac.toString('base64')] : []),
        ...profileFields(u),
      )
      .write('HSET', K.users(u.tenantUin), u.name, u.uin);
    if (u.apiKey) addKey(plan, keyRecord(u.uin, u.tenantUin, u.apiKey));
    for (const p of u.policies ?? []) addPolicy(plan, u.uin, p);
    await plan.run(this.redis);
    return newUserRecord(u);
  }

  async updateUser(uin: string, profile: UserProfile): Promise<void> {
    checkProfile(profile);
    const plan = new Plan().check(K.user(uin), 'exists', new IamNotFoundError(messages.noUser(uin)));
    const fields = profileFields(profile);
    if (fields.length > 0) plan.write('HSET', K.user(uin), ...fields);
    await plan.run(this.redis);
  }

  /** A key added while this runs would be left without its owner: such a key resolves to no principal (refused). */
  async deleteUser(uin: string): Promise<void> {
    const user = await this.getUser(uin);
    const noUser = new IamNotFoundError(messages.noUser(uin));
    if (!user) throw noUser;
    const plan = new Plan()
      .check(K.users(user.tenantUin), 'field-equals', noUser, user.name, uin)
      .write('HDEL', K.users(user.tenantUin), user.name)
      .write('DEL', K.user(uin))
      .write('DEL', K.policies(uin));
    for (const id of await this.redis.smembers(K.keys(uin))) plan.write('DEL', K.key(id));
    await plan.write('DEL', K.keys(uin)).run(this.redis);
  }

  async deleteApiKey(secretId: string): Promise<void> {
    const key = await this.getApiKey(secretId);
    const noKey = new IamNotFoundError(messages.noKey(secretId));
    if (!key) throw noKey;
    await new Plan().check(K.key(secretId), 'exists', noKey).write('DEL', K.key(secretId)).write('SREM', K.keys(key.ownerUin), secretId).run(this.redis);
  }

  async createTenantPolicy(p: TenantPolicy): Promise<void> {
    checkTenantPolicy(p);
    await new Plan()
      .check(K.tenant(p.tenantUin), 'exists', new IamNotFoundError(messages.noTenant(p.tenantUin)))
      .check(K.policyNames(p.tenantUin), 'field-absent', new IamAlreadyExistsError(messages.policyName(p.tenantUin, p.name)), p.name)
      .check(K.tenantPolicies(p.tenantUin), 'field-absent', new IamAlreadyExistsError(messages.uin(p.policyId)), p.policyId)
      .write('HSET', K.tenantPolicies(p.tenantUin), p.policyId, JSON.stringify(p))
      .write('HSET', K.policyNames(p.tenantUin), p.name, p.policyId)
      .run(this.redis);
  }

  async getTenantPolicy(tenantUin: string, policyId: string): Promise<TenantPolicy | undefined> {
    const json = await this.redis.hget(K.tenantPolicies(tenantUin), policyId);
    return json === null ? undefined : tenantPolicyOf(json);
  }

  async listTenantPolicies(tenantUin: string): Promise<TenantPolicy[]> {
    const all = await this.redis.hvals(K.tenantPolicies(tenantUin));
    return all.map(tenantPolicyOf).sort((a, b) => byUin({ uin: a.policyId }, { uin: b.policyId }));
  }

  async updateTenantPolicy(p: TenantPolicy): Promise<void> {
    checkTenantPolicy(p);
    const current = await this.getTenantPolicy(p.tenantUin, p.policyId);
    const missing = new IamNotFoundError(messages.noTenantPolicy(p.policyId));
    if (!current) throw missing;
    const plan = new Plan().check(K.policyNames(p.tenantUin), 'field-equals', missing, current.name, p.policyId);
    if (current.name !== p.name) {
      plan
        .check(K.policyNames(p.tenantUin), 'field-absent', new IamAlreadyExistsError(messages.policyName(p.tenantUin, p.name)), p.name)
        .write('HDEL', K.policyNames(p.tenantUin), current.name)
        .write('HSET', K.policyNames(p.tenantUin), p.name, p.policyId);
    }
    await plan.write('HSET', K.tenantPolicies(p.tenantUin), p.policyId, JSON.stringify(p)).run(this.redis);
  }

  async deleteTenantPolicy(tenantUin: string, policyId: string): Promise<void> {
    const current = await this.getTenantPolicy(tenantUin, policyId);
    const missing = new IamNotFoundError(messages.noTenantPolicy(policyId));
    if (!current) throw missing;
    await new Plan()
      .check(K.policyNames(tenantUin), 'field-equals', missing, current.name, policyId)
      .write('HDEL', K.policyNames(tenantUin), current.name)
      .write('HDEL', K.tenantPolicies(tenantUin), policyId)
      .run(this.redis);
  }

  async changeGeneration(): Promise<number> {
    return Number((await this.redis.get(K.generation)) ?? 0);
  }

  async noteChange(): Promise<number> {
    return this.redis.incr(K.generation);
  }

  async getUser(uin: string): Promise<UserRecord | undefined> {
    const h = await this.redis.hgetall(K.user(uin));
    return present(h) ? userOf(uin, h) : undefined;
  }

  async listUsers(tenantUin: string): Promise<UserRecord[]> {
    const uins = await this.redis.hvals(K.users(tenantUin));
    return (await this.hashes(uins, K.user)).map(([uin, h]) => userOf(uin, h)).sort(byUin);
  }

  async addApiKey(ownerUin: string, key: NewApiKey): Promise<ApiKeyRecord> {
    checkUin(ownerUin, 'owner uin');
    checkApiKey(key);
    const isTenant = (await this.redis.exists(K.tenant(ownerUin))) === 1;
    const tenantUin = isTenant ? ownerUin : await this.redis.hget(K.user(ownerUin), 'tenantUin');
    const noOwner = new IamNotFoundError(messages.noOwner(ownerUin));
    if (tenantUin === null) throw noOwner;
    const record = keyRecord(ownerUin, tenantUin, key);
    await addKey(new Plan().check(isTenant ? K.tenant(ownerUin) : K.user(ownerUin), 'exists', noOwner), record).run(this.redis);
    return record;
  }

  async getApiKey(secretId: string): Promise<ApiKeyRecord | undefined> {
    const h = await this.redis.hgetall(K.key(secretId));
    return present(h) ? keyOf(secretId, h) : undefined;
  }

  async listApiKeys(ownerUin: string): Promise<ApiKeyRecord[]> {
    const ids = await this.redis.smembers(K.keys(ownerUin));
    const keys = (await this.hashes(ids, K.key)).map(([id, h]) => keyOf(id, h)).filter((k) => k.ownerUin === ownerUin);
    return keys.sort((a, b) => a.createdAt - b.createdAt || (a.secretId < b.secretId ? -1 : 1));
  }

  async setApiKeyStatus(secretId: string, status: ApiKeyStatus, mac?: Buffer): Promise<void> {
    const plan = new Plan().check(K.key(secretId), 'exists', new IamNotFoundError(messages.noKey(secretId)));
    if (mac) plan.write('HSET', K.key(secretId), 'status', status, 'mac', mac.toString('base64'));
    else plan.write('HSET', K.key(secretId), 'status', status).write('HDEL', K.key(secretId), 'mac');
    await plan.run(this.redis);
  }

  async resealApiKey(secretId: string, expected: Buffer, next: Buffer): Promise<void> {
    await new Plan()
      .check(K.key(secretId), 'exists', new IamNotFoundError(messages.noKey(secretId)))
      .check(K.key(secretId), 'field-equals', new IamConflictError(messages.keyChanged(secretId)), 'mac', expected.toString('base64'))
      .write('HSET', K.key(secretId), 'mac', next.toString('base64'))
      .run(this.redis);
  }

  async attachPolicy(userUin: string, attachment: PolicyAttachment, set?: PolicySetSeal): Promise<void> {
    checkAttachment(attachment);
    const plan = new Plan().check(K.user(userUin), 'exists', new IamNotFoundError(messages.noUser(userUin)));
    await addPolicy(policySet(plan, userUin, set), userUin, attachment).run(this.redis);
  }

  async detachPolicy(userUin: string, name: string, set?: PolicySetSeal): Promise<void> {
    const plan = new Plan()
      .check(K.policies(userUin), 'field-present', new IamNotFoundError(messages.noPolicy(userUin, name)), name)
      .write('HDEL', K.policies(userUin), name);
    await policySet(plan, userUin, set).run(this.redis);
  }

  async setPolicySetMac(userUin: string, set: PolicySetSeal): Promise<void> {
    const plan = new Plan().check(K.user(userUin), 'exists', new IamNotFoundError(messages.noUser(userUin)));
    await policySet(plan, userUin, set).run(this.redis);
  }

  async listPolicies(userUin: string): Promise<PolicyAttachment[]> {
    const all = await this.redis.hgetall(K.policies(userUin));
    return Object.entries(all)
      .map(([name, json]) => policyOf(name, json))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async hasMarker(name: string): Promise<boolean> {
    checkMarker(name);
    return (await this.redis.hexists(K.markers, name)) === 1;
  }

  async setMarker(name: string): Promise<void> {
    checkMarker(name);
    await this.redis.hset(K.markers, name, '1');
  }

  async close(): Promise<void> {
    await closeRedis(this.redis);
  }

  /** The hash of each id (named by `name`) in one round trip, as [id, hash]; absent hashes are left out. */
  private async hashes(ids: string[], name: (id: string) => string): Promise<Array<[string, Hash]>> {
    if (ids.length === 0) return [];
    const results = (await ids.reduce((p, id) => p.hgetall(name(id)), this.redis.pipeline()).exec()) ?? [];
    return results.flatMap(([err, h], i): Array<[string, Hash]> => {
      if (err) throw err;
      return present(h as Hash) ? [[ids[i], h as Hash]] : [];
    });
  }
}
