import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyRecord } from '../../../src/store/store';
import type { Kms } from '../../../src/kms/service';
import type { CrashSpec } from '../../support/crash-worker';
import { DEPLOYMENT, KmsLab, REGION } from '../../support/kms';

const caller = { tenant: '7001', uin: '7001', region: REGION };
const WORKER = join(__dirname, '..', '..', 'support', 'crash-worker.js');

/** Runs the worker until it has acknowledged `lines` operations (or a random moment after), then SIGKILLs it. */
function runAndKill(specFile: string, lines: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, specFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let killed = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!killed && out.split('\n').length > lines) {
        killed = true;
        // kill at a random point within the next few operations, usually mid-write
        setTimeout(() => child.kill('SIGKILL'), Math.floor(Math.random() * 40));
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`worker ended with ${code}: ${err}`));
      resolve(out.split('\n').filter((l) => l && l !== 'ready'));
    });
    setTimeout(() => {
      if (!killed) {
        killed = true;
        child.kill('SIGKILL');
      }
    }, 60_000).unref();
  });
}

describe('crash consistency: kill -9 during CreateKey, RotateKey and ImportKeyMaterial', () => {
  let lab: KmsLab;
  let kms: Kms;
  const acked: string[] = [];

  beforeAll(async () => {
    lab = new KmsLab();
    await lab.start();
    const tokens = lab.tokens.dir;
    const member = (set: string, label: string) => ({
      id: `${set}-${label}`,
      lib: join(tokens, set, 'libsofthsm2.so'),
      conf: join(tokens, set, 'softhsm2.conf'),
      label,
      pin: readFileSync(join(tokens, set, 'pins', `${label}.pin`), 'utf8'),
    });
    const spec: CrashSpec = {
      sqlite: join(lab.dir, 'crash.db'),
      deploymentId: DEPLOYMENT.toString('hex'),
      clusters: [
        { id: 'cls-shared', kind: 'shared', owners: [], members: [member('shared', 'pool-a'), member('shared', 'pool-b')] },
        { id: 'cls-bob', kind: 'dedicated', owners: ['2001'], members: [member('bob', 'bob-a')] },
      ],
    };
    const specFile = join(lab.dir, 'crash-spec.json');
    writeFileSync(specFile, JSON.stringify(spec));
    for (const lines of [12, 25, 40]) acked.push(...(await runAndKill(specFile, lines)));
    kms = lab.kms(lab.sqlite('crash.db'));
  }, 120_000);
  afterAll(() => lab.cleanup());

  test('start-up finds nothing to repair', async () => {
    expect(await kms.start()).toEqual([]);
  });

  test('every acknowledged operation is complete', async () => {
    expect(acked.length).toBeGreaterThanOrEqual(12 + 25 + 40);
    for (const line of acked) {
      const [op, keyId, arg, ...rest] = line.split(' ');
      const r = await kms.store.getKey(caller.tenant, keyId);
      expect(r).toBeDefined();
      if (op === 'rotated') expect(Math.max(...r!.versions.map((v) => v.version))).toBeGreaterThanOrEqual(Number(arg));
      if (op === 'imported') expect(r).toMatchObject({ keyState: 'Enabled', origin: 'EXTERNAL', versions: [expect.objectContaining({ version: 1 })] });
      if (op === 'blob') expect((await kms.envelope.decrypt(caller, { ciphertext: Buffer.from(arg, 'base64') })).plaintext.toString()).toBe(rest.join(' '));
    }
  });

  test('nothing half-made is visible: every stored key is usable or cleanly waiting for material', async () => {
    const all: KeyRecord[] = [];
    for (let offset = 0; ; offset += 200) {
      const page = await kms.store.listKeys({ ownerUin: caller.tenant, region: REGION, offset, limit: 200, order: 'asc' });
      all.push(...page.keys);
      if (page.keys.length < 200) break;
    }
    expect(all.length).toBeGreaterThan(0);
    for (const r of all) {
      if (r.origin === 'EXTERNAL' && r.keyState === 'PendingImport') {
        expect(r.versions).toEqual([]);
        continue;
      }
      expect(r.keyState).toBe('Enabled');
      const versions = r.versions.map((v) => v.version);
      expect(versions).toEqual(Array.from({ length: versions.length }, (_, i) => i + 1));
      const blob = (await kms.envelope.encrypt(caller, { keyId: r.keyId, plaintext: Buffer.from('after the crash') })).ciphertext;
      expect((await kms.envelope.decrypt(caller, { ciphertext: blob })).plaintext.toString()).toBe('after the crash');
    }
  });
});
