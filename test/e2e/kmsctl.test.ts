/**
 * kmsctl as an operator runs it: a child process (`node dist/src/cli/kmsctl.js --data-dir DIR ...`)
 * on the data directory of a development installation, while the server runs on the same SQLite
 * file and with the server stopped. What it prints is checked against the running server through
 * the official SDK.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { loadServerConfig } from '../../src/config';
import { startServer } from '../../src/server';
import { within } from '../support/poll';
import { codeOf, Credentials, SdkError, ServerLab } from '../support/server';

const REPO = join(__dirname, '..', '..', '..');
const KMSCTL = join(REPO, 'dist', 'src', 'cli', 'kmsctl.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: readonly string[], cwd = REPO): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, encoding: 'utf8', timeout: 30_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') return reject(error);
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
/** 'Success' or the error code an SDK call ended with. */
const outcome = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'Success',
    (e: SdkError) => e.code ?? e.message,
  );

describe('kmsctl (child process) on the data directory of a development installation', () => {
  const lab = new ServerLab();
  const kmsctl = (...args: string[]) => run(process.execPath, [KMSCTL, '--data-dir', lab.dir, ...args]);
  /** Runs kmsctl, expects exit 0, returns stdout; a SecretKey never goes to stderr. */
  const ok = async (...args: string[]): Promise<string> => {
    const r = await kmsctl(...args);
    if (r.code !== 0) throw new Error(`kmsctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  const json = async <T>(...args: string[]): Promise<T> => JSON.parse(await ok(...args)) as T;
  let tenant: Credentials;
  let tenantKey: string;

  beforeAll(async () => {
    await lab.start();
  }, 60_000);
  afterAll(() => lab.stop());

  describe('with the server running on the same SQLite file', () => {
    test('tenant create --name x --json prints {"Uin","SecretId","SecretKey"}; they work with the SDK', async () => {
      const r = await kmsctl('tenant', 'create', '--name', 'ops-tenant', '--json');
      expect(r.code).toBe(0);
      tenant = JSON.parse(r.stdout) as Credentials;
      expect(Object.keys(tenant).sort()).toEqual(['SecretId', 'SecretKey', 'Uin']);
      expect(typeof tenant.Uin).toBe('number');
      expect(tenant.Uin).not.toBe(lab.root.Uin);
      expect(r.stderr).not.toContain(tenant.SecretKey);
      const c = lab.client(tenant);
      tenantKey = (await c.CreateKey({ Alias: 'made-by-kmsctl-tenant' })).KeyId as string;
      const blob = (await c.Encrypt({ KeyId: tenantKey, Plaintext: b64('tenant data') })).CiphertextBlob;
      await expect(c.Decrypt({ CiphertextBlob: blob })).resolves.toMatchObject({ Plaintext: b64('tenant data') });
      expect((await c.ListKeys({})).TotalCount).toBe(1);
      expect(await c.GetServiceStatus({})).toMatchObject({ ExclusiveHSMEnabled: false });
      expect(await codeOf(lab.client().DescribeKey({ KeyId: tenantKey }))).toBe('ResourceUnavailable.CmkNotFound');
    });

    test('user create --preset QcloudKMSReadOnlyAccess --json: the sub-account may describe, not encrypt', async () => {
      const reader = await json<Credentials>(
        'user',
        'create',
        '--tenant',
        String(tenant.Uin),
        '--name',
        'reader',
        '--preset',
        'QcloudKMSReadOnlyAccess',
        '--json',
      );
      expect(Object.keys(reader).sort()).toEqual(['SecretId', 'SecretKey', 'Uin']);
      const c = lab.client(reader);
      expect((await c.DescribeKey({ KeyId: tenantKey })).KeyMetadata).toMatchObject({ KeyId: tenantKey });
      expect(await codeOf(c.Encrypt({ KeyId: tenantKey, Plaintext: b64('x') }))).toBe('UnauthorizedOperation');
      expect(await codeOf(c.CreateKey({ Alias: 'reader-made' }))).toBe('UnauthorizedOperation');
    });

    test('user create --policy-file: a custom policy (Encrypt on every key, nothing else)', async () => {
      const file = join(lab.dir, 'encrypt-only.json');
      writeFileSync(file, JSON.stringify({ version: '2.0', statement: [{ effect: 'allow', action: ['kms:Encrypt'], resource: ['*'] }] }));
      const user = await json<Credentials>('user', 'create', '--tenant', String(tenant.Uin), '--name', 'encrypter', '--policy-file', file, '--json');
      const c = lab.client(user);
      const blob = (await c.Encrypt({ KeyId: tenantKey, Plaintext: b64('sealed by a sub-account') })).CiphertextBlob as string;
      expect(await codeOf(c.Decrypt({ CiphertextBlob: blob }))).toBe('UnauthorizedOperation');
      expect(await codeOf(c.DescribeKey({ KeyId: tenantKey }))).toBe('UnauthorizedOperation');
      await expect(lab.client(tenant).Decrypt({ CiphertextBlob: blob })).resolves.toMatchObject({ Plaintext: b64('sealed by a sub-account') });
    });

    test('policy attach | list | detach: the running server applies the change (within its policy cache time)', async () => {
      const user = await json<Credentials>('user', 'create', '--tenant', String(tenant.Uin), '--name', 'nobody-yet', '--json');
      const uin = String(user.Uin);
      const c = lab.client(user);
      expect(await codeOf(c.DescribeKey({ KeyId: tenantKey }))).toBe('UnauthorizedOperation');
      expect(await json<unknown[]>('policy', 'list', '--uin', uin, '--json')).toEqual([]);

      await ok('policy', 'attach', '--uin', uin, '--name', 'ro', '--preset', 'QcloudKMSReadOnlyAccess');
      const file = join(lab.dir, 'random.json');
      writeFileSync(file, JSON.stringify({ version: '2.0', statement: [{ effect: 'allow', action: ['kms:GenerateRandom'], resource: ['*'] }] }));
      await ok('policy', 'attach', '--uin', uin, '--name', 'random', '--policy-file', file);
      const listed = await json<Array<{ name: string; preset?: string }>>('policy', 'list', '--uin', uin, '--json');
      expect(listed.map((p) => p.name).sort()).toEqual(['random', 'ro']);
      expect(listed.find((p) => p.name === 'ro')?.preset).toBe('QcloudKMSReadOnlyAccess');
      await within(15_000, async () => (await outcome(c.DescribeKey({ KeyId: tenantKey }))) === 'Success', 'DescribeKey allowed', 100);
      await within(15_000, async () => (await outcome(c.GenerateRandom({ NumberOfBytes: 16 }))) === 'Success', 'GenerateRandom allowed', 100);
      expect(await codeOf(c.Encrypt({ KeyId: tenantKey, Plaintext: b64('x') }))).toBe('UnauthorizedOperation');

      await ok('policy', 'detach', '--uin', uin, '--name', 'ro');
      expect((await json<Array<{ name: string }>>('policy', 'list', '--uin', uin, '--json')).map((p) => p.name)).toEqual(['random']);
      await within(15_000, async () => (await outcome(c.DescribeKey({ KeyId: tenantKey }))) === 'UnauthorizedOperation', 'DescribeKey refused', 100);
      await expect(c.GenerateRandom({ NumberOfBytes: 16 })).resolves.not.toThrow();

      const missing = await kmsctl('policy', 'detach', '--uin', uin, '--name', 'never-attached');
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/never-attached/);
    });

    test('keys list | describe show what the SDK made', async () => {
      const listed = await json<Array<{ KeyId: string; Alias: string; KeyState: string }>>('keys', 'list', '--tenant', String(tenant.Uin), '--json');
      expect(listed).toEqual([expect.objectContaining({ KeyId: tenantKey, Alias: 'made-by-kmsctl-tenant', KeyState: 'Enabled' })]);
      const text = await ok('keys', 'list', '--tenant', String(tenant.Uin));
      expect(text).toMatch(new RegExp(`^${tenantKey}\\s+Enabled\\s+ENCRYPT_DECRYPT\\s+made-by-kmsctl-tenant$`, 'm'));
      const described = await json<{ KeyId: string; KeyState: string; CreatorUin: number }>(
        'keys',
        'describe',
        '--tenant',
        String(tenant.Uin),
        '--key-id',
        tenantKey,
        '--json',
      );
      expect(described).toMatchObject({ KeyId: tenantKey, KeyState: 'Enabled', CreatorUin: tenant.Uin });
      // another tenant's key is not found through this tenant
      const other = await kmsctl('keys', 'describe', '--tenant', String(lab.root.Uin), '--key-id', tenantKey);
      expect(other.code).toBe(1);
      expect(await json<unknown[]>('keys', 'list', '--tenant', String(lab.root.Uin), '--region', 'ap-beijing', '--json')).toEqual([]);
    });

    test('cluster status: exit 0, both clusters ACTIVE with their members', async () => {
      const text = await ok('cluster', 'status');
      expect(text).toMatch(/^default \(shared\) ACTIVE$/m);
      expect(text).toMatch(/^cls-dev-dedicated \(dedicated\) ACTIVE$/m);
      const health = await json<Array<{ id: string; state: string; members: Array<{ id: string; state: string }> }>>('cluster', 'status', '--json');
      expect(health.map((h) => [h.id, h.state])).toEqual([
        ['default', 'ACTIVE'],
        ['cls-dev-dedicated', 'ACTIVE'],
      ]);
      expect(health.flatMap((h) => h.members.map((m) => m.state))).toEqual(['ACTIVE', 'ACTIVE', 'ACTIVE', 'ACTIVE']);
    });

    test('issue 12: every development member is locked (status); cluster lock is idempotent and reads back', async () => {
      const text = await ok('cluster', 'status');
      expect(text.match(/; domain keys locked; /g)).toHaveLength(4);
      const health = await json<Array<{ members: Array<{ domainLock: string; lockEnforced: boolean }> }>>('cluster', 'status', '--json');
      expect(health.flatMap((h) => h.members.map((m) => [m.domainLock, m.lockEnforced]))).toEqual([0, 1, 2, 3].map(() => ['locked', true]));
      expect(await ok('cluster', 'lock', '--cluster', 'default')).toMatch(
        /^cluster default: domain keys locked \(non-extractable, read back\) on shared-a, shared-b \(already: shared-a, shared-b\)$/m,
      );
      const missing = await kmsctl('cluster', 'lock');
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/--cluster is required/);
    });

    test('audit query and export: the requests above, as JSON (lines), without SecretKeys or plaintext', async () => {
      await lab.server.services.audit.flush();
      const page = await json<{ events: Array<{ eventName: string; accountUin: string; errorCode: string }> }>(
        'audit',
        'query',
        '--account',
        String(tenant.Uin),
        '--event',
        'Encrypt',
        '--limit',
        '1000',
      );
      expect(page.events.length).toBeGreaterThanOrEqual(2);
      expect(page.events.every((e) => e.eventName === 'Encrypt' && e.accountUin === String(tenant.Uin))).toBe(true);
      expect(page.events.some((e) => e.errorCode === 'UnauthorizedOperation')).toBe(true);
      const byKey = await json<{ events: Array<{ resource: string }> }>(
        'audit',
        'query',
        '--resource',
        tenantKey,
        '--from',
        new Date(Date.now() - 3_600_000).toISOString(),
      );
      expect(byKey.events.length).toBeGreaterThan(0);
      expect(byKey.events.every((e) => e.resource === tenantKey)).toBe(true);

      const r = await kmsctl('audit', 'export');
      expect(r.code).toBe(0);
      const lines = r.stdout.split('\n').filter((l) => l !== '');
      const events = lines.map((l) => JSON.parse(l) as { seq: number; eventName: string; secretId: string });
      expect(events.length).toBeGreaterThan(10);
      expect(events.map((e) => e.seq)).toEqual(events.map((_e, i) => i + 1));
      expect(events.some((e) => e.secretId === tenant.SecretId)).toBe(true);
      expect(r.stderr).toMatch(new RegExp(`${events.length} events exported`));
      for (const secret of [tenant.SecretKey, lab.root.SecretKey, b64('tenant data'), b64('sealed by a sub-account')]) expect(r.stdout).not.toContain(secret);
      const filtered = (await ok('audit', 'export', '--event', 'CreateKey')).split('\n').filter((l) => l !== '');
      expect(filtered.length).toBeGreaterThan(0);
      expect(filtered.every((l) => (JSON.parse(l) as { eventName: string }).eventName === 'CreateKey')).toBe(true);

      const verified = await kmsctl('audit', 'verify');
      expect(verified.code).toBe(0);
      expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, problems: [] });
    });
  });

  describe('with the server stopped', () => {
    let offline: Credentials;

    beforeAll(() => lab.server.close());

    test('tenant create and keys list work on the files alone', async () => {
      offline = await json<Credentials>('tenant', 'create', '--name', 'made-offline', '--json');
      expect(offline.Uin).toBeGreaterThan(tenant.Uin);
      expect((await json<Array<{ KeyId: string }>>('keys', 'list', '--tenant', String(tenant.Uin), '--json')).map((k) => k.KeyId)).toEqual([tenantKey]);
      const text = await ok('cluster', 'status');
      expect(text.match(/\bACTIVE\b/g)).toHaveLength(6);
    });

    test('audit verify exits 0; after one audit row is changed in SQLite (trigger dropped, as an attacker would) it exits 1', async () => {
      expect((await kmsctl('audit', 'verify')).code).toBe(0);
      const db = new Database(join(lab.dir, 'kms.db'));
      try {
        expect(() => db.prepare("UPDATE audit_events SET error_code = '' WHERE error_code = 'UnauthorizedOperation'").run()).toThrow(/append-only/);
        db.exec('DROP TRIGGER audit_events_no_update');
        const changed = db
          .prepare("UPDATE audit_events SET error_code = '' WHERE seq = (SELECT min(seq) FROM audit_events WHERE error_code = 'UnauthorizedOperation')")
          .run();
        expect(changed.changes).toBe(1);
      } finally {
        db.close();
      }
      const r = await kmsctl('audit', 'verify');
      expect(r.code).toBe(1);
      const result = JSON.parse(r.stdout) as { ok: boolean; problems: unknown[] };
      expect(result.ok).toBe(false);
      expect(result.problems.length).toBeGreaterThan(0);
    });

    test('unknown command: exit 2 with the usage', async () => {
      const r = await kmsctl('frobnicate', 'everything');
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('unknown command "frobnicate everything"');
      expect(r.stderr).toContain('tenant create --name N');
      const missing = await kmsctl('tenant', 'create');
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain('--name is required');
    });

    test('a tenant made while the server was stopped works after it starts again', async () => {
      lab.server = await startServer(loadServerConfig(lab.dir, { KMS_PORT: '0' }), (l) => lab.logs.push(l));
      const c = lab.client(offline);
      const keyId = (await c.CreateKey({ Alias: 'after-restart' })).KeyId as string;
      await expect(c.GenerateDataKey({ KeyId: keyId, NumberOfBytes: 32 })).resolves.toMatchObject({ KeyId: keyId });
      await expect(lab.client(tenant).DescribeKey({ KeyId: tenantKey })).resolves.not.toThrow();
    });
  });

  test('npx kmsctl help works from the repository root (after make build)', async () => {
    const r = await run('npx', ['--no-install', 'kmsctl', 'help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('kmsctl [--data-dir DIR] <command>');
    expect(r.stdout).toContain('audit verify');
  });
});
