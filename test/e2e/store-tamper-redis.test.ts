/**
 * docs/security.md §2 on Redis: the server reaches a redis-server that speaks TLS only and requires
 * AUTH (the password from a 0600 file named in kms.yaml), on every connection it opens (key store,
 * identity store, audit log, rate limiter); and a policy attachment written into Redis by someone
 * who can reach it is refused, never obeyed.
 */
import Redis from 'ioredis';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { parse, stringify } from 'yaml';
import { initDev } from '../../src/cli/dev-init';
import { loadServerConfig } from '../../src/config';
import { RunningServer, startServer } from '../../src/server';
import { RedisServer, startRedis } from '../support/redis';
import { codeOf, Credentials, KmsClient } from '../support/server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tencentcloud = require('tencentcloud-sdk-nodejs') as { kms: { v20190118: { Client: new (config: object) => KmsClient } } };

const PASSWORD = 'redis-test-password-0123456789';
const ALLOW_ALL = JSON.stringify({ version: '2.0', statement: [{ effect: 'allow', action: ['kms:*'], resource: ['*'] }] });

/** The first reply of the server to PING over TLS, without AUTH. */
function firstReply(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({ port, host: '127.0.0.1', ca }, () => sock.write('PING\r\n'));
    sock.once('data', (d) => {
      sock.destroy();
      resolve(d.toString());
    });
    sock.once('error', reject);
  });
}

describe('Redis with AUTH and TLS; a policy written into Redis grants nothing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-e2e-redis-tls-'));
  const logs: Array<Record<string, unknown>> = [];
  let redis: RedisServer;
  let server: RunningServer;
  let admin: Redis;
  let root: Credentials;
  const start = () => startServer(loadServerConfig(dir, { KMS_PORT: '0' }), (l) => logs.push(l));
  const client = (creds: Credentials): KmsClient =>
    new tencentcloud.kms.v20190118.Client({
      credential: { secretId: creds.SecretId, secretKey: creds.SecretKey },
      region: 'ap-guangzhou',
      profile: { httpProfile: { endpoint: `127.0.0.1:${server.port}`, protocol: 'http://', agent: new Agent({ keepAlive: true }), reqTimeout: 30 } },
    });

  beforeAll(async () => {
    redis = await startRedis({ persistent: true, password: PASSWORD, tls: true });
    await initDev(dir, () => undefined);
    writeFileSync(join(dir, 'redis.password'), `${PASSWORD}\n`, { mode: 0o600 });
    const file = join(dir, 'kms.yaml');
    const doc = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    doc.store = { kind: 'redis', host: '127.0.0.1', port: redis.port, password: { file: 'redis.password' }, tls: { ca: redis.tls!.ca } };
    writeFileSync(file, stringify(doc), { mode: 0o600 });
    server = await start();
    root = await server.services.iam.createTenant('dev-root');
    admin = new Redis({ port: redis.port, host: '127.0.0.1', password: PASSWORD, tls: { ca: readFileSync(redis.tls!.ca) }, lazyConnect: true });
    await admin.connect();
  }, 60_000);

  afterAll(async () => {
    admin?.disconnect();
    await server?.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the server works through TLS and AUTH on every connection; without the password, or without TLS, Redis refuses', async () => {
    const c = client(root);
    const keyId = (await c.CreateKey({ Alias: 'over-tls' })).KeyId as string;
    const blob = (await c.Encrypt({ KeyId: keyId, Plaintext: Buffer.from('x').toString('base64') })).CiphertextBlob;
    await expect(c.Decrypt({ CiphertextBlob: blob })).resolves.not.toThrow();
    await server.services.audit.flush();
    // the limiter fails open when it cannot reach Redis: its buckets being there shows it authenticated over TLS
    expect(await admin.keys('kms:ratelimit:*')).not.toHaveLength(0);
    expect(await admin.exists('kms:audit:head')).toBe(1);
    expect(await firstReply(redis.port, readFileSync(redis.tls!.ca))).toMatch(/^-NOAUTH/);
    const plain = new Redis({
      port: redis.port,
      host: '127.0.0.1',
      password: PASSWORD,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 2_000,
    });
    plain.on('error', () => undefined);
    await expect(plain.connect().then(() => plain.ping())).rejects.toThrow();
    plain.disconnect();
  });

  test('kms.yaml refuses a Redis password written inline', () => {
    const file = join(dir, 'kms.yaml');
    const doc = parse(readFileSync(file, 'utf8')) as { store: Record<string, unknown> };
    expect(() => loadServerConfig(dir, { KMS_PORT: '0' })).not.toThrow();
    const inline = stringify({ ...doc, store: { ...doc.store, password: PASSWORD } });
    const other = mkdtempSync(join(tmpdir(), 'kms-e2e-redis-inline-'));
    try {
      writeFileSync(join(other, 'kms.yaml'), inline, { mode: 0o600 });
      expect(() => loadServerConfig(other, {})).toThrow(/never written in configuration/);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  test('an attachment written into Redis (HSET) gives a sub-account nothing: refused with an alarm', async () => {
    const user = await server.services.iam.createUser(String(root.Uin), 'nobody-on-redis');
    expect(await codeOf(client(user).CreateKey({ Alias: 'not-allowed' }))).toBe('UnauthorizedOperation');
    await admin.hset(`kms:iam:policies:${user.Uin}`, 'full', JSON.stringify({ body: { kind: 'custom', document: ALLOW_ALL }, attachedAt: 1 }));
    await server.close();
    server = await start();
    expect(await codeOf(client(user).CreateKey({ Alias: 'granted-by-redis' }))).toBe('FailedOperation');
    expect(server.services.kms.alarms.list().some((a) => a.kind === 'StoreIntegrity' && a.ownerUin === String(user.Uin))).toBe(true);
  });
});
