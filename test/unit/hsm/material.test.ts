import { createHash } from 'node:crypto';
import { KeySpec } from '../../../src/hsm/capabilities';
import { InvalidInputError, MaterialIntegrityError } from '../../../src/hsm/errors';
import { MaterialBinding, WRAP_ALGORITHM_CODES, WrappedMaterial } from '../../../src/hsm/material';
import { WRAP_ALGORITHMS } from '../../../src/hsm/profile';

const binding: MaterialBinding = { clusterId: 'cluster-1', keyId: 'key-0001', keyVersion: 3, usage: 'ENCRYPT_DECRYPT' };
/** Deterministic filler so failures are reproducible. */
const filler = (length: number, seed: number): Buffer => Buffer.from(Array.from({ length }, (_, i) => (i * 31 + seed * 17 + 7) & 0xff));

function sample(spec: KeySpec = 'RSA_2048', b: MaterialBinding = binding): WrappedMaterial {
  return new WrappedMaterial(spec, b, filler(16, 1), filler(40, 2), filler(24, 3), filler(32, 4));
}

const roundTrip = (w: WrappedMaterial): WrappedMaterial => WrappedMaterial.fromBuffer(w.toBuffer());

describe('WrappedMaterial: encoding round trip', () => {
  const specs: KeySpec[] = ['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096', 'EC_P256', 'EC_P384'];

  test.each(specs)('%s survives toBuffer/fromBuffer', (spec) => {
    const original = sample(spec);
    const back = roundTrip(original);
    expect(back.spec).toBe(spec);
    expect(back.binding).toEqual(binding);
    expect(back.domainId.equals(original.domainId)).toBe(true);
    expect(back.wrapped.equals(original.wrapped)).toBe(true);
    expect(back.publicKey.equals(original.publicKey)).toBe(true);
    expect(back.mac.equals(original.mac)).toBe(true);
    expect(back.toBuffer().equals(original.toBuffer())).toBe(true);
    expect(back.cacheKey).toBe(original.cacheKey);
  });

  test.each<[string, WrappedMaterial]>([
    ['empty public key (AES)', new WrappedMaterial('AES_256', binding, filler(16, 1), filler(40, 2), Buffer.alloc(0), filler(32, 4))],
    [
      'empty strings and zero version',
      new WrappedMaterial('EC_P256', { clusterId: '', keyId: '', keyVersion: 0, usage: '' }, Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), filler(32, 4)),
    ],
    ['max key version', sample('EC_P384', { ...binding, keyVersion: 0xffffffff })],
    ['non-ASCII binding fields', sample('RSA_3072', { clusterId: 'clüster', keyId: '鍵-1', keyVersion: 7, usage: 'SIGN_VERIFY ✓' })],
    ['large wrapped blob', new WrappedMaterial('RSA_4096', binding, filler(16, 1), filler(70_000, 2), filler(550, 3), filler(32, 4))],
  ])('%s', (_name, original) => {
    const back = roundTrip(original);
    expect(back.binding).toEqual(original.binding);
    expect(back.spec).toBe(original.spec);
    expect(back.wrapped.equals(original.wrapped)).toBe(true);
    expect(back.publicKey.equals(original.publicKey)).toBe(true);
    expect(back.cacheKey).toBe(original.cacheKey);
  });

  test('decoded buffers are copies, not views into the input', () => {
    const buf = sample().toBuffer();
    const back = WrappedMaterial.fromBuffer(buf);
    const before = back.toBuffer();
    buf.fill(0);
    expect(back.toBuffer().equals(before)).toBe(true);
  });

  test('cacheKey is the SHA-256 of the record bytes', () => {
    const w = sample();
    expect(w.cacheKey).toBe(createHash('sha256').update(w.toBuffer()).digest('base64'));
  });

  test('macInput is the record without its MAC', () => {
    const w = sample();
    const input = WrappedMaterial.macInput(w.spec, w.binding, w.domainId, w.wrapped, w.publicKey);
    expect(Buffer.concat([input, w.mac]).equals(w.toBuffer())).toBe(true);
  });

  test.each<[string, Partial<MaterialBinding>]>([
    ['different cluster', { clusterId: 'cluster-2' }],
    ['different key', { keyId: 'key-0002' }],
    ['different version', { keyVersion: 4 }],
    ['different usage', { usage: 'SIGN_VERIFY' }],
  ])('records with a %s have different cacheKeys and MAC inputs', (_name, change) => {
    const a = sample();
    const b = sample('RSA_2048', { ...binding, ...change });
    expect(b.cacheKey).not.toBe(a.cacheKey);
    expect(
      WrappedMaterial.macInput(b.spec, b.binding, b.domainId, b.wrapped, b.publicKey).equals(
        WrappedMaterial.macInput(a.spec, a.binding, a.domainId, a.wrapped, a.publicKey),
      ),
    ).toBe(false);
  });

  test('the domain generation is under the MAC: the same record naming another generation has another MAC input and cacheKey', () => {
    const a = sample();
    const b = new WrappedMaterial(a.spec, a.binding, filler(16, 9), a.wrapped, a.publicKey, a.mac);
    expect(b.macBody.equals(a.macBody)).toBe(false);
    expect(b.cacheKey).not.toBe(a.cacheKey);
    expect(roundTrip(b).domainId.equals(filler(16, 9))).toBe(true);
  });

  test('field boundaries are unambiguous: moving bytes between fields changes the record', () => {
    const a = new WrappedMaterial(
      'AES_256',
      { clusterId: 'ab', keyId: 'c', keyVersion: 1, usage: 'u' },
      Buffer.from('xy'),
      Buffer.from('z'),
      Buffer.alloc(0),
      filler(32, 4),
    );
    const b = new WrappedMaterial(
      'AES_256',
      { clusterId: 'a', keyId: 'bc', keyVersion: 1, usage: 'u' },
      Buffer.from('x'),
      Buffer.from('yz'),
      Buffer.alloc(0),
      filler(32, 4),
    );
    expect(a.cacheKey).not.toBe(b.cacheKey);
  });

  test.each([-1, 1.5, 0x100000000, Number.NaN])('key version %p cannot be encoded', (keyVersion) => {
    expect(() => sample('AES_256', { ...binding, keyVersion })).toThrow(InvalidInputError);
  });

  test('a binding field longer than 65535 bytes cannot be encoded', () => {
    expect(() => sample('AES_256', { ...binding, keyId: 'k'.repeat(0x10000) })).toThrow(InvalidInputError);
    expect(() => sample('AES_256', { ...binding, keyId: 'k'.repeat(0xffff) })).not.toThrow();
  });
});

describe('WrappedMaterial.fromBuffer: altered records', () => {
  const original = sample('EC_P256');
  const bytes = original.toBuffer();

  /** Either rejected as MaterialIntegrityError, or decoded into something that never hits the original's cache entry. */
  function expectRejectedOrDistinct(altered: Buffer): 'rejected' | 'distinct' {
    let decoded: WrappedMaterial;
    try {
      decoded = WrappedMaterial.fromBuffer(altered);
    } catch (e) {
      expect(e).toBeInstanceOf(MaterialIntegrityError);
      return 'rejected';
    }
    expect(decoded.cacheKey).not.toBe(original.cacheKey);
    return 'distinct';
  }

  test('every truncation length is rejected', () => {
    expect(bytes.length).toBeGreaterThan(100);
    const outcomes = new Set<string>();
    for (let length = 0; length < bytes.length; length++) outcomes.add(expectRejectedOrDistinct(Buffer.from(bytes.subarray(0, length))));
    // A strict prefix can never decode: the MAC is the last 32 bytes and lengths are explicit.
    expect([...outcomes]).toEqual(['rejected']);
  });

  test.each([1, 2, 31, 32, 1000])('%d trailing bytes are rejected', (n) => {
    expect(() => WrappedMaterial.fromBuffer(Buffer.concat([bytes, Buffer.alloc(n, 0xaa)]))).toThrow(MaterialIntegrityError);
    expect(() => WrappedMaterial.fromBuffer(Buffer.concat([bytes, Buffer.alloc(n)]))).toThrow(/trailing bytes/);
  });

  test.each([0x01, 0x80, 0xff])('every byte flipped with XOR 0x%s is rejected or changes the cacheKey', (mask) => {
    const counts = { rejected: 0, distinct: 0 };
    for (let i = 0; i < bytes.length; i++) {
      const altered = Buffer.from(bytes);
      altered[i] ^= mask;
      counts[expectRejectedOrDistinct(altered)]++;
    }
    expect(counts.rejected + counts.distinct).toBe(bytes.length);
    // Flips in the magic must be rejected; flips in the MAC are decodable but distinct.
    expect(counts.rejected).toBeGreaterThanOrEqual(4);
    expect(counts.distinct).toBeGreaterThanOrEqual(32);
  });

  test('every byte set to every one of a handful of values is rejected or changes the cacheKey', () => {
    for (const value of [0x00, 0x02, 0x05, 0x06, 0x20, 0x7f, 0xc3, 0xfe]) {
      for (let i = 0; i < bytes.length; i++) {
        if (bytes[i] === value) continue;
        const altered = Buffer.from(bytes);
        altered[i] = value;
        expectRejectedOrDistinct(altered);
      }
    }
  });

  test.each<[string, (b: Buffer) => void, RegExp]>([
    ['bad magic', (b) => (b[0] = 0x4a), /not a wrapped material record/],
    ['unknown key spec 6', (b) => (b[4] = 6), /unknown key spec/],
    ['unknown key spec 255', (b) => (b[4] = 0xff), /unknown key spec/],
    ['cluster id length too large', (b) => b.writeUInt16BE(0xffff, 5), /truncated/],
  ])('%s', (_name, alter, message) => {
    const altered = Buffer.from(bytes);
    alter(altered);
    expect(() => WrappedMaterial.fromBuffer(altered)).toThrow(MaterialIntegrityError);
    expect(() => WrappedMaterial.fromBuffer(altered)).toThrow(message);
  });

  test('a flipped MAC byte decodes to a record with the same body but another cacheKey', () => {
    const altered = Buffer.from(bytes);
    altered[altered.length - 1] ^= 1;
    const decoded = WrappedMaterial.fromBuffer(altered);
    expect(decoded.binding).toEqual(original.binding);
    expect(decoded.mac.equals(original.mac)).toBe(false);
    expect(decoded.cacheKey).not.toBe(original.cacheKey);
  });

  test('an empty buffer and garbage are rejected', () => {
    expect(() => WrappedMaterial.fromBuffer(Buffer.alloc(0))).toThrow(MaterialIntegrityError);
    expect(() => WrappedMaterial.fromBuffer(Buffer.from('KMR1'))).toThrow(MaterialIntegrityError);
    expect(() => WrappedMaterial.fromBuffer(filler(200, 9))).toThrow(MaterialIntegrityError);
  });
});

describe('WrappedMaterial.assertBinding', () => {
  const w = sample();

  test('accepts the same binding (a different but equal object)', () => {
    expect(() => w.assertBinding({ ...binding })).not.toThrow();
    expect(() => roundTrip(w).assertBinding({ clusterId: 'cluster-1', keyId: 'key-0001', keyVersion: 3, usage: 'ENCRYPT_DECRYPT' })).not.toThrow();
  });

  test.each<[string, Partial<MaterialBinding>]>([
    ['clusterId', { clusterId: 'cluster-2' }],
    ['clusterId (case)', { clusterId: 'Cluster-1' }],
    ['keyId', { keyId: 'key-0002' }],
    ['keyId (prefix)', { keyId: 'key-000' }],
    ['keyVersion', { keyVersion: 4 }],
    ['keyVersion (previous)', { keyVersion: 2 }],
    ['usage', { usage: 'SIGN_VERIFY' }],
    ['usage (empty)', { usage: '' }],
  ])('rejects a changed %s', (_name, change) => {
    expect(() => w.assertBinding({ ...binding, ...change })).toThrow(MaterialIntegrityError);
  });
});

describe('KMR2: owner and scope are bound; KMR1 is read only to be migrated', () => {
  const owned: MaterialBinding = { ...binding, owner: '100000000001', scope: 'ap-guangzhou' };
  const w = sample('AES_256', owned);

  test('a KMR2 record starts with its magic and round-trips owner and scope', () => {
    expect(w.toBuffer().subarray(0, 4).toString('latin1')).toBe('KMR2');
    const back = roundTrip(w);
    expect(back.binding).toEqual(owned);
    expect(back.legacy).toBe(false);
  });

  test.each<[string, Partial<MaterialBinding>]>([
    ['owner', { owner: '100000000002' }],
    ['owner (absent)', { owner: undefined }],
    ['scope', { scope: 'ap-shanghai' }],
    ['owner and scope swapped', { owner: 'ap-guangzhou', scope: '100000000001' }],
  ])('another %s is refused and has another MAC input', (_name, change) => {
    const other = { ...owned, ...change };
    expect(() => w.assertBinding(other)).toThrow(MaterialIntegrityError);
    expect(WrappedMaterial.macInput(w.spec, other, w.domainId, w.wrapped, w.publicKey).equals(w.macBody)).toBe(false);
  });

  test('a KMR1 record decodes as legacy, keeps its bytes, and is refused for use whatever the binding', () => {
    const body = WrappedMaterial.macInput('AES_256', binding, w.domainId, w.wrapped, w.publicKey, 1);
    expect(body.subarray(0, 4).toString('latin1')).toBe('KMR1');
    const old = WrappedMaterial.fromBuffer(Buffer.concat([body, filler(32, 5)]));
    expect(old.legacy).toBe(true);
    expect(old.binding).toEqual(binding);
    expect(old.toBuffer().equals(Buffer.concat([body, filler(32, 5)]))).toBe(true);
    expect(() => old.assertBinding(binding)).toThrow(/KMR1/);
  });

  test('the KMR1 and KMR2 MAC inputs of the same material differ (a KMR1 MAC never passes as KMR2)', () => {
    const v1 = WrappedMaterial.macInput(w.spec, binding, w.domainId, w.wrapped, w.publicKey, 1);
    const v2 = WrappedMaterial.macInput(w.spec, binding, w.domainId, w.wrapped, w.publicKey, 2);
    expect(v1.equals(v2)).toBe(false);
  });
});

describe('KMR3: the record names its wrap algorithm, inside the MAC', () => {
  const owned: MaterialBinding = { ...binding, owner: '100000000001', scope: 'ap-guangzhou' };
  const cbc = new WrappedMaterial('RSA_2048', owned, filler(16, 1), filler(64, 2), filler(24, 3), filler(32, 4), 3, 'aes-cbc-pad');

  test('RFC 5649 records stay KMR2 (older builds read them); other algorithms are KMR3', () => {
    expect(WrappedMaterial.formatFor('rfc5649')).toBe(2);
    expect(WrappedMaterial.formatFor('aes-cbc-pad')).toBe(3);
    expect(sample().wrapAlgorithm).toBe('rfc5649');
    expect(roundTrip(sample()).wrapAlgorithm).toBe('rfc5649');
  });

  test('KMR2 bytes are laid out as before wrap algorithms existed: magic, spec, then the cluster id (no algorithm byte)', () => {
    const body = sample().macBody;
    expect(body.subarray(0, 4).toString('latin1')).toBe('KMR2');
    expect(body[4]).toBe(1); // RSA_2048
    expect(body.readUInt16BE(5)).toBe(binding.clusterId.length);
    expect(body.subarray(7, 7 + binding.clusterId.length).toString()).toBe(binding.clusterId);
  });

  test('a KMR3 record round-trips its wrap algorithm, binding and bytes', () => {
    const bytes = cbc.toBuffer();
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('KMR3');
    const back = roundTrip(cbc);
    expect(back.format).toBe(3);
    expect(back.wrapAlgorithm).toBe('aes-cbc-pad');
    expect(back.binding).toEqual(owned);
    expect(back.toBuffer().equals(bytes)).toBe(true);
  });

  test('the wrap algorithm is covered by the MAC input: the same bytes under another algorithm have another body', () => {
    const as5649 = WrappedMaterial.macInput(cbc.spec, owned, cbc.domainId, cbc.wrapped, cbc.publicKey, 3, 'rfc5649');
    expect(as5649.equals(cbc.macBody)).toBe(false);
    const kmr2 = WrappedMaterial.macInput(cbc.spec, owned, cbc.domainId, cbc.wrapped, cbc.publicKey, 2);
    expect(kmr2.equals(cbc.macBody)).toBe(false);
    // flipping the algorithm byte (just after magic and spec) yields the other algorithm, so a different MAC body
    const flipped = cbc.toBuffer();
    flipped[5] = 0;
    const decoded = WrappedMaterial.fromBuffer(flipped);
    expect(decoded.wrapAlgorithm).toBe('rfc5649');
    expect(decoded.macBody.equals(cbc.macBody)).toBe(false);
    expect(decoded.mac.equals(cbc.mac)).toBe(true);
  });

  test('an unknown algorithm code is a malformed record; a KMR2 record cannot name another algorithm', () => {
    const bad = cbc.toBuffer();
    bad[5] = 9;
    expect(() => WrappedMaterial.fromBuffer(bad)).toThrow(/unknown wrap algorithm/);
    expect(() => new WrappedMaterial('RSA_2048', owned, filler(16, 1), filler(64, 2), filler(24, 3), filler(32, 4), 2, 'aes-cbc-pad')).toThrow(
      InvalidInputError,
    );
  });

  /** KMR3 records written before the wrap algorithm codes were a table (when they were WRAP_ALGORITHMS positions). */
  const FIXED = {
    rfc5649:
      '4b4d523300000002633100026b3100000002000f454e43525950545f444543525950540003313030000461702d7800000004183756750000000829486786a5c4e3020000' +
      '00004b6a89a8c7e60524436281a0bfdefd1c3b5a7998b7d6f51433527190afceed0c',
    'aes-cbc-pad':
      '4b4d523300010002633100026b3100000002000f454e43525950545f444543525950540003313030000461702d7800000004183756750000000829486786a5c4e3020000' +
      '00004b6a89a8c7e60524436281a0bfdefd1c3b5a7998b7d6f51433527190afceed0c',
  } as const;
  const small: MaterialBinding = { clusterId: 'c1', keyId: 'k1', keyVersion: 2, usage: 'ENCRYPT_DECRYPT', owner: '100', scope: 'ap-x' };

  test.each(Object.entries(FIXED))('a KMR3 %s record made before the code table reads, and is written, byte for byte as before', (name, hex) => {
    const algorithm = name as keyof typeof FIXED;
    const made = new WrappedMaterial('AES_256', small, filler(4, 1), filler(8, 2), Buffer.alloc(0), filler(32, 4), 3, algorithm);
    expect(made.toBuffer().toString('hex')).toBe(hex);
    const read = WrappedMaterial.fromBuffer(Buffer.from(hex, 'hex'));
    expect(read.wrapAlgorithm).toBe(algorithm);
    expect(read.binding).toEqual(small);
  });

  test('every wrap algorithm has its own code', () => {
    const codes = WRAP_ALGORITHMS.map((a) => WRAP_ALGORITHM_CODES[a]);
    expect(codes.every((c) => Number.isInteger(c))).toBe(true);
    expect(new Set(codes).size).toBe(WRAP_ALGORITHMS.length);
  });
});
