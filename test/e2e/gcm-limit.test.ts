/**
 * Security section 9 (part), the AES-GCM use limit, through the official SDK against a running server
 * whose limit is set small (`gcm.maxInvocationsPerVersion: 20`): a version that cannot rotate
 * (imported material) raises an alarm at 90 % and refuses Encrypt, GenerateDataKey and ReEncrypt to
 * it at the limit, while Decrypt goes on working; a key that can rotate is rotated instead.
 */
import { constants, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { initDev } from '../../src/cli/dev-init';
import type { Alarm } from '../../src/kms/alarms';
import { decodeBlob } from '../../src/kms/ciphertext';
import { codeOf, KmsClient, ServerLab } from '../support/server';

const LIMIT = 20;

describe('GCM use limit (gcm.maxInvocationsPerVersion: 20)', () => {
  const lab = new ServerLab();
  const alarmLog = join(lab.dir, 'alarms.jsonl');
  let c: KmsClient;
  let ext: string;
  const pt = Buffer.from('counted').toString('base64');
  const blobs: string[] = [];

  const alarms = (keyId: string, kind: string): Alarm[] =>
    existsSync(alarmLog)
      ? readFileSync(alarmLog, 'utf8')
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Alarm)
          .filter((a) => a.keyId === keyId && a.kind === kind)
      : [];

  beforeAll(async () => {
    await initDev(lab.dir, () => undefined);
    const file = join(lab.dir, 'kms.yaml');
    const doc = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    doc.gcm = { maxInvocationsPerVersion: LIMIT };
    doc.alarms = { log: alarmLog };
    writeFileSync(file, stringify(doc), { mode: 0o600 });
    await lab.start();
    c = lab.client();
    ext = (await c.CreateKey({ Alias: 'gcm-imported', Type: 2 })).KeyId as string;
    const p = await c.GetParametersForImport({ KeyId: ext, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' });
    const key = createPublicKey({ key: Buffer.from(p.PublicKey as string, 'base64'), format: 'der', type: 'spki' });
    const wrapped = publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, randomBytes(32));
    await c.ImportKeyMaterial({ KeyId: ext, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapped.toString('base64') });
  }, 60_000);
  afterAll(() => lab.stop());

  test('an imported version: no alarm below 90 %, an alarm at 90 %', async () => {
    for (let i = 0; i < 17; i++) blobs.push((await c.Encrypt({ KeyId: ext, Plaintext: pt })).CiphertextBlob as string);
    expect(alarms(ext, 'UsageLimitApproaching')).toEqual([]);
    blobs.push((await c.Encrypt({ KeyId: ext, Plaintext: pt })).CiphertextBlob as string);
    const raised = alarms(ext, 'UsageLimitApproaching');
    expect(raised).toHaveLength(1);
    expect(raised[0].detail).toMatch(/18 of 20/);
    expect(JSON.stringify(raised)).not.toContain(pt);
  });

  test('at the limit Encrypt, GenerateDataKey and ReEncrypt to it are refused with LimitExceeded; Decrypt still works', async () => {
    blobs.push((await c.GenerateDataKey({ KeyId: ext, KeySpec: 'AES_256' })).CiphertextBlob as string);
    blobs.push((await c.Encrypt({ KeyId: ext, Plaintext: pt })).CiphertextBlob as string);
    expect(await codeOf(c.Encrypt({ KeyId: ext, Plaintext: pt }))).toBe('LimitExceeded');
    expect(await codeOf(c.GenerateDataKey({ KeyId: ext, KeySpec: 'AES_256' }))).toBe('LimitExceeded');
    const native = (await c.CreateKey({ Alias: 'gcm-source' })).KeyId as string;
    const other = (await c.Encrypt({ KeyId: native, Plaintext: pt })).CiphertextBlob as string;
    expect(await codeOf(c.ReEncrypt({ CiphertextBlob: other, DestinationKeyId: ext }))).toBe('LimitExceeded');
    const err = await c.Encrypt({ KeyId: ext, Plaintext: pt }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/use limit/);
    expect(alarms(ext, 'UsageLimitReached')).toHaveLength(1);
    for (const blob of [blobs[0], blobs[17]]) expect((await c.Decrypt({ CiphertextBlob: blob })).Plaintext).toBe(pt);
    expect(blobs).toHaveLength(LIMIT);
    await expect(c.ReEncrypt({ CiphertextBlob: blobs[0], DestinationKeyId: native })).resolves.toMatchObject({ KeyId: native });
  });

  test('a key that can rotate is rotated at a quarter of the limit and never refused', async () => {
    const native = (await c.CreateKey({ Alias: 'gcm-native' })).KeyId as string;
    for (let i = 0; i < LIMIT + 5; i++) await c.Encrypt({ KeyId: native, Plaintext: pt });
    await lab.server.services.kms.jobs.runOnce();
    const after = (await c.Encrypt({ KeyId: native, Plaintext: pt })).CiphertextBlob as string;
    expect(decodeBlob(Buffer.from(after, 'base64'), lab.server.services.config.deploymentId).keyVersion).toBeGreaterThan(1);
  });
});
