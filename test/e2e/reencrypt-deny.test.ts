/**
 * Security section 5, "ReEncrypt is not a way around a Decrypt deny", through the official SDK:
 * ReEncrypt needs kms:ReEncrypt on both keys, kms:Decrypt on the source and kms:Encrypt on the
 * destination, so a sub-account denied kms:Decrypt on k1 can never turn k1's ciphertext into one it
 * may decrypt.
 */
import { keyResource } from '../../src/iam/resources';
import { codeOf, KmsClient, ServerLab } from '../support/server';

describe('ReEncrypt and a Decrypt deny', () => {
  const lab = new ServerLab();
  let root: KmsClient;
  let k1: string;
  let k2: string;
  let noDecryptK1: KmsClient;
  let noEncryptK2: KmsClient;
  let reEncryptOnly: KmsClient;
  let allowed: KmsClient;
  const pt = Buffer.from('k1 secret').toString('base64');

  beforeAll(async () => {
    await lab.start();
    root = lab.client();
    k1 = (await root.CreateKey({ Alias: 'reenc-k1' })).KeyId as string;
    k2 = (await root.CreateKey({ Alias: 'reenc-k2' })).KeyId as string;
    const tenant = String(lab.root.Uin);
    const res = (keyId: string) => keyResource({ region: 'ap-guangzhou', tenantUin: tenant, creatorUin: tenant, keyId });
    const iam = lab.server.services.iam;
    const user = async (name: string, statement: object[]) => {
      const u = await iam.createUser(tenant, name, {});
      await iam.attachPolicy(String(u.Uin), `${name}-policy`, { version: '2.0', statement });
      return lab.client(u);
    };
    const both = [res(k1), res(k2)];
    noDecryptK1 = await user('no-decrypt-k1', [
      { effect: 'allow', action: ['kms:*'], resource: both },
      { effect: 'deny', action: ['kms:Decrypt'], resource: [res(k1)] },
    ]);
    noEncryptK2 = await user('no-encrypt-k2', [
      { effect: 'allow', action: ['kms:*'], resource: both },
      { effect: 'deny', action: ['kms:Encrypt'], resource: [res(k2)] },
    ]);
    reEncryptOnly = await user('reencrypt-only', [{ effect: 'allow', action: ['kms:ReEncrypt'], resource: both }]);
    allowed = await user('reencrypt-allowed', [{ effect: 'allow', action: ['kms:ReEncrypt', 'kms:Decrypt', 'kms:Encrypt'], resource: both }]);
  }, 60_000);
  afterAll(() => lab.stop());

  const blobOf = async (keyId: string) => (await root.Encrypt({ KeyId: keyId, Plaintext: pt })).CiphertextBlob as string;

  test('denied kms:Decrypt on k1: Decrypt and ReEncrypt of a k1 ciphertext (to k2, or to k1 itself) are refused', async () => {
    const blob = await blobOf(k1);
    expect(await codeOf(noDecryptK1.Decrypt({ CiphertextBlob: blob }))).toBe('UnauthorizedOperation');
    expect(await codeOf(noDecryptK1.ReEncrypt({ CiphertextBlob: blob, DestinationKeyId: k2 }))).toBe('UnauthorizedOperation');
    expect(await codeOf(noDecryptK1.ReEncrypt({ CiphertextBlob: blob }))).toBe('UnauthorizedOperation');
    expect(await codeOf(noDecryptK1.ReEncrypt({ CiphertextBlob: blob, DestinationKeyId: k1 }))).toBe('UnauthorizedOperation');
  });

  test('the allowed cases still work for that sub-account: k2 → k1, k2 → k2, Encrypt under k1', async () => {
    const blob2 = await blobOf(k2);
    const toK1 = await noDecryptK1.ReEncrypt({ CiphertextBlob: blob2, DestinationKeyId: k1 });
    expect(toK1).toMatchObject({ KeyId: k1, SourceKeyId: k2, ReEncrypted: true });
    expect((await root.Decrypt({ CiphertextBlob: toK1.CiphertextBlob })).Plaintext).toBe(pt);
    expect(await codeOf(noDecryptK1.Decrypt({ CiphertextBlob: toK1.CiphertextBlob }))).toBe('UnauthorizedOperation');
    await expect(noDecryptK1.ReEncrypt({ CiphertextBlob: blob2, DestinationKeyId: k2 })).resolves.toMatchObject({ KeyId: k2 });
    await expect(noDecryptK1.Encrypt({ KeyId: k1, Plaintext: pt })).resolves.toMatchObject({ KeyId: k1 });
  });

  test('denied kms:Encrypt on k2: ReEncrypt to k2 is refused, to k1 works', async () => {
    const blob = await blobOf(k1);
    expect(await codeOf(noEncryptK2.ReEncrypt({ CiphertextBlob: blob, DestinationKeyId: k2 }))).toBe('UnauthorizedOperation');
    await expect(noEncryptK2.ReEncrypt({ CiphertextBlob: await blobOf(k2), DestinationKeyId: k1 })).resolves.toMatchObject({ KeyId: k1 });
  });

  test('kms:ReEncrypt alone is not enough; with kms:Decrypt on the source and kms:Encrypt on the destination it is', async () => {
    const blob = await blobOf(k1);
    expect(await codeOf(reEncryptOnly.ReEncrypt({ CiphertextBlob: blob, DestinationKeyId: k2 }))).toBe('UnauthorizedOperation');
    const moved = await allowed.ReEncrypt({ CiphertextBlob: blob, DestinationKeyId: k2 });
    expect(moved).toMatchObject({ KeyId: k2, SourceKeyId: k1, ReEncrypted: true });
    expect((await allowed.Decrypt({ CiphertextBlob: moved.CiphertextBlob })).Plaintext).toBe(pt);
  });

  test('root is not affected', async () => {
    await expect(root.ReEncrypt({ CiphertextBlob: await blobOf(k1), DestinationKeyId: k2 })).resolves.toMatchObject({ KeyId: k2 });
  });
});
