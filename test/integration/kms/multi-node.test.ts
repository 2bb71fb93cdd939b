import { constants, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { decodeBlob } from '../../../src/kms/ciphertext';
import { ManualClock } from '../../../src/common/clock';
import * as E from '../../../src/kms/errors';
import type { Kms } from '../../../src/kms/service';
import { RedisMetadataStore } from '../../../src/store/redis/store';
import { alice, DEPLOYMENT, KmsLab } from '../../support/kms';
import { within } from '../../support/poll';
import { RedisServer, startRedis } from '../../support/redis';
import { report } from '../../support/report';

describe('KMS core: two nodes sharing one Redis', () => {
  let lab: KmsLab;
  let redis: RedisServer;
  let a: Kms;
  let b: Kms;
  const stores: RedisMetadataStore[] = [];
  const clock = new ManualClock(Date.UTC(2026, 10, 23));

  beforeAll(async () => {
    lab = new KmsLab();
    await lab.start();
    redis = await startRedis({ persistent: true });
    const open = async () => {
      const s = await RedisMetadataStore.open({ port: redis.port });
      stores.push(s);
      return s;
    };
    // node B caches key records for ten minutes: anything it learns sooner came from change notifications
    a = lab.kms(await open(), { clock, nodeId: 'node-a', keyCacheTtlMs: 600_000 });
    b = lab.kms(await open(), { clock, nodeId: 'node-b', keyCacheTtlMs: 600_000 });
  });
  afterAll(async () => {
    await lab.cleanup();
    for (const s of stores) await s.close();
    await redis.stop();
  });

  test('a key disabled on node A is refused on node B within a second (change notifications, not cache expiry)', async () => {
    const { keyId: KeyId } = await a.lifecycle.createKey(alice, { alias: 'shared-state' });
    const blob = (await b.envelope.encrypt(alice, { keyId: KeyId, plaintext: Buffer.from('warm the cache') })).ciphertext;
    await a.lifecycle.disableKey(alice, KeyId);
    const ms = await within(5_000, () =>
      b.envelope.encrypt(alice, { keyId: KeyId, plaintext: Buffer.from('x') }).then(
        () => false,
        (e) => e instanceof E.KeyDisabledError,
      ),
    );
    report(`node B refused the disabled key after ${ms} ms`);
    await a.lifecycle.enableKey(alice, KeyId);
    await within(5_000, () =>
      b.envelope.decrypt(alice, { ciphertext: blob }).then(
        () => true,
        () => false,
      ),
    );
  });

  test('a rotation on node A is used by node B', async () => {
    const { keyId: KeyId } = await a.lifecycle.createKey(alice, { alias: 'shared-rotation' });
    await b.envelope.encrypt(alice, { keyId: KeyId, plaintext: Buffer.from('v1') });
    await a.rotation.rotateKey(alice, KeyId);
    await within(5_000, async () => {
      const blob = (await b.envelope.encrypt(alice, { keyId: KeyId, plaintext: Buffer.from('v2') })).ciphertext;
      return decodeBlob(blob, DEPLOYMENT).keyVersion === 2;
    });
  });

  test('one leader at a time for background jobs; the lease passes on when the leader stops', async () => {
    const first = await a.jobs.runOnce();
    const second = await b.jobs.runOnce();
    expect([first.leader, second.leader].filter(Boolean)).toHaveLength(1);
    const leader = first.leader ? a : b;
    const other = first.leader ? b : a;
    await leader.jobs.stop();
    expect((await other.jobs.runOnce()).leader).toBe(true);
  });

  test('an import token from node A works on node B', async () => {
    const { keyId: KeyId } = await a.lifecycle.createKey(alice, { alias: 'shared-import', origin: 'EXTERNAL' });
    const p = await a.keyImport.getParametersForImport(alice, { keyId: KeyId, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });
    const key = createPublicKey({ key: p.publicKey, format: 'der', type: 'spki' });
    const wrapped = publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, randomBytes(32));
    await b.keyImport.importKeyMaterial(alice, { keyId: KeyId, importToken: p.importToken, encryptedKeyMaterial: wrapped });
    await within(5_000, () =>
      a.envelope.encrypt(alice, { keyId: KeyId, plaintext: Buffer.from('x') }).then(
        () => true,
        () => false,
      ),
    );
  });

  test('the key quota holds across nodes creating at the same time', async () => {
    const s1 = await RedisMetadataStore.open({ port: redis.port });
    const s2 = await RedisMetadataStore.open({ port: redis.port });
    stores.push(s1, s2);
    const q1 = lab.kms(s1, { clock, maxKeysPerRegion: 4 });
    const q2 = lab.kms(s2, { clock, maxKeysPerRegion: 4 });
    const erin = { tenant: '5001', uin: '5001', region: alice.region };
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => (i % 2 ? q1 : q2).lifecycle.createKey(erin, { alias: `quota-${i}` })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(4);
    expect((await q1.lifecycle.listKeys(erin, { limit: 100 })).totalCount).toBe(4);
  });
});
