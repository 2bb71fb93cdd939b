/**
 * Issue 11, section 8: one tenant cannot stall the others (KMS core on SoftHSM2, sync call-mode
 * profile). Nothing here is about durations: the event loop's freedom is shown by order (another
 * tenant's Encrypt, started one event-loop turn after a batch of key-pair generations, finishes
 * before the batch), the cap by counts.
 */
import { constants, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { toApiError } from '../../../src/api/error-codes';
import { SlowQueueFullError } from '../../../src/hsm/errors';
import { ManualClock } from '../../../src/common/clock';
import * as E from '../../../src/kms/errors';
import { REUSE_MIN_SECONDS } from '../../../src/kms/key-import';
import type { Kms } from '../../../src/kms/service';
import { alice, bob, KmsLab } from '../../support/kms';

const clock = new ManualClock(Date.UTC(2026, 10, 23));
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
const CAP = 4;

function wrapFor(spki: Buffer, material: Buffer): Buffer {
  const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, material);
}

describe('one tenant cannot stall the others (KMS core)', () => {
  let lab: KmsLab;
  let kms: Kms;

  beforeAll(async () => {
    lab = new KmsLab();
    await lab.start();
    // PKCS#1 v1.5 allowed: the reuse cases need a second wrapping algorithm (SoftHSM2 offers OAEP with SHA-1 only)
    kms = lab.kms(lab.sqlite(), { clock, allowPkcs1v15Import: true });
  });
  afterAll(() => lab.cleanup());

  const externalKeys = async (n: number, prefix: string) => {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push((await kms.lifecycle.createKey(alice, { alias: `${prefix}-${i}`, origin: 'EXTERNAL' })).keyId);
    return ids;
  };

  test.each([
    ['on the shared pool', undefined],
    ['on its dedicated cluster', 'cls-bob'],
  ])(
    "tenant B's Encrypt %s finishes before tenant A's batch of GetParametersForImport (key-pair generations) it was started after",
    async (_where, cluster) => {
      const bKey = (await kms.lifecycle.createKey(bob, { alias: `b-enc-${cluster ?? 'shared'}`, hsmClusterId: cluster })).keyId;
      await kms.envelope.encrypt(bob, { keyId: bKey, plaintext: Buffer.from('warm') });
      const keys = await externalKeys(CAP, `gen-${cluster ?? 'shared'}`);
      let batchDone = false;
      const batch = Promise.all(
        keys.map((k) => kms.keyImport.getParametersForImport(alice, { keyId: k, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' })),
      ).then((r) => {
        batchDone = true;
        return r;
      });
      await nextTurn();
      const blob = await kms.envelope.encrypt(bob, { keyId: bKey, plaintext: Buffer.from('not stalled') });
      const order = batchDone ? 'batch first' : 'encrypt first';
      expect(order).toBe('encrypt first');
      expect((await batch).length).toBe(CAP);
      expect((await kms.envelope.decrypt(bob, { ciphertext: blob.ciphertext })).plaintext.toString()).toBe('not stalled');
    },
  );

  test(`a ${CAP + 1}th concurrent expensive request of tenant A is RequestLimit-refused while tenant B's is served`, async () => {
    const keys = await externalKeys(CAP + 1, 'cap');
    const bKey = (await kms.lifecycle.createKey(bob, { alias: 'cap-b', origin: 'EXTERNAL' })).keyId;
    const outcomes = await Promise.all([
      ...keys.map((k) =>
        kms.keyImport.getParametersForImport(alice, { keyId: k, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' }).then(
          () => 'ok',
          (e: Error) => e.constructor.name,
        ),
      ),
      kms.keyImport.getParametersForImport(bob, { keyId: bKey, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' }).then(
        () => 'b ok',
        (e: Error) => `b ${e.constructor.name}`,
      ),
    ]);
    expect(outcomes.filter((o) => o === 'ok').length).toBe(CAP);
    expect(outcomes.filter((o) => o === 'ExpensiveLimitError').length).toBe(1);
    expect(outcomes).toContain('b ok');
    expect(kms.expensive.held(alice.tenant)).toBe(0);
  });

  test('every expensive action counts against the cap; cheap ones and other tenants do not', async () => {
    const rsa = (await kms.lifecycle.createKey(alice, { alias: 'cap-rsa', keyUsage: 'rsa-2048-decrypt' })).keyId;
    const signer = (await kms.lifecycle.createKey(alice, { alias: 'cap-sign', keyUsage: 'ec-p256-sign-verify' })).keyId;
    const aes = (await kms.lifecycle.createKey(alice, { alias: 'cap-aes' })).keyId;
    const [ext] = await externalKeys(1, 'cap-all');
    const pem = createPublicKey({ key: (await kms.asymmetric.getPublicKey(alice, rsa)).publicKey, format: 'der', type: 'spki' });
    const ciphertext = publicEncrypt({ key: pem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, Buffer.from('x'));
    const held = Array.from({ length: CAP }, () => kms.expensive.acquire(alice.tenant, 'test'));
    try {
      await expect(
        kms.keyImport.getParametersForImport(alice, { keyId: ext, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' }),
      ).rejects.toBeInstanceOf(E.ExpensiveLimitError);
      await expect(kms.lifecycle.createKey(alice, { alias: 'cap-new-rsa', keyUsage: 'rsa-2048-sign-verify' })).rejects.toBeInstanceOf(E.ExpensiveLimitError);
      await expect(kms.asymmetric.rsaDecrypt(alice, { keyId: rsa, ciphertext: ciphertext, algorithm: 'RSAES_OAEP_SHA_1' })).rejects.toBeInstanceOf(
        E.ExpensiveLimitError,
      );
      await expect(kms.asymmetric.sign(alice, { keyId: signer, algorithm: 'ECDSA_SHA_256', message: Buffer.from('m') })).rejects.toBeInstanceOf(
        E.ExpensiveLimitError,
      );
      expect((await kms.lifecycle.createKey(alice, { alias: 'cap-new-aes' })).keyState).toBe('Enabled');
      expect((await kms.envelope.encrypt(alice, { keyId: aes, plaintext: Buffer.from('cheap') })).keyId).toBe(aes);
      expect((await kms.lifecycle.createKey(bob, { alias: 'cap-bob-rsa', keyUsage: 'rsa-2048-sign-verify' })).keyState).toBe('Enabled');
    } finally {
      held.forEach((release) => release());
    }
    expect((await kms.asymmetric.rsaDecrypt(alice, { keyId: rsa, ciphertext: ciphertext, algorithm: 'RSAES_OAEP_SHA_1' })).plaintext.toString()).toBe('x');
    expect(kms.expensive.held(alice.tenant)).toBe(0);
  });

  const slowRefusal = 'every slow action is refused with RequestLimitExceeded (an import is not called a material failure)';
  test(`a full slow queue on the shared pool: ${slowRefusal}; Encrypt and the dedicated cluster are served`, async () => {
    const rsa = (await kms.lifecycle.createKey(alice, { alias: 'full-rsa', keyUsage: 'rsa-2048-decrypt' })).keyId;
    const signer = (await kms.lifecycle.createKey(alice, { alias: 'full-sign', keyUsage: 'ec-p256-sign-verify' })).keyId;
    const aes = (await kms.lifecycle.createKey(alice, { alias: 'full-aes' })).keyId;
    const [ext, ext2] = await externalKeys(2, 'full');
    const params = await kms.keyImport.getParametersForImport(alice, { keyId: ext, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
    const pem = createPublicKey({ key: (await kms.asymmetric.getPublicKey(alice, rsa)).publicKey, format: 'der', type: 'spki' });
    const ciphertext = publicEncrypt({ key: pem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, Buffer.from('x'));
    // the queue's own places, taken by work that waits for a gate
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const q = lab.shared.slow;
    const held = Array.from({ length: q.limits.running + q.limits.queued }, () => q.run(() => gate));
    expect([q.running, q.queued]).toEqual([q.limits.running, q.limits.queued]);
    try {
      const refused = await Promise.all(
        [
          kms.keyImport.getParametersForImport(alice, { keyId: ext2, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' }),
          kms.lifecycle.createKey(alice, { alias: 'full-new-rsa', keyUsage: 'rsa-2048-sign-verify' }),
          kms.asymmetric.rsaDecrypt(alice, { keyId: rsa, ciphertext: ciphertext, algorithm: 'RSAES_OAEP_SHA_1' }),
          kms.asymmetric.sign(alice, { keyId: signer, algorithm: 'ECDSA_SHA_256', message: Buffer.from('m') }),
          kms.keyImport.importKeyMaterial(alice, {
            keyId: ext,
            importToken: params.importToken,
            encryptedKeyMaterial: wrapFor(params.publicKey, randomBytes(32)),
          }),
        ].map((p) =>
          p.then(
            () => undefined,
            (e: unknown) => e,
          ),
        ),
      );
      for (const e of refused) {
        expect(e).toBeInstanceOf(SlowQueueFullError);
        expect(toApiError(e).code).toBe('RequestLimitExceeded');
      }
      expect((await kms.envelope.encrypt(alice, { keyId: aes, plaintext: Buffer.from('cheap') })).keyId).toBe(aes);
      expect((await kms.lifecycle.createKey(bob, { alias: 'full-bob-rsa', keyUsage: 'rsa-2048-sign-verify', hsmClusterId: 'cls-bob' })).keyState).toBe(
        'Enabled',
      );
    } finally {
      open();
      await Promise.all(held);
    }
    // the queue has room again (the refused import used its token: one attempt per token, whatever the outcome)
    const fresh = await kms.keyImport.getParametersForImport(alice, { keyId: ext, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
    await kms.keyImport.importKeyMaterial(alice, {
      keyId: ext,
      importToken: fresh.importToken,
      encryptedKeyMaterial: wrapFor(fresh.publicKey, randomBytes(32)),
    });
    expect([q.running, q.queued]).toEqual([0, 0]);
    expect(kms.expensive.held(alice.tenant)).toBe(0);
  });

  test('an unexpired, unused wrapping key is handed out again (fresh token, same ParametersValidTo); the replaced token is refused', async () => {
    const [k] = await externalKeys(1, 'reuse');
    const first = await kms.keyImport.getParametersForImport(alice, { keyId: k, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
    clock.advance(60);
    const second = await kms.keyImport.getParametersForImport(alice, { keyId: k, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
    expect(second.publicKey).toEqual(first.publicKey);
    expect(second.parametersValidTo).toBe(first.parametersValidTo);
    expect(second.importToken).not.toEqual(first.importToken);
    const material = randomBytes(32);
    const wrapped = wrapFor(second.publicKey, material);
    await expect(kms.keyImport.importKeyMaterial(alice, { keyId: k, importToken: first.importToken, encryptedKeyMaterial: wrapped })).rejects.toBeInstanceOf(
      E.InvalidImportTokenError,
    );
    await kms.keyImport.importKeyMaterial(alice, { keyId: k, importToken: second.importToken, encryptedKeyMaterial: wrapped });
    const afterUse = await kms.keyImport.getParametersForImport(alice, { keyId: k, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
    expect(afterUse.publicKey).not.toEqual(first.publicKey);
    await expect(kms.keyImport.importKeyMaterial(alice, { keyId: k, importToken: second.importToken, encryptedKeyMaterial: wrapped })).rejects.toBeInstanceOf(
      E.InvalidImportTokenError,
    );
  });

  test('no reuse for another wrapping algorithm, near expiry, or another key', async () => {
    const [k, other] = await externalKeys(2, 'no-reuse');
    const p = await kms.keyImport.getParametersForImport(alice, { keyId: k, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
    const v15 = await kms.keyImport.getParametersForImport(alice, { keyId: k, wrappingAlgorithm: 'RSAES_PKCS1_V1_5', wrappingKeySpec: 'RSA_2048' });
    expect(v15.publicKey).not.toEqual(p.publicKey);
    expect(
      (await kms.keyImport.getParametersForImport(alice, { keyId: other, wrappingAlgorithm: 'RSAES_PKCS1_V1_5', wrappingKeySpec: 'RSA_2048' })).publicKey,
    ).not.toEqual(v15.publicKey);
    clock.advance(v15.parametersValidTo - Math.floor(clock.now() / 1000) - REUSE_MIN_SECONDS + 1);
    const late = await kms.keyImport.getParametersForImport(alice, { keyId: k, wrappingAlgorithm: 'RSAES_PKCS1_V1_5', wrappingKeySpec: 'RSA_2048' });
    expect(late.publicKey).not.toEqual(v15.publicKey);
    expect(late.parametersValidTo).toBeGreaterThan(v15.parametersValidTo);
  });
});
