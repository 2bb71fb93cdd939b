/**
 * Hosted data keys in the KMS core on both backends (real SoftHSM2 tokens, SQLite and a real
 * redis-server): shredded after the deletion date by the background jobs of the lease holder only,
 * the data-key limit, a deleted CMK, and no plaintext data key anywhere in Redis.
 */
import { randomBytes } from 'node:crypto';
import Redis from 'ioredis';
import { ManualClock } from '../../../src/common/clock';
import * as E from '../../../src/kms/errors';
import type { Kms } from '../../../src/kms/service';
import { RedisMetadataStore } from '../../../src/store/redis/store';
import type { MetadataStore } from '../../../src/store/store';
import { alice, bob, KmsLab } from '../../support/kms';
import { RedisServer, startRedis } from '../../support/redis';

const DAY = 86_400;

describe('KMS core: hosted data keys on SQLite and Redis', () => {
  let lab: KmsLab;
  let redis: RedisServer;
  const stores: MetadataStore[] = [];
  const clock = new ManualClock(Date.UTC(2026, 10, 23));

  beforeAll(async () => {
    lab = new KmsLab();
    await lab.start();
    redis = await startRedis({ persistent: true });
  }, 60_000);
  afterAll(async () => {
    await lab.cleanup();
    for (const s of stores) await s.close().catch(() => undefined);
    await redis.stop();
  });

  const backends: Array<[string, () => Promise<MetadataStore>]> = [
    ['sqlite', async () => lab.sqlite(`dk-${stores.length}.db`)],
    [
      'redis',
      async () => {
        const s = await RedisMetadataStore.open({ port: redis.port });
        stores.push(s);
        return s;
      },
    ],
  ];

  describe.each(backends)('%s', (name, open) => {
    let store: MetadataStore;
    let node1: Kms;
    let node2: Kms;
    let cmk: string;

    beforeAll(async () => {
      store = await open();
      node1 = lab.kms(store, { clock, nodeId: `${name}-node-1`, maxDataKeysPerRegion: 5 });
      node2 = lab.kms(name === 'redis' ? await open() : store, { clock, nodeId: `${name}-node-2`, maxDataKeysPerRegion: 5 });
      cmk = (await node1.lifecycle.createKey(alice, { alias: `dk-root-${name}` })).keyId;
    });

    test('deletion: kept until the date, then shredded by the jobs of the lease holder only', async () => {
      const made = await node1.dataKeys.generate(alice, { keyId: cmk, keySpec: 'AES_256', name: `shred-${name}` });
      const id = made.dataKeyId;
      await node1.dataKeys.disable(alice, id);
      const { deletionDate } = await node1.dataKeys.scheduleDeletion(alice, id, 7);
      expect(deletionDate).toBe(Math.floor(clock.now() / 1000) + 7 * DAY);
      clock.advance(6 * DAY);
      const early = [await node1.jobs.runOnce(), await node2.jobs.runOnce()];
      expect(early.flatMap((r) => r.dataKeysDeleted)).toEqual([]);
      expect((await node2.dataKeys.describe(alice, id)).keyState).toBe('PendingDelete');
      clock.advance(2 * DAY);
      const first = await node1.jobs.runOnce();
      const second = await node2.jobs.runOnce();
      expect([first.leader, second.leader]).toEqual([true, false]);
      expect(first.dataKeysDeleted).toEqual([id]);
      expect(second.dataKeysDeleted).toEqual([]);
      await expect(node2.dataKeys.describe(alice, id)).rejects.toBeInstanceOf(E.DataKeyNotFoundError);
      expect(await store.getDataKey(alice.tenant, id)).toBeUndefined();
      // the blob returned at generation still decrypts under the CMK: shredding the hosted copy does not touch the CMK
      expect((await node1.envelope.decrypt(alice, { ciphertext: made.ciphertext })).plaintext.equals(made.plaintext)).toBe(true);
    });

    test('the data-key limit: refused at the limit (LimitExceeded), room again after a shred', async () => {
      const have = (await node1.dataKeys.quota(alice)).used;
      const ids: string[] = [];
      for (let i = have; i < 5; i++) ids.push((await node1.dataKeys.generate(alice, { keyId: cmk, numberOfBytes: 16, name: `limit-${name}-${i}` })).dataKeyId);
      expect(await node1.dataKeys.quota(alice)).toEqual({ used: 5, limit: 5 });
      await expect(node2.dataKeys.generate(alice, { keyId: cmk, numberOfBytes: 16, name: `limit-${name}-over` })).rejects.toBeInstanceOf(
        E.DataKeyLimitExceededError,
      );
      await expect(
        node2.dataKeys.importDataKey(alice, { name: `limit-${name}-imp`, importType: 'plaintext', material: Buffer.alloc(16, 1), keyId: cmk }),
      ).rejects.toBeInstanceOf(E.DataKeyLimitExceededError);
      expect((await node1.dataKeys.quota(bob)).used).toBe(0);
      await node1.dataKeys.disable(alice, ids[0]);
      await node1.dataKeys.scheduleDeletion(alice, ids[0], 7);
      clock.advance(8 * DAY);
      expect((await node1.jobs.runOnce()).dataKeysDeleted).toEqual([ids[0]]);
      await node2.dataKeys.generate(alice, { keyId: cmk, numberOfBytes: 16, name: `limit-${name}-again` });
      for (const id of (await node1.dataKeys.list(alice, { limit: 200 })).dataKeys.map((d) => d.dataKeyId)) {
        await node1.dataKeys.disable(alice, id);
        await node1.dataKeys.scheduleDeletion(alice, id, 7);
      }
      clock.advance(8 * DAY);
      expect((await node1.jobs.runOnce()).dataKeysDeleted).toHaveLength(5);
    });

    test('a deleted CMK: its data keys are described (KeyName empty) but can give nothing back', async () => {
      const root = (await node1.lifecycle.createKey(alice, { alias: `dk-doomed-${name}` })).keyId;
      const { dataKeyId } = await node1.dataKeys.generate(alice, { keyId: root, keySpec: 'AES_128', name: `orphan-${name}` });
      await node1.lifecycle.disableKey(alice, root);
      await node1.lifecycle.scheduleKeyDeletion(alice, { keyId: root, pendingWindowDays: 7 });
      clock.advance(8 * DAY);
      expect((await node1.jobs.runOnce()).deleted).toContain(root);
      expect(await node2.dataKeys.describe(alice, dataKeyId)).toMatchObject({ keyId: root, keyName: '', keyState: 'Enabled' });
      await expect(node2.dataKeys.plaintext(alice, dataKeyId)).rejects.toBeInstanceOf(E.KeyNotFoundError);
      await expect(node2.dataKeys.ciphertextBlob(alice, dataKeyId)).rejects.toBeInstanceOf(E.KeyNotFoundError);
      await node1.dataKeys.disable(alice, dataKeyId);
      await node1.dataKeys.scheduleDeletion(alice, dataKeyId, 7);
      clock.advance(8 * DAY);
      expect((await node1.jobs.runOnce()).dataKeysDeleted).toEqual([dataKeyId]);
    });
  });

  test('no plaintext data key is anywhere in Redis (every value of every key, read by its type)', async () => {
    const store = await backends[1][1]();
    const kms = lab.kms(store, { clock, nodeId: 'redis-grep' });
    const cmk = (await kms.lifecycle.createKey(alice, { alias: 'dk-grep' })).keyId;
    const plaintexts: Buffer[] = [];
    for (let i = 0; i < 4; i++) {
      const made = await kms.dataKeys.generate(alice, { keyId: cmk, keySpec: 'AES_256', name: `grep-${i}`, context: { n: String(i) } });
      plaintexts.push(made.plaintext);
      expect((await kms.dataKeys.plaintext(alice, made.dataKeyId)).equals(made.plaintext)).toBe(true);
    }
    const material = randomBytes(32);
    plaintexts.push(Buffer.from(material));
    const imported = await kms.dataKeys.importDataKey(alice, { name: 'grep-imported', importType: 'plaintext', material, keyId: cmk });
    expect((await kms.dataKeys.plaintext(alice, imported.dataKeyId)).equals(plaintexts[4])).toBe(true);
    const raw = new Redis({ port: redis.port });
    try {
      const names: string[] = [];
      for await (const batch of raw.scanStream({ count: 1000 })) names.push(...(batch as string[]));
      expect(names.some((n) => n.startsWith('kms:dk:'))).toBe(true);
      const values: Buffer[] = names.map((n) => Buffer.from(n));
      for (const n of names) {
        const type = await raw.type(n);
        if (type === 'hash') values.push(...Object.values(await raw.hgetallBuffer(n)), ...Object.keys(await raw.hgetall(n)).map((k) => Buffer.from(k)));
        else if (type === 'string') values.push((await raw.getBuffer(n)) ?? Buffer.alloc(0));
        else if (type === 'zset') values.push(...(await raw.zrangeBuffer(n, '0', '-1')));
        else if (type === 'set') values.push(...(await raw.smembersBuffer(n)));
        else if (type === 'list') values.push(...(await raw.lrangeBuffer(n, 0, -1)));
        else if (type === 'stream') values.push(Buffer.from(JSON.stringify(await raw.xrange(n, '-', '+'))));
        else throw new Error(`key ${n} of type ${type} is not read by this test`);
      }
      const all = Buffer.concat(values);
      for (const p of plaintexts) {
        for (const needle of [p, Buffer.from(p.toString('base64')), Buffer.from(p.toString('hex'))]) expect(all.includes(needle)).toBe(false);
      }
    } finally {
      raw.disconnect();
    }
  });
});
