/**
 * Issue 11, section 8: slow PKCS#11 operations never run on the event loop, whatever the profile's
 * call mode (both profiles here are `callMode: sync`). Shown without durations: a thread-pool call
 * cannot settle before the event loop turns, so an operation still pending after the microtask
 * queue has drained ran off the loop (on the old code, sync calls had settled by then), and the
 * fast AES-GCM path still settles within microtasks. Also: many concurrent slow calls on several
 * sessions give correct results on SoftHSM2 and NSS softokn.
 */
import { constants, createPublicKey, createVerify, publicEncrypt, randomBytes } from 'node:crypto';
import type { KeySpec } from '../../src/hsm/capabilities';
import { HsmCluster } from '../../src/hsm/cluster';
import type { MaterialBinding, WrappedMaterial } from '../../src/hsm/material';
import type { HsmMember } from '../../src/hsm/member';
import { profiles, TokenLab } from '../support/tokens';

const bind = (keyId: string, usage: string): MaterialBinding => ({ clusterId: 'c1', keyId, keyVersion: 1, usage });

/** Lets every queued microtask (and the ones they queue) run, without letting the event loop turn. */
async function drainMicrotasks(): Promise<void> {
  for (let i = 0; i < 200; i++) await Promise.resolve();
}

function tracked<T>(p: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  const promise = p.finally(() => {
    done = true;
  });
  return { promise, settled: () => done };
}

const implementations: Array<{ name: string; make: (lab: TokenLab) => HsmMember }> = [
  { name: 'softhsm2', make: (lab) => lab.softhsm('offload', ['m1'])[0] },
  { name: 'nss-softokn', make: (lab) => lab.nss('offload-nss') },
];

describe.each(implementations)('slow operations off the event loop: $name (sync call mode)', ({ make }) => {
  let lab: TokenLab;
  let member: HsmMember;
  let cluster: HsmCluster;
  let aes: WrappedMaterial;
  let rsa: WrappedMaterial;

  beforeAll(async () => {
    lab = new TokenLab();
    member = make(lab);
    expect(member.profile.callMode).toBe('sync');
    cluster = new HsmCluster({ id: 'c1', kind: 'shared', owners: [], members: [member] });
    cluster.start();
    await cluster.initDomain();
    aes = await cluster.generate('AES_256', bind('aes', 'ENCRYPT_DECRYPT'));
    rsa = await cluster.generate('RSA_2048', bind('rsa', 'ASYMMETRIC_SIGN_VERIFY_RSA_2048'));
    await member.load(aes);
    await member.load(rsa);
  });
  afterAll(() => lab.cleanup());

  test('key-pair generations are still pending after the microtasks ran; an AES-GCM encrypt started after them finishes first', async () => {
    const specs: KeySpec[] = ['RSA_2048', 'RSA_2048', 'RSA_2048', 'RSA_2048'];
    const batch = tracked(Promise.all(specs.map((s, i) => member.generate(s, bind(`gen-${i}`, 'ASYMMETRIC_SIGN_VERIFY_RSA_2048')))));
    await drainMicrotasks();
    expect(batch.settled()).toBe(false);
    const encrypt = tracked(member.encryptGcm(aes, Buffer.from('fast path'), Buffer.alloc(0)));
    await drainMicrotasks();
    expect(encrypt.settled()).toBe(true);
    expect(batch.settled()).toBe(false);
    expect((await batch.promise).map((m) => m.spec)).toEqual(specs);
  });

  test('RSA signing and RSA decryption are still pending after the microtasks ran', async () => {
    const sign = tracked(member.sign(rsa, 'RSA_PKCS1_SHA_256', { message: Buffer.from('m') }));
    await drainMicrotasks();
    expect(sign.settled()).toBe(false);
    const ciphertext = publicEncrypt(
      { key: createPublicKey({ key: rsa.publicKey, format: 'der', type: 'spki' }), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' },
      Buffer.from('p'),
    );
    const decrypt = tracked(member.rsaDecrypt(rsa, 'RSAES_OAEP_SHA_1', ciphertext));
    await drainMicrotasks();
    expect(decrypt.settled()).toBe(false);
    expect(
      createVerify('sha256')
        .update('m')
        .verify({ key: rsa.publicKey, format: 'der', type: 'spki' }, await sign.promise),
    ).toBe(true);
    expect((await decrypt.promise).toString()).toBe('p');
  });

  test('32 concurrent RSA signatures and decryptions on pooled sessions are all correct', async () => {
    const key = createPublicKey({ key: rsa.publicKey, format: 'der', type: 'spki' });
    const results = await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const message = randomBytes(24 + i);
        const [signature, plaintext] = await Promise.all([
          member.sign(rsa, 'RSA_PSS_SHA_256', { message }),
          member.rsaDecrypt(rsa, 'RSAES_OAEP_SHA_1', publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, message)),
        ]);
        const valid = createVerify('sha256').update(message).verify({ key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature);
        return valid && plaintext.equals(message);
      }),
    );
    expect(results.every(Boolean)).toBe(true);
    expect(member.sessions.open).toBeGreaterThan(1);
  });
});

describe('a profile can mark fast-path operations slow (slowOperations)', () => {
  let lab: TokenLab;
  afterAll(() => lab.cleanup());

  test('AES-GCM encrypt under slowOperations [encrypt] is still pending after the microtasks ran; decrypt (not listed) settles within them', async () => {
    lab = new TokenLab();
    const base = profiles.get('softhsm2')!;
    const [member] = lab.softhsm('slow-ops', ['m1'], {}, { ...base, slowOperations: ['encrypt'] });
    const cluster = new HsmCluster({ id: 'c1', kind: 'shared', owners: [], members: [member] });
    cluster.start();
    await cluster.initDomain();
    const aes = await cluster.generate('AES_256', bind('aes', 'ENCRYPT_DECRYPT'));
    await member.load(aes);
    const sealed = await member.encryptGcm(aes, Buffer.from('x'), Buffer.alloc(0));
    const enc = tracked(member.encryptGcm(aes, Buffer.from('hello'), Buffer.alloc(0)));
    const dec = tracked(member.decryptGcm(aes, sealed, Buffer.alloc(0)));
    await drainMicrotasks();
    expect([enc.settled(), dec.settled()]).toEqual([false, true]);
    const out = await enc.promise;
    await expect(member.decryptGcm(aes, out, Buffer.alloc(0))).resolves.toEqual(Buffer.from('hello'));
    await expect(dec.promise).resolves.toEqual(Buffer.from('x'));
  });
});
