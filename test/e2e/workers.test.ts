/**
 * `workers: 2`: `node dist/src/main.js` as a supervisor with two worker processes on one port, the
 * development installation (SQLite, SoftHSM2), driven by the official SDK. Requests are served by
 * both workers; /metrics adds up both; a key disabled through one worker is refused by the other;
 * a worker killed with SIGKILL is replaced and service goes on; rate limits hold across workers;
 * SIGTERM drains and ends every process; a supervisor killed with SIGKILL takes its workers along.
 * Then the same two workers on a Redis store (notifications and rate limits in Redis).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadServerConfig } from '../../src/config';
import { openServices } from '../../src/services';
import { RedisServer, startRedis } from '../support/redis';
import { within } from '../support/poll';
import { b64, devInstall, editConfig, getText, metric, outcome, sdk, ServerProcess } from '../support/resilience-lab';
import type { Credentials, KmsClient } from '../support/server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tencentcloud = require('tencentcloud-sdk-nodejs') as {
  kms: { v20190118: { Client: new (config: object) => KmsClient } };
  cam: { v20190116: { Client: new (config: object) => KmsClient } };
};

/** A client whose requests spread over `sockets` keep-alive connections (so over both workers). */
function spread(port: number, creds: Credentials, sockets: number): KmsClient {
  return new tencentcloud.kms.v20190118.Client({
    credential: { secretId: creds.SecretId, secretKey: creds.SecretKey },
    region: 'ap-guangzhou',
    profile: {
      httpProfile: { endpoint: `127.0.0.1:${port}`, protocol: 'http://', agent: new Agent({ keepAlive: true, maxSockets: sockets }), reqTimeout: 30 },
    },
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('workers: 2 (supervisor and two worker processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-workers-'));
  const server = new ServerProcess(dir);
  let creds: Credentials;

  const workerPids = (): Map<number, number> => {
    const pids = new Map<number, number>();
    for (const l of server.lines) if (typeof l.msg === 'string' && /^worker \d+ ready/.test(l.msg)) pids.set(l.worker as number, l.pid as number);
    return pids;
  };
  /** Workers that logged `action` answered with `code` (any code when null). */
  const servedBy = (action: string, code: string | null = 'Success'): Set<unknown> =>
    new Set(server.lines.filter((l) => l.action === action && (code === null || l.code === code)).map((l) => l.worker));

  beforeAll(async () => {
    creds = await devInstall(dir);
    editConfig(dir, (doc) => {
      doc.workers = 2;
    });
    await server.start();
  }, 60_000);

  afterAll(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('one port, two workers: requests are served by both, /metrics counts both', async () => {
    const listening = server.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('KMS listening on'));
    expect(listening).toMatchObject({ workers: 2 });
    const pids = workerPids();
    expect([...pids.keys()].sort()).toEqual([0, 1]);
    expect(new Set(pids.values()).size).toBe(2);
    expect([...pids.values()]).not.toContain(server.pid);

    const client = spread(server.port, creds, 8);
    const { KeyId } = await client.CreateKey({ Alias: 'workers' });
    // distinct plaintexts: identical requests in one second carry one signature, and a signature serves once (docs/security.md §1)
    const plaintexts = Array.from({ length: 64 }, (_, i) => b64(`served by either worker ${i}`));
    const results = await Promise.all(plaintexts.map((plaintext) => client.Encrypt({ KeyId: KeyId as string, Plaintext: plaintext })));
    // a blob sealed by one worker opens in the other (same HSM tokens, same store)
    const opened = await Promise.all(results.map((r) => client.Decrypt({ CiphertextBlob: r.CiphertextBlob as string })));
    expect(opened.map((o) => o.Plaintext)).toEqual(plaintexts);
    await within(2_000, () => servedBy('Encrypt').size === 2, 'request log lines from both workers');
    expect(servedBy('Encrypt')).toEqual(new Set([0, 1]));

    // whichever worker answers the scrape, it shows every worker's requests
    for (let i = 0; i < 4; i++) {
      const { status, body } = await getText(`${server.opsUrl}/metrics`);
      expect(status).toBe(200);
      expect(metric(body, 'kms_requests_total{action="Encrypt",code="Success"}')).toBe(64);
      expect(metric(body, 'kms_requests_total{action="Decrypt",code="Success"}')).toBe(64);
      expect(metric(body, 'kms_hsm_cluster_health{cluster="default"}')).toBe(2);
    }
  }, 60_000);

  test('a key disabled through one worker is refused by every worker within a second', async () => {
    const client = spread(server.port, creds, 8);
    const { KeyId } = await client.CreateKey({ Alias: 'disable-me' });
    let n = 0;
    const encrypt = () => outcome(client.Encrypt({ KeyId: KeyId as string, Plaintext: b64(`x ${n++}`) }));
    expect(await Promise.all(Array.from({ length: 16 }, encrypt))).toEqual(Array(16).fill('Success'));
    await sdk(server.port, creds).DisableKey({ KeyId: KeyId as string });
    const t0 = Date.now();
    await within(
      1_500,
      async () => (await Promise.all(Array.from({ length: 16 }, encrypt))).every((c) => c === 'ResourceUnavailable.CmkDisabled'),
      'refusal on every worker',
    );
    expect(Date.now() - t0).toBeLessThan(1_500);
  }, 30_000);

  test('a CAM policy change made through one worker takes effect on the other (measured)', async () => {
    const cam = new tencentcloud.cam.v20190116.Client({
      credential: { secretId: creds.SecretId, secretKey: creds.SecretKey },
      region: '',
      profile: {
        httpProfile: { endpoint: `127.0.0.1:${server.port}`, protocol: 'http://', agent: new Agent({ keepAlive: true, maxSockets: 4 }), reqTimeout: 30 },
      },
    });
    const made = await cam.AddUser({ Name: 'propagated', UseApi: 1 });
    const user = spread(server.port, { Uin: made.Uin as number, SecretId: made.SecretId as string, SecretKey: made.SecretKey as string }, 8);
    let n = 0;
    const list = () => outcome(user.ListKeys({ Limit: 1 + (n++ % 100), Offset: n }));
    const all = async (code: string) => (await Promise.all(Array.from({ length: 16 }, list))).every((c) => c === code);
    expect(await all('UnauthorizedOperation')).toBe(true);
    const doc = JSON.stringify({ version: '2.0', statement: [{ effect: 'allow', action: 'kms:ListKeys', resource: '*' }] });
    const { PolicyId } = await cam.CreatePolicy({ PolicyName: 'propagated-list', PolicyDocument: doc });
    const t0 = Date.now();
    await cam.AttachUserPolicy({ PolicyId, AttachUin: made.Uin });
    await within(5_000, () => all('Success'), 'the attached policy honoured on every worker');
    const attachMs = Date.now() - t0;
    const t1 = Date.now();
    await cam.DetachUserPolicy({ PolicyId, DetachUin: made.Uin });
    await within(5_000, () => all('UnauthorizedOperation'), 'the detached policy dropped on every worker');
    const detachMs = Date.now() - t1;
    expect(servedBy('ListKeys', 'UnauthorizedOperation').size).toBe(2);
    expect(servedBy('ListKeys', 'Success').size).toBe(2);
    process.stdout.write(`CAM propagation across two workers: attach ${attachMs} ms, detach ${detachMs} ms (each including the CAM call)\n`);
  }, 30_000);

  test('a worker killed with SIGKILL is replaced; the service goes on', async () => {
    const before = workerPids();
    const victim = before.get(1)!;
    process.kill(victim, 'SIGKILL');
    await within(10_000, () => workerPids().get(1) !== victim, 'worker 1 replaced');
    const replacement = workerPids().get(1)!;
    expect(alive(replacement)).toBe(true);
    expect(workerPids().get(0)).toBe(before.get(0));
    expect(server.lines.some((l) => l.level === 'error' && typeof l.msg === 'string' && l.msg.startsWith(`worker 1 (pid ${victim}) exited (SIGKILL)`))).toBe(
      true,
    );
    const client = spread(server.port, creds, 8);
    const { KeyId } = await client.CreateKey({ Alias: 'after-kill' });
    const codes = await Promise.all(Array.from({ length: 32 }, (_, i) => outcome(client.Encrypt({ KeyId: KeyId as string, Plaintext: b64(`y ${i}`) }))));
    expect(codes).toEqual(Array(32).fill('Success'));
  }, 30_000);

  test('rate limits hold across workers: one bucket per account, not one per worker', async () => {
    await server.stop();
    editConfig(dir, (doc) => {
      doc.rateLimit = { perSecond: 1, burst: 10 };
    });
    await server.start();
    const client = spread(server.port, creds, 8);
    const t0 = Date.now();
    // ListKeys with distinct offsets, not GetRegions: 40 GetRegions({}) in one second would be one signature (docs/security.md §1)
    const codes = await Promise.all(Array.from({ length: 40 }, (_, i) => outcome(client.ListKeys({ Offset: i, Limit: 1 }))));
    const seconds = (Date.now() - t0) / 1000;
    const allowed = codes.filter((c) => c === 'Success').length;
    expect(codes.filter((c) => c !== 'Success').every((c) => c === 'RequestLimitExceeded')).toBe(true);
    // one bucket of 10 plus what refilled meanwhile (the supervisor hands out every token); a bucket per worker would allow 20.
    // At least one worker's first grant (burst / 2) gets through.
    expect(allowed).toBeGreaterThanOrEqual(5);
    expect(allowed).toBeLessThanOrEqual(10 + Math.floor(seconds));
    // both workers took requests (which of them got the tokens is theirs to race for)
    await within(2_000, () => servedBy('ListKeys', null).size === 2, 'request log lines from both workers');
  }, 60_000);

  test('SIGTERM drains and ends every process; SIGKILL of the supervisor takes the workers along', async () => {
    let pids = [...workerPids().values()].filter(alive);
    expect(pids).toHaveLength(2);
    await server.stop();
    expect(await server.ended()).toBe(0);
    await within(5_000, () => pids.every((p) => !alive(p)), 'workers gone after SIGTERM');

    await server.start();
    pids = [...workerPids().values()].filter(alive);
    expect(pids).toHaveLength(2);
    await server.kill9();
    await within(15_000, () => pids.every((p) => !alive(p)), 'workers gone after the supervisor was killed');
  }, 60_000);
});

describe('workers: 2 on a Redis store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-workers-redis-'));
  const server = new ServerProcess(dir);
  let redis: RedisServer;
  let root: Credentials;

  beforeAll(async () => {
    redis = await startRedis({ persistent: true });
    await devInstall(dir);
    editConfig(dir, (doc) => {
      doc.store = { kind: 'redis', host: '127.0.0.1', port: redis.port };
      doc.workers = 2;
    });
    // dev init made the root account in SQLite; this deployment keeps its accounts in Redis
    const services = await openServices(loadServerConfig(dir, {}), { log: () => undefined, jobs: false });
    try {
      root = await services.iam.createTenant('dev-root');
    } finally {
      await services.close();
    }
    await server.start();
  }, 60_000);

  afterAll(async () => {
    await server.stop();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('both workers serve one Redis; /metrics adds them up; a key disabled through one is refused by both', async () => {
    const client = spread(server.port, root, 8);
    const { KeyId } = await client.CreateKey({ Alias: 'workers-on-redis' });
    const codes = await Promise.all(Array.from({ length: 48 }, (_, i) => outcome(client.Encrypt({ KeyId: KeyId as string, Plaintext: b64(`on redis ${i}`) }))));
    expect(codes).toEqual(Array(48).fill('Success'));
    await within(2_000, () => new Set(server.lines.filter((l) => l.action === 'Encrypt').map((l) => l.worker)).size === 2, 'both workers in the request log');
    const { body } = await getText(`${server.opsUrl}/metrics`);
    expect(metric(body, 'kms_requests_total{action="Encrypt",code="Success"}')).toBe(48);

    await sdk(server.port, root).DisableKey({ KeyId: KeyId as string });
    let n = 0;
    const encrypt = () => outcome(client.Encrypt({ KeyId: KeyId as string, Plaintext: b64(`x ${n++}`) }));
    await within(
      5_000,
      async () => (await Promise.all(Array.from({ length: 16 }, encrypt))).every((c) => c === 'ResourceUnavailable.CmkDisabled'),
      'refusal on both workers',
    );
  }, 60_000);
});
