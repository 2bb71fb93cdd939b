/**
 * KMS-hosted data keys through the official tencentcloud-sdk-nodejs client against a running
 * server (the development installation `make run` makes): every one of the 15 actions and
 * GenerateDataKey with IsHostedByKms=1, their states, bad input, tenant isolation, the CMK's state,
 * and no plaintext data key anywhere in the data directory.
 */
import { constants, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { codeOf, KmsClient, ServerLab } from '../support/server';

type Meta = Record<string, unknown> & { DataKeyId: string; KeyState: string };

const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64');

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

describe('official SDK: KMS-hosted data keys', () => {
  const lab = new ServerLab();
  let c: KmsClient;
  let cmk: string;
  /** Every plaintext data key the tests saw: none may be found in the data directory. */
  const plaintexts: Buffer[] = [];

  beforeAll(async () => {
    await lab.start();
    c = lab.client();
    cmk = (await c.CreateKey({ Alias: 'dk-root' })).KeyId as string;
  }, 60_000);
  afterAll(() => lab.stop());

  const hosted = async (DataKeyName: string, extra: object = {}) => {
    const r = await c.GenerateDataKey({ KeyId: cmk, KeySpec: 'AES_256', IsHostedByKms: 1, DataKeyName, ...extra });
    plaintexts.push(Buffer.from(r.Plaintext as string, 'base64'));
    return r;
  };
  const describe1 = async (id: string) => (await c.DescribeDataKey({ DataKeyId: id })).DataKeyMetadata as Meta;
  const plaintextOf = async (id: string) => Buffer.from((await c.GetDataKeyPlaintext({ DataKeyId: id })).Plaintext as string, 'base64');

  test('GenerateDataKey hosted, Describe(s), GetDataKeyPlaintext, GetDataKeyCiphertextBlob; GetServiceStatus counts them', async () => {
    const before = await c.GetServiceStatus({});
    expect(before).toMatchObject({ IsAllowedDataKeyHosted: true, DataKeyLimit: 1000 });
    const g = await hosted('dk-one', { Description: 'the first', Tags: [{ TagKey: 'team', TagValue: 'qa' }], EncryptionContext: '{"app":"e2e"}' });
    expect(g).toMatchObject({ KeyId: cmk, TagCode: 0 });
    const id = g.DataKeyId as string;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(await describe1(id)).toMatchObject({
      DataKeyId: id,
      KeyId: cmk,
      KeyName: 'dk-root',
      DataKeyName: 'dk-one',
      NumberOfBytes: 32,
      Description: 'the first',
      KeyState: 'Enabled',
      Owner: 'user',
      Origin: 'TENCENT_KMS',
      CreatorUin: lab.root.Uin,
      ResourceId: `creatorUin/${lab.root.Uin}/${id}`,
      DeletionDate: 0,
    });
    expect((await plaintextOf(id)).equals(Buffer.from(g.Plaintext as string, 'base64'))).toBe(true);
    const blob = (await c.GetDataKeyCiphertextBlob({ DataKeyId: id })).CiphertextBlob as string;
    expect(blob).toBe(g.CiphertextBlob);
    expect((await c.Decrypt({ CiphertextBlob: blob, EncryptionContext: '{"app":"e2e"}' })).Plaintext).toBe(g.Plaintext);
    const second = (await hosted('dk-two', { NumberOfBytes: 16 })).DataKeyId as string;
    const many = (await c.DescribeDataKeys({ DataKeyIds: [id, second] })).DataKeyMetadatas as Meta[];
    expect(many.map((m) => m.DataKeyId)).toEqual([id, second]);
    expect(many[1].NumberOfBytes).toBe(16);
    expect((await c.GetServiceStatus({})).DataKeyUsedCount).toBe((before.DataKeyUsedCount as number) + 2);
    // a data key that is not hosted leaves nothing behind and has no id
    const plain = await c.GenerateDataKey({ KeyId: cmk, KeySpec: 'AES_128' });
    expect(plain.DataKeyId).toBeUndefined();
    plaintexts.push(Buffer.from(plain.Plaintext as string, 'base64'));
    expect((await c.GetServiceStatus({})).DataKeyUsedCount).toBe((before.DataKeyUsedCount as number) + 2);
  });

  test('GetDataKeyPlaintext wrapped under EncryptionPublicKey, as GenerateDataKey', async () => {
    const g = await hosted('dk-wrapped');
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const r = await c.GetDataKeyPlaintext({ DataKeyId: g.DataKeyId, EncryptionPublicKey: pem, EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' });
    const opened = privateDecrypt(
      { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      Buffer.from(r.Plaintext as string, 'base64'),
    );
    expect(b64(opened)).toBe(g.Plaintext);
    expect(await codeOf(c.GetDataKeyPlaintext({ DataKeyId: g.DataKeyId, EncryptionPublicKey: pem }))).toBe('UnsupportedOperation');
    expect(await codeOf(c.GetDataKeyPlaintext({ DataKeyId: g.DataKeyId, EncryptionPublicKey: 'not a key', EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }))).toMatch(
      /^InvalidParameter/,
    );
  });

  test('ImportDataKey: plaintext (EXTERNAL) under KeyId, ciphertext of GenerateDataKey (checked against KeyId)', async () => {
    const material = randomBytes(24);
    plaintexts.push(material);
    const imported = await c.ImportDataKey({ DataKeyName: 'dk-plain', ImportKeyMaterial: b64(material), ImportType: 2, KeyId: cmk, Description: 'imported' });
    expect(imported).toMatchObject({ KeyId: cmk, TagCode: 0 });
    expect(await describe1(imported.DataKeyId as string)).toMatchObject({ Origin: 'EXTERNAL', NumberOfBytes: 24, Description: 'imported' });
    expect((await plaintextOf(imported.DataKeyId as string)).equals(material)).toBe(true);

    const made = await c.GenerateDataKey({ KeyId: cmk, NumberOfBytes: 48 });
    plaintexts.push(Buffer.from(made.Plaintext as string, 'base64'));
    const fromBlob = await c.ImportDataKey({ DataKeyName: 'dk-blob', ImportKeyMaterial: made.CiphertextBlob, ImportType: 1 });
    expect(fromBlob.KeyId).toBe(cmk);
    expect(await describe1(fromBlob.DataKeyId as string)).toMatchObject({ Origin: 'TENCENT_KMS', NumberOfBytes: 48 });
    expect(b64(await plaintextOf(fromBlob.DataKeyId as string))).toBe(made.Plaintext);

    const other = (await c.CreateKey({ Alias: 'dk-other-root' })).KeyId as string;
    expect(await codeOf(c.ImportDataKey({ DataKeyName: 'dk-x', ImportKeyMaterial: made.CiphertextBlob, ImportType: 1, KeyId: other }))).toBe(
      'InvalidParameter',
    );
    expect(await codeOf(c.ImportDataKey({ DataKeyName: 'dk-x', ImportKeyMaterial: b64('not a blob at all, just bytes'), ImportType: 1 }))).toBe(
      'InvalidParameterValue.InvalidCiphertext',
    );
    expect(await codeOf(c.ImportDataKey({ DataKeyName: 'dk-x', ImportKeyMaterial: b64(material), ImportType: 2 }))).toBe('InvalidParameter');
    expect(await codeOf(c.ImportDataKey({ DataKeyName: 'dk-x', ImportKeyMaterial: b64(material), ImportType: 3, KeyId: cmk }))).toBe(
      'InvalidParameterValue.InvalidType',
    );
    expect(await codeOf(c.ImportDataKey({ DataKeyName: 'dk-x', ImportKeyMaterial: b64(randomBytes(1025)), ImportType: 2, KeyId: cmk }))).toBe(
      'InvalidParameterValue.InvalidImportKeyMaterial',
    );
    expect(
      await codeOf(c.ImportDataKey({ DataKeyName: 'dk-x', ImportKeyMaterial: b64(material), ImportType: 2, KeyId: cmk, HsmClusterId: 'cls-dev-dedicated' })),
    ).toBe('InvalidParameterValue.InvalidHsmClusterId');
  });

  test('states: Enable/Disable (single and batch), deletion scheduling and cancelling, renaming and describing', async () => {
    const id = (await hosted('dk-states')).DataKeyId as string;
    const id2 = (await hosted('dk-states-2')).DataKeyId as string;
    expect(await codeOf(c.ScheduleDataKeyDeletion({ DataKeyId: id, PendingWindowInDays: 7 }))).toBe('ResourceUnavailable.DataKeyStateNotSupport');
    await c.DisableDataKey({ DataKeyId: id });
    expect((await describe1(id)).KeyState).toBe('Disabled');
    expect(await codeOf(c.GetDataKeyPlaintext({ DataKeyId: id }))).toBe('ResourceUnavailable.DataKeyDisabled');
    expect(await codeOf(c.GetDataKeyCiphertextBlob({ DataKeyId: id }))).toBe('ResourceUnavailable.DataKeyDisabled');
    expect(await codeOf(c.CancelDataKeyDeletion({ DataKeyId: id }))).toBe('ResourceUnavailable.DataKeyNotPendingDelete');
    for (const days of [6, 31]) {
      expect(await codeOf(c.ScheduleDataKeyDeletion({ DataKeyId: id, PendingWindowInDays: days }))).toBe('InvalidParameter.InvalidPendingWindowInDays');
    }
    const s = await c.ScheduleDataKeyDeletion({ DataKeyId: id, PendingWindowInDays: 7 });
    expect(s.DataKeyId).toBe(id);
    expect(s.DeletionDate).toBeGreaterThan(Date.now() / 1000 + 6 * 86400);
    expect(await describe1(id)).toMatchObject({ KeyState: 'PendingDelete', DeletionDate: s.DeletionDate });
    expect(await codeOf(c.GetDataKeyPlaintext({ DataKeyId: id }))).toBe('ResourceUnavailable.DataKeyPendingDelete');
    expect(await codeOf(c.EnableDataKey({ DataKeyId: id }))).toBe('ResourceUnavailable.DataKeyStateNotSupport');
    expect(await codeOf(c.UpdateDataKeyName({ DataKeyId: id, DataKeyName: 'dk-late' }))).toBe('ResourceUnavailable.DataKeyStateNotSupport');
    expect((await c.CancelDataKeyDeletion({ DataKeyId: id })).DataKeyId).toBe(id);
    expect(await describe1(id)).toMatchObject({ KeyState: 'Disabled', DeletionDate: 0 });
    await c.EnableDataKey({ DataKeyId: id });
    await c.DisableDataKeys({ DataKeyIds: [id, id2] });
    expect(((await c.DescribeDataKeys({ DataKeyIds: [id, id2] })).DataKeyMetadatas as Meta[]).map((m) => m.KeyState)).toEqual(['Disabled', 'Disabled']);
    await c.EnableDataKeys({ DataKeyIds: [id, id2] });
    expect(((await c.DescribeDataKeys({ DataKeyIds: [id, id2] })).DataKeyMetadatas as Meta[]).map((m) => m.KeyState)).toEqual(['Enabled', 'Enabled']);
    await c.UpdateDataKeyName({ DataKeyId: id, DataKeyName: 'dk-renamed' });
    await c.UpdateDataKeyDescription({ DataKeyId: id, Description: 'changed' });
    expect(await describe1(id)).toMatchObject({ DataKeyName: 'dk-renamed', Description: 'changed' });
    expect(await codeOf(c.UpdateDataKeyName({ DataKeyId: id2, DataKeyName: 'dk-renamed' }))).toBe('InvalidParameterValue.DataKeyNameAlreadyExists');
    expect(await codeOf(c.GenerateDataKey({ KeyId: cmk, KeySpec: 'AES_256', IsHostedByKms: 1, DataKeyName: 'dk-renamed' }))).toBe(
      'InvalidParameterValue.DataKeyNameAlreadyExists',
    );
  });

  test('the CMK decides too: disabled, its data keys are refused (CmkDisabled); enabled again, they work', async () => {
    const root = (await c.CreateKey({ Alias: 'dk-switch' })).KeyId as string;
    const g = await c.GenerateDataKey({ KeyId: root, KeySpec: 'AES_256', IsHostedByKms: 1, DataKeyName: 'dk-under-switch' });
    plaintexts.push(Buffer.from(g.Plaintext as string, 'base64'));
    await c.DisableKey({ KeyId: root });
    expect(await codeOf(c.GetDataKeyPlaintext({ DataKeyId: g.DataKeyId }))).toBe('ResourceUnavailable.CmkDisabled');
    expect(await codeOf(c.GetDataKeyCiphertextBlob({ DataKeyId: g.DataKeyId }))).toBe('ResourceUnavailable.CmkDisabled');
    expect(await codeOf(c.GenerateDataKey({ KeyId: root, KeySpec: 'AES_256', IsHostedByKms: 1, DataKeyName: 'dk-refused' }))).toBe(
      'ResourceUnavailable.CmkDisabled',
    );
    expect((await describe1(g.DataKeyId as string)).KeyState).toBe('Enabled');
    await c.EnableKey({ KeyId: root });
    expect(b64(await plaintextOf(g.DataKeyId as string))).toBe(g.Plaintext);
    await c.DisableKey({ KeyId: root });
    await c.ScheduleKeyDeletion({ KeyId: root, PendingWindowInDays: 7 });
    expect(await codeOf(c.GetDataKeyPlaintext({ DataKeyId: g.DataKeyId }))).toBe('ResourceUnavailable.KeyPendingDelete');
  });

  test('ListDataKeys and ListDataKeyDetail: paging, order and every filter of the SDK model', async () => {
    const tagged = (await hosted('dk-list-a', { Tags: [{ TagKey: 'list', TagValue: 'yes' }] })).DataKeyId as string;
    const short = (await hosted('dk-list-b', { NumberOfBytes: 8 })).DataKeyId as string;
    const all = await c.ListDataKeys({ Limit: 200 });
    const allIds = (all.DataKeys as Array<{ DataKeyId: string }>).map((d) => d.DataKeyId);
    expect(all.TotalCount).toBe(allIds.length);
    // one second of creation times: ties are ordered by id
    expect(allIds.slice(-2).sort()).toEqual([tagged, short].sort());
    const page = await c.ListDataKeys({ Offset: 1, Limit: 2 });
    expect((page.DataKeys as Array<{ DataKeyId: string }>).map((d) => d.DataKeyId)).toEqual(allIds.slice(1, 3));
    const ids = async (p: object) => ((await c.ListDataKeyDetail({ Limit: 200, ...p })).DataKeyMetadatas as Meta[]).map((m) => m.DataKeyId);
    expect(await ids({})).toEqual([...allIds].reverse());
    expect(await ids({ OrderType: 1 })).toEqual(allIds);
    expect(await ids({ TagFilters: [{ TagKey: 'list', TagValue: ['yes'] }] })).toEqual([tagged]);
    expect(await ids({ DataKeyLen: 8 })).toEqual([short]);
    expect((await ids({ SearchKeyAlias: 'dk-list-' })).sort()).toEqual([short, tagged].sort());
    expect(await ids({ SearchKeyAlias: short.slice(0, 18) })).toEqual([short]);
    expect(await ids({ KeyState: 2 })).toEqual([]);
    expect((await ids({ KeyState: 1 })).length).toBeGreaterThan(2);
    expect(await ids({ Origin: 'EXTERNAL' })).toHaveLength(1);
    expect((await ids({ Origin: 'ALL' })).length).toBe(allIds.length);
    expect((await ids({ KeyId: cmk })).length).toBeGreaterThan(2);
    expect(await ids({ KeyId: '00000000-0000-4000-8000-000000000000' })).toEqual([]);
    expect(await ids({ HsmClusterId: 'cls-dev-dedicated' })).toEqual([]);
    expect((await ids({ HsmClusterId: 'default' })).length).toBe(allIds.length);
    expect(await ids({ Role: 1 })).toEqual([]);
    const detail = await c.ListDataKeyDetail({ Limit: 1, MemberAccounts: [{ MemberAppId: 1, MemberUin: 2 }] });
    expect(detail.TotalCount).toBe(allIds.length);
    expect(await codeOf(c.ListDataKeyDetail({ KeyState: 4 }))).toBe('InvalidParameter');
    expect(await codeOf(c.ListDataKeyDetail({ Origin: 'elsewhere' }))).toBe('InvalidParameter');
    expect(await codeOf(c.ListDataKeys({ Limit: 201 }))).toBe('InvalidParameter');
    expect(await codeOf(c.ListDataKeys({ HsmClusterId: 'cls-unknown' }))).toBe('InvalidParameterValue.InvalidHsmClusterId');
  });

  test('tenant isolation: another tenant names a data key and finds nothing; its lists are its own', async () => {
    const mine = (await hosted('dk-mine')).DataKeyId as string;
    const creds = await lab.server.services.iam.createTenant('dk-tenant-b');
    const b = lab.client(creds);
    for (const call of [
      () => b.DescribeDataKey({ DataKeyId: mine }),
      () => b.GetDataKeyPlaintext({ DataKeyId: mine }),
      () => b.GetDataKeyCiphertextBlob({ DataKeyId: mine }),
      () => b.DisableDataKey({ DataKeyId: mine }),
      () => b.UpdateDataKeyName({ DataKeyId: mine, DataKeyName: 'stolen' }),
      () => b.ScheduleDataKeyDeletion({ DataKeyId: mine, PendingWindowInDays: 7 }),
    ]) {
      expect(await codeOf(call())).toBe('ResourceUnavailable.DataKeyNotFound');
    }
    expect((await b.DescribeDataKeys({ DataKeyIds: [mine] })).DataKeyMetadatas).toEqual([]);
    expect((await b.ListDataKeys({})).TotalCount).toBe(0);
    const made = await c.GenerateDataKey({ KeyId: cmk, KeySpec: 'AES_256' });
    plaintexts.push(Buffer.from(made.Plaintext as string, 'base64'));
    expect(await codeOf(b.ImportDataKey({ DataKeyName: 'dk-b', ImportKeyMaterial: made.CiphertextBlob, ImportType: 1 }))).toMatch(
      /^(InvalidParameterValue\.InvalidCiphertext|ResourceUnavailable\.CmkNotFound)$/,
    );
    expect(await codeOf(b.GenerateDataKey({ KeyId: cmk, KeySpec: 'AES_256', IsHostedByKms: 1, DataKeyName: 'dk-b' }))).toBe('ResourceUnavailable.CmkNotFound');
    // another region is another place
    expect(await codeOf(lab.client(lab.root, 'ap-beijing').DescribeDataKey({ DataKeyId: mine }))).toBe('ResourceUnavailable.DataKeyNotFound');
    expect((await describe1(mine)).KeyState).toBe('Enabled');
  });

  test('CAM: sub-accounts are authorised on datakey/creatorUin/… resources; presets as documented', async () => {
    const id = (await hosted('dk-cam')).DataKeyId as string;
    const iam = lab.server.services.iam;
    const tenant = String(lab.root.Uin);
    const reader = await iam.createUser(tenant, 'dk-reader');
    await iam.attachPolicy(String(reader.Uin), 'dk-read', {
      version: '2.0',
      statement: [
        { effect: 'allow', action: ['kms:DescribeDataKey', 'kms:ListDataKeys'], resource: [`qcs::kms:*:uin/${tenant}:datakey/*`] },
        { effect: 'allow', action: 'kms:*', resource: `qcs::kms:*:uin/${tenant}:key/*` },
      ],
    });
    const r = lab.client(reader);
    expect(((await r.DescribeDataKey({ DataKeyId: id })).DataKeyMetadata as Meta).DataKeyId).toBe(id);
    expect((await r.ListDataKeys({ Limit: 200 })).TotalCount).toBeGreaterThan(0);
    // kms:* on key resources does not reach data keys
    expect(await codeOf(r.GetDataKeyPlaintext({ DataKeyId: id }))).toBe('UnauthorizedOperation');
    expect(await codeOf(r.DisableDataKey({ DataKeyId: id }))).toBe('UnauthorizedOperation');
    const ro = await iam.createUser(tenant, 'dk-readonly');
    await iam.attachPolicy(String(ro.Uin), 'ro', 'QcloudKMSReadOnlyAccess');
    const roc = lab.client(ro);
    expect(((await roc.DescribeDataKeys({ DataKeyIds: [id] })).DataKeyMetadatas as Meta[]).length).toBe(1);
    expect(await codeOf(roc.GetDataKeyPlaintext({ DataKeyId: id }))).toBe('UnauthorizedOperation');
    expect(await codeOf(roc.GetDataKeyCiphertextBlob({ DataKeyId: id }))).toBe('UnauthorizedOperation');
    // QcloudKMSCreatorFullAccess: everything on the data keys it made, nothing on the root's
    const creator = await iam.createUser(tenant, 'dk-creator');
    await iam.attachPolicy(String(creator.Uin), 'creator', 'QcloudKMSCreatorFullAccess');
    const cc = lab.client(creator);
    const ownKey = (await cc.CreateKey({ Alias: 'dk-creator-root' })).KeyId as string;
    const own = await cc.GenerateDataKey({ KeyId: ownKey, KeySpec: 'AES_256', IsHostedByKms: 1, DataKeyName: 'dk-creator-own' });
    plaintexts.push(Buffer.from(own.Plaintext as string, 'base64'));
    expect(((await cc.DescribeDataKey({ DataKeyId: own.DataKeyId })).DataKeyMetadata as Meta).CreatorUin).toBe(creator.Uin);
    expect((await cc.GetDataKeyPlaintext({ DataKeyId: own.DataKeyId })).Plaintext).toBe(own.Plaintext);
    expect(await codeOf(cc.GetDataKeyPlaintext({ DataKeyId: id }))).toBe('UnauthorizedOperation');
    expect((await cc.ListDataKeyDetail({ Limit: 200 })).TotalCount).toBeGreaterThan(1);
  });

  const dkId = '00000000-0000-4000-8000-000000000001';
  // [action, body, code]: wrong types, missing, unknown and oversize fields, bad values, for each new action
  const BAD: Array<[string, object, string]> = [
    ['GenerateDataKey', { KeyId: 'CMK', KeySpec: 'AES_256', IsHostedByKms: 2, DataKeyName: 'x' }, 'InvalidParameter'],
    ['GenerateDataKey', { KeyId: 'CMK', KeySpec: 'AES_256', IsHostedByKms: 1 }, 'InvalidParameterValue.InvalidDataKeyName'],
    ['GenerateDataKey', { KeyId: 'CMK', KeySpec: 'AES_256', IsHostedByKms: 1, DataKeyName: 'bad name!' }, 'InvalidParameterValue.InvalidDataKeyName'],
    ['GenerateDataKey', { KeyId: 'CMK', KeySpec: 'AES_256', IsHostedByKms: 1, DataKeyName: 'x'.repeat(257) }, 'InvalidParameterValue.InvalidDataKeyName'],
    ['GenerateDataKey', { KeyId: 'CMK', KeySpec: 'AES_256', IsHostedByKms: 1, DataKeyName: 'ok', Description: 'd'.repeat(101) }, 'InvalidParameter'],
    ['GenerateDataKey', { KeyId: 'CMK', KeySpec: 'AES_256', IsHostedByKms: '1', DataKeyName: 'ok' }, 'InvalidParameter'],
    ['ImportDataKey', { ImportKeyMaterial: 'AAAA', ImportType: 2 }, 'MissingParameter'],
    ['ImportDataKey', { DataKeyName: 'x', ImportKeyMaterial: 'AAAA' }, 'MissingParameter'],
    ['ImportDataKey', { DataKeyName: 'x', ImportKeyMaterial: 'not base64!', ImportType: 2, KeyId: 'CMK' }, 'InvalidParameterValue.InvalidImportKeyMaterial'],
    ['ImportDataKey', { DataKeyName: 'x', ImportKeyMaterial: 'A'.repeat(8196), ImportType: 2 }, 'InvalidParameterValue.InvalidImportKeyMaterial'],
    ['ImportDataKey', { DataKeyName: 'x', ImportKeyMaterial: 'AAAA', ImportType: '2' }, 'InvalidParameter'],
    ['ImportDataKey', { DataKeyName: 'x', ImportKeyMaterial: 'AAAA', ImportType: 2, Extra: 1 }, 'UnknownParameter'],
    ['DescribeDataKey', {}, 'MissingParameter'],
    ['DescribeDataKey', { DataKeyId: 5 }, 'InvalidParameter'],
    ['DescribeDataKey', { DataKeyId: 'nope' }, 'InvalidParameterValue.InvalidDataKeyId'],
    ['DescribeDataKey', { DataKeyId: 'x'.repeat(129) }, 'InvalidParameterValue.InvalidDataKeyId'],
    ['DescribeDataKey', { DataKeyId: dkId }, 'ResourceUnavailable.DataKeyNotFound'],
    ['DescribeDataKey', { DataKeyId: dkId, KeyId: 'x' }, 'UnknownParameter'],
    ['DescribeDataKeys', { DataKeyIds: dkId }, 'InvalidParameter'],
    ['DescribeDataKeys', { DataKeyIds: [] }, 'InvalidParameter'],
    ['DescribeDataKeys', { DataKeyIds: [dkId, dkId] }, 'InvalidParameterValue.DuplicatedDataKeyId'],
    ['DescribeDataKeys', { DataKeyIds: Array.from({ length: 101 }, () => dkId) }, 'InvalidParameter'],
    ['ListDataKeys', { Offset: -1 }, 'InvalidParameter'],
    ['ListDataKeys', { Limit: '10' }, 'InvalidParameter'],
    ['ListDataKeys', { Role: 3 }, 'InvalidParameter'],
    ['ListDataKeyDetail', { OrderType: 2 }, 'InvalidParameter'],
    ['ListDataKeyDetail', { DataKeyLen: 2000 }, 'InvalidParameter'],
    ['ListDataKeyDetail', { TagFilters: [{ TagValue: ['x'] }] }, 'MissingParameter'],
    ['ListDataKeyDetail', { SearchKeyAlias: 'x'.repeat(61) }, 'InvalidParameterValue'],
    ['EnableDataKey', { DataKeyId: dkId }, 'ResourceUnavailable.DataKeyNotFound'],
    ['EnableDataKey', { DataKeyId: null }, 'MissingParameter'],
    ['EnableDataKeys', { DataKeyIds: ['nope'] }, 'InvalidParameterValue.InvalidDataKeyId'],
    ['DisableDataKey', { DataKeyId: [dkId] }, 'InvalidParameter'],
    ['DisableDataKeys', { MemberAccount: { MemberUin: 1 } }, 'MissingParameter'],
    ['ScheduleDataKeyDeletion', { DataKeyId: dkId }, 'MissingParameter'],
    ['ScheduleDataKeyDeletion', { DataKeyId: dkId, PendingWindowInDays: 7.5 }, 'InvalidParameter'],
    ['ScheduleDataKeyDeletion', { DataKeyId: dkId, PendingWindowInDays: 100 }, 'InvalidParameter.InvalidPendingWindowInDays'],
    ['CancelDataKeyDeletion', { DataKeyId: dkId }, 'ResourceUnavailable.DataKeyNotFound'],
    ['GetDataKeyPlaintext', { DataKeyId: dkId, EncryptionPublicKey: 'x'.repeat(5000) }, 'InvalidParameterValue'],
    ['GetDataKeyPlaintext', { DataKeyId: dkId, MemberAccount: {} }, 'UnknownParameter'],
    ['GetDataKeyCiphertextBlob', { DataKeyId: 1 }, 'InvalidParameter'],
    ['UpdateDataKeyName', { DataKeyId: dkId }, 'MissingParameter'],
    ['UpdateDataKeyName', { DataKeyId: dkId, DataKeyName: '' }, 'InvalidParameterValue.InvalidDataKeyName'],
    ['UpdateDataKeyDescription', { DataKeyId: dkId, Description: 'd'.repeat(1025) }, 'InvalidParameter'],
    ['UpdateDataKeyDescription', { DataKeyId: dkId, Description: 7 }, 'InvalidParameter'],
  ];
  test.each(BAD)('bad input: %s %j -> %s', async (action, body, code) => {
    const withCmk = JSON.parse(JSON.stringify(body).replaceAll('"CMK"', JSON.stringify(cmk))) as object;
    expect(await codeOf(c[action](withCmk))).toBe(code);
  });

  test('no plaintext data key is anywhere in the data directory (SQLite files, WAL, audit, logs)', async () => {
    await lab.server.services.kms.jobs.runOnce();
    const files = filesUnder(lab.dir);
    expect(files.some((f) => f.endsWith('.db'))).toBe(true);
    expect(plaintexts.length).toBeGreaterThan(8);
    const found: string[] = [];
    for (const file of files) {
      const bytes = readFileSync(file);
      for (const p of plaintexts) {
        for (const needle of [p, Buffer.from(p.toString('base64')), Buffer.from(p.toString('hex'))]) if (bytes.includes(needle)) found.push(file);
      }
    }
    expect(found).toEqual([]);
  });
});
