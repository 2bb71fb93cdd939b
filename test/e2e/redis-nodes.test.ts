/**
 * Two server nodes on one Redis (store.kind: redis in kms.yaml), on the same SoftHSM2 tokens, as a
 * deployment of several nodes runs: keys, credentials, key state, the audit trail and the rate
 * limit are shared; kmsctl works on the same Redis.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { Agent, get as httpGet } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { initDev } from '../../src/cli/dev-init';
import { loadServerConfig } from '../../src/config';
import { RunningServer, startServer } from '../../src/server';
import { within } from '../support/poll';
import { RedisServer, startRedis } from '../support/redis';
import { Credentials, KmsClient, SdkError } from '../support/server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tencentcloud = require('tencentcloud-sdk-nodejs') as {
  kms: { v20190118: { Client: new (config: object) => KmsClient } };
  cam: { v20190116: { Client: new (config: object) => KmsClient } };
};

const b64 = (s: string) => Buffer.from(s).toString('base64');
/** 'Success' or the error code (or message) an SDK call ended with. */
const outcome = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'Success',
    (e: SdkError) => e.code ?? e.message,
  );

function getText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpGet(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    }).on('error', reject);
  });
}

function editConfig(dir: string, edit: (doc: Record<string, unknown>) => void): void {
  const file = join(dir, 'kms.yaml');
  const doc = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(doc);
  writeFileSync(file, stringify(doc), { mode: 0o600 });
}

function client(server: RunningServer, creds: Pick<Credentials, 'SecretId' | 'SecretKey'>): KmsClient {
  return new tencentcloud.kms.v20190118.Client({
    credential: { secretId: creds.SecretId, secretKey: creds.SecretKey },
    region: 'ap-guangzhou',
    profile: { httpProfile: { endpoint: `127.0.0.1:${server.port}`, protocol: 'http://', agent: new Agent({ keepAlive: true }), reqTimeout: 30 } },
  });
}

describe('two server nodes on one Redis', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-e2e-redis-'));
  const logs: Array<Record<string, unknown>> = [];
  let redis: RedisServer;
  let a: RunningServer;
  let b: RunningServer;
  let root: Credentials;
  let keyId: string;
  const start = () => startServer(loadServerConfig(dir, { KMS_PORT: '0' }), (l) => logs.push(l));

  beforeAll(async () => {
    redis = await startRedis({ persistent: true });
    await initDev(dir, () => undefined);
    editConfig(dir, (doc) => {
      doc.store = { kind: 'redis', host: '127.0.0.1', port: redis.port };
    });
    a = await start();
    // dev init made the root account in SQLite; this deployment keeps its accounts in Redis
    root = await a.services.iam.createTenant('dev-root');
    b = await start();
  }, 60_000);

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('both nodes are ready; credentials made on A work on B; a key created through A is used through B and back', async () => {
    for (const n of [a, b]) expect(n.services.config.store.kind).toBe('redis');
    const onA = client(a, root);
    const onB = client(b, root);
    keyId = (await onA.CreateKey({ Alias: 'two-nodes' })).KeyId as string;
    const blob = (await onB.Encrypt({ KeyId: keyId, Plaintext: b64('from node B') })).CiphertextBlob;
    await expect(onA.Decrypt({ CiphertextBlob: blob })).resolves.toMatchObject({ KeyId: keyId, Plaintext: b64('from node B') });
    const dataKey = await onA.GenerateDataKey({ KeyId: keyId, NumberOfBytes: 32 });
    await expect(onB.Decrypt({ CiphertextBlob: dataKey.CiphertextBlob })).resolves.toMatchObject({ Plaintext: dataKey.Plaintext });
    expect((await onB.DescribeKey({ KeyId: keyId })).KeyMetadata).toMatchObject({ Alias: 'two-nodes', KeyState: 'Enabled' });

    const user = await b.services.iam.createUser(String(root.Uin), 'reader-on-b', { preset: 'QcloudKMSReadOnlyAccess' });
    await expect(client(a, user).DescribeKey({ KeyId: keyId })).resolves.not.toThrow();
    expect(await outcome(client(a, user).Encrypt({ KeyId: keyId, Plaintext: b64('x') }))).toBe('UnauthorizedOperation');
  });

  test('a key disabled through A is refused through B within a few seconds; enabled again, B uses it again', async () => {
    const onA = client(a, root);
    const onB = client(b, root);
    await onB.Encrypt({ KeyId: keyId, Plaintext: b64('warm the cache of node B') });
    // DisableKey/EnableKey({KeyId}) in the second of another call with that body would be one signature (security §1)
    const nextSecond = () => new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 5));
    await nextSecond();
    await onA.DisableKey({ KeyId: keyId });
    let n = 0;
    await within(5_000, async () => (await outcome(onB.Encrypt({ KeyId: keyId, Plaintext: b64(`x ${n++}`) }))) === 'ResourceUnavailable.CmkDisabled');
    await nextSecond();
    await onA.EnableKey({ KeyId: keyId });
    await expect(within(5_000, async () => (await outcome(onB.Encrypt({ KeyId: keyId, Plaintext: b64(`x ${n++}`) }))) === 'Success')).resolves.not.toThrow();
  });

  test('CAM changes made through node A take effect on node B (measured): attach, key made inactive, sub-account deleted', async () => {
    const cam = new tencentcloud.cam.v20190116.Client({
      credential: { secretId: root.SecretId, secretKey: root.SecretKey },
      region: '',
      profile: { httpProfile: { endpoint: `127.0.0.1:${a.port}`, protocol: 'http://', agent: new Agent({ keepAlive: true }), reqTimeout: 30 } },
    });
    const made = await cam.AddUser({ Name: 'cam-on-a', UseApi: 1 });
    const onB = client(b, { SecretId: made.SecretId as string, SecretKey: made.SecretKey as string });
    let n = 0;
    const listOnB = () => outcome(onB.ListKeys({ Limit: 1 + (n++ % 100) }));
    expect(await listOnB()).toBe('UnauthorizedOperation');
    const doc = JSON.stringify({ version: '2.0', statement: [{ effect: 'allow', action: 'kms:ListKeys', resource: '*' }] });
    const { PolicyId } = await cam.CreatePolicy({ PolicyName: 'cam-on-a-list', PolicyDocument: doc });
    const measure = async (change: () => Promise<unknown>, until: (code: string) => boolean, what: string): Promise<number> => {
      const t0 = Date.now();
      await change();
      await within(5_000, async () => until(await listOnB()), what);
      return Date.now() - t0;
    };
    const attachMs = await measure(
      () => cam.AttachUserPolicy({ PolicyId, AttachUin: made.Uin }),
      (c) => c === 'Success',
      'the policy honoured on B',
    );
    const inactiveMs = await measure(
      () => cam.UpdateAccessKey({ AccessKeyId: made.SecretId, Status: 'Inactive', TargetUin: made.Uin }),
      (c) => c.startsWith('AuthFailure.'),
      'the inactive key refused on B',
    );
    await cam.UpdateAccessKey({ AccessKeyId: made.SecretId, Status: 'Active', TargetUin: made.Uin });
    await within(5_000, async () => (await listOnB()) === 'Success', 'the key active again on B');
    const deleteMs = await measure(
      () => cam.DeleteUser({ Name: 'cam-on-a', Force: 1 }),
      (c) => c.startsWith('AuthFailure.'),
      'the deleted key refused on B',
    );
    process.stdout.write(
      `CAM propagation across two Redis nodes: attach ${attachMs} ms, inactive key ${inactiveMs} ms, DeleteUser ${deleteMs} ms (each including the CAM call)\n`,
    );
  });

  test('one audit chain for both nodes; it verifies', async () => {
    const onB = client(b, root);
    const fromA = (await client(a, root).GenerateRandom({ NumberOfBytes: 8 })).RequestId as string;
    const fromB = (await onB.GenerateRandom({ NumberOfBytes: 9 })).RequestId as string;
    await a.services.audit.flush();
    await b.services.audit.flush();
    for (const id of [fromA, fromB]) {
      expect((await a.services.audit.query({ keyword: id, limit: 10 })).events).toHaveLength(1);
      expect((await b.services.audit.query({ keyword: id, limit: 10 })).events).toHaveLength(1);
    }
    await expect(b.services.audit.verify()).resolves.toMatchObject({ ok: true });
  });

  test('kmsctl works on the same Redis: keys list, tenant create (usable on both nodes), audit verify', async () => {
    const kmsctl = (...args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
        execFile(
          process.execPath,
          [join(__dirname, '..', '..', 'src', 'cli', 'kmsctl.js'), '--data-dir', dir, ...args],
          { encoding: 'utf8', timeout: 30_000 },
          (error, stdout, stderr) => {
            if (error && typeof error.code !== 'number') return reject(error);
            resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
          },
        );
      });
    const keys = await kmsctl('keys', 'list', '--tenant', String(root.Uin), '--json');
    expect(keys.code).toBe(0);
    expect((JSON.parse(keys.stdout) as Array<{ KeyId: string }>).map((k) => k.KeyId)).toEqual([keyId]);
    const made = await kmsctl('tenant', 'create', '--name', 'made-by-kmsctl', '--json');
    expect(made.code).toBe(0);
    const tenant = JSON.parse(made.stdout) as Credentials;
    for (const [i, n] of [a, b].entries()) expect(await outcome(client(n, tenant).GenerateRandom({ NumberOfBytes: 8 + i }))).toBe('Success');
    await a.services.audit.flush();
    await b.services.audit.flush();
    expect((await kmsctl('audit', 'verify')).code).toBe(0);
  });

  describe('rate limit shared by the nodes (perSecond 1, burst 5)', () => {
    beforeAll(async () => {
      await a.close();
      await b.close();
      editConfig(dir, (doc) => {
        doc.rateLimit = { perSecond: 1, burst: 5 };
      });
      a = await start();
      b = await start();
    }, 30_000);

    test('10 calls alternating between the nodes: about 5 succeed (the burst plus what refilled meanwhile), the rest RequestLimitExceeded', async () => {
      const nodes = [client(a, root), client(b, root)];
      const started = Date.now();
      const results: string[] = [];
      // sizes of their own: a body another test sent with these credentials in the same second would carry the same signature (refused as a replay)
      for (let i = 0; i < 10; i++) results.push(await outcome(nodes[i % 2].GenerateRandom({ NumberOfBytes: 32 + i })));
      const seconds = Math.floor((Date.now() - started) / 1000);
      const ok = results.filter((r) => r === 'Success').length;
      expect(results.filter((r) => r !== 'Success' && r !== 'RequestLimitExceeded')).toEqual([]);
      expect(ok).toBeGreaterThanOrEqual(5);
      expect(ok).toBeLessThanOrEqual(5 + seconds);
      expect(results.slice(0, 5)).toEqual(['Success', 'Success', 'Success', 'Success', 'Success']);

      const other = await a.services.iam.createTenant('other-budget');
      const others = await Promise.all([a, b, a, b, a].map((n, i) => outcome(client(n, other).GenerateRandom({ NumberOfBytes: 8 + i }))));
      expect(others).toEqual(['Success', 'Success', 'Success', 'Success', 'Success']);
    });
  });

  describe('Redis away, then back', () => {
    let port: number;
    let again: ChildProcess | undefined;
    const againDir = mkdtempSync(join(tmpdir(), 'kms-redis-again-'));

    beforeAll(async () => {
      port = redis.port;
      await redis.stop();
    }, 30_000);
    afterAll(async () => {
      await a.close();
      await b.close();
      if (again && again.exitCode === null) {
        const exited = new Promise((r) => again?.once('exit', r));
        again.kill('SIGTERM');
        await exited;
      }
      rmSync(againDir, { recursive: true, force: true });
    }, 30_000);

    test('/healthz stays 200; /readyz answers 503 naming the store; /metrics is still served', async () => {
      for (const n of [a, b]) {
        expect((await getText(`${n.url}/healthz`)).status).toBe(200);
        const ready = await getText(`${n.ops!.url}/readyz`);
        expect(ready.status).toBe(503);
        expect(JSON.parse(ready.body)).toMatchObject({
          ready: false,
          problems: [expect.stringMatching(/^store: /)],
          clusters: { default: 'ACTIVE', 'cls-dev-dedicated': 'ACTIVE' },
        });
        const metrics = await getText(`${n.ops!.url}/metrics`);
        expect(metrics.status).toBe(200);
        expect(metrics.body).toContain('kms_hsm_member_health{cluster="default",member="shared-a"} 2');
      }
    });

    test('Redis back on the same address: both nodes are ready again', async () => {
      again = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', againDir, '--save', '3600 1', '--appendonly', 'yes'], {
        stdio: 'ignore',
      });
      for (const n of [a, b]) await expect(within(20_000, async () => (await getText(`${n.ops!.url}/readyz`)).status === 200)).resolves.not.toThrow();
    });
  });
});
