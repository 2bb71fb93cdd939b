/**
 * Resilience: the KMS process is killed with SIGKILL during a burst of CreateKey, RotateKey and
 * ImportKeyMaterial issued by the official SDK, several times, and started again each time
 * (`node dist/src/main.js --data-dir DIR`, the development installation on SQLite). After the last
 * restart every acknowledged operation is complete — keys exist, rotated keys encrypt under a
 * version that counts every acknowledged rotation, imported keys are Enabled and encrypt under the
 * very material that was imported — and nothing half-made is visible: every listed key is usable,
 * or cleanly PendingImport (and can then be imported), and every stored key's versions are 1..n.
 */
import { constants, createDecipheriv, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadServerConfig } from '../../src/config';
import { additionalData, canonicalContext, decodeBlob } from '../../src/kms/ciphertext';
import { SqliteMetadataStore } from '../../src/store/sqlite/store';
import type { KeyRecord } from '../../src/store/store';
import { sleep } from '../support/poll';
import { b64, devInstall, outcome, sdk, ServerProcess, SOAK } from '../support/resilience-lab';
import type { Credentials, KmsClient, SdkError } from '../support/server';
import { report } from '../support/report';

const WORKERS = 6;
/** Kills, and acknowledged operations (of this start) after which each kill comes, at a random moment in the next 40 ms. */
const KILLS = SOAK ? 10 : 3;
const ACKS_BEFORE_KILL = SOAK ? [40, 120] : [15, 40];

interface Made {
  external: boolean;
  /** RotateKey calls acknowledged. */
  rotations: number;
  /** ImportKeyMaterial acknowledged. */
  imported: boolean;
  /** The material sent in an ImportKeyMaterial (acknowledged or cut off by the kill). */
  material?: Buffer;
}

/** Wraps 32 fresh bytes for the key's import parameters (RSAES_OAEP_SHA_1, as the Tencent docs show with openssl). */
async function wrapFor(client: KmsClient, keyId: string): Promise<{ token: string; wrapped: string; material: Buffer }> {
  const p = await client.GetParametersForImport({ KeyId: keyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' });
  const key = createPublicKey({ key: Buffer.from(p.PublicKey as string, 'base64'), format: 'der', type: 'spki' });
  const material = randomBytes(32);
  return {
    token: p.ImportToken as string,
    wrapped: b64(publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, material)),
    material,
  };
}

describe('KMS process: kill -9 during CreateKey, RotateKey and ImportKeyMaterial, restart', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-resilience-crash-'));
  const server = new ServerProcess(dir);
  let creds: Credentials;
  let deploymentId: Buffer;
  const made = new Map<string, Made>();
  /** Error envelopes during the bursts (none expected: the requests are all valid). */
  const refused: string[] = [];
  let acked = 0;

  beforeAll(
    async () => {
      creds = await devInstall(dir);
      deploymentId = loadServerConfig(dir, {}).deploymentId;
      for (let kill = 0; kill < KILLS; kill++) {
        await server.start();
        await burstAndKill(kill);
      }
      await server.start();
    },
    SOAK ? 900_000 : 120_000,
  );

  afterAll(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  /** WORKERS loops of create / rotate / import until the server is killed under them. */
  async function burstAndKill(kill: number): Promise<void> {
    const client = sdk(server.port, creds);
    const target = acked + ACKS_BEFORE_KILL[0] + Math.floor(Math.random() * (ACKS_BEFORE_KILL[1] - ACKS_BEFORE_KILL[0]));
    let killing: Promise<void> | undefined;
    const ack = () => {
      acked++;
      if (acked >= target && !killing) killing = sleep(Math.floor(Math.random() * 40)).then(() => server.kill9());
    };
    /** Runs one call; false when the server is gone (no envelope: the connection broke or was refused). */
    const call = async <T>(p: () => Promise<T>): Promise<T | false> => {
      try {
        return await p();
      } catch (e) {
        const err = e as SdkError;
        if (err.code && err.requestId) {
          refused.push(`${err.code}: ${err.message}`);
          return false;
        }
        if (!killing) throw e;
        return false;
      }
    };
    const worker = async (w: number): Promise<void> => {
      const mine: string[] = [];
      // requests keep going until the process is gone, so the kill lands among requests in flight
      for (let i = 0; server.running; i++) {
        const step = i % 3;
        if (step === 0 || mine.length === 0) {
          const r = await call(() => client.CreateKey({ Alias: `crash-${kill}-${w}-${i}` }));
          if (r === false) return;
          made.set(r.KeyId as string, { external: false, rotations: 0, imported: false });
          mine.push(r.KeyId as string);
          ack();
        } else if (step === 1) {
          const keyId = mine[Math.floor(Math.random() * mine.length)];
          if ((await call(() => client.RotateKey({ KeyId: keyId }))) === false) return;
          made.get(keyId)!.rotations++;
          ack();
        } else {
          const r = await call(() => client.CreateKey({ Alias: `crash-import-${kill}-${w}-${i}`, Type: 2 }));
          if (r === false) return;
          const keyId = r.KeyId as string;
          const m: Made = { external: true, rotations: 0, imported: false };
          made.set(keyId, m);
          ack();
          const wrapped = await call(() => wrapFor(client, keyId));
          if (wrapped === false) return;
          m.material = wrapped.material;
          if ((await call(() => client.ImportKeyMaterial({ KeyId: keyId, ImportToken: wrapped.token, EncryptedKeyMaterial: wrapped.wrapped }))) === false)
            return;
          m.imported = true;
          ack();
        }
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    await (killing ?? server.kill9());
  }

  /** Decrypts a blob locally with the imported material: proof that the key encrypts under exactly that material. */
  function openLocally(blob: string, material: Buffer): string {
    const sealed = decodeBlob(Buffer.from(blob, 'base64'), deploymentId);
    const d = createDecipheriv('aes-256-gcm', material, sealed.iv);
    d.setAAD(additionalData(sealed.header, canonicalContext(undefined)));
    d.setAuthTag(sealed.tag);
    return Buffer.concat([d.update(sealed.ciphertext), d.final()]).toString();
  }

  test('the bursts ran and were cut by the kills; only valid requests were refused: none', () => {
    report(
      `kms crash: ${KILLS} kills with SIGKILL, ${acked} acknowledged operations (${made.size} keys, ` +
        `${[...made.values()].reduce((n, m) => n + m.rotations, 0)} rotations, ${[...made.values()].filter((m) => m.imported).length} imports)`,
    );
    expect(acked).toBeGreaterThanOrEqual(KILLS * ACKS_BEFORE_KILL[0]);
    expect(refused).toEqual([]);
  });

  test('start-up found nothing to repair after any of the kills', () => {
    expect(server.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('start-up:'))).toEqual([]);
  });

  test('every acknowledged operation is complete', async () => {
    const client = sdk(server.port, creds);
    for (const [keyId, m] of made) {
      const meta = (await client.DescribeKey({ KeyId: keyId })).KeyMetadata as Record<string, unknown>;
      expect(meta).toMatchObject({ KeyId: keyId, Origin: m.external ? 'EXTERNAL' : 'TENCENT_KMS' });
      if (m.external && !m.imported) {
        expect(['PendingImport', 'Enabled']).toContain(meta.KeyState);
        continue;
      }
      expect(meta.KeyState).toBe('Enabled');
      const plaintext = `after the crashes: ${keyId}`;
      const blob = (await client.Encrypt({ KeyId: keyId, Plaintext: b64(plaintext) })).CiphertextBlob as string;
      expect((await client.Decrypt({ CiphertextBlob: blob })).Plaintext).toBe(b64(plaintext));
      // Encrypt uses the newest version: every acknowledged rotation added one
      expect(decodeBlob(Buffer.from(blob, 'base64'), deploymentId).keyVersion).toBeGreaterThanOrEqual(1 + m.rotations);
      if (m.imported) expect(openLocally(blob, m.material!)).toBe(plaintext);
    }
  });

  test('nothing half-made is visible: every listed key is usable or cleanly PendingImport', async () => {
    const client = sdk(server.port, creds);
    const listed: Array<Record<string, unknown>> = [];
    for (let offset = 0; ; offset += 200) {
      const page = (await client.ListKeyDetail({ Offset: offset, Limit: 200 })).KeyMetadatas as Array<Record<string, unknown>>;
      listed.push(...page);
      if (page.length < 200) break;
    }
    const ids = new Set(listed.map((k) => k.KeyId as string));
    for (const keyId of made.keys()) expect(ids.has(keyId)).toBe(true);
    let pending = 0;
    for (const k of listed) {
      const keyId = k.KeyId as string;
      const plaintext = b64(`listed ${keyId}`);
      if (k.KeyState === 'PendingImport') {
        pending++;
        expect(k.Origin).toBe('EXTERNAL');
        expect(await outcome(client.Encrypt({ KeyId: keyId, Plaintext: plaintext }))).toBe('ResourceUnavailable.CmkStateNotSupport');
        // cleanly waiting: the import can be done now
        const w = await wrapFor(client, keyId);
        await client.ImportKeyMaterial({ KeyId: keyId, ImportToken: w.token, EncryptedKeyMaterial: w.wrapped });
      } else {
        expect(k.KeyState).toBe('Enabled');
      }
      const blob = (await client.Encrypt({ KeyId: keyId, Plaintext: plaintext })).CiphertextBlob as string;
      expect((await client.Decrypt({ CiphertextBlob: blob })).Plaintext).toBe(plaintext);
      // an external key imported by a request the kill cut off holds the material that request carried
      const m = made.get(keyId);
      if (m?.external && !m.imported && m.material && k.KeyState === 'Enabled') expect(openLocally(blob, m.material)).toBe(`listed ${keyId}`);
    }
    report(`kms crash: ${listed.length} keys listed after the last restart, all usable; ${pending} were cleanly PendingImport (imported now)`);
  });

  test("in the store, every key's versions are 1..n (no version half-added)", async () => {
    await server.stop();
    const config = loadServerConfig(dir, {});
    if (config.store.kind !== 'sqlite') throw new Error('the development installation keeps its keys in SQLite');
    const store = new SqliteMetadataStore(config.store.path);
    try {
      const all: KeyRecord[] = [];
      for (let offset = 0; ; offset += 200) {
        const page = await store.listKeys({ ownerUin: String(creds.Uin), region: 'ap-guangzhou', offset, limit: 200, order: 'asc' });
        all.push(...page.keys);
        if (page.keys.length < 200) break;
      }
      expect(all.length).toBeGreaterThanOrEqual(made.size);
      for (const r of all) {
        const versions = r.versions.map((v) => v.version);
        expect(versions).toEqual(Array.from({ length: versions.length }, (_, i) => i + 1));
        expect(versions.length).toBeGreaterThanOrEqual(1 + (made.get(r.keyId)?.rotations ?? 0));
      }
    } finally {
      await store.close();
    }
  });
});
