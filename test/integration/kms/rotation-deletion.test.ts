import { rotateKeyAnswer } from '../../../src/api/kms-wire';
import { decodeBlob } from '../../../src/kms/ciphertext';
import { ManualClock } from '../../../src/common/clock';
import * as E from '../../../src/kms/errors';
import type { Kms } from '../../../src/kms/service';
import { alice, DEPLOYMENT, KmsLab } from '../../support/kms';

const DAY = 86_400;

describe('KMS core: rotation, scheduled deletion, alarms, background jobs', () => {
  let lab: KmsLab;
  let kms: Kms;
  const clock = new ManualClock(Date.UTC(2026, 10, 23));
  const now = () => Math.floor(clock.now() / 1000);

  beforeAll(async () => {
    ({ lab, kms } = await KmsLab.open({ clock }));
  });
  afterAll(() => lab.cleanup());

  const versionOf = (blob: Buffer) => decodeBlob(blob, DEPLOYMENT).keyVersion;
  const enc = async (keyId: string, pt = 'data') => (await kms.envelope.encrypt(alice, { keyId: keyId, plaintext: Buffer.from(pt) })).ciphertext;
  const dec = async (blob: Buffer) => (await kms.envelope.decrypt(alice, { ciphertext: blob })).plaintext.toString();

  test('rotation settings: off by default, RotateDays 7..365 (default 365), status reported', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'rot-settings' });
    expect(await kms.rotation.getKeyRotationStatus(alice, KeyId)).toEqual({ keyId: KeyId, rotationEnabled: false });
    for (const bad of [6, 366, 30.5])
      await expect(kms.rotation.enableKeyRotation(alice, { keyId: KeyId, rotateDays: bad })).rejects.toBeInstanceOf(E.InvalidParameterError);
    await kms.rotation.enableKeyRotation(alice, { keyId: KeyId });
    expect(await kms.lifecycle.describeKey(alice, KeyId)).toMatchObject({ rotationEnabled: true, rotateDays: 365, nextRotateTime: now() + 365 * DAY });
    await kms.rotation.enableKeyRotation(alice, { keyId: KeyId, rotateDays: 30 });
    expect(await kms.lifecycle.describeKey(alice, KeyId)).toMatchObject({ rotateDays: 30, nextRotateTime: now() + 30 * DAY });
    await kms.rotation.disableKeyRotation(alice, KeyId);
    expect(await kms.lifecycle.describeKey(alice, KeyId)).toMatchObject({ rotationEnabled: false, nextRotateTime: undefined });
  });

  test('RotateKey adds a version: Encrypt uses the newest, old blobs still decrypt, ReEncrypt moves them forward', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'rot-demand' });
    const v1 = await enc(KeyId, 'one');
    expect(await kms.rotation.rotateKey(alice, KeyId)).toEqual({ keyId: KeyId, keyVersion: 2 });
    expect(rotateKeyAnswer().TaskId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await kms.lifecycle.describeKey(alice, KeyId)).lastRotateTime).toBe(now());
    const v2 = await enc(KeyId, 'two');
    expect([versionOf(v1), versionOf(v2)]).toEqual([1, 2]);
    expect([await dec(v1), await dec(v2)]).toEqual(['one', 'two']);
    const moved = await kms.envelope.reEncrypt(alice, { ciphertext: v1 });
    expect(moved.reEncrypted).toBe(true);
    expect(versionOf(moved.ciphertext)).toBe(2);
    expect(await dec(moved.ciphertext)).toBe('one');
    const again = await kms.envelope.reEncrypt(alice, { ciphertext: moved.ciphertext });
    expect(again).toMatchObject({ reEncrypted: false, ciphertext: moved.ciphertext });
  });

  test('concurrent RotateKey calls on one key: one wins, the other is told a rotation is running', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'rot-race' });
    const results = await Promise.allSettled([kms.rotation.rotateKey(alice, KeyId), kms.rotation.rotateKey(alice, KeyId)]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason).toBeInstanceOf(E.RotationRunningError);
  });

  test('asymmetric and imported keys refuse rotation with their own errors; disabled keys cannot rotate on demand', async () => {
    const rsa = await kms.lifecycle.createKey(alice, { alias: 'rot-rsa', keyUsage: 'rsa-2048-sign-verify' });
    await expect(kms.rotation.enableKeyRotation(alice, { keyId: rsa.keyId })).rejects.toBeInstanceOf(E.RotationNotSupportedError);
    await expect(kms.rotation.rotateKey(alice, rsa.keyId)).rejects.toBeInstanceOf(E.RotationNotSupportedError);
    const ext = await kms.lifecycle.createKey(alice, { alias: 'rot-ext', origin: 'EXTERNAL' });
    await expect(kms.rotation.enableKeyRotation(alice, { keyId: ext.keyId })).rejects.toBeInstanceOf(E.ExternalKeyCannotRotateError);
    await expect(kms.rotation.rotateKey(alice, ext.keyId)).rejects.toBeInstanceOf(E.ExternalKeyCannotRotateError);
    const off = await kms.lifecycle.createKey(alice, { alias: 'rot-off' });
    await kms.lifecycle.disableKey(alice, off.keyId);
    await expect(kms.rotation.rotateKey(alice, off.keyId)).rejects.toBeInstanceOf(E.KeyDisabledError);
    await kms.lifecycle.archiveKey(alice, off.keyId);
    await expect(kms.rotation.enableKeyRotation(alice, { keyId: off.keyId })).rejects.toBeInstanceOf(E.KeyArchivedError);
  });

  test('the scheduler rotates keys whose date has come, and only those', async () => {
    const due = await kms.lifecycle.createKey(alice, { alias: 'rot-due' });
    const later = await kms.lifecycle.createKey(alice, { alias: 'rot-later' });
    await kms.rotation.enableKeyRotation(alice, { keyId: due.keyId, rotateDays: 7 });
    await kms.rotation.enableKeyRotation(alice, { keyId: later.keyId, rotateDays: 30 });
    clock.advance(8 * DAY);
    const report = await kms.jobs.runOnce();
    expect(report.leader).toBe(true);
    expect(report.rotated).toContain(due.keyId);
    expect(report.rotated).not.toContain(later.keyId);
    expect(await kms.lifecycle.describeKey(alice, due.keyId)).toMatchObject({ lastRotateTime: now(), nextRotateTime: now() + 7 * DAY });
    expect(versionOf(await enc(due.keyId))).toBe(2);
    expect((await kms.jobs.runOnce()).rotated).not.toContain(due.keyId);
  });

  test('only the lease holder runs scheduled work; another node takes over when the lease expires', async () => {
    const store = lab.sqlite('lease.db');
    const a = lab.kms(store, { clock, nodeId: 'node-a' });
    const b = lab.kms(lab.sqlite('lease.db'), { clock, nodeId: 'node-b' });
    expect((await a.jobs.runOnce()).leader).toBe(true);
    expect((await b.jobs.runOnce()).leader).toBe(false);
    await a.jobs.stop();
    expect((await b.jobs.runOnce()).leader).toBe(true);
  });

  test('deletion: daily alarms in the last 3 days, then crypto-shred with a tombstone; ciphertext never decrypts again', async () => {
    const { keyId: KeyId } = await kms.lifecycle.createKey(alice, { alias: 'doomed' });
    await kms.rotation.rotateKey(alice, KeyId);
    const blob = await enc(KeyId, 'last words');
    await kms.lifecycle.disableKey(alice, KeyId);
    const { deletionDate: DeletionDate } = await kms.lifecycle.scheduleKeyDeletion(alice, { keyId: KeyId, pendingWindowDays: 7 });
    const imminent = () => kms.alarms.list(KeyId).filter((a) => a.kind === 'KeyDeletionImminent').length;
    clock.advance(3 * DAY);
    await kms.jobs.runOnce();
    expect(imminent()).toBe(0);
    clock.advance(1 * DAY + 60);
    await kms.jobs.runOnce();
    await kms.jobs.runOnce();
    expect(imminent()).toBe(1);
    clock.advance(1 * DAY);
    await kms.jobs.runOnce();
    expect(imminent()).toBe(2);
    clock.set(DeletionDate * 1000 - 1000);
    expect((await kms.jobs.runOnce()).deleted).not.toContain(KeyId);
    clock.set(DeletionDate * 1000);
    expect((await kms.jobs.runOnce()).deleted).toEqual([KeyId]);
    expect(kms.alarms.list(KeyId).map((a) => a.kind)).toContain('KeyDeleted');
    await expect(kms.lifecycle.describeKey(alice, KeyId)).rejects.toBeInstanceOf(E.KeyNotFoundError);
    await expect(kms.lifecycle.cancelKeyDeletion(alice, KeyId)).rejects.toBeInstanceOf(E.KeyNotFoundError);
    const err = await kms.envelope.decrypt(alice, { ciphertext: blob }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(E.KeyNotFoundError);
    expect((err as Error).message).toContain('was deleted');
    expect(await kms.store.getTombstone(alice.tenant, KeyId)).toMatchObject({ keyId: KeyId, alias: 'doomed', deletedAt: DeletionDate });
    expect(await kms.store.getKey(alice.tenant, KeyId)).toBeUndefined();
    await expect(kms.lifecycle.createKey(alice, { alias: 'doomed' })).resolves.not.toThrow();
  });
});
