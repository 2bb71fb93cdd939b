import { createSign, createVerify, generateKeyPairSync } from 'node:crypto';
import { ecdsaDerToRaw, ecdsaRawToDer } from '../../../src/hsm/spki';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const fill = (size: number, byte: number): Buffer => Buffer.alloc(size, byte);
/** Deterministic pseudo-random bytes. */
function bytes(size: number, seed: number): Buffer {
  let x = (Math.imul(seed, 2654435761) + 1) >>> 0;
  return Buffer.from(Array.from({ length: size }, () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0), x >>> 24)));
}

/** Minimal independent DER reader for SEQUENCE { INTEGER r, INTEGER s }, used to check the encoder. */
function parseDer(der: Buffer): { r: Buffer; s: Buffer } {
  expect(der[0]).toBe(0x30);
  let at = 2;
  let seqLen = der[1];
  if (seqLen & 0x80) {
    expect(seqLen).toBe(0x81);
    seqLen = der[2];
    expect(seqLen).toBeGreaterThanOrEqual(128);
    at = 3;
  }
  expect(at + seqLen).toBe(der.length);
  const ints: Buffer[] = [];
  for (let i = 0; i < 2; i++) {
    expect(der[at]).toBe(0x02);
    const len = der[at + 1];
    expect(len).toBeLessThan(128);
    expect(len).toBeGreaterThan(0);
    const v = der.subarray(at + 2, at + 2 + len);
    // DER: non-negative and minimal.
    expect(v[0] & 0x80).toBe(0);
    if (v.length > 1) expect(v[0] === 0 && (v[1] & 0x80) === 0).toBe(false);
    ints.push(v);
    at += 2 + len;
  }
  expect(at).toBe(der.length);
  return { r: ints[0], s: ints[1] };
}

/** The integer value as minimal unsigned big-endian bytes (at least one byte). */
function unsigned(v: Buffer): Buffer {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  return v.subarray(i);
}

describe('ecdsaRawToDer / ecdsaDerToRaw round trip', () => {
  type Row = [string, Buffer, Buffer];
  const cases = (size: number): Row[] => [
    ['random r and s', bytes(size, 1), bytes(size, 2)],
    ['r with the high bit set', Buffer.concat([hex('80'), bytes(size - 1, 3)]), bytes(size, 4).fill(0x11, 0, 1)],
    ['s with the high bit set', bytes(size, 5).fill(0x22, 0, 1), Buffer.concat([hex('ff'), bytes(size - 1, 6)])],
    ['both all 0xff', fill(size, 0xff), fill(size, 0xff)],
    ['r with one leading zero byte', Buffer.concat([hex('00'), bytes(size - 1, 7)]), bytes(size, 8)],
    ['s with several leading zero bytes', bytes(size, 9), Buffer.concat([fill(5, 0), bytes(size - 5, 10)])],
    ['r with a leading zero and then a high bit', Buffer.concat([hex('0080'), bytes(size - 2, 11)]), bytes(size, 12)],
    ['both with leading zeros and high bits', Buffer.concat([hex('00ff'), bytes(size - 2, 13)]), Buffer.concat([hex('000080'), bytes(size - 3, 14)])],
    ['r = 1, s = max', Buffer.concat([fill(size - 1, 0), hex('01')]), fill(size, 0xff)],
    ['r = 0x7f..., s = 0x80 at the last byte', Buffer.concat([hex('7f'), fill(size - 1, 0xff)]), Buffer.concat([fill(size - 1, 0), hex('80')])],
  ];

  describe.each([
    ['P-256', 32],
    ['P-384', 48],
    ['P-521', 66],
  ])('%s (%d-byte halves)', (_curve, size) => {
    test.each(cases(size))('%s', (_name, r, s) => {
      expect(r).toHaveLength(size);
      expect(s).toHaveLength(size);
      const raw = Buffer.concat([r, s]);
      const der = ecdsaRawToDer(raw);
      const parsed = parseDer(der);
      expect(unsigned(parsed.r).equals(unsigned(r))).toBe(true);
      expect(unsigned(parsed.s).equals(unsigned(s))).toBe(true);
      expect(parsed.r.length).toBe(unsigned(r).length + (unsigned(r)[0] & 0x80 ? 1 : 0));
      const back = ecdsaDerToRaw(der, size);
      expect(back).toBeDefined();
      expect(back?.equals(raw)).toBe(true);
    });
  });

  test('known encoding: high bit gets a 0x00 pad, leading zeros are stripped', () => {
    const raw = Buffer.concat([hex('80'), fill(31, 0x01), fill(31, 0), hex('05')]);
    expect(ecdsaRawToDer(raw).toString('hex')).toBe('3026' + '022100' + '80' + '01'.repeat(31) + '020105');
  });

  test.each<[string, number]>([
    ['prime256v1', 32],
    ['secp384r1', 48],
  ])('interoperates with node:crypto ECDSA on %s', (namedCurve, size) => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve });
    const data = Buffer.from('message to sign');
    for (let i = 0; i < 10; i++) {
      const der = createSign('sha256').update(data).sign(privateKey);
      const raw = ecdsaDerToRaw(der, size);
      expect(raw).toHaveLength(2 * size);
      const p1363 = createSign('sha256').update(data).sign({ key: privateKey, dsaEncoding: 'ieee-p1363' });
      expect(
        createVerify('sha256')
          .update(data)
          .verify({ key: publicKey, dsaEncoding: 'ieee-p1363' }, raw as Buffer),
      ).toBe(true);
      // Our DER of node's raw signature verifies as DER.
      expect(createVerify('sha256').update(data).verify(publicKey, ecdsaRawToDer(p1363))).toBe(true);
      // And re-encoding node's own DER signature gives back the same bytes (node emits minimal DER).
      expect(ecdsaRawToDer(raw as Buffer).equals(der)).toBe(true);
    }
  });
});

describe('ecdsaDerToRaw rejects garbage', () => {
  const good = ecdsaRawToDer(Buffer.concat([bytes(32, 1), bytes(32, 2)]));

  test.each<[string, Buffer]>([
    ['empty', Buffer.alloc(0)],
    ['one byte', hex('30')],
    ['a raw signature', Buffer.concat([bytes(32, 1), bytes(32, 2)]).fill(0x55, 0, 1)],
    ['not a SEQUENCE', Buffer.concat([hex('31'), good.subarray(1)])],
    ['first element not an INTEGER', Buffer.concat([good.subarray(0, 2), hex('04'), good.subarray(3)])],
    ['truncated by one byte', good.subarray(0, good.length - 1)],
    ['truncated to the first integer', good.subarray(0, 2 + 2 + good[3])],
    ['a trailing byte', Buffer.concat([good, hex('00')])],
    ['a third integer', Buffer.concat([good, hex('020101')])],
    ['r longer than the curve size', Buffer.concat([hex('3046'), hex('0221'), hex('01'), bytes(32, 3), hex('0221'), hex('00'), fill(32, 0x80)])],
    ['r of 33 non-zero bytes', Buffer.concat([hex('3045'), hex('0221'), fill(33, 0x7f), hex('0220'), fill(32, 0x01)])],
    ['an integer length past the end', hex('3006020901020201')],
    ['ASCII text', Buffer.from('this is not a signature at all, nope', 'ascii')],
    ['r = 0 and s = 0 (never a valid signature)', ecdsaRawToDer(Buffer.alloc(64))],
    ['outer length larger than the content', Buffer.concat([hex('30'), Buffer.from([good[1] + 1]), good.subarray(2)])],
    [
      'r with a redundant leading zero',
      Buffer.concat([hex('30'), Buffer.from([good[1] + 1]), hex('02'), Buffer.from([good[3] + 1]), hex('00'), good.subarray(4)]),
    ],
    ['negative r', Buffer.concat([hex('3006'), hex('0201'), hex('80'), hex('0201'), hex('01')])],
    ['zero-length r', Buffer.concat([hex('3005'), hex('0200'), hex('0201'), hex('01'), hex('00')])],
  ])('%s', (_name, der) => {
    expect(ecdsaDerToRaw(der, 32)).toBeUndefined();
  });

  test('random bytes never throw and are mostly rejected', () => {
    let accepted = 0;
    for (let i = 0; i < 500; i++) {
      const junk = bytes(1 + (i % 80), i + 100);
      const out = ecdsaDerToRaw(junk, 32);
      if (out !== undefined) {
        expect(out).toHaveLength(64);
        accepted++;
      }
    }
    expect(accepted).toBeLessThan(5);
  });

  test('every truncation of a valid signature is rejected', () => {
    for (let n = 0; n < good.length; n++) expect(ecdsaDerToRaw(good.subarray(0, n), 32)).toBeUndefined();
  });

  test('a P-384 signature is too long for P-256', () => {
    const der384 = ecdsaRawToDer(Buffer.concat([fill(48, 0x7f), fill(48, 0x7f)]));
    expect(ecdsaDerToRaw(der384, 32)).toBeUndefined();
    expect(ecdsaDerToRaw(der384, 48)).toHaveLength(96);
  });
});
