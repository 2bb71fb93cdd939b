/**
 * Issue 11, section 8, through the official SDK against a development server: the per-tenant cap
 * on expensive actions (limits.expensivePerTenant, default 4). Tenant A's places are held through
 * the core's limiter (as four slow requests in flight would hold them), so the refusal is not a
 * race; tenant B (the development root, on the shared pool and on its dedicated cluster) is served.
 */
import { constants, createPublicKey, publicEncrypt } from 'node:crypto';
import { DEV_DEDICATED_CLUSTER } from '../../src/cli/dev-init';
import { codeOf, Credentials, KmsClient, ServerLab } from '../support/server';

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('per-tenant cap on expensive actions (SDK)', () => {
  const lab = new ServerLab();
  let a: KmsClient;
  let b: KmsClient;
  let tenantA: Credentials;

  beforeAll(async () => {
    await lab.start();
    tenantA = await lab.server.services.iam.createTenant('tenant-a');
    a = lab.client(tenantA);
    b = lab.client();
  }, 60_000);
  afterAll(() => lab.stop());

  test('the default cap is 4 per tenant', () => {
    expect(lab.server.services.config.expensivePerTenant).toBe(4);
    expect(lab.server.services.kms.expensive.perTenant).toBe(4);
  });

  test("with tenant A at the cap, A's next GetParametersForImport, asymmetric CreateKey, AsymmetricRsaDecrypt and SignByAsymmetricKey are RequestLimitExceeded; B's are served", async () => {
    const ext = (await a.CreateKey({ Alias: 'a-ext', Type: 2 })).KeyId as string;
    const dec = (await a.CreateKey({ Alias: 'a-dec', KeyUsage: 'ASYMMETRIC_DECRYPT_RSA_2048' })).KeyId as string;
    const sig = (await a.CreateKey({ Alias: 'a-sig', KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC' })).KeyId as string;
    const aes = (await a.CreateKey({ Alias: 'a-aes' })).KeyId as string;
    const pem = (await a.GetPublicKey({ KeyId: dec })).PublicKeyPem as string;
    const ciphertext = publicEncrypt({ key: createPublicKey(pem), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, Buffer.from('x')).toString(
      'base64',
    );
    const bExt = (await b.CreateKey({ Alias: 'b-ext', Type: 2 })).KeyId as string;

    const limiter = lab.server.services.kms.expensive;
    const held = Array.from({ length: 4 }, () => limiter.acquire(String(tenantA.Uin), 'test'));
    try {
      const refused = await Promise.all([
        codeOf(a.GetParametersForImport({ KeyId: ext, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' })),
        codeOf(a.CreateKey({ Alias: 'a-rsa-new', KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_RSA_2048' })),
        codeOf(a.AsymmetricRsaDecrypt({ KeyId: dec, Ciphertext: ciphertext, Algorithm: 'RSAES_OAEP_SHA_1' })),
        codeOf(a.SignByAsymmetricKey({ KeyId: sig, Algorithm: 'ECC_P256_R1', Message: b64('m'), MessageType: 'RAW' })),
      ]);
      expect(refused).toEqual(Array(4).fill('RequestLimitExceeded.UinLimitExceeded'));
      // cheap work of A goes on
      expect((await a.Encrypt({ KeyId: aes, Plaintext: b64('cheap') })).CiphertextBlob).toBeTruthy();
      // B is served, on the shared pool and on its dedicated cluster
      const served = await Promise.all([
        b.GetParametersForImport({ KeyId: bExt, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' }),
        b.CreateKey({ Alias: 'b-rsa', KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_RSA_2048' }),
        b.CreateKey({ Alias: 'b-rsa-dedicated', KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_RSA_2048', HsmClusterId: DEV_DEDICATED_CLUSTER }),
      ]);
      expect(served[0].PublicKey).toBeTruthy();
      expect(served[2].HsmClusterId).toBe(DEV_DEDICATED_CLUSTER);
    } finally {
      held.forEach((release) => release());
    }
    expect((await a.AsymmetricRsaDecrypt({ KeyId: dec, Ciphertext: ciphertext, Algorithm: 'RSAES_OAEP_SHA_1' })).Plaintext).toBe(b64('x'));
  }, 60_000);

  test('the same External key asking again within the validity gets the same public key', async () => {
    const ext = (await b.CreateKey({ Alias: 'b-reuse', Type: 2 })).KeyId as string;
    const ask = () => b.GetParametersForImport({ KeyId: ext, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' });
    const [first, second] = [await ask(), await ask()];
    expect(second.PublicKey).toBe(first.PublicKey);
    expect(second.ParametersValidTo).toBe(first.ParametersValidTo);
    expect(second.ImportToken).not.toBe(first.ImportToken);
  });
});
