import { ConfigError } from '../../src/hsm/errors';
import { availableParallelism } from 'node:os';
import { isLoopback, MAX_WORKERS, parseServerConfig } from '../../src/config';

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
      listen: { host: '127.0.0.1', port: 8080 }, allowInsecure: false, store: { kind: 'sqlite', path: '/data/kms.db' }, regions: ['ap-guangzhou'],
      maxKeysPerRegion: 200, maxBodyBytes: 262144, rateLimit: { perSecond: 1000, burst: 2000 }, alarms: {}, shutdownGraceMs: 10000, workers: 1,
      expensivePerTenant: 4,
    });
    expect(parseServerConfig(base('limits: { expensivePerTenant: 0 }\n'), '/data', {}).expensivePerTenant).toBe(0);
    expect(c.tls).toBeUndefined();
    expect(c.deploymentId.toString('hex')).toBe('00112233445566778899aabbccddeeff');
    expect(c.clusters.map((x) => x.id)).toEqual(['default']);
  });

  test('environment overrides port and host; relative paths resolve in the data dir', () => {
    const c = parseServerConfig(base('tls: { cert: c.pem, key: k.pem }\nalarms: { log: alarms.log, webhook: "http://hook" }\n'), '/data', { KMS_PORT: '9000', KMS_HOST: '0.0.0.0' });
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 9000 });
    expect(c.tls).toEqual({ cert: '/data/c.pem', key: '/data/k.pem' });
    expect(c.alarms).toEqual({ log: '/data/alarms.log', webhook: 'http://hook' });
  });

  test.each<[string, string, NodeJS.ProcessEnv, number]>([
    ['a count', 'workers: 3\n', {}, 3],
    ['auto: one per CPU', 'workers: auto\n', {}, Math.min(MAX_WORKERS, availableParallelism())],
    ['KMS_WORKERS overrides the file', 'workers: 3\n', { KMS_WORKERS: '2' }, 2],
    ['KMS_WORKERS=auto', '', { KMS_WORKERS: 'auto' }, Math.min(MAX_WORKERS, availableParallelism())],
  ])('workers: %s', (_name, extra, env, expected) => {
    expect(parseServerConfig(base(extra), '/d', env).workers).toBe(expected);
  });

  test.each([['zero', 'workers: 0\n', {}], ['too many', `workers: ${MAX_WORKERS + 1}\n`, {}], ['a fraction', 'workers: 1.5\n', {}], ['a word', 'workers: many\n', {}], ['a bad KMS_WORKERS', '', { KMS_WORKERS: '-2' }]])(
    'workers: %s is refused', (_name, extra, env) => {
      expect(() => parseServerConfig(base(extra), '/d', env)).toThrow(/"workers" must be "auto" or an integer from 1 to 256/);
    },
  );

  test('redis store', () => {
    expect(parseServerConfig(base('store: { kind: redis, port: 6380, allowVolatile: true }\n'), '/d', {}).store).toEqual({ kind: 'redis', host: '127.0.0.1', port: 6380, allowVolatile: true });
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
    expect(() => parseServerConfig(text, '/d', {})).toThrow(ConfigError);
  });

  test('an inline password is never echoed', () => {
    expect(() => parseServerConfig(base('store: { kind: redis, password: hunter2 }\n'), '/d', {})).toThrow(/^(?!.*hunter2)/);
  });

  test.each([['127.0.0.1', true], ['127.1.2.3', true], ['localhost', true], ['::1', true], ['0.0.0.0', false], ['10.0.0.5', false], ['::', false]])('isLoopback(%s) = %s', (host, expected) => {
    expect(isLoopback(host)).toBe(expected);
  });
});
