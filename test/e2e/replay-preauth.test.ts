/**
 * docs/security.md §1 and §6 against running servers: requests captured from the official SDK (a
 * recording relay between SDK and server) sent again, verbatim or re-aimed at another action or
 * region; signed x-tc-* headers; tc3.requireSignedHeaders; one replay cache across worker processes
 * and across nodes on one Redis (and Redis gone: refused, not waved through); a flood of junk
 * requests that must cost neither audit events nor signature work.
 */
import { createServer, IncomingHttpHeaders, request, Server } from 'node:http';
import { Agent } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FAILURE_EVENT_NAME } from '../../src/api/pre-auth';
import { RedisReplayGuard } from '../../src/api/replay-guard';
import { signTc3, tc3Work } from '../../src/api/tc3';
import { loadServerConfig } from '../../src/config';
import { RunningServer, startServer } from '../../src/server';
import { openServices } from '../../src/services';
import { RedisServer, startRedis } from '../support/redis';
import { within } from '../support/poll';
import { b64, devInstall, editConfig, outcome, sdk, ServerProcess } from '../support/resilience-lab';
import type { Credentials, KmsClient } from '../support/server';
import { report } from '../support/report';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tencentcloud = require('tencentcloud-sdk-nodejs') as { kms: { v20190118: { Client: new (config: object) => KmsClient } } };

interface Captured {
  headers: Record<string, string>;
  body: Buffer;
}

interface Answer {
  code: string;
  message: string;
  response: Record<string, unknown>;
}

function flat(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (typeof v === 'string') out[k] = v;
  return out;
}

/** Sends headers and body as they are to the KMS (a fresh connection unless an agent is given). */
function send(port: number, headers: Record<string, string>, body: Buffer, agent: Agent | false = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method: 'POST', path: '/', agent, headers: { ...headers, 'content-length': String(body.length) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          const r = (JSON.parse(Buffer.concat(chunks).toString()) as { Response: Record<string, unknown> & { Error?: { Code: string; Message: string } } })
            .Response;
          resolve({ code: r.Error?.Code ?? 'Success', message: r.Error?.Message ?? '', response: r });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A relay between the SDK and the KMS that keeps a copy of every request, as an observer of the network would. */
class Recorder {
  readonly captured: Captured[] = [];
  private server!: Server;
  port = 0;

  async start(target: () => number): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        const c = { headers: flat(req.headers), body: Buffer.concat(chunks) };
        delete c.headers['content-length'];
        delete c.headers.connection;
        this.captured.push(c);
        send(target(), c.headers, c.body).then(
          (a) => {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ Response: a.response }));
          },
          () => res.destroy(),
        );
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as AddressInfo).port;
  }

  client(creds: Pick<Credentials, 'SecretId' | 'SecretKey'>, region = 'ap-guangzhou'): KmsClient {
    return new tencentcloud.kms.v20190118.Client({
      credential: { secretId: creds.SecretId, secretKey: creds.SecretKey },
      region,
      profile: { httpProfile: { endpoint: `127.0.0.1:${this.port}`, protocol: 'http://', agent: new Agent({ keepAlive: false }), reqTimeout: 30 } },
    });
  }

  /** The last captured request whose X-TC-Action is `action`. */
  last(action: string): Captured {
    const c = [...this.captured].reverse().find((x) => x.headers['x-tc-action'] === action);
    if (!c) throw new Error(`no ${action} captured`);
    return c;
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** A request signed by hand (Go SDK style) with the given extra signed headers. */
function signed(port: number, creds: Credentials, action: string, params: object, extraSignedHeaders: string[] = [], region = 'ap-guangzhou'): Captured {
  const body = Buffer.from(JSON.stringify(params));
  const timestamp = Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    host: `127.0.0.1:${port}`,
    'x-tc-action': action,
    'x-tc-version': '2019-01-18',
    'x-tc-region': region,
    'x-tc-timestamp': String(timestamp),
  };
  headers.authorization = signTc3({
    secretId: creds.SecretId,
    secretKey: creds.SecretKey,
    service: 'kms',
    timestamp,
    headers,
    body,
    hostWithPort: true,
    extraSignedHeaders,
  });
  return { headers, body };
}

const ALREADY_USED = /already used/;

describe('one server (embedded store)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-replay-'));
  const recorder = new Recorder();
  let server: RunningServer;
  let root: Credentials;
  const start = async (edit: (doc: Record<string, unknown>) => void = () => undefined): Promise<void> => {
    await server?.close();
    editConfig(dir, edit);
    server = await startServer(loadServerConfig(dir, { KMS_PORT: '0' }), () => undefined);
  };

  beforeAll(async () => {
    root = await devInstall(dir);
    await start();
    await recorder.start(() => server.port);
  }, 60_000);
  afterAll(async () => {
    await recorder.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('§1 replays and re-aimed requests', () => {
    test('an SDK request captured on the way and sent again is refused: AuthFailure.SignatureFailure, "already used"; audited', async () => {
      const sdkClient = recorder.client(root);
      const { KeyId } = await sdkClient.CreateKey({ Alias: 'replayed-encrypt' });
      await sdkClient.Encrypt({ KeyId, Plaintext: b64('captured') });
      const again = await send(server.port, recorder.last('Encrypt').headers, recorder.last('Encrypt').body);
      expect(again.code).toBe('AuthFailure.SignatureFailure');
      expect(again.message).toMatch(ALREADY_USED);
      expect(again.response.CiphertextBlob).toBeUndefined();
      server.services.trust.failures.flush();
      await server.services.audit.flush();
      const events = (await server.services.audit.query({ eventName: FAILURE_EVENT_NAME, limit: 100 })).events;
      expect(events.some((e) => e.errorCode === 'AuthFailure.SignatureFailure' && e.secretId === root.SecretId && e.accountUin === String(root.Uin))).toBe(
        true,
      );
    });

    test.each(['DisableKey', 'ArchiveKey', 'DeleteImportedKeyMaterial'])(
      'a captured DescribeKey {KeyId} re-aimed with X-TC-Action: %s is refused; the key is untouched',
      async (action) => {
        const sdkClient = recorder.client(root);
        const { KeyId } = await sdkClient.CreateKey({ Alias: `re-aim-${action}`, ...(action === 'DeleteImportedKeyMaterial' ? { Type: 2 } : {}) });
        const before = ((await sdkClient.DescribeKey({ KeyId })).KeyMetadata as { KeyState: string }).KeyState;
        const captured = recorder.last('DescribeKey');
        const reaimed = await send(server.port, { ...captured.headers, 'x-tc-action': action }, captured.body);
        expect(reaimed.code).toBe('AuthFailure.SignatureFailure');
        expect(reaimed.message).toMatch(ALREADY_USED);
        const after = (await sdk(server.port, root).DescribeKey({ KeyId })).KeyMetadata as { KeyState: string };
        expect(after.KeyState).toBe(before);
      },
    );

    test('an exact repeat of a read with no effect and no secret (DescribeKey) is served; of Decrypt it is refused', async () => {
      const sdkClient = recorder.client(root);
      const { KeyId } = await sdkClient.CreateKey({ Alias: 'repeat-reads' });
      await sdkClient.DescribeKey({ KeyId });
      const describe = recorder.last('DescribeKey');
      expect((await send(server.port, describe.headers, describe.body)).code).toBe('Success');
      const { CiphertextBlob } = await sdkClient.Encrypt({ KeyId, Plaintext: b64('decrypted once') });
      await sdkClient.Decrypt({ CiphertextBlob });
      const decrypt = recorder.last('Decrypt');
      const again = await send(server.port, decrypt.headers, decrypt.body);
      expect(again.code).toBe('AuthFailure.SignatureFailure');
      expect(again.response.Plaintext).toBeUndefined();
    });

    test('a captured CreateKey re-aimed with X-TC-Region: ap-shanghai is refused; no key appears there', async () => {
      await recorder.client(root).CreateKey({ Alias: 'made-in-guangzhou' });
      const captured = recorder.last('CreateKey');
      const reaimed = await send(server.port, { ...captured.headers, 'x-tc-region': 'ap-shanghai' }, captured.body);
      expect(reaimed.code).toBe('AuthFailure.SignatureFailure');
      const shanghai = new tencentcloud.kms.v20190118.Client({
        credential: { secretId: root.SecretId, secretKey: root.SecretKey },
        region: 'ap-shanghai',
        profile: { httpProfile: { endpoint: `127.0.0.1:${server.port}`, protocol: 'http://', agent: new Agent(), reqTimeout: 30 } },
      });
      expect((await shanghai.ListKeys({})).TotalCount).toBe(0);
    });

    test('a request that signs x-tc-action cannot be re-aimed even when the altered copy arrives first', async () => {
      const { KeyId } = await sdk(server.port, root).CreateKey({ Alias: 'signed-action' });
      const original = signed(server.port, root, 'DescribeKey', { KeyId }, ['x-tc-action', 'x-tc-region', 'x-tc-timestamp']);
      const altered = await send(server.port, { ...original.headers, 'x-tc-action': 'DisableKey' }, original.body);
      expect(altered.code).toBe('AuthFailure.SignatureFailure');
      expect(altered.message).not.toMatch(ALREADY_USED);
      expect((await send(server.port, original.headers, original.body)).code).toBe('Success');
      expect(((await sdk(server.port, root).DescribeKey({ KeyId })).KeyMetadata as { KeyState: string }).KeyState).toBe('Enabled');
    });

    test('distinct SDK calls are unaffected', async () => {
      const c = sdk(server.port, root);
      const { KeyId } = await c.CreateKey({ Alias: 'distinct-calls' });
      const codes = await Promise.all(Array.from({ length: 20 }, (_, i) => outcome(c.Encrypt({ KeyId, Plaintext: b64(`call ${i}`) }))));
      expect(codes).toEqual(Array(20).fill('Success'));
    });
  });

  describe('tc3.requireSignedHeaders: true', () => {
    beforeAll(
      () =>
        start((doc) => {
          doc.tc3 = { requireSignedHeaders: true };
        }),
      60_000,
    );
    afterAll(
      () =>
        start((doc) => {
          delete doc.tc3;
        }),
      60_000,
    );

    test('the SDK (content-type;host) is refused with AuthFailure.InvalidAuthorization naming x-tc-action', async () => {
      const err = await sdk(server.port, root)
        .GetRegions({})
        .catch((e: { code: string; message: string }) => e);
      expect(err).toMatchObject({ code: 'AuthFailure.InvalidAuthorization', message: expect.stringContaining('x-tc-action') });
    });

    test('a client signing x-tc-action, x-tc-region and x-tc-timestamp is served', async () => {
      const r = signed(server.port, root, 'GetRegions', {}, ['x-tc-action', 'x-tc-region', 'x-tc-timestamp']);
      expect((await send(server.port, r.headers, r.body)).code).toBe('Success');
    });
  });

  describe('§6 a flood of junk before authentication (preAuthLimit: perSecond 5, burst 20)', () => {
    beforeAll(
      () =>
        start((doc) => {
          doc.preAuthLimit = { perSecond: 5, burst: 20 };
        }),
      60_000,
    );
    afterAll(
      () =>
        start((doc) => {
          delete doc.preAuthLimit;
        }),
      60_000,
    );

    const auditCount = async (): Promise<number> => {
      server.services.trust.failures.flush();
      await server.services.audit.flush();
      return server.services.audit.export(() => undefined);
    };

    test('10,000 junk requests: a handful of audit events, lookups and HMACs bounded by the limit, the rest refused before any signature work', async () => {
      const before = await auditCount();
      const resolve = jest.spyOn(server.services.iam, 'resolve');
      const hmacs = tc3Work.signatureHmacs;
      const agent = new Agent({ keepAlive: true, maxSockets: 16 });
      const wrongKey = { ...root, SecretKey: 'not-the-secret-key' };
      const t0 = Date.now();
      const codes = new Map<string, number>();
      let next = 0;
      const worker = async (): Promise<void> => {
        for (let i = next++; i < 10_000; i = next++) {
          const r =
            i % 2 === 0
              ? { headers: { ...signed(server.port, root, 'Encrypt', {}).headers, authorization: `TC3-HMAC-SHA256 junk ${i}` }, body: Buffer.from('{}') }
              : signed(server.port, wrongKey, 'ListKeys', { Offset: i });
          const { code } = await send(server.port, r.headers, r.body, agent);
          codes.set(code, (codes.get(code) ?? 0) + 1);
        }
      };
      await Promise.all(Array.from({ length: 16 }, worker));
      const seconds = Math.ceil((Date.now() - t0) / 1000) + 1;
      agent.destroy();
      const allowedThrough = 20 + 5 * seconds + 16;
      const lookups = resolve.mock.calls.length;
      resolve.mockRestore();
      const added = (await auditCount()) - before;
      report(
        `junk flood: ${JSON.stringify(Object.fromEntries(codes))} in ~${seconds} s; ${added} audit events added, ${lookups} SecretId lookups, ${tc3Work.signatureHmacs - hmacs} signature HMACs`,
      );
      // groups: (no SecretId, InvalidAuthorization), (root, SignatureFailure), (either, IPLimitExceeded): 4 a minute, and the flood may span two
      expect(added).toBeLessThanOrEqual(8);
      expect(codes.get('RequestLimitExceeded.IPLimitExceeded') ?? 0).toBeGreaterThan(9_000);
      expect(lookups).toBeLessThanOrEqual(allowedThrough);
      expect(tc3Work.signatureHmacs - hmacs).toBeLessThanOrEqual(allowedThrough * 6);
      const aggregates = (await server.services.audit.query({ eventName: FAILURE_EVENT_NAME, limit: 100 })).events.filter(
        (e) => e.errorCode === 'RequestLimitExceeded.IPLimitExceeded',
      );
      expect(aggregates.reduce((n, e) => n + Number(e.resource.split('/')[1]), 0)).toBe(codes.get('RequestLimitExceeded.IPLimitExceeded'));
    }, 120_000);

    test('while the address is over its limit even a valid request from it is refused before its signature is checked', async () => {
      expect(await outcome(sdk(server.port, root).GetRegions({}))).toBe('RequestLimitExceeded.IPLimitExceeded');
    });
  });
});

describe('workers: 2 share one replay cache (embedded store)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-replay-workers-'));
  const server = new ServerProcess(dir);
  let root: Credentials;

  beforeAll(async () => {
    root = await devInstall(dir);
    editConfig(dir, (doc) => {
      doc.workers = 2;
    });
    await server.start();
  }, 60_000);
  afterAll(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('one signed request sent 24 times on fresh connections (dealt to both workers): served once, refused 23 times', async () => {
    const r = signed(server.port, root, 'GenerateRandom', { NumberOfBytes: 16 });
    const codes = await Promise.all(Array.from({ length: 24 }, () => send(server.port, r.headers, r.body).then((a) => a.code)));
    expect(codes.filter((c) => c === 'Success')).toHaveLength(1);
    expect(codes.filter((c) => c === 'AuthFailure.SignatureFailure')).toHaveLength(23);
    await within(2_000, () => new Set(server.lines.filter((l) => l.action === 'GenerateRandom').map((l) => l.worker)).size === 2, 'answers from both workers');
  }, 30_000);
});

describe('two nodes on one Redis share the replay cache; Redis gone: refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-replay-redis-'));
  let redis: RedisServer;
  let a: RunningServer;
  let b: RunningServer;
  let root: Credentials;

  beforeAll(async () => {
    redis = await startRedis({ persistent: true });
    await devInstall(dir);
    editConfig(dir, (doc) => {
      doc.store = { kind: 'redis', host: '127.0.0.1', port: redis.port };
    });
    const services = await openServices(loadServerConfig(dir, {}), { log: () => undefined, jobs: false });
    try {
      root = await services.iam.createTenant('replay-root');
    } finally {
      await services.close();
    }
    a = await startServer(loadServerConfig(dir, { KMS_PORT: '0' }), () => undefined);
    b = await startServer(loadServerConfig(dir, { KMS_PORT: '0' }), () => undefined);
  }, 60_000);
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  test('a request served by node A and replayed at node B is refused', async () => {
    const r = signed(a.port, root, 'GenerateRandom', { NumberOfBytes: 16 });
    expect((await send(a.port, r.headers, r.body)).code).toBe('Success');
    const atB = await send(b.port, r.headers, r.body);
    expect(atB.code).toBe('AuthFailure.SignatureFailure');
    expect(atB.message).toMatch(ALREADY_USED);
  });

  test('with Redis unreachable a fresh signature is refused (UnsupportedOperation.ServiceTemporaryUnavailable), never waved through; a used one is still "already used"', async () => {
    const used = signed(a.port, root, 'GenerateRandom', { NumberOfBytes: 24 });
    expect((await send(a.port, used.headers, used.body)).code).toBe('Success');
    const guard = a.services.trust.replay as RedisReplayGuard;
    const unavailable = guard.unavailableCount;
    await redis.stop();
    const fresh = signed(a.port, root, 'GenerateRandom', { NumberOfBytes: 32 });
    expect((await send(a.port, fresh.headers, fresh.body)).code).toBe('UnsupportedOperation.ServiceTemporaryUnavailable');
    expect(guard.unavailableCount).toBe(unavailable + 1);
    expect((await send(a.port, used.headers, used.body)).code).toBe('AuthFailure.SignatureFailure');
  }, 30_000);
});
