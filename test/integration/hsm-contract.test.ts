/**
 * The error contract of the HSM layer on real SoftHSM2 tokens: every public operation of a member
 * and of a cluster, given bad input (or asked of a member that cannot serve), returns a promise
 * that rejects with a typed HsmError. It never throws synchronously, which would skip the retry
 * on another member in HsmCluster.run and escape callers that only attach .catch.
 */
import type { KeySpec, RsaPadding, SigningAlgorithm } from '../../src/hsm/capabilities';
import { HsmCluster } from '../../src/hsm/cluster';
import { HsmError } from '../../src/hsm/errors';
import { MaterialBinding, WrappedMaterial } from '../../src/hsm/material';
import { HsmMember } from '../../src/hsm/member';
import { rejection } from '../support/rejection';
import { TokenLab } from '../support/tokens';

const bind = (keyId: string, usage = 'ENCRYPT_DECRYPT', clusterId = 'ct'): MaterialBinding => ({ clusterId, keyId, keyVersion: 1, usage });
const bogus = (s: string): string => s;
const BAD_SPEC = bogus('RSA_1024') as KeySpec;
const BAD_PADDING = bogus('RSAES_NONE') as RsaPadding;
const BAD_ALGORITHM = bogus('RSA_MD5') as SigningAlgorithm;

/** Calls `op`; a synchronous throw fails the test; the promise must reject with an HsmError. */
async function rejects(op: () => Promise<unknown>): Promise<HsmError> {
  let p: Promise<unknown>;
  try {
    p = op();
  } catch (e) {
    throw new Error(`threw synchronously instead of returning a rejected promise: ${(e as Error).message}`);
  }
  expect(p).toBeInstanceOf(Promise);
  const e = await rejection(p);
  expect(e).toBeInstanceOf(HsmError);
  return e as HsmError;
}

describe('every public member and cluster operation rejects, never throws', () => {
  let lab: TokenLab;
  /** Connected, holding the cluster's domain keys. */
  let m: HsmMember;
  /** Connected, no domain keys. */
  let bare: HsmMember;
  /** Never connected: UNAVAILABLE. */
  let down: HsmMember;
  let cluster: HsmCluster;
  let downCluster: HsmCluster;
  let aes: WrappedMaterial;
  let rsa: WrappedMaterial;
  let foreign: WrappedMaterial;

  beforeAll(async () => {
    lab = new TokenLab();
    [m, bare, down] = lab.softhsm('ct', ['tok-m', 'tok-bare', 'tok-down']);
    cluster = new HsmCluster({ id: 'ct', kind: 'shared', owners: [], members: [m], probeIntervalMs: 0 });
    cluster.start();
    await cluster.initDomain();
    bare.connect();
    downCluster = new HsmCluster({ id: 'ct-down', kind: 'shared', owners: [], members: [down], probeIntervalMs: 0 });
    aes = await cluster.generate('AES_256', bind('aes'));
    rsa = await cluster.generate('RSA_2048', bind('rsa', 'SIGN_VERIFY'));
    foreign = new WrappedMaterial('AES_256', bind('aes'), Buffer.alloc(16, 7), Buffer.alloc(40, 1), Buffer.alloc(0), Buffer.alloc(32, 2));
  });
  afterAll(() => lab.cleanup());

  const memberCases: Array<[string, () => Promise<unknown>]> = [
    [
      'withSession: the work throws',
      () =>
        m.withSession('random', () => {
          throw new TypeError('bad argument');
        }),
    ],
    ['removeDomainKeys: member unavailable', () => down.removeDomainKeys()],
    ['generateDomainKeys: token already holds that generation', () => m.generateDomainKeys(m.domain!.id)],
    ['createTransportKey: member unavailable', () => down.createTransportKey()],
    ['exportDomainKeys: no domain keys', () => bare.exportDomainKeys(Buffer.alloc(384, 1), Buffer.from([1, 0, 1]))],
    [
      'importDomainKeys: member unavailable',
      () =>
        down.importDomainKeys(
          { privateKey: Buffer.alloc(8), publicKey: Buffer.alloc(8) },
          { id: Buffer.alloc(16), kek: Buffer.alloc(40), mac: Buffer.alloc(40), unwrapTemplate: false },
        ),
    ],
    ['domainFingerprint: no domain keys', () => bare.domainFingerprint('rfc5649')],
    ['lockDomainKeys: member unavailable', () => down.lockDomainKeys()],
    ['trustTransportKeys: member unavailable', () => down.trustTransportKeys('not-an-so-pin', [])],
    ['domainMac: bad purpose', () => m.domainMac('Not A Purpose!', Buffer.alloc(1))],
    ['generate: unknown key spec', () => m.generate(BAD_SPEC, bind('x'))],
    ['generate: no domain keys', () => bare.generate('AES_256', bind('x'))],
    ['generate: member unavailable', () => down.generate('AES_256', bind('x'))],
    ['rebindLegacy: another domain', () => m.rebindLegacy(foreign, bind('aes'))],
    ['load: another domain', () => m.load(foreign)],
    ['random: negative length', () => m.random(-1)],
    ['encryptGcm: another domain', () => m.encryptGcm(foreign, Buffer.from('x'), Buffer.alloc(0))],
    ['encryptGcm: member unavailable', () => down.encryptGcm(aes, Buffer.from('x'), Buffer.alloc(0))],
    ['decryptGcm: short IV', () => m.decryptGcm(aes, { iv: Buffer.alloc(3), ciphertext: Buffer.alloc(1), tag: Buffer.alloc(16) }, Buffer.alloc(0))],
    ['sign: short digest', () => m.sign(rsa, 'RSA_PKCS1_SHA_256', { digest: Buffer.alloc(3) })],
    ['sign: unknown algorithm', () => m.sign(rsa, BAD_ALGORITHM, { message: Buffer.from('x') })],
    ['verify: short digest', () => m.verify(rsa.publicKey, 'RSA_2048', 'RSA_PKCS1_SHA_256', { digest: Buffer.alloc(3) }, Buffer.alloc(256))],
    ['verify: key does not fit the algorithm', () => m.verify(rsa.publicKey, 'RSA_2048', 'ECDSA_SHA_256', { digest: Buffer.alloc(32) }, Buffer.alloc(64))],
    ['rsaDecrypt: unknown padding', () => m.rsaDecrypt(rsa, BAD_PADDING, Buffer.alloc(256))],
    ['rsaDecrypt: not an RSA key', () => m.rsaDecrypt(aes, 'RSAES_OAEP_SHA_1', Buffer.alloc(256))],
    ['importAes: unknown padding', () => m.importAes(rsa, BAD_PADDING, Buffer.alloc(256), bind('imp'))],
    ['importAes: no domain keys', () => bare.importAes(rsa, 'RSAES_OAEP_SHA_1', Buffer.alloc(256), bind('imp'))],
    ['probe: canary of another domain', () => m.probe(foreign)],
  ];

  test.each(memberCases)('member %s', async (_name, op) => {
    await rejects(op);
  });

  const clusterCases: Array<[string, () => Promise<unknown>]> = [
    ['generate: unknown key spec', () => cluster.generate(BAD_SPEC, bind('x'))],
    ['generate: binding of another cluster', () => cluster.generate('AES_256', bind('x', 'ENCRYPT_DECRYPT', 'elsewhere'))],
    ['encrypt: binding of another key', () => cluster.encrypt(aes, bind('other'), Buffer.from('x'), Buffer.alloc(0))],
    [
      'decrypt: binding of another key',
      () => cluster.decrypt(aes, bind('other'), { iv: Buffer.alloc(12), ciphertext: Buffer.alloc(1), tag: Buffer.alloc(16) }, Buffer.alloc(0)),
    ],
    [
      'decrypt: short tag',
      () => cluster.decrypt(aes, bind('aes'), { iv: Buffer.alloc(12), ciphertext: Buffer.alloc(1), tag: Buffer.alloc(3) }, Buffer.alloc(0)),
    ],
    ['sign: unknown algorithm', () => cluster.sign(rsa, bind('rsa', 'SIGN_VERIFY'), BAD_ALGORITHM, { message: Buffer.from('x') })],
    ['sign: binding of another key', () => cluster.sign(rsa, bind('other', 'SIGN_VERIFY'), 'RSA_PKCS1_SHA_256', { message: Buffer.from('x') })],
    ['verify: material without a public key', () => cluster.verify(aes, 'RSA_PKCS1_SHA_256', { message: Buffer.from('x') }, Buffer.alloc(256))],
    ['rsaDecrypt: unknown padding', () => cluster.rsaDecrypt(rsa, bind('rsa', 'SIGN_VERIFY'), BAD_PADDING, Buffer.alloc(256))],
    ['rsaDecrypt: binding of another key', () => cluster.rsaDecrypt(rsa, bind('other'), 'RSAES_OAEP_SHA_1', Buffer.alloc(256))],
    ['random: negative length', () => cluster.random(-1)],
    ['mac: bad purpose', () => cluster.mac('Not A Purpose!', Buffer.alloc(1))],
    ['verifyMac: bad purpose', () => cluster.verifyMac('Not A Purpose!', Buffer.alloc(1), Buffer.alloc(32))],
    ['createImportWrappingKey: binding of another cluster', () => cluster.createImportWrappingKey(bind('w', 'WRAP', 'elsewhere'))],
    ['importKeyMaterial: unknown padding', () => cluster.importKeyMaterial(rsa, bind('rsa', 'SIGN_VERIFY'), BAD_PADDING, Buffer.alloc(256), bind('imp'))],
    [
      'importKeyMaterial: binding of another cluster',
      () => cluster.importKeyMaterial(rsa, bind('rsa', 'SIGN_VERIFY'), 'RSAES_OAEP_SHA_1', Buffer.alloc(256), bind('imp', 'ENCRYPT_DECRYPT', 'elsewhere')),
    ],
    ['rebindLegacy: not a KMR1 record', () => cluster.rebindLegacy(aes, bind('aes'))],
    ['encrypt: no member can serve', () => downCluster.encrypt(aes, bind('aes', 'ENCRYPT_DECRYPT', 'ct-down'), Buffer.from('x'), Buffer.alloc(0))],
    ['initDomain: a member is unavailable', () => downCluster.initDomain()],
    ['addMember: no reachable member holds domain keys', () => downCluster.addMember(down)],
    ['lock: a member is unavailable', () => downCluster.lock()],
  ];

  test.each(clusterCases)('cluster %s', async (_name, op) => {
    await rejects(op);
  });

  test('the member that answered every bad request is still ACTIVE and serves', async () => {
    expect(m.state).toBe('ACTIVE');
    const sealed = await cluster.encrypt(aes, bind('aes'), Buffer.from('still fine'), Buffer.alloc(0));
    expect((await cluster.decrypt(aes, bind('aes'), sealed, Buffer.alloc(0))).toString()).toBe('still fine');
  });
});
