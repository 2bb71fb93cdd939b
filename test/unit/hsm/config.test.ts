import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { parseClusterConfig, resolvePin } from '../../../src/hsm/config';
import { ConfigError } from '../../../src/hsm/errors';

const BASE = '/etc/kms';

type Doc = { clusters: Array<Record<string, unknown>> } & Record<string, unknown>;

/** A valid document: a shared pool with two members and one dedicated cluster. Fresh on every call. */
function validDoc(): Doc {
  return {
    clusters: [
      {
        id: 'shared-1',
        kind: 'shared',
        pool: { maxSessions: 8, waitMs: 500, handleCacheSize: 100, handleTtlSeconds: 60 },
        slowQueue: { running: 3, queued: 0 },
        members: [
          {
            id: 'm1',
            profile: 'softhsm2',
            module: 'lib/libsofthsm2.so',
            env: { SOFTHSM2_CONF: '/etc/softhsm2.conf' },
            token: 'token-1',
            pin: { env: 'KMS_PIN_M1' },
          },
          { id: 'm2', profile: 'softhsm2', moduleDir: './db/m2', token: 'token-2', pin: { file: 'pins/m2.pin' } },
        ],
      },
      {
        id: 'tenant_a.dedicated',
        kind: 'dedicated',
        owners: ['tenant-a', 1234567],
        members: [
          {
            id: 'm3',
            profile: 'nss-softokn',
            module: '/usr/lib/x86_64-linux-gnu/libsoftokn3.so',
            moduleDir: '/var/lib/kms/nssdb',
            token: 'NSS Certificate DB',
            pin: { file: '/run/secrets/m3.pin' },
          },
        ],
      },
    ],
  };
}

const member = (doc: Doc, cluster: number, index: number): Record<string, unknown> => (doc.clusters[cluster].members as Array<Record<string, unknown>>)[index];

describe('parseClusterConfig: valid configuration', () => {
  test('parses a shared and a dedicated cluster, resolving relative paths against base', () => {
    const clusters = parseClusterConfig(stringify(validDoc()), BASE);
    expect(clusters).toEqual([
      {
        id: 'shared-1',
        kind: 'shared',
        owners: [],
        pool: { maxSessions: 8, waitMs: 500, handleCacheSize: 100, handleTtlSeconds: 60 },
        slowQueue: { running: 3, queued: 0 },
        members: [
          {
            id: 'm1',
            profile: 'softhsm2',
            module: '/etc/kms/lib/libsofthsm2.so',
            env: { SOFTHSM2_CONF: '/etc/softhsm2.conf' },
            moduleDir: undefined,
            token: 'token-1',
            pin: { env: 'KMS_PIN_M1' },
          },
          {
            id: 'm2',
            profile: 'softhsm2',
            module: undefined,
            env: undefined,
            moduleDir: '/etc/kms/db/m2',
            token: 'token-2',
            pin: { file: '/etc/kms/pins/m2.pin' },
          },
        ],
      },
      {
        id: 'tenant_a.dedicated',
        kind: 'dedicated',
        owners: ['tenant-a', '1234567'],
        pool: { maxSessions: undefined, waitMs: undefined, handleCacheSize: undefined, handleTtlSeconds: undefined },
        slowQueue: { running: undefined, queued: undefined },
        members: [
          {
            id: 'm3',
            profile: 'nss-softokn',
            module: '/usr/lib/x86_64-linux-gnu/libsoftokn3.so',
            env: undefined,
            moduleDir: '/var/lib/kms/nssdb',
            token: 'NSS Certificate DB',
            pin: { file: '/run/secrets/m3.pin' },
          },
        ],
      },
    ]);
  });

  test('a different base gives different resolved paths; absolute paths are untouched', () => {
    const [shared, dedicated] = parseClusterConfig(stringify(validDoc()), '/opt/other');
    expect(shared.members[0].module).toBe('/opt/other/lib/libsofthsm2.so');
    expect(shared.members[1].pin).toEqual({ file: '/opt/other/pins/m2.pin' });
    expect(dedicated.members[0].module).toBe('/usr/lib/x86_64-linux-gnu/libsoftokn3.so');
  });

  test('only dedicated clusters, and several of them, are fine', () => {
    const doc = validDoc();
    doc.clusters[0] = { id: 'tenant-b', kind: 'dedicated', owners: ['tenant-b'], members: [{ id: 'm9', profile: 'softhsm2', token: 't', pin: { env: 'P' } }] };
    const clusters = parseClusterConfig(stringify(doc), BASE);
    expect(clusters.map((c) => [c.id, c.kind])).toEqual([
      ['tenant-b', 'dedicated'],
      ['tenant_a.dedicated', 'dedicated'],
    ]);
  });

  test.each(['a', 'A1', 'x'.repeat(64), 'a.b_c-d', '9lives'])('cluster id %j is accepted', (id) => {
    const doc = validDoc();
    doc.clusters[0].id = id;
    expect(parseClusterConfig(stringify(doc), BASE)[0].id).toBe(id);
  });
});

describe('parseClusterConfig: invalid configuration', () => {
  type Row = [string, (doc: Doc) => void, RegExp];
  const rows: Row[] = [
    ['dedicated without owners', (d) => delete d.clusters[1].owners, /clusters\[1\].*dedicated cluster needs at least one owner/],
    ['dedicated with an empty owner list', (d) => (d.clusters[1].owners = []), /clusters\[1\].*dedicated cluster needs at least one owner/],
    ['shared with owners', (d) => (d.clusters[0].owners = ['tenant-a']), /clusters\[0\].*shared pool has no owners/],
    ['owners not a list', (d) => (d.clusters[1].owners = 'tenant-a'), /owners must be a list/],
    ['owners holding a mapping', (d) => (d.clusters[1].owners = [{ id: 'x' }]), /owners must be a list/],
    ['duplicate cluster id', (d) => (d.clusters[1].id = 'shared-1'), /clusters\[1\].*duplicate cluster id shared-1/],
    ['duplicate member id in one cluster', (d) => (member(d, 0, 1).id = 'm1'), /clusters\[0\]\.members\[1\].*duplicate member id m1/],
    ['duplicate member id across clusters', (d) => (member(d, 1, 0).id = 'm2'), /clusters\[1\]\.members\[0\].*duplicate member id m2/],
    ['cluster id with a space', (d) => (d.clusters[0].id = 'shared 1'), /id "shared 1" may hold letters, digits/],
    ['cluster id with a slash', (d) => (d.clusters[0].id = 'a/b'), /id "a\/b" may hold letters, digits/],
    ['cluster id starting with a dash', (d) => (d.clusters[0].id = '-x'), /id "-x" may hold letters, digits/],
    ['cluster id starting with a dot', (d) => (d.clusters[0].id = '.x'), /id ".x" may hold letters, digits/],
    ['cluster id of 65 characters', (d) => (d.clusters[0].id = 'x'.repeat(65)), /may hold letters, digits/],
    ['cluster id with a newline', (d) => (d.clusters[0].id = 'a\nb'), /may hold letters, digits/],
    ['cluster id not a string', (d) => (d.clusters[0].id = 12), /"id" must be a non-empty string/],
    [
      'two shared pools',
      (d) => d.clusters.push({ id: 'shared-2', kind: 'shared', members: [{ id: 'm9', profile: 'softhsm2', token: 't', pin: { env: 'P' } }] }),
      /at most one shared pool/,
    ],
    ['empty members', (d) => (d.clusters[0].members = []), /clusters\[0\].*members must be a non-empty list/],
    ['missing members', (d) => delete d.clusters[1].members, /clusters\[1\].*members must be a non-empty list/],
    ['members not a list', (d) => (d.clusters[0].members = { id: 'm1' }), /members must be a non-empty list/],
    ['unknown kind', (d) => (d.clusters[0].kind = 'public'), /kind must be shared or dedicated/],
    ['missing kind', (d) => delete d.clusters[0].kind, /"kind" must be a non-empty string/],
    ['missing token', (d) => delete member(d, 0, 0).token, /members\[0\].*"token" must be a non-empty string/],
    ['empty profile', (d) => (member(d, 0, 0).profile = ''), /"profile" must be a non-empty string/],
    ['empty module path', (d) => (member(d, 0, 0).module = ''), /"module" must be a non-empty string/],
    ['env with a non-string value', (d) => (member(d, 0, 0).env = { SOFTHSM2_CONF: 5 }), /env: values must be strings/],
    ['member not a mapping', (d) => ((d.clusters[0].members as unknown[])[0] = 'm1'), /members\[0\]: expected a mapping/],
    ['missing pin', (d) => delete member(d, 0, 0).pin, /members\[0\]\.pin: expected a mapping/],
    ['pin with neither env nor file', (d) => (member(d, 0, 0).pin = { value: 'x' }), /"file" must be a non-empty string/],
    ['pin with an empty env name', (d) => (member(d, 0, 0).pin = { env: '' }), /"env" must be a non-empty string/],
    ['pool maxSessions 0', (d) => (d.clusters[0].pool = { maxSessions: 0 }), /"maxSessions" must be a positive integer/],
    ['pool waitMs fractional', (d) => (d.clusters[0].pool = { waitMs: 1.5 }), /"waitMs" must be a positive integer/],
    ['pool handleTtlSeconds a string', (d) => (d.clusters[0].pool = { handleTtlSeconds: '60' }), /"handleTtlSeconds" must be a positive integer/],
    ['slowQueue running 0', (d) => (d.clusters[0].slowQueue = { running: 0 }), /slowQueue: "running" must be a positive integer/],
    ['slowQueue queued negative', (d) => (d.clusters[0].slowQueue = { queued: -1 }), /slowQueue: "queued" must be an integer from 0 to 100000/],
    ['slowQueue not a mapping', (d) => (d.clusters[0].slowQueue = 8), /clusters\[0\]\.slowQueue: expected a mapping/],
    ['pool not a mapping', (d) => (d.clusters[0].pool = [1]), /pool: expected a mapping/],
    ['empty clusters list', (d) => (d.clusters = []), /"clusters" must be a non-empty list/],
    ['clusters not a list', (d) => ((d as Record<string, unknown>).clusters = { id: 'x' }), /"clusters" must be a non-empty list/],
  ];

  test.each(rows)('%s', (_name, change, message) => {
    const doc = validDoc();
    // The unchanged document is valid, so each row tests exactly its own change.
    expect(() => parseClusterConfig(stringify(doc), BASE)).not.toThrow();
    change(doc);
    const parse = () => parseClusterConfig(stringify(doc), BASE);
    expect(parse).toThrow(ConfigError);
    expect(parse).toThrow(message);
  });

  test.each<[string, string]>([
    ['not YAML mapping (list)', '- a\n- b\n'],
    ['scalar document', 'hello\n'],
    ['empty document', ''],
    ['no clusters key', 'other: 1\n'],
  ])('%s is refused', (_name, text) => {
    expect(() => parseClusterConfig(text, BASE)).toThrow(ConfigError);
  });

  test.each<[string, unknown, string]>([
    ['string', 's3cr3t-PIN-4711', 's3cr3t-PIN-4711'],
    ['number', 98765432, '98765432'],
    ['numeric string', '0042', '0042'],
  ])('an inline %s pin is refused without echoing it', (_name, pin, shown) => {
    const doc = validDoc();
    member(doc, 0, 1).pin = pin;
    let error: unknown;
    try {
      parseClusterConfig(stringify(doc), BASE);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toMatch(/clusters\[0\]\.members\[1\].*PINs are never written in configuration/);
    expect(message).not.toContain(shown);
    expect(String((error as Error).stack)).not.toContain(shown);
  });

  test('an inline pin written directly in YAML (unquoted digits) is refused without echoing it', () => {
    const text = stringify(validDoc()).replace('pin:\n          env: KMS_PIN_M1', 'pin: 31415926');
    expect(text).toContain('pin: 31415926');
    expect(() => parseClusterConfig(text, BASE)).toThrow(ConfigError);
    expect(() => parseClusterConfig(text, BASE)).not.toThrow(/31415926/);
  });
});

describe('resolvePin', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kms-config-test-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function pinFile(name: string, content: string, mode: number): string {
    const path = join(dir, name);
    writeFileSync(path, content, { mode });
    chmodSync(path, mode); // the umask may have narrowed it
    return path;
  }

  test('reads the named environment variable', () => {
    expect(resolvePin({ env: 'KMS_TEST_PIN' }, { KMS_TEST_PIN: '1234', OTHER: 'x' })).toBe('1234');
  });

  test.each<[string, NodeJS.ProcessEnv]>([
    ['missing', { OTHER: '1234' }],
    ['empty', { KMS_TEST_PIN: '' }],
  ])('a %s environment variable is a ConfigError naming the variable', (_name, env) => {
    expect(() => resolvePin({ env: 'KMS_TEST_PIN' }, env)).toThrow(ConfigError);
    expect(() => resolvePin({ env: 'KMS_TEST_PIN' }, env)).toThrow(/KMS_TEST_PIN/);
  });

  test('a 0600 file is read and trimmed', () => {
    const path = pinFile('ok.pin', '  pin-0600-value \n', 0o600);
    expect(resolvePin({ file: path })).toBe('pin-0600-value');
  });

  test('a 0400 file is accepted too', () => {
    const path = pinFile('ro.pin', 'ro-pin\n', 0o400);
    expect(resolvePin({ file: path })).toBe('ro-pin');
  });

  test.each([0o644, 0o640, 0o604, 0o660, 0o606])('a file with mode %o is refused without reading it out', (mode) => {
    const path = pinFile(`bad-${mode.toString(8)}.pin`, 'leaky-pin-value\n', mode);
    expect(() => resolvePin({ file: path })).toThrow(ConfigError);
    expect(() => resolvePin({ file: path })).toThrow(/must not be readable by group or others/);
    expect(() => resolvePin({ file: path })).not.toThrow(/leaky-pin-value/);
  });

  test('a missing file is a ConfigError naming the file', () => {
    const path = join(dir, 'absent.pin');
    expect(() => resolvePin({ file: path })).toThrow(ConfigError);
    expect(() => resolvePin({ file: path })).toThrow(path);
  });

  test('a relative pin file in configuration is found through base', () => {
    pinFile('m2.pin', 'from-config\n', 0o600);
    const doc = validDoc();
    member(doc, 0, 1).pin = { file: 'm2.pin' };
    const [shared] = parseClusterConfig(stringify(doc), dir);
    expect(shared.members[1].pin).toEqual({ file: join(dir, 'm2.pin') });
    expect(resolvePin(shared.members[1].pin)).toBe('from-config');
  });
});
