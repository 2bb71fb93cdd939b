import { constants, generateKeyPairSync, privateDecrypt } from 'node:crypto';
import { contextFromWire, decryptAnswer } from '../../../src/api/kms-wire';
import type { PublicKeyOutput } from '../../../src/api/public-key-output';
import { decodeBlob } from '../../../src/kms/ciphertext';
import { ManualClock } from '../../../src/common/clock';
import * as E from '../../../src/kms/errors';
import type { Kms } from '../../../src/kms/service';
import { alice, bob, DEPLOYMENT, KmsLab } from '../../support/kms';

describe('KMS core: Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateRandom', () => {
  let lab: KmsLab;
  let kms: Kms;
  let keyId: string;
  const clock = new ManualClock(Date.UTC(2026, 10, 23));

  beforeAll(async () => {
    ({ lab, kms } = await KmsLab.open({ clock }));
    keyId = (await kms.lifecycle.createKey(alice, { alias: 'env' })).keyId;
  });
  afterAll(() => lab.cleanup());

  /** The context as the Tencent wire sends it (JSON text), parsed as the API layer does. */
  const enc = async (pt: string | Buffer, ctx?: string, id = keyId) =>
    kms.envelope.encrypt(alice, { keyId: id, plaintext: Buffer.isBuffer(pt) ? pt : Buffer.from(pt), context: contextFromWire(ctx) });
  const dec = async (blob: Buffer, ctx?: string) => kms.envelope.decrypt(alice, { ciphertext: blob, context: contextFromWire(ctx) });
  const reEnc = async (p: { ciphertext: Buffer; destinationKeyId?: string; source?: string; destination?: string }) =>
    kms.envelope.reEncrypt(alice, {
      ciphertext: p.ciphertext,
      destinationKeyId: p.destinationKeyId,
      sourceContext: contextFromWire(p.source),
      destinationContext: contextFromWire(p.destination),
    });

  test('round trip with and without an encryption context; the context is canonical (key order does not matter)', async () => {
    const a = await enc('hello');
    expect(a.keyId).toBe(keyId);
    expect((await dec(a.ciphertext)).plaintext.toString()).toBe('hello');
    const b = await enc('with context', '{"b":"2","a":"1"}');
    expect((await dec(b.ciphertext, '{"a":"1","b":"2"}')).plaintext.toString()).toBe('with context');
    await expect(dec(b.ciphertext)).rejects.toBeInstanceOf(E.InvalidCiphertextError);
    await expect(dec(b.ciphertext, '{"a":"1","b":"3"}')).rejects.toBeInstanceOf(E.InvalidCiphertextError);
    await expect(dec(a.ciphertext, '{"a":"1"}')).rejects.toBeInstanceOf(E.InvalidCiphertextError);
  });

  test('plaintext of 1..4096 bytes; anything else is InvalidPlaintext', async () => {
    const max = Buffer.alloc(4096, 7);
    expect((await dec((await enc(max)).ciphertext)).plaintext.equals(max)).toBe(true);
    await expect(enc(Buffer.alloc(4097))).rejects.toBeInstanceOf(E.InvalidPlaintextError);
    await expect(enc(Buffer.alloc(0))).rejects.toBeInstanceOf(E.InvalidPlaintextError);
  });

  test.each(['not json', '[]', '{"a":1}', 'x'.repeat(1025)])('a malformed context %j is refused', async (ctx) => {
    await expect(enc('x', ctx)).rejects.toBeInstanceOf(E.InvalidEncryptionContextError);
  });

  test('every altered byte of a blob is InvalidCiphertext, never another error', async () => {
    const { ciphertext: raw } = await enc('tamper with me', '{"k":"v"}');
    const outcomes = new Set<string>();
    for (let i = 0; i < raw.length; i++) {
      const t = Buffer.from(raw);
      t[i] ^= 0x01;
      outcomes.add(
        await dec(t, '{"k":"v"}').then(
          () => 'decrypted',
          (e: Error) => e.constructor.name,
        ),
      );
    }
    expect([...outcomes]).toEqual(['InvalidCiphertextError']);
    await expect(dec(raw.subarray(0, raw.length - 1), '{"k":"v"}')).rejects.toBeInstanceOf(E.InvalidCiphertextError);
    await expect(dec(Buffer.from('%%%'))).rejects.toBeInstanceOf(E.InvalidCiphertextError);
  });

  test('a blob of another deployment, another tenant or a missing version is refused', async () => {
    const { ciphertext } = await enc('x');
    const other = lab.kms(lab.sqlite(), { clock, deploymentId: Buffer.alloc(16, 9) });
    await expect(other.envelope.decrypt(alice, { ciphertext })).rejects.toBeInstanceOf(E.InvalidCiphertextError);
    await expect(kms.envelope.decrypt(bob, { ciphertext })).rejects.toBeInstanceOf(E.InvalidCiphertextError);
    const raw = Buffer.from(ciphertext);
    const sealed = decodeBlob(ciphertext, DEPLOYMENT);
    raw.writeUInt32BE(sealed.keyVersion + 5, sealed.header.length - 4);
    await expect(dec(raw)).rejects.toBeInstanceOf(E.InvalidCiphertextError);
  });

  test("Decrypt can return the plaintext encrypted under the caller's RSA public key", async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const { ciphertext } = await enc('for your eyes');
    /** Decrypt with the Tencent wire's plaintext output under a public key. */
    const decTo = async (out: PublicKeyOutput) => decryptAnswer(await kms.envelope.decrypt(alice, { ciphertext }), out);
    for (const [alg, padding, oaepHash] of [
      ['RSAES_OAEP_SHA_256', constants.RSA_PKCS1_OAEP_PADDING, 'sha256'],
      ['RSAES_OAEP_SHA_1', constants.RSA_PKCS1_OAEP_PADDING, 'sha1'],
    ] as const) {
      const out = await decTo({ EncryptionPublicKey: pem, EncryptionAlgorithm: alg });
      expect(privateDecrypt({ key: privateKey, padding, oaepHash }, out.Plaintext).toString()).toBe('for your eyes');
    }
    await expect(decTo({ EncryptionPublicKey: pem })).rejects.toBeInstanceOf(E.UnsupportedOperationError);
    await expect(decTo({ EncryptionPublicKey: 'nope', EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' })).rejects.toBeInstanceOf(E.InvalidParameterError);
    await expect(decTo({ EncryptionPublicKey: pem, EncryptionAlgorithm: 'ROT13' })).rejects.toBeInstanceOf(E.InvalidParameterError);
  });

  test('states: disabled keys neither encrypt nor decrypt, archived keys only decrypt, pending-delete keys raise alarms', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'env-states' });
    const { ciphertext: CiphertextBlob } = await enc('old data', undefined, KeyId);
    await kms.lifecycle.disableKey(alice, KeyId);
    await expect(enc('x', undefined, KeyId)).rejects.toBeInstanceOf(E.KeyDisabledError);
    await expect(dec(CiphertextBlob)).rejects.toBeInstanceOf(E.KeyDisabledError);
    await kms.lifecycle.archiveKey(alice, KeyId);
    await expect(enc('x', undefined, KeyId)).rejects.toBeInstanceOf(E.KeyArchivedError);
    await expect(kms.envelope.generateDataKey(alice, { keyId: KeyId, keySpec: 'AES_256' })).rejects.toBeInstanceOf(E.KeyArchivedError);
    expect((await dec(CiphertextBlob)).plaintext.toString()).toBe('old data');
    await kms.lifecycle.scheduleKeyDeletion(alice, { keyId: KeyId, pendingWindowDays: 7 });
    const before = kms.alarms.list(KeyId).length;
    await expect(dec(CiphertextBlob)).rejects.toBeInstanceOf(E.KeyPendingDeleteError);
    await expect(enc('x', undefined, KeyId)).rejects.toBeInstanceOf(E.KeyPendingDeleteError);
    const alarms = kms.alarms.list(KeyId).slice(before);
    expect(alarms.map((a) => [a.kind, a.action])).toEqual([
      ['PendingDeleteKeyUsed', 'Decrypt'],
      ['PendingDeleteKeyUsed', 'Encrypt'],
    ]);
    expect(JSON.stringify(alarms)).not.toContain('old data');
  });

  test('an asymmetric key cannot do symmetric encryption', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'env-rsa', keyUsage: 'rsa-2048-decrypt' });
    await expect(enc('x', undefined, KeyId)).rejects.toBeInstanceOf(E.InvalidKeyUsageError);
    await expect(kms.envelope.generateDataKey(alice, { keyId: KeyId, numberOfBytes: 16 })).rejects.toBeInstanceOf(E.InvalidKeyUsageError);
  });

  test('ReEncrypt: same unrotated key and context returns the blob unchanged; otherwise a new blob, plaintext never returned', async () => {
    const other = (await kms.lifecycle.createKey(alice, { alias: 'env-dest' })).keyId;
    const { ciphertext } = await enc('move me', '{"a":"1"}');
    const same = await reEnc({ ciphertext, source: '{"a":"1"}', destination: '{"a":"1"}' });
    expect(same).toEqual({ ciphertext, keyId, sourceKeyId: keyId, reEncrypted: false });
    const moved = await reEnc({ ciphertext, destinationKeyId: other, source: '{"a":"1"}' });
    expect(moved).toMatchObject({ keyId: other, sourceKeyId: keyId, reEncrypted: true });
    expect(Object.keys(moved).sort()).toEqual(['ciphertext', 'keyId', 'reEncrypted', 'sourceKeyId']);
    expect(moved.ciphertext.includes(Buffer.from('move me'))).toBe(false);
    expect((await dec(moved.ciphertext)).plaintext.toString()).toBe('move me');
    await expect(reEnc({ ciphertext })).rejects.toBeInstanceOf(E.InvalidCiphertextError);
    const recontext = await reEnc({ ciphertext, source: '{"a":"1"}', destination: '{"b":"2"}' });
    expect(recontext.reEncrypted).toBe(true);
    expect((await dec(recontext.ciphertext, '{"b":"2"}')).plaintext.toString()).toBe('move me');
  });

  test('GenerateDataKey: KeySpec or NumberOfBytes (which wins), bytes from the HSM, blob decrypts to the plaintext', async () => {
    const a = await kms.envelope.generateDataKey(alice, { keyId, keySpec: 'AES_256', context: { f: 'x' } });
    expect(a.plaintext).toHaveLength(32);
    expect((await dec(a.ciphertext, '{"f":"x"}')).plaintext.equals(a.plaintext)).toBe(true);
    expect((await kms.envelope.generateDataKey(alice, { keyId, keySpec: 'AES_128' })).plaintext).toHaveLength(16);
    expect((await kms.envelope.generateDataKey(alice, { keyId, keySpec: 'AES_128', numberOfBytes: 1024 })).plaintext).toHaveLength(1024);
    for (const bad of [{}, { keySpec: 'AES_512' }, { numberOfBytes: 0 }, { numberOfBytes: 1025 }, { numberOfBytes: 1.5 }]) {
      await expect(kms.envelope.generateDataKey(alice, { keyId, ...bad })).rejects.toBeInstanceOf(E.InvalidParameterError);
    }
    await expect(kms.envelope.generateDataKey(alice, { keyId, keySpec: 'AES_256', hsmClusterId: 'default' })).resolves.not.toThrow();
    await expect(kms.envelope.generateDataKey(alice, { keyId, keySpec: 'AES_256', hsmClusterId: 'cls-bob' })).rejects.toBeInstanceOf(E.InvalidHsmClusterError);
  });

  test('GenerateRandom: 1..1024 bytes from the HSM', async () => {
    const a = await kms.envelope.generateRandom(alice, 1024);
    expect(a).toHaveLength(1024);
    expect(a.equals(await kms.envelope.generateRandom(alice, 1024))).toBe(false);
    for (const bad of [0, 1025, -1, 2.5, '8']) await expect(kms.envelope.generateRandom(alice, bad as number)).rejects.toBeInstanceOf(E.InvalidParameterError);
  });

  test('use is counted per key version in batches and reaches the store on flush', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'env-count' });
    for (let i = 0; i < 5; i++) await enc('count me', undefined, KeyId);
    await kms.jobs.runOnce();
    const totals = await kms.store.addUsage(new Map([[`${KeyId}#1`, 0]]));
    expect(totals.get(`${KeyId}#1`)).toBe(5);
  });
});
