/**
 * Rate limits per principal as well as per account (docs/security.md §9 "Per-principal limits"):
 * two sub-accounts of one tenant, the account's limit far away, each principal's bucket small. One
 * sub-account spending its burst is refused (RequestLimitExceeded) while the other is still served
 * in full, on one process (in-memory buckets), on two workers (the supervisor's ledger) and on a
 * Redis store (buckets in Redis).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadServerConfig } from '../../src/config';
import { RunningServer, startServer } from '../../src/server';
import { openServices } from '../../src/services';
import { RedisServer, startRedis } from '../support/redis';
import { devInstall, editConfig, outcome, ServerProcess } from '../support/resilience-lab';
import type { Credentials, KmsClient } from '../support/server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tencentcloud = require('tencentcloud-sdk-nodejs') as { kms: { v20190118: { Client: new (config: object) => KmsClient } } };

const BURST = 6;
const RATE = { perSecond: 100_000, burst: 100_000, perPrincipal: { perSecond: 1, burst: BURST } };

function client(port: number, creds: Credentials): KmsClient {
  return new tencentcloud.kms.v20190118.Client({
    credential: { secretId: creds.SecretId, secretKey: creds.SecretKey },
    region: 'ap-guangzhou',
    profile: { httpProfile: { endpoint: `127.0.0.1:${port}`, protocol: 'http://', agent: new Agent({ keepAlive: true, maxSockets: 8 }), reqTimeout: 30 } },
  });
}

/** Two full-access sub-accounts of the installation's tenant, or of a new one (made before the server starts, in its store). */
async function twoSubAccounts(dir: string, newTenant = false): Promise<[Credentials, Credentials]> {
  const services = await openServices(loadServerConfig(dir, {}), { log: () => undefined, jobs: false });
  try {
    const t = newTenant ? String((await services.iam.createTenant('redis-root')).Uin) : String((await services.iam.listTenants())[0].uin);
    const make = (name: string) => services.iam.createUser(t, name, { preset: 'QcloudKMSFullAccess' });
    return [await make('alice'), await make('bob')];
  } finally {
    await services.close();
  }
}

/** Alice spends far more than her burst at once; then Bob, of the same account, makes BURST calls (bodies differ: one signature serves once). */
async function burstThenOther(port: number, alice: Credentials, bob: Credentials): Promise<void> {
  const a = client(port, alice);
  const t0 = Date.now();
  const codes = await Promise.all(Array.from({ length: 4 * BURST }, (_, i) => outcome(a.GenerateRandom({ NumberOfBytes: 8 + i }))));
  const seconds = (Date.now() - t0) / 1000;
  const allowed = codes.filter((c) => c === 'Success').length;
  expect(codes.filter((c) => c !== 'Success').every((c) => c === 'RequestLimitExceeded')).toBe(true);
  expect(allowed).toBeGreaterThanOrEqual(1);
  // her bucket and what refilled meanwhile (1 a second); the account's bucket alone would allow all of them
  expect(allowed).toBeLessThanOrEqual(BURST + Math.ceil(seconds));
  const b = client(port, bob);
  const bobs: string[] = [];
  for (let i = 0; i < BURST; i++) bobs.push(await outcome(b.GenerateRandom({ NumberOfBytes: 8 + i })));
  expect(bobs).toEqual(Array(BURST).fill('Success'));
}

describe('per-principal rate limits, one process (SQLite)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-prate-'));
  let server: RunningServer;
  let alice: Credentials;
  let bob: Credentials;

  beforeAll(async () => {
    await devInstall(dir);
    editConfig(dir, (doc) => {
      doc.rateLimit = RATE;
    });
    [alice, bob] = await twoSubAccounts(dir);
    server = await startServer(loadServerConfig(dir, { KMS_PORT: '0' }), () => undefined);
  }, 60_000);
  afterAll(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test(
    'a sub-account over its burst is refused; another sub-account of the same account is served in full',
    () => burstThenOther(server.port, alice, bob),
    30_000,
  );
});

describe("per-principal rate limits, workers: 2 (the supervisor's ledger)", () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-prate-w-'));
  const server = new ServerProcess(dir);
  let alice: Credentials;
  let bob: Credentials;

  beforeAll(async () => {
    await devInstall(dir);
    editConfig(dir, (doc) => {
      doc.rateLimit = RATE;
      doc.workers = 2;
    });
    [alice, bob] = await twoSubAccounts(dir);
    await server.start(60_000);
  }, 90_000);
  afterAll(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test(
    'a sub-account over its burst is refused across both workers; another sub-account is served in full',
    () => burstThenOther(server.port, alice, bob),
    30_000,
  );
});

describe('per-principal rate limits, Redis store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-prate-r-'));
  let redis: RedisServer;
  let server: RunningServer;
  let alice: Credentials;
  let bob: Credentials;

  beforeAll(async () => {
    redis = await startRedis({ persistent: true });
    await devInstall(dir);
    editConfig(dir, (doc) => {
      doc.rateLimit = RATE;
      doc.store = { kind: 'redis', host: '127.0.0.1', port: redis.port };
    });
    // the accounts of this deployment live in Redis: a tenant first
    [alice, bob] = await twoSubAccounts(dir, true);
    server = await startServer(loadServerConfig(dir, { KMS_PORT: '0' }), () => undefined);
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test(
    'a sub-account over its burst is refused; another sub-account of the same account is served in full',
    () => burstThenOther(server.port, alice, bob),
    30_000,
  );
});
