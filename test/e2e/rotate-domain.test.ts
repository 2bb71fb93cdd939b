/**
 * `kmsctl cluster rotate-domain` as an operator runs it, on a development installation: a third,
 * empty token joins cls-dev-dedicated in kms.yaml; the rotation runs while the server serves, is
 * killed (SIGKILL) half-way, and `--resume` finishes it with the server stopped, re-wrapping only
 * what was left. Afterwards the server, started again, decrypts and verifies what it made before,
 * and the tokens hold only the new generation.
 */
import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { parse, stringify } from 'yaml';
import { DEV_DEDICATED_CLUSTER } from '../../src/cli/dev-init';
import { loadServerConfig } from '../../src/config';
import { CONFIG_FILE, DEV_SO_PINS } from '../../src/common/data-dir';
import { WrappedMaterial } from '../../src/hsm/material';
import { startServer } from '../../src/server';
import { ServerLab } from '../support/server';

const REPO = join(__dirname, '..', '..', '..');
const KMSCTL = join(REPO, 'dist', 'src', 'cli', 'kmsctl.js');
/** Spread over the three development regions (200 user keys per account and region). */
const KEYS = 570;
const REGIONS = ['ap-guangzhou', 'ap-shanghai', 'ap-beijing'];

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('kmsctl cluster rotate-domain (child process): killed half-way, resumed, a new empty member included', () => {
  const lab = new ServerLab();
  const db = () => new Database(join(lab.dir, 'kms.db'), { readonly: true });
  /** Records per generation (hex) of the dedicated cluster, read straight from the SQLite file. */
  const census = (): Record<string, number> => {
    const d = db();
    try {
      const rows = d
        .prepare('SELECT v.material FROM key_versions v JOIN keys k ON k.key_id = v.key_id WHERE k.hsm_cluster_id = ?')
        .all(DEV_DEDICATED_CLUSTER) as Array<{ material: Buffer }>;
      const out: Record<string, number> = {};
      for (const r of rows) {
        const g = WrappedMaterial.fromBuffer(r.material).domainId.toString('hex');
        out[g] = (out[g] ?? 0) + 1;
      }
      return out;
    } finally {
      d.close();
    }
  };
  const kmsctl = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
      execFile(process.execPath, [KMSCTL, '--data-dir', lab.dir, ...args], { cwd: REPO, encoding: 'utf8', timeout: 120_000 }, (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      });
    });

  beforeAll(async () => {
    await lab.start();
  }, 60_000);
  afterAll(() => lab.stop());

  test('rotate-domain with the server serving, SIGKILL half-way, --resume with it stopped; everything made before still decrypts and verifies', async () => {
    // a new token in the dedicated set, added to the cluster in kms.yaml (no domain keys: it never went through the ceremony)
    const setDir = join(lab.dir, 'softhsm', 'dedicated');
    execFileSync(join(REPO, 'softhsm', 'make-tokens.sh'), [setDir, 'dedicated-c'], { encoding: 'utf8' });
    const doc = parse(readFileSync(join(lab.dir, CONFIG_FILE), 'utf8')) as { clusters: Array<{ id: string; members: Array<Record<string, unknown>> }> };
    const dedicated = doc.clusters.find((c) => c.id === DEV_DEDICATED_CLUSTER)!;
    dedicated.members.push({ ...dedicated.members[0], id: 'dedicated-c', token: 'dedicated-c', pin: { file: join(setDir, 'pins', 'dedicated-c.pin') } });
    writeFileSync(join(lab.dir, CONFIG_FILE), stringify(doc), { mode: 0o600 });

    const c = lab.client();
    const keyIds: string[] = [];
    for (const region of REGIONS) {
      const rc = lab.client(lab.root, region);
      for (let i = 0; i < KEYS / REGIONS.length; i += 19) {
        const made = await Promise.all(
          Array.from({ length: 19 }, (_, j) => rc.CreateKey({ Alias: `rot-${region}-${i + j}`, HsmClusterId: DEV_DEDICATED_CLUSTER })),
        );
        if (region === REGIONS[0]) keyIds.push(...made.map((k) => k.KeyId as string));
      }
    }
    const blobs = await Promise.all(
      keyIds.slice(0, 40).map(async (KeyId, i) => (await c.Encrypt({ KeyId, Plaintext: b64(`before ${i}`) })).CiphertextBlob as string),
    );
    const signer = (await c.CreateKey({ Alias: 'rot-signer', KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC', HsmClusterId: DEV_DEDICATED_CLUSTER })).KeyId as string;
    const message = b64('signed before the rotation');
    const { Signature } = await c.SignByAsymmetricKey({ KeyId: signer, Algorithm: 'ECC_P256_R1', Message: message });
    const before = census();
    expect(Object.keys(before)).toHaveLength(1);
    const old = Object.keys(before)[0];
    const total = KEYS + 1;
    expect(before[old]).toBe(total);

    // the first run, killed once its progress shows records re-wrapped; the server decrypts meanwhile
    const child: ChildProcess = spawn(
      process.execPath,
      [KMSCTL, '--data-dir', lab.dir, 'cluster', 'rotate-domain', '--cluster', DEV_DEDICATED_CLUSTER, '--so-pin-file', join(lab.dir, DEV_SO_PINS)],
      { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    const killed = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /re-wrapping \S+ (\d+)\/(\d+)/.exec(
        stderr
          .split('\n')
          .filter((l) => l.startsWith('re-wrapping'))
          .pop() ?? '',
      );
      if (m && Number(m[1]) > 0) child.kill('SIGKILL');
    });
    const during = Promise.all(blobs.map(async (CiphertextBlob) => (await c.Decrypt({ CiphertextBlob })).Plaintext));
    expect(await killed).toBe('SIGKILL');
    expect(stderr).toMatch(/generation [0-9a-f]{32} made in dedicated-a, copied to dedicated-b, dedicated-c; now current/);
    expect(await during).toEqual(blobs.map((_, i) => b64(`before ${i}`)));
    const mid = census();
    const next = Object.keys(mid).find((g) => g !== old)!;
    expect(mid[next]).toBeGreaterThan(0);
    expect(mid[old]).toBeGreaterThan(0);
    expect(mid[old] + mid[next]).toBe(total);
    // still served half-way, old records and new
    expect((await c.Decrypt({ CiphertextBlob: blobs[39] })).Plaintext).toBe(b64('before 39'));
    const sealedMidway = (await c.Encrypt({ KeyId: keyIds[0], Plaintext: b64('mid-way') })).CiphertextBlob as string;

    await lab.server.close();
    const resumed = await kmsctl(
      'cluster',
      'rotate-domain',
      '--cluster',
      DEV_DEDICATED_CLUSTER,
      '--resume',
      '--json',
      '--so-pin-file',
      join(lab.dir, DEV_SO_PINS),
    );
    expect(resumed.code).toBe(0);
    const report = JSON.parse(resumed.stdout) as { resumed: boolean; generation: string; retired: string; rewrapped: number; destroyedOn: string[] };
    expect(report).toMatchObject({ resumed: true, generation: next, retired: old, rewrapped: mid[old], destroyedOn: ['dedicated-a', 'dedicated-b'] });
    expect(resumed.stderr).toMatch(/re-wrapping \[#+\] \d+\/\d+ \(100%\)/);
    expect(census()).toEqual({ [next]: total });

    const status = await kmsctl('cluster', 'status', '--json');
    const dedicatedHealth = (
      JSON.parse(status.stdout) as Array<{ id: string; generation: string; members: Array<{ id: string; state: string; generations: string[] }> }>
    ).find((h) => h.id === DEV_DEDICATED_CLUSTER)!;
    expect(dedicatedHealth.generation).toBe(next);
    expect(dedicatedHealth.members.map((m) => [m.id, m.state, m.generations])).toEqual(
      ['dedicated-a', 'dedicated-b', 'dedicated-c'].map((id) => [id, 'ACTIVE', [next]]),
    );
    expect((await kmsctl('cluster', 'status')).stdout).toMatch(new RegExp(`dedicated-c \\[softhsm2\\] ACTIVE: ok; .*; domain ${next.slice(0, 8)}$`, 'm'));
    // the new generation's KEK carries CKA_UNWRAP_TEMPLATE on every member, the new one included
    expect((await kmsctl('cluster', 'status')).stdout.match(/^ {2}dedicated-[abc] .*; KEK unwrap template set; /gm)).toHaveLength(3);

    lab.server = await startServer(loadServerConfig(lab.dir, { KMS_PORT: '0' }), (l) => lab.logs.push(l));
    const after = lab.client();
    expect(await Promise.all(blobs.map(async (CiphertextBlob) => (await after.Decrypt({ CiphertextBlob })).Plaintext))).toEqual(
      blobs.map((_, i) => b64(`before ${i}`)),
    );
    expect((await after.Decrypt({ CiphertextBlob: sealedMidway })).Plaintext).toBe(b64('mid-way'));
    expect((await after.VerifyByAsymmetricKey({ KeyId: signer, Algorithm: 'ECC_P256_R1', Message: message, SignatureValue: Signature })).SignatureValid).toBe(
      true,
    );
    const fresh = (await after.Encrypt({ KeyId: keyIds[keyIds.length - 1], Plaintext: b64('after') })).CiphertextBlob as string;
    expect((await after.Decrypt({ CiphertextBlob: fresh })).Plaintext).toBe(b64('after'));

    const again = await kmsctl('cluster', 'rotate-domain', '--cluster', DEV_DEDICATED_CLUSTER, '--resume');
    expect([again.code, again.stdout.trim()]).toEqual([0, `cluster ${DEV_DEDICATED_CLUSTER}: no rotation to resume`]);
  }, 300_000);
});
