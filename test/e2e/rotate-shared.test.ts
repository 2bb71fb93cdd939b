/**
 * `kmsctl cluster rotate-domain` on the shared pool, as an operator runs it on a development
 * installation: besides the key versions, its domain MAC key seals the authority rows (key
 * ownership, API keys, policies and sub-accounts' policy sets) and the audit chain. The rotation runs
 * while the server serves, is killed (SIGKILL) while re-sealing, and `--resume` finishes it.
 * Afterwards API keys still authenticate, policies still apply, ciphertexts decrypt, `kmsctl audit
 * verify` passes, the tokens hold only the new generation, and tampering with an authority row or
 * an audit link (before or after the rotation point) is still caught.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { loadServerConfig } from '../../src/config';
import { DEV_SO_PINS } from '../../src/common/data-dir';
import { startServer } from '../../src/server';
import { SdkError, ServerLab } from '../support/server';

const REPO = join(__dirname, '..', '..', '..');
const KMSCTL = join(REPO, 'dist', 'src', 'cli', 'kmsctl.js');
const SHARED = 'default';
/** Spread over the three development regions (200 user keys per account and region). */
const KEYS = 570;
const REGIONS = ['ap-guangzhou', 'ap-shanghai', 'ap-beijing'];

const b64 = (s: string) => Buffer.from(s).toString('base64');
/** The generation (hex) a stored authority MAC names (src/store/row-mac.ts), or `legacy`. */
const generationOf = (mac: Buffer): string => (mac[0] === 0x67 && mac.length === 2 + mac[1] + 32 ? mac.subarray(2, 2 + mac[1]).toString('hex') : 'legacy');

describe('kmsctl cluster rotate-domain on the shared pool (child process): authority rows and the audit chain re-sealed, killed half-way, resumed', () => {
  const lab = new ServerLab();
  const db = (readonly = true) => new Database(join(lab.dir, 'kms.db'), { readonly });
  /** Authority MACs per generation, read straight from the SQLite file. */
  const authorityCensus = (): Record<string, number> => {
    const d = db();
    try {
      const macs = [
        ...(d.prepare("SELECT json_extract(doc, '$.authority') AS m FROM keys").all() as Array<{ m: string | null }>).map(
          (r) => r.m && Buffer.from(r.m, 'base64'),
        ),
        ...(d.prepare('SELECT mac AS m FROM iam_api_keys').all() as Array<{ m: Buffer | null }>).map((r) => r.m),
        ...(d.prepare('SELECT mac AS m FROM iam_policies').all() as Array<{ m: Buffer | null }>).map((r) => r.m),
        ...(d.prepare('SELECT policies_mac AS m FROM iam_users').all() as Array<{ m: Buffer | null }>).map((r) => r.m),
      ];
      const out: Record<string, number> = {};
      for (const m of macs) if (m) out[generationOf(m)] = (out[generationOf(m)] ?? 0) + 1;
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
  const sharedGenerations = async (): Promise<{ generation: string; members: string[][] }> => {
    const health = JSON.parse((await kmsctl('cluster', 'status', '--json')).stdout) as Array<{
      id: string;
      generation: string;
      members: Array<{ generations: string[] }>;
    }>;
    const h = health.find((x) => x.id === SHARED)!;
    return { generation: h.generation, members: h.members.map((m) => m.generations) };
  };

  beforeAll(async () => {
    await lab.start();
  }, 60_000);
  afterAll(() => lab.stop());

  test('rotate-domain --cluster default while serving, SIGKILL while re-sealing, --resume: everything authenticates, applies, decrypts and verifies; tampering is caught', async () => {
    const c = lab.client();
    const keyIds: string[] = [];
    for (const region of REGIONS) {
      const rc = lab.client(lab.root, region);
      for (let i = 0; i < KEYS / REGIONS.length; i += 19) {
        const made = await Promise.all(Array.from({ length: 19 }, (_, j) => rc.CreateKey({ Alias: `shared-${region}-${i + j}` })));
        if (region === REGIONS[0]) keyIds.push(...made.map((k) => k.KeyId as string));
      }
    }
    const blobs = await Promise.all(
      keyIds.slice(0, 20).map(async (KeyId, i) => (await c.Encrypt({ KeyId, Plaintext: b64(`before ${i}`) })).CiphertextBlob as string),
    );
    // a read-only sub-account with its API key and preset policy, and a second policy attached later
    const made = await kmsctl('user', 'create', '--tenant', String(lab.root.Uin), '--name', 'reader', '--preset', 'QcloudKMSReadOnlyAccess', '--json');
    expect(made.code).toBe(0);
    const reader = JSON.parse(made.stdout) as { Uin: number; SecretId: string; SecretKey: string };
    expect((await kmsctl('policy', 'attach', '--uin', String(reader.Uin), '--name', 'also-read', '--preset', 'QcloudKMSReadOnlyAccess')).code).toBe(0);
    const rc = lab.client(reader);
    expect((await rc.ListKeys({ Limit: 5 })).TotalCount).toBeGreaterThan(0);
    const denied = ((await rc.CreateKey({ Alias: 'not-allowed' }).catch((e: SdkError) => e)) as SdkError).code;
    expect(denied).toMatch(/^UnauthorizedOperation/);

    const old = (await sharedGenerations()).generation;
    const before = authorityCensus();
    expect(Object.keys(before)).toEqual([old]);
    expect(before[old]).toBeGreaterThan(KEYS);

    const soPins = join(lab.dir, DEV_SO_PINS);
    const child: ChildProcess = spawn(
      process.execPath,
      [KMSCTL, '--data-dir', lab.dir, 'cluster', 'rotate-domain', '--cluster', SHARED, '--so-pin-file', soPins],
      {
        cwd: REPO,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    const killed = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/re-sealing key ownership MACs \S+ [1-9]\d*\//.test(stderr)) child.kill('SIGKILL');
    });
    // the server serves throughout: ciphertexts decrypt, the sub-account's key authenticates and its policy applies
    const during = Promise.all(blobs.map(async (CiphertextBlob) => (await c.Decrypt({ CiphertextBlob })).Plaintext));
    expect(await killed).toBe('SIGKILL');
    expect(await during).toEqual(blobs.map((_, i) => b64(`before ${i}`)));
    expect((await rc.ListKeys({ Limit: 5 })).TotalCount).toBeGreaterThan(0);
    const next = /generation ([0-9a-f]{32}) made in/.exec(stderr)![1];
    const mid = authorityCensus();
    expect(mid[next]).toBeGreaterThan(0);
    expect(mid[old]).toBeGreaterThan(0);

    await lab.server.close();
    const resumed = await kmsctl('cluster', 'rotate-domain', '--cluster', SHARED, '--resume', '--json', '--so-pin-file', soPins);
    expect([resumed.code, resumed.stderr]).toEqual([0, expect.stringMatching(/re-sealing audit links \[#+\] \d+\/\d+ \(100%\)/)]);
    const report = JSON.parse(resumed.stdout) as {
      resumed: boolean;
      generation: string;
      retired: string;
      resealed: Record<string, number>;
      destroyedOn: string[];
    };
    expect(report).toMatchObject({ resumed: true, generation: next, retired: old });
    expect(report.resealed['key ownership MACs']).toBeGreaterThan(0);
    expect(report.resealed['key ownership MACs']).toBeLessThan(KEYS + 1);
    expect(report.resealed['audit links']).toBeGreaterThan(0);
    expect(report.destroyedOn.length).toBeGreaterThan(0);
    expect(Object.keys(authorityCensus())).toEqual([next]);
    const gens = await sharedGenerations();
    expect(gens.generation).toBe(next);
    expect(gens.members.every((g) => g.length === 1 && g[0] === next)).toBe(true);
    const verified = await kmsctl('audit', 'verify');
    expect([verified.code, JSON.parse(verified.stdout)]).toEqual([0, expect.objectContaining({ ok: true, problems: [] })]);

    lab.server = await startServer(loadServerConfig(lab.dir, { KMS_PORT: '0' }), (l) => lab.logs.push(l));
    const after = lab.client();
    expect(await Promise.all(blobs.map(async (CiphertextBlob) => (await after.Decrypt({ CiphertextBlob })).Plaintext))).toEqual(
      blobs.map((_, i) => b64(`before ${i}`)),
    );
    const fresh = (await after.Encrypt({ KeyId: keyIds[0], Plaintext: b64('after') })).CiphertextBlob as string;
    expect((await after.Decrypt({ CiphertextBlob: fresh })).Plaintext).toBe(b64('after'));
    const readerAfter = lab.client(reader);
    expect((await readerAfter.ListKeys({ Limit: 5 })).TotalCount).toBeGreaterThan(0);
    expect(((await readerAfter.CreateKey({ Alias: 'still-not-allowed' }).catch((e: SdkError) => e)) as SdkError).code).toBe(denied);
    const newReader = JSON.parse(
      (await kmsctl('user', 'create', '--tenant', String(lab.root.Uin), '--name', 'later', '--preset', 'QcloudKMSReadOnlyAccess', '--json')).stdout,
    ) as {
      SecretId: string;
      SecretKey: string;
    };
    expect((await lab.client(newReader).ListKeys({ Limit: 5 })).TotalCount).toBeGreaterThan(0);
    await lab.server.close();

    // tampering after the rotation: a policy row rewritten, and audit events before and after the rotation point changed
    const w = db(false);
    const head = (w.prepare('SELECT max(seq) AS s FROM audit_heads').get() as { s: number }).s;
    try {
      w.prepare("UPDATE iam_policies SET attached_at = attached_at + 1 WHERE user_uin = ? AND name = 'also-read'").run(String(reader.Uin));
      w.exec('DROP TRIGGER IF EXISTS audit_events_no_update');
      w.prepare("UPDATE audit_events SET resource = 'key/forged' WHERE seq IN (2, ?)").run(head);
    } finally {
      w.close();
    }
    const policies = await kmsctl('policy', 'list', '--uin', String(reader.Uin));
    expect([policies.code, policies.stderr]).toEqual([1, expect.stringMatching(/failed its integrity check/)]);
    const broken = await kmsctl('audit', 'verify');
    expect(broken.code).toBe(1);
    const problems = (JSON.parse(broken.stdout) as { problems: Array<{ seq: number; reason: string }> }).problems;
    expect(problems.filter((p) => /does not match its link/.test(p.reason)).map((p) => p.seq)).toEqual([2, head]);
    lab.server = await startServer(loadServerConfig(lab.dir, { KMS_PORT: '0' }), (l) => lab.logs.push(l));
  }, 400_000);
});
