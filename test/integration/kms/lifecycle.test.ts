import { createKeyAnswer, createKeyRequest, listKeyDetailRequest, listKeysRequest, toKeyMetadata } from '../../../src/api/kms-wire';
import type { ActionParams } from '../../../src/api/params';
import * as E from '../../../src/kms/errors';
import { ManualClock } from '../../../src/common/clock';
import type { Kms } from '../../../src/kms/service';
import { alice, aliceSub, bob, KmsLab, REGION } from '../../support/kms';

describe('KMS core: key lifecycle on SoftHSM2 + SQLite', () => {
  let lab: KmsLab;
  let kms: Kms;
  const clock = new ManualClock(Date.UTC(2026, 10, 23));
  const now = () => Math.floor(clock.now() / 1000);

  beforeAll(async () => {
    ({ lab, kms } = await KmsLab.open({ clock, maxKeysPerRegion: 0 }));
  });
  afterAll(() => lab.cleanup());

  /** CreateKey as the Tencent wire asks for it (Type, Tags of TagKey/TagValue), mapped as the API layer does. */
  const create = async (alias: string, over: Partial<ActionParams<'CreateKey'>> = {}, who = alice) =>
    kms.lifecycle.createKey(who, createKeyRequest({ Alias: alias, ...over }));
  /** ListKeys / ListKeyDetail as the Tencent wire asks for them, mapped as the API layer does (a refusal of the mapping rejects too). */
  const listKeys = async (who: typeof alice, p: ActionParams<'ListKeys'>) => kms.lifecycle.listKeys(who, listKeysRequest(p));
  const listKeyDetail = async (who: typeof alice, p: ActionParams<'ListKeyDetail'>) => kms.lifecycle.listKeyDetail(who, listKeyDetailRequest(p));

  test('CreateKey makes an Enabled symmetric key in the shared pool; DescribeKey reports every field', async () => {
    const k = createKeyAnswer(await create('first', { Description: 'd', Tags: [{ TagKey: 'env', TagValue: 'prod' }] }, aliceSub));
    expect(k).toMatchObject({
      Alias: 'first',
      KeyState: 'Enabled',
      KeyUsage: 'ENCRYPT_DECRYPT',
      Description: 'd',
      HsmClusterId: '',
      TagCode: 0,
      CreateTime: now(),
    });
    const m = toKeyMetadata(await kms.lifecycle.describeKey(alice, k.KeyId));
    expect(m).toMatchObject({
      KeyId: k.KeyId,
      Alias: 'first',
      KeyState: 'Enabled',
      Origin: 'TENCENT_KMS',
      Owner: 'user',
      CreatorUin: 1001001,
      AccountUin: 1001,
      KeyRotationEnabled: false,
      RotateDays: 365,
      NextRotateTime: 0,
      DeletionDate: 0,
      ValidTo: 0,
      HsmClusterId: '',
      ResourceId: `creatorUin/1001001/${k.KeyId}`,
      SourceRegion: REGION,
    });
    const core = await kms.lifecycle.describeKey(alice, k.KeyId);
    expect(core).toMatchObject({ keyId: k.KeyId, creatorUin: '1001001', accountUin: '1001', region: REGION, origin: 'TENCENT_KMS', rotationEnabled: false });
    expect([core.nextRotateTime, core.deletionDate, core.validTo, core.lastRotateTime]).toEqual([undefined, undefined, undefined, undefined]);
  });

  test.each([
    ['', E.InvalidAliasError],
    ['-lead', E.InvalidAliasError],
    ['a'.repeat(61), E.InvalidAliasError],
    ['has space', E.InvalidAliasError],
    ['kms-reserved', E.InvalidAliasError],
    ['KMS-reserved', E.InvalidAliasError],
  ])('alias %j is refused', async (alias, cls) => {
    await expect(create(alias)).rejects.toBeInstanceOf(cls);
  });

  test('aliases are unique per account and region, not across them', async () => {
    await create('dup');
    await expect(create('dup')).rejects.toBeInstanceOf(E.AliasTakenError);
    await expect(create('dup', {}, { ...alice, region: 'ap-beijing' })).resolves.not.toThrow();
    await expect(create('dup', {}, bob)).resolves.not.toThrow();
  });

  test.each([
    [{ KeyUsage: 'NOPE' }, E.InvalidKeyUsageError],
    [{ Type: 3 }, E.InvalidTypeError],
    [{ Type: 2, KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC' }, E.InvalidKeyUsageError],
    [{ KeyUsage: 'ASYMMETRIC_DECRYPT_SM2' }, E.UnsupportedKeyUsageError],
    [{ KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_SM2' }, E.UnsupportedKeyUsageError],
    [
      {
        Tags: [
          { TagKey: 'a', TagValue: '1' },
          { TagKey: 'a', TagValue: '2' },
        ],
      },
      E.TagKeysDuplicatedError,
    ],
    [{ Tags: [{ TagKey: '', TagValue: '1' }] }, E.InvalidTagError],
    [{ Description: 'x'.repeat(1025) }, E.InvalidParameterError], // 1025 bytes
    [{ HsmClusterId: 'cls-bob' }, E.InvalidHsmClusterError],
    [{ HsmClusterId: 'cls-nope' }, E.InvalidHsmClusterError],
  ])('CreateKey %# is refused with %p and nothing is stored', async (over, cls) => {
    const before = (await listKeyDetail(alice, { KeyUsage: 'ALL', Limit: 200 })).totalCount;
    await expect(create(`bad-${Math.random().toString(36).slice(2, 8)}`, over)).rejects.toBeInstanceOf(cls);
    expect((await listKeyDetail(alice, { KeyUsage: 'ALL', Limit: 200 })).totalCount).toBe(before);
  });

  test("a tenant uses its own dedicated cluster; another tenant's cluster looks like a missing one", async () => {
    const k = await create('dedicated-key', { HsmClusterId: 'cls-bob' }, bob);
    expect(k.hsmClusterId).toBe('cls-bob');
    expect((await kms.lifecycle.describeKey(bob, k.keyId)).hsmClusterId).toBe('cls-bob');
    await expect(kms.lifecycle.describeKey(alice, k.keyId)).rejects.toBeInstanceOf(E.KeyNotFoundError);
    await expect(listKeyDetail(alice, { HsmClusterId: 'cls-bob' })).rejects.toBeInstanceOf(E.InvalidHsmClusterError);
    const handlesBefore = lab.shared.members.map((m) => m.cachedHandles);
    const blob = await kms.envelope.encrypt(bob, { keyId: k.keyId, plaintext: Buffer.from('only on bob hardware') });
    expect((await kms.envelope.decrypt(bob, { ciphertext: blob.ciphertext })).plaintext.toString()).toBe('only on bob hardware');
    expect(lab.shared.members.map((m) => m.cachedHandles)).toEqual(handlesBefore);
    expect(lab.dedicated.members[0].cachedHandles).toBeGreaterThan(0);
  });

  test('the state machine drives enable, disable, archive, deletion scheduling and cancellation', async () => {
    const { keyId: KeyId } = await create('states');
    await kms.lifecycle.disableKey(alice, KeyId);
    expect((await kms.lifecycle.describeKey(alice, KeyId)).keyState).toBe('Disabled');
    await kms.lifecycle.archiveKey(alice, KeyId);
    await expect(kms.lifecycle.archiveKey(alice, KeyId)).rejects.toBeInstanceOf(E.KeyArchivedError);
    await expect(kms.lifecycle.enableKey(alice, KeyId)).rejects.toBeInstanceOf(E.KeyStateNotSupportedError);
    await kms.lifecycle.cancelKeyArchive(alice, KeyId);
    expect((await kms.lifecycle.describeKey(alice, KeyId)).keyState).toBe('Enabled');
    await expect(kms.lifecycle.scheduleKeyDeletion(alice, { keyId: KeyId, pendingWindowDays: 7 })).rejects.toBeInstanceOf(E.KeyShouldBeDisabledError);
    await kms.lifecycle.disableKey(alice, KeyId);
    for (const bad of [6, 31, 7.5, '7', undefined]) {
      await expect(kms.lifecycle.scheduleKeyDeletion(alice, { keyId: KeyId, pendingWindowDays: bad as number })).rejects.toBeInstanceOf(
        E.InvalidPendingWindowError,
      );
    }
    const s = await kms.lifecycle.scheduleKeyDeletion(alice, { keyId: KeyId, pendingWindowDays: 7 });
    expect(s.deletionDate).toBe(now() + 7 * 86400);
    expect(await kms.lifecycle.describeKey(alice, KeyId)).toMatchObject({ keyState: 'PendingDelete', deletionDate: s.deletionDate });
    await expect(kms.lifecycle.updateAlias(alice, { keyId: KeyId, alias: 'renamed' })).rejects.toBeInstanceOf(E.KeyStateNotSupportedError);
    await kms.lifecycle.cancelKeyDeletion(alice, KeyId);
    expect(await kms.lifecycle.describeKey(alice, KeyId)).toMatchObject({ keyState: 'Disabled', deletionDate: undefined });
    await expect(kms.lifecycle.cancelKeyDeletion(alice, KeyId)).rejects.toBeInstanceOf(E.KeyNotPendingDeleteError);
  });

  test('UpdateAlias and UpdateKeyDescription; a taken alias is refused', async () => {
    const a = await create('upd-a');
    await create('upd-b');
    await kms.lifecycle.updateAlias(alice, { keyId: a.keyId, alias: 'upd-c' });
    await kms.lifecycle.updateKeyDescription(alice, { keyId: a.keyId, description: 'new words' });
    expect(await kms.lifecycle.describeKey(alice, a.keyId)).toMatchObject({ alias: 'upd-c', description: 'new words' });
    await expect(kms.lifecycle.updateAlias(alice, { keyId: a.keyId, alias: 'upd-b' })).rejects.toBeInstanceOf(E.AliasTakenError);
    await expect(kms.lifecycle.updateAlias(alice, { keyId: a.keyId, alias: 'kms-x' })).rejects.toBeInstanceOf(E.InvalidAliasError);
    await expect(create('upd-a')).resolves.not.toThrow();
  });

  test('cloud-product keys cannot be disabled, archived or scheduled for deletion, but may rotate', async () => {
    const k = await kms.lifecycle.createKey(alice, { alias: 'kms-secrets-default' }, 'secrets-manager');
    await expect(kms.lifecycle.disableKey(alice, k.keyId)).rejects.toBeInstanceOf(E.UsedByCloudProductError);
    await expect(kms.lifecycle.archiveKey(alice, k.keyId)).rejects.toBeInstanceOf(E.UsedByCloudProductError);
    await expect(kms.lifecycle.scheduleKeyDeletion(alice, { keyId: k.keyId, pendingWindowDays: 7 })).rejects.toBeInstanceOf(E.KeyShouldBeDisabledError);
    await kms.rotation.enableKeyRotation(alice, { keyId: k.keyId });
    await kms.rotation.rotateKey(alice, k.keyId);
    expect(await kms.lifecycle.describeKey(alice, k.keyId)).toMatchObject({ owner: 'secrets-manager', keyState: 'Enabled', rotationEnabled: true });
    const products = await listKeys(alice, { Role: 1 });
    expect(products.keys.map((x) => x.keyId)).toEqual([k.keyId]);
  });

  test('a key bound to a cloud resource cannot be disabled or deleted until unbound', async () => {
    const { keyId: KeyId } = await create('bound');
    await kms.lifecycle.bindCloudResource(alice, { keyId: KeyId, productId: 'cvm', resourceId: 'ins-1' });
    await kms.lifecycle.bindCloudResource(alice, { keyId: KeyId, productId: 'cvm', resourceId: 'ins-1' });
    await expect(kms.lifecycle.disableKey(alice, KeyId)).rejects.toBeInstanceOf(E.UsedByCloudProductError);
    await kms.lifecycle.unbindCloudResource(alice, { keyId: KeyId, productId: 'cvm', resourceId: 'ins-1' });
    await expect(kms.lifecycle.unbindCloudResource(alice, { keyId: KeyId, productId: 'cvm', resourceId: 'ins-1' })).rejects.toBeInstanceOf(
      E.BindingNotFoundError,
    );
    await kms.lifecycle.disableKey(alice, KeyId);
  });

  test('EnableKeys / DisableKeys report per key; duplicates and oversize batches are refused', async () => {
    const a = await create('batch-a');
    const b = await kms.lifecycle.createKey(alice, { alias: 'kms-batch-product' }, 'cdb');
    const out = await kms.lifecycle.batch(alice, [a.keyId, b.keyId, '00000000-0000-0000-0000-000000000000'], 'DisableKey');
    expect(out[0].error).toBeUndefined();
    expect(out[1].error).toBeInstanceOf(E.UsedByCloudProductError);
    expect(out[2].error).toBeInstanceOf(E.KeyNotFoundError);
    await expect(kms.lifecycle.batch(alice, [a.keyId, a.keyId], 'EnableKey')).rejects.toBeInstanceOf(E.DuplicatedKeyIdError);
    await expect(kms.lifecycle.batch(alice, [], 'EnableKey')).rejects.toBeInstanceOf(E.InvalidParameterError);
    await expect(kms.lifecycle.batch(alice, Array(101).fill(a.keyId), 'EnableKey')).rejects.toBeInstanceOf(E.InvalidParameterError);
  });

  test('tags: set, replace, remove, and filter lists by tag', async () => {
    const a = await create('tag-a', { Tags: [{ TagKey: 'team', TagValue: 'red' }] });
    const b = await create('tag-b', { Tags: [{ TagKey: 'team', TagValue: 'blue' }] });
    expect(await kms.lifecycle.tagKey(alice, { keyId: a.keyId, set: [{ key: 'tier', value: 'gold' }] })).toEqual({ team: 'red', tier: 'gold' });
    expect(await kms.lifecycle.tagKey(alice, { keyId: b.keyId, set: [{ key: 'team', value: 'red' }], remove: ['nothing'] })).toEqual({ team: 'red' });
    const red = await listKeyDetail(alice, { TagFilters: [{ TagKey: 'team', TagValue: ['red'] }], Limit: 200 });
    expect(red.keys.map((m) => m.keyId).sort()).toEqual([a.keyId, b.keyId].sort());
    const gold = await listKeyDetail(alice, { TagFilters: [{ TagKey: 'team' }, { TagKey: 'tier', TagValue: ['gold'] }] });
    expect(gold.keys.map((m) => m.keyId)).toEqual([a.keyId]);
    expect(await kms.lifecycle.tagKey(alice, { keyId: a.keyId, set: [], remove: ['tier'] })).toEqual({ team: 'red' });
  });

  test('ListKeys shows Enabled, Disabled and PendingImport keys; ListKeyDetail filters like the reference', async () => {
    const carol = { tenant: '3001', uin: '3001', region: REGION };
    const ids: Record<string, string> = {};
    for (const [alias, over] of [
      ['l-enabled', {}],
      ['l-disabled', {}],
      ['l-pending', {}],
      ['l-import', { Type: 2 }],
      ['l-archived', {}],
      ['l-sign', { KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC' }],
    ] as const) {
      ids[alias] = (await create(alias, over, carol)).keyId;
      clock.advance(1);
    }
    await kms.lifecycle.disableKey(carol, ids['l-disabled']);
    await kms.lifecycle.disableKey(carol, ids['l-pending']);
    await kms.lifecycle.scheduleKeyDeletion(carol, { keyId: ids['l-pending'], pendingWindowDays: 7 });
    await kms.lifecycle.archiveKey(carol, ids['l-archived']);
    const listed = await listKeys(carol, { Limit: 200 });
    expect(listed.keys.map((k) => k.keyId)).toEqual([ids['l-enabled'], ids['l-disabled'], ids['l-import'], ids['l-sign']]);
    expect(listed.totalCount).toBe(4);
    const detail = async (p: ActionParams<'ListKeyDetail'>) => (await listKeyDetail(carol, { Limit: 200, ...p })).keys.map((m) => m.alias);
    expect(await detail({})).toEqual(['l-archived', 'l-import', 'l-pending', 'l-disabled', 'l-enabled']);
    expect(await detail({ OrderType: 1 })).toEqual(['l-enabled', 'l-disabled', 'l-pending', 'l-import', 'l-archived']);
    expect(await detail({ KeyUsage: 'ALL' })).toHaveLength(6);
    expect(await detail({ KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC' })).toEqual(['l-sign']);
    expect(await detail({ KeyState: 3 })).toEqual(['l-pending']);
    expect(await detail({ KeyState: 5 })).toEqual(['l-archived']);
    expect(await detail({ Origin: 'EXTERNAL' })).toEqual(['l-import']);
    expect(await detail({ SearchKeyAlias: 'able' })).toEqual(['l-disabled', 'l-enabled']);
    expect(await detail({ SearchKeyAlias: ids['l-archived'].slice(4, 16) })).toEqual(['l-archived']);
    expect(await detail({ HsmClusterId: 'default', KeyUsage: 'ALL' })).toHaveLength(6);
    const page = await listKeyDetail(carol, { Limit: 2, Offset: 1, OrderType: 1 });
    expect(page.keys.map((m) => m.alias)).toEqual(['l-disabled', 'l-pending']);
    expect(page.totalCount).toBe(5);
    for (const bad of [{ Limit: 201 }, { Limit: 0 }, { Offset: -1 }, { KeyState: 6 }, { Origin: 'tencent_kms' }, { KeyUsage: 'X' }, { Role: 2 }]) {
      await expect(listKeyDetail(carol, bad)).rejects.toBeInstanceOf(E.InvalidParameterError);
    }
  });

  test('the per-account quota counts user keys not pending deletion, atomically', async () => {
    const q = lab.kms(lab.sqlite('quota.db'), { clock, maxKeysPerRegion: 3 });
    const dave = { tenant: '4001', uin: '4001', region: REGION };
    const made = await Promise.allSettled([1, 2, 3, 4, 5].map((i) => q.lifecycle.createKey(dave, { alias: `q${i}` })));
    expect(made.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    expect(made.filter((r) => r.status === 'rejected').map((r) => r.reason)).toEqual([
      expect.any(E.KeyLimitExceededError),
      expect.any(E.KeyLimitExceededError),
    ]);
    await q.lifecycle.createKey(dave, { alias: 'kms-product' }, 'cos');
    const first = (made.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<{ keyId: string }>).value.keyId;
    await q.lifecycle.disableKey(dave, first);
    await q.lifecycle.scheduleKeyDeletion(dave, { keyId: first, pendingWindowDays: 7 });
    await expect(q.lifecycle.createKey(dave, { alias: 'q6' })).resolves.not.toThrow();
    await expect(q.lifecycle.createKey(dave, { alias: 'q7' })).rejects.toBeInstanceOf(E.KeyLimitExceededError);
  });

  test('key ids that are not key ids are refused as such; other tenants see nothing', async () => {
    const { keyId: KeyId } = await create('mine');
    for (const bad of ['', 'abc', KeyId.toUpperCase(), `${KeyId}x`]) {
      await expect(kms.lifecycle.describeKey(alice, bad)).rejects.toBeInstanceOf(E.InvalidKeyIdError);
    }
    await expect(kms.lifecycle.describeKey(bob, KeyId)).rejects.toBeInstanceOf(E.KeyNotFoundError);
    await expect(kms.lifecycle.disableKey(bob, KeyId)).rejects.toBeInstanceOf(E.KeyNotFoundError);
    await expect(kms.lifecycle.describeKey({ ...alice, region: 'ap-beijing' }, KeyId)).rejects.toBeInstanceOf(E.KeyNotFoundError);
    expect((await kms.lifecycle.describeKeys(alice, [KeyId, '00000000-0000-0000-0000-000000000000'])).map((m) => m.keyId)).toEqual([KeyId]);
  });
});
