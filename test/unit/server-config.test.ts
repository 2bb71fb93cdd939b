import { availableParallelism } from 'node:os';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { autoMaxConnections, isLoopback, MAX_WORKERS, parseServerConfig, RESERVED_FDS, resolveSecret, ServerConfigError } from '../../src/config';

const CLUSTERS = `
clusters:
  - id: default
    kind: shared
    members:
      - { id: a, profile: softhsm2, token: a, pin: { env: PIN_A } }
`;
const base = (extra = '') => `deploymentId: 00112233445566778899aabbccddeeff\n${extra}${CLUSTERS}`;

describe('kms.yaml', () => {
  test('defaults', () => {
    const c = parseServerConfig(base(), '/data', {});
    expect(c).toMatchObject({
      listen: { host: '127.0.0.1', port: 8080 },
      allowInsecure: false,
      store: { kind: 'sqlite', path: '/data/kms.db' },
      regions: ['ap-guangzhou'],
      maxKeysPerRegion: 200,
      maxBodyBytes: 262144,
      rateLimit: { perSecond: 1000, burst: 2000 },
      alarms: {},
      shutdownGraceMs: 10000,
      workers: 1,
      expensivePerTenant: 4,
    });
    expect(parseServerConfig(base('limits: { expensivePerTenant: 0 }\n'), '/data', {}).expensivePerTenant).toBe(0);
    expect(c.tls).toBeUndefined();
    expect(c.connections).toMatchObject({ headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, idleTimeoutMs: 5_000, perIp: 256 });
    expect(c.connections.max).toBeGreaterThanOrEqual(64);
    expect(c.ops).toEqual({ host: '127.0.0.1', port: 8081 });
    expect(c.rateLimit.perPrincipal).toEqual({ perSecond: 1000, burst: 2000 });
    expect(c.deploymentId.toString('hex')).toBe('00112233445566778899aabbccddeeff');
    expect(c.clusters.map((x) => x.id)).toEqual(['default']);
  });

  test("import.allowPkcs1v15 is off and gcm.maxInvocationsPerVersion is NIST's 2^32 unless set; both are checked", () => {
    expect(parseServerConfig(base(), '/d', {})).toMatchObject({ allowPkcs1v15Import: false, gcmMaxInvocationsPerVersion: 2 ** 32 });
    expect(parseServerConfig(base('import: { allowPkcs1v15: true }\ngcm: { maxInvocationsPerVersion: 20 }\n'), '/d', {})).toMatchObject({
      allowPkcs1v15Import: true,
      gcmMaxInvocationsPerVersion: 20,
    });
    expect(() => parseServerConfig(base('import: { allowPkcs1v15: "yes" }\n'), '/d', {})).toThrow(/allowPkcs1v15/);
    expect(() => parseServerConfig(base(`gcm: { maxInvocationsPerVersion: ${2 ** 32 + 1} }\n`), '/d', {})).toThrow(/maxInvocationsPerVersion/);
    expect(() => parseServerConfig(base('gcm: { maxInvocationsPerVersion: 0 }\n'), '/d', {})).toThrow(/maxInvocationsPerVersion/);
  });

  test('tc3 and preAuthLimit: defaults, requireSignedHeaders true or a list, bad values refused', () => {
    expect(parseServerConfig(base(), '/d', {})).toMatchObject({
      tc3: { replayCache: true, replayCacheSize: 2_000_000, requireSignedHeaders: [] },
      preAuthLimit: { perSecond: 50, burst: 500 },
    });
    expect(parseServerConfig(base('tc3: { requireSignedHeaders: true, replayCache: false }\n'), '/d', {}).tc3).toMatchObject({
      replayCache: false,
      requireSignedHeaders: ['x-tc-action', 'x-tc-region', 'x-tc-timestamp'],
    });
    expect(parseServerConfig(base('tc3: { requireSignedHeaders: [X-TC-Region, x-tc-action] }\n'), '/d', {}).tc3.requireSignedHeaders).toEqual([
      'x-tc-action',
      'x-tc-region',
    ]);
    for (const bad of [
      'tc3: { requireSignedHeaders: "yes" }\n',
      'tc3: { replayCache: 1 }\n',
      'preAuthLimit: { perSecond: 0 }\n',
      'tc3: { requireSignedHeaders: ["a b"] }\n',
    ]) {
      expect(() => parseServerConfig(base(bad), '/d', {})).toThrow(ServerConfigError);
    }
  });

  test('connections.max auto: the open-file limit less the reserve, at least 64; ops port follows the API port; KMS_OPS_PORT overrides', () => {
    expect(autoMaxConnections(1024)).toBe(1024 - RESERVED_FDS);
    expect(autoMaxConnections(100)).toBe(64);
    expect(parseServerConfig(base('listen: { port: 9000 }\n'), '/d', {}).ops.port).toBe(9001);
    expect(parseServerConfig(base(), '/d', { KMS_PORT: '0' }).ops.port).toBe(0);
    expect(parseServerConfig(base('ops: { host: 127.0.0.2, port: 7000 }\n'), '/d', { KMS_OPS_PORT: '7100' }).ops).toEqual({ host: '127.0.0.2', port: 7100 });
    expect(parseServerConfig(base('connections: { max: 10, perIp: 2, headersTimeoutMs: 500, requestTimeoutMs: 1000 }\n'), '/d', {}).connections).toEqual({
      max: 10,
      perIp: 2,
      headersTimeoutMs: 500,
      requestTimeoutMs: 1000,
      idleTimeoutMs: 5000,
    });
    expect(() => parseServerConfig(base('connections: { headersTimeoutMs: 5000, requestTimeoutMs: 1000 }\n'), '/d', {})).toThrow(ServerConfigError);
  });

  test('environment overrides port and host; relative paths resolve in the data dir', () => {
    const c = parseServerConfig(base('tls: { cert: c.pem, key: k.pem }\nalarms: { log: alarms.log, webhook: "http://hook" }\n'), '/data', {
      KMS_PORT: '9000',
      KMS_HOST: '0.0.0.0',
    });
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 9000 });
    expect(c.tls).toEqual({ cert: '/data/c.pem', key: '/data/k.pem' });
    expect(c.alarms).toEqual({ log: '/data/alarms.log', webhook: 'http://hook' });
  });

  test('audit: defaults, the three anchor sinks, retention; refusals', () => {
    expect(parseServerConfig(base(), '/data', {}).audit).toEqual({
      anchors: undefined,
      anchorIntervalSeconds: 60,
      retentionDays: undefined,
      archiveDir: '/data/audit-archive',
    });
    const file = parseServerConfig(
      base('audit: { anchors: { file: anchors.jsonl }, anchorIntervalSeconds: 5, retentionDays: 90, archiveDir: /arch }\n'),
      '/data',
      {},
    );
    expect(file.audit).toEqual({ anchors: { kind: 'file', path: '/data/anchors.jsonl' }, anchorIntervalSeconds: 5, retentionDays: 90, archiveDir: '/arch' });
    expect(parseServerConfig(base('audit: { anchors: { webhook: "https://wo.rm/a" } }\n'), '/d', {}).audit.anchors).toEqual({
      kind: 'webhook',
      url: 'https://wo.rm/a',
    });
    expect(parseServerConfig(base('audit: { anchors: { syslog: { host: 10.0.0.9 } } }\n'), '/d', {}).audit.anchors).toEqual({
      kind: 'syslog',
      host: '10.0.0.9',
      port: 514,
    });
    for (const bad of [
      'audit: { anchors: { file: a, webhook: "http://x" } }',
      'audit: { anchors: { webhook: "ftp://x" } }',
      'audit: { retentionDays: 0 }',
      'audit: { anchorIntervalSeconds: 0 }',
    ]) {
      expect(() => parseServerConfig(base(`${bad}\n`), '/d', {})).toThrow(ServerConfigError);
    }
  });

  test.each<[string, string, NodeJS.ProcessEnv, number]>([
    ['a count', 'workers: 3\n', {}, 3],
    ['auto: one per CPU', 'workers: auto\n', {}, Math.min(MAX_WORKERS, availableParallelism())],
    ['KMS_WORKERS overrides the file', 'workers: 3\n', { KMS_WORKERS: '2' }, 2],
    ['KMS_WORKERS=auto', '', { KMS_WORKERS: 'auto' }, Math.min(MAX_WORKERS, availableParallelism())],
  ])('workers: %s', (_name, extra, env, expected) => {
    expect(parseServerConfig(base(extra), '/d', env).workers).toBe(expected);
  });

  test.each([
    ['zero', 'workers: 0\n', {}],
    ['too many', `workers: ${MAX_WORKERS + 1}\n`, {}],
    ['a fraction', 'workers: 1.5\n', {}],
    ['a word', 'workers: many\n', {}],
    ['a bad KMS_WORKERS', '', { KMS_WORKERS: '-2' }],
  ])('workers: %s is refused', (_name, extra, env) => {
    expect(() => parseServerConfig(base(extra), '/d', env)).toThrow(/"workers" must be "auto" or an integer from 1 to 256/);
  });

  test('redis store with AUTH (password from env or a file) and TLS (paths in the data dir)', () => {
    const c = parseServerConfig(
      base('store: { kind: redis, username: kms, password: { file: redis.pass }, tls: { ca: ca.pem, servername: redis.local } }\n'),
      '/d',
      {},
    );
    expect(c.store).toEqual({
      kind: 'redis',
      host: '127.0.0.1',
      port: 6379,
      allowVolatile: false,
      username: 'kms',
      password: { file: '/d/redis.pass' },
      tls: { ca: '/d/ca.pem', servername: 'redis.local' },
    });
    expect(parseServerConfig(base('store: { kind: redis, password: { env: REDIS_PW }, tls: true }\n'), '/d', {}).store).toMatchObject({
      password: { env: 'REDIS_PW' },
      tls: {},
    });
    const dir = mkdtempSync(join(tmpdir(), 'kms-secret-'));
    try {
      writeFileSync(join(dir, 'pw'), 's3cret\n', { mode: 0o644 });
      expect(() => resolveSecret({ file: join(dir, 'pw') })).toThrow(/chmod 600/);
      chmodSync(join(dir, 'pw'), 0o600);
      expect(resolveSecret({ file: join(dir, 'pw') })).toBe('s3cret');
      expect(resolveSecret({ env: 'X' }, { X: 'from-env' })).toBe('from-env');
      expect(() => resolveSecret({ env: 'MISSING' }, {})).toThrow(/MISSING is not set/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('redis store', () => {
    expect(parseServerConfig(base('store: { kind: redis, port: 6380, allowVolatile: true }\n'), '/d', {}).store).toEqual({
      kind: 'redis',
      host: '127.0.0.1',
      port: 6380,
      allowVolatile: true,
    });
  });

  test.each([
    ['no deploymentId', CLUSTERS],
    ['short deploymentId', `deploymentId: abcd\n${CLUSTERS}`],
    ['bad port', base('listen: { port: 70000 }\n')],
    ['bad region', base('regions: ["Not A Region"]\n')],
    ['empty regions', base('regions: []\n')],
    ['unknown store kind', base('store: { kind: mysql }\n')],
    ['inline redis password', base('store: { kind: redis, password: hunter2 }\n')],
    ['negative quota', base('maxKeysPerRegion: -1\n')],
    ['tiny body limit', base('maxBodyBytes: 10\n')],
    ['zero rate', base('rateLimit: { perSecond: 0 }\n')],
    ['negative expensive-request cap', base('limits: { expensivePerTenant: -1 }\n')],
    ['no clusters', 'deploymentId: 00112233445566778899aabbccddeeff\n'],
  ])('%s is refused', (_name, text) => {
    expect(() => parseServerConfig(text, '/d', {})).toThrow(ServerConfigError);
  });

  test('an inline password is never echoed', () => {
    expect(() => parseServerConfig(base('store: { kind: redis, password: hunter2 }\n'), '/d', {})).toThrow(/^(?!.*hunter2)/);
  });

  test.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['localhost', true],
    ['::1', true],
    ['0.0.0.0', false],
    ['10.0.0.5', false],
    ['::', false],
  ])('isLoopback(%s) = %s', (host, expected) => {
    expect(isLoopback(host)).toBe(expected);
  });
});
