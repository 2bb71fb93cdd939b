/**
 * IamService on both identity-store backends, with the AES-GCM test double for the HSM-backed sealer
 * and a manual clock (cache expiry without waiting).
 */
import { authorize } from '../../src/iam/authorize';
import { IamAlreadyExistsError, IamInputError, IamIntegrityError, IamNotFoundError, PolicyError } from '../../src/iam/errors';
import { CACHE_TTL_MS, IamService } from '../../src/iam/iam-service';
import { IdentityStore } from '../../src/iam/identity-store';
import { instantiatePreset } from '../../src/iam/presets';
import { actionName, collectionResource, keyResource } from '../../src/iam/resources';
import { ManualClock } from '../../src/common/clock';
import { AesGcmTestSealer } from '../support/aes-sealer';
import { rejection } from '../support/rejection';
import { IDENTITY_BACKENDS, IdentityBacking } from '../support/iam-backends';

const KEY_ID = '0b1c6a4e-1f5a-4d63-9a7c-3f0e6b1c2d3e';
const DENY_DECRYPT = { version: '2.0', statement: [{ effect: 'deny', action: 'kms:Decrypt', resource: '*' }] };

describe.each(IDENTITY_BACKENDS)('IamService on $name', (backend) => {
  let backing: IdentityBacking;
  const stores: IdentityStore[] = [];
  let clock: ManualClock;
  let sealer: AesGcmTestSealer;
  let iam: IamService;

  /** Another node: its own store handle and caches, the same backing, clock and sealing key. */
  async function node(): Promise<IamService> {
    const store = await backing.open();
    stores.push(store);
    return new IamService({ store, sealer, clock });
  }

  beforeEach(async () => {
    backing = await backend.setUp();
    clock = new ManualClock();
    sealer = new AesGcmTestSealer();
    iam = await node();
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    await backing.tearDown();
  });

  test('a tenant: uin, SecretId and SecretKey formats; resolve gives the root principal and the SecretKey', async () => {
    const c = await iam.createTenant('acme');
    expect(c.Uin).toBe(100_000_000_001);
    expect(c.SecretId).toMatch(/^AKID[A-Za-z0-9]{32}$/);
    expect(c.SecretKey).toMatch(/^[A-Za-z0-9]{32}$/);
    const r = await iam.resolve(c.SecretId);
    expect(r?.principal).toEqual({ tenantUin: '100000000001', uin: '100000000001', kind: 'root', name: 'acme', secretId: c.SecretId });
    expect(r?.secretKey.toString()).toBe(c.SecretKey);
    expect(await iam.getTenant('100000000001')).toMatchObject({ name: 'acme', createdAt: Math.floor(clock.now() / 1000) });
    expect((await iam.listTenants()).map((t) => t.uin)).toEqual(['100000000001']);
    await expect(iam.createTenant('acme')).rejects.toThrow(IamAlreadyExistsError);
    await expect(iam.createTenant(' acme')).rejects.toThrow(IamInputError);
  });

  test('no SecretKey is ever stored in clear: raw files and values hold none of them, in any encoding', async () => {
    const made = [await iam.createTenant('acme')];
    const t = String(made[0].Uin);
    made.push(await iam.createUser(t, 'alice', { preset: 'QcloudKMSFullAccess' }));
    made.push(await iam.createApiKey(t));
    made.push(await iam.createApiKey(String(made[1].Uin)));
    for (const c of made) await iam.resolve(c.SecretId);
    const raw = await backing.rawBytes();
    expect(raw.includes(made[0].SecretId)).toBe(true); // the search sees what is stored
    for (const { SecretKey } of made) {
      for (const form of [SecretKey, Buffer.from(SecretKey).toString('hex'), Buffer.from(SecretKey).toString('base64').slice(0, 40)]) {
        expect(raw.includes(form)).toBe(false);
      }
    }
  });

  test('a sub-account with a preset: principal, policies instantiated for it, authorization through them', async () => {
    const t = String((await iam.createTenant('acme')).Uin);
    const c = await iam.createUser(t, 'alice', { preset: 'QcloudKMSCreatorFullAccess' });
    expect(c.Uin).toBe(200_000_000_001);
    const r = await iam.resolve(c.SecretId);
    expect(r?.principal).toEqual({ tenantUin: t, uin: '200000000001', kind: 'user', name: 'alice', secretId: c.SecretId });
    const policies = await iam.policiesFor(r!.principal);
    expect(policies).toEqual([instantiatePreset('QcloudKMSCreatorFullAccess', r!.principal)]);
    const own = keyResource({ region: 'ap-guangzhou', tenantUin: t, creatorUin: '200000000001', keyId: KEY_ID });
    const roots = keyResource({ region: 'ap-guangzhou', tenantUin: t, creatorUin: t, keyId: KEY_ID });
    const ask = (action: string, resource: string) => authorize(r!.principal, { action: actionName(action), resource, context: {} }, policies).allowed;
    expect(ask('Encrypt', own)).toBe(true);
    expect(ask('Encrypt', roots)).toBe(false);
    expect(ask('CreateKey', collectionResource('ap-guangzhou', t))).toBe(true);
    expect((await iam.listUsers(t)).map((u) => u.name)).toEqual(['alice']);
    expect(await iam.getUser('200000000001')).toMatchObject({ tenantUin: t, name: 'alice' });
    expect(await iam.policiesFor((await iam.resolve((await iam.createTenant('root')).SecretId))!.principal)).toEqual([]);
  });

  test('a sub-account with a custom policy (object or JSON text), and with both', async () => {
    const t = String((await iam.createTenant('acme')).Uin);
    const a = await iam.createUser(t, 'a', { policy: DENY_DECRYPT });
    const b = await iam.createUser(t, 'b', { policy: JSON.stringify(DENY_DECRYPT), policyName: 'no-decrypt', preset: 'QcloudKMSFullAccess' });
    expect((await iam.listPolicies(String(a.Uin))).map((p) => [p.name, p.document])).toEqual([['policy', DENY_DECRYPT]]);
    const listed = await iam.listPolicies(String(b.Uin));
    expect(listed.map((p) => [p.name, p.preset])).toEqual([
      ['QcloudKMSFullAccess', 'QcloudKMSFullAccess'],
      ['no-decrypt', undefined],
    ]);
    const principal = (await iam.resolve(b.SecretId))!.principal;
    const key = keyResource({ region: 'ap-guangzhou', tenantUin: t, creatorUin: t, keyId: KEY_ID });
    const policies = await iam.policiesFor(principal);
    expect(authorize(principal, { action: 'kms:Encrypt', resource: key, context: {} }, policies).allowed).toBe(true);
    expect(authorize(principal, { action: 'kms:Decrypt', resource: key, context: {} }, policies).reason).toContain('explicitly denied');
  });

  test('bad sub-account requests create nothing', async () => {
    const t = String((await iam.createTenant('acme')).Uin);
    const seals = sealer.seals;
    await expect(iam.createUser(t, 'x', { policy: { version: '2.0', statement: [{ effect: 'maybe', action: 'kms:*', resource: '*' }] } })).rejects.toThrow(
      PolicyError,
    );
    await expect(iam.createUser(t, 'x', { preset: 'QcloudKMSEverything' })).rejects.toThrow(PolicyError);
    await expect(iam.createUser(t, 'x', { policy: DENY_DECRYPT, policyName: 'QcloudKMSFullAccess' })).rejects.toThrow(PolicyError);
    await expect(iam.createUser(t, 'x y')).rejects.toThrow(IamInputError);
    await expect(iam.createUser('100000009999', 'x')).rejects.toThrow(IamNotFoundError);
    await expect(iam.listUsers('100000009999')).rejects.toThrow(IamNotFoundError);
    expect(await iam.listUsers(t)).toEqual([]);
    expect(sealer.seals).toBe(seals);
    await iam.createUser(t, 'x');
    await expect(iam.createUser(t, 'x')).rejects.toThrow(IamAlreadyExistsError);
  });

  test('further API keys for a root account and a sub-account; listing shows no secrets', async () => {
    const t = await iam.createTenant('acme');
    const u = await iam.createUser(String(t.Uin), 'alice');
    const t2 = await iam.createApiKey(String(t.Uin));
    const u2 = await iam.createApiKey(String(u.Uin));
    expect(t2.Uin).toBe(t.Uin);
    expect((await iam.resolve(t2.SecretId))?.principal.kind).toBe('root');
    expect((await iam.resolve(u2.SecretId))?.principal).toMatchObject({ kind: 'user', uin: String(u.Uin), tenantUin: String(t.Uin) });
    expect((await iam.resolve(u2.SecretId))?.secretKey.toString()).toBe(u2.SecretKey);
    const listed = await iam.listApiKeys(String(u.Uin));
    expect(listed.map((k) => k.SecretId).sort()).toEqual([u.SecretId, u2.SecretId].sort());
    expect(JSON.stringify(listed)).not.toContain(u.SecretKey);
    await expect(iam.createApiKey('200000009999')).rejects.toThrow(IamNotFoundError);
  });

  test('resolve: unknown and malformed SecretIds are undefined; results are cached (one open per TTL) and copies', async () => {
    const c = await iam.createTenant('acme');
    expect(await iam.resolve(`AKID${'x'.repeat(32)}`)).toBeUndefined();
    expect(await iam.resolve('not-a-secret-id')).toBeUndefined();
    const opens = sealer.opens;
    const first = await iam.resolve(c.SecretId);
    first!.secretKey.fill(0);
    first!.principal.uin = 'mutated';
    const again = await Promise.all([iam.resolve(c.SecretId), iam.resolve(c.SecretId)]);
    expect(again[0]?.secretKey.toString()).toBe(c.SecretKey);
    expect(again[1]?.principal.uin).toBe(String(c.Uin));
    expect(sealer.opens).toBe(opens + 1);
    clock.advance(CACHE_TTL_MS / 1000);
    await iam.resolve(c.SecretId);
    expect(sealer.opens).toBe(opens + 2);
  });

  test('a disabled key stops working at once on this node and within the TTL on others; enabling brings it back', async () => {
    const c = await iam.createTenant('acme');
    const other = await node();
    expect(await other.resolve(c.SecretId)).toBeDefined();
    await iam.disableApiKey(c.SecretId);
    expect(await iam.resolve(c.SecretId)).toBeUndefined();
    expect(await other.resolve(c.SecretId)).toBeDefined(); // cached there
    clock.advance(CACHE_TTL_MS / 1000);
    expect(await other.resolve(c.SecretId)).toBeUndefined();
    expect((await iam.listApiKeys(String(c.Uin)))[0].Status).toBe('disabled');
    await iam.enableApiKey(c.SecretId);
    expect(await iam.resolve(c.SecretId)).toBeDefined();
    expect(await other.resolve(c.SecretId)).toBeDefined();
    await expect(iam.disableApiKey(`AKID${'x'.repeat(32)}`)).rejects.toThrow(IamNotFoundError);
  });

  test('attach, replace, detach: this node at once, other nodes within the TTL', async () => {
    const t = String((await iam.createTenant('acme')).Uin);
    const c = await iam.createUser(t, 'alice');
    const uin = String(c.Uin);
    const other = await node();
    const principal = (await iam.resolve(c.SecretId))!.principal;
    expect(await other.policiesFor(principal)).toEqual([]);
    await iam.attachPolicy(uin, 'ro', 'QcloudKMSReadOnlyAccess');
    await iam.attachPolicy(uin, 'mine', JSON.stringify(DENY_DECRYPT));
    expect(await iam.policiesFor(principal)).toHaveLength(2);
    expect(await other.policiesFor(principal)).toEqual([]);
    clock.advance(CACHE_TTL_MS / 1000);
    expect(await other.policiesFor(principal)).toHaveLength(2);
    await iam.attachPolicy(uin, 'ro', 'QcloudKMSFullAccess');
    const listed = await iam.listPolicies(uin);
    expect(listed.map((p) => [p.name, p.preset ?? 'custom'])).toEqual([
      ['mine', 'custom'],
      ['ro', 'QcloudKMSFullAccess'],
    ]);
    await iam.detachPolicy(uin, 'mine');
    expect(await iam.policiesFor(principal)).toEqual([instantiatePreset('QcloudKMSFullAccess', principal)]);
    await expect(iam.detachPolicy(uin, 'mine')).rejects.toThrow(IamNotFoundError);
  });

  test('policiesFor hands out frozen documents: a caller cannot change what the cache holds', async () => {
    const t = String((await iam.createTenant('acme')).Uin);
    const c = await iam.createUser(t, 'alice', { preset: 'QcloudKMSFullAccess' });
    const principal = (await iam.resolve(c.SecretId))!.principal;
    const [policy] = await iam.policiesFor(principal);
    expect(() => {
      (policy.statement[0] as { effect: string }).effect = 'deny';
    }).toThrow(TypeError);
    expect((await iam.policiesFor(principal))[0].statement[0].effect).toBe('allow');
  });

  test('attach refusals: bad documents, unknown presets, preset names for custom documents, root accounts, unknown accounts', async () => {
    const t = String((await iam.createTenant('acme')).Uin);
    const uin = String((await iam.createUser(t, 'alice')).Uin);
    const e = await rejection(iam.attachPolicy(uin, 'p', { version: '2.0', statement: [{ effect: 'allow', action: [], resource: '*' }] }));
    expect(e).toBeInstanceOf(PolicyError);
    expect(e.message).toContain('statement[0].action');
    expect((await rejection(iam.attachPolicy(uin, 'p', 'QcloudKMSFullAccesss'))).message).toContain('unknown preset "QcloudKMSFullAccesss"');
    await expect(iam.attachPolicy(uin, 'QcloudKMSReadOnlyAccess', DENY_DECRYPT)).rejects.toThrow(PolicyError);
    await expect(iam.attachPolicy(uin, 'bad name', DENY_DECRYPT)).rejects.toThrow(IamInputError);
    expect((await rejection(iam.attachPolicy(t, 'p', DENY_DECRYPT))).message).toContain('root account');
    await expect(iam.attachPolicy('200000009999', 'p', DENY_DECRYPT)).rejects.toThrow(IamNotFoundError);
    await expect(iam.listPolicies(t)).rejects.toThrow(IamInputError);
    expect(await iam.listPolicies(uin)).toEqual([]);
  });

  test("a tampered store does not lend one key's secret or account to another", async () => {
    const t = String((await iam.createTenant('acme')).Uin);
    const alice = await iam.createUser(t, 'alice', { preset: 'QcloudKMSFullAccess' });
    const bob = await iam.createUser(t, 'bob');
    // re-point bob's key at alice (who has full access)
    await backing.tamperKey(bob.SecretId, 'ownerUin', String(alice.Uin));
    const e = await rejection(iam.resolve(bob.SecretId));
    expect(e).toBeInstanceOf(IamIntegrityError);
    expect(e.message).not.toContain(bob.SecretKey);
    // copy bob's sealed secret onto alice's key record: alice's SecretId no longer opens
    const store = await backing.open();
    stores.push(store);
    const sealed = (await store.getApiKey(bob.SecretId))!.sealedSecret;
    await backing.tamperKey(alice.SecretId, 'sealed', sealed);
    await expect(iam.resolve(alice.SecretId)).rejects.toThrow(IamIntegrityError);
  });
});
