import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ConfigError } from '../../../src/hsm/errors';
import { describeProfiles, HsmProfile, loadProfiles, parseProfile, PROFILE_DIR } from '../../../src/hsm/profile';

const DIR = join(__dirname, '..', '..', '..', '..', 'hsm-profiles');
const yamlFiles = readdirSync(DIR).filter((f) => f.endsWith('.yaml'));

/** A minimal valid profile document; every test starts from a fresh copy. */
function validRaw(): Record<string, unknown> {
  return {
    name: 'example-hsm',
    description: 'An example network HSM',
    verified: false,
    callMode: 'async',
    moduleHints: ['/opt/example/libexample.so'],
    maxSessions: 32,
    rfc5649Mechanism: 0x210a,
    oaepHashes: ['sha1', 'sha256'],
    ecdsaWithHash: true,
  };
}

describe('shipped profiles', () => {
  const profiles = loadProfiles(DIR);

  test('the profile directory holds at least softhsm2 and nss-softokn', () => {
    expect(yamlFiles.length).toBeGreaterThanOrEqual(2);
    expect(profiles.size).toBe(yamlFiles.length);
    expect([...profiles.keys()]).toEqual(expect.arrayContaining(['softhsm2', 'nss-softokn']));
  });

  test('the default directory is the same one', () => {
    expect([...loadProfiles(PROFILE_DIR).keys()].sort()).toEqual([...profiles.keys()].sort());
  });

  test.each(yamlFiles)('%s parses on its own and is complete', (file) => {
    const p = parseProfile(readFileSync(join(DIR, file), 'utf8'), file);
    expect(profiles.get(p.name)).toEqual(p);
    expect(p.name.length).toBeGreaterThan(0);
    expect(p.description.length).toBeGreaterThan(0);
    expect(['sync', 'async']).toContain(p.callMode);
    expect(p.moduleHints.length).toBeGreaterThan(0);
    expect(Number.isInteger(p.maxSessions) && p.maxSessions > 0).toBe(true);
    expect(p.wrapAlgorithms.length).toBeGreaterThan(0);
    if (p.wrapAlgorithms.includes('rfc5649')) expect(Number.isInteger(p.rfc5649Mechanism) && p.rfc5649Mechanism! > 0).toBe(true);
    expect(p.oaepHashes.length).toBeGreaterThan(0);
    for (const h of p.oaepHashes) expect(['sha1', 'sha256']).toContain(h);
    expect(['v2.20', 'v2.40']).toContain(p.gcmParams);
    for (const o of p.errorOverrides) {
      expect(o.code).toMatch(/^CKR_[A-Z0-9_]+$/);
      expect(o.during.length).toBeGreaterThan(0);
      expect(['caller', 'session', 'device', 'unsupported']).toContain(o.errorClass);
    }
  });

  test.each<[string, Partial<HsmProfile>]>([
    [
      'softhsm2',
      {
        verified: true,
        callMode: 'sync',
        rfc5649Mechanism: 0x210a,
        oaepHashes: ['sha1'],
        ecdsaWithHash: false,
        gcmParams: 'v2.20',
        ecPrivateKeyUnwrap: true,
        nativeCloning: false,
        enforcesNonExtractable: true,
        wrapWithTrusted: true,
        unwrapTemplate: true,
        lockUnmodifiable: true,
      },
    ],
    [
      'nss-softokn',
      {
        verified: true,
        callMode: 'sync',
        rfc5649Mechanism: 0x210b,
        oaepHashes: ['sha1', 'sha256'],
        ecdsaWithHash: true,
        gcmParams: 'v2.40',
        ecPrivateKeyUnwrap: false,
        nativeCloning: false,
        enforcesNonExtractable: false,
        wrapWithTrusted: false,
        unwrapTemplate: false,
        lockUnmodifiable: false,
      },
    ],
  ])('%s is verified and declares its quirks', (name, expected) => {
    expect(profiles.get(name)).toMatchObject(expected);
  });

  test('nss-softokn has library parameters with a {dir} placeholder; softhsm2 has none', () => {
    expect(profiles.get('nss-softokn')?.libraryParameters).toContain('{dir}');
    expect(profiles.get('softhsm2')?.libraryParameters).toBeUndefined();
  });

  test('verified: false in a YAML file is what the loaded profile says', () => {
    for (const f of yamlFiles) {
      const text = readFileSync(join(DIR, f), 'utf8');
      const declared = /^verified:\s*(true|false)\b/m.exec(text);
      expect(declared).not.toBeNull();
      const p = [...profiles.values()].find((x) => parseProfile(text, f).name === x.name);
      expect(p?.verified).toBe(declared?.[1] === 'true');
    }
  });

  test('describeProfiles shows every shipped profile with its verified state', () => {
    const lines = describeProfiles(profiles.values());
    expect(lines).toHaveLength(profiles.size);
    for (const p of profiles.values()) {
      const line = lines.find((l) => l.startsWith(`${p.name}\t`));
      expect(line).toBeDefined();
      expect(line).toContain(p.description);
      if (p.verified) {
        expect(line?.split('\t')[1]).toBe('verified');
      } else {
        expect(line?.split('\t')[1]).not.toBe('verified');
        expect(line).toContain('verified: false');
      }
    }
  });
});

describe('describeProfiles', () => {
  test('marks unverified profiles as such and verified ones as verified', () => {
    const verified = parseProfile(stringify({ ...validRaw(), name: 'good', verified: true }), 'good.yaml');
    const unverified = parseProfile(stringify({ ...validRaw(), name: 'paper', verified: false }), 'paper.yaml');
    const [a, b] = describeProfiles([verified, unverified]);
    expect(a.split('\t')).toEqual(['good', 'verified', 'An example network HSM']);
    expect(b.split('\t')[0]).toBe('paper');
    expect(b.split('\t')[1]).toMatch(/^verified: false/);
    expect(b).not.toContain('\tverified\t');
  });

  test('an unverified profile loaded from a directory is shown as unverified', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kms-profile-test-'));
    try {
      for (const f of yamlFiles) writeFileSync(join(dir, f), readFileSync(join(DIR, f)));
      writeFileSync(join(dir, 'zz-vendor.yaml'), stringify({ ...validRaw(), name: 'vendor-x' }));
      writeFileSync(join(dir, 'README.md'), 'not a profile');
      const loaded = loadProfiles(dir);
      expect(loaded.size).toBe(yamlFiles.length + 1);
      const line = describeProfiles(loaded.values()).find((l) => l.startsWith('vendor-x\t'));
      expect(line).toContain('verified: false');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('two files with the same profile name are refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kms-profile-test-'));
    try {
      writeFileSync(join(dir, 'a.yaml'), stringify(validRaw()));
      writeFileSync(join(dir, 'b.yaml'), stringify(validRaw()));
      expect(() => loadProfiles(dir)).toThrow(ConfigError);
      expect(() => loadProfiles(dir)).toThrow(/b\.yaml: duplicate profile name example-hsm/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('parseProfile', () => {
  test('errorOverrides[].during must name operations a member performs', () => {
    const raw = { ...validRaw(), errorOverrides: [{ code: 'CKR_GENERAL_ERROR', during: ['decrypt', 'decyrpt'], errorClass: 'caller' }] };
    expect(() => parseProfile(stringify(raw), 'x.yaml')).toThrow(/errorOverrides\[0\] during: unknown operations decyrpt \(known: encrypt, decrypt/);
  });

  test('slowOperations names operations a member performs', () => {
    expect(parseProfile(stringify({ ...validRaw(), slowOperations: ['encrypt', 'mac'] }), 'x.yaml').slowOperations).toEqual(['encrypt', 'mac']);
    expect(() => parseProfile(stringify({ ...validRaw(), slowOperations: ['keygen'] }), 'x.yaml')).toThrow(/x.yaml slowOperations: unknown operations keygen/);
  });

  test('gcmIv is caller or token', () => {
    expect(parseProfile(stringify({ ...validRaw(), gcmIv: 'token' }), 'x.yaml').gcmIv).toBe('token');
    expect(() => parseProfile(stringify({ ...validRaw(), gcmIv: 'hsm' }), 'x.yaml')).toThrow(/gcmIv must be one of caller, token/);
  });

  test('a minimal profile gets the documented defaults', () => {
    const p = parseProfile(stringify(validRaw()), 'x.yaml');
    expect(p).toEqual({
      ...validRaw(),
      libraryParameters: undefined,
      nativeCloning: false,
      enforcesNonExtractable: true,
      wrapWithTrusted: false,
      unwrapTemplate: false,
      lockUnmodifiable: false,
      gcmParams: 'v2.20',
      gcmIv: 'caller',
      ecPrivateKeyUnwrap: true,
      wrapAlgorithms: ['rfc5649'],
      unwrapIgnoresProtection: false,
      errorOverrides: [],
      slowOperations: [],
      notes: [],
    });
  });

  test('hex mechanism ids in YAML are numbers', () => {
    const text = stringify(validRaw()).replace(/rfc5649Mechanism: \d+/, 'rfc5649Mechanism: 0x210B');
    expect(text).toContain('0x210B');
    expect(parseProfile(text, 'x.yaml').rfc5649Mechanism).toBe(0x210b);
  });

  type Row = [string, (raw: Record<string, unknown>) => void, RegExp];
  const rows: Row[] = [
    ['callMode "threaded"', (r) => (r.callMode = 'threaded'), /x\.yaml: callMode must be sync or async/],
    ['callMode "SYNC"', (r) => (r.callMode = 'SYNC'), /callMode must be sync or async/],
    ['callMode missing', (r) => delete r.callMode, /field "callMode" is missing or has the wrong type/],
    ['callMode a number', (r) => (r.callMode = 1), /field "callMode"/],
    ['oaepHashes with sha512', (r) => (r.oaepHashes = ['sha1', 'sha512']), /oaepHashes may hold sha1 and sha256 only/],
    ['oaepHashes with SHA256', (r) => (r.oaepHashes = ['SHA256']), /oaepHashes may hold sha1 and sha256 only/],
    ['oaepHashes a string', (r) => (r.oaepHashes = 'sha1'), /field "oaepHashes"/],
    ['oaepHashes holding a number', (r) => (r.oaepHashes = [1]), /field "oaepHashes"/],
    ['name missing', (r) => delete r.name, /field "name" is missing/],
    ['name empty', (r) => (r.name = ''), /field "name"/],
    ['name a number', (r) => (r.name = 5), /field "name"/],
    ['description missing', (r) => delete r.description, /field "description"/],
    ['verified missing', (r) => delete r.verified, /field "verified"/],
    ['verified a string', (r) => (r.verified = 'yes'), /field "verified"/],
    ['moduleHints missing', (r) => delete r.moduleHints, /field "moduleHints"/],
    ['maxSessions 0', (r) => (r.maxSessions = 0), /field "maxSessions"/],
    ['maxSessions fractional', (r) => (r.maxSessions = 2.5), /field "maxSessions"/],
    ['rfc5649Mechanism missing and no other wrap algorithm', (r) => delete r.rfc5649Mechanism, /wrapAlgorithms must list one or more of rfc5649, aes-cbc-pad/],
    [
      'wrapAlgorithms naming rfc5649 without its mechanism',
      (r) => {
        delete r.rfc5649Mechanism;
        r.wrapAlgorithms = ['aes-cbc-pad', 'rfc5649'];
      },
      /names rfc5649 but rfc5649Mechanism is not set/,
    ],
    ['an unknown wrap algorithm', (r) => (r.wrapAlgorithms = ['rfc3394']), /wrapAlgorithms must list one or more of/],
    ['an empty wrapAlgorithms', (r) => (r.wrapAlgorithms = []), /wrapAlgorithms must list one or more of/],
    ['ecdsaWithHash missing', (r) => delete r.ecdsaWithHash, /field "ecdsaWithHash"/],
    ['gcmParams v3.0', (r) => (r.gcmParams = 'v3.0'), /gcmParams must be v2.20 or v2.40/],
    ['ecPrivateKeyUnwrap a string', (r) => (r.ecPrivateKeyUnwrap = 'no'), /field "ecPrivateKeyUnwrap"/],
    ['libraryParameters empty', (r) => (r.libraryParameters = ''), /field "libraryParameters"/],
    ['notes not strings', (r) => (r.notes = [{ a: 1 }]), /field "notes"/],
    ['errorOverrides not a list', (r) => (r.errorOverrides = { code: 'CKR_GENERAL_ERROR' }), /field "errorOverrides"/],
    [
      'override with a bad class',
      (r) => (r.errorOverrides = [{ code: 'CKR_GENERAL_ERROR', during: ['decrypt'], errorClass: 'ignore' }]),
      /errorOverrides\[0\]: errorClass must be one of/,
    ],
    ['override without during', (r) => (r.errorOverrides = [{ code: 'CKR_GENERAL_ERROR', errorClass: 'caller' }]), /errorOverrides\[0\]: field "during"/],
    ['override without code', (r) => (r.errorOverrides = [{ during: ['decrypt'], errorClass: 'caller' }]), /errorOverrides\[0\]: field "code"/],
    ['override not a mapping', (r) => (r.errorOverrides = ['CKR_GENERAL_ERROR']), /errorOverrides\[0\]: not a mapping/],
  ];

  test.each(rows)('rejects %s', (_name, change, message) => {
    const raw = validRaw();
    expect(() => parseProfile(stringify(raw), 'x.yaml')).not.toThrow();
    change(raw);
    expect(() => parseProfile(stringify(raw), 'x.yaml')).toThrow(ConfigError);
    expect(() => parseProfile(stringify(raw), 'x.yaml')).toThrow(message);
  });

  test.each<[string, string]>([
    ['empty text', ''],
    ['a list', '- a\n'],
    ['a scalar', 'softhsm2\n'],
  ])('rejects %s', (_name, text) => {
    expect(() => parseProfile(text, 'x.yaml')).toThrow(ConfigError);
  });

  test('accepts overrides, notes, gcmParams v2.40 and native cloning', () => {
    const raw = {
      ...validRaw(),
      gcmParams: 'v2.40',
      nativeCloning: true,
      ecPrivateKeyUnwrap: false,
      libraryParameters: "configdir='{dir}'",
      errorOverrides: [{ code: 'CKR_FUNCTION_FAILED', during: ['sign', 'decrypt'], errorClass: 'caller' }],
      notes: ['one', 'two'],
    };
    expect(parseProfile(stringify(raw), 'x.yaml')).toMatchObject({
      gcmParams: 'v2.40',
      nativeCloning: true,
      ecPrivateKeyUnwrap: false,
      libraryParameters: "configdir='{dir}'",
      errorOverrides: [{ code: 'CKR_FUNCTION_FAILED', during: ['sign', 'decrypt'], errorClass: 'caller' }],
      notes: ['one', 'two'],
    });
  });
});
