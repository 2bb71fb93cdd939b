/**
 * The operational side of the server, end to end on a development installation: /healthz, /readyz,
 * /metrics, request logs, file modes, the start-up hint, restart on the same data directory,
 * graceful shutdown with requests in flight, the non-loopback refusal and TLS, the server process
 * itself (main.js, SIGTERM), and per-account rate limits.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { Agent as HttpAgent, get as httpGet, IncomingHttpHeaders, request } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { AddressInfo, connect, createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parse, stringify } from 'yaml';
import { signTc3 } from '../../src/api/tc3';
import { SqliteAuditLog } from '../../src/audit/sqlite-audit-log';
import { initDev } from '../../src/cli/dev-init';
import { DEV_CREDENTIALS } from '../../src/common/data-dir';
import { loadServerConfig } from '../../src/config';
import { startServer } from '../../src/server';
import { openServices } from '../../src/services';
import { within } from '../support/poll';
import { rejection } from '../support/rejection';
import { codeOf, Credentials, KmsClient, SdkError, ServerLab } from '../support/server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tencentcloud = require('tencentcloud-sdk-nodejs') as { kms: { v20190118: { Client: new (config: object) => KmsClient } } };

const b64 = (s: string) => Buffer.from(s).toString('base64');
/** 'Success' or the error code (or message) an SDK call ended with. */
const outcome = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'Success',
    (e: SdkError) => e.code ?? e.message,
  );

interface Envelope {
  Response: { Error?: { Code: string; Message: string }; RequestId: string; [k: string]: unknown };
}

function getText(url: string): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    httpGet(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), type: String(res.headers['content-type']) }));
    }).on('error', reject);
  });
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text format → samples. */
function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function pick(all: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

const sum = (xs: Sample[]) => xs.reduce((n, s) => n + s.value, 0);

/** Every file and directory under `dir` with its permission bits. */
function modes(dir: string): Array<{ path: string; dir: boolean; mode: number }> {
  const out: Array<{ path: string; dir: boolean; mode: number }> = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = statSync(path);
    out.push({ path, dir: st.isDirectory(), mode: st.mode & 0o777 });
    if (st.isDirectory()) out.push(...modes(path));
  }
  return out;
}

/**
 * A signed API request whose body is held back: headers and one byte go out at once, the rest on
 * `finish()`. The server has accepted it (and is reading its body) until then.
 */
function heldRequest(port: number, creds: Pick<Credentials, 'SecretId' | 'SecretKey'>, action: string, params: object, agent: HttpAgent) {
  const body = Buffer.from(JSON.stringify(params));
  const timestamp = Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    host: `127.0.0.1:${port}`,
    'x-tc-action': action,
    'x-tc-version': '2019-01-18',
    'x-tc-region': 'ap-guangzhou',
    'x-tc-timestamp': String(timestamp),
  };
  headers.authorization = signTc3({ secretId: creds.SecretId, secretKey: creds.SecretKey, service: 'kms', timestamp, headers, body, hostWithPort: true });
  const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/', agent, headers: { ...headers, 'content-length': String(body.length) } });
  const response = new Promise<{ status: number; headers: IncomingHttpHeaders; body: Envelope }>((resolve, reject) => {
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString()) as Envelope }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  req.write(body.subarray(0, 1));
  return { response, finish: () => req.end(body.subarray(1)) };
}

/** Resolves with the error code of a TCP connection attempt ('connected' if it was accepted). */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** Rewrites kms.yaml of a data directory. */
function editConfig(dir: string, edit: (doc: Record<string, unknown>) => void): void {
  const file = join(dir, 'kms.yaml');
  const doc = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(doc);
  writeFileSync(file, stringify(doc), { mode: 0o600 });
}

describe('operations on a running server', () => {
  const lab = new ServerLab();
  let root: KmsClient;
  let keyId: string;

  beforeAll(async () => {
    await lab.start();
    root = lab.client();
    keyId = (await root.CreateKey({ Alias: 'ops-main' })).KeyId as string;
  }, 60_000);
  afterAll(() => lab.stop());

  test('/healthz answers 200; /readyz 200 with both clusters ACTIVE', async () => {
    const health = await getText(`${lab.server.url}/healthz`);
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toEqual({ status: 'alive' });
    expect(JSON.parse((await getText(`${lab.server.ops!.url}/healthz`)).body)).toEqual({ status: 'alive' });
    const ready = await getText(`${lab.server.ops!.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({ ready: true, problems: [], clusters: { default: 'ACTIVE', 'cls-dev-dedicated': 'ACTIVE' } });
  });

  test('/metrics and /readyz are served only by the operations listener (loopback, its own port); the API port answers them 404', async () => {
    expect(lab.server.ops!.url).toBe(`http://127.0.0.1:${lab.server.ops!.port}`);
    expect(lab.server.ops!.port).not.toBe(lab.server.port);
    for (const path of ['/metrics', '/readyz']) {
      expect((await getText(`${lab.server.url}${path}`)).status).toBe(404);
      expect((await getText(`${lab.server.ops!.url}${path}`)).status).toBe(200);
    }
    expect((await getText(`${lab.server.ops!.url}/`)).status).toBe(404);
  });

  test('/metrics: requests by action and code, latencies, HSM operations by cluster/member/operation, sessions, health, keys by state, alarms', async () => {
    for (let i = 0; i < 3; i++) await root.Encrypt({ KeyId: keyId, Plaintext: b64(`metric ${i}`) });
    expect(await codeOf(root.DescribeKey({ KeyId: '00000000-0000-0000-0000-000000000000' }))).toBe('ResourceUnavailable.CmkNotFound');
    const dedicated = (await root.CreateKey({ Alias: 'ops-dedicated', HsmClusterId: 'cls-dev-dedicated' })).KeyId as string;
    await root.GenerateDataKey({ KeyId: dedicated, NumberOfBytes: 32 });
    const doomed = (await root.CreateKey({ Alias: 'ops-doomed' })).KeyId as string;
    await root.DisableKey({ KeyId: doomed });
    await root.ScheduleKeyDeletion({ KeyId: doomed, PendingWindowInDays: 7 });
    expect(await codeOf(root.Encrypt({ KeyId: doomed, Plaintext: b64('too late') }))).toBe('ResourceUnavailable.KeyPendingDelete');

    const res = await getText(`${lab.server.ops!.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.type).toMatch(/^text\/plain/);
    const all = samples(res.body);
    expect(sum(pick(all, 'kms_requests_total', { action: 'Encrypt', code: 'Success' }))).toBeGreaterThanOrEqual(3);
    expect(sum(pick(all, 'kms_requests_total', { action: 'Encrypt', code: 'ResourceUnavailable.KeyPendingDelete' }))).toBe(1);
    expect(sum(pick(all, 'kms_requests_total', { action: 'DescribeKey', code: 'ResourceUnavailable.CmkNotFound' }))).toBe(1);
    expect(sum(pick(all, 'kms_request_duration_seconds_count', { action: 'Encrypt' }))).toBeGreaterThanOrEqual(4);
    expect(pick(all, 'kms_request_duration_seconds_bucket', { action: 'Encrypt', le: '+Inf' })).toHaveLength(1);

    const hsm = pick(all, 'kms_hsm_operation_duration_seconds_count');
    expect(hsm.every((s) => ['cluster', 'member', 'operation'].every((l) => s.labels[l] !== undefined && s.labels[l] !== ''))).toBe(true);
    expect(
      sum(hsm.filter((s) => s.labels.cluster === 'default' && ['shared-a', 'shared-b'].includes(s.labels.member) && s.labels.operation === 'encrypt')),
    ).toBeGreaterThanOrEqual(3);
    expect(
      sum(
        hsm.filter(
          (s) => s.labels.cluster === 'cls-dev-dedicated' && ['dedicated-a', 'dedicated-b'].includes(s.labels.member) && s.labels.operation === 'generate',
        ),
      ),
    ).toBeGreaterThanOrEqual(1);

    const members = [
      ['default', 'shared-a'],
      ['default', 'shared-b'],
      ['cls-dev-dedicated', 'dedicated-a'],
      ['cls-dev-dedicated', 'dedicated-b'],
    ];
    for (const [cluster, member] of members) {
      expect(pick(all, 'kms_hsm_sessions_open', { cluster, member })).toHaveLength(1);
      expect(pick(all, 'kms_hsm_member_health', { cluster, member }).map((s) => s.value)).toEqual([2]);
    }
    expect(sum(pick(all, 'kms_hsm_sessions_open'))).toBeGreaterThanOrEqual(2);
    expect(pick(all, 'kms_hsm_cluster_health').map((s) => [s.labels.cluster, s.value])).toEqual([
      ['default', 2],
      ['cls-dev-dedicated', 2],
    ]);
    // the slow queue per cluster: nothing waits or runs now; its limit is the default
    for (const name of ['kms_hsm_slow_queue_depth', 'kms_hsm_slow_running', 'kms_hsm_slow_refused_total']) {
      expect(pick(all, name).map((s) => [s.labels.cluster, s.value])).toEqual([
        ['default', 0],
        ['cls-dev-dedicated', 0],
      ]);
    }
    expect(pick(all, 'kms_hsm_slow_queue_limit').map((s) => s.value)).toEqual([32, 32]);

    expect(sum(pick(all, 'kms_keys', { state: 'Enabled' }))).toBeGreaterThanOrEqual(2);
    expect(sum(pick(all, 'kms_keys', { state: 'PendingDelete' }))).toBe(1);
    expect(sum(pick(all, 'kms_alarms_total', { kind: 'PendingDeleteKeyUsed' }))).toBe(1);
    expect(lab.logs.some((l) => l.alarm === 'PendingDeleteKeyUsed' && l.keyId === doomed)).toBe(true);
    expect(readFileSync(join(lab.dir, 'alarms.log'), 'utf8')).toContain(doomed);
  });

  test('logs: one JSON line per request (requestId, action, code, ms); no SecretKey and no plaintext in any line', async () => {
    const user = await lab.server.services.iam.createUser(String(lab.root.Uin), 'log-reader', { preset: 'QcloudKMSReadOnlyAccess' });
    const reader = lab.client(user);
    const before = lab.logs.length;
    const secret = 'a plaintext that must never be logged';
    const ids: Array<[string, string, string]> = [];
    const enc = await root.Encrypt({ KeyId: keyId, Plaintext: b64(secret) });
    ids.push([enc.RequestId as string, 'Encrypt', 'Success']);
    const dec = await root.Decrypt({ CiphertextBlob: enc.CiphertextBlob });
    ids.push([dec.RequestId as string, 'Decrypt', 'Success']);
    const dk = await root.GenerateDataKey({ KeyId: keyId, NumberOfBytes: 32 });
    ids.push([dk.RequestId as string, 'GenerateDataKey', 'Success']);
    const rnd = await root.GenerateRandom({ NumberOfBytes: 32 });
    ids.push([rnd.RequestId as string, 'GenerateRandom', 'Success']);
    const denied = await reader.Encrypt({ KeyId: keyId, Plaintext: b64(secret) }).then(
      () => undefined,
      (e: SdkError) => e,
    );
    expect(denied?.code).toBe('UnauthorizedOperation');
    ids.push([denied?.requestId as string, 'Encrypt', 'UnauthorizedOperation']);
    const badSig = await lab
      .client({ SecretId: lab.root.SecretId, SecretKey: 'wrong' })
      .ListKeys({})
      .then(
        () => undefined,
        (e: SdkError) => e,
      );
    ids.push([badSig?.requestId as string, 'ListKeys', 'AuthFailure.SignatureFailure']);

    const lines = lab.logs.slice(before).filter((l) => typeof l.requestId === 'string' && l.code !== undefined);
    expect(lines).toHaveLength(ids.length);
    for (const [requestId, action, code] of ids) {
      const mine = lines.filter((l) => l.requestId === requestId);
      expect(mine).toHaveLength(1);
      expect(mine[0]).toMatchObject({ requestId, action, code, region: 'ap-guangzhou', ip: expect.stringMatching(/127\.0\.0\.1/) });
      expect(typeof mine[0].ms).toBe('number');
      expect(mine[0].ms as number).toBeGreaterThanOrEqual(0);
      expect(JSON.parse(JSON.stringify(mine[0]))).toEqual(mine[0]);
    }
    expect(lines.find((l) => l.requestId === ids[4][0])).toMatchObject({ account: String(lab.root.Uin), uin: String(user.Uin) });

    const everything = lab.logs.map((l) => JSON.stringify(l)).join('\n');
    for (const s of [lab.root.SecretKey, user.SecretKey, secret, b64(secret), dk.Plaintext as string, rnd.Plaintext as string, dec.Plaintext as string]) {
      expect(everything).not.toContain(s);
    }
  });

  test('start-up: a line on how to use dev-credentials.json with the SDK (endpoint, protocol, file), never the SecretKey', () => {
    const hint = lab.logs.find((l) => l.credentialsFile !== undefined);
    expect(hint).toMatchObject({
      level: 'info',
      endpoint: `127.0.0.1:${lab.server.port}`,
      protocol: 'http://',
      credentialsFile: join(lab.dir, DEV_CREDENTIALS),
    });
    expect(hint?.msg).toContain(`endpoint: '127.0.0.1:${lab.server.port}'`);
    expect(hint?.msg).toContain("protocol: 'http://'");
    expect(hint?.msg).toContain(join(lab.dir, DEV_CREDENTIALS));
    expect(JSON.stringify(hint)).not.toContain(lab.root.SecretKey);
    expect(lab.logs.some((l) => l.msg === `KMS listening on ${lab.server.url}`)).toBe(true);
  });

  test('the data directory is owner-only: the database and its -wal/-shm 0600, credentials, config and alarms 0600, directories 0700', () => {
    const db = join(lab.dir, 'kms.db');
    for (const f of [db, `${db}-wal`, `${db}-shm`, join(lab.dir, DEV_CREDENTIALS), join(lab.dir, 'kms.yaml'), join(lab.dir, 'alarms.log')]) {
      expect([f, statSync(f).mode & 0o777]).toEqual([f, 0o600]);
    }
    // nothing under the data directory is open to group or others (the library copy sits in a 0700 directory)
    const open = modes(lab.dir).filter((e) => (e.mode & 0o077) !== 0 && !e.path.endsWith('libsofthsm2.so'));
    expect(open).toEqual([]);
  });

  describe('restart on the same data directory', () => {
    let blob: string;
    let other: Credentials;
    let yamlBefore: string;
    let credsBefore: string;

    beforeAll(async () => {
      blob = (await root.Encrypt({ KeyId: keyId, Plaintext: b64('made before the restart'), EncryptionContext: '{"app":"ops"}' })).CiphertextBlob as string;
      other = await lab.server.services.iam.createTenant('ops-other');
      yamlBefore = readFileSync(join(lab.dir, 'kms.yaml'), 'utf8');
      credsBefore = readFileSync(join(lab.dir, DEV_CREDENTIALS), 'utf8');
      await lab.server.close();
      expect(await tryConnect(lab.server.port)).toBe('ECONNREFUSED');
    }, 30_000);

    test('initDev a second time: created false, nothing changed', async () => {
      const tenantsBefore = JSON.stringify(await listTenants());
      const r = await initDev(lab.dir, () => undefined);
      expect(r).toEqual({ created: false, credentialsFile: join(lab.dir, DEV_CREDENTIALS) });
      expect(readFileSync(join(lab.dir, 'kms.yaml'), 'utf8')).toBe(yamlBefore);
      expect(readFileSync(join(lab.dir, DEV_CREDENTIALS), 'utf8')).toBe(credsBefore);
      expect(JSON.stringify(await listTenants())).toBe(tenantsBefore);
    });

    async function listTenants(): Promise<unknown> {
      const s = await openServices(loadServerConfig(lab.dir, {}), { log: () => undefined, jobs: false });
      try {
        return await s.iam.listTenants();
      } finally {
        await s.close();
      }
    }

    test('started again (files of an older installation tightened): old ciphertext decrypts, credentials work', async () => {
      chmodSync(join(lab.dir, 'kms.db'), 0o644);
      lab.server = await startServer(loadServerConfig(lab.dir, { KMS_PORT: '0' }), (l) => lab.logs.push(l));
      expect(statSync(join(lab.dir, 'kms.db')).mode & 0o777).toBe(0o600);
      root = lab.client();
      await expect(root.Decrypt({ CiphertextBlob: blob, EncryptionContext: '{"app":"ops"}' })).resolves.toMatchObject({
        KeyId: keyId,
        Plaintext: b64('made before the restart'),
      });
      expect((await root.DescribeKey({ KeyId: keyId })).KeyMetadata).toMatchObject({ Alias: 'ops-main', KeyState: 'Enabled' });
      const c = lab.client(other);
      const k = (await c.CreateKey({ Alias: 'after-restart' })).KeyId as string;
      await expect(c.Encrypt({ KeyId: k, Plaintext: b64('x') })).resolves.not.toThrow();
      const ready = await getText(`${lab.server.ops!.url}/readyz`);
      expect(ready.status).toBe(200);
    });
  });

  describe('graceful shutdown', () => {
    test('requests in flight when close() is called all get complete answers; new connections are refused; the audit trail has them', async () => {
      // a fresh start with a grace period far beyond the test's time: the drain must not depend on it
      await lab.server.close();
      lab.server = await startServer({ ...loadServerConfig(lab.dir, { KMS_PORT: '0' }), shutdownGraceMs: 600_000 }, (l) => lab.logs.push(l));
      const server = lab.server;
      let received = 0;
      server.http.on('request', () => received++);

      const agent = new HttpAgent({ keepAlive: true });
      const held = Array.from({ length: 20 }, (_v, i) =>
        heldRequest(
          server.port,
          lab.root,
          i % 2 ? 'GenerateRandom' : 'Encrypt',
          i % 2 ? { NumberOfBytes: 32 + i } : { KeyId: keyId, Plaintext: b64(`held ${i}`) },
          agent,
        ),
      );
      await within(10_000, () => received === held.length);

      const sdk = lab.client();
      const burst = Array.from({ length: 50 }, (_v, i) =>
        outcome(i % 2 ? sdk.GenerateRandom({ NumberOfBytes: 64 + i }) : sdk.Encrypt({ KeyId: keyId, Plaintext: b64(`burst ${i}`) })),
      );
      await within(10_000, () => received === held.length + burst.length);

      const closed = server.close();
      expect(server.http.listening).toBe(false);
      expect(await tryConnect(server.port)).toBe('ECONNREFUSED');
      for (const h of held) h.finish();

      const answers = await Promise.all(held.map((h) => h.response));
      for (const a of answers) {
        expect(a.status).toBe(200);
        expect(a.body.Response.Error).toBeUndefined();
        expect(typeof a.body.Response.RequestId).toBe('string');
        expect(a.headers.connection).toBe('close');
      }
      expect(answers.filter((_a, i) => i % 2 === 0).every((a) => typeof a.body.Response.CiphertextBlob === 'string')).toBe(true);
      expect(await Promise.all(burst)).toEqual(burst.map(() => 'Success'));
      await closed;
      agent.destroy();

      // the audit trail was flushed before the store closed: every held request is in it
      const reopened = await openServices(loadServerConfig(lab.dir), { log: () => undefined, jobs: false });
      try {
        for (const a of answers) expect((await reopened.audit.query({ keyword: a.body.Response.RequestId, limit: 10 })).events).toHaveLength(1);
        expect((await reopened.audit.verify()).ok).toBe(true);
      } finally {
        await reopened.close();
      }
      expect(await outcome(sdk.GenerateRandom({ NumberOfBytes: 8 }))).not.toBe('Success');
    });
  });
});

describe('start-up: the server process, the non-loopback refusal, TLS', () => {
  const lab = new ServerLab();

  beforeAll(async () => {
    await initDev(lab.dir, () => undefined);
    lab.root = JSON.parse(readFileSync(join(lab.dir, DEV_CREDENTIALS), 'utf8')) as Credentials;
  }, 60_000);
  afterAll(() => lab.stop());

  test('node dist/src/main.js: prints where it listens and the credentials hint, serves, and exits 0 on SIGTERM', async () => {
    const child: ChildProcess = spawn(process.execPath, [join(__dirname, '..', '..', 'src', 'main.js'), '--data-dir', lab.dir], {
      env: { ...process.env, KMS_PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const lines: Array<Record<string, unknown>> = [];
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      createInterface({ input: child.stdout! }).on('line', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
      await within(30_000, () => {
        if (child.exitCode !== null) throw new Error(`main.js exited ${child.exitCode}: ${stderr}`);
        return lines.some((l) => l.credentialsFile !== undefined);
      });
      const listening = lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('KMS listening on http://127.0.0.1:'));
      const port = Number(/:(\d+)$/.exec(listening?.msg as string)?.[1]);
      const ops = lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('KMS operations on http://127.0.0.1:'));
      const opsPort = Number(/:(\d+)$/.exec(ops?.msg as string)?.[1]);
      expect(opsPort).toBeGreaterThan(0);
      expect((await getText(`http://127.0.0.1:${opsPort}/readyz`)).status).toBe(200);
      expect(lines.find((l) => l.credentialsFile !== undefined)).toMatchObject({
        endpoint: `127.0.0.1:${port}`,
        protocol: 'http://',
        credentialsFile: join(lab.dir, DEV_CREDENTIALS),
      });
      const c = new tencentcloud.kms.v20190118.Client({
        credential: { secretId: lab.root.SecretId, secretKey: lab.root.SecretKey },
        region: 'ap-guangzhou',
        profile: { httpProfile: { endpoint: `127.0.0.1:${port}`, protocol: 'http://', agent: new HttpAgent() } },
      });
      const { RequestId } = await c.GenerateRandom({ NumberOfBytes: 16 });
      await within(10_000, () => lines.some((l) => l.requestId === RequestId && l.action === 'GenerateRandom' && l.code === 'Success'));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(lines.some((l) => l.msg === 'SIGTERM: draining requests and shutting down')).toBe(true);
      expect(lines.map((l) => JSON.stringify(l)).join('\n')).not.toContain(lab.root.SecretKey);
      // the audit trail was flushed before the process exited
      const audit = new SqliteAuditLog(join(lab.dir, 'kms.db'));
      try {
        expect((await audit.query({ keyword: RequestId as string, limit: 10 })).events).toMatchObject([{ eventName: 'GenerateRandom', errorCode: '' }]);
      } finally {
        await audit.close();
      }
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  test('a port already in use: start-up fails with the listen error (and leaves nothing open: the next start works)', async () => {
    const blocker = createNetServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    try {
      const port = (blocker.address() as AddressInfo).port;
      const e = await rejection(startServer(loadServerConfig(lab.dir, { KMS_PORT: String(port) }), () => undefined));
      expect((e as NodeJS.ErrnoException).code).toBe('EADDRINUSE');
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });

  test('a non-loopback address without TLS is refused with a clear message (allowInsecure not set)', async () => {
    for (const host of ['0.0.0.0', '::', '192.0.2.10']) {
      const e = await rejection(startServer(loadServerConfig(lab.dir, { KMS_PORT: '0', KMS_HOST: host }), () => undefined));
      expect(e.message).toBe(`refusing to listen on ${host} without TLS: configure tls.cert and tls.key, or set allowInsecure: true`);
    }
  });

  test('with a certificate: HTTPS, and the SDK works with protocol https:// and the certificate as CA', async () => {
    const tls = join(lab.dir, 'tls');
    execFileSync('mkdir', ['-m', '700', '-p', tls]);
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-days',
        '2',
        '-keyout',
        join(tls, 'key.pem'),
        '-out',
        join(tls, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    chmodSync(join(tls, 'key.pem'), 0o600);
    editConfig(lab.dir, (doc) => {
      doc.tls = { cert: 'tls/cert.pem', key: 'tls/key.pem' };
    });
    const logs: Array<Record<string, unknown>> = [];
    lab.server = await startServer(loadServerConfig(lab.dir, { KMS_PORT: '0' }), (l) => logs.push(l));
    expect(lab.server.url).toBe(`https://127.0.0.1:${lab.server.port}`);
    expect(logs.find((l) => l.credentialsFile !== undefined)).toMatchObject({ protocol: 'https://', endpoint: `127.0.0.1:${lab.server.port}` });
    const ca = readFileSync(join(tls, 'cert.pem'));
    const client = (agent: HttpsAgent) =>
      new tencentcloud.kms.v20190118.Client({
        credential: { secretId: lab.root.SecretId, secretKey: lab.root.SecretKey },
        region: 'ap-guangzhou',
        profile: { httpProfile: { endpoint: `127.0.0.1:${lab.server.port}`, protocol: 'https://', agent, reqTimeout: 30 } },
      });
    const c = client(new HttpsAgent({ ca, keepAlive: true }));
    const keyId = (await c.CreateKey({ Alias: 'over-tls' })).KeyId as string;
    const blob = (await c.Encrypt({ KeyId: keyId, Plaintext: b64('over tls') })).CiphertextBlob;
    await expect(c.Decrypt({ CiphertextBlob: blob })).resolves.toMatchObject({ Plaintext: b64('over tls') });
    await expect(client(new HttpsAgent({ rejectUnauthorized: false })).GenerateRandom({ NumberOfBytes: 8 })).resolves.not.toThrow();
    // without the CA the certificate is not trusted; plain HTTP gets no API answer
    expect(await outcome(client(new HttpsAgent()).GenerateRandom({ NumberOfBytes: 8 }))).toMatch(/self[- ]signed|certificate/i);
    const plain = await getText(`http://127.0.0.1:${lab.server.port}/healthz`).then(
      (r) => r.status,
      (e: NodeJS.ErrnoException) => e.code ?? e.message,
    );
    expect(plain).not.toBe(200);
    await lab.server.close();
  });
});

describe('rate limits (rateLimit: {perSecond: 1, burst: 5})', () => {
  const lab = new ServerLab();

  beforeAll(async () => {
    await initDev(lab.dir, () => undefined);
    editConfig(lab.dir, (doc) => {
      doc.rateLimit = { perSecond: 1, burst: 5 };
    });
    await lab.start();
  }, 60_000);
  afterAll(() => lab.stop());

  test('a burst of 20 calls gets RequestLimitExceeded for some; another tenant is not affected; a sub-account shares its tenant budget', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_v, i) => outcome(lab.client().GenerateRandom({ NumberOfBytes: 8 + i }))));
    const ok = results.filter((r) => r === 'Success').length;
    const limited = results.filter((r) => r === 'RequestLimitExceeded').length;
    expect(ok + limited).toBe(20);
    expect(ok).toBeGreaterThanOrEqual(5);
    expect(limited).toBeGreaterThan(0);

    const other = lab.client(await lab.server.services.iam.createTenant('unaffected'));
    expect(await Promise.all(Array.from({ length: 5 }, (_v, i) => outcome(other.GenerateRandom({ NumberOfBytes: 8 + i }))))).toEqual([
      'Success',
      'Success',
      'Success',
      'Success',
      'Success',
    ]);

    const sub = lab.client(await lab.server.services.iam.createUser(String(lab.root.Uin), 'same-budget', { preset: 'QcloudKMSFullAccess' }));
    const subResults = await Promise.all(Array.from({ length: 10 }, (_v, i) => outcome(sub.GenerateRandom({ NumberOfBytes: 8 + i }))));
    expect(subResults).toContain('RequestLimitExceeded');

    const metrics = samples((await getText(`${lab.server.ops!.url}/metrics`)).body);
    expect(sum(pick(metrics, 'kms_requests_total', { action: 'GenerateRandom', code: 'RequestLimitExceeded' }))).toBe(
      limited + subResults.filter((r) => r === 'RequestLimitExceeded').length,
    );
    expect(existsSync(join(lab.dir, 'kms.db'))).toBe(true);
  });
});
