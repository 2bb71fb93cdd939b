/**
 * The sealing decorators (src/kms/sealed-store.ts, src/iam/sealed-identity-store.ts) over both
 * backends of each store: transparent for the service's own writes, and a row changed behind the
 * store's back (raw SQLite / raw Redis) is refused with a tamper report. The MAC key is an HMAC key
 * in this process here (the RowAuthenticator port; the server's is inside the HSM, tested end to end
 * in test/e2e/store-tamper*.test.ts).
 */
import Database from 'better-sqlite3';
import Redis from 'ioredis';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IamIntegrityError } from '../../src/iam/errors';
import { SealedIdentityStore, Tamper } from '../../src/iam/sealed-identity-store';
import { Alarms } from '../../src/kms/alarms';
import { StoreIntegrityError } from '../../src/kms/errors';
import { SealedMetadataStore } from '../../src/kms/sealed-store';
import { RedisMetadataStore } from '../../src/store/redis/store';
import { rowAuthenticator } from '../../src/store/row-mac';
import { SqliteMetadataStore } from '../../src/store/sqlite/store';
import type { MetadataStore, NewKeyRecord } from '../../src/store/store';
import { IDENTITY_BACKENDS, IdentityBacking } from '../support/iam-backends';
import { RedisServer, startRedis } from '../support/redis';

const key = randomBytes(32);
const auth = rowAuthenticator(async (data) => createHmac('sha256', key).update(data).digest());

function newKey(ownerUin: string): NewKeyRecord {
  return {
    keyId: randomUUID(),
    alias: `k-${randomUUID().slice(0, 8)}`,
    description: '',
    keyUsage: 'ENCRYPT_DECRYPT',
    origin: 'TENCENT_KMS',
    keyState: 'Enabled',
    creatorUin: ownerUin,
    ownerUin,
    owner: 'user',
    region: 'ap-guangzhou',
    hsmClusterId: 'default',
    tags: {},
    rotation: { enabled: false, rotateDays: 365 },
    createTime: 1_700_000_000,
    versions: [{ version: 1, material: Buffer.from('opaque material'), createTime: 1_700_000_000 }],
  };
}

interface KeyBacking {
  name: string;
  open(): Promise<MetadataStore>;
  /** Moves key `keyId` to tenant `to` behind the store's back. */
  reassign(keyId: string, from: string, to: string): Promise<void>;
  tearDown(): Promise<void>;
}

async function sqliteKeys(): Promise<KeyBacking> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-sealed-'));
  const file = path.join(dir, 'kms.db');
  return {
    name: 'sqlite',
    open: async () => new SqliteMetadataStore(file),
    reassign: async (keyId, _from, to) => {
      const db = new Database(file);
      try {
        db.prepare("UPDATE keys SET owner_uin = ?, doc = json_set(doc, '$.ownerUin', ?) WHERE key_id = ?").run(to, to, keyId);
      } finally {
        db.close();
      }
    },
    tearDown: async () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

async function redisKeys(server: RedisServer): Promise<KeyBacking> {
  return {
    name: 'redis',
    open: () => RedisMetadataStore.open({ port: server.port }),
    reassign: async (keyId, from, to) => {
      const raw = new Redis({ port: server.port });
      try {
        const doc = JSON.parse((await raw.hget(`kms:key:${keyId}`, 'doc'))!) as NewKeyRecord;
        const alias = doc.alias;
        doc.ownerUin = to;
        await raw
          .multi()
          .hset(`kms:key:${keyId}`, 'doc', JSON.stringify(doc))
          .zrem(`kms:idx:${from}:ap-guangzhou`, keyId)
          .zadd(`kms:idx:${to}:ap-guangzhou`, doc.createTime, keyId)
          .hdel(`kms:alias:${from}:ap-guangzhou`, alias)
          .hset(`kms:alias:${to}:ap-guangzhou`, alias, keyId)
          .exec();
      } finally {
        raw.disconnect();
      }
    },
    tearDown: async () => undefined,
  };
}

describe('SealedMetadataStore: key ownership changed behind the store is refused', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis({ persistent: true });
  });
  afterAll(() => redis.stop());

  test.each(['sqlite', 'redis'])('%s', async (name) => {
    const backing = name === 'sqlite' ? await sqliteKeys() : await redisKeys(redis);
    const raw = await backing.open();
    const alarms = new Alarms();
    const store = new SealedMetadataStore(raw, auth, alarms);
    try {
      const r = await store.createKey(newKey('100000000001'));
      expect(r.authority).toEqual(expect.any(String));
      await expect(store.getKey('100000000001', r.keyId)).resolves.toMatchObject({ keyId: r.keyId });
      const updated = await store.updateKey('100000000001', r.keyId, r.revision, { description: 'changed through the service' });
      expect(updated.description).toBe('changed through the service');
      expect((await store.listKeys({ ownerUin: '100000000001', region: 'ap-guangzhou', offset: 0, limit: 10, order: 'asc' })).keys).toHaveLength(1);

      await backing.reassign(r.keyId, '100000000001', '100000000002');
      await expect(store.getKey('100000000002', r.keyId)).rejects.toBeInstanceOf(StoreIntegrityError);
      await expect(store.listKeys({ ownerUin: '100000000002', region: 'ap-guangzhou', offset: 0, limit: 10, order: 'asc' })).rejects.toBeInstanceOf(
        StoreIntegrityError,
      );
      // a row the service never sealed (written straight into the backend) is refused too
      const unsealed = await raw.createKey(newKey('100000000003'));
      await expect(store.getKey('100000000003', unsealed.keyId)).rejects.toThrow(/failed its integrity check/);
      expect(
        alarms
          .list()
          .filter((a) => a.kind === 'StoreIntegrity')
          .map((a) => a.keyId),
      ).toEqual([r.keyId, r.keyId, unsealed.keyId]);
      await expect(store.updateKey('100000000003', unsealed.keyId, unsealed.revision, { authority: 'forged' })).rejects.toBeInstanceOf(StoreIntegrityError);
    } finally {
      await store.close();
      await backing.tearDown();
    }
  });
});

describe.each(IDENTITY_BACKENDS)('SealedIdentityStore over $name', (backend) => {
  let backing: IdentityBacking;
  const tampers: Tamper[] = [];
  let store: SealedIdentityStore;
  const apiKey = (secretId: string) => ({ secretId, sealedSecret: Buffer.from(`sealed-${secretId}`), createdAt: 1 });

  beforeAll(async () => {
    backing = await backend.setUp();
    store = new SealedIdentityStore(await backing.open(), auth, (t) => tampers.push(t));
  });
  afterAll(async () => {
    await store.close();
    await backing.tearDown();
  });

  test("the service's own rows verify: keys, status changes, policies, markers", async () => {
    const tenant = await store.allocateUin('tenant');
    await store.createTenant({ uin: tenant, name: `t-${backend.name}`, createdAt: 1, apiKey: apiKey('AKIDtenant1') });
    const user = await store.allocateUin('user');
    await store.createUser({
      uin: user,
      tenantUin: tenant,
      name: 'u',
      createdAt: 2,
      apiKey: apiKey('AKIDuser1'),
      policies: [{ name: 'ro', body: { kind: 'preset', preset: 'QcloudKMSReadOnlyAccess' }, attachedAt: 3 }],
    });
    await store.addApiKey(user, apiKey('AKIDuser2'));
    await store.setApiKeyStatus('AKIDuser2', 'disabled');
    await store.attachPolicy(user, { name: 'custom', body: { kind: 'custom', document: '{"version":"2.0","statement":[]}' }, attachedAt: 4 });
    expect((await store.listApiKeys(user)).map((k) => [k.secretId, k.status])).toEqual([
      ['AKIDuser1', 'active'],
      ['AKIDuser2', 'disabled'],
    ]);
    expect((await store.listPolicies(user)).map((p) => p.name)).toEqual(['custom', 'ro']);
    await expect(store.getApiKey('AKIDtenant1')).resolves.toMatchObject({ ownerUin: tenant, tenantUin: tenant });
    expect(await store.hasMarker('test-marker')).toBe(false);
    await store.setMarker('test-marker');
    expect(await store.hasMarker('test-marker')).toBe(true);
    expect(tampers).toEqual([]);
  });

  test('attachment changes through two handles keep the set consistent (compare-and-set, retried); a row deleted behind the store is noticed', async () => {
    const tenant = await store.allocateUin('tenant');
    await store.createTenant({ uin: tenant, name: `t2-${backend.name}`, createdAt: 1 });
    const user = await store.allocateUin('user');
    await store.createUser({ uin: user, tenantUin: tenant, name: 'v', createdAt: 2 });
    const second = new SealedIdentityStore(await backing.open(), auth, (t) => tampers.push(t));
    try {
      await Promise.all(
        [0, 1, 2, 3].map((i) =>
          (i % 2 ? second : store).attachPolicy(user, { name: `p${i}`, body: { kind: 'preset', preset: 'QcloudKMSReadOnlyAccess' }, attachedAt: i }),
        ),
      );
      await second.detachPolicy(user, 'p1');
      expect((await store.listPolicies(user)).map((p) => p.name)).toEqual(['p0', 'p2', 'p3']);
      expect(tampers).toEqual([]);
      const raw = await backing.open();
      try {
        await raw.detachPolicy(user, 'p2');
      } finally {
        await raw.close();
      }
      await expect(store.listPolicies(user)).rejects.toBeInstanceOf(IamIntegrityError);
      expect(tampers.at(-1)?.detail).toMatch(/set of policies/);
    } finally {
      await second.close();
    }
  });

  test('an API key row changed behind the store is refused with a tamper report', async () => {
    await backing.tamperKey('AKIDuser1', 'ownerUin', '200000000099');
    await expect(store.getApiKey('AKIDuser1')).rejects.toBeInstanceOf(IamIntegrityError);
    expect(tampers.at(-1)?.detail).toMatch(/API key AKIDuser1/);
    // the operator can still disable it (it stays refused: no MAC is written), not enable it
    await expect(store.setApiKeyStatus('AKIDuser1', 'active')).rejects.toBeInstanceOf(IamIntegrityError);
    await store.setApiKeyStatus('AKIDuser1', 'disabled');
    await expect(store.getApiKey('AKIDuser1')).rejects.toBeInstanceOf(IamIntegrityError);
    expect(tampers.at(-1)?.detail).toMatch(/has no MAC/);
    const raw = await backing.open();
    try {
      expect((await raw.getApiKey('AKIDuser1'))?.status).toBe('disabled');
    } finally {
      await raw.close();
    }
  });
});
