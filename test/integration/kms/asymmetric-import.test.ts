import { constants, createPublicKey, createSign, createVerify, generateKeyPairSync, publicEncrypt, randomBytes, createHash } from 'node:crypto';
import { publicKeyAnswer } from '../../../src/api/kms-wire';
import { HsmCluster } from '../../../src/hsm/cluster';
import { ManualClock } from '../../../src/common/clock';
import * as E from '../../../src/kms/errors';
import type { Kms } from '../../../src/kms/service';
import { IMPORT_FAILED_MESSAGE } from '../../../src/kms/key-import';
import { alice, bob, KmsLab } from '../../support/kms';

const clock = new ManualClock(Date.UTC(2026, 10, 23));
const now = () => Math.floor(clock.now() / 1000);

describe('KMS core: asymmetric keys', () => {
  let lab: KmsLab;
  let kms: Kms;

  beforeAll(async () => {
    lab = new KmsLab();
    await lab.start();
    kms = lab.kms(lab.sqlite(), { clock });
  });
  afterAll(() => lab.cleanup());

  test('GetPublicKey gives DER and (on the Tencent wire) PEM of the same SPKI; symmetric keys have none', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'pub', keyUsage: 'rsa-2048-decrypt' });
    const p = publicKeyAnswer(await kms.asymmetric.getPublicKey(alice, KeyId));
    expect(p.PublicKey.toString('base64').startsWith('MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A')).toBe(true);
    expect(createPublicKey(p.PublicKeyPem).export({ type: 'spki', format: 'der' }).equals(p.PublicKey)).toBe(true);
    const sym = await kms.lifecycle.createKey(alice, { alias: 'pub-sym' });
    await expect(kms.asymmetric.getPublicKey(alice, sym.keyId)).rejects.toBeInstanceOf(E.InvalidKeyUsageError);
  });

  test('AsymmetricRsaDecrypt with the algorithms the HSM can do; OAEP-SHA-256 names the HSM limit on SoftHSM2', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'rsa-dec', keyUsage: 'rsa-2048-decrypt' });
    const pem = createPublicKey({ key: (await kms.asymmetric.getPublicKey(alice, KeyId)).publicKey, format: 'der', type: 'spki' });
    const oaep1 = publicEncrypt({ key: pem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, Buffer.from('secret one'));
    expect((await kms.asymmetric.rsaDecrypt(alice, { keyId: KeyId, ciphertext: oaep1, algorithm: 'RSAES_OAEP_SHA_1' })).plaintext.toString()).toBe(
      'secret one',
    );
    const v15 = publicEncrypt({ key: pem, padding: constants.RSA_PKCS1_PADDING }, Buffer.from('secret two'));
    expect((await kms.asymmetric.rsaDecrypt(alice, { keyId: KeyId, ciphertext: v15, algorithm: 'RSAES_PKCS1_V1_5' })).plaintext.toString()).toBe('secret two');
    const err = await kms.asymmetric.rsaDecrypt(alice, { keyId: KeyId, ciphertext: oaep1, algorithm: 'RSAES_OAEP_SHA_256' }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(E.UnsupportedOperationError);
    expect((err as Error).message).toMatch(/RSAES_OAEP_SHA_256.*offered: RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1/);
    await expect(kms.asymmetric.rsaDecrypt(alice, { keyId: KeyId, ciphertext: randomBytes(256), algorithm: 'RSAES_OAEP_SHA_1' })).rejects.toBeInstanceOf(
      E.AsymmetricDecryptError,
    );
    await expect(kms.asymmetric.rsaDecrypt(alice, { keyId: KeyId, ciphertext: Buffer.from('short'), algorithm: 'RSAES_OAEP_SHA_1' })).rejects.toBeInstanceOf(
      E.AsymmetricDecryptError,
    );
    await expect(kms.asymmetric.rsaDecrypt(alice, { keyId: KeyId, ciphertext: oaep1, algorithm: 'RSA' })).rejects.toBeInstanceOf(E.InvalidParameterError);
    await expect(kms.asymmetric.sm2Decrypt(alice, KeyId)).rejects.toBeInstanceOf(E.InvalidKeyUsageError);
  });

  const signers = [
    ['rsa-2048-sign-verify', 'RSA_PKCS1_SHA_256', 'sha256', {}],
    ['rsa-2048-sign-verify', 'RSA_PSS_SHA_256', 'sha256', { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }],
    ['ec-p256-sign-verify', 'ECDSA_SHA_256', 'sha256', {}],
    ['ec-p384-sign-verify', 'ECDSA_SHA_384', 'sha384', {}],
  ] as const;

  test.each(signers)('%s / %s: HSM signatures verify in Node, Node signatures verify here, RAW and DIGEST agree', async (usage, algorithm, hash, opts) => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: `sig-${algorithm.toLowerCase().replace(/_/g, '-')}`, keyUsage: usage });
    const pem = createPublicKey({ key: (await kms.asymmetric.getPublicKey(alice, KeyId)).publicKey, format: 'der', type: 'spki' });
    const message = Buffer.from('sign this message');
    const raw = await kms.asymmetric.sign(alice, { keyId: KeyId, algorithm: algorithm, message: message });
    expect(
      createVerify(hash)
        .update(message)
        .verify({ key: pem, ...opts }, raw.signature),
    ).toBe(true);
    const digest = createHash(hash).update(message).digest();
    const viaDigest = await kms.asymmetric.sign(alice, { keyId: KeyId, algorithm: algorithm, message: digest, messageType: 'DIGEST' });
    expect(
      createVerify(hash)
        .update(message)
        .verify({ key: pem, ...opts }, viaDigest.signature),
    ).toBe(true);
    const verify = (sig: Buffer, msg = message) => kms.asymmetric.verify(alice, { keyId: KeyId, algorithm: algorithm, message: msg, signature: sig });
    expect(await verify(raw.signature)).toMatchObject({ signatureValid: true });
    expect(await verify(raw.signature, Buffer.from('another message'))).toMatchObject({ signatureValid: false });
    expect(await verify(Buffer.from('garbage'))).toMatchObject({ signatureValid: false });
    await expect(kms.asymmetric.sign(alice, { keyId: KeyId, algorithm: algorithm, message: digest.subarray(1), messageType: 'DIGEST' })).rejects.toBeInstanceOf(
      E.InvalidParameterError,
    );
    await expect(kms.asymmetric.sign(alice, { keyId: KeyId, algorithm: algorithm, message: Buffer.alloc(4097) })).rejects.toBeInstanceOf(
      E.InvalidParameterError,
    );
    await expect(kms.asymmetric.sign(alice, { keyId: KeyId, algorithm: algorithm, message: message, messageType: 'HEX' })).rejects.toBeInstanceOf(
      E.InvalidParameterError,
    );
    await expect(kms.asymmetric.sign(alice, { keyId: KeyId, algorithm: 'SM2DSA', message: message })).rejects.toBeInstanceOf(E.UnsupportedOperationError);
    await expect(kms.asymmetric.sign(alice, { keyId: KeyId, algorithm: 'HMAC', message: message })).rejects.toBeInstanceOf(E.InvalidParameterError);
  });

  test('a signature made by Node with the same kind of key is judged correctly (no false positives across keys)', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'sig-cross', keyUsage: 'ec-p256-sign-verify' });
    const mine = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const foreign = createSign('sha256').update('m').sign(mine.privateKey);
    expect(await kms.asymmetric.verify(alice, { keyId: KeyId, algorithm: 'ECDSA_SHA_256', message: Buffer.from('m'), signature: foreign })).toMatchObject({
      signatureValid: false,
    });
  });

  test('archived sign keys verify but do not sign; decrypt-only keys cannot sign', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'sig-archived', keyUsage: 'ec-p256-sign-verify' });
    const { signature: Signature } = await kms.asymmetric.sign(alice, { keyId: KeyId, algorithm: 'ECDSA_SHA_256', message: Buffer.from('m') });
    await kms.lifecycle.archiveKey(alice, KeyId);
    await expect(kms.asymmetric.sign(alice, { keyId: KeyId, algorithm: 'ECDSA_SHA_256', message: Buffer.from('m') })).rejects.toBeInstanceOf(
      E.KeyArchivedError,
    );
    expect(await kms.asymmetric.verify(alice, { keyId: KeyId, algorithm: 'ECDSA_SHA_256', message: Buffer.from('m'), signature: Signature })).toMatchObject({
      signatureValid: true,
    });
    const dec = await kms.lifecycle.createKey(alice, { alias: 'dec-only', keyUsage: 'rsa-2048-decrypt' });
    await expect(kms.asymmetric.sign(alice, { keyId: dec.keyId, algorithm: 'RSA_PSS_SHA_256', message: Buffer.from('m') })).rejects.toBeInstanceOf(
      E.InvalidKeyUsageError,
    );
  });
});

describe('KMS core: bring your own key', () => {
  let lab: KmsLab;
  let kms: Kms;
  let nss: HsmCluster;

  beforeAll(async () => {
    lab = new KmsLab((tokens) => {
      nss = new HsmCluster({ id: 'cls-bob-nss', kind: 'dedicated', owners: [bob.tenant], members: [tokens.nss('bob-nss')], probeCacheMs: 0 });
      return [nss];
    });
    await lab.start();
    kms = lab.kms(lab.sqlite(), { clock, allowPkcs1v15Import: true });
  });
  afterAll(() => lab.cleanup());

  const wrap = (spki: Buffer, material: Buffer, alg: string) => {
    const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    if (alg === 'RSAES_PKCS1_V1_5') return publicEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, material);
    return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: alg === 'RSAES_OAEP_SHA_1' ? 'sha1' : 'sha256' }, material);
  };

  async function importInto(who: typeof alice, keyId: string, material: Buffer, alg = 'RSAES_OAEP_SHA_1', validTo?: number, via: Kms = kms) {
    const p = await via.keyImport.getParametersForImport(who, { keyId: keyId, wrappingAlgorithm: alg, wrappingKeySpec: 'RSA_2048' });
    await via.keyImport.importKeyMaterial(who, {
      keyId: keyId,
      importToken: p.importToken,
      encryptedKeyMaterial: wrap(p.publicKey, material, alg),
      validTo: validTo,
    });
    return p;
  }

  test('the whole import cycle: PendingImport, parameters, import, use, delete, re-import of the same material only', async () => {
    const { keyId: KeyId, keyState: KeyState } = await kms.lifecycle.createKey(alice, { alias: 'byok', origin: 'EXTERNAL' });
    expect(KeyState).toBe('PendingImport');
    expect(await kms.lifecycle.describeKey(alice, KeyId)).toMatchObject({ origin: 'EXTERNAL', keyState: 'PendingImport' });
    await expect(kms.envelope.encrypt(alice, { keyId: KeyId, plaintext: Buffer.from('x') })).rejects.toBeInstanceOf(E.KeyStateNotSupportedError);
    const material = randomBytes(32);
    const p = await importInto(alice, KeyId, material, 'RSAES_PKCS1_V1_5');
    expect(p.parametersValidTo).toBe(now() + 24 * 3600);
    expect(createPublicKey({ key: p.publicKey, format: 'der', type: 'spki' }).asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect((await kms.lifecycle.describeKey(alice, KeyId)).keyState).toBe('Enabled');
    const blob = (await kms.envelope.encrypt(alice, { keyId: KeyId, plaintext: Buffer.from('byok data') })).ciphertext;
    await kms.keyImport.deleteImportedKeyMaterial(alice, KeyId);
    expect((await kms.lifecycle.describeKey(alice, KeyId)).keyState).toBe('PendingImport');
    await expect(kms.envelope.decrypt(alice, { ciphertext: blob })).rejects.toBeInstanceOf(E.KeyStateNotSupportedError);
    await expect(importInto(alice, KeyId, randomBytes(32))).rejects.toBeInstanceOf(E.DecryptMaterialError);
    expect((await kms.lifecycle.describeKey(alice, KeyId)).keyState).toBe('PendingImport');
    await importInto(alice, KeyId, material);
    expect((await kms.envelope.decrypt(alice, { ciphertext: blob })).plaintext.toString()).toBe('byok data');
    await importInto(alice, KeyId, material, 'RSAES_OAEP_SHA_1', now() + 3600);
    expect((await kms.lifecycle.describeKey(alice, KeyId)).validTo).toBe(now() + 3600);
  });

  test('tokens: single use, bound to their key, expire after 24 hours, and work on another node', async () => {
    const a = await kms.lifecycle.createKey(alice, { alias: 'byok-tokens', origin: 'EXTERNAL' });
    const b = await kms.lifecycle.createKey(alice, { alias: 'byok-other', origin: 'EXTERNAL' });
    const material = randomBytes(32);
    const p = await kms.keyImport.getParametersForImport(alice, { keyId: a.keyId, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
    const wrapped = wrap(p.publicKey, material, 'RSAES_OAEP_SHA_1');
    await expect(kms.keyImport.importKeyMaterial(alice, { keyId: b.keyId, importToken: p.importToken, encryptedKeyMaterial: wrapped })).rejects.toBeInstanceOf(
      E.InvalidImportTokenError,
    );
    const forged = Buffer.from(p.importToken);
    forged[forged.length - 1] ^= 1;
    await expect(kms.keyImport.importKeyMaterial(alice, { keyId: a.keyId, importToken: forged, encryptedKeyMaterial: wrapped })).rejects.toBeInstanceOf(
      E.InvalidImportTokenError,
    );
    await expect(
      kms.keyImport.importKeyMaterial(alice, { keyId: a.keyId, importToken: Buffer.from('garbage'), encryptedKeyMaterial: wrapped }),
    ).rejects.toBeInstanceOf(E.InvalidImportTokenError);
    const otherNode = lab.kms(lab.sqlite(), { clock, nodeId: 'restarted' });
    clock.advance(23 * 3600);
    await otherNode.keyImport.importKeyMaterial(alice, { keyId: a.keyId, importToken: p.importToken, encryptedKeyMaterial: wrapped });
    await expect(kms.keyImport.importKeyMaterial(alice, { keyId: a.keyId, importToken: p.importToken, encryptedKeyMaterial: wrapped })).rejects.toBeInstanceOf(
      E.InvalidImportTokenError,
    );
    const q = await kms.keyImport.getParametersForImport(alice, { keyId: b.keyId, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
    clock.advance(24 * 3600 + 1);
    await expect(
      kms.keyImport.importKeyMaterial(alice, {
        keyId: b.keyId,
        importToken: q.importToken,
        encryptedKeyMaterial: wrap(q.publicKey, material, 'RSAES_OAEP_SHA_1'),
      }),
    ).rejects.toBeInstanceOf(E.ImportTokenExpiredError);
  });

  test('bad material: undecryptable, wrong size, wrong algorithm, wrong key kind', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'byok-bad', origin: 'EXTERNAL' });
    const fresh = () => kms.keyImport.getParametersForImport(alice, { keyId: KeyId, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
    const attempt = async (m: (pk: Buffer) => Buffer) => {
      const q = await fresh();
      return kms.keyImport.importKeyMaterial(alice, { keyId: KeyId, importToken: q.importToken, encryptedKeyMaterial: m(q.publicKey) });
    };
    for (const m of [
      () => randomBytes(256),
      (pk: Buffer) => wrap(pk, randomBytes(32), 'RSAES_PKCS1_V1_5'),
      (pk: Buffer) => wrap(pk, randomBytes(16), 'RSAES_OAEP_SHA_1'),
    ]) {
      const err = await attempt(m).catch((e: Error) => e);
      expect(err).toBeInstanceOf(E.DecryptMaterialError);
      expect((err as Error).message).toBe(IMPORT_FAILED_MESSAGE);
    }
    await expect(attempt(() => Buffer.alloc(0))).rejects.toBeInstanceOf(E.InvalidImportMaterialError);
    await expect(attempt(() => randomBytes(255))).rejects.toBeInstanceOf(E.InvalidImportMaterialError);
    const p = await fresh();
    expect((await kms.lifecycle.describeKey(alice, KeyId)).keyState).toBe('PendingImport');
    await expect(
      kms.keyImport.importKeyMaterial(alice, {
        keyId: KeyId,
        importToken: p.importToken,
        encryptedKeyMaterial: wrap(p.publicKey, randomBytes(32), 'RSAES_OAEP_SHA_1'),
        validTo: now() - 1,
      }),
    ).rejects.toBeInstanceOf(E.InvalidParameterError);
    await expect(
      kms.keyImport.getParametersForImport(alice, { keyId: KeyId, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_4096' }),
    ).rejects.toBeInstanceOf(E.InvalidParameterError);
    await expect(
      kms.keyImport.getParametersForImport(alice, { keyId: KeyId, wrappingAlgorithm: 'AES_WRAP', wrappingKeySpec: 'RSA_2048' }),
    ).rejects.toBeInstanceOf(E.InvalidParameterError);
    const err = await kms.keyImport
      .getParametersForImport(alice, { keyId: KeyId, wrappingAlgorithm: 'RSAES_OAEP_SHA_256', wrappingKeySpec: 'RSA_2048' })
      .catch((e: Error) => e);
    expect(err).toBeInstanceOf(E.UnsupportedOperationError);
    expect((err as Error).message).toContain('they offer RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1');
    const native = await kms.lifecycle.createKey(alice, { alias: 'byok-native' });
    await expect(
      kms.keyImport.getParametersForImport(alice, { keyId: native.keyId, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' }),
    ).rejects.toBeInstanceOf(E.NotExternalKeyError);
    await expect(kms.keyImport.deleteImportedKeyMaterial(alice, native.keyId)).rejects.toBeInstanceOf(E.NotExternalKeyError);
  });

  test('PKCS#1 v1.5 is refused by default, also for a token issued while it was allowed; the token is then used up', async () => {
    const strict = lab.kms(lab.sqlite(), { clock, nodeId: 'strict' });
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'byok-pkcs1-off', origin: 'EXTERNAL' });
    const err = await strict.keyImport
      .getParametersForImport(alice, { keyId: KeyId, wrappingAlgorithm: 'RSAES_PKCS1_V1_5', wrappingKeySpec: 'RSA_2048' })
      .catch((e: Error) => e);
    expect(err).toBeInstanceOf(E.UnsupportedOperationError);
    expect((err as Error).message).toMatch(/Bleichenbacher.*RSAES_OAEP_SHA_1/);
    const p = await kms.keyImport.getParametersForImport(alice, { keyId: KeyId, wrappingAlgorithm: 'RSAES_PKCS1_V1_5', wrappingKeySpec: 'RSA_2048' });
    const EncryptedKeyMaterial = wrap(p.publicKey, randomBytes(32), 'RSAES_PKCS1_V1_5');
    await expect(
      strict.keyImport.importKeyMaterial(alice, { keyId: KeyId, importToken: p.importToken, encryptedKeyMaterial: EncryptedKeyMaterial }),
    ).rejects.toBeInstanceOf(E.UnsupportedOperationError);
    await expect(
      kms.keyImport.importKeyMaterial(alice, { keyId: KeyId, importToken: p.importToken, encryptedKeyMaterial: EncryptedKeyMaterial }),
    ).rejects.toBeInstanceOf(E.InvalidImportTokenError);
  });

  test('two concurrent imports with one token: one RSA decryption at most, one succeeds', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'byok-race', origin: 'EXTERNAL' });
    const p = await kms.keyImport.getParametersForImport(alice, { keyId: KeyId, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
    const EncryptedKeyMaterial = wrap(p.publicKey, randomBytes(32), 'RSAES_OAEP_SHA_1');
    const results = await Promise.allSettled(
      [0, 1].map(() => kms.keyImport.importKeyMaterial(alice, { keyId: KeyId, importToken: p.importToken, encryptedKeyMaterial: EncryptedKeyMaterial })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason).toBeInstanceOf(E.InvalidImportTokenError);
  });

  test('ValidTo expiry destroys the material and returns the key to PendingImport', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'byok-expiring', origin: 'EXTERNAL' });
    const material = randomBytes(32);
    await importInto(alice, KeyId, material, 'RSAES_OAEP_SHA_1', now() + 3600);
    const blob = (await kms.envelope.encrypt(alice, { keyId: KeyId, plaintext: Buffer.from('short-lived') })).ciphertext;
    expect((await kms.jobs.runOnce()).expired).not.toContain(KeyId);
    clock.advance(3601);
    expect((await kms.jobs.runOnce()).expired).toContain(KeyId);
    expect(await kms.lifecycle.describeKey(alice, KeyId)).toMatchObject({ keyState: 'PendingImport', validTo: undefined });
    expect((await kms.store.getKey(alice.tenant, KeyId))?.versions).toEqual([]);
    await importInto(alice, KeyId, material);
    expect((await kms.envelope.decrypt(alice, { ciphertext: blob })).plaintext.toString()).toBe('short-lived');
  });

  test('on NSS softokn, RSAES_OAEP_SHA_256 wrapping works', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(bob, { alias: 'byok-nss', origin: 'EXTERNAL', hsmClusterId: 'cls-bob-nss' });
    await importInto(bob, KeyId, randomBytes(32), 'RSAES_OAEP_SHA_256');
    const blob = (await kms.envelope.encrypt(bob, { keyId: KeyId, plaintext: Buffer.from('nss') })).ciphertext;
    expect((await kms.envelope.decrypt(bob, { ciphertext: blob })).plaintext.toString()).toBe('nss');
    await expect(kms.lifecycle.createKey(bob, { alias: 'nss-ec', keyUsage: 'ec-p256-sign-verify', hsmClusterId: 'cls-bob-nss' })).rejects.toBeInstanceOf(
      E.UnsupportedKeyUsageError,
    );
  });
});
