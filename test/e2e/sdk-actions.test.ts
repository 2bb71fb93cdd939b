/**
 * The official tencentcloud-sdk-nodejs client against a running server (the development
 * installation `make run` makes), through every served action.
 */
import { constants, createHash, createPublicKey, createVerify, publicEncrypt, randomBytes } from 'node:crypto';
import { codeOf, KmsClient, ServerLab } from '../support/server';

describe('official SDK: every served action', () => {
  const lab = new ServerLab();
  let c: KmsClient;
  let keyId: string;

  beforeAll(async () => {
    await lab.start();
    c = lab.client();
    keyId = (await c.CreateKey({ Alias: 'e2e-main', Description: 'end to end', Tags: [{ TagKey: 'team', TagValue: 'qa' }] })).KeyId as string;
  }, 60_000);
  afterAll(() => lab.stop());

  const b64 = (s: string) => Buffer.from(s).toString('base64');

  test('service actions: GetServiceStatus reports the dedicated cluster, GetRegions, ListAlgorithms from the HSMs', async () => {
    const status = await c.GetServiceStatus({});
    expect(status).toMatchObject({ ServiceEnabled: true, ExclusiveHSMEnabled: true, ExclusiveHSMList: [{ HsmClusterId: 'cls-dev-dedicated' }], CmkLimit: 200 });
    expect(typeof status.RequestId).toBe('string');
    expect((await c.GetRegions({})).Regions).toEqual(['ap-guangzhou', 'ap-shanghai', 'ap-beijing']);
    const algs = await c.ListAlgorithms({});
    expect(algs.SymmetricAlgorithms).toEqual([{ KeyUsage: 'ENCRYPT_DECRYPT', Algorithm: 'AES_256' }]);
    expect(algs.AsymmetricSignVerifyAlgorithms).toEqual(expect.arrayContaining([{ KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC', Algorithm: 'ECC_P256' }]));
    expect(JSON.stringify(algs)).not.toContain('SM2');
  });

  test('lifecycle: Describe, List, Update, Enable/Disable (single and batch), Archive, deletion scheduling, tags on create', async () => {
    expect((await c.DescribeKey({ KeyId: keyId })).KeyMetadata).toMatchObject({
      KeyId: keyId,
      Alias: 'e2e-main',
      KeyState: 'Enabled',
      Origin: 'TENCENT_KMS',
      CreatorUin: lab.root.Uin,
    });
    const second = (await c.CreateKey({ Alias: 'e2e-second' })).KeyId as string;
    expect(((await c.DescribeKeys({ KeyIds: [keyId, second] })).KeyMetadatas as unknown[]).length).toBe(2);
    expect((await c.ListKeys({ Limit: 200 })).TotalCount).toBeGreaterThanOrEqual(2);
    const tagged = await c.ListKeyDetail({ TagFilters: [{ TagKey: 'team', TagValue: ['qa'] }] });
    expect((tagged.KeyMetadatas as Array<{ KeyId: string }>).map((k) => k.KeyId)).toEqual([keyId]);
    await c.UpdateAlias({ KeyId: second, Alias: 'e2e-renamed' });
    await c.UpdateKeyDescription({ KeyId: second, Description: 'changed' });
    expect((await c.DescribeKey({ KeyId: second })).KeyMetadata).toMatchObject({ Alias: 'e2e-renamed', Description: 'changed' });
    await c.DisableKeys({ KeyIds: [second] });
    expect(await codeOf(c.Encrypt({ KeyId: second, Plaintext: b64('x disabled') }))).toBe('ResourceUnavailable.CmkDisabled');
    await c.EnableKeys({ KeyIds: [second] });
    await c.ArchiveKey({ KeyId: second });
    expect(await codeOf(c.Encrypt({ KeyId: second, Plaintext: b64('x archived') }))).toBe('ResourceUnavailable.CmkArchived');
    await c.CancelKeyArchive({ KeyId: second });
    expect(await codeOf(c.ScheduleKeyDeletion({ KeyId: second, PendingWindowInDays: 7 }))).toBe('ResourceUnavailable.CmkShouldBeDisabled');
    await c.DisableKey({ KeyId: second });
    expect(await codeOf(c.ScheduleKeyDeletion({ KeyId: second, PendingWindowInDays: 3 }))).toBe('InvalidParameter.InvalidPendingWindowInDays');
    const scheduled = await c.ScheduleKeyDeletion({ KeyId: second, PendingWindowInDays: 7 });
    expect(scheduled.DeletionDate).toBeGreaterThan(Date.now() / 1000 + 6 * 86400);
    expect(await codeOf(c.Decrypt({ CiphertextBlob: 'AAAA' }))).toBe('InvalidParameterValue.InvalidCiphertext');
    await c.CancelKeyDeletion({ KeyId: second });
    expect(await codeOf(c.CancelKeyDeletion({ KeyId: second }))).toBe('ResourceUnavailable.CmkNotPendingDelete');
    await c.EnableKey({ KeyId: second });
    expect(await codeOf(c.CreateKey({ Alias: 'e2e-main' }))).toBe('InvalidParameterValue.AliasAlreadyExists');
    expect(await codeOf(c.CreateKey({ Alias: 'kms-reserved' }))).toBe('InvalidParameterValue.InvalidAlias');
    expect(await codeOf(c.CreateKey({ Alias: 'e2e-sm2', KeyUsage: 'ASYMMETRIC_DECRYPT_SM2' }))).toBe('UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion');
  });

  test('rotation: Enable/Disable/GetKeyRotationStatus, RotateKey; old ciphertext still decrypts', async () => {
    const before = (await c.Encrypt({ KeyId: keyId, Plaintext: b64('before rotation') })).CiphertextBlob as string;
    await c.EnableKeyRotation({ KeyId: keyId, RotateDays: 90 });
    expect(await c.GetKeyRotationStatus({ KeyId: keyId })).toMatchObject({ KeyRotationEnabled: true });
    expect(await codeOf(c.EnableKeyRotation({ KeyId: keyId, RotateDays: 3 }))).toMatch(/^InvalidParameter/);
    const { TaskId } = await c.RotateKey({ KeyId: keyId });
    expect(typeof TaskId).toBe('string');
    expect(((await c.DescribeKey({ KeyId: keyId })).KeyMetadata as { LastRotateTime: number }).LastRotateTime).toBeGreaterThan(0);
    expect(Buffer.from((await c.Decrypt({ CiphertextBlob: before })).Plaintext as string, 'base64').toString()).toBe('before rotation');
    const moved = await c.ReEncrypt({ CiphertextBlob: before });
    expect(moved).toMatchObject({ ReEncrypted: true, KeyId: keyId, SourceKeyId: keyId });
    await c.DisableKeyRotation({ KeyId: keyId });
    expect(await c.GetKeyRotationStatus({ KeyId: keyId })).toMatchObject({ KeyRotationEnabled: false });
  });

  test('envelope: Encrypt/Decrypt with context, GenerateDataKey, GenerateRandom', async () => {
    const enc = await c.Encrypt({ KeyId: keyId, Plaintext: b64('hello sdk'), EncryptionContext: '{"app":"e2e"}' });
    expect(enc.KeyId).toBe(keyId);
    const dec = await c.Decrypt({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: '{"app":"e2e"}' });
    expect(Buffer.from(dec.Plaintext as string, 'base64').toString()).toBe('hello sdk');
    expect(await codeOf(c.Decrypt({ CiphertextBlob: enc.CiphertextBlob }))).toBe('InvalidParameterValue.InvalidCiphertext');
    const dk = await c.GenerateDataKey({ KeyId: keyId, KeySpec: 'AES_256' });
    expect(Buffer.from(dk.Plaintext as string, 'base64')).toHaveLength(32);
    expect((await c.Decrypt({ CiphertextBlob: dk.CiphertextBlob })).Plaintext).toBe(dk.Plaintext);
    expect(Buffer.from((await c.GenerateRandom({ NumberOfBytes: 64 })).Plaintext as string, 'base64')).toHaveLength(64);
    expect(await codeOf(c.Encrypt({ KeyId: keyId, Plaintext: Buffer.alloc(4097).toString('base64') }))).toBe('InvalidParameterValue.InvalidPlaintext');
  });

  test('asymmetric: GetPublicKey, AsymmetricRsaDecrypt, Sign/Verify, SM2 refused', async () => {
    const rsa = (await c.CreateKey({ Alias: 'e2e-rsa', KeyUsage: 'ASYMMETRIC_DECRYPT_RSA_2048' })).KeyId as string;
    const pub = await c.GetPublicKey({ KeyId: rsa });
    expect(String(pub.PublicKeyPem)).toContain('BEGIN PUBLIC KEY');
    const ct = publicEncrypt({ key: pub.PublicKeyPem as string, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, Buffer.from('rsa secret'));
    const pt = await c.AsymmetricRsaDecrypt({ KeyId: rsa, Ciphertext: ct.toString('base64'), Algorithm: 'RSAES_OAEP_SHA_1' });
    expect(Buffer.from(pt.Plaintext as string, 'base64').toString()).toBe('rsa secret');
    expect(await codeOf(c.AsymmetricSm2Decrypt({ KeyId: rsa, Ciphertext: ct.toString('base64') }))).toBe('InvalidParameterValue.InvalidKeyUsage');
    const ecc = (await c.CreateKey({ Alias: 'e2e-ecc', KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC' })).KeyId as string;
    const eccPem = (await c.GetPublicKey({ KeyId: ecc })).PublicKeyPem as string;
    const message = Buffer.from('signed by the HSM');
    const sig = await c.SignByAsymmetricKey({ KeyId: ecc, Algorithm: 'ECC_P256_R1', Message: message.toString('base64') });
    expect(
      createVerify('sha256')
        .update(message)
        .verify(eccPem, Buffer.from(sig.Signature as string, 'base64')),
    ).toBe(true);
    const digest = createHash('sha256').update(message).digest('base64');
    const verified = await c.VerifyByAsymmetricKey({
      KeyId: ecc,
      Algorithm: 'ECC_P256_R1',
      Message: digest,
      MessageType: 'DIGEST',
      SignatureValue: sig.Signature,
    });
    expect(verified.SignatureValid).toBe(true);
  });

  test('import: GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial; OAEP-SHA-256 names the HSM limit', async () => {
    const ext = (await c.CreateKey({ Alias: 'e2e-byok', Type: 2 })).KeyId as string;
    expect(((await c.DescribeKey({ KeyId: ext })).KeyMetadata as { KeyState: string }).KeyState).toBe('PendingImport');
    expect(await codeOf(c.GetParametersForImport({ KeyId: ext, WrappingAlgorithm: 'RSAES_OAEP_SHA_256', WrappingKeySpec: 'RSA_2048' }))).toBe(
      'UnsupportedOperation',
    );
    const p = await c.GetParametersForImport({ KeyId: ext, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' });
    const key = createPublicKey({ key: Buffer.from(p.PublicKey as string, 'base64'), format: 'der', type: 'spki' });
    const wrapped = publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, randomBytes(32));
    await c.ImportKeyMaterial({ KeyId: ext, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapped.toString('base64') });
    const blob = (await c.Encrypt({ KeyId: ext, Plaintext: b64('imported') })).CiphertextBlob;
    await c.DeleteImportedKeyMaterial({ KeyId: ext });
    expect(await codeOf(c.Decrypt({ CiphertextBlob: blob }))).toBe('ResourceUnavailable.CmkStateNotSupport');
    expect(await codeOf(c.ImportKeyMaterial({ KeyId: ext, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapped.toString('base64') }))).toMatch(
      /^InvalidParameter/,
    );
  });

  test('cloud resources: Bind/Unbind; a bound key cannot be disabled', async () => {
    await c.BindCloudResource({ KeyId: keyId, ProductId: 'cvm', ResourceId: 'ins-1' });
    expect(await codeOf(c.DisableKey({ KeyId: keyId }))).toBe('FailedOperation.CmkUsedByCloudProduct');
    await c.UnbindCloudResource({ KeyId: keyId, ProductId: 'cvm', ResourceId: 'ins-1' });
    expect(await codeOf(c.UnbindCloudResource({ KeyId: keyId, ProductId: 'cvm', ResourceId: 'ins-1' }))).toBe(
      'ResourceUnavailable.CloudResourceBindingNotFound',
    );
  });

  test('dedicated cluster: the owner creates keys in it; HsmClusterId is reported and filters lists', async () => {
    const k = await c.CreateKey({ Alias: 'e2e-dedicated', HsmClusterId: 'cls-dev-dedicated' });
    expect(k.HsmClusterId).toBe('cls-dev-dedicated');
    const listed = await c.ListKeyDetail({ HsmClusterId: 'cls-dev-dedicated' });
    expect((listed.KeyMetadatas as Array<{ KeyId: string }>).map((m) => m.KeyId)).toEqual([k.KeyId]);
    const shared = await c.ListKeyDetail({ HsmClusterId: 'default', Limit: 200 });
    expect((shared.KeyMetadatas as Array<{ KeyId: string }>).map((m) => m.KeyId)).not.toContain(k.KeyId);
    expect(await codeOf(c.CreateKey({ Alias: 'e2e-nowhere', HsmClusterId: 'cls-unknown' }))).toBe('InvalidParameterValue.InvalidHsmClusterId');
  });

  test('other SDK actions answer UnsupportedOperation; unknown regions are refused', async () => {
    const refusal = (p: Promise<unknown>) =>
      p.then(
        () => ({ code: 'none', message: '' }),
        (e: { code: string; message: string }) => e,
      );
    const whiteBox = await refusal(c.CreateWhiteBoxKey({ Alias: 'wb', Algorithm: 'AES_256' }));
    expect(whiteBox.code).toBe('UnsupportedOperation');
    expect(whiteBox.message).toMatch(/white-box library/);
    const postQuantum = await refusal(c.PostQuantumCryptoEncrypt({ KeyId: keyId, PlainText: b64('x') }));
    expect(postQuantum.code).toBe('UnsupportedOperation');
    expect(postQuantum.message).toMatch(/ML-KEM.*none of the supported PKCS#11 tokens/);
    expect(await codeOf(lab.client(lab.root, 'mars-north-1').ListKeys({}))).toBe('UnsupportedRegion');
  });
});
