/**
 * One conformance suite for every IdentityStore backend, run on SQLite (temporary file) and Redis
 * (private redis-server). Uniqueness and atomicity are tested across several handles on the same
 * backing, and uin allocation across processes.
 */
import { execFile } from 'child_process';
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import Database from 'better-sqlite3';
import { IamAlreadyExistsError, IamConfigError, IamConflictError, IamInputError, IamNotFoundError } from '../../src/iam/errors';
import { IdentityStore, NewApiKey, PolicyAttachment } from '../../src/iam/identity-store';
import { RedisIdentityStore } from '../../src/iam/redis-identity-store';
import { SqliteIdentityStore } from '../../src/iam/sqlite-identity-store';
import { SqliteMetadataStore } from '../../src/store/sqlite/store';
import { rejection } from '../support/rejection';
import { IDENTITY_BACKENDS, IdentityBacking } from '../support/iam-backends';
import { startRedis } from '../support/redis';

const run = promisify(execFile);
const WORKER = path.join(__dirname, '..', 'support', 'iam-uin-worker.js');

let counter = 0;
function apiKey(over: Partial<NewApiKey> = {}): NewApiKey {
  counter++;
  return {
    secretId: `AKID${String(counter).padStart(32, '0')}`,
    sealedSecret: Buffer.from([0, 255, 1, 254, counter & 255, 0]),
    createdAt: 1_700_000_000 + counter,
    ...over,
  };
}
const preset = (name: string, p = 'QcloudKMSReadOnlyAccess'): PolicyAttachment => ({ name, body: { kind: 'preset', preset: p }, attachedAt: 1_700_000_100 });
const custom = (name: string, document = '{"version":"2.0","statement":[{"effect":"deny","action":"kms:Decrypt","resource":"*"}]}'): PolicyAttachment => ({
  name,
  body: { kind: 'custom', document },
  attachedAt: 1_700_000_200,
});

describe.each(IDENTITY_BACKENDS)('IdentityStore conformance: $name', (backend) => {
  let backing: IdentityBacking;
  let store: IdentityStore;
  const extra: IdentityStore[] = [];

  beforeEach(async () => {
    backing = await backend.setUp();
    store = await backing.open();
  });
  afterEach(async () => {
    for (const s of extra.splice(0)) await s.close();
    await store.close();
    await backing.tearDown();
  });
  async function openAnother(): Promise<IdentityStore> {
    const s = await backing.open();
    extra.push(s);
    return s;
  }
  async function tenant(name = `t${++counter}`, key?: NewApiKey): Promise<string> {
    const uin = await store.allocateUin('tenant');
    await store.createTenant({ uin, name, createdAt: 1_700_000_000, apiKey: key });
    return uin;
  }
  async function user(tenantUin: string, name = `u${++counter}`): Promise<string> {
    const uin = await store.allocateUin('user');
    await store.createUser({ uin, tenantUin, name, createdAt: 1_700_000_001 });
    return uin;
  }

  describe('uins', () => {
    test('tenants count from 100000000001, sub-accounts from 200000000001, each kind on its own', async () => {
      expect(await store.allocateUin('tenant')).toBe('100000000001');
      expect(await store.allocateUin('user')).toBe('200000000001');
      expect(await store.allocateUin('tenant')).toBe('100000000002');
      expect(await store.allocateUin('user')).toBe('200000000002');
    });

    test('handles on one backing never hand out the same uin', async () => {
      const other = await openAnother();
      const all = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? store : other).allocateUin('user')));
      expect(all.map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => 200_000_000_001 + i));
    });

    test('processes on one backing never hand out the same uin', async () => {
      const children = [1, 2, 3].map(() => run(process.execPath, [WORKER, JSON.stringify(backing.spec), '150', 'tenant']));
      const here = Promise.all(Array.from({ length: 50 }, () => store.allocateUin('tenant')));
      const results = await Promise.all(children);
      const all = [...results.flatMap((r) => JSON.parse(r.stdout) as string[]), ...(await here)];
      expect(all).toHaveLength(500);
      expect(new Set(all).size).toBe(500);
      expect(all.map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: 500 }, (_, i) => 100_000_000_001 + i));
    });

    test('uins survive a reopen: the counter continues', async () => {
      await store.allocateUin('tenant');
      await store.close();
      store = await backing.open();
      expect(await store.allocateUin('tenant')).toBe('100000000002');
    });
  });

  describe('tenants', () => {
    test('create, get, list by uin; the first API key is stored with it', async () => {
      const key = apiKey();
      const a = await tenant('acme', key);
      const b = await tenant('globex');
      expect(await store.getTenant(a)).toEqual({ uin: a, name: 'acme', createdAt: 1_700_000_000 });
      expect((await store.listTenants()).map((t) => t.name)).toEqual(['acme', 'globex']);
      expect(await store.getApiKey(key.secretId)).toEqual({ ...key, ownerUin: a, tenantUin: a, status: 'active' });
      expect(await store.listApiKeys(b)).toEqual([]);
      expect(await store.getTenant('100000009999')).toBeUndefined();
    });

    test('a taken name is refused and nothing of the attempt is stored', async () => {
      await tenant('acme');
      const key = apiKey();
      const uin = await store.allocateUin('tenant');
      const e = await rejection(store.createTenant({ uin, name: 'acme', createdAt: 1, apiKey: key }));
      expect(e).toBeInstanceOf(IamAlreadyExistsError);
      expect(e.message).toContain('"acme"');
      expect(await store.getTenant(uin)).toBeUndefined();
      expect(await store.getApiKey(key.secretId)).toBeUndefined();
      expect(await store.listTenants()).toHaveLength(1);
    });

    test('a taken uin or SecretId is refused and the tenant is not created', async () => {
      const key = apiKey();
      const a = await tenant('acme', key);
      await expect(store.createTenant({ uin: a, name: 'other', createdAt: 1 })).rejects.toThrow(IamAlreadyExistsError);
      const u = await user(a);
      await expect(store.createTenant({ uin: u, name: 'other', createdAt: 1 })).rejects.toThrow(IamAlreadyExistsError);
      const uin = await store.allocateUin('tenant');
      await expect(store.createTenant({ uin, name: 'other', createdAt: 1, apiKey: { ...apiKey(), secretId: key.secretId } })).rejects.toThrow(
        IamAlreadyExistsError,
      );
      expect(await store.getTenant(uin)).toBeUndefined();
      expect((await store.listTenants()).map((t) => t.name)).toEqual(['acme']);
    });

    test('two handles racing for one name: exactly one wins', async () => {
      const others = await Promise.all([openAnother(), openAnother(), openAnother()]);
      const results = await Promise.allSettled(
        [store, ...others].map(async (s) => {
          const uin = await s.allocateUin('tenant');
          return s.createTenant({ uin, name: 'contested', createdAt: 1 });
        }),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(IamAlreadyExistsError);
      expect(await store.listTenants()).toHaveLength(1);
    });
  });

  describe('sub-accounts', () => {
    test('create with key and policies in one write; get; list per tenant by uin', async () => {
      const t = await tenant();
      const key = apiKey();
      const uin = await store.allocateUin('user');
      const policies = [preset('ro'), custom('no-decrypt')];
      expect(await store.createUser({ uin, tenantUin: t, name: 'alice', createdAt: 5, apiKey: key, policies })).toEqual({
        uin,
        tenantUin: t,
        name: 'alice',
        createdAt: 5,
      });
      const bob = await user(t, 'bob');
      const elsewhere = await user(await tenant(), 'carol');
      expect(await store.getUser(uin)).toEqual({ uin, tenantUin: t, name: 'alice', createdAt: 5 });
      expect((await store.listUsers(t)).map((u) => u.uin)).toEqual([uin, bob]);
      expect((await store.getUser(elsewhere))?.name).toBe('carol');
      expect(await store.getApiKey(key.secretId)).toEqual({ ...key, ownerUin: uin, tenantUin: t, status: 'active' });
      expect(await store.listPolicies(uin)).toEqual([policies[1], policies[0]]);
      expect(await store.getUser('200000009999')).toBeUndefined();
      expect(await store.listUsers('100000009999')).toEqual([]);
    });

    test('names are unique within a tenant, not across tenants', async () => {
      const t1 = await tenant();
      const t2 = await tenant();
      await user(t1, 'alice');
      await user(t2, 'alice');
      const e = await rejection(user(t1, 'alice'));
      expect(e).toBeInstanceOf(IamAlreadyExistsError);
      expect(e.message).toContain(t1);
      expect(await store.listUsers(t1)).toHaveLength(1);
    });

    test('an unknown tenant is NotFound', async () => {
      const uin = await store.allocateUin('user');
      await expect(store.createUser({ uin, tenantUin: '100000009999', name: 'x', createdAt: 1 })).rejects.toThrow(IamNotFoundError);
      expect(await store.getUser(uin)).toBeUndefined();
    });

    test('a failed creation writes nothing: no user, no key, no policies', async () => {
      const t = await tenant();
      const taken = apiKey();
      await store.addApiKey(t, taken);
      const uin = await store.allocateUin('user');
      await expect(
        store.createUser({ uin, tenantUin: t, name: 'x', createdAt: 1, apiKey: { ...apiKey(), secretId: taken.secretId }, policies: [preset('ro')] }),
      ).rejects.toThrow(IamAlreadyExistsError);
      expect(await store.getUser(uin)).toBeUndefined();
      expect(await store.listPolicies(uin)).toEqual([]);
      expect(await store.listApiKeys(uin)).toEqual([]);
      await expect(store.createUser({ uin: t, tenantUin: t, name: 'y', createdAt: 1 })).rejects.toThrow(IamAlreadyExistsError);
      expect(await store.listUsers(t)).toEqual([]);
    });
  });

  describe('API keys', () => {
    test('root and sub-account keys; listed by creation time; sealed bytes intact', async () => {
      const t = await tenant();
      const u = await user(t);
      const k2 = apiKey({ createdAt: 20, sealedSecret: randomBytes(300) });
      const k1 = apiKey({ createdAt: 10 });
      expect(await store.addApiKey(u, k2)).toEqual({ ...k2, ownerUin: u, tenantUin: t, status: 'active' });
      await store.addApiKey(u, k1);
      const root = apiKey();
      await store.addApiKey(t, root);
      expect((await store.listApiKeys(u)).map((k) => k.secretId)).toEqual([k1.secretId, k2.secretId]);
      expect((await store.getApiKey(k2.secretId))?.sealedSecret.equals(k2.sealedSecret)).toBe(true);
      expect(await store.getApiKey(root.secretId)).toMatchObject({ ownerUin: t, tenantUin: t });
      expect(await store.getApiKey(`AKID${'z'.repeat(32)}`)).toBeUndefined();
    });

    test('an unknown owner is NotFound; a taken SecretId AlreadyExists', async () => {
      const t = await tenant();
      const k = apiKey();
      await expect(store.addApiKey('200000009999', k)).rejects.toThrow(IamNotFoundError);
      expect(await store.getApiKey(k.secretId)).toBeUndefined();
      await store.addApiKey(t, k);
      await expect(store.addApiKey(t, { ...apiKey(), secretId: k.secretId })).rejects.toThrow(IamAlreadyExistsError);
      expect(await store.listApiKeys(t)).toHaveLength(1);
    });

    test('status changes are seen by every handle; an unknown key is NotFound', async () => {
      const k = apiKey();
      await tenant(undefined, k);
      const other = await openAnother();
      await store.setApiKeyStatus(k.secretId, 'disabled');
      expect((await other.getApiKey(k.secretId))?.status).toBe('disabled');
      await other.setApiKeyStatus(k.secretId, 'active');
      expect((await store.getApiKey(k.secretId))?.status).toBe('active');
      await expect(store.setApiKeyStatus(`AKID${'q'.repeat(32)}`, 'disabled')).rejects.toThrow(IamNotFoundError);
    });

    test("a re-seal (rotate-domain) replaces the row's MAC only while it is the one expected; the status is left alone", async () => {
      const k = apiKey();
      await tenant(undefined, k);
      const [first, second, third] = [Buffer.alloc(48, 1), Buffer.alloc(48, 2), Buffer.alloc(48, 3)];
      await store.setApiKeyStatus(k.secretId, 'disabled', first);
      await store.resealApiKey(k.secretId, first, second);
      expect(await (await openAnother()).getApiKey(k.secretId)).toMatchObject({ status: 'disabled', mac: second });
      // the row changed since it was read (a stale reader): refused, the newer MAC kept
      await expect(store.resealApiKey(k.secretId, first, third)).rejects.toThrow(IamConflictError);
      expect((await store.getApiKey(k.secretId))?.mac).toEqual(second);
      await expect(store.resealApiKey(`AKID${'q'.repeat(32)}`, first, third)).rejects.toThrow(IamNotFoundError);
    });
  });

  describe('policy attachments', () => {
    test('attach (replacing one of the same name), list by name, detach', async () => {
      const u = await user(await tenant());
      await store.attachPolicy(u, custom('zeta'));
      await store.attachPolicy(u, preset('alpha', 'QcloudKMSFullAccess'));
      await store.attachPolicy(u, preset('zeta'));
      expect(await store.listPolicies(u)).toEqual([preset('alpha', 'QcloudKMSFullAccess'), preset('zeta')]);
      await store.detachPolicy(u, 'alpha');
      expect(await (await openAnother()).listPolicies(u)).toEqual([preset('zeta')]);
    });

    test('custom documents come back byte for byte', async () => {
      const u = await user(await tenant());
      const doc = JSON.stringify({
        version: '2.0',
        statement: [{ effect: 'allow', action: 'kms:*', resource: '*', condition: { string_equal: { note: 'é "quoted" ☃' } } }],
      });
      await store.attachPolicy(u, custom('p', doc));
      expect((await store.listPolicies(u))[0].body).toEqual({ kind: 'custom', document: doc });
    });

    test('only sub-accounts take policies; unknown names are NotFound', async () => {
      const t = await tenant();
      const u = await user(t);
      await expect(store.attachPolicy(t, preset('p'))).rejects.toThrow(IamNotFoundError);
      await expect(store.attachPolicy('200000009999', preset('p'))).rejects.toThrow(IamNotFoundError);
      await expect(store.detachPolicy(u, 'nothing')).rejects.toThrow(IamNotFoundError);
      expect(await store.listPolicies(t)).toEqual([]);
    });
  });

  describe('CAM: profiles, deletions, tenant policies, change generation', () => {
    test('a profile is stored at creation and updated in part; an unknown sub-account is NotFound', async () => {
      const t = await tenant();
      const uin = await store.allocateUin('user');
      await store.createUser({ uin, tenantUin: t, name: 'profiled', createdAt: 1_700_000_001, remark: 'hello', consoleLogin: 0 });
      expect(await store.getUser(uin)).toMatchObject({ remark: 'hello', consoleLogin: 0 });
      await store.updateUser(uin, { consoleLogin: 1 });
      expect(await (await openAnother()).getUser(uin)).toMatchObject({ remark: 'hello', consoleLogin: 1 });
      await expect(store.updateUser('299999999999', { remark: 'x' })).rejects.toBeInstanceOf(IamNotFoundError);
      await expect(store.updateUser(uin, { consoleLogin: 3 })).rejects.toBeInstanceOf(IamInputError);
    });

    test('deleting a sub-account removes its keys and attachments; its name is free again', async () => {
      const t = await tenant();
      const uin = await store.allocateUin('user');
      const key = apiKey();
      await store.createUser({ uin, tenantUin: t, name: 'gone', createdAt: 1_700_000_001, apiKey: key, policies: [preset('p')] });
      await store.deleteUser(uin);
      expect(await store.getUser(uin)).toBeUndefined();
      expect(await store.getApiKey(key.secretId)).toBeUndefined();
      expect(await store.listApiKeys(uin)).toEqual([]);
      expect(await store.listPolicies(uin)).toEqual([]);
      expect((await store.listUsers(t)).map((u) => u.uin)).toEqual([]);
      await user(t, 'gone');
      await expect(store.deleteUser(uin)).rejects.toBeInstanceOf(IamNotFoundError);
    });

    test('deleting an API key; an unknown one is NotFound', async () => {
      const t = await tenant();
      const key = apiKey();
      await store.addApiKey(t, key);
      await store.deleteApiKey(key.secretId);
      expect(await store.getApiKey(key.secretId)).toBeUndefined();
      expect(await store.listApiKeys(t)).toEqual([]);
      await expect(store.deleteApiKey(key.secretId)).rejects.toBeInstanceOf(IamNotFoundError);
    });

    test("tenant policies: create, get, list, rename, delete; names unique per tenant; another tenant's are absent", async () => {
      const t = await tenant();
      const other = await tenant();
      const doc = '{"version":"2.0","statement":[{"effect":"allow","action":"kms:ListKeys","resource":"*"}]}';
      const p = { policyId: await store.allocateUin('policy'), tenantUin: t, name: 'one', description: 'd', document: doc, createdAt: 1, updatedAt: 1 };
      expect(Number(p.policyId)).toBeGreaterThan(100_000);
      await store.createTenantPolicy(p);
      await expect(store.createTenantPolicy({ ...p, policyId: await store.allocateUin('policy') })).rejects.toBeInstanceOf(IamAlreadyExistsError);
      await store.createTenantPolicy({ ...p, tenantUin: other, policyId: await store.allocateUin('policy') });
      expect(await store.getTenantPolicy(t, p.policyId)).toEqual(p);
      expect(await store.getTenantPolicy(other, p.policyId)).toBeUndefined();
      const second = { ...p, policyId: await store.allocateUin('policy'), name: 'two' };
      await store.createTenantPolicy(second);
      expect((await store.listTenantPolicies(t)).map((x) => x.name)).toEqual(['one', 'two']);
      await expect(store.updateTenantPolicy({ ...second, name: 'one' })).rejects.toBeInstanceOf(IamAlreadyExistsError);
      await store.updateTenantPolicy({ ...second, name: 'renamed', updatedAt: 2 });
      await store.createTenantPolicy({ ...second, policyId: await store.allocateUin('policy'), name: 'two' });
      expect((await (await openAnother()).listTenantPolicies(t)).map((x) => x.name)).toEqual(['one', 'renamed', 'two']);
      await store.deleteTenantPolicy(t, p.policyId);
      await expect(store.deleteTenantPolicy(t, p.policyId)).rejects.toBeInstanceOf(IamNotFoundError);
      await expect(store.updateTenantPolicy(p)).rejects.toBeInstanceOf(IamNotFoundError);
      await store.createTenantPolicy({ ...p, policyId: await store.allocateUin('policy') });
    });

    test('the change generation is shared by every handle', async () => {
      const before = await store.changeGeneration();
      const other = await openAnother();
      expect(await other.noteChange()).toBe(before + 1);
      expect(await store.changeGeneration()).toBe(before + 1);
    });
  });

  describe('input guards', () => {
    test.each([
      ['uin not a number', { uin: 'abc', name: 'x', createdAt: 1 }],
      ['uin with leading zero', { uin: '0100', name: 'x', createdAt: 1 }],
      ['empty name', { uin: '100000000001', name: '', createdAt: 1 }],
      ['control character in name', { uin: '100000000001', name: 'a\u0000b', createdAt: 1 }],
      ['SecretId with a dash', { uin: '100000000001', name: 'x', createdAt: 1, apiKey: { secretId: 'AKID-1', sealedSecret: Buffer.from('x'), createdAt: 1 } }],
      ['empty sealed secret', { uin: '100000000001', name: 'x', createdAt: 1, apiKey: { secretId: 'AKID1', sealedSecret: Buffer.alloc(0), createdAt: 1 } }],
    ])('tenant: %s', async (_case, t) => {
      await expect(store.createTenant(t)).rejects.toThrow(IamInputError);
      expect(await store.listTenants()).toEqual([]);
    });

    test('a policy name given twice at creation is refused', async () => {
      const t = await tenant();
      const uin = await store.allocateUin('user');
      await expect(store.createUser({ uin, tenantUin: t, name: 'x', createdAt: 1, policies: [preset('p'), custom('p')] })).rejects.toThrow(IamInputError);
      await expect(store.attachPolicy(uin, preset(''))).rejects.toThrow(IamInputError);
    });
  });

  test('everything survives closing and reopening', async () => {
    const k = apiKey();
    const t = await tenant('acme', k);
    const u = await user(t, 'alice');
    await store.attachPolicy(u, preset('ro'));
    await store.close();
    store = await backing.open();
    expect(await store.getTenant(t)).toMatchObject({ name: 'acme' });
    expect(await store.getUser(u)).toMatchObject({ name: 'alice', tenantUin: t });
    expect((await store.getApiKey(k.secretId))?.sealedSecret.equals(k.sealedSecret)).toBe(true);
    expect(await store.listPolicies(u)).toEqual([preset('ro')]);
  });
});

describe('SQLite identity store beside the key store', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-iam-shared-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test.each(['identity store first', 'key store first'])("one database file, %s: own iam_ tables, the key store's schema number untouched", async (order) => {
    const file = path.join(dir, 'kms.db');
    const open =
      order === 'key store first'
        ? () => {
            const k = new SqliteMetadataStore(file);
            return { k, i: new SqliteIdentityStore(file) };
          }
        : () => {
            const i = new SqliteIdentityStore(file);
            return { k: new SqliteMetadataStore(file), i };
          };
    const { k, i } = open();
    const uin = await i.allocateUin('tenant');
    await i.createTenant({ uin, name: 'acme', createdAt: 1 });
    expect(await k.countKeys(uin, 'ap-guangzhou')).toBe(0);
    await i.close();
    await k.close();
    const db = new Database(file, { readonly: true });
    try {
      const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>).map((r) => r.name);
      expect(tables.filter((t) => t.startsWith('iam_')).sort()).toEqual([
        'iam_api_keys',
        'iam_meta',
        'iam_policies',
        'iam_tenant_policies',
        'iam_tenants',
        'iam_users',
      ]);
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('user_version', { simple: true })).toBeGreaterThan(0);
    } finally {
      db.close();
    }
    const again = new SqliteIdentityStore(file);
    expect((await again.getTenant(uin))?.name).toBe('acme');
    await again.close();
  });

  test('a database written by a newer build is refused', async () => {
    const file = path.join(dir, 'kms.db');
    await new SqliteIdentityStore(file).close();
    const db = new Database(file);
    db.prepare("UPDATE iam_meta SET value = 99 WHERE name = 'schema'").run();
    db.close();
    expect(() => new SqliteIdentityStore(file)).toThrow(IamConfigError);
  });
});

describe('Redis identity store and persistence', () => {
  test('a server without AOF or RDB is refused unless allowVolatile', async () => {
    const server = await startRedis({ persistent: false });
    try {
      const e = await rejection(RedisIdentityStore.open({ port: server.port }));
      expect(e).toBeInstanceOf(IamConfigError);
      expect(e.message).toContain('allowVolatile');
      const store = await RedisIdentityStore.open({ port: server.port, allowVolatile: true });
      expect(await store.allocateUin('tenant')).toBe('100000000001');
      await store.close();
    } finally {
      await server.stop();
    }
  });
});
